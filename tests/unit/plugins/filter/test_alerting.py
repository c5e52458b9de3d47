"""Table-driven tests of the alerting filters (plugins/filter/alerting.py) and of the WhatsApp relay's message text
(roles/monitoring/files/alert_whatsapp_relay.py). Alertmanager itself reads the rendered configuration in
tests/integration/targets/alerting."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.borgstack.stack.plugins.filter import alerting
from ansible_collections.borgstack.stack.plugins.filter.alerting import (
    FilterModule,
    alerting_errors,
    alerting_warnings,
    alertmanager_config,
    alertmanager_silence_plan,
    amtool_matchers,
    duration_seconds,
)

from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error

REPO_ROOT = Path(alerting.__file__).resolve().parents[2]
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
FULL = {
    "email": {"smtp_host": "smtp.gmail.com", "smtp_port": 587, "from": "alertas@empresa.com.br",
              "to": "dono@empresa.com.br", "username": "alertas@empresa.com.br"},
    "telegram": {"chat_id": 987654321},
    "whatsapp": {"number": "+5511987654321"},
}
SECRETS = {"smtp_password_file": "/etc/alertmanager/secrets/smtp_password", "telegram_bot_token": TOKEN,
           "whatsapp_relay_url": "http://borgstack-alert-relay:9099/alert",
           "whatsapp_relay_token_file": "/etc/alertmanager/secrets/relay_token"}


def _with(path: str, value, base=None):
    settings = copy.deepcopy(FULL if base is None else base)
    *parents, key = path.split(".")
    node = settings
    for parent in parents:
        node = node[parent]
    if value is _DROP:
        node.pop(key)
    else:
        node[key] = value
    return settings


_DROP = object()


def test_full_settings_pass():
    assert alerting_errors(FULL) == []
    assert alerting_errors(FULL, SECRETS) == []
    assert alerting_warnings(FULL) == []


@pytest.mark.parametrize("settings", [
    {"email": FULL["email"]},
    {"telegram": FULL["telegram"]},
    {"email": FULL["email"], "whatsapp": FULL["whatsapp"]},
    {"telegram": {"chat_id": -1001234567890}},                  # a group
    {"telegram": {"chat_id": "987654321"}},
    _with("email.smtp_port", 465),
    _with("email.smtp_port", "587"),
    _with("email.to", ["dono@empresa.com.br", "socio@empresa.com.br"]),
    {"email": {**_with("email.username", _DROP)["email"], "starttls": False, "smtp_port": 25}},
    _with("whatsapp.instance", "alertas"),
    {**FULL, "group_wait": "30s", "group_interval": "5m", "repeat_interval": "1h30m"},
])
def test_good_settings_pass(settings):
    assert alerting_errors(settings) == []


@pytest.mark.parametrize("settings, fragment", [
    (_with("email.smtp_port", _DROP), "monitoring_alerting.email.smtp_port: None is missing or not a port"),
    (_with("email.smtp_port", 0), "email.smtp_port: 0 is missing or not a port"),
    (_with("email.smtp_port", 70000), "email.smtp_port"),
    (_with("email.smtp_port", True), "email.smtp_port"),
    (_with("email.smtp_port", "587a"), "email.smtp_port"),
    (_with("email.from", _DROP), "monitoring_alerting.email.from: None is missing or not an e-mail address"),
    (_with("email.from", "alertas"), "email.from: 'alertas' is missing or not an e-mail address"),
    (_with("email.smtp_host", _DROP), "email.smtp_host: None is not a host name"),
    (_with("email.smtp_host", "smtp gmail com"), "email.smtp_host"),
    (_with("email.to", []), "email.to: [] must be the owner's e-mail address"),
    (_with("email.to", ["dono"]), "email.to"),
    (_with("email.starttls", "yes"), "email.starttls: 'yes' must be true or false"),
    (_with("email.starttls", False), "email.starttls: false would send the SMTP password in clear"),
    (_with("email.username", ""), "email.username: must be the SMTP login"),
    (_with("email.smpt_host", "x"), "monitoring_alerting.email.smpt_host: unknown key"),
    (_with("telegram.chat_id", _DROP), "monitoring_alerting.telegram.chat_id: None is not a Telegram chat id"),
    ({**FULL, "telegram": {}}, "monitoring_alerting.telegram.chat_id: None"),     # {} is not "off": absent is
    ({**FULL, "email": {}}, "monitoring_alerting.email.smtp_host"),
    (_with("telegram.chat_id", "@canal"), "telegram.chat_id: '@canal' is not a Telegram chat id"),
    (_with("telegram.chat_id", 0), "telegram.chat_id"),
    (_with("telegram.chat_id", True), "telegram.chat_id"),
    (_with("telegram.token", TOKEN), "monitoring_alerting.telegram.token: unknown key"),
    (_with("whatsapp.number", "5511987654321"), "monitoring_alerting.whatsapp.number: '5511987654321' is not in "
                                                "E.164"),
    (_with("whatsapp.number", "+55 11 98765-4321"), "whatsapp.number"),
    (_with("whatsapp.number", "+0511987654321"), "whatsapp.number"),
    (_with("whatsapp.number", "+5511987654321012"), "whatsapp.number"),     # 16 digits
    (_with("whatsapp.number", 5511987654321), "whatsapp.number"),
    (_with("whatsapp.instance", "a b"), "whatsapp.instance: 'a b' must be the name of the Evolution API instance"),
    ({"whatsapp": FULL["whatsapp"]}, "monitoring_alerting: WhatsApp is the only alert channel, but WhatsApp cannot "
                                     "report its own outage"),
    ({"whatsapp": FULL["whatsapp"], "email": None}, "WhatsApp is the only alert channel"),
    ({**FULL, "repeat_interval": "30m"}, "monitoring_alerting.repeat_interval: 30m would repeat an unsolved alert"),
    ({**FULL, "repeat_interval": "59m59s"}, "repeat_interval"),
    ({**FULL, "group_wait": "1 minute"}, "monitoring_alerting.group_wait: '1 minute' is not a duration"),
    ({**FULL, "group_interval": "0s"}, "group_interval"),
    ({**FULL, "group_interval": 60}, "group_interval"),
    ({**FULL, "emails": {}}, "monitoring_alerting.emails: unknown key"),
    ({**FULL, "disk_threshold": 85}, "monitoring_alerting.disk_threshold: unknown key"),  # thresholds: not here
    ("email", "monitoring_alerting: must be a mapping"),
    ({"email": "dono@empresa.com.br"}, "monitoring_alerting.email: must be a mapping"),
])
def test_bad_settings_name_the_variable_and_the_fix(settings, fragment):
    errors = alerting_errors(settings)
    assert any(fragment in error for error in errors), errors
    assert all(error.startswith("monitoring_alerting") for error in errors), errors


@pytest.mark.parametrize("secrets, fragment", [
    ({**SECRETS, "telegram_bot_token": "123456789:short"}, "monitoring_alerting_telegram_bot_token: the Telegram bot "
                                                           "token is not of the shape"),
    ({**SECRETS, "telegram_bot_token": TOKEN + "x"}, "monitoring_alerting_telegram_bot_token"),
    ({**SECRETS, "telegram_bot_token": "bot" + TOKEN}, "monitoring_alerting_telegram_bot_token"),
    ({**SECRETS, "telegram_bot_token": TOKEN.replace(":", "")}, "monitoring_alerting_telegram_bot_token"),
    ({**SECRETS, "telegram_bot_token": TOKEN[:-1] + "!"}, "monitoring_alerting_telegram_bot_token"),
    ({**SECRETS, "telegram_bot_token": TOKEN + "\n"}, "monitoring_alerting_telegram_bot_token"),
    ({k: v for k, v in SECRETS.items() if k != "telegram_bot_token"}, "the Telegram bot token is missing"),
    ({k: v for k, v in SECRETS.items() if k != "smtp_password_file"}, "monitoring_alerting_smtp_password: "
                                                                      "monitoring_alerting.email.username is set"),
    ({k: v for k, v in SECRETS.items() if k != "whatsapp_relay_url"}, "secrets.whatsapp_relay_url is missing"),
    ({**SECRETS, "smtp_password": "x"}, "unknown secrets key smtp_password"),
])
def test_bad_secrets_are_named(secrets, fragment):
    errors = alerting_errors(FULL, secrets)
    assert any(fragment in error for error in errors), errors


def test_token_message_never_shows_the_token():
    bad = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    assert all(bad not in error for error in alerting_errors(FULL, {**SECRETS, "telegram_bot_token": bad}))


def test_a_token_file_replaces_the_token():
    secrets = {k: v for k, v in SECRETS.items() if k != "telegram_bot_token"}
    secrets["telegram_bot_token_file"] = "/run/secrets/telegram"
    assert alerting_errors(FULL, secrets) == []
    telegram = alertmanager_config(FULL, secrets)["receivers"][0]["telegram_configs"][0]
    assert telegram["bot_token_file"] == "/run/secrets/telegram" and "bot_token" not in telegram


def test_other_variable_names():
    errors = alerting_errors({"whatsapp": {"number": "1"}}, None, "alertas")
    assert errors and all(error.startswith("alertas") for error in errors)
    with pytest.raises(AnsibleFilterError, match="variable name"):
        alerting_errors(FULL, None, "")


@pytest.mark.parametrize("settings", [None, {}, {"email": None, "telegram": None}, "x"])
def test_no_channel_warns(settings):
    assert alerting_warnings(settings) == [
        "monitoring_alerting: no alert channel is set, so alerts appear only on the dashboard and nobody is told; "
        "set email, telegram and/or whatsapp (docs/monitoramento-canais.md)"]


def test_no_channel_is_not_an_error():
    assert alerting_errors(None) == [] and alerting_errors({}) == []


# ---- alertmanager_config -----------------------------------------------------------------------------------------

def test_full_config():
    config = alertmanager_config(FULL, SECRETS)
    route = config["route"]
    assert route["receiver"] == "dono" and route["group_by"] == ["alertname", "service"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("1m", "10m", "4h")
    assert route["routes"] == [{"matchers": ['severity="warning"'], "receiver": "dono", "repeat_interval": "12h"}]
    assert config["inhibit_rules"] == [{"source_matchers": ['severity="critical"'],
                                        "target_matchers": ['severity="warning"'], "equal": ["alertname", "service"]}]
    receiver = config["receivers"][0]
    assert set(receiver) == {"name", "email_configs", "telegram_configs", "webhook_configs"}
    mail = receiver["email_configs"][0]
    assert mail["smarthost"] == "smtp.gmail.com:587" and mail["require_tls"] is True
    assert mail["to"] == "dono@empresa.com.br" and mail["from"] == "alertas@empresa.com.br"
    assert mail["auth_username"] == "alertas@empresa.com.br"
    assert mail["auth_password_file"] == SECRETS["smtp_password_file"] and "auth_password" not in mail
    assert mail["send_resolved"] is True and "tls_config" not in mail
    assert "O que afeta: {{ .Annotations.impact }}" in mail["text"]
    assert "Primeiro passo:" in mail["text"] and "{{ .Annotations.summary }}" in mail["html"]
    telegram = receiver["telegram_configs"][0]
    assert telegram == {"send_resolved": True, "chat_id": 987654321, "parse_mode": "HTML",
                        "message": alerting.TELEGRAM_MESSAGE, "bot_token": TOKEN}
    assert receiver["webhook_configs"] == [{
        "send_resolved": True, "url": SECRETS["whatsapp_relay_url"], "max_alerts": 20,
        "http_config": {"authorization": {"type": "Bearer", "credentials_file": SECRETS["whatsapp_relay_token_file"]}}}]


def test_ansible_leaves_the_go_templates_alone():
    """Rendered as the monitoring role writes it ({{ ... | to_nice_yaml }}), the Go templates reach the file as
    they are: Ansible must not try to template ``{{ .Annotations.summary }}``."""
    templar = Templar(loader=DataLoader(), variables={"config": alertmanager_config(FULL, SECRETS)})
    rendered = templar.template(trust_as_template("{{ config | to_nice_yaml(width=1000) }}"))
    assert "{{ .Annotations.summary }}" in rendered and "{{ range .Alerts }}" in rendered


def test_implicit_tls_and_plain_relay():
    mail = alertmanager_config(_with("email.smtp_port", 465), SECRETS)["receivers"][0]["email_configs"][0]
    assert mail["smarthost"] == "smtp.gmail.com:465" and mail["require_tls"] is False  # TLS from the first byte
    relay = {"email": {"smtp_host": "mail.lan", "smtp_port": "25", "from": "a@b.lan", "to": ["c@b.lan", "d@b.lan"],
                       "starttls": False}}
    mail = alertmanager_config(relay, {"smtp_ca_file": "/ca.pem"})["receivers"][0]["email_configs"][0]
    assert mail["require_tls"] is False and "auth_username" not in mail and "auth_password_file" not in mail
    assert mail["to"] == "c@b.lan, d@b.lan" and mail["tls_config"] == {"ca_file": "/ca.pem"}


def test_timing_overrides_and_warning_repeat():
    config = alertmanager_config({**FULL, "group_wait": "30s", "repeat_interval": "24h"}, SECRETS)
    assert config["route"]["group_wait"] == "30s" and config["route"]["repeat_interval"] == "24h"
    assert config["route"]["routes"][0]["repeat_interval"] == "24h"    # warnings never repeat more often


def test_only_the_chosen_channels():
    receiver = alertmanager_config({"telegram": {"chat_id": "-100123"}}, {"telegram_bot_token": TOKEN})["receivers"][0]
    assert set(receiver) == {"name", "telegram_configs"} and receiver["telegram_configs"][0]["chat_id"] == -100123
    assert alertmanager_config(None, {})["receivers"] == [{"name": "dono"}]


@pytest.mark.parametrize("settings, secrets, fragment", [
    ({"whatsapp": FULL["whatsapp"]}, SECRETS, "WhatsApp is the only alert channel"),
    (FULL, {**SECRETS, "telegram_bot_token": "x"}, "monitoring_alerting_telegram_bot_token"),
    (FULL, None, "secrets must be a mapping"),
])
def test_config_refuses_what_errors_names(settings, secrets, fragment):
    with pytest.raises(AnsibleFilterError, match=fragment):
        alertmanager_config(settings, secrets)


@pytest.mark.parametrize("value, seconds", [("1m", 60), ("1h30m", 5400), ("4h", 14400), ("2d", 172800),
                                            ("500ms", 0.5), ("1w", 604800)])
def test_durations(value, seconds):
    assert duration_seconds(value) == seconds


# ---- the silence playbook's plan ---------------------------------------------------------------------------------

ALL = [{"name": "alertname", "value": ".+", "isRegex": True}]
NOW = "2026-12-06T10:00:00+00:00"


def _silence(ends_at, comment="troca de disco", state="active", author="borgstack", matchers=None, sid="s1"):
    return {"id": sid, "status": {"state": state}, "createdBy": author, "comment": comment, "endsAt": ends_at,
            "startsAt": "2026-12-06T09:00:00.000Z",
            "matchers": matchers or [{"name": "alertname", "value": ".+", "isRegex": True, "isEqual": True}]}


@pytest.mark.parametrize("silences, action", [
    ([], "add"),
    ([_silence("2026-12-06T12:00:00.000Z")], "none"),
    ([_silence("2026-12-06T11:55:00Z")], "none"),                  # within 10 minutes of the asked end
    ([_silence("2026-12-06T11:45:00Z")], "update"),                 # ends sooner: extended
    ([_silence("2026-12-06T12:00:00Z", comment="outra coisa")], "add"),
    ([_silence("2026-12-06T12:00:00Z", state="expired")], "add"),
    ([_silence("2026-12-06T12:00:00Z", state="pending")], "add"),
    ([_silence("2026-12-06T12:00:00Z", author="maria")], "add"),
    ([_silence("2026-12-06T12:00:00Z", matchers=[{"name": "service", "value": "n8n", "isRegex": False,
                                                  "isEqual": True}])], "add"),
    ([_silence("2026-12-06T12:00:00Z", matchers=[{"name": "alertname", "value": ".+", "isRegex": True,
                                                  "isEqual": False}])], "add"),
])
def test_silence_plan(silences, action):
    plan = alertmanager_silence_plan(silences, ALL, "troca de disco", 2, NOW)
    assert plan["action"] == action
    assert plan["id"] == ("s1" if action in ("none", "update") else None)
    if action != "none":
        assert plan["ends_at"] == "2026-12-06T12:00:00Z"


def test_silence_plan_naive_now_is_utc():
    assert alertmanager_silence_plan([], ALL, "x", "1.5", "2026-12-06T10:00:00")["ends_at"] == "2026-12-06T11:30:00Z"


@pytest.mark.parametrize("args, fragment", [
    (({}, ALL, "x", 2, NOW), "silences must be the list"),
    (([], [], "x", 2, NOW), "silence_matchers"),
    (([], [{"name": "a"}], "x", 2, NOW), "silence_matchers"),
    (([], ALL, " ", 2, NOW), "silence_reason"),
    (([], ALL, "x", 0, NOW), "silence_hours"),
    (([], ALL, "x", 169, NOW), "silence_hours"),
    (([], ALL, "x", "duas", NOW), "silence_hours"),
    (([], ALL, "x", 2, 5), "now must be"),
])
def test_silence_plan_refuses(args, fragment):
    with pytest.raises(AnsibleFilterError, match=fragment):
        alertmanager_silence_plan(*args)


def test_amtool_matchers():
    assert amtool_matchers([{"name": "alertname", "value": ".+", "isRegex": True},
                            {"name": "service", "value": "n8n"},
                            {"name": "severity", "value": "warning", "isEqual": False},
                            {"name": "instance", "value": 'a"b\\', "isRegex": True, "isEqual": False}]) == [
        'alertname=~".+"', 'service="n8n"', 'severity!="warning"', 'instance!~"a\\"b\\\\"']
    for bad in ("x", [{"name": "bad name", "value": "x"}], [{"value": "x"}]):
        with pytest.raises(AnsibleFilterError, match="silence_matchers"):
            amtool_matchers(bad)


# ---- the WhatsApp relay's text -----------------------------------------------------------------------------------

def _relay():
    path = REPO_ROOT / "roles" / "monitoring" / "files" / "alert_whatsapp_relay.py"
    spec = importlib.util.spec_from_file_location("alert_whatsapp_relay", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alert(status="firing", n=1):
    return {"status": status, "labels": {"alertname": "SessaoWhatsAppFechada", "service": "evolution_api"},
            "annotations": {"summary": f"Sessão {n} do WhatsApp fechada", "impact": "clientes não são atendidos",
                            "action": "pareie o número de novo no Evolution"}}


def test_relay_text_firing_and_resolved():
    relay = _relay()
    text = relay.format_message({"alerts": [_alert(), _alert("resolved", 2)]})
    assert text == ("🔴 *PROBLEMA*: Sessão 1 do WhatsApp fechada\n*O que afeta:* clientes não são atendidos\n"
                    "*Primeiro passo:* pareie o número de novo no Evolution\n_evolution_api · SessaoWhatsAppFechada_"
                    "\n\n✅ *RESOLVIDO*: Sessão 2 do WhatsApp fechada\n*O que afeta:* clientes não são atendidos\n"
                    "_evolution_api · SessaoWhatsAppFechada_")


def test_relay_text_is_bounded_and_counts_what_it_left():
    relay = _relay()
    alerts = [_alert(n=n) for n in range(200)]
    text = relay.format_message({"alerts": alerts, "truncatedAlerts": 3})
    assert len(text) <= relay.MAX_TEXT + 100
    shown = text.count("*PROBLEMA*")
    assert text.endswith(f"(e mais {200 - shown + 3} alertas; veja o painel de monitoramento)")
    with pytest.raises(ValueError):
        relay.format_message({"alerts": []})


# ---- plugin wiring and sidecar docs ------------------------------------------------------------------------------

NAMES = ["alerting_errors", "alerting_warnings", "alertmanager_config", "alertmanager_silence_plan", "amtool_matchers"]


def test_filter_module_exports():
    assert FilterModule().filters() == {name: getattr(alerting, name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_sidecar_doc_matches_signature(name):
    check_sidecar_doc(getattr(alerting, name), Path(alerting.__file__).parent / f"{name}.yml")


def test_relay_text_body_and_disabled_mode(tmp_path):
    relay = _relay()
    assert relay.format_text({"text": "Relatório semanal"}) == "Relatório semanal"
    assert len(relay.format_text({"text": "x" * 5000})) == relay.MAX_TEXT
    for bad in ({"text": "  "}, {"texto": "a"}, ["a"]):
        with pytest.raises(ValueError, match="non-empty text"):
            relay.format_text(bad)
    # Without a number (WhatsApp alerts off) the relay starts without Evolution's settings and sends nothing.
    assert relay.Relay({}).enabled is False
    key = tmp_path / "key"
    key.write_text("k\n")
    on = relay.Relay({"EVOLUTION_URL": "http://evo:8080/", "EVOLUTION_API_KEY_FILE": str(key),
                      "ALERT_NUMBER": "+5511987654321"})
    assert (on.enabled, on.url, on.api_key, on.number) == (True, "http://evo:8080", "k", "5511987654321")
