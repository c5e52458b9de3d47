# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monitoring derived from the registry: what Prometheus scrapes, what the blackbox exporter probes, the alert rules.

``monitoring_targets(registry, endpoints, domain)`` is the part of the registry the monitoring role sees (its
contract's ``watch``): every long-running container of every enabled service with its health probe (HTTP on its
``health`` path, with ``health_body`` when the entry has one, else TCP on its port), the containers that publish
Prometheus metrics (``metrics`` path) and the public sites whose certificates Caddy serves. A new service is watched
as soon as it has a registry entry: no line of monitoring configuration.

``prometheus_config``, ``blackbox_config`` and ``alert_rules`` turn that, and the role's settings, into the three
configuration files (dicts; the role writes them with ``to_nice_yaml``). ``monitoring_errors`` checks the role's
settings (thresholds 0-100 %, durations) and names the variable of each problem.

Pure functions; AnsibleFilterError on bad input.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.registry import (
    _containers, _enabled, _mapping, service_hostnames,
)

# Prometheus durations as the settings accept them (one unit: 30s, 2m, 26h, 8d).
_DURATION_RE = re.compile(r"^[1-9][0-9]*(s|m|h|d)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Percent thresholds of the alert rules (monitoring_thresholds.<key>).
PERCENT_KEYS = ("disk_percent", "memory_percent", "container_memory_percent")
# Durations of the alert rules (monitoring_durations.<key>): how long a fault lasts before it alerts, and ages.
DURATION_KEYS = ("down_for", "fault_for", "backup_max_age", "drill_max_age", "cert_min_validity", "queue_stuck_for",
                 "errors_window", "restart_window")
# The collector's and the backup's textfile metrics are older than this: the collector stopped.
_STALE_SECONDS = 300
# Caddy's internal CA (caddy_tls_internal) issues 12-hour leaf certificates (caddytls' defaultInternalCertLifetime)
# and certmagic renews one once a third of its lifetime is left (DefaultRenewalWindowRatio), looking every 10
# minutes (DefaultRenewCheckInterval): checked in Caddy 2.11 / certmagic 0.25. A healthy site's certificate thus
# keeps at least 4 h - 10 min; a cert_min_validity at or above that would alert all the time.
INTERNAL_CERT_RENEWAL_FLOOR = 12 * 3600 // 3 - 600
# What the validation tells a lab or LAN install to use: under the floor by more than an hour and a half, so the
# alert means "Caddy has not renewed for almost two hours past its renewal point".
INTERNAL_CERT_MIN_VALIDITY = "2h"


def _seconds(value: str) -> int:
    return int(value[:-1]) * _SECONDS[value[-1]]


def monitoring_targets(registry: Any, endpoints: Any, domain: Any) -> Dict[str, List[Dict[str, Any]]]:
    """What to watch, from the registry: ``{probes, metrics, sites}``.

    - ``probes``: one per long-running container (workers per replica) that has a port - ``{service, container,
      module, target}``; ``module`` is ``http_2xx`` for a container with a ``health`` path (target
      ``http://<container>:<port><health>``), ``http_body_<container>`` when its entry also has ``health_body``
      (``body`` holds the expression), else ``tcp_connect`` (target ``<container>:<port>``).
    - ``metrics``: containers whose entry has a ``metrics`` path - ``{service, container, target, path}``.
    - ``sites``: the public sites the proxy layer serves - ``{service, hostname, target}`` (target: the proxy's
      container and port; the TLS probe sends the host name as SNI, so no public DNS is needed).
    """
    registry = _mapping("monitoring_targets", registry, "the registry")
    endpoints = _mapping("monitoring_targets", endpoints, "the endpoints")
    probes: List[Dict[str, Any]] = []
    metrics: List[Dict[str, Any]] = []
    for name in _enabled(registry):
        if name not in endpoints:
            raise AnsibleFilterError(f"monitoring_targets: no endpoints for the enabled service {name!r}")
        for key, spec in _containers(registry[name]).items():
            port = spec.get("port")
            if spec.get("kind") == "job" or port is None:
                continue
            for container in endpoints[name]["containers"].get(key, []):
                probe: Dict[str, Any] = {"service": name, "container": container}
                if spec.get("health"):
                    probe["target"] = f"http://{container}:{port}{spec['health']}"
                    probe["module"] = "http_2xx"
                    if spec.get("health_body"):
                        probe["module"] = f"http_body_{container}"
                        probe["body"] = str(spec["health_body"])
                else:
                    probe["target"] = f"{container}:{port}"
                    probe["module"] = "tcp_connect"
                probes.append(probe)
                if spec.get("metrics"):
                    metrics.append({"service": name, "container": container, "target": f"{container}:{port}",
                                    "path": str(spec["metrics"])})
    proxies = [name for name in _enabled(registry) if registry[name].get("layer") == "proxy"]
    sites: List[Dict[str, Any]] = []
    if proxies:
        proxy = endpoints[proxies[0]]
        sites = [{"service": name, "hostname": hostname, "target": f"{proxy['container']}:{proxy['port']}"}
                 for name, hostname in sorted(service_hostnames(registry, domain).items(), key=lambda i: i[1])
                 if name not in proxies]
    return {"probes": probes, "metrics": metrics, "sites": sites}


def _watch(watch: Any) -> Dict[str, List[Dict[str, Any]]]:
    watch = _mapping("monitoring", watch, "the targets (monitoring_targets)")
    for key in ("probes", "metrics", "sites"):
        if not isinstance(watch.get(key), list):
            raise AnsibleFilterError(f"monitoring: the targets lack {key!r} (give monitoring_targets' answer)")
    return dict(watch)


def _blackbox_job(job: str, blackbox: str, scrape_interval: str, targets: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A blackbox job: one static target per probe (its module and labels with it), the address rewritten to the
    exporter's /probe?target=…&module=…."""
    return {
        "job_name": job,
        "metrics_path": "/probe",
        "scrape_interval": scrape_interval,
        "static_configs": [{"targets": [t["target"]], "labels": t["labels"]} for t in targets],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": blackbox},
        ],
    }


def prometheus_config(watch: Any, settings: Any) -> Dict[str, Any]:
    """prometheus.yml from the targets and ``settings``: ``scrape_interval``, ``evaluation_interval``,
    ``rule_files`` (paths in the container), ``alertmanager``, ``prometheus``, ``blackbox``, ``node``, ``postgres``
    and ``redis`` (``host:port`` of each; ``""`` = not scraped), ``whatsapp_url`` (Evolution API's base URL,
    ``""`` = no WhatsApp probe) and ``whatsapp_instances`` (the sessions whose ``connectionState`` is probed, module
    ``whatsapp_open``)."""
    watch = _watch(watch)
    settings = _mapping("prometheus_config", settings, "the settings")
    for key in ("scrape_interval", "evaluation_interval", "alertmanager", "prometheus", "blackbox"):
        if not settings.get(key):
            raise AnsibleFilterError(f"prometheus_config: the settings lack {key!r}")
    interval = str(settings["scrape_interval"])
    jobs: List[Dict[str, Any]] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [settings["prometheus"]]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": [settings["alertmanager"]]}]},
        {"job_name": "blackbox", "static_configs": [{"targets": [settings["blackbox"]]}]},
    ]
    for job in ("node", "postgres", "redis"):
        if settings.get(job):
            jobs.append({"job_name": job, "static_configs": [{"targets": [settings[job]]}]})
    for item in watch["metrics"]:
        jobs.append({"job_name": f"app_{item['container']}", "metrics_path": item["path"],
                     "static_configs": [{"targets": [item["target"]],
                                         "labels": {"service": item["service"], "container": item["container"]}}]})
    health = [{"target": p["target"], "labels": {"__param_module": p["module"], "service": p["service"],
                                                 "container": p["container"]}} for p in watch["probes"]]
    if health:
        jobs.append(_blackbox_job("health", settings["blackbox"], interval, health))
    tls = [{"target": s["target"], "labels": {"__param_module": f"tls_{s['service']}", "service": s["service"],
                                              "hostname": s["hostname"]}} for s in watch["sites"]]
    if tls:
        jobs.append(_blackbox_job("tls", settings["blackbox"], interval, tls))
    base = str(settings.get("whatsapp_url") or "").rstrip("/")
    whatsapp = [{"target": f"{base}/instance/connectionState/{instance}",
                 "labels": {"__param_module": "whatsapp_open", "instance_name": str(instance)}}
                for instance in (settings.get("whatsapp_instances") or [] if base else [])]
    if whatsapp:
        jobs.append(_blackbox_job("whatsapp", settings["blackbox"], interval, whatsapp))
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": str(settings["evaluation_interval"]),
                   "scrape_timeout": "10s"},
        "rule_files": list(settings.get("rule_files") or []),
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [settings["alertmanager"]]}]}]},
        "scrape_configs": jobs,
    }


def blackbox_config(watch: Any, settings: Any = None) -> Dict[str, Any]:
    """blackbox.yml: the generic modules, one per health body expression, one TLS module per site (SNI = its host
    name) and, with ``settings.whatsapp_api_key``, the WhatsApp session module (Evolution API's
    ``connectionState`` answer must say ``open``). ``settings.tls_insecure`` skips the chain check (a lab CA): the
    expiry is still measured."""
    watch = _watch(watch)
    settings = _mapping("blackbox_config", settings, "the settings")
    modules: Dict[str, Any] = {
        "http_2xx": {"prober": "http", "timeout": "5s", "http": {"preferred_ip_protocol": "ip4"}},
        "tcp_connect": {"prober": "tcp", "timeout": "5s", "tcp": {"preferred_ip_protocol": "ip4"}},
    }
    for probe in watch["probes"]:
        if probe.get("body"):
            modules[probe["module"]] = {"prober": "http", "timeout": "5s", "http": {
                "preferred_ip_protocol": "ip4", "fail_if_body_not_matches_regexp": [probe["body"]]}}
    for site in watch["sites"]:
        modules[f"tls_{site['service']}"] = {"prober": "tcp", "timeout": "5s", "tcp": {
            "preferred_ip_protocol": "ip4", "tls": True,
            "tls_config": {"server_name": site["hostname"],
                           "insecure_skip_verify": bool(settings.get("tls_insecure", False))}}}
    if settings.get("whatsapp_api_key"):
        modules["whatsapp_open"] = {"prober": "http", "timeout": "5s", "http": {
            "preferred_ip_protocol": "ip4", "headers": {"apikey": str(settings["whatsapp_api_key"])},
            # {"instance": {"instanceName": "...", "state": "open"}}: any other state (close, connecting) fails.
            "fail_if_body_not_matches_regexp": ['"state"\\s*:\\s*"open"']}}
    return {"modules": modules}


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, impact: str, action: str) -> Dict[str, Any]:
    rule: Dict[str, Any] = {"alert": name, "expr": expr}
    if duration and duration != "0s":
        rule["for"] = duration
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary, "impact": impact, "action": action}
    return rule


def alert_rules(thresholds: Any, durations: Any) -> Dict[str, Any]:
    """The alert rules (a Prometheus rule file as a dict), every annotation in pt-BR: ``summary`` (what happened),
    ``impact`` (what it affects) and ``action`` (the first thing to do). ``thresholds`` and ``durations`` are the
    role's monitoring_thresholds and monitoring_durations (checked by monitoring_errors)."""
    errors = monitoring_errors(thresholds, durations)
    if errors:
        raise AnsibleFilterError("alert_rules: " + "; ".join(errors))
    t = {k: float(v) for k, v in thresholds.items()}
    d = dict(durations)
    disk = t["disk_percent"] / 100
    mem = t["memory_percent"] / 100
    cmem = t["container_memory_percent"] / 100
    # Container layers and pseudo file systems are not disks; tmpfs is watched outside the runtime directories (a
    # full /tmp, tmpfs by default on Debian 13, breaks apt and the play as surely as a full disk).
    fs = 'fstype!~"overlay|squashfs|nsfs|proc|sysfs",mountpoint!~"/(run|proc|sys|dev)(/.*)?"'
    rules = [
        _alert("ServicoFora", 'probe_success{job="health"} == 0', d["down_for"], "critical",
               "{{ $labels.container }} ({{ $labels.service }}) não responde à verificação de saúde",
               "Quem usa {{ $labels.service }} não consegue trabalhar; fluxos que dependem dele param.",
               "Veja `docker ps -a` e `docker logs --tail 50 {{ $labels.container }}`; rode o play com "
               "`--tags {{ $labels.service }}` para recriar o contêiner."),
        _alert("ContainerParado", "borgstack_container_running == 0", d["down_for"], "critical",
               "O contêiner {{ $labels.name }} está parado",
               "O serviço {{ $labels.service }} está fora do ar.",
               "Veja `docker logs --tail 50 {{ $labels.name }}`; suba de novo com o play (`--tags {{ $labels.service }}`)."),
        _alert("ContainerDoente", 'borgstack_container_health{status="unhealthy"} == 1', d["down_for"], "critical",
               "O Docker marca {{ $labels.name }} como unhealthy",
               "O serviço {{ $labels.service }} responde mal ou não responde.",
               "Veja o último resultado da verificação em `docker inspect {{ $labels.name }}` (State.Health) e os "
               "logs do contêiner."),
        _alert("ContainerReiniciandoEmLaco",
               f"increase(borgstack_container_restarts_total[{d['restart_window']}]) >= 3", "0s", "critical",
               "{{ $labels.name }} reiniciou {{ $value | humanize }} vezes em " + d["restart_window"],
               "O serviço {{ $labels.service }} cai e volta sem parar: pedidos se perdem no meio.",
               "Veja o motivo em `docker logs --tail 100 {{ $labels.name }}` (erro de configuração, banco fora, "
               "memória)."),
        _alert("ContainerSemMemoria", "borgstack_container_oom_killed == 1", "0s", "critical",
               "O kernel matou {{ $labels.name }} por falta de memória (OOM)",
               "O serviço {{ $labels.service }} foi interrompido no meio do trabalho.",
               "Veja o consumo em docs/sizing.md; aumente memory.min_mb do contêiner em borgstack_services ou "
               "a RAM do servidor."),
        _alert("ContainerMemoriaNoLimite",
               f"borgstack_container_memory_bytes / borgstack_container_memory_limit_bytes > {cmem:g} "
               "and borgstack_container_memory_limit_bytes > 0", d["fault_for"], "warning",
               "{{ $labels.name }} usa {{ $value | humanizePercentage }} do seu limite de memória",
               "Perto do limite o kernel mata o contêiner (OOM) e o serviço {{ $labels.service }} cai.",
               "Veja `docker stats {{ $labels.name }}`; aumente a parte dele no plano de RAM (borgstack_services)."),
        _alert("WhatsAppDesconectado", 'probe_success{job="whatsapp"} == 0', d["fault_for"], "critical",
               "A sessão do WhatsApp {{ $labels.instance_name }} não está aberta",
               "Clientes no WhatsApp não estão sendo atendidos: mensagens não chegam ao Chatwoot e respostas "
               "não saem.",
               "Abra o gerenciador da Evolution API e leia o QR code de novo com o celular da empresa "
               "(Aparelhos conectados)."),
        _alert("BackupFalhou", "borgstack_backup_last_status == 0", "0s", "critical",
               "O último backup falhou",
               "Sem backup novo, um disco perdido hoje leva os dados desde o último backup bom.",
               "Veja `journalctl -u borgstack-backup -n 50` e rode `systemctl start borgstack-backup` depois de "
               "corrigir."),
        _alert("BackupAtrasado",
               f"time() - borgstack_backup_last_success_timestamp_seconds > {_seconds(d['backup_max_age'])}",
               "0s", "critical",
               "O último backup bom tem mais de " + d["backup_max_age"],
               "Dados gravados desde então não têm cópia.",
               "Veja `systemctl list-timers borgstack-backup` e `journalctl -u borgstack-backup`."),
        _alert("BackupNuncaRegistrado", 'absent(borgstack_backup_last_success_timestamp_seconds)',
               d["backup_max_age"], "warning",
               "Nenhum backup bem-sucedido registrado neste servidor",
               "Se o servidor se perder, não há de onde restaurar.",
               "Rode `systemctl start borgstack-backup` e confira o resultado no journal."),
        _alert("TesteDeRestauracaoFalhou", "borgstack_restore_drill_last_status == 0", "0s", "critical",
               "O último teste de restauração falhou",
               "Não há prova de que os backups restauram.",
               "Rode `ansible-playbook playbooks/restore-drill.yml` e leia as diferenças que ele aponta."),
        _alert("TesteDeRestauracaoAtrasado",
               f"time() - borgstack_restore_drill_last_success_timestamp_seconds > {_seconds(d['drill_max_age'])}",
               "0s", "warning",
               "O último teste de restauração bom tem mais de " + d["drill_max_age"],
               "Um backup que ninguém testou pode não restaurar quando for preciso.",
               "Rode `ansible-playbook playbooks/restore-drill.yml` logo depois de um backup."),
        _alert("DiscoCheio",
               f"1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}} > {disk:g}",
               d["fault_for"], "critical",
               "O disco {{ $labels.mountpoint }} está {{ $value | humanizePercentage }} cheio",
               "Disco cheio para bancos, backups e uploads: os serviços param de gravar.",
               "Veja o que cresce com `du -xh --max-depth=2 {{ $labels.mountpoint }} | sort -h | tail`; apague "
               "backups antigos ou aumente o disco."),
        _alert("DiscoEnchendo",
               f"predict_linear(node_filesystem_avail_bytes{{{fs}}}[1h], 86400) < 0 "
               f"and node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}} < 0.5",
               d["fault_for"], "warning",
               "No ritmo da última hora, o disco {{ $labels.mountpoint }} enche em menos de 24 h",
               "Quando encher, bancos, backups e uploads param de gravar.",
               "Descubra o que está crescendo (`du -xh --max-depth=2 {{ $labels.mountpoint }}`, logs, uploads) "
               "antes que encha."),
        _alert("MemoriaAlta",
               f"1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes > {mem:g}", d["fault_for"],
               "warning",
               "O servidor usa {{ $value | humanizePercentage }} da memória",
               "Com a memória no fim o kernel mata processos (OOM) e os serviços caem.",
               "Veja quem consome com `docker stats --no-stream`; reduza réplicas ou aumente a RAM."),
        _alert("CertificadoVencendo",
               f'probe_ssl_earliest_cert_expiry{{job="tls"}} - time() < {_seconds(d["cert_min_validity"])}',
               "0s", "critical",
               "O certificado de {{ $labels.hostname }} vence em {{ $value | humanizeDuration }}",
               "Ao vencer, navegadores e integrações recusam o site (webhooks do WhatsApp param).",
               "Veja `docker logs` do Caddy (renovação ACME): DNS apontando para o servidor e portas 80/443 "
               "abertas."),
        _alert("SiteSemTLS", 'probe_success{job="tls"} == 0', d["down_for"], "critical",
               "O Caddy não completa o TLS de {{ $labels.hostname }}",
               "O site {{ $labels.hostname }} está inacessível por HTTPS.",
               "Veja os logs do Caddy e se o certificado foi emitido."),
        _alert("ErrosAtendimentoCrescendo",
               f"increase(borgstack_cs_errors_total[{d['errors_window']}]) > 0", "0s", "warning",
               "Erros novos no atendimento ({{ $value | humanize }} em " + d["errors_window"] + ")",
               "Mensagens de clientes não chegaram ao Chatwoot ou respostas não chegaram ao WhatsApp.",
               "Veja a tabela borgstack_cs_errors no banco do n8n e rode o fluxo de reenvio (replay) depois de "
               "corrigir a causa."),
        _alert("FilaN8nParada",
               'redis_key_size{key=~".+:wait"} > 0 unless on(db) (redis_key_size{key=~".+:active"} > 0)',
               d["queue_stuck_for"], "critical",
               "A fila do n8n tem {{ $value | humanize }} execuções esperando e nenhuma em andamento há "
               + d["queue_stuck_for"],
               "Automações e o atendimento pelo WhatsApp estão parados na fila.",
               "Veja se os workers do n8n estão de pé (`docker ps`) e reinicie-os com o play (`--tags n8n`)."),
        _alert("ColetorParado", f"time() - node_textfile_mtime_seconds{{file=\"borgstack_containers.prom\"}} > {_STALE_SECONDS}",
               "0s", "warning",
               "O coletor de métricas dos contêineres parou",
               "Contêineres parados, reinícios e OOM deixam de ser vistos.",
               "Veja `systemctl status borgstack-container-metrics.timer` e o journal do serviço."),
        _alert("AlvoDeMonitoramentoFora", 'up{job!~"health|tls|whatsapp"} == 0', d["down_for"], "warning",
               "O Prometheus não consegue ler {{ $labels.job }} ({{ $labels.instance }})",
               "As métricas desse alvo somem e os alertas que dependem dele não disparam.",
               "Veja `docker logs` do exportador e a rede interna da pilha."),
    ]
    return {"groups": [{"name": "borgstack", "rules": rules}]}


def monitoring_errors(thresholds: Any, durations: Any, tls_internal_ca: Any = False) -> List[str]:
    """Problems in monitoring_thresholds (each 0-100, in %) and monitoring_durations (Prometheus durations such as
    2m, 26h, 8d), each naming the variable and the fix. With ``tls_internal_ca`` (Caddy's internal CA serves the
    sites: monitoring_tls_internal_ca) cert_min_validity must be under the time those certificates keep before
    Caddy renews them (INTERNAL_CERT_RENEWAL_FLOOR), or CertificadoVencendo would fire all the time."""
    errors: List[str] = []
    if not isinstance(thresholds, Mapping):
        return [f"monitoring_thresholds must be a dict {{{', '.join(PERCENT_KEYS)}}}, found {thresholds!r}"]
    if not isinstance(durations, Mapping):
        return [f"monitoring_durations must be a dict {{{', '.join(DURATION_KEYS)}}}, found {durations!r}"]
    for key in PERCENT_KEYS:
        value = thresholds.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            errors.append(f"monitoring_thresholds.{key} must be a percentage from 0 to 100, found {value!r}")
    for key in sorted(set(map(str, thresholds)) - set(PERCENT_KEYS)):
        errors.append(f"monitoring_thresholds.{key} is unknown (known: {', '.join(PERCENT_KEYS)})")
    for key in DURATION_KEYS:
        value = durations.get(key)
        if not isinstance(value, str) or not _DURATION_RE.match(value):
            errors.append(f"monitoring_durations.{key} must be a duration such as 30s, 2m, 26h or 8d, found {value!r}")
    for key in sorted(set(map(str, durations)) - set(DURATION_KEYS)):
        errors.append(f"monitoring_durations.{key} is unknown (known: {', '.join(DURATION_KEYS)})")
    validity = durations.get("cert_min_validity")
    if _truthy(tls_internal_ca) and isinstance(validity, str) and _DURATION_RE.match(validity) \
            and _seconds(validity) >= INTERNAL_CERT_RENEWAL_FLOOR:
        errors.append(
            f"monitoring_durations.cert_min_validity: {validity} is not below the {INTERNAL_CERT_RENEWAL_FLOOR // 60} "
            "minutes a certificate of Caddy's internal CA keeps before Caddy renews it (caddy_tls_internal: true - "
            "12-hour certificates, renewed with a third left), so CertificadoVencendo would alert all the time; set "
            f"monitoring_durations.cert_min_validity to {INTERNAL_CERT_MIN_VALIDITY}")
    return errors


def _truthy(value: Any) -> bool:
    """A boolean setting as Ansible passes it (a bool, or its string from a template)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


class FilterModule:
    """Monitoring filters."""

    def filters(self) -> Dict[str, Any]:
        return {
            "monitoring_targets": monitoring_targets,
            "prometheus_config": prometheus_config,
            "blackbox_config": blackbox_config,
            "alert_rules": alert_rules,
            "monitoring_errors": monitoring_errors,
        }
