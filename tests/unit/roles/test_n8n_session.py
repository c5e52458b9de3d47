# SPDX-License-Identifier: GPL-3.0-or-later
"""The WhatsApp session workflow's Code nodes (scripts/n8n-workflows.py, roles/n8n/files/workflows/whatsapp-session.json)
run in Node.js as n8n runs them: Evolution API 2.2.3's connection.update is handed on by workflow 1, a closed session
of one instance posts once in the open conversations of that number's inbox only, the reopened one posts the second
note only after a close. The same code runs for real in the lab (molecule/stack/tests/test_customer_service.py
test_closed_session_notes_each_open_conversation_of_its_inbox_once)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "lab" / "contract"))
# pylint: disable=wrong-import-position,import-error
from contract_server import evolution_connection_update  # noqa: E402
from test_n8n_numbers import run  # noqa: E402

WF = "whatsapp-session"
PRINCIPAL = {"instance": "principal", "inbox": "WhatsApp", "inbox_id": 1, "team": None}
VENDAS = {"instance": "vendas", "inbox": "Vendas", "inbox_id": None, "team": "Vendas"}


def hook(body, headers=None):
    return {"headers": headers or {}, "body": body}


def test_workflow_1_hands_connection_update_on():
    out = run("whatsapp-to-chatwoot", "Route event", hook(evolution_connection_update("close", 401)))
    assert [o["kind"] for o in out] == ["connection"]
    assert out[0]["payload"]["data"]["state"] == "close"


@pytest.mark.parametrize("state, reason, kind", [("close", 401, "down"), ("close", 403, "down"),
                                                 ("refused", None, "down"), ("open", None, "up"),
                                                 ("connecting", None, None)])
def test_route_session_kinds(state, reason, kind):
    out = run(WF, "Route session", hook(evolution_connection_update(state, reason, instance="vendas")))
    assert [o["kind"] for o in out] == ([kind] if kind else [])
    if kind:
        assert out[0]["number"]["instance"] == "vendas" and out[0]["payload"]["instance"] == "vendas"


@pytest.mark.parametrize("body, headers", [
    (evolution_connection_update("close", 401, instance="outra"), None),       # not a number of this stack
    (evolution_connection_update("close", 401), {"x-forwarded-for": "203.0.113.9"}),  # came through Caddy
    ({**evolution_connection_update("close", 401), "event": "messages.upsert"}, None),
])
def test_route_session_drops_foreign_events(body, headers):
    assert run(WF, "Route session", hook(body, headers)) == []


@pytest.mark.parametrize("kind, count, nxt, post", [("down", 1, "post", True), ("down", 2, "none", False),
                                                    ("down", 7, "none", False), ("up", 1, "clear", False),
                                                    ("up", 2, "clear", True), ("up", 5, "clear", True)])
def test_each_change_posts_once(kind, count, nxt, post):
    """The Redis counter: the first close posts, repeated closes do not; open posts only after a counted close."""
    out = run(WF, "Session changed", {"borgstack:cs:session:principal": count}, {"Route session": {"kind": kind}})
    assert out == [{"next": nxt, "post": post}]


@pytest.mark.parametrize("number, step", [(PRINCIPAL, "list"), (VENDAS, "inbox")])
def test_start_finds_the_inbox_by_name_when_its_id_is_unknown(number, step):
    out = run(WF, "Start", {}, {"Route session": {"number": number}})
    assert out[0]["step"] == step and out[0]["state"]["page"] == 1


def route(kind="down", reason=401, number=None):
    return {"Route session": {"kind": kind, "reason": reason, "number": number or PRINCIPAL, "payload": {}}}


def test_plan_lists_open_conversations_of_the_inbox_and_posts_private_notes():
    listing = run(WF, "Plan", {"step": "list", "state": {"inboxId": 2, "page": 3, "conversations": [], "index": 0},
                               "attempt": 0}, route())[0]["request"]
    assert listing["method"] == "GET"
    assert listing["path"] == "/api/v1/accounts/1/conversations?inbox_id=2&status=open&page=3"
    assert listing["url"] == "http://borgstack-chatwoot:3000" + listing["path"]
    state = {"inboxId": 1, "page": 1, "conversations": [4, 9], "index": 1}
    down = run(WF, "Plan", {"step": "note", "state": state, "attempt": 0}, route())[0]["request"]
    assert down["path"] == "/api/v1/accounts/1/conversations/9/messages"
    assert down["body"]["private"] is True and down["body"]["message_type"] == "outgoing"
    assert "NÃO chegam ao cliente" in down["body"]["content"] and '"WhatsApp"' in down["body"]["content"]
    assert "desconectado no celular" in down["body"]["content"]
    up = run(WF, "Plan", {"step": "note", "state": state, "attempt": 0}, route("up", 200))[0]["request"]
    assert "reconectado" in up["body"]["content"] and "NÃO" not in up["body"]["content"]


def conv(cid, inbox=1, status="open"):
    return {"id": cid, "inbox_id": inbox, "status": status}


def advance(step, state, body, number=None):
    return run(WF, "Advance", {"step": step, "state": state, "last": {"status": 200, "body": body}},
               route(number=number))[0]


def test_advance_keeps_only_open_conversations_of_the_inbox_and_reads_every_page():
    state = {"inboxId": 1, "page": 1, "conversations": [], "index": 0}
    full = [conv(n) for n in range(1, 26)]
    out = advance("list", state, {"data": {"payload": full}})
    assert (out["step"], out["next"], out["state"]["page"]) == ("list", "call", 2)
    out = advance("list", out["state"], {"data": {"payload": [conv(26), conv(27, inbox=2), conv(28, status="resolved")]}})
    assert (out["step"], out["next"], out["state"]["index"]) == ("note", "call", 0)
    assert out["state"]["conversations"] == list(range(1, 27))
    out = advance("note", {**out["state"], "index": 24}, {})
    assert (out["step"], out["state"]["index"]) == ("note", 25)
    assert advance("note", out["state"], {})["next"] == "done"


def test_advance_ends_without_open_conversations_and_fails_on_an_unknown_inbox():
    state = {"inboxId": None, "page": 1, "conversations": [], "index": 0}
    assert advance("list", {**state, "inboxId": 1}, {"data": {"payload": []}})["next"] == "done"
    out = advance("inbox", state, {"payload": [{"id": 5, "name": "Vendas"}]}, VENDAS)
    assert (out["step"], out["state"]["inboxId"]) == ("list", 5)
    out = advance("inbox", state, {"payload": [{"id": 1, "name": "WhatsApp"}]}, VENDAS)
    assert out["next"] == "failed" and "Vendas" in out["error"]
