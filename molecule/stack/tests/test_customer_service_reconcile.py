# SPDX-License-Identifier: GPL-3.0-or-later
"""Nothing lost between WhatsApp and Chatwoot, run by the real n8n of the lab:
- the reconciliation (architecture, customer service, scenario 3): messages that reached Evolution API - on both
  numbers of the scenario - while n8n was stopped are in Chatwoot exactly once, in order, in their number's inbox,
  marked recovered, after the scheduled reconciliation ran once n8n was back (its schedule trigger and the webhooks
  of the restarted n8n are the real ones) - and a second run over the same window adds nothing;
- the per-number limiter and the rate-limit queue (scenario 4): a burst of replies above the limit is delivered in
  full, never more than the limit in a window, with a private note while a reply waits, cleared (deleted in
  Chatwoot) once it went out; a reply WhatsApp refuses twice with 429 waits in the queue and goes out.

What did not run: Evolution API and Chatwoot are the contract server (lab/contract): "WhatsApp delivered a message"
is the test telling the contract server to save it (what Evolution API does with DATABASE_SAVE_DATA_NEW_MESSAGE)
and posting its webhook, which fails while n8n is stopped. n8n (stopped and started for real), PostgreSQL and Redis
(the runs' leases, the queue, the cursor, the per-number lock and limiter) are the real ones. The lab runs the
reconciliation every 20 s (molecule/stack/inventory/hosts.yml): the first recovery waits for that schedule, the
second run is started through its webhook. The limiter is 5 replies per number in 10 s there, the queue runs every
2 s.
"""
from __future__ import annotations

import time
import uuid

from conftest import wait_for

import contract
# The same contract servers as the other customer-service tests (the module-scoped fixture), and their SQL helper.
from test_customer_service import server, sql  # noqa: F401  pylint: disable=unused-import

EVOLUTION_HOOK = "/webhook/borgstack/evolution"
RECONCILE_HOOK = "/webhook/borgstack/reconcile"
INSTANCE = "principal"
# The scenario's second number (molecule/stack/inventory/hosts.yml, borgstack_customer_service.numbers).
SALES = {"instance": "vendas", "inbox": "Vendas", "inbox_id": 2, "team": "vendas", "team_id": 1}
# The lab's limiter (molecule/stack/inventory/hosts.yml: n8n_reply_rate_limit, n8n_reply_rate_window).
LIMIT, WINDOW = 5, 10


def arrive(server, number: str, text: str, name: str, *, instance: str = INSTANCE, at: int | None = None) -> dict:
    """WhatsApp delivers a customer's message to one of the numbers: Evolution API saves it and posts its webhook to
    n8n (lost when n8n is down). Returns the payload."""
    payload = contract.evolution_messages_upsert(number, text, push_name=name, instance=instance,
                                                 message_id=uuid.uuid4().hex[:20].upper(),
                                                 timestamp=at or int(time.time()))
    server.received(payload)
    return payload


def by_whatsapp_id(server) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for msg in server.state()["chatwoot"]["messages"]:
        wid = (msg.get("content_attributes") or {}).get("whatsapp_message_id")
        if wid:
            found.setdefault(wid, []).append(msg)
    return found


def reconcile(server, since: int) -> dict:
    """Start a run on demand and return its answer ({reconciled, checked, from, to}); a run the schedule started
    holds the lock meanwhile (the answer then has no "reconciled"): try again until this one ran."""

    def run():
        status, body = server.post_to_n8n(RECONCILE_HOOK, {"since": since}, timeout=120)
        return body if status == 200 and isinstance(body, dict) and body.get("reconciled") else None
    return wait_for("an on-demand reconciliation run", run, timeout=90, every=2)


def test_messages_sent_while_n8n_was_down_reach_chatwoot_once_in_order(host, server):
    server.clear_faults()
    server.reset()
    start = int(time.time()) - 5
    known, new = "5511966660001", "5511966660002"
    # Before the outage: one message delivered live.
    live = arrive(server, known, "Bom dia, meu pedido 771 chegou?", "Ana Souza")
    status, body = server.post_to_n8n(EVOLUTION_HOOK, live)
    assert status == 200, body
    wait_for("the live message in Chatwoot", lambda: live["data"]["key"]["id"] in by_whatsapp_id(server), 30)

    host.check_output("docker stop borgstack-n8n")
    try:
        # WhatsApp's timestamps are whole seconds: each message its own second (the next ones, no waiting), so the
        # order is theirs. The last one reached the sales number.
        now = int(time.time())
        lost = [arrive(server, known, "Ainda não chegou.", "Ana Souza", at=now),
                arrive(server, new, "Olá, quero um orçamento.", "Bruno Lima", at=now + 1),
                arrive(server, known, "Podem verificar?", "Ana Souza", at=now + 2),
                arrive(server, new, "São 3 unidades.", "Bruno Lima", at=now + 3),
                arrive(server, new, "Vocês vendem no atacado?", "Bruno Lima", instance=SALES["instance"], at=now + 4)]
        for payload in lost:
            status, _body = server.post_to_n8n(EVOLUTION_HOOK, payload, timeout=5)
            assert status is None, "n8n answered although it was stopped"
    finally:
        host.check_output("docker start borgstack-n8n")
    lost_ids = [p["data"]["key"]["id"] for p in lost]
    assert not set(lost_ids) & set(by_whatsapp_id(server)), "a message sent while n8n was down reached Chatwoot"

    # Nobody asks: the schedule (every 20 s in the lab) of the restarted n8n finds them. Up to 300 s: the restarted n8n
    # itself took most of 150 s under the load of three lanes (2026-12-07); the poll returns as soon as all are there.
    def all_there():
        found = by_whatsapp_id(server)
        return found if all(i in found for i in lost_ids) else None
    found = wait_for("every lost message in Chatwoot through the scheduled reconciliation", all_there, 300, every=1)
    ids = [live["data"]["key"]["id"], *lost_ids]
    assert {i: len(found.get(i, [])) for i in ids} == {i: 1 for i in ids}, found
    for wid in lost_ids:
        attributes = found[wid][0]["content_attributes"]
        assert attributes.get("borgstack_recovered") is True, attributes
    assert "borgstack_recovered" not in found[live["data"]["key"]["id"]][0]["content_attributes"]
    # Each in its number's inbox: the sales number's message in the Vendas inbox, the others in the default one.
    inbox_of = {c["display_id"]: c["inbox_id"] for c in server.state()["chatwoot"]["conversations"]}
    assert [inbox_of[found[i][0]["conversation_display_id"]] for i in lost_ids] == [1, 1, 1, 1, SALES["inbox_id"]]
    # In order: per conversation, Chatwoot's messages follow the WhatsApp timestamps.
    messages = server.state()["chatwoot"]["messages"]
    for conv in {found[i][0]["conversation_display_id"] for i in ids}:
        got = [m["content_attributes"]["whatsapp_message_id"] for m in messages
               if m["conversation_display_id"] == conv and m["content_attributes"].get("whatsapp_message_id") in ids]
        assert got == [i for i in ids if i in got], (conv, got)
    searched = {c["path"] for c in server.calls() if c["service"] == "evolution" and "/chat/findMessages/" in c["path"]}
    assert searched == {f"/chat/findMessages/{INSTANCE}", f"/chat/findMessages/{SALES['instance']}"}, searched

    # A second run over the same window finds every message in Chatwoot already: nothing is added.
    before = len(server.state()["chatwoot"]["messages"])
    checks_before = len([c for c in server.calls() if c["method"] == "GET" and c["path"].endswith("/messages")])
    second = reconcile(server, start)
    assert second["checked"] >= 6 and not second["failed"], second
    checks = len([c for c in server.calls() if c["method"] == "GET" and c["path"].endswith("/messages")])
    assert checks - checks_before >= 6, "the second run did not read the conversations back"
    assert len(server.state()["chatwoot"]["messages"]) == before
    assert {i: len(v) for i, v in by_whatsapp_id(server).items() if i in ids} == {i: 1 for i in ids}
    rejected = [c for c in server.calls() if c.get("rejected_reason")]
    assert not rejected, rejected


def queue_rows(host, number: str) -> list[list[str]]:
    """(id, reason, next attempt as unix seconds, delivered) of one number's queued replies."""
    if sql(host, "SELECT to_regclass('borgstack_cs_reply_queue') IS NULL")[0][0] == "t":
        return []
    return sql(host, "SELECT id, reason, extract(epoch FROM next_attempt_at), delivered_at IS NOT NULL "
                     f"FROM borgstack_cs_reply_queue WHERE number = '{number}' ORDER BY id")


def conversation_of(server, number: str) -> int:
    """A customer's first message makes the contact and the conversation (through n8n); its display id."""
    status, body = server.post_to_n8n(EVOLUTION_HOOK, contract.evolution_messages_upsert(
        number, "oi", message_id=uuid.uuid4().hex[:20].upper()))
    assert status == 200, body

    def contacts():
        return [c for c in server.state()["chatwoot"]["contacts"] if c.get("identifier") == f"whatsapp:{number}"]
    contact = wait_for("the contact", contacts, 30)[0]

    def conversations():
        return [c for c in server.state()["chatwoot"]["conversations"] if c["contact_id"] == contact["id"]]
    conv = wait_for("the conversation", conversations, 30)[0]
    return conv["display_id"]


def sent_to(server, number: str) -> list[dict]:
    return [s for s in server.state()["evolution"]["sent"] if s["number"] == number]


def notes(server, conv_id: int, needle: str) -> list[dict]:
    return [m for m in server.state()["chatwoot"]["messages"] if m["conversation_display_id"] == conv_id
            and m["private"] and needle in (m["content"] or "")]


def notes_posted(server, conv_id: int) -> list[dict]:
    """The "reply waiting" notes n8n posted in the conversation (from the call log: a cleared note's text is gone)."""
    return [c for c in server.calls() if c["service"] == "chatwoot" and c["method"] == "POST"
            and c["path"].endswith(f"/conversations/{conv_id}/messages") and isinstance(c["body"], dict)
            and c["body"].get("private") is True and "na fila" in str(c["body"].get("content"))]


def cleared(server, conv_id: int) -> list[dict]:
    """The conversation's private notes n8n deleted (Chatwoot keeps them as "deleted")."""
    return [m for m in server.state()["chatwoot"]["messages"] if m["conversation_display_id"] == conv_id
            and m["private"] and (m.get("content_attributes") or {}).get("deleted") is True]


def test_a_burst_above_the_limiter_is_all_delivered_never_over_the_limit(host, server):
    server.clear_faults()
    server.reset()
    number = f"55118{int(time.time()) % 10**8:08d}"   # its own: queue rows outlive the contract's reset
    conv_id = conversation_of(server, number)
    # The burst inside one limiter window (n8n counts per window of WINDOW s since the epoch; same clock here).
    wait_for("the start of a limiter window", lambda: time.time() % WINDOW < 1.0, WINDOW + 2, every=0.05)
    texts = [f"Resposta {i} da rajada" for i in range(LIMIT + 3)]
    for text in texts:
        server.agent_message(conv_id, text)

    def queued_with_notes():
        rows = queue_rows(host, number)
        return rows if len(rows) == 3 and len(notes_posted(server, conv_id)) == 3 else None
    queued = wait_for("the replies over the limit in the queue, each with its note", queued_with_notes, 60)
    # The first over the limit waits for the next window, the others behind it (their order kept).
    assert queued[0][1] == "limiter" and {row[1] for row in queued} <= {"limiter", "behind"}, queued
    boundary = float(queued[0][2])
    wait_for("every reply delivered and its note cleared", lambda: len(sent_to(server, number)) == len(texts)
             and len(cleared(server, conv_id)) == 3, 3 * WINDOW)
    assert not notes(server, conv_id, "na fila"), "a waiting note is still shown"
    out = sent_to(server, number)
    assert sorted(s["text"] for s in out) == sorted(texts), out   # each once, none lost
    assert len([s for s in out if s["at"] < boundary]) <= LIMIT
    assert len([s for s in out if s["at"] >= boundary]) <= LIMIT
    assert all(row[3] == "t" for row in queue_rows(host, number))
    rejected = [c for c in server.calls() if c.get("rejected_reason")]
    assert not rejected, rejected


def test_a_reply_refused_twice_with_429_waits_in_the_queue(host, server):
    server.clear_faults()
    server.reset()
    number = f"55117{int(time.time()) % 10**8:08d}"   # its own: queue rows outlive the contract's reset
    conv_id = conversation_of(server, number)
    server.fault(service="evolution", method="POST", path_regex="/message/sendText/.*", status=429, times=2,
                 retry_after=1)
    server.agent_message(conv_id, "Depois do limite do WhatsApp")
    wait_for("the reply sent after the queue", lambda: len(sent_to(server, number)) == 1, 60)
    assert [row[1] for row in queue_rows(host, number)] == ["429"]
    assert len(notes_posted(server, conv_id)) == 1
    wait_for("the waiting note cleared", lambda: cleared(server, conv_id), 30)
    assert not notes(server, conv_id, "na fila")
