# SPDX-License-Identifier: GPL-3.0-or-later
"""Alertmanager -> WhatsApp relay (Python 3 standard library only).

Alertmanager has no WhatsApp receiver. Its webhook receiver POSTs a JSON notification (version "4": status,
alerts with labels and annotations, truncatedAlerts); this relay turns it into one pt-BR text and sends it to the
owner's number through Evolution API v2.2.3 ``POST /message/sendText/{instance}`` (header ``apikey``, body
``{"number": <digits>, "text": <text>}``, answer 201).

``POST /text`` with ``{"text": "..."}`` sends that text as it is (the weekly report, from the host).

It answers Alertmanager 200 once Evolution accepted the text; 502 when Evolution could not be reached or failed
(5xx), so Alertmanager retries; 422 when Evolution refused the request (4xx: retrying would not help; the log says
why); 401 without the right ``Authorization: Bearer`` token when one is configured.

Environment: ``EVOLUTION_URL`` (e.g. http://borgstack-evolution-api:8080), ``EVOLUTION_API_KEY_FILE``,
``ALERT_NUMBER`` (E.164, e.g. +5511987654321), ``EVOLUTION_INSTANCE`` (default ``principal``),
``RELAY_TOKEN_FILE`` (optional: the Bearer token Alertmanager sends), ``RELAY_LISTEN`` (default 0.0.0.0:9099).
Secrets are read from files, never from the environment, so ``docker inspect`` does not show them. Without
``ALERT_NUMBER`` (WhatsApp alerts not configured) the relay only answers ``/health`` and refuses to send (503): the
monitoring service runs it either way, so its container and probe do not depend on the inventory.

Run: ``python3 alert_whatsapp_relay.py``. ``GET /health`` answers 200 for the container's health check.
"""
from __future__ import annotations

import hmac
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Tuple

MAX_TEXT = 4000
E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")


def _line(alert: Dict[str, Any]) -> str:
    annotations = alert.get("annotations") or {}
    labels = alert.get("labels") or {}
    firing = alert.get("status") == "firing"
    head = "🔴 *PROBLEMA*" if firing else "✅ *RESOLVIDO*"
    summary = annotations.get("summary") or labels.get("alertname", "alerta sem resumo")
    lines = [f"{head}: {summary}"]
    if annotations.get("impact"):
        lines.append(f"*O que afeta:* {annotations['impact']}")
    if firing and annotations.get("action"):
        lines.append(f"*Primeiro passo:* {annotations['action']}")
    where = " · ".join(value for value in (labels.get("service"), labels.get("alertname")) if value)
    if where:
        lines.append(f"_{where}_")
    return "\n".join(lines)


def format_message(payload: Dict[str, Any]) -> str:
    """The pt-BR WhatsApp text of one Alertmanager webhook notification (WhatsApp's *bold* and _italic_)."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise ValueError("the notification has no alerts")
    parts: List[str] = []
    size = 0
    left = int(payload.get("truncatedAlerts") or 0)
    for index, alert in enumerate(alerts):
        part = _line(alert)
        if size + len(part) + 2 > MAX_TEXT:
            left += len(alerts) - index
            break
        parts.append(part)
        size += len(part) + 2
    if left:
        parts.append(f"(e mais {left} alerta{'s' if left > 1 else ''}; veja o painel de monitoramento)")
    return "\n\n".join(parts)


def format_text(payload: Dict[str, Any]) -> str:
    """The text of a ``POST /text`` body ``{"text": ...}``, cut to WhatsApp's practical size."""
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the body must be {\"text\": \"...\"} with a non-empty text")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


class Relay:
    """Configuration read once at start; ``send`` does one sendText call."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.instance = env.get("EVOLUTION_INSTANCE") or "principal"
        self.token = ""
        number = (env.get("ALERT_NUMBER") or "").strip()
        self.enabled = bool(number)
        if not self.enabled:
            self.url = self.api_key = self.number = ""
            return
        self.url = env["EVOLUTION_URL"].rstrip("/")
        with open(env["EVOLUTION_API_KEY_FILE"], encoding="utf-8") as handle:
            self.api_key = handle.read().strip()
        if not E164_RE.fullmatch(number):
            raise SystemExit(f"ALERT_NUMBER: {number!r} is not in E.164 (+5511987654321)")
        self.number = number[1:]
        if env.get("RELAY_TOKEN_FILE"):
            with open(env["RELAY_TOKEN_FILE"], encoding="utf-8") as handle:
                self.token = handle.read().strip()

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self.token}".encode())

    def send(self, text: str) -> Tuple[int, str]:
        """(status for Alertmanager, log line)."""
        body = json.dumps({"number": self.number, "text": text}).encode()
        request = urllib.request.Request(
            f"{self.url}/message/sendText/{urllib.parse.quote(self.instance, safe='')}", data=body, method="POST",
            headers={"Content-Type": "application/json", "apikey": self.api_key})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return 200, f"sendText {response.status}"
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            return (502 if exc.code >= 500 else 422), f"sendText {exc.code}: {detail}"
        except OSError as exc:
            return 502, f"sendText unreachable: {exc}"


def make_handler(relay: Relay) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "borgstack-alert-relay"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # pylint: disable=redefined-builtin
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _answer(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200, "ok") if self.path == "/health" else self._answer(404, "not found")

        def do_POST(self) -> None:  # noqa: N802
            if self.path not in ("/alert", "/text"):
                self._answer(404, "not found")
                return
            if not relay.authorized(self.headers.get("Authorization")):
                self._answer(401, "unauthorized")
                return
            if not relay.enabled:
                self._answer(503, "WhatsApp alerts are not configured (monitoring_alerting.whatsapp)")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length))
                text = format_text(payload) if self.path == "/text" else format_message(payload)
            except (ValueError, TypeError, AttributeError) as exc:
                self._answer(400, f"not a {'text' if self.path == '/text' else 'Alertmanager notification'}: {exc}")
                return
            status, line = relay.send(text)
            sys.stderr.write(f"{line}\n")
            self._answer(status, line)

    return Handler


def main() -> None:
    relay = Relay(dict(os.environ))
    host, _sep, port = (os.environ.get("RELAY_LISTEN") or "0.0.0.0:9099").rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(relay))
    server.daemon_threads = True
    sys.stderr.write(f"alert relay listening on {host}:{server.server_address[1]}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
