# SPDX-License-Identifier: GPL-3.0-or-later
"""The customer-service workflows (WhatsApp through Evolution API <-> Chatwoot), run by the real n8n of the lab.

site.yml installed the shipped workflows (roles/n8n/files/workflows/) and their credentials with the lab's derived
secrets (the lab inventory sets n8n_customer_service_workflows: true). Each test starts from a clean contract
server and sends the architecture document's example payloads (Workflow 1: messages.upsert, message_created,
messages.update) to n8n's production webhooks from inside the internal network, then asserts what n8n called.

What did not run: there is no Evolution API nor Chatwoot image in the lab. Both are played by the contract server
(lab/contract, molecule/stack/tests/contract.py) under their stack host names (borgstack-evolution-api:8080,
borgstack-chatwoot:3000): it accepts only the paths, headers and bodies the upstream APIs document and keeps
Chatwoot's contacts, conversations and messages, but it is not the apps - no WhatsApp session, no Chatwoot UI,
Evolution's webhook is posted by the test, not by Evolution. n8n, PostgreSQL (error/status tables) and Redis
(the per-number lock) are the real ones.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import threading
import time
import urllib.parse
from typing import Any

import pytest
from conftest import changed_tasks, derived, public_ip, run_site, wait_for

import contract

EVOLUTION_HOOK = "/webhook/borgstack/evolution"
CHATWOOT_HOOK = "/webhook/borgstack/chatwoot"
REPLAY_HOOK = "/webhook/borgstack/replay"
INSTALL_TASK = "Install the customer-service workflows and their credentials"
# The lab's wiring (playbooks/group_vars/all/customer_service.yml).
INSTANCE = "principal"
ACCOUNT = 1
INBOX = 1
# The scenario's second number (molecule/stack/inventory/hosts.yml, borgstack_customer_service.numbers): its own
# instance, an inbox Chatwoot gives the next id (found by name) and a team (Chatwoot keeps team names in lower case).
SALES = {"instance": "vendas", "inbox": "Vendas", "inbox_id": 2, "team": "vendas", "team_id": 1}


# --- payloads: the architecture document's examples ------------------------------------------------------------------
def incoming(number: str, text: str, message_id: str, from_me: bool = False, instance: str = INSTANCE) -> dict:
    """Evolution API -> n8n, messages.upsert (architecture document, Workflow 1 example 1)."""
    return {
        "event": "messages.upsert",
        "instance": instance,
        "data": {
            "key": {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": from_me, "id": message_id},
            "message": {"conversation": text},
            "messageTimestamp": 1735632000,
            "pushName": "João Silva",
            "messageType": "conversation",
            "owner": "5511999887766@s.whatsapp.net",
        },
        "destination": "http://borgstack-n8n:5678/webhook/borgstack/evolution",
        "date_time": "2025-01-01T12:00:00.000Z",
        "server_url": "http://borgstack-evolution-api:8080",
    }


def agent_reply(number: str, text: str, private: bool = False, message_type: str = "outgoing") -> dict:
    """Chatwoot -> n8n, message_created (architecture document, Workflow 1 example 5)."""
    return {
        "event": "message_created",
        "id": 98235,
        "content": text,
        "created_at": "2025-01-01T12:02:00.000Z",
        "message_type": message_type,
        "content_type": "text",
        "private": private,
        "conversation": {"id": 1523, "inbox_id": INBOX, "status": "open"},
        "sender": {"id": 5, "name": "Maria Atendente", "type": "agent"},
        "contact": {"id": 42, "name": "João Silva", "phone_number": f"+{number}"},
        "account": {"id": ACCOUNT, "name": "BorgStack Support"},
    }


def status_update(number: str, message_id: str, status: str) -> dict:
    """Evolution API -> n8n, messages.update (architecture document, Workflow 1 example 7)."""
    return {
        "event": "messages.update",
        "instance": INSTANCE,
        "data": {"key": {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": True, "id": message_id},
                 "status": status, "messageTimestamp": 1735632150},
    }


# --- helpers ---------------------------------------------------------------------------------------------------------
def items(value: Any) -> list:
    return list(value.values()) if isinstance(value, dict) else list(value or [])


def chatwoot(server, kind: str) -> list:
    return items(server.state()["chatwoot"][kind])


# The owner's alert number (molecule/stack/inventory/hosts.yml, monitoring_alerting.whatsapp.number, digits only as
# the relay sends it): the monitoring service's WhatsApp relay reaches the same Evolution contract server, and an
# alert that fires while these tests run (e.g. customer-service errors growing, after a test stored an error row)
# is not a customer reply. The alert-channel tests count those sends; these tests leave them out.
OWNER_ALERT_NUMBER = "5511900009999"


def _to_owner(body) -> bool:
    return isinstance(body, dict) and body.get("number") == OWNER_ALERT_NUMBER


def sent(server) -> list:
    return [s for s in items(server.state()["evolution"]["sent"]) if not _to_owner(s)]


def calls_to(server, service: str, method: str | None = None, path_part: str = "") -> list:
    return [c for c in server.calls() if c["service"] == service and (method is None or c["method"] == method)
            and path_part in c["path"] and not _to_owner(c.get("body"))]


def contacts_with(server, number: str) -> list:
    return [c for c in chatwoot(server, "contacts") if c.get("identifier") == f"whatsapp:{number}"]


def post(server, path: str, payload: dict) -> None:
    status, body = server.post_to_n8n(path, payload)
    assert status == 200, f"n8n answered {status} to POST {path}: {body}"


def sql(host, query: str) -> list[list[str]]:
    """Rows of a query on n8n's database (the error and status tables live there)."""
    out = host.check_output(
        f"docker exec borgstack-postgresql psql -U postgres -d n8n -tA -F '|' -c {json.dumps(query)}")
    return [line.split("|") for line in out.splitlines() if line]


# The customer-service workflows whose executions the "nothing else happened" checks wait on (fixed ids,
# scripts/n8n-workflows.py): WhatsApp -> Chatwoot, Chatwoot -> WhatsApp, the replay.
CS_WORKFLOWS = "('BorgStackCsEvo01', 'BorgStackCsCwt01', 'BorgStackCsRpl01')"


def finished_executions(host) -> int:
    """How many executions of the customer-service workflows n8n has finished (they are all saved)."""
    return int(sql(host, f'SELECT count(*) FROM execution_entity WHERE "workflowId" IN {CS_WORKFLOWS} '
                         "AND status NOT IN ('new', 'running', 'waiting')")[0][0])


def settle(host, before: int, events: int) -> None:
    """Wait until n8n has finished at least ``events`` more executions of the customer-service workflows than
    ``before`` and runs none of them: the events a test posted were handled to the end, and whatever they were going
    to send has been sent. Replaces a fixed sleep before a "nothing else was sent" check."""
    running = (f'SELECT count(*) FROM execution_entity WHERE "workflowId" IN {CS_WORKFLOWS} '
               "AND status IN ('new', 'running')")
    wait_for(f"{events} more finished executions and none running",
             lambda: finished_executions(host) >= before + events and sql(host, running)[0][0] == "0", timeout=60)


def error_rows(host, number: str) -> list[list[str]]:
    """The error-table rows of one number's events ([] while the workflow has not created the table yet)."""
    if sql(host, "SELECT to_regclass('borgstack_cs_errors') IS NULL")[0][0] == "t":
        return []
    return sql(host, "SELECT id, step, status, replayed_at IS NOT NULL FROM borgstack_cs_errors "
                     f"WHERE payload->'data'->'key'->>'remoteJid' = '{number}@s.whatsapp.net' ORDER BY id")


def assert_nothing_rejected(server) -> None:
    rejected = [c for c in server.calls() if c.get("rejected_reason")]
    assert not rejected, f"the contract server refused calls n8n made: {rejected}"


# --- fixture ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(host):
    lab = host.ansible.get_variables().get("ansible_host") or host.backend.host
    started = contract.start(
        lab, "borgstack_internal", ["borgstack-evolution-api", "borgstack-chatwoot"],
        {"EVOLUTION_API_KEY": derived("evolution_api_key", 48),
         "CHATWOOT_API_TOKEN": derived("chatwoot_api_token", 32),
         "CHATWOOT_WEBHOOK_URL": "http://borgstack-n8n:5678" + CHATWOOT_HOOK,
         "CHATWOOT_ACCOUNT_ID": str(ACCOUNT), "CHATWOOT_INBOX_ID": str(INBOX), "EVOLUTION_INSTANCE": INSTANCE,
         # Both numbers of the scenario: the default one and SALES.
         "EVOLUTION_INSTANCES": f"{INSTANCE},{SALES['instance']}",
         "CHATWOOT_INBOXES": f"{INBOX}:WhatsApp,{SALES['inbox_id']}:{SALES['inbox']}",
         "CHATWOOT_TEAMS": f"{SALES['team_id']}:{SALES['team']}"})
    yield started
    contract.stop(lab)


@pytest.fixture()
def clean(server):
    server.clear_faults()
    server.reset()
    yield server
    server.clear_faults()


# --- WhatsApp -> Chatwoot --------------------------------------------------------------------------------------------
def test_incoming_message_makes_one_contact_conversation_and_message(host, clean):
    number, text = "5511987654321", "Olá, preciso de ajuda com meu pedido #12345"
    before = finished_executions(host)
    post(clean, EVOLUTION_HOOK, incoming(number, text, "3EB0C8F3E7E3A7D8C0F1"))
    messages = wait_for("the message in Chatwoot", lambda: chatwoot(clean, "messages"))
    settle(host, before, 1)   # anything extra n8n might still send has been sent
    contacts = contacts_with(clean, number)
    assert len(contacts) == 1, f"expected one contact whatsapp:{number}, found {contacts}"
    assert contacts[0].get("phone_number") == f"+{number}"
    conversations = chatwoot(clean, "conversations")
    assert len(conversations) == 1, conversations
    messages = chatwoot(clean, "messages")
    assert len(messages) == 1, messages
    assert messages[0]["content"] == text
    assert messages[0].get("message_type") in ("incoming", 0), messages[0]
    assert_nothing_rejected(clean)

    # A second message of the same customer goes into the same (open) conversation.
    post(clean, EVOLUTION_HOOK, incoming(number, "Alguém aí?", "3EB0C8F3E7E3A7D8C0F2"))
    wait_for("the second message", lambda: len(chatwoot(clean, "messages")) == 2)
    assert len(contacts_with(clean, number)) == 1
    assert len(chatwoot(clean, "conversations")) == 1
    assert_nothing_rejected(clean)


def test_two_messages_at_once_from_a_new_number_make_one_contact(host, clean):
    number = "5521912345678"
    before = finished_executions(host)
    threads = [threading.Thread(target=post, args=(clean, EVOLUTION_HOOK, incoming(number, f"mensagem {n}", f"ID{n}")))
               for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for("both messages in Chatwoot", lambda: len(chatwoot(clean, "messages")) == 2)
    settle(host, before, 2)
    assert len(contacts_with(clean, number)) == 1, chatwoot(clean, "contacts")
    assert len(chatwoot(clean, "conversations")) == 1, chatwoot(clean, "conversations")
    assert sorted(m["content"] for m in chatwoot(clean, "messages")) == ["mensagem 1", "mensagem 2"]


def test_from_me_messages_are_not_sent_to_chatwoot(host, clean):
    before = finished_executions(host)
    post(clean, EVOLUTION_HOOK, incoming("5511987654321", "enviada pelo próprio número", "FROMME1", from_me=True))
    # A message sent right after it is delivered: once it is there, the fromMe one had its chance too.
    post(clean, EVOLUTION_HOOK, incoming("5531988887777", "depois", "AFTER1"))
    wait_for("the later message", lambda: chatwoot(clean, "messages"))
    settle(host, before, 2)
    assert [m["content"] for m in chatwoot(clean, "messages")] == ["depois"]
    assert not contacts_with(clean, "5511987654321")


def test_chatwoot_failing_is_retried_1_2_4_s_then_stored_and_replayed(host, clean):
    number = f"55419{int(time.time()) % 10**8:08d}"   # a number of its own: error rows outlive the contract's reset
    assert not error_rows(host, number), f"leftover error rows for {number}"
    clean.fault(service="chatwoot", method="*", path_regex=".*", status=500, times=-1)
    post(clean, EVOLUTION_HOOK, incoming(number, "vai falhar", "FAIL1"))
    rows = wait_for("the error-table row", lambda: error_rows(host, number), timeout=40)
    tries = calls_to(clean, "chatwoot")
    assert len(tries) == 4, f"expected the first call and 3 retries, got {[(c['method'], c['path']) for c in tries]}"
    gaps = [round(b["at"] - a["at"], 2) for a, b in zip(tries, tries[1:])]
    for gap, wanted in zip(gaps, (1, 2, 4)):
        assert wanted - 0.1 <= gap <= wanted + 1.5, f"retry gaps {gaps}, wanted about 1, 2 and 4 s"
    assert len(rows) == 1 and rows[0][2] == "500" and rows[0][3] == "f", rows
    assert not chatwoot(clean, "messages")

    # Chatwoot is back: the next message goes through, and the replay delivers the stored one (once).
    clean.clear_faults()
    post(clean, EVOLUTION_HOOK, incoming("5541933332222", "já funciona", "NEXT1"))
    wait_for("the next message", lambda: [m for m in chatwoot(clean, "messages") if m["content"] == "já funciona"])
    # The operator's one command (playbooks/replay.yml, docs/whatsapp-chatwoot.md): it asks the replay workflow for
    # the row and returns once the row is marked replayed.
    replay = run_site("-e", f"replay_id={rows[0][0]}", playbook="playbooks/replay.yml", timeout=300)
    assert replay.rc == 0 and replay.changed >= 1, replay.output[-3000:]
    assert error_rows(host, number)[0][3] == "t"
    wait_for("the replayed message", lambda: [m for m in chatwoot(clean, "messages") if m["content"] == "vai falhar"])
    before = finished_executions(host)
    post(clean, REPLAY_HOOK, {})
    # Nothing left: the same command changes nothing.
    again = run_site("-e", f"replay_id={rows[0][0]}", playbook="playbooks/replay.yml", timeout=300)
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    settle(host, before, 1)
    assert len([m for m in chatwoot(clean, "messages") if m["content"] == "vai falhar"]) == 1
    assert len(contacts_with(clean, number)) == 1


def test_two_numbers_never_cross(clean):
    """Issue 21 item 3: the same customer writes to both numbers of the scenario - each message lands in its
    number's inbox (the second number's inbox and team found by name), the agents' replies leave through the
    instance of the inbox they were written in, and an instance that is not one of the numbers reaches nothing."""
    customer = "5511955554444"
    post(clean, EVOLUTION_HOOK, incoming(customer, "quero comprar", "TWO-SALES1", instance=SALES["instance"]))
    post(clean, EVOLUTION_HOOK, incoming(customer, "preciso de suporte", "TWO-MAIN1"))
    post(clean, EVOLUTION_HOOK, incoming(customer, "de outra instância", "TWO-OTHER1", instance="outra"))
    # Posted last: once it is in Chatwoot, n8n has had the unknown instance's event before it.
    post(clean, EVOLUTION_HOOK, incoming(customer, "de novo no suporte", "TWO-MAIN2"))
    wait_for("three messages in Chatwoot", lambda: len(chatwoot(clean, "messages")) >= 3)
    conversations = {c["inbox_id"]: c for c in chatwoot(clean, "conversations")}
    assert sorted(conversations) == [INBOX, SALES["inbox_id"]], chatwoot(clean, "conversations")
    assert conversations[SALES["inbox_id"]].get("team_id") == SALES["team_id"], conversations[SALES["inbox_id"]]
    assert conversations[INBOX].get("team_id") is None, conversations[INBOX]
    by_conversation = {}
    for message in chatwoot(clean, "messages"):
        # Sorted: the per-customer lock lets the two default-number messages go in either order.
        by_conversation.setdefault(message["conversation_display_id"], []).append(message["content"])
        by_conversation[message["conversation_display_id"]].sort()
    sales, main = conversations[SALES["inbox_id"]]["display_id"], conversations[INBOX]["display_id"]
    assert by_conversation == {sales: ["quero comprar"], main: ["de novo no suporte", "preciso de suporte"]}, \
        by_conversation
    assert len(contacts_with(clean, customer)) == 1

    # An agent answers in the sales inbox, then in the default one: each reply leaves through its own instance.
    clean.agent_message(sales, "Temos sim, qual modelo?")
    wait_for("the sales reply sent", lambda: sent(clean))
    clean.agent_message(main, "Vamos verificar seu pedido.")
    wait_for("both replies sent", lambda: len(sent(clean)) >= 2)
    assert [(s["instance"], s["number"], s["text"]) for s in sent(clean)] == [
        (SALES["instance"], customer, "Temos sim, qual modelo?"), (INSTANCE, customer, "Vamos verificar seu pedido.")]
    # (The sends only: the scheduled reconciliation's findMessages calls are POSTs too.)
    assert [c["path"] for c in calls_to(clean, "evolution", "POST", "/message/")] == [
        f"/message/sendText/{SALES['instance']}", f"/message/sendText/{INSTANCE}"]
    assert_nothing_rejected(clean)


def session_redis(host, *command: str) -> list[str]:
    """redis-cli in the Redis container on n8n's database 0 (the session workflow's counters), one line per value
    ('' for a missing key); the password through docker exec's environment."""
    run = host.run(
        "REDISCLI_AUTH=\"$(python3 -c 'import json; print(json.load(open(\"/etc/borgstack/backup.json\"))"
        "[\"redis_password\"])')\" docker exec -e REDISCLI_AUTH borgstack-redis redis-cli --no-auth-warning -n 0 "
        + " ".join(shlex.quote(part) for part in command))
    assert run.rc == 0, run.stderr
    # One line per value, a missing key an empty one: only the last newline goes.
    return run.stdout.removesuffix("\n").split("\n")


def session_counters(host) -> list[str]:
    """The counters of both numbers' instances: [default, sales]."""
    return session_redis(host, "MGET", f"borgstack:cs:session:{INSTANCE}", f"borgstack:cs:session:{SALES['instance']}")


def test_closed_session_notes_each_open_conversation_of_its_inbox_once(host, clean):
    """Issue 22 item 6: Evolution reports the default number's session closed (connection.update, state close,
    statusReason 401: the phone logged out - the only kind of close Evolution 2.2.3 does not reconnect from): a
    private note in each open conversation of that number's inbox, none in the other number's; the same close again
    posts nothing; open posts the "reconectado" note in the same conversations and clears the counter. The notes are
    private: Chatwoot's message_created for them sends nothing to WhatsApp. Evolution's webhook is posted by the test
    (no WhatsApp session in the lab); n8n, Redis (the counter) and the workflows are the real ones."""
    session_redis(host, "DEL", f"borgstack:cs:session:{INSTANCE}", f"borgstack:cs:session:{SALES['instance']}")
    # Two customers of the default number and one of the sales number write at once (three open conversations).
    posts = [threading.Thread(target=post, args=(clean, EVOLUTION_HOOK, incoming(
        f"551197777000{n}", text, f"SES-{n}", instance=instance))) for n, (instance, text) in enumerate(
            [(INSTANCE, "cadê meu pedido?"), (INSTANCE, "quero trocar"), (SALES["instance"], "tem em azul?")])]
    for thread in posts:
        thread.start()
    for thread in posts:
        thread.join()
    wait_for("three conversations in Chatwoot", lambda: len(chatwoot(clean, "messages")) >= 3)
    by_inbox = {}
    for conversation in chatwoot(clean, "conversations"):
        by_inbox.setdefault(conversation["inbox_id"], set()).add(conversation["display_id"])
    assert {inbox: len(ids) for inbox, ids in by_inbox.items()} == {INBOX: 2, SALES["inbox_id"]: 1}, by_inbox

    def notes() -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for message in chatwoot(clean, "messages"):
            if message["private"]:
                found.setdefault(message["conversation_display_id"], []).append(message["content"])
        return found

    post(clean, EVOLUTION_HOOK, contract.evolution_connection_update("close", 401, instance=INSTANCE))
    wait_for("a note in both open conversations of the default inbox", lambda: len(notes()) >= 2)
    # The same close again: the counter shows the workflow took it (2) - and posted nothing more (checked below,
    # after the open, whose count 3 comes after it).
    post(clean, EVOLUTION_HOOK, contract.evolution_connection_update("close", 401, instance=INSTANCE))
    wait_for("the repeated close counted", lambda: session_counters(host)[0] == "2")
    post(clean, EVOLUTION_HOOK, contract.evolution_connection_update("open", instance=INSTANCE))
    wait_for("the reconnection note in both conversations",
             lambda: sum(len(texts) for texts in notes().values()) >= 4)
    found = notes()
    assert set(found) == by_inbox[INBOX], f"notes outside the closed number's inbox: {found}"
    for texts in found.values():
        assert len(texts) == 2, found
        assert texts[0].startswith("WhatsApp desconectado") and "NÃO chegam ao cliente" in texts[0], texts
        assert texts[1].startswith("WhatsApp reconectado"), texts
    assert wait_for("the counter cleared", lambda: session_counters(host)[0] == "" and session_counters(host)) == \
        ["", ""], "the sales number's counter moved"
    # (Only to these customers: the lab's WhatsApp alert relay may send alerts through the same contract server.)
    leaked = [s for s in sent(clean) if s["number"].startswith("55119777700")]
    assert not leaked, f"a private note went out to WhatsApp: {leaked}"
    assert [c["query"] for c in calls_to(clean, "chatwoot", "GET")
            if c["path"] == f"/api/v1/accounts/{ACCOUNT}/conversations"] == [{"inbox_id": str(INBOX), "status": "open", "page": "1"}] * 2
    assert_nothing_rejected(clean)


def test_calls_through_caddy_are_dropped(host, clean, root_cert):
    """From the internet the webhooks answer (n8n's webhook answers before the workflow runs) but the workflows
    drop what came through Caddy (X-Forwarded-For): nobody outside can inject messages, replies or replays."""
    payload = json.dumps(incoming("5511911112222", "de fora", "XFF1"))
    before = finished_executions(host)
    domain = "lab.borgstack.test"
    for path in (EVOLUTION_HOOK, REPLAY_HOOK):
        run = subprocess.run(
            ["curl", "--silent", "--max-time", "20", "--resolve", f"n8n.{domain}:443:{public_ip(host)}",
             "--cacert", str(root_cert), "-H", "Content-Type: application/json", "--data", payload,
             "--output", "/dev/null", "--write-out", "%{http_code}", f"https://n8n.{domain}{path}"],
            capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0 and run.stdout == "200", f"POST {path} through Caddy: {run.stdout} {run.stderr}"
    settle(host, before, 2)
    assert not calls_to(clean, "chatwoot"), "a webhook call from the internet reached Chatwoot"


def test_status_updates_are_recorded(host, clean):
    post(clean, EVOLUTION_HOOK, status_update("5511987654321", "BAE5F8D3C2A1B0E9F7D6", "READ"))
    # The workflow creates the table on its first status event: until then the probe waits (to_regclass is NULL,
    # which psql prints as an empty line - no row - so ask IS NOT NULL, always one row).
    table = "SELECT to_regclass('borgstack_cs_message_status') IS NOT NULL"
    rows = wait_for("the status row", lambda: sql(
        host, "SELECT status, from_me FROM borgstack_cs_message_status WHERE message_id = 'BAE5F8D3C2A1B0E9F7D6' "
              "ORDER BY id DESC LIMIT 1") if sql(host, table)[0][0] == "t" else None)
    assert rows[0] == ["READ", "t"]
    assert not calls_to(clean, "chatwoot"), "a status update must not reach Chatwoot"


# --- Chatwoot -> WhatsApp --------------------------------------------------------------------------------------------
def test_agent_reply_is_sent_once_and_private_notes_are_not(host, clean):
    number, text = "5511987654321", "Olá João! Vou verificar o status do pedido #12345 para você."
    before = finished_executions(host)
    post(clean, CHATWOOT_HOOK, agent_reply(number, "nota interna", private=True))
    post(clean, CHATWOOT_HOOK, agent_reply(number, "mensagem do cliente", message_type="incoming"))
    post(clean, CHATWOOT_HOOK, agent_reply(number, text))
    wait_for("the reply sent through Evolution API", lambda: calls_to(clean, "evolution", "POST", "/message/sendText/"))
    settle(host, before, 3)
    calls = calls_to(clean, "evolution", "POST", "/message/sendText/")
    assert len(calls) == 1, calls
    assert calls[0]["path"] == f"/message/sendText/{urllib.parse.quote(INSTANCE)}"
    assert calls[0]["body"]["number"] == number and calls[0]["body"]["text"] == text, calls[0]["body"]
    assert calls[0]["status"] in (200, 201), calls[0]
    assert_nothing_rejected(clean)


def test_reply_written_in_the_chatwoot_contract_reaches_whatsapp(host, clean):
    """The same through the contract server's own message_created webhook (Chatwoot's real payload shape: the
    contact under conversation.meta.sender), after a customer's first message made the conversation."""
    number = "5511976543210"
    before = finished_executions(host)
    post(clean, EVOLUTION_HOOK, incoming(number, "oi", "FIRST1"))
    conversation = wait_for("the conversation", lambda: chatwoot(clean, "conversations"))[0]
    clean.agent_message(conversation.get("display_id", conversation["id"]), "Olá, em que posso ajudar?")
    clean.agent_message(conversation.get("display_id", conversation["id"]), "só para a equipe", private=True)
    wait_for("the reply sent", lambda: calls_to(clean, "evolution", "POST", "/message/sendText/"))
    settle(host, before, 3)   # the customer's message and the two messages the agent wrote
    calls = calls_to(clean, "evolution", "POST", "/message/sendText/")
    assert [(c["body"]["number"], c["body"]["text"]) for c in calls] == [(number, "Olá, em que posso ajudar?")]
    assert_nothing_rejected(clean)


def test_a_429_waits_for_retry_after(clean):
    clean.fault(service="evolution", method="POST", path_regex="/message/sendText/.*", status=429, times=1,
                retry_after=3)
    post(clean, CHATWOOT_HOOK, agent_reply("5511987654321", "depois do 429"))
    wait_for("the reply after the 429", lambda: len(calls_to(clean, "evolution", "POST", "/message/sendText/")) == 2)
    first, second = calls_to(clean, "evolution", "POST", "/message/sendText/")
    assert first["status"] == 429 and second["status"] in (200, 201), (first, second)
    assert 3 - 0.1 <= second["at"] - first["at"] <= 3 + 1.5, f"waited {second['at'] - first['at']:.2f} s, not 3"


# --- media both ways -------------------------------------------------------------------------------------------------
def media_message(number: str, message_id: str, kind: str, size: int, **fields: Any) -> dict:
    """messages.upsert of a received media message as Evolution API 2.2.3 sends it (prepareMessage of the Baileys
    message: mediaKey, directPath, fileLength as a decimal string; documents already unwrapped)."""
    content = {"url": f"https://mmg.whatsapp.net/v/t62/{message_id}", "mediaKey": "bGFiLW1lZGlhLWtleQ==",
               "directPath": f"/v/t62/{message_id}", "fileSha256": "c2hh", "fileLength": str(size), **fields}
    return contract.evolution_messages_upsert(number, "", message_id=message_id, message={kind: content},
                                              message_type=kind)


MEDIA_IN = (  # kind, extra fields, bytes, the name Chatwoot should show
    ("imageMessage", {"mimetype": "image/jpeg", "caption": "foto do produto", "height": 2, "width": 2},
     b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, None),
    ("audioMessage", {"mimetype": "audio/ogg; codecs=opus", "seconds": 3, "ptt": True},
     b"OggS" + bytes(range(255, -1, -1)) * 8, None),
    ("videoMessage", {"mimetype": "video/mp4", "caption": "vídeo do defeito", "seconds": 5},
     b"\x00\x00\x00\x18ftypmp42" + bytes(3000), None),
    ("documentMessage", {"mimetype": "application/pdf", "fileName": "nota fiscal.pdf", "title": "nota fiscal.pdf"},
     b"%PDF-1.4\n" + bytes(range(256)) * 16, "nota fiscal.pdf"),
    ("stickerMessage", {"mimetype": "image/webp"}, b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(500), None),
)


def test_whatsapp_media_arrive_in_chatwoot_as_attachments(clean):
    """Image, voice note, video, document and sticker - sent in one batch, waited for once - arrive as attachments
    of incoming messages, byte for byte, with their type and name; a file above Chatwoot's 40 MB never leaves
    WhatsApp: its message says what it was and a private note tells the agents why it is not attached."""
    number = "5511955554444"
    expected = {}
    for n, (kind, fields, data, name) in enumerate(MEDIA_IN):
        message_id = f"MEDIA{n}"
        clean.whatsapp_media(message_id, data)
        # getBase64FromMediaMessage names a file without a name <key.id>.<mime-types extension>
        extension = {"image/jpeg": "jpeg", "audio/ogg; codecs=opus": "oga", "video/mp4": "mp4",
                     "image/webp": "webp"}.get(fields["mimetype"], "pdf")
        expected[message_id] = (kind, fields, data, name or f"{message_id}.{extension}")
        post(clean, EVOLUTION_HOOK, media_message(number, message_id, kind, len(data), **fields))
    post(clean, EVOLUTION_HOOK, media_message(number, "HUGE1", "videoMessage", 41 * 1024 * 1024,
                                              mimetype="video/mp4"))
    wait_for("every media message and the note in Chatwoot", lambda: len(chatwoot(clean, "messages")) == 7,
             timeout=90)
    messages = chatwoot(clean, "messages")
    by_id = {m["content_attributes"].get("whatsapp_message_id"): m for m in messages if not m["private"]}
    for message_id, (kind, fields, data, name) in expected.items():
        msg = by_id[message_id]
        assert msg["message_type"] == "incoming" and len(msg.get("attachments", [])) == 1, msg
        attachment = msg["attachments"][0]
        assert clean.blob(attachment["blob_key"]) == data, f"{kind}: the bytes differ"
        # ActiveStorage keeps the media type without its parameters (audio/ogg; codecs=opus -> audio/ogg)
        assert attachment["content_type"] == fields["mimetype"].split(";")[0], (kind, attachment)
        assert attachment["filename"] == name, (kind, attachment)
        assert attachment["file_type"] == {"audioMessage": "audio", "videoMessage": "video",
                                           "documentMessage": "file"}.get(kind, "image"), (kind, attachment)
        assert (msg["content"] or "") == fields.get("caption", ""), msg
    huge = by_id["HUGE1"]
    assert huge["content"] == "[vídeo]" and not huge.get("attachments"), huge
    notes = [m for m in messages if m["private"]]
    assert len(notes) == 1 and "41 MB" in notes[0]["content"] and "40 MB" in notes[0]["content"], notes
    downloads = calls_to(clean, "evolution", "POST", "/chat/getBase64FromMediaMessage/")
    assert sorted(c["body"]["message"]["key"]["id"] for c in downloads) == sorted(expected), "HUGE1 was downloaded"
    assert len(contacts_with(clean, number)) == 1 and len(chatwoot(clean, "conversations")) == 1
    assert_nothing_rejected(clean)


MEDIA_OUT = (  # file name, content type, bytes, the Evolution API call expected
    ("foto.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, ("sendMedia", "image")),
    ("recado.ogg", "audio/ogg", b"OggS" + bytes(700), ("sendWhatsAppAudio", "audio")),
    ("demo.mp4", "video/mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(2000), ("sendMedia", "video")),
    ("orçamento 2026.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 12, ("sendMedia", "document")),
)


def test_agent_attachments_reach_whatsapp_as_media(clean):
    """An agent's attachments (with a text) are fetched from Chatwoot's internal address and sent as WhatsApp
    media of the matching kind, byte for byte, the text as the caption of the first; an image above WhatsApp's
    5 MB gets a private note in the conversation instead of a silent drop. One batch, one wait."""
    number = "5511944443333"
    post(clean, EVOLUTION_HOOK, incoming(number, "oi", "MEDIAOUT1"))
    conversation = wait_for("the conversation", lambda: chatwoot(clean, "conversations"))[0]
    conv_id = conversation.get("display_id", conversation["id"])
    clean.agent_attachments(conv_id, "segue o material", [(n, t, d) for n, t, d, _call in MEDIA_OUT])
    clean.agent_attachments(conv_id, "", [("grande.png", "image/png", b"\x89PNG\r\n\x1a\n")], pad_to=6 * 1024 * 1024)
    wait_for("four media sent and the note", lambda: len([s for s in sent(clean) if s.get("kind")]) == 4 and [
        m for m in chatwoot(clean, "messages") if m["private"]], timeout=90)
    media = [s for s in sent(clean) if s.get("kind")]
    for (name, ctype, data, (endpoint, mediatype)), out in zip(MEDIA_OUT, media):
        assert out["number"] == number and out["mediatype"] == mediatype, out
        assert out["sha256"] == __import__("hashlib").sha256(data).hexdigest() and out["size"] == len(data), out
        if endpoint == "sendMedia":
            assert out["mimetype"] == ctype and out["fileName"] == name, out
    assert media[0]["caption"] == "segue o material" and all(not m.get("caption") for m in media[1:]), media
    assert not calls_to(clean, "evolution", "POST", "/message/sendText/"), "the text went as a caption"
    note = [m for m in chatwoot(clean, "messages") if m["private"]][0]
    assert "grande.png" in note["content"] and "6 MB" in note["content"] and "5 MB" in note["content"], note
    assert len(calls_to(clean, "evolution", "POST", "/message/send")) == 4
    assert_nothing_rejected(clean)


# --- the role ------------------------------------------------------------------------------------------------------
def installed(output: str) -> bool:
    """Whether the install task reported a change (the default callback prefixes the role's name)."""
    return any(task.endswith(INSTALL_TASK) for task in changed_tasks(output))


_REST = r"""
const http = require('http');
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
function rq(method, path, body, cookie) {
  return new Promise((resolve, reject) => {
    const data = body ? Buffer.from(JSON.stringify(body)) : null;
    const headers = data ? { 'content-type': 'application/json', 'content-length': data.length } : {};
    if (cookie) headers.cookie = cookie;
    const req = http.request({ host: '127.0.0.1', port: 5678, method, path, headers }, (res) => {
      let text = ''; res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject); if (data) req.write(data); req.end();
  });
}
(async () => {
  // n8n allows 5 logins a minute from one address: wait out its window (Retry-After) when the tests used them up.
  let login;
  for (let i = 0; i < 10; i += 1) {
    login = await rq('POST', '/rest/login', { emailOrLdapLoginId: input.email, password: input.password });
    if (login.status !== 429) break;
    await new Promise((r) => { setTimeout(r, Math.min(Number(login.headers['retry-after']) || 10, 60) * 1000); });
  }
  const out = [];
  if (login.status === 200) {
    const cookie = login.headers['set-cookie'][0].split(';')[0];
    for (const [method, path, body] of input.requests) {
      let payload = body;
      if (method === 'PATCH' && path.startsWith('/rest/workflows/')) {
        const current = JSON.parse((await rq('GET', path, null, cookie)).body).data;
        payload = { ...body, versionId: current.versionId };
      }
      const answer = await rq(method, path, payload, cookie);
      out.push({ status: answer.status, data: answer.status === 200 ? JSON.parse(answer.body).data : answer.body });
    }
  }
  process.stdout.write(JSON.stringify({ login: login.status, out }));
})().catch((e) => { process.stderr.write(String(e)); process.exit(1); });
"""
OWNER = "admin@example.com"
FIRST_PASSWORD = "/opt/borgstack/services/n8n/owner-password"


def n8n_login(host, password: str, *requests: tuple) -> tuple[int, list[dict]]:
    """Log in to n8n's internal REST API (the editor's API) as the owner with ``password``, from inside the n8n
    container, and send ``requests`` when the login worked; returns (the login's status, the answers)."""
    spec = json.dumps({"email": OWNER, "password": password, "requests": [list(r) for r in requests]})
    result = host.run(f"docker exec -i borgstack-n8n node --eval {shlex.quote(_REST)} <<'EOF'\n{spec}\nEOF")
    assert result.rc == 0, result.stderr
    answer = json.loads(result.stdout)
    return answer["login"], answer["out"]


def first_password(host) -> str:
    return host.file(FIRST_PASSWORD).content_string.strip()


def n8n_rest(host, *requests: tuple, password: str | None = None) -> list[dict]:
    """Requests to n8n's internal REST API as the owner, logged in with ``password`` (else the first password:
    every test that changes the owner's password puts it back)."""
    status, answers = n8n_login(host, password or first_password(host), *requests)
    assert status == 200, f"the owner's login answered {status}"
    return answers


def test_edited_workflow_is_replaced_unless_kept_and_own_workflows_are_never_touched(host):
    """An edit in the editor of a shipped workflow is undone by the next run - unless its id is in
    n8n_workflows_keep; a workflow the operator made is never touched; then a rerun changes nothing."""
    shipped = "BorgStackCsCwt01"
    own, edited = n8n_rest(
        host,
        ("POST", "/rest/workflows", {"name": "Meu fluxo", "nodes": [], "connections": {}, "settings": {},
                                     "active": False}),
        ("PATCH", f"/rest/workflows/{shipped}", {"name": "Editado no editor"}))
    assert own["status"] == 200 and edited["status"] == 200, (own, edited)
    own_id, own_version = own["data"]["id"], own["data"]["versionId"]

    kept = run_site("--tags", "n8n", "-e", json.dumps({"n8n_workflows_keep": [shipped]}))
    assert kept.rc == 0, kept.output[-3000:]
    assert not installed(kept.output), "a kept workflow was replaced"
    assert n8n_rest(host, ("GET", f"/rest/workflows/{shipped}", None))[0]["data"]["name"] == "Editado no editor"

    replaced = run_site("--tags", "n8n")
    assert replaced.rc == 0, replaced.output[-3000:]
    assert installed(replaced.output), replaced.output[-3000:]
    back, mine = n8n_rest(host, ("GET", f"/rest/workflows/{shipped}", None), ("GET", f"/rest/workflows/{own_id}", None))
    assert back["data"]["name"] == "BorgStack: Chatwoot -> WhatsApp" and back["data"]["active"] is True, back
    assert mine["data"]["versionId"] == own_version and mine["data"]["name"] == "Meu fluxo", mine
    # Clean up (n8n 1.113 deletes only archived workflows).
    n8n_rest(host, ("POST", f"/rest/workflows/{own_id}/archive", None), ("DELETE", f"/rest/workflows/{own_id}", None))


PLAY_KEY = "BorgStackPlayApiKey"


def play_key(host) -> list[list[str]]:
    """The play's n8n API key row: [label, is it the owner's, scopes] ([] when missing)."""
    return sql(host, 'SELECT k.label, k."userId" = u.id, k.scopes FROM user_api_keys k, "user" u '
                     f"WHERE k.id = '{PLAY_KEY}' AND u.\"roleSlug\" = 'global:owner'")


def test_owner_password_changed_by_the_operator_does_not_stop_the_play(host):
    """The operator changes the owner's password in n8n (Settings > Personal, the editor's PATCH /rest/me/password):
    the play never used it - a rerun changes nothing, still replaces an edited shipped workflow, and leaves the
    operator's password the one that works. The first password is put back at the end (other tests log in with it)."""
    first, mine = first_password(host), "Operator-Chosen-Passw0rd"
    changed = n8n_rest(host, ("PATCH", "/rest/me/password", {"currentPassword": first, "newPassword": mine}))
    assert changed[0]["status"] == 200, changed
    try:
        rerun = run_site("--tags", "n8n")
        assert rerun.rc == 0, rerun.output[-3000:]
        assert rerun.changed == 0, changed_tasks(rerun.output)

        edited = n8n_rest(host, ("PATCH", "/rest/workflows/BorgStackCsEvo01", {"name": "Editado pelo operador"}),
                          password=mine)
        assert edited[0]["status"] == 200, edited
        replaced = run_site("--tags", "n8n")
        assert replaced.rc == 0, replaced.output[-3000:]
        assert installed(replaced.output), replaced.output[-3000:]
        back = n8n_rest(host, ("GET", "/rest/workflows/BorgStackCsEvo01", None), password=mine)[0]["data"]
        assert back["name"] == "BorgStack: WhatsApp -> Chatwoot" and back["active"] is True, back

        assert n8n_login(host, mine)[0] == 200, "the operator's password no longer logs in"
        assert n8n_login(host, first)[0] == 401, "the first password logs in again: the play reset the owner"
    finally:
        n8n_rest(host, ("PATCH", "/rest/me/password", {"currentPassword": mine, "newPassword": first}), password=mine)


def test_deleted_play_api_key_is_recreated(host):
    """The play's key is listed in Settings > n8n API ("BorgStack play"): deleted there, the next run signs a new
    one for the owner, and n8n's public API accepts it."""
    assert play_key(host) and play_key(host)[0][1] == "t", play_key(host)
    deleted = n8n_rest(host, ("DELETE", f"/rest/api-keys/{PLAY_KEY}", None))
    assert deleted[0]["status"] == 200 and not play_key(host), (deleted, play_key(host))

    checked = run_site("--tags", "n8n", "--check")
    assert checked.rc == 0 and installed(checked.output), checked.output[-3000:]
    assert not play_key(host), "a check run wrote the key"

    healed = run_site("--tags", "n8n")
    assert healed.rc == 0 and installed(healed.output), healed.output[-3000:]
    label, owners, scopes = play_key(host)[0]
    assert label == "BorgStack play" and owners == "t" and "workflow:activate" in json.loads(scopes), play_key(host)
    key = sql(host, f"SELECT \"apiKey\" FROM user_api_keys WHERE id = '{PLAY_KEY}'")[0][0]
    answer = host.run("docker exec -i borgstack-n8n sh -c 'read -r key; wget -q -O - --header \"X-N8N-API-KEY: $key\" "
                      "http://127.0.0.1:5678/api/v1/workflows/BorgStackCsCwt01' <<'EOF'\n" + key + "\nEOF")
    assert answer.rc == 0 and json.loads(answer.stdout)["active"] is True, answer.stderr


def test_rerun_changes_no_workflow(host):
    """A second run of the n8n role finds every workflow and credential as shipped: nothing to import. A check run
    reads only and finds nothing to do either."""
    for args in (("--tags", "n8n"), ("--tags", "n8n", "--check")):
        run = run_site(*args)
        assert run.rc == 0, run.output[-3000:]
        assert not installed(run.output), run.output[-3000:]
        assert run.changed == 0, changed_tasks(run.output)
