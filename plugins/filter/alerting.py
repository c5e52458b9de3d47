# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The channels the owner reads: the inventory's alerting settings checked (``alerting_errors``,
``alerting_warnings``) and turned into Alertmanager's whole configuration (``alertmanager_config``), plus the plan
of the silence playbook (``alertmanager_silence_plan``).

Written against Alertmanager 0.25 (config/notifiers.go at v0.25.0): ``email_configs`` read ``auth_password_file``;
``telegram_configs`` read ``bot_token`` only (``bot_token_file`` arrived in 0.26, so it is used only when the caller
gives a file); Alertmanager has no WhatsApp receiver, so WhatsApp goes through a ``webhook_configs`` entry to the
relay (roles/monitoring/files/alert_whatsapp_relay.py) that calls Evolution API's sendText.

The alert rules (owned by the monitoring role) give every alert the labels ``severity`` (``critical`` or
``warning``) and ``service``, and the annotations ``summary`` (what happened), ``impact`` (what it affects) and
``action`` (the first thing to do), in pt-BR: the message templates below read exactly those.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleFilterError
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

SETTINGS_KEYS = ("email", "telegram", "whatsapp", "group_wait", "group_interval", "repeat_interval")
EMAIL_KEYS = ("smtp_host", "smtp_port", "from", "to", "username", "starttls")
TELEGRAM_KEYS = ("chat_id",)
WHATSAPP_KEYS = ("number", "instance")
SECRET_KEYS = ("smtp_password_file", "smtp_ca_file", "telegram_bot_token", "telegram_bot_token_file",
               "whatsapp_relay_url", "whatsapp_relay_token_file")

# Bot API tokens as @BotFather issues them: the bot's numeric id, a colon, 35 characters of [A-Za-z0-9_-].
TELEGRAM_TOKEN_RE = re.compile(r"[0-9]{5,16}:[A-Za-z0-9_-]{35}")
# E.164: a plus sign, a country code that does not start with 0, at most 15 digits in all.
E164_RE = re.compile(r"\+[1-9][0-9]{7,14}")
ADDRESS_RE = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")
HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
# Alertmanager durations (prometheus/common model.ParseDuration): units from ms to y, largest first.
DURATION_RE = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?"
                         r"(?:([0-9]+)ms)?")
DURATION_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)

# Timing that does not flood a phone: wait a minute to gather what breaks together, tell about a grown group at
# most every 10 minutes, and repeat an unsolved problem every 4 hours (warnings every 12).
DEFAULT_TIMING = {"group_wait": "1m", "group_interval": "10m", "repeat_interval": "4h"}
WARNING_REPEAT = "12h"
MIN_REPEAT_SECONDS = 3600
INSTANCE_DEFAULT = "principal"
RECEIVER = "dono"

# ---- Message templates (Go text/template as Alertmanager 0.25 runs them; pt-BR) ---------------------------------
# Email subject and the Telegram text run through html/template when they are HTML (email html; Telegram with
# parse_mode HTML), which escapes every annotation: a '<' in a summary cannot break the markup Telegram parses.
EMAIL_SUBJECT = ('[BorgStack] {{ if eq .Status "firing" }}Alerta{{ else }}Resolvido{{ end }}: '
                 '{{ .CommonLabels.alertname }}{{ if gt (len .Alerts) 1 }} ({{ len .Alerts }}){{ end }}')
_ALERT_TEXT = (
    '{{ range .Alerts }}'
    '{{ if eq .Status "firing" }}PROBLEMA{{ else }}RESOLVIDO{{ end }}: {{ .Annotations.summary }}\n'
    'O que afeta: {{ .Annotations.impact }}\n'
    '{{ if eq .Status "firing" }}Primeiro passo: {{ .Annotations.action }}\n{{ end }}'
    'Serviço: {{ .Labels.service }} - alerta {{ .Labels.alertname }} - desde '
    '{{ .StartsAt.Local.Format "02/01/2006 15:04 MST" }}'
    '{{ if eq .Status "resolved" }}, resolvido em {{ .EndsAt.Local.Format "02/01/2006 15:04 MST" }}{{ end }}\n\n'
    '{{ end }}'
)
EMAIL_TEXT = _ALERT_TEXT + ("Mensagem do monitoramento da BorgStack. Para silenciar durante uma manutenção: "
                            "ansible-playbook playbooks/silence.yml (docs/monitoramento-canais.md).\n")
EMAIL_HTML = (
    '<html><body>'
    '{{ range .Alerts }}<p>'
    '<b>{{ if eq .Status "firing" }}PROBLEMA{{ else }}RESOLVIDO{{ end }}:</b> {{ .Annotations.summary }}<br>'
    '<b>O que afeta:</b> {{ .Annotations.impact }}<br>'
    '{{ if eq .Status "firing" }}<b>Primeiro passo:</b> {{ .Annotations.action }}<br>{{ end }}'
    '<small>Serviço: {{ .Labels.service }} - alerta {{ .Labels.alertname }} - desde '
    '{{ .StartsAt.Local.Format "02/01/2006 15:04 MST" }}</small>'
    '</p>{{ end }}'
    '<p><small>Mensagem do monitoramento da BorgStack.</small></p>'
    '</body></html>'
)
TELEGRAM_MESSAGE = (
    '{{ range .Alerts }}'
    '{{ if eq .Status "firing" }}🔴 <b>PROBLEMA</b>{{ else }}✅ <b>RESOLVIDO</b>{{ end }}: {{ .Annotations.summary }}\n'
    '<i>O que afeta:</i> {{ .Annotations.impact }}\n'
    '{{ if eq .Status "firing" }}<i>Primeiro passo:</i> {{ .Annotations.action }}\n{{ end }}'
    '<code>{{ .Labels.service }}</code> · {{ .Labels.alertname }}\n\n'
    '{{ end }}'
)


def _bad_duration(value: Any) -> bool:
    return not isinstance(value, str) or not value or not DURATION_RE.fullmatch(value) or value == "0s"


def duration_seconds(value: str) -> float:
    """Seconds in an Alertmanager duration such as ``1h30m``."""
    match = DURATION_RE.fullmatch(value) if isinstance(value, str) and value else None
    if not match:
        raise AnsibleFilterError(f"not an Alertmanager duration: {value!r} (write e.g. 30s, 10m, 4h)")
    return sum(int(part) * unit for part, unit in zip(match.groups(), DURATION_UNITS) if part)


def _unknown(section: Dict[str, Any], allowed: tuple, where: str) -> List[str]:
    return [f"{where}.{key}: unknown key; the keys are {', '.join(allowed)} (see docs/monitoramento-canais.md)"
            for key in section if key not in allowed]


def _email_errors(email: Any, where: str, secrets: Optional[Dict[str, Any]], variable: str) -> List[str]:
    if not isinstance(email, dict):
        return [f"{where}: must be a mapping with smtp_host, smtp_port, from and to"]
    errors = _unknown(email, EMAIL_KEYS, where)
    host = email.get("smtp_host")
    if not isinstance(host, str) or not HOST_RE.fullmatch(host):
        errors.append(f"{where}.smtp_host: {host!r} is not a host name; write the SMTP server, e.g. smtp.gmail.com")
    port = email.get("smtp_port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        errors.append(f"{where}.smtp_port: {email.get('smtp_port')!r} is missing or not a port; set the SMTP port "
                      "(587 for STARTTLS, 465 for TLS, 25 only for a relay on a trusted network)")
    sender = email.get("from")
    if not isinstance(sender, str) or not ADDRESS_RE.fullmatch(sender):
        errors.append(f"{where}.from: {sender!r} is missing or not an e-mail address; set the sender, e.g. "
                      "alertas@suaempresa.com.br (the SMTP account must be allowed to send as it)")
    recipients = email.get("to")
    recipients = [recipients] if isinstance(recipients, str) else recipients
    if not isinstance(recipients, list) or not recipients or not all(
            isinstance(r, str) and ADDRESS_RE.fullmatch(r) for r in recipients):
        errors.append(f"{where}.to: {email.get('to')!r} must be the owner's e-mail address (or a list of them)")
    starttls = email.get("starttls", True)
    if not isinstance(starttls, bool):
        errors.append(f"{where}.starttls: {starttls!r} must be true or false (true unless the server is a relay on a "
                      "trusted network)")
    username = email.get("username")
    if username and starttls is False and port != 465:
        errors.append(f"{where}.starttls: false would send the SMTP password in clear; use port 587 with "
                      "starttls: true or port 465")
    if username is not None and (not isinstance(username, str) or not username):
        errors.append(f"{where}.username: must be the SMTP login (a non-empty string) or absent")
    elif username and secrets is not None and not secrets.get("smtp_password_file"):
        errors.append(f"{variable}_smtp_password: {where}.username is set but the SMTP password is missing; put it in "
                      f"the vault as {variable}_smtp_password")
    return errors


def _telegram_errors(telegram: Any, where: str, secrets: Optional[Dict[str, Any]], variable: str) -> List[str]:
    if not isinstance(telegram, dict):
        return [f"{where}: must be a mapping with chat_id"]
    errors = _unknown(telegram, TELEGRAM_KEYS, where)
    chat = telegram.get("chat_id")
    if isinstance(chat, bool) or not (isinstance(chat, int) and chat != 0
                                      or isinstance(chat, str) and re.fullmatch(r"-?[1-9][0-9]{0,19}", chat)):
        errors.append(f"{where}.chat_id: {chat!r} is not a Telegram chat id; write the number (negative for a group) "
                      "that getUpdates shows after you send the bot a message (docs/monitoramento-canais.md)")
    if secrets is not None:
        token = secrets.get("telegram_bot_token")
        token_ok = isinstance(token, str) and TELEGRAM_TOKEN_RE.fullmatch(token)
        if not secrets.get("telegram_bot_token_file") and not token_ok:
            shown = "missing" if not token else "not of the shape <digits>:<35 letters, digits, _ or ->"
            errors.append(f"{variable}_telegram_bot_token: the Telegram bot token is {shown}; paste the whole token "
                          "@BotFather gave (e.g. 123456789:AA...), in the vault")
    return errors


def _whatsapp_errors(whatsapp: Any, where: str) -> List[str]:
    if not isinstance(whatsapp, dict):
        return [f"{where}: must be a mapping with number"]
    errors = _unknown(whatsapp, WHATSAPP_KEYS, where)
    number = whatsapp.get("number")
    if not isinstance(number, str) or not E164_RE.fullmatch(number):
        errors.append(f"{where}.number: {number!r} is not in E.164; write the owner's number with + and the country "
                      "code, digits only, e.g. \"+5511987654321\" (quoted)")
    instance = whatsapp.get("instance", INSTANCE_DEFAULT)
    if not isinstance(instance, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", instance):
        errors.append(f"{where}.instance: {instance!r} must be the name of the Evolution API instance that sends "
                      f"(default {INSTANCE_DEFAULT})")
    return errors


def _channels(settings: Dict[str, Any]) -> List[str]:
    return [name for name in ("email", "telegram", "whatsapp") if settings.get(name) is not None]


def alerting_errors(settings: Any, secrets: Optional[Dict[str, Any]] = None,
                    variable: str = "monitoring_alerting") -> List[str]:
    """The problems of the alerting ``settings`` (and of ``secrets`` when given), each naming the variable and the
    fix; an empty list when Alertmanager can be configured from them."""
    if not isinstance(variable, str) or not variable:
        raise AnsibleFilterError("alerting_errors: the variable name must be a non-empty string")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        return [f"{variable}: must be a mapping with email, telegram and/or whatsapp (see docs/monitoramento-canais.md)"]
    if secrets is not None and not isinstance(secrets, dict):
        raise AnsibleFilterError("alerting_errors: secrets must be a mapping")
    errors = _unknown(settings, SETTINGS_KEYS, variable)
    if secrets is not None:
        errors += [f"alerting_errors: unknown secrets key {key}" for key in secrets if key not in SECRET_KEYS]
    channels = _channels(settings)
    if "email" in channels:
        errors += _email_errors(settings["email"], f"{variable}.email", secrets, variable)
    if "telegram" in channels:
        errors += _telegram_errors(settings["telegram"], f"{variable}.telegram", secrets, variable)
    if "whatsapp" in channels:
        errors += _whatsapp_errors(settings["whatsapp"], f"{variable}.whatsapp")
        if channels == ["whatsapp"]:
            errors.append(f"{variable}: WhatsApp is the only alert channel, but WhatsApp cannot report its own outage "
                          "(a closed session, Evolution API down); add email or telegram as a second channel")
        if secrets is not None and not secrets.get("whatsapp_relay_url"):
            errors.append("alerting_errors: secrets.whatsapp_relay_url is missing (the monitoring role must give the "
                          "relay's address)")
    for key in ("group_wait", "group_interval", "repeat_interval"):
        if key in settings and _bad_duration(settings[key]):
            errors.append(f"{variable}.{key}: {settings[key]!r} is not a duration; write e.g. "
                          f"{DEFAULT_TIMING[key]} (units s, m, h, d)")
    repeat = settings.get("repeat_interval", DEFAULT_TIMING["repeat_interval"])
    if not _bad_duration(repeat) and duration_seconds(repeat) < MIN_REPEAT_SECONDS:
        errors.append(f"{variable}.repeat_interval: {repeat} would repeat an unsolved alert on the owner's phone more "
                      "than once an hour; use 1h or more (the default is 4h)")
    return errors


def alerting_warnings(settings: Any, variable: str = "monitoring_alerting") -> List[str]:
    """What is allowed but worth a warning: no channel at all (alerts only on the dashboard)."""
    if isinstance(settings, dict) and _channels(settings):
        return []
    return [f"{variable}: no alert channel is set, so alerts appear only on the dashboard and nobody is told; set "
            "email, telegram and/or whatsapp (docs/monitoramento-canais.md)"]


def _email_config(email: Dict[str, Any], secrets: Dict[str, Any]) -> Dict[str, Any]:
    recipients = [email["to"]] if isinstance(email["to"], str) else list(email["to"])
    config: Dict[str, Any] = {
        "send_resolved": True,
        "to": ", ".join(recipients),
        "from": email["from"],
        "smarthost": f"{email['smtp_host']}:{int(email['smtp_port'])}",
        "require_tls": bool(email.get("starttls", True)) and int(email["smtp_port"]) != 465,
        "headers": {"Subject": EMAIL_SUBJECT},
        "text": EMAIL_TEXT,
        "html": EMAIL_HTML,
    }
    if email.get("username"):
        config["auth_username"] = email["username"]
        config["auth_password_file"] = secrets["smtp_password_file"]
    if secrets.get("smtp_ca_file"):
        config["tls_config"] = {"ca_file": secrets["smtp_ca_file"]}
    return config


def _telegram_config(telegram: Dict[str, Any], secrets: Dict[str, Any]) -> Dict[str, Any]:
    config: Dict[str, Any] = {
        "send_resolved": True,
        "chat_id": int(telegram["chat_id"]),
        "parse_mode": "HTML",
        "message": TELEGRAM_MESSAGE,
    }
    if secrets.get("telegram_bot_token_file"):
        config["bot_token_file"] = secrets["telegram_bot_token_file"]  # Alertmanager >= 0.26
    else:
        config["bot_token"] = secrets["telegram_bot_token"]
    return config


def _webhook_config(secrets: Dict[str, Any]) -> Dict[str, Any]:
    config: Dict[str, Any] = {"send_resolved": True, "url": secrets["whatsapp_relay_url"], "max_alerts": 20}
    if secrets.get("whatsapp_relay_token_file"):
        config["http_config"] = {"authorization": {"type": "Bearer",
                                                   "credentials_file": secrets["whatsapp_relay_token_file"]}}
    return config


def alertmanager_config(settings: Any, secrets: Any) -> Dict[str, Any]:
    """Alertmanager's whole configuration (route, inhibit rules, the owner's receiver) from the alerting settings
    and the secrets the monitoring role gives (files inside the container, the Telegram token, the relay URL)."""
    if settings is None:
        settings = {}
    if not isinstance(secrets, dict):
        raise AnsibleFilterError("alertmanager_config: secrets must be a mapping (an empty one when no channel needs "
                                 "any)")
    errors = alerting_errors(settings, secrets)
    if errors:
        raise AnsibleFilterError("alertmanager_config: " + "; ".join(errors))
    receiver: Dict[str, Any] = {"name": RECEIVER}
    if settings.get("email"):
        receiver["email_configs"] = [_email_config(settings["email"], secrets)]
    if settings.get("telegram"):
        receiver["telegram_configs"] = [_telegram_config(settings["telegram"], secrets)]
    if settings.get("whatsapp"):
        receiver["webhook_configs"] = [_webhook_config(secrets)]
    timing = {key: settings.get(key, DEFAULT_TIMING[key]) for key in DEFAULT_TIMING}
    warning_repeat = max(timing["repeat_interval"], WARNING_REPEAT, key=duration_seconds)
    config = {
        "route": {
            "receiver": RECEIVER,
            # What breaks together arrives together: one message per alert name and service.
            "group_by": ["alertname", "service"],
            **timing,
            "routes": [
                {"matchers": ['severity="warning"'], "receiver": RECEIVER, "repeat_interval": warning_repeat},
            ],
        },
        "inhibit_rules": [
            # A critical alert of a service mutes its warnings of the same name (disk 95 % mutes disk 85 %).
            {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
             "equal": ["alertname", "service"]},
        ],
        "receivers": [receiver],
    }
    # Go templates ({{ ... }}) are data for Alertmanager, never for Ansible's templating.
    return wrap_var(config)


def _matcher_key(matcher: Dict[str, Any]) -> tuple:
    return (matcher.get("name"), matcher.get("value"), bool(matcher.get("isRegex", False)),
            bool(matcher.get("isEqual", True)))


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def alertmanager_silence_plan(silences: Any, matchers: Any, comment: Any, hours: Any, now: Any,
                              author: str = "borgstack") -> Dict[str, Any]:
    """What the silence playbook must do: ``{"action": "none" | "add" | "update", "id", "ends_at"}``.

    ``silences`` is Alertmanager's API v2 list (``amtool silence query -o json``). An active silence by ``author``
    with the same matchers and comment that lasts to within 10 minutes of ``now + hours`` is the same silence
    (``none``); one that ends sooner is extended (``update``); otherwise a new one is added (``add``)."""
    if not isinstance(silences, list):
        raise AnsibleFilterError("alertmanager_silence_plan: silences must be the list Alertmanager returns")
    if not isinstance(matchers, list) or not matchers or not all(
            isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("value"), str)
            for m in matchers):
        raise AnsibleFilterError("silence_matchers: must be a non-empty list of {name, value, isRegex} mappings")
    if not isinstance(comment, str) or not comment.strip():
        raise AnsibleFilterError("silence_reason: say why alerts are silenced (e.g. -e silence_reason='troca de "
                                 "disco'); it is the silence's comment and what makes a rerun find it")
    try:
        hours_f = float(hours)
    except (TypeError, ValueError):
        hours_f = 0.0
    if not 0 < hours_f <= 168:
        raise AnsibleFilterError(f"silence_hours: {hours!r} must be a number of hours above 0 and at most 168 (a week)")
    start = _parse_time(now) if isinstance(now, str) else now
    if not isinstance(start, datetime):
        raise AnsibleFilterError("alertmanager_silence_plan: now must be an ISO 8601 time")
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    ends_at = start + timedelta(hours=hours_f)
    wanted = sorted(_matcher_key(m) for m in matchers)
    for silence in silences:
        if (silence.get("status", {}).get("state") != "active" or silence.get("createdBy") != author
                or silence.get("comment") != comment
                or sorted(_matcher_key(m) for m in silence.get("matchers", [])) != wanted):
            continue
        if _parse_time(silence["endsAt"]) >= ends_at - timedelta(minutes=10):
            return {"action": "none", "id": silence["id"], "ends_at": silence["endsAt"]}
        return {"action": "update", "id": silence["id"], "ends_at": ends_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"action": "add", "id": None, "ends_at": ends_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def amtool_matchers(matchers: Any) -> List[str]:
    """amtool's matcher arguments (``name=~"value"``) for a list of {name, value, isRegex, isEqual} mappings."""
    if not isinstance(matchers, list):
        raise AnsibleFilterError("silence_matchers: must be a list of {name, value, isRegex} mappings")
    out = []
    for matcher in matchers:
        name = matcher.get("name") if isinstance(matcher, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise AnsibleFilterError(f"silence_matchers: {matcher!r} needs a label name (letters, digits, _)")
        value = str(matcher.get("value", ""))
        operator = ("=~" if matcher.get("isRegex") else "=") if matcher.get("isEqual", True) else \
            ("!~" if matcher.get("isRegex") else "!=")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'{name}{operator}"{escaped}"')
    return out


class FilterModule(NamedFilters):
    """Alert channel filters."""

    FILTERS = (alerting_errors, alerting_warnings, alertmanager_config, alertmanager_silence_plan, amtool_matchers)
