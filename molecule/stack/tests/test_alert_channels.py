# SPDX-License-Identifier: GPL-3.0-or-later
"""The WhatsApp alert channel and the weekly report, in the converged stack.

1. A real fault (the backup's textfile metric says the last run failed) makes the real Prometheus fire BackupFalhou;
   the real Alertmanager posts it to the monitoring service's WhatsApp relay container, which calls sendText on the
   Evolution API contract server (lab/contract: only what Evolution API 2.2.3 documents, the stack's derived API key,
   the owner's number); the repair brings the resolved message the same way.
2. ``playbooks/weekly-report.yml`` runs the report now: a pt-BR e-mail reaches a real SMTP server (aiosmtpd on this
   machine) and the same text reaches WhatsApp through the relay. Its figures are compared with figures computed
   here another way: uptime from the raw probe samples, the alerts from count_over_time over ALERTS, the messages
   handled from n8n's execution table in PostgreSQL (one message is sent through the real n8n first).

What did not run: Evolution API itself (no image here; the contract server stands in under its host name) and a
real mail provider (aiosmtpd accepts what Alertmanager and the report send).
"""
from __future__ import annotations

import re
import shlex
import time

import pytest
import contract
from conftest import derived, run_site, wait_for
from test_customer_service import EVOLUTION_HOOK, incoming, sql
from test_monitoring import container_ip, query, smtp  # noqa: F401  pylint: disable=unused-import

OWNER = "5511900009999"
RELAY = "borgstack-monitoring-whatsapp-relay"
TEXTFILE = "/var/lib/prometheus/node-exporter/borgstack_backup.prom"
SUMMARY = "O último backup falhou"


@pytest.fixture(scope="module")
def evolution(host):
    lab = host.ansible.get_variables().get("ansible_host") or host.backend.host
    started = contract.start(
        lab, "borgstack_internal", ["borgstack-evolution-api", "borgstack-chatwoot"],
        {"EVOLUTION_API_KEY": derived("evolution_api_key", 48), "CHATWOOT_API_TOKEN": derived("chatwoot_api_token", 32),
         "CHATWOOT_WEBHOOK_URL": "http://borgstack-n8n:5678/webhook/borgstack/chatwoot",
         "CHATWOOT_ACCOUNT_ID": "1", "CHATWOOT_INBOX_ID": "1", "EVOLUTION_INSTANCE": "principal",
         # Both numbers of the scenario: the scheduled reconciliation searches each (findMessages) meanwhile.
         "EVOLUTION_INSTANCES": "principal,vendas"})
    yield started
    contract.stop(lab)


@pytest.fixture(scope="module")
def prometheus(host):
    return container_ip(host, "borgstack-monitoring")


def sent_texts(server, *words: str) -> list:
    """The texts Evolution accepted (sendText answered 201) for the owner's number through the instance "principal"
    whose text holds every word. Read from the server's state, which keeps whole texts (its call log shortens those
    over 512 characters, like the weekly report, to a digest)."""
    return [sent["text"] for sent in server.state()["evolution"]["sent"]
            if sent["instance"] == "principal" and sent["number"] == OWNER and all(w in sent["text"] for w in words)]


def test_relay_runs_internal_only_with_its_key_in_a_file(host):
    relay = host.check_output(f"docker inspect -f '{{{{json .HostConfig.PortBindings}}}} {{{{json .Config.Env}}}}' "
                              f"{RELAY}")
    assert relay.startswith(("{}", "null")), f"the relay publishes a port: {relay}"
    assert derived("evolution_api_key", 48) not in relay, "Evolution's key is in the relay's environment"
    assert "ALERT_NUMBER=+5511900009999" in relay and "EVOLUTION_API_KEY_FILE=" in relay
    key = host.file("/opt/borgstack/services/monitoring/evolution-api-key")
    assert (key.mode, key.uid) == (0o400, 65534)
    assert key.content_string == derived("evolution_api_key", 48)


def test_an_alert_reaches_whatsapp_then_its_resolution(host, evolution):
    """Fault -> Prometheus -> Alertmanager -> relay -> sendText; repair -> resolved sendText."""
    evolution.reset()
    saved = host.run(f"cat {TEXTFILE}").stdout if host.file(TEXTFILE).exists else None
    host.run_test(f"printf 'borgstack_backup_last_status 0\\n' > {TEXTFILE}.tmp && mv {TEXTFILE}.tmp {TEXTFILE}")
    try:
        fired = wait_for("the WhatsApp alert", lambda: sent_texts(evolution, "PROBLEMA", SUMMARY), 90, every=2)
    finally:
        if saved is None:
            host.run_test(f"rm -f {TEXTFILE}")
        else:
            host.run_test(f"printf %s {shlex.quote(saved)} > {TEXTFILE}")
    assert "*Primeiro passo:* Veja `journalctl -u borgstack-backup -n 50`" in fired[0]
    assert "BackupFalhou" in fired[0]
    resolved = wait_for("the WhatsApp resolution", lambda: sent_texts(evolution, "RESOLVIDO", SUMMARY), 90, every=2)
    assert "Primeiro passo" not in resolved[0]
    rejected = [c for c in evolution.calls() if c.get("rejected_reason")]
    assert not rejected, rejected


def _figures(text: str, section: str) -> list:
    block = text.split(section, 1)[1].split("\n\n", 1)[0]
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def _num(value: str) -> float:
    return float(value.replace(",", "."))


def test_weekly_report_matches_prometheus(host, evolution, prometheus, smtp):  # noqa: F811
    # One customer message through the real n8n, so "messages handled" is not zero by construction.
    evolution.reset()
    status, body = evolution.post_to_n8n(EVOLUTION_HOOK, incoming("5511912345678", "Relatório, teste", "3EB0REPORT01"))
    assert status == 200, body
    wait_for("the message in Chatwoot", lambda: evolution.state()["chatwoot"]["messages"], 60)
    # The definition the dashboard counts over 24 h (queries.yaml: borgstack_cs_messages), counted here by hand.
    count = ("SELECT count(*) FROM execution_entity AS e JOIN execution_data AS d ON d.\"executionId\" = e.id"
             " WHERE e.status = 'success' AND e.\"workflowId\" = 'BorgStackCsEvo01'"
             " AND e.\"startedAt\" > now() - interval '7 days'"
             " AND strpos(d.data, '\"Start\":') > 0 AND strpos(d.data, '\"Error row\":') = 0")
    # n8n saves the execution when the workflow ends, after the message reached Chatwoot: wait for that row too (read
    # once, the count was 0 under load, 2026-12-07).
    received = wait_for("the execution saved in n8n's database", lambda: int(sql(host, count)[0][0]), 60, every=1)
    assert received >= 1
    exported = f'borgstack_cs_messages_handled{{direction="in",period="7d"}} >= {received}'
    wait_for("the exporter's count", lambda: query(host, prometheus, exported), 60, every=3)
    # The dashboard's 24 h figure counts the same message in the same scrape (one definition, the period the only
    # difference).
    assert query(host, prometheus, 'borgstack_cs_messages_handled{direction="in",period="24h"} >= 1')

    # The report reads Prometheus at one instant between these two (the lab host shares this machine's clock): an
    # alert still firing (the lab's own) keeps growing while the test goes on, so its count is bounded by both.
    started = time.time()
    run = run_site(playbook="playbooks/weekly-report.yml", timeout=300)
    assert run.rc == 0, run.output[-3000:]
    mail = wait_for("the report e-mail", lambda: smtp.find("Relatório semanal"), 60, every=1)[0]
    ended = time.time()
    text = mail["body"].replace("\r\n", "\n")   # the e-mail's lines end in CRLF
    assert mail["to"] == ["dono@example.com"]
    assert sent_texts(evolution, "Relatório semanal", "DISPONIBILIDADE"), "the report did not reach WhatsApp"

    # Uptime per service: the mean of the raw probe samples of each container, averaged per service.
    raw = query(host, prometheus, 'probe_success{job="health"}[7d]')
    per_service: dict = {}
    for series in raw:
        values = [float(v) for _t, v in series["values"]]
        per_service.setdefault(series["metric"]["service"], []).append(sum(values) / len(values))
    reported = dict(re.match(r"(\S+): ([0-9,]+) %$", line).groups() for line in _figures(text, "DISPONIBILIDADE"))
    assert set(reported) == set(per_service), (reported, sorted(per_service))
    for service, means in per_service.items():
        assert abs(_num(reported[service]) - 100 * sum(means) / len(means)) < 0.5, (service, reported[service])

    # The alerts of the week: BackupFalhou from the test above at least, and the same set as Prometheus' own count.
    # Prometheus counts the rule evaluations that found each alert firing (10 s apart in the lab).
    firing = 'sum by (alertname, service) (count_over_time(ALERTS{alertstate="firing"}[7d]))'
    low, high = ({(s["metric"]["alertname"], s["metric"].get("service", "")): 10 * float(s["value"][1])
                  for s in query(host, prometheus, firing, at=at)} for at in (started, ended))
    listed = {}
    for line in _figures(text, "ALERTAS DA SEMANA"):
        name, service, hours, minutes = re.match(
            r"(\S+)(?: \((\S+)\))?: \d+ vez(?:es)?, ativo por (?:(\d+) h )?(\d+) min$", line).groups()
        listed[(name, service or "")] = 3600 * int(hours or 0) + 60 * int(minutes)
    assert "BackupFalhou" in {name for name, _service in listed}, listed
    assert set(low) <= set(listed) <= set(high), (listed, low, high)
    for key, seconds in listed.items():   # the report rounds to minutes
        assert low.get(key, 0) - 30 <= seconds <= high[key] + 30, (key, seconds, low.get(key), high[key])

    # Messages handled: PostgreSQL's own count (the exporter's figure may only have grown since).
    assert _num(re.search(r"Mensagens recebidas e entregues ao Chatwoot: (\d+)", text).group(1)) >= received

    # Disks now: the same percentage Prometheus gives at this moment (within what a minute can change).
    for line in _figures(text, "DISCOS"):
        mount, now = re.match(r"(\S+): .* -> ([0-9,]+) % agora", line).groups()
        current = query(host, prometheus, f'100 * (1 - node_filesystem_avail_bytes{{mountpoint="{mount}"}} '
                                          f'/ node_filesystem_size_bytes{{mountpoint="{mount}"}})')
        assert current and abs(float(current[0]["value"][1]) - _num(now)) < 1, (line, current)
    assert _figures(text, "DISCOS"), "no disk in the report"
