# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitoring dashboard, derived from the same targets the alerts use: one pt-BR page that Prometheus itself
serves as a console template (``/consoles/index.html``), behind the Caddy login of the monitoring site.

``dashboard_panels(watch, settings)`` turns monitoring_targets' answer (``probes``, ``metrics``, ``sites``) into
sections of cards, each card a list of items ``{title, query, unit, label}``: the host, one card per watched
service (health of each container, its memory and restarts), the certificates of the sites, the customer-service
flow (messages in, replies out, errors, the WhatsApp session when it is probed) and the backups. A service added
to the registry gets its card with no line here. ``dashboard_console(panels)`` renders the page: plain HTML whose
queries Prometheus runs when the page is asked for (Go templates, no JavaScript, nothing loaded from outside).

Pure functions; AnsibleFilterError on bad input.
"""
from __future__ import annotations

import html
from typing import Any, Dict, List

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.registry import _mapping
from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

# How each unit is shown: a Go template action on the sample's value (.Value, a float64).
UNITS = {
    "percent": "{{ .Value | humanizePercentage }}",
    "bytes": "{{ .Value | humanize1024 }}B",
    "duration": "{{ .Value | humanizeDuration }}",
    "number": "{{ .Value | humanize }}",
    "ok": '{{ if eq .Value 1.0 }}<span class="ok">OK</span>{{ else }}<span class="falha">FALHA</span>{{ end }}',
}
# The host's real file systems (the alerts' filter: no pseudo or container file systems).
_FS = 'fstype!~"tmpfs|overlay|squashfs|nsfs|proc|sysfs",mountpoint!~"/(run|proc|sys|dev)(/.*)?"'


def _item(title: str, query: str, unit: str, label: str = "") -> Dict[str, str]:
    return {"title": title, "query": query, "unit": unit, "label": label}


def _host() -> Dict[str, Any]:
    return {"title": "Servidor", "items": [
        _item("CPU em uso (5 min)", '1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m]))', "percent"),
        _item("Memória em uso", "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "percent"),
        _item("Carga (1 min)", "node_load1", "number"),
        _item("Disco ocupado", f"1 - node_filesystem_avail_bytes{{{_FS}}} / node_filesystem_size_bytes{{{_FS}}}",
              "percent", "mountpoint"),
        _item("Ligado há", "time() - node_boot_time_seconds", "duration"),
    ]}


def _service(name: str) -> Dict[str, Any]:
    # The probes carry the registry's service name; the host collector labels each container with its Compose
    # project directory (services/<service>), the same name.
    return {"title": name, "items": [
        _item("Saúde", f'probe_success{{job="health",service="{name}"}}', "ok", "container"),
        _item("Memória", f'borgstack_container_memory_bytes{{service="{name}"}}', "bytes", "name"),
        _item("Reinícios", f'borgstack_container_restarts_total{{service="{name}"}}', "number", "name"),
    ]}


def _customer_service(whatsapp: bool) -> Dict[str, Any]:
    items = [
        # The weekly report's "messages handled" over 24 h (roles/monitoring/files/queries.yaml: borgstack_cs_messages).
        _item("Mensagens recebidas (24 h)", 'borgstack_cs_messages_handled{direction="in",period="24h"}', "number"),
        _item("Respostas enviadas (24 h)", 'borgstack_cs_messages_handled{direction="out",period="24h"}', "number"),
        _item("Erros não reenviados", "borgstack_cs_errors_pending", "number"),
        _item("Erros novos (24 h)", "increase(borgstack_cs_errors_total[24h])", "number"),
        _item("Execuções do n8n com erro (1 h)", "borgstack_n8n_executions_failed_last_hour", "number"),
    ]
    if whatsapp:
        items.append(_item("Sessão do WhatsApp", 'probe_success{job="whatsapp"}', "ok", "instance_name"))
    return {"title": "Atendimento", "items": items}


def _backups() -> Dict[str, Any]:
    return {"title": "Backups", "items": [
        _item("Último backup", "borgstack_backup_last_status", "ok"),
        _item("Último backup bom há", "time() - borgstack_backup_last_success_timestamp_seconds", "duration"),
        _item("Último teste de restauração", "borgstack_restore_drill_last_status", "ok"),
        _item("Último teste bom há", "time() - borgstack_restore_drill_last_success_timestamp_seconds", "duration"),
    ]}


def dashboard_panels(watch: Any, settings: Any = None) -> List[Dict[str, Any]]:
    """The page's sections ``[{title, cards: [{title, items: [{title, query, unit, label}]}]}]`` from
    monitoring_targets' answer: Servidor; Serviços (a card per service with a probe, in the registry's order);
    Certificados (when a site is served); Atendimento (the WhatsApp session item when ``settings.whatsapp``, the same
    condition under which Prometheus probes it); Backups. ``unit`` is one of UNITS; ``label`` names the series'
    label shown beside each value ("" = one value)."""
    watch = _mapping("dashboard_panels", watch, "the targets (monitoring_targets)")
    settings = _mapping("dashboard_panels", settings, "the settings")
    probes = watch.get("probes")
    sites = watch.get("sites")
    if not isinstance(probes, list) or not isinstance(sites, list):
        raise AnsibleFilterError("dashboard_panels: the targets lack 'probes' or 'sites' (give monitoring_targets' "
                                 "answer)")
    services: List[str] = []
    for probe in probes:
        name = probe.get("service") if isinstance(probe, dict) else None
        if not isinstance(name, str) or not name:
            raise AnsibleFilterError(f"dashboard_panels: a probe without its service: {probe!r}")
        if name not in services:
            services.append(name)
    sections = [
        {"title": "Servidor", "cards": [_host()]},
        {"title": "Serviços", "cards": [_service(name) for name in services]},
    ]
    if sites:
        sections.append({"title": "Certificados", "cards": [{"title": "Validade dos certificados", "items": [
            _item("Vence em", 'probe_ssl_earliest_cert_expiry{job="tls"} - time()', "duration", "hostname")]}]})
    sections.append({"title": "Atendimento e backups",
                     "cards": [_customer_service(bool(settings.get("whatsapp"))), _backups()]})
    return sections


_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:.8rem 1.2rem}
header h1{margin:0;font-size:1.3rem}
header p{margin:.2rem 0 0;font-size:.85rem;opacity:.8}
section{padding:.4rem 1.2rem}
h2{font-size:1.05rem;margin:.8rem 0 .4rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{background:#fff;border-radius:6px;box-shadow:0 1px 3px #0002;padding:.6rem .9rem;min-width:16rem;flex:1 1 16rem}
.card h3{margin:0 0 .4rem;font-size:1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td{padding:.15rem .3rem;border-top:1px solid #eee;vertical-align:top}
td.v{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#11783a;font-weight:600}
.falha{color:#b3261e;font-weight:700}
.vazio td{color:#8a6d00}
"""


def _query_literal(query: str) -> str:
    """The query as a Go raw string (backquotes: PromQL's own quotes stay as they are)."""
    if "`" in query or "{{" in query or "}}" in query:
        raise AnsibleFilterError(f"dashboard_console: a query cannot hold a backquote or a template brace: {query!r}")
    return f"`{query}`"


def _render_item(item: Any) -> str:
    if not isinstance(item, dict) or not {"title", "query", "unit", "label"} <= set(item):
        raise AnsibleFilterError(f"dashboard_console: an item needs title, query, unit and label: {item!r}")
    if item["unit"] not in UNITS:
        raise AnsibleFilterError(f"dashboard_console: unknown unit {item['unit']!r} (known: {', '.join(UNITS)})")
    label = str(item["label"])
    if label and not label.replace("_", "").isalnum():
        raise AnsibleFilterError(f"dashboard_console: a label name must be [A-Za-z0-9_]: {label!r}")
    title = html.escape(str(item["title"]))
    series = ("{{ range sortByLabel " + f'"{label}"' + " . }}") if label else "{{ range . }}"
    name = f"{title}: {{{{ .Labels.{label} }}}}" if label else title
    # One row per series; "sem dados" (class vazio) when the query returns nothing.
    return ("{{ with query " + _query_literal(str(item["query"])) + " }}" + series
            + f'<tr><td>{name}</td><td class="v">{UNITS[item["unit"]]}</td></tr>'
            + "{{ end }}{{ else }}" + f'<tr class="vazio"><td>{title}</td><td class="v">sem dados</td></tr>'
            + "{{ end }}")


def dashboard_console(panels: Any) -> str:
    """The console template (HTML with Go template actions) of ``dashboard_panels``' sections: each item's query
    runs in Prometheus when the page is asked for. Titles are HTML-escaped; a query holding a backquote or a
    template brace is refused (it could not be quoted)."""
    if not isinstance(panels, list) or not panels:
        raise AnsibleFilterError("dashboard_console: give dashboard_panels' answer (a non-empty list of sections)")
    out = ['<!DOCTYPE html>', '<html lang="pt-BR"><head><meta charset="utf-8">',
           '<meta http-equiv="refresh" content="60">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<title>BorgStack: painel</title>', f'<style>{_STYLE}</style></head><body>',
           '<header><h1>BorgStack: painel</h1>'
           '<p>Atualiza a cada minuto. Alertas ativos: <a style="color:#fff" href="../alerts">Alertas</a>; '
           'consultas livres: <a style="color:#fff" href="../graph">Prometheus</a>.</p></header>']
    for section in panels:
        if not isinstance(section, dict) or not isinstance(section.get("cards"), list):
            raise AnsibleFilterError(f"dashboard_console: a section needs title and cards: {section!r}")
        out.append(f'<section><h2>{html.escape(str(section.get("title", "")))}</h2><div class="cards">')
        for card in section["cards"]:
            if not isinstance(card, dict) or not isinstance(card.get("items"), list):
                raise AnsibleFilterError(f"dashboard_console: a card needs title and items: {card!r}")
            out.append(f'<div class="card"><h3>{html.escape(str(card.get("title", "")))}</h3><table>')
            out.extend(_render_item(item) for item in card["items"])
            out.append("</table></div>")
        out.append("</div></section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


class FilterModule(NamedFilters):
    """Monitoring dashboard filters."""

    FILTERS = (dashboard_panels, dashboard_console)
