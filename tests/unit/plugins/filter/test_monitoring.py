# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring filters: targets derived from the registry, the three config files, the settings' checks, and every
alert rule tested with the real promtool (Prometheus 2.42 of the lab image borgstack-lab/monitoring, which
scripts/test.sh builds before the unit tests: no image here is a failure, not a skip)."""
from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import monitoring
from ansible_collections.borgstack.stack.plugins.filter.alerting import alertmanager_config
from ansible_collections.borgstack.stack.plugins.filter.monitoring import (
    alert_rules, blackbox_config, monitoring_errors, monitoring_targets, prometheus_config,
)
from ansible_collections.borgstack.stack.plugins.filter.registry import (
    registry_errors, service_endpoints, service_registry,
)

from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text(encoding="utf-8"))[
    "borgstack_service_defaults"]
ROLE_DEFAULTS = yaml.safe_load((ROOT / "roles/monitoring/defaults/main.yml").read_text(encoding="utf-8"))
THRESHOLDS = ROLE_DEFAULTS["monitoring_thresholds"]
DURATIONS = ROLE_DEFAULTS["monitoring_durations"]
IMAGE = "borgstack-lab/monitoring:bookworm-1"
DOMAIN = "example.com.br"


def targets(**changes):
    reg = service_registry(DEFAULTS, changes)
    return monitoring_targets(reg, service_endpoints(reg, "borgstack", "borgstack_internal"), DOMAIN)


def probe(watch, container):
    found = [p for p in watch["probes"] if p["container"] == container]
    assert len(found) == 1, (container, watch["probes"])
    return found[0]


# --- Targets from the registry -------------------------------------------------------------------------------------

@pytest.mark.parametrize("container, module, target", [
    ("borgstack-n8n", "http_2xx", "http://borgstack-n8n:5678/healthz/readiness"),
    ("borgstack-seaweedfs", "http_2xx", "http://borgstack-seaweedfs:8333/status"),
    ("borgstack-postgresql", "tcp_connect", "borgstack-postgresql:5432"),
    ("borgstack-redis", "tcp_connect", "borgstack-redis:6379"),
    ("borgstack-chatwoot", "http_body_borgstack-chatwoot", "http://borgstack-chatwoot:3000/api"),
    ("borgstack-monitoring-redis-exporter", "http_2xx", "http://borgstack-monitoring-redis-exporter:9121/health"),
])
def test_every_container_with_a_port_gets_its_probe(container, module, target):
    p = probe(targets(), container)
    assert (p["module"], p["target"]) == (module, target)


def test_jobs_workers_without_port_and_disabled_services_are_not_probed():
    # Even a job that declares a port: it runs once and exits, it is never "down".
    watch = targets(lowcoder={"enabled": False}, chatwoot={"containers": {"chatwoot-migrate": {"port": 3001}}})
    names = {p["container"] for p in watch["probes"]}
    assert "borgstack-chatwoot-migrate" not in names          # a job
    assert not any("sidekiq" in n or "worker" in n for n in names)  # workers have no port
    assert "borgstack-lowcoder" not in names                   # disabled
    assert "borgstack-mongodb" not in names                    # auto, needed by nobody now
    assert "borgstack-duplicati" not in names                  # off by default


def test_a_new_service_is_watched_without_monitoring_configuration():
    defaults = copy.deepcopy(DEFAULTS)
    defaults["wiki"] = {"enabled": True, "layer": "apps", "image": "example/wiki:1.0", "requires": [],
                        "containers": {"wiki": {"kind": "web", "port": 3000, "health": "/healthz",
                                                "metrics": "/metrics", "memory": {"weight": 1, "min_mb": 64}}},
                        "site": {"hostname": ""}}
    reg = service_registry(defaults, {})
    watch = monitoring_targets(reg, service_endpoints(reg, "borgstack", "borgstack_internal"), DOMAIN)
    assert probe(watch, "borgstack-wiki")["target"] == "http://borgstack-wiki:3000/healthz"
    assert {"service": "wiki", "container": "borgstack-wiki", "target": "borgstack-wiki:3000",
            "path": "/metrics"} in watch["metrics"]
    assert {"service": "wiki", "hostname": "wiki.example.com.br", "target": "borgstack-caddy:443"} in watch["sites"]


def test_sites_go_through_the_proxy_and_vanish_without_it():
    watch = targets()
    hosts = [s["hostname"] for s in watch["sites"]]
    assert "n8n.example.com.br" in hosts and "monitoring.example.com.br" in hosts
    assert all(s["target"] == "borgstack-caddy:443" for s in watch["sites"])
    assert hosts == sorted(hosts)
    assert targets(caddy={"enabled": False})["sites"] == []


def test_the_health_body_reaches_the_blackbox_module():
    watch = targets()
    modules = blackbox_config(watch)["modules"]
    body = modules["http_body_borgstack-chatwoot"]["http"]["fail_if_body_not_matches_regexp"]
    assert body == [DEFAULTS["chatwoot"]["containers"]["chatwoot"]["health_body"]]
    assert modules["tls_n8n"]["tcp"]["tls_config"] == {"server_name": "n8n.example.com.br",
                                                       "insecure_skip_verify": False}
    assert "whatsapp_open" not in modules
    insecure = blackbox_config(watch, {"tls_insecure": True, "whatsapp_api_key": "k" * 48})["modules"]
    assert insecure["tls_n8n"]["tcp"]["tls_config"]["insecure_skip_verify"] is True
    assert insecure["whatsapp_open"]["http"]["headers"] == {"apikey": "k" * 48}


SETTINGS = {
    "scrape_interval": "30s", "evaluation_interval": "30s", "rule_files": ["/etc/prometheus/rules.yml"],
    "prometheus": "127.0.0.1:9090", "alertmanager": "borgstack-monitoring-alertmanager:9093",
    "blackbox": "borgstack-monitoring-blackbox:9115", "node": "borgstack-monitoring-node-exporter:9100",
    "postgres": "borgstack-monitoring-postgres-exporter:9187", "redis": "borgstack-monitoring-redis-exporter:9121",
    "whatsapp_url": "http://borgstack-evolution-api:8080/", "whatsapp_instances": ["principal"],
}


def test_prometheus_jobs():
    config = prometheus_config(targets(), SETTINGS)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "alertmanager", "blackbox", "node", "postgres", "redis", "health", "tls",
                         "whatsapp"}
    health = jobs["health"]
    n8n = [s for s in health["static_configs"] if s["labels"]["container"] == "borgstack-n8n"]
    assert n8n == [{"targets": ["http://borgstack-n8n:5678/healthz/readiness"],
                    "labels": {"__param_module": "http_2xx", "service": "n8n", "container": "borgstack-n8n"}}]
    assert health["relabel_configs"][-1] == {"target_label": "__address__",
                                             "replacement": "borgstack-monitoring-blackbox:9115"}
    assert jobs["whatsapp"]["static_configs"] == [{
        "targets": ["http://borgstack-evolution-api:8080/instance/connectionState/principal"],
        "labels": {"__param_module": "whatsapp_open", "instance_name": "principal"}}]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [SETTINGS["alertmanager"]]
    none = prometheus_config(targets(), {**SETTINGS, "whatsapp_url": "", "postgres": ""})
    assert {j["job_name"] for j in none["scrape_configs"]} == set(jobs) - {"whatsapp", "postgres"}
    with pytest.raises(AnsibleFilterError, match="blackbox"):
        prometheus_config(targets(), {**SETTINGS, "blackbox": ""})
    with pytest.raises(AnsibleFilterError, match="probes"):
        prometheus_config({"metrics": [], "sites": []}, SETTINGS)


# --- Registry: per-container images and metrics paths ---------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"image": "prom/alertmanager:latest"}, "monitoring.containers.monitoring-alertmanager.image"),
    ({"image": "prom/alertmanager"}, "has no tag"),
    ({"metrics": "metrics"}, "monitoring.containers.monitoring-alertmanager.metrics must be the HTTP path"),
])
def test_container_image_and_metrics_are_checked(change, message):
    reg = service_registry(DEFAULTS, {"monitoring": {"containers": {"monitoring-alertmanager": change}}})
    errors = registry_errors(reg, DOMAIN)
    assert any(message in e for e in errors), errors


def test_the_shipped_registry_pins_every_monitoring_image():
    reg = service_registry(DEFAULTS, {})
    assert registry_errors(reg, DOMAIN) == []
    images = [spec.get("image", reg["monitoring"]["image"]) for spec in reg["monitoring"]["containers"].values()]
    assert len(set(images)) == 7


# --- Settings ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("thresholds, durations, message", [
    ({"disk_percent": 120}, {}, "monitoring_thresholds.disk_percent must be a percentage from 0 to 100, found 120"),
    ({"memory_percent": -1}, {}, "monitoring_thresholds.memory_percent must be a percentage"),
    ({"container_memory_percent": "90"}, {}, "monitoring_thresholds.container_memory_percent"),
    ({"disk_percent": True}, {}, "monitoring_thresholds.disk_percent"),
    ({"disk_pct": 80}, {}, "monitoring_thresholds.disk_pct is unknown"),
    ({}, {"down_for": "2 minutes"}, "monitoring_durations.down_for must be a duration"),
    ({}, {"backup_max_age": "0h"}, "monitoring_durations.backup_max_age"),
    ({}, {"drill_age": "8d"}, "monitoring_durations.drill_age is unknown"),
])
def test_bad_settings_are_refused_naming_the_variable(thresholds, durations, message):
    errors = monitoring_errors({**THRESHOLDS, **thresholds}, {**DURATIONS, **durations})
    assert len(errors) == 1 and message in errors[0], errors
    with pytest.raises(AnsibleFilterError, match=message.split(" ")[0].replace(".", r"\.")):
        alert_rules({**THRESHOLDS, **thresholds}, {**DURATIONS, **durations})


def test_good_settings_pass_including_the_bounds():
    assert monitoring_errors(THRESHOLDS, DURATIONS) == []
    assert monitoring_errors({"disk_percent": 0, "memory_percent": 100, "container_memory_percent": 99.5},
                             DURATIONS) == []
    assert monitoring_errors([], DURATIONS)[0].startswith("monitoring_thresholds must be a dict")


@pytest.mark.parametrize("tls_internal_ca, validity, refused", [
    # Caddy's internal CA: 12-hour certificates renewed with 4 h left, looked at every 10 minutes (3 h 50 min kept).
    (True, "14d", True), (True, "4h", True), (True, "230m", True), (True, "229m", False), (True, "2h", False),
    ("true", "14d", True), ("True", "5h", True), ("false", "14d", False),
    # ACME (90-day certificates renewed with 30 days left): the 14-day default means a renewal failing for 16 days.
    (False, "14d", False), (False, "2h", False),
])
def test_the_certificate_threshold_must_be_below_the_internal_cas_renewal_point(tls_internal_ca, validity, refused):
    errors = monitoring_errors(THRESHOLDS, {**DURATIONS, "cert_min_validity": validity}, tls_internal_ca)
    if refused:
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"monitoring_durations.cert_min_validity: {validity} is not below the 230 minutes")
        assert "caddy_tls_internal: true" in errors[0] and errors[0].endswith("cert_min_validity to 2h"), errors
    else:
        assert errors == []


def test_the_suggested_internal_certificate_threshold_passes_its_own_check():
    assert monitoring.INTERNAL_CERT_RENEWAL_FLOOR == 4 * 3600 - 600
    assert monitoring_errors(THRESHOLDS, {**DURATIONS, "cert_min_validity": monitoring.INTERNAL_CERT_MIN_VALIDITY},
                             True) == []
    # A malformed value is named once, by the shape check, not twice.
    assert len(monitoring_errors(THRESHOLDS, {**DURATIONS, "cert_min_validity": "14 days"}, True)) == 1


def test_every_rule_speaks_pt_br_and_says_what_to_do():
    rules = alert_rules(THRESHOLDS, DURATIONS)["groups"][0]["rules"]
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "impact", "action"}, rule["alert"]
        assert all(len(v) > 20 for v in rule["annotations"].values()), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning")


@pytest.mark.parametrize("module, name", [
    (monitoring, "monitoring_targets"), (monitoring, "prometheus_config"), (monitoring, "blackbox_config"),
    (monitoring, "alert_rules"), (monitoring, "monitoring_errors"),
])
def test_sidecar_docs(module, name):
    check_sidecar_doc(getattr(module, name), Path(module.__file__).parent / f"{name}.yml")


# --- The real tools: promtool and amtool of the lab image -------------------------------------------------------------

def tool(tmp_path, *argv):
    """Run a tool of the lab image on the files of tmp_path (mounted at /w)."""
    tmp_path.chmod(0o755)
    for f in tmp_path.iterdir():
        f.chmod(0o644)
    return subprocess.run(["docker", "run", "--rm", "--network=none", "-v", f"{tmp_path}:/w:ro", "-w", "/w",
                           "--entrypoint", argv[0], IMAGE, *argv[1:]], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_generated_config_and_rules(tmp_path):
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(alert_rules(THRESHOLDS, DURATIONS), allow_unicode=True))
    config = prometheus_config(targets(), {**SETTINGS, "rule_files": ["/w/rules.yml"]})
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "blackbox.yml").write_text(yaml.safe_dump(blackbox_config(targets(), {"whatsapp_api_key": "k"})))
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(json.loads(json.dumps(alertmanager_config(
        {"email": {"to": ["dono@example.com.br"], "from": "a@example.com.br", "smtp_host": "smtp.example.com.br",
                   "smtp_port": 587}}, {})))))
    result = tool(tmp_path, "promtool", "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rules found" in result.stdout
    result = tool(tmp_path, "amtool", "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    result = tool(tmp_path, "blackbox_exporter", "--config.check", "--config.file=blackbox.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# Each alert: input series (interval, {series: values}), when to evaluate, the labels it fires with, and series that
# must NOT fire it at that time (the near miss: just below the threshold, or shorter than its `for`).
H = "1h"
M = "1m"
CASES = {
    "ServicoFora": (M, {'probe_success{job="health",service="n8n",container="borgstack-n8n"}': "0x5"}, "3m",
                    {'probe_success{job="health",service="n8n",container="borgstack-n8n"}': "1 0 1 0 1 0"}),
    "ContainerParado": (M, {'borgstack_container_running{name="borgstack-n8n",service="n8n"}': "0x5"}, "3m",
                        {'borgstack_container_running{name="borgstack-n8n",service="n8n"}': "1 0 0 1 1 1"}),
    "ContainerDoente": (M, {'borgstack_container_health{name="borgstack-n8n",service="n8n",status="unhealthy"}':
                            "1x5"}, "3m",
                        {'borgstack_container_health{name="borgstack-n8n",service="n8n",status="unhealthy"}': "0x5",
                         'borgstack_container_health{name="borgstack-n8n",service="n8n",status="healthy"}': "1x5"}),
    "ContainerReiniciandoEmLaco": (M, {'borgstack_container_restarts_total{name="borgstack-n8n",service="n8n"}':
                                       "0 1 2 3 4 5"}, "5m",
                                   {'borgstack_container_restarts_total{name="borgstack-n8n",service="n8n"}':
                                    "7 7 7 8 8 9"}),
    "ContainerSemMemoria": (M, {'borgstack_container_oom_killed{name="borgstack-n8n",service="n8n"}': "1x2"}, "1m",
                            {'borgstack_container_oom_killed{name="borgstack-n8n",service="n8n"}': "0x2"}),
    "ContainerMemoriaNoLimite": (M, {'borgstack_container_memory_bytes{name="c",service="s"}': "95x10",
                                     'borgstack_container_memory_limit_bytes{name="c",service="s"}': "100x10"}, "6m",
                                 {'borgstack_container_memory_bytes{name="c",service="s"}': "89x10",
                                  'borgstack_container_memory_limit_bytes{name="c",service="s"}': "100x10"}),
    "WhatsAppDesconectado": (M, {'probe_success{job="whatsapp",instance_name="principal"}': "0x10"}, "6m",
                             {'probe_success{job="whatsapp",instance_name="principal"}': "1 1 0 0 0 1 1 1"}),
    "BackupFalhou": (M, {"borgstack_backup_last_status": "0x2"}, "1m", {"borgstack_backup_last_status": "1x2"}),
    "BackupAtrasado": (H, {"borgstack_backup_last_success_timestamp_seconds": "0x30"}, "27h",
                       {"borgstack_backup_last_success_timestamp_seconds": "0x2 7200+3600x28"}),
    "BackupNuncaRegistrado": (H, {"up": "1x30"}, "27h",
                              {"up": "1x30", "borgstack_backup_last_success_timestamp_seconds": "0x30"}),
    "TesteDeRestauracaoFalhou": (M, {"borgstack_restore_drill_last_status": "0x2"}, "1m",
                                 {"borgstack_restore_drill_last_status": "1x2"}),
    "TesteDeRestauracaoAtrasado": (H, {"borgstack_restore_drill_last_success_timestamp_seconds": "0x200"}, "195h",
                                   {"borgstack_restore_drill_last_success_timestamp_seconds": "0x2 7200+3600x198"}),
    # A full tmpfs /tmp (Debian 13's default) is a full disk too; /run's tmpfs is the system's, not data.
    "DiscoCheio": (M, {'node_filesystem_avail_bytes{mountpoint="/",fstype="ext4"}': "10x10",
                       'node_filesystem_size_bytes{mountpoint="/",fstype="ext4"}': "100x10",
                       'node_filesystem_avail_bytes{mountpoint="/tmp",fstype="tmpfs"}': "10x10",
                       'node_filesystem_size_bytes{mountpoint="/tmp",fstype="tmpfs"}': "100x10"}, "6m",
                   {'node_filesystem_avail_bytes{mountpoint="/",fstype="ext4"}': "16x10",
                    'node_filesystem_size_bytes{mountpoint="/",fstype="ext4"}': "100x10",
                    'node_filesystem_avail_bytes{mountpoint="/run",fstype="tmpfs"}': "0x10",
                    'node_filesystem_size_bytes{mountpoint="/run",fstype="tmpfs"}': "100x10"}),
    "DiscoEnchendo": (M, {'node_filesystem_avail_bytes{mountpoint="/srv",fstype="ext4"}': "400-1x100",
                          'node_filesystem_size_bytes{mountpoint="/srv",fstype="ext4"}': "1000x100"}, "70m",
                      {'node_filesystem_avail_bytes{mountpoint="/srv",fstype="ext4"}': "400-0.2x100",
                       'node_filesystem_size_bytes{mountpoint="/srv",fstype="ext4"}': "1000x100"}),
    "MemoriaAlta": (M, {"node_memory_MemAvailable_bytes": "5x10", "node_memory_MemTotal_bytes": "100x10"}, "6m",
                    {"node_memory_MemAvailable_bytes": "11x10", "node_memory_MemTotal_bytes": "100x10"}),
    "CertificadoVencendo": (M, {'probe_ssl_earliest_cert_expiry{job="tls",hostname="n8n.example.com.br"}':
                                "864000x2"}, "1m",
                            {'probe_ssl_earliest_cert_expiry{job="tls",hostname="n8n.example.com.br"}':
                             "1300000x2"}),
    "SiteSemTLS": (M, {'probe_success{job="tls",hostname="n8n.example.com.br"}': "0x5"}, "3m",
                   {'probe_success{job="tls",hostname="n8n.example.com.br"}': "1x5"}),
    "ErrosAtendimentoCrescendo": (M, {"borgstack_cs_errors_total": "0 0 1 2 2 2"}, "5m",
                                  {"borgstack_cs_errors_total": "3x5"}),
    "FilaN8nParada": (M, {'redis_key_size{db="db0",key="bull:jobs:wait"}': "3x15"}, "12m",
                      {'redis_key_size{db="db0",key="bull:jobs:wait"}': "3x15",
                       'redis_key_size{db="db0",key="bull:jobs:active"}': "1x15"}),
    "ColetorParado": (M, {'node_textfile_mtime_seconds{file="borgstack_containers.prom"}': "0x10"}, "10m",
                      {'node_textfile_mtime_seconds{file="borgstack_containers.prom"}': "0+60x10"}),
    "AlvoDeMonitoramentoFora": (M, {'up{job="node",instance="x:9100"}': "0x5"}, "3m",
                                {'up{job="health",instance="x"}': "0x5", 'up{job="node",instance="x:9100"}': "1x5"}),
}


def _labels(series: str) -> dict:
    if "{" not in series:
        return {}
    body = series[series.index("{") + 1:-1]
    return dict((k, v.strip('"')) for k, v in (part.split("=", 1) for part in body.split(",")))


def test_every_rule_has_a_promtool_case():
    rules = {r["alert"] for r in alert_rules(THRESHOLDS, DURATIONS)["groups"][0]["rules"]}
    assert rules == set(CASES)


def test_every_rule_fires_on_its_fault_and_not_on_the_near_miss(tmp_path):
    """promtool test rules: each alert fires on its input series and stays silent on the near miss. Annotations are
    left out of the comparison (their pt-BR text is checked above and expanded by Prometheus); one case below
    compares them in full."""
    rules = alert_rules(THRESHOLDS, DURATIONS)
    for rule in rules["groups"][0]["rules"]:
        rule.pop("annotations")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = []
    for alert, (interval, fire, at, quiet) in CASES.items():
        severity = next(r for r in rules["groups"][0]["rules"] if r["alert"] == alert)["labels"]["severity"]
        expected = [{"exp_labels": {**_labels(s), "severity": severity}} for s in fire
                    if not s.startswith(("node_filesystem_size", "borgstack_container_memory_limit",
                                         "node_memory_MemTotal", "up"))]
        if alert in ("BackupNuncaRegistrado",):
            expected = [{"exp_labels": {"severity": severity}}]
        if alert == "ContainerMemoriaNoLimite":
            expected = [{"exp_labels": {"name": "c", "service": "s", "severity": severity}}]
        if alert == "MemoriaAlta":
            expected = [{"exp_labels": {"severity": severity}}]
        if alert == "AlvoDeMonitoramentoFora":
            expected = [{"exp_labels": {"job": "node", "instance": "x:9100", "severity": severity}}]
        tests.append({"name": f"{alert} fires", "interval": interval,
                      "input_series": [{"series": s, "values": v} for s, v in fire.items()],
                      "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]})
        tests.append({"name": f"{alert} stays silent", "interval": interval,
                      "input_series": [{"series": s, "values": v} for s, v in quiet.items()],
                      "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": []}]})
    # Ages in hours and days are evaluated hourly (every minute over 8 days is 11,000 evaluations of every rule).
    for interval in (M, H):
        group = [t for t in tests if t["interval"] == interval]
        (tmp_path / f"tests-{interval}.yml").write_text(yaml.safe_dump(
            {"rule_files": ["rules.yml"], "evaluation_interval": interval, "tests": group}))
        result = tool(tmp_path, "promtool", "test", "rules", f"tests-{interval}.yml")
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
        assert "SUCCESS" in result.stdout


def test_a_fired_alert_carries_its_pt_br_text(tmp_path):
    """The annotations as Prometheus expands them: what happened, what it affects, what to do - in pt-BR."""
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(alert_rules(THRESHOLDS, DURATIONS), allow_unicode=True))
    series = 'probe_success{job="whatsapp",instance_name="principal"}'
    rule = next(r for r in alert_rules(THRESHOLDS, DURATIONS)["groups"][0]["rules"]
                if r["alert"] == "WhatsAppDesconectado")
    annotations = {k: v.replace("{{ $labels.instance_name }}", "principal") for k, v in rule["annotations"].items()}
    assert annotations["summary"] == "A sessão do WhatsApp principal não está aberta"
    assert "Clientes no WhatsApp não estão sendo atendidos" in annotations["impact"]
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": series, "values": "0x10"}],
        "alert_rule_test": [{"eval_time": "6m", "alertname": "WhatsAppDesconectado", "exp_alerts": [{
            "exp_labels": {"job": "whatsapp", "instance_name": "principal", "severity": "critical"},
            "exp_annotations": annotations}]}]}]}
    (tmp_path / "tests.yml").write_text(json.dumps(test, ensure_ascii=False))
    result = tool(tmp_path, "promtool", "test", "rules", "tests.yml")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
