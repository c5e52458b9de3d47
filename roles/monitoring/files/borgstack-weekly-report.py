# SPDX-License-Identifier: GPL-3.0-or-later
"""BorgStack's weekly report to the owner (pt-BR), from the stack's own Prometheus (Python 3 standard library only).

Run by borgstack-weekly-report.timer every Monday morning in the owner's time zone, or at once with
``ansible-playbook playbooks/weekly-report.yml``. It reads the figures of the seven days that end now from the
monitoring service's Prometheus HTTP API (``/api/v1/query`` and ``/api/v1/query_range``) - uptime of each service
(its containers' health probes), the alerts that fired, the backup and the restore drill, the disks' fill trend,
the customer-service messages n8n handled - and sends one text by e-mail (SMTP from the inventory) and, when
configured, by WhatsApp (through the monitoring service's relay, ``POST /text``).

The settings are a root-only JSON file (``--config``; the monitoring role writes it): the containers of Prometheus
and of the relay (reached at their address on the stack's internal network, which ``docker inspect`` gives), the
owner's time zone, the SMTP settings and the file holding the SMTP password (never on the command line).
``--print`` writes the report to stdout and sends nothing.
"""
from __future__ import annotations

import argparse
import json
import smtplib
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Dict, List, Optional, Tuple
from zoneinfo import ZoneInfo

WEEK = 7 * 86400
# The alert rules' file system selector (plugins/filter/monitoring.py alert_rules: DiscoCheio).
FS = 'fstype!~"tmpfs|overlay|squashfs|nsfs|proc|sysfs",mountpoint!~"/(run|proc|sys|dev)(/.*)?"'
QUERIES = {
    "uptime": 'avg by (service) (avg_over_time(probe_success{job="health"}[7d]))',
    # The raw samples of the week (a range selector): every rule evaluation that found the alert firing.
    "alerts": 'ALERTS{alertstate="firing"}[7d]',
    "disk": f"100 * (1 - node_filesystem_avail_bytes{{{FS}}} / node_filesystem_size_bytes{{{FS}}})",
    "backup_status": "borgstack_backup_last_status",
    "backup_success": "borgstack_backup_last_success_timestamp_seconds",
    "drill_status": "borgstack_restore_drill_last_status",
    "drill_success": "borgstack_restore_drill_last_success_timestamp_seconds",
    # The dashboard's "messages handled" over 7 days instead of 24 h (queries.yaml: borgstack_cs_messages).
    "received": 'borgstack_cs_messages_handled{direction="in",period="7d"}',
    "replied": 'borgstack_cs_messages_handled{direction="out",period="7d"}',
    "errors": "increase(borgstack_cs_errors_total[7d])",
}


class ReportError(Exception):
    """A figure could not be read or the report could not be sent."""


def container_address(name: str, network_suffix: str = "_internal") -> str:
    """The container's address on the stack's internal network (the host reaches it)."""
    result = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ReportError(f"docker inspect {name}: {result.stderr.strip()} (is the monitoring service running?)")
    networks = json.loads(result.stdout)[0]["NetworkSettings"]["Networks"]
    for key, network in sorted(networks.items()):
        if key.endswith(network_suffix) and network.get("IPAddress"):
            return str(network["IPAddress"])
    raise ReportError(f"{name} has no address on a network ending in {network_suffix}")


class Prometheus:
    """The two HTTP API calls the report needs."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def _get(self, path: str, params: Dict[str, Any]) -> List[Dict[str, Any]]:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                answer = json.load(response)
        except (OSError, ValueError) as exc:
            raise ReportError(f"Prometheus {path} {params.get('query')!r}: {exc}") from exc
        if answer.get("status") != "success":
            raise ReportError(f"Prometheus {path} {params.get('query')!r}: {answer.get('error')}")
        return answer["data"]["result"]

    def query(self, promql: str, at: float) -> List[Dict[str, Any]]:
        return self._get("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})

    def query_range(self, promql: str, start: float, end: float, step: int) -> List[Dict[str, Any]]:
        return self._get("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{step}s"})


def alert_episodes(series: List[Dict[str, Any]], interval: float) -> List[Dict[str, Any]]:
    """Each alert (name and service) that fired: how many times (runs of samples no more than 1.5 evaluation
    intervals apart) and for how long (samples x interval), longest first. ``series`` is the raw samples of
    ALERTS{alertstate="firing"} (a range selector: one sample per rule evaluation while the alert fired)."""
    found: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for item in series:
        labels = item.get("metric", {})
        key = (labels.get("alertname", "?"), labels.get("service", ""))
        entry = found.setdefault(key, {"alertname": key[0], "service": key[1], "times": 0, "seconds": 0.0})
        previous: Optional[float] = None
        for stamp, _value in sorted((float(t), v) for t, v in item.get("values", [])):
            if previous is None or stamp - previous > interval * 1.5:
                entry["times"] += 1
            entry["seconds"] += interval
            previous = stamp
    return sorted(found.values(), key=lambda e: (-e["seconds"], e["alertname"], e["service"]))


def seconds(duration: str) -> float:
    """Seconds of a Prometheus duration of one unit (30s, 1m, 2h)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if duration.endswith(unit) and duration[:-len(unit)].isdigit():
            return int(duration[:-len(unit)]) * units[unit]
    raise ValueError(f"not a Prometheus duration: {duration!r}")


def disk_trend(series: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per file system: the used percentage at the first and the last point of the week (query_range's answer)."""
    out = []
    for item in series:
        values = item.get("values") or []
        if not values:
            continue
        out.append({"mountpoint": item["metric"].get("mountpoint", "?"), "first": float(values[0][1]),
                    "first_at": float(values[0][0]), "last": float(values[-1][1]), "last_at": float(values[-1][0])})
    return sorted(out, key=lambda d: d["mountpoint"])


def _scalar(result: List[Dict[str, Any]]) -> Optional[float]:
    return float(result[0]["value"][1]) if result else None


def collect(prom: Prometheus, end: float, step: int, interval: float) -> Dict[str, Any]:
    """Every figure of the report, for the seven days that end at ``end`` (Unix time); ``step``: seconds between the
    disk trend's points; ``interval``: Prometheus' rule evaluation interval."""
    start = end - WEEK
    figures: Dict[str, Any] = {"start": start, "end": end, "step": step}
    figures["uptime"] = {r["metric"].get("service", "?"): 100 * float(r["value"][1])
                         for r in prom.query(QUERIES["uptime"], end)}
    figures["alerts"] = alert_episodes(prom.query(QUERIES["alerts"], end), interval)
    figures["disk"] = disk_trend(prom.query_range(QUERIES["disk"], start, end, step))
    for key in ("backup_status", "backup_success", "drill_status", "drill_success", "received", "replied"):
        figures[key] = _scalar(prom.query(QUERIES[key], end))
    errors = prom.query(QUERIES["errors"], end)
    figures["errors"] = sum(float(r["value"][1]) for r in errors) if errors else None
    return figures


def _pct(value: float) -> str:
    return f"{value:.2f}".replace(".", ",") + " %"


def _when(stamp: Optional[float], tz: ZoneInfo) -> str:
    if stamp is None:
        return "nenhum registrado"
    return datetime.fromtimestamp(stamp, tz).strftime("%d/%m/%Y %H:%M")


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _count(value: Optional[float]) -> str:
    return "sem dados" if value is None else str(int(round(value)))


def render(figures: Dict[str, Any], tz: ZoneInfo, stack: str) -> Tuple[str, str]:
    """(subject, text) of the report, in pt-BR."""
    start = datetime.fromtimestamp(figures["start"], tz)
    end = datetime.fromtimestamp(figures["end"], tz)
    period = f"{start:%d/%m/%Y} a {end:%d/%m/%Y}"
    lines = [f"Relatório semanal da BorgStack ({stack}) - {period}", ""]
    lines.append("DISPONIBILIDADE (verificações de saúde respondidas na semana)")
    if figures["uptime"]:
        for service, value in sorted(figures["uptime"].items()):
            lines.append(f"- {service}: {_pct(value)}")
    else:
        lines.append("- sem dados de verificação de saúde")
    lines += ["", "ALERTAS DA SEMANA"]
    if figures["alerts"]:
        for alert in figures["alerts"]:
            where = f" ({alert['service']})" if alert["service"] else ""
            vezes = "vez" if alert["times"] == 1 else "vezes"
            lines.append(f"- {alert['alertname']}{where}: {alert['times']} {vezes}, ativo por "
                         f"{_duration(alert['seconds'])}")
    else:
        lines.append("- nenhum alerta disparou")
    lines += ["", "BACKUP E TESTE DE RESTAURAÇÃO"]
    for label, status, success in (("Backup", "backup_status", "backup_success"),
                                   ("Teste de restauração", "drill_status", "drill_success")):
        state = {None: "sem registro", 1.0: "ok", 0.0: "FALHOU"}.get(figures[status], "?")
        lines.append(f"- {label}: último resultado {state}; último sucesso {_when(figures[success], tz)}")
    lines += ["", "DISCOS (uso no início e no fim da semana)"]
    if figures["disk"]:
        for disk in figures["disk"]:
            change = disk["last"] - disk["first"]
            lines.append(f"- {disk['mountpoint']}: {_pct(disk['first'])} em {_when(disk['first_at'], tz)} -> "
                         f"{_pct(disk['last'])} agora ({'+' if change >= 0 else ''}{_pct(change)})")
    else:
        lines.append("- sem dados de disco")
    lines += ["", "ATENDIMENTO (WhatsApp <-> Chatwoot, pelo n8n)",
              f"- Mensagens recebidas e entregues ao Chatwoot: {_count(figures['received'])}",
              f"- Respostas enviadas ao WhatsApp: {_count(figures['replied'])}",
              f"- Erros registrados: {_count(figures['errors'])}",
              "", "Relatório automático do monitoramento da BorgStack (docs/monitoramento-canais.md)."]
    subject = f"[BorgStack] Relatório semanal {period}"
    return subject, "\n".join(lines) + "\n"


def send_email(settings: Dict[str, Any], subject: str, text: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings["from"]
    recipients = [settings["to"]] if isinstance(settings["to"], str) else list(settings["to"])
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=settings["from"].rpartition("@")[2] or None)
    message.set_content(text)
    host, port = settings["smtp_host"], int(settings["smtp_port"])
    context = ssl.create_default_context()
    try:
        if port == 465:
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=60, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=60)
        with client:
            if port != 465 and settings.get("starttls", True):
                client.starttls(context=context)
            if settings.get("username"):
                with open(settings["password_file"], encoding="utf-8") as handle:
                    client.login(settings["username"], handle.read())
            client.send_message(message, to_addrs=recipients)
    except (OSError, smtplib.SMTPException) as exc:
        raise ReportError(f"e-mail to {host}:{port}: {exc}") from exc


def send_whatsapp(url: str, text: str) -> None:
    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
    except OSError as exc:
        raise ReportError(f"WhatsApp through the relay {url}: {exc}") from exc


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/borgstack/weekly-report.json")
    parser.add_argument("--print", action="store_true", help="write the report to stdout, send nothing")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    tz = ZoneInfo(config["timezone"])
    try:
        prom = Prometheus(f"http://{container_address(config['prometheus']['container'])}:"
                          f"{config['prometheus']['port']}")
        figures = collect(prom, datetime.now(timezone.utc).timestamp(), int(config.get("step", 60)),
                          seconds(config.get("evaluation_interval", "30s")))
        subject, text = render(figures, tz, config.get("stack", "BorgStack"))
        if args.print:
            sys.stdout.write(text)
            return 0
        sent = []
        if config.get("email"):
            send_email(config["email"], subject, text)
            sent.append("e-mail")
        if config.get("whatsapp"):
            relay = config["whatsapp"]
            send_whatsapp(f"http://{container_address(relay['container'])}:{relay['port']}/text",
                          f"*{subject.replace('[BorgStack] ', '')}*\n\n{text}")
            sent.append("WhatsApp")
    except ReportError as exc:
        sys.stderr.write(f"borgstack-weekly-report: {exc}\n")
        return 1
    sys.stdout.write(f"weekly report sent by {' and '.join(sent) or 'no channel'}: {subject}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
