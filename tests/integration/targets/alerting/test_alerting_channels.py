# SPDX-License-Identifier: GPL-3.0-or-later
"""The owner's alert channels, end to end through the REAL Alertmanager 0.25 (Debian bookworm's
prometheus-alertmanager in the lab's monitoring image borgstack-lab/monitoring:bookworm-1) configured by the
``alertmanager_config`` filter:

- e-mail to a real SMTP server (aiosmtpd in this process) that demands STARTTLS (a throwaway CA made here) and
  AUTH with the password Alertmanager reads from ``auth_password_file``;
- Telegram to the Bot API contract server (lab/contract/telegram_contract.py: only ``sendMessage`` with the
  documented fields, Telegram's HTML parsing, the right token and chat);
- WhatsApp through the relay (roles/monitoring/files/alert_whatsapp_relay.py, run as its own process with its secrets in
  files) to the Evolution API 2.2.3 contract server (lab/contract/contract_server.py, ``POST
  /message/sendText/{instance}`` with ``apikey``).

Five alerts of one group must arrive as ONE notification per channel carrying all five, with the pt-BR text
(summary, what it affects, first step); resolving them must bring one resolved notification per channel and no
other message (the resolved ones arriving after several group intervals prove that time passed). Then
playbooks/silence.yml runs against the same Alertmanager: check mode changes nothing, the first run creates the
silence, the second finds it (changed=0).

What does NOT run: Telegram, a mail provider and Evolution API themselves (contract servers and a local SMTP server
stand in), the official prom/alertmanager image (same 0.25 configuration syntax), Prometheus (alerts are posted to
Alertmanager's API v2 as Prometheus would). The test's only additions to the filter's configuration are
``global.telegram_api_url`` (the contract server instead of api.telegram.org) and short group timings.
Everything listens on 127.0.0.1; the Alertmanager container shares the host's network to reach it.
"""
from __future__ import annotations

import email
import email.policy
import errno
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest
import yaml
from lab_prerequisites import require_docker_images, unavailable

REPO_ROOT = Path(__file__).resolve().parents[4]
CONTRACT_DIR = REPO_ROOT / "lab" / "contract"
sys.path.insert(0, str(CONTRACT_DIR))
# pylint: disable=wrong-import-position,import-error
import contract_server  # noqa: E402
import telegram_contract  # noqa: E402

from ansible_collections.borgstack.stack.plugins.filter.alerting import alertmanager_config  # noqa: E402

IMAGE = "borgstack-lab/monitoring:bookworm-1"     # the monitoring service's lab image: /bin/alertmanager, amtool
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
CHAT_ID = 987654321
OWNER = "+5511987654321"
SMTP_USER = "alertas@empresa.example"
SMTP_PASSWORD = "s3nha-do-smtp-de-teste"
RELAY_TOKEN = "relay-token-de-teste-0123456789"
EVOLUTION_KEY = "evolution-key-de-teste-0123456789"
MOUNT = "/etc/alertmanager"
DEADLINE = 45


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _wait(what: str, probe: Callable[[], Any], deadline: float = DEADLINE, container: str = "") -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    logs = ""
    if container:
        done = subprocess.run(["docker", "logs", "--tail", "15", container], capture_output=True, text=True,
                              check=False)
        logs = f"; Alertmanager's log: {done.stdout}{done.stderr}"
    raise AssertionError(f"timed out after {deadline}s waiting for {what}{logs}")


class Mailbox:
    """aiosmtpd handler: keeps every accepted message (parsed) and the login that sent it."""

    def __init__(self) -> None:
        self.messages: List[Dict[str, Any]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  # pylint: disable=unused-argument
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": message,
                              "login": session.auth_data, "tls": session.ssl is not None})
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):  # pylint: disable=unused-argument
    from aiosmtpd.smtp import AuthResult, LoginPassword  # pylint: disable=import-outside-toplevel
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SMTP_USER and \
        auth_data.password.decode() == SMTP_PASSWORD
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def _tls_files(tmp: Path) -> ssl.SSLContext:
    """A throwaway self-signed certificate for 127.0.0.1 (cryptography, which ansible-core requires): the server's
    certificate, and the CA file Alertmanager trusts (smtp_ca.pem)."""
    # pylint: disable=import-outside-toplevel
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (tmp / "smtp_ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "smtp.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "smtp_ca.pem", tmp / "smtp.key")
    return context


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    require_docker_images(IMAGE)
    try:
        from aiosmtpd.controller import Controller  # pylint: disable=import-outside-toplevel
    except ImportError:
        unavailable("needs aiosmtpd (pip install -r requirements.txt)")
    tmp = tmp_path_factory.mktemp("alerting")
    tmp.chmod(0o755)
    cleanups: List[Callable[[], Any]] = []
    try:
        class MailServer(Controller):
            """LOGIN's challenges as Postfix (Cyrus SASL), Gmail and Exchange send them, "Username:" and "Password:"
            (aiosmtpd's own, "User Name\\0", is refused by Alertmanager's LOGIN client, as no real server sends it)."""

            def factory(self):
                server = super().factory()
                server.AuthLoginUsernameChallenge = "Username:"
                server.AuthLoginPasswordChallenge = "Password:"
                return server

        mailbox = Mailbox()
        smtp_port = _free_port()
        smtp = MailServer(mailbox, hostname="127.0.0.1", port=smtp_port, tls_context=_tls_files(tmp),
                          require_starttls=True, authenticator=_authenticator, auth_required=True)
        smtp.start()
        cleanups.append(smtp.stop)

        telegram = telegram_contract.serve(BOT_TOKEN, CHAT_ID)
        cleanups.append(telegram.shutdown)

        # A port _free_port saw free can be taken by another process before the server binds it (seen under load:
        # "Address already in use"): new ports, a few times, rather than a red run.
        for attempt in range(5):
            ports = {name: str(_free_port()) for name in ("EVOLUTION_PORT", "CHATWOOT_PORT", "CONTROL_PORT")}
            try:
                evolution_servers = contract_server.serve({"EVOLUTION_API_KEY": EVOLUTION_KEY,
                                                           "CHATWOOT_API_TOKEN": "x" * 24,
                                                           "CONTRACT_BIND": "127.0.0.1", **ports})
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == 4:
                    raise
            else:
                break
        cleanups.extend(server.shutdown for server in evolution_servers)

        # Alertmanager 0.25 reads auth_password_file whole (notify/email/email.go getPassword: no trim until 0.26):
        # the password file must end without a newline. The other two are trimmed by their readers.
        (tmp / "smtp_password").write_text(SMTP_PASSWORD, encoding="utf-8")
        for name, value in (("relay_token", RELAY_TOKEN), ("evolution_key", EVOLUTION_KEY)):
            (tmp / name).write_text(value + "\n", encoding="utf-8")
        (tmp / "smtp.key").unlink()
        for path in tmp.iterdir():
            path.chmod(0o644)  # read by the container's prometheus user (test-only secrets)
        relay_port = _free_port()
        relay = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, str(REPO_ROOT / "roles" / "monitoring" / "files" / "alert_whatsapp_relay.py")],
            env={"PATH": os.environ["PATH"], "EVOLUTION_URL": f"http://127.0.0.1:{ports['EVOLUTION_PORT']}",
                 "EVOLUTION_API_KEY_FILE": str(tmp / "evolution_key"), "ALERT_NUMBER": OWNER,
                 "EVOLUTION_INSTANCE": "principal", "RELAY_TOKEN_FILE": str(tmp / "relay_token"),
                 "RELAY_LISTEN": f"127.0.0.1:{relay_port}"},
            stderr=subprocess.PIPE, text=True)
        cleanups.append(relay.kill)

        settings = {
            "email": {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "from": SMTP_USER,
                      "to": ["dono@empresa.example"], "username": SMTP_USER, "starttls": True},
            "telegram": {"chat_id": CHAT_ID},
            "whatsapp": {"number": OWNER, "instance": "principal"},
            # Lab-only timings (the filter refuses a repeat under an hour; none is reached here).
            "group_wait": "2s", "group_interval": "3s", "repeat_interval": "1h",
        }
        secrets = {"smtp_password_file": f"{MOUNT}/smtp_password", "smtp_ca_file": f"{MOUNT}/smtp_ca.pem",
                   "telegram_bot_token": BOT_TOKEN, "whatsapp_relay_url": f"http://127.0.0.1:{relay_port}/alert",
                   "whatsapp_relay_token_file": f"{MOUNT}/relay_token"}
        config = json.loads(json.dumps(alertmanager_config(settings, secrets)))
        config["global"] = {"telegram_api_url": f"http://127.0.0.1:{telegram.server_address[1]}"}
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        (tmp / "alertmanager.yml").chmod(0o644)

        am_port = _free_port()
        name = f"borgstack-alerting-am-{os.getpid()}"
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host", "-v", f"{tmp}:{MOUNT}:ro",
                        "--entrypoint", "/bin/alertmanager", IMAGE, f"--config.file={MOUNT}/alertmanager.yml", "--storage.path=/alertmanager",
                        f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                       check=True, capture_output=True, timeout=60)
        cleanups.append(lambda: subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False))
        url = f"http://127.0.0.1:{am_port}"

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        try:
            _wait("Alertmanager to be ready", ready, 30)
        except AssertionError:
            logs = subprocess.run(["docker", "logs", "--tail", "30", name], capture_output=True, text=True,
                                  check=False)
            raise AssertionError(f"Alertmanager did not start: {logs.stdout}{logs.stderr}") from None
        yield {"url": url, "container": name, "mailbox": mailbox, "telegram": telegram.contract,
               "evolution": evolution_servers[0].contract, "relay": relay, "config": config, "port": am_port}
    finally:
        for cleanup in reversed(cleanups):
            cleanup()


SUMMARY = "Disco {n} do servidor passou de 85 % (uso > 85 %)"
IMPACT = "se encher, o n8n e o PostgreSQL param: clientes no WhatsApp não são atendidos"
ACTION = "apague backups antigos em /var/backups ou aumente o disco"


def _alerts(start: datetime, ends_at: datetime | None) -> List[Dict[str, Any]]:
    """The five alerts of one group, started at ``start`` (resolved at ``ends_at``). The start is the moment they are
    posted: Alertmanager flushes a new group at once, without its group_wait, when its first alert started longer
    than group_wait ago - so an older start would race the other four into the first notification (under load the
    first e-mail held one alert)."""
    alerts = []
    for n in range(1, 6):
        alert = {"labels": {"alertname": "DiscoQuaseCheio", "service": "host", "severity": "warning",
                            "mountpoint": f"/disco{n}"},
                 "annotations": {"summary": SUMMARY.format(n=n), "impact": IMPACT, "action": ACTION},
                 "startsAt": start.isoformat(), "generatorURL": "http://prometheus.example/graph"}
        if ends_at:
            alert["endsAt"] = ends_at.isoformat()
        alerts.append(alert)
    return alerts


def _mail_text(entry: Dict[str, Any]) -> str:
    return entry["message"].get_body(preferencelist=("plain",)).get_content()


def test_five_alerts_arrive_once_on_every_channel_then_resolve(stack: Dict[str, Any]) -> None:
    mailbox, telegram, evolution = stack["mailbox"], stack["telegram"], stack["evolution"]
    # Evolution API fails the first sendText (500): the relay answers 502 and Alertmanager must retry.
    evolution.add_fault({"service": "evolution", "method": "POST", "path_regex": "^/message/sendText/", "status": 500,
                         "times": 1})
    started = datetime.now(timezone.utc)
    _http(f"{stack['url']}/api/v2/alerts", _alerts(started, None))

    _wait("the firing e-mail, Telegram message and WhatsApp text",
          lambda: mailbox.messages and telegram.calls and evolution.sent, container=stack["container"])
    mail = mailbox.messages[0]
    assert mail["tls"] and mail["login"].login.decode() == SMTP_USER, "mail sent without STARTTLS and login"
    assert mail["to"] == ["dono@empresa.example"]
    assert mail["message"]["Subject"] == "[BorgStack] Alerta: DiscoQuaseCheio (5)"
    text = _mail_text(mail)
    for n in range(1, 6):
        assert f"PROBLEMA: {SUMMARY.format(n=n)}" in text
    assert text.count(f"O que afeta: {IMPACT}") == 5 and text.count(f"Primeiro passo: {ACTION}") == 5
    html = mail["message"].get_body(preferencelist=("html",)).get_content()
    assert "uso &gt; 85 %" in html and "não são atendidos" in html

    call = telegram.calls[0]
    assert call["status"] == 200, call
    assert call["params"]["parse_mode"] == "HTML" and str(call["params"]["chat_id"]) == str(CHAT_ID)
    assert call["text"].count("PROBLEMA") == 5 and "(uso > 85 %)" in call["text"] and IMPACT in call["text"]

    send_calls = [c for c in evolution.calls if "/message/sendText/" in str(c.get("path"))]
    assert [c.get("status") for c in send_calls[:2]] == [500, 201], send_calls[:2]
    sent = evolution.sent[0]
    assert sent["number"] == OWNER[1:]
    assert sent["text"].count("🔴 *PROBLEMA*") == 5 and f"*Primeiro passo:* {ACTION}" in sent["text"]

    # Ended a second ago: after their start (the firing notification waited group_wait, 2 s, for them).
    _http(f"{stack['url']}/api/v2/alerts", _alerts(started, datetime.now(timezone.utc) - timedelta(seconds=1)))
    _wait("the resolved e-mail, Telegram message and WhatsApp text",
          lambda: len(mailbox.messages) >= 2 and len(telegram.calls) >= 2 and len(evolution.sent) >= 2,
          container=stack["container"])
    assert mailbox.messages[1]["message"]["Subject"] == "[BorgStack] Resolvido: DiscoQuaseCheio (5)"
    resolved = _mail_text(mailbox.messages[1])
    assert resolved.count("RESOLVIDO: ") == 5 and "PROBLEMA" not in resolved and "Primeiro passo" not in resolved
    assert telegram.calls[1]["status"] == 200 and telegram.calls[1]["text"].count("RESOLVIDO") == 5
    assert evolution.sent[1]["text"].count("✅ *RESOLVIDO*") == 5 and "PROBLEMA" not in evolution.sent[1]["text"]
    # Grouping: one firing and one resolved notification per channel, after several group intervals (3 s) passed.
    assert (len(mailbox.messages), len(telegram.calls), len(evolution.sent)) == (2, 2, 2)
    assert not [c for c in telegram.calls if c["status"] != 200]


def _playbook(stack: Dict[str, Any], tmp: Path, *extra: str) -> Dict[str, Any]:
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"borgstack": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}), encoding="utf-8")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"))
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(REPO_ROOT / "playbooks" / "silence.yml"),
         "-e", f"silence_alertmanager_container={stack['container']}",
         "-e", f"silence_alertmanager_url=http://127.0.0.1:{stack['port']}",
         "-e", "silence_hours=2", "-e", "silence_reason='troca do disco 2'", *extra],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return json.loads(result.stdout)["stats"]["localhost"]


def _silences(stack: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [s for s in _http(f"{stack['url']}/api/v2/silences") if s["status"]["state"] == "active"]


def test_silence_playbook_check_create_then_keep(stack: Dict[str, Any], tmp_path: Path) -> None:
    assert _silences(stack) == []
    assert _playbook(stack, tmp_path, "--check")["changed"] == 1
    assert _silences(stack) == [], "check mode created a silence"
    assert _playbook(stack, tmp_path)["changed"] == 1
    silences = _silences(stack)
    assert len(silences) == 1 and silences[0]["comment"] == "troca do disco 2"
    assert silences[0]["createdBy"] == "borgstack"
    assert silences[0]["matchers"] == [{"name": "alertname", "value": ".+", "isRegex": True, "isEqual": True}]
    ends = datetime.fromisoformat(silences[0]["endsAt"].replace("Z", "+00:00"))
    assert timedelta(minutes=110) < ends - datetime.now(timezone.utc) <= timedelta(minutes=120)
    assert _playbook(stack, tmp_path)["changed"] == 0
    assert [s["id"] for s in _silences(stack)] == [silences[0]["id"]]


VARIANTS = {
    "email-465-no-login": ({"email": {"smtp_host": "smtp.example.com", "smtp_port": 465, "from": "a@example.com",
                                      "to": ["b@example.com", "c@example.com"]}}, {}),
    "email-relay-25": ({"email": {"smtp_host": "relay.lan", "smtp_port": 25, "from": "a@lan.example",
                                  "to": "b@lan.example", "starttls": False}}, {"smtp_ca_file": f"{MOUNT}/ca.pem"}),
    "telegram-group": ({"telegram": {"chat_id": "-1001234567890"}, "repeat_interval": "1d"},
                       {"telegram_bot_token": BOT_TOKEN}),
    "telegram-whatsapp": ({"telegram": {"chat_id": 42}, "whatsapp": {"number": OWNER}},
                          {"telegram_bot_token": BOT_TOKEN, "whatsapp_relay_url": "http://borgstack-alert-relay:9099/alert"}),
    "no-channel": ({}, {}),
}


def test_every_variant_is_valid_for_alertmanager_0_25(tmp_path: Path) -> None:
    """amtool check-config (Alertmanager 0.25's own parser) accepts what the filter renders for the other channel
    combinations too (implicit TLS, a relay without login, a group chat, no channel at all)."""
    require_docker_images(IMAGE)
    tmp_path.chmod(0o755)
    names = []
    for name, (settings, secrets) in VARIANTS.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(json.loads(json.dumps(alertmanager_config(settings, secrets))),
                                       allow_unicode=True), encoding="utf-8")
        path.chmod(0o644)
        names.append(f"{MOUNT}/{name}.yml")
    done = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{tmp_path}:{MOUNT}:ro",
                           "--entrypoint", "amtool", IMAGE, "check-config", *names],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(VARIANTS), done.stdout
