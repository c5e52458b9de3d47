# SPDX-License-Identifier: GPL-3.0-or-later
"""The routing of several WhatsApp numbers in the shipped workflows' Code nodes (scripts/n8n-workflows.py), run in
Node.js as n8n runs them (``$input.first().json`` and ``$('Node')`` given): an event goes to its instance's number
or nowhere, a reply leaves through the instance of its inbox, the first step finds an unknown inbox / team by name.
The same code runs for real in the lab (molecule/stack/tests/test_customer_service.py test_two_numbers_never_cross)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

WORKFLOWS = Path(__file__).resolve().parents[3] / "roles" / "n8n" / "files" / "workflows"
NUMBERS = [{"instance": "principal", "inbox": "WhatsApp", "inbox_id": 1, "team": None},
           {"instance": "vendas", "inbox": "Vendas", "inbox_id": None, "team": "Vendas"}]
SETTINGS = {"chatwoot_url": "http://borgstack-chatwoot:3000", "chatwoot_account_id": 1, "chatwoot_inbox_id": 1,
            "evolution_url": "http://borgstack-evolution-api:8080", "evolution_instance": "principal",
            "n8n_port": 5678}


def code_of(workflow: str, node: str, numbers: list[dict[str, Any]]) -> str:
    doc = json.loads((WORKFLOWS / f"{workflow}.json").read_text(encoding="utf-8"))
    js = next(n for n in doc["nodes"] if n["name"] == node)["parameters"]["jsCode"]
    settings = {**SETTINGS, "numbers": json.dumps(numbers)}
    return re.sub(r"@@([a-z0-9_]+)@@", lambda m: str(settings[m.group(1)]), js)


def run(workflow: str, node: str, item: Any, nodes: dict[str, Any] | None = None,
        numbers: list[dict[str, Any]] | None = None) -> list[Any]:
    """The node's output items (their json) for input ``item``; ``nodes`` answers ``$('Name').first().json``."""
    node_bin = shutil.which("node")
    assert node_bin, "these tests run the workflows' JavaScript: install nodejs (apt install nodejs)"
    script = (f"const $input = {{ first: () => ({{ json: {json.dumps(item)} }}) }};\n"
              f"const __nodes = {json.dumps(nodes or {})};\n"
              "const $ = (name) => ({ first: () => ({ json: __nodes[name] }), last: () => ({ json: __nodes[name] }) });\n"
              "const $runIndex = 0;\n"
              f"const __out = (() => {{\n{code_of(workflow, node, NUMBERS if numbers is None else numbers)}\n}})();\n"
              "process.stdout.write(JSON.stringify(__out.map((i) => i.json)));\n")
    proc = subprocess.run([node_bin, "-"], input=script, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def upsert(instance: Any) -> dict[str, Any]:
    body = {"event": "messages.upsert", "data": {"key": {"remoteJid": "5511955554444@s.whatsapp.net", "fromMe": False,
                                                         "id": "M1"}, "message": {"conversation": "oi"}}}
    if instance is not None:
        body["instance"] = instance
    return {"headers": {}, "body": body}


@pytest.mark.parametrize("instance, routed", [("principal", 0), ("vendas", 1), ("outra", None), (None, None),
                                              ("Vendas", None)])
def test_an_event_goes_to_its_instances_number_or_nowhere(instance, routed):
    out = run("whatsapp-to-chatwoot", "Route event", upsert(instance))
    if routed is None:
        assert out == []
    else:
        assert [o["number"] for o in out] == [NUMBERS[routed]]
        assert out[0]["message"]["text"] == "oi"


def test_status_updates_are_not_filtered_by_number():
    body = {"event": "messages.update", "instance": "outra",
            "data": {"keyId": "K1", "remoteJid": "5511@s.whatsapp.net", "fromMe": True, "status": "READ"}}
    assert run("whatsapp-to-chatwoot", "Route event", {"headers": {}, "body": body})[0]["kind"] == "status"


@pytest.mark.parametrize("number, step, state", [
    (NUMBERS[0], "search", {"inboxId": 1}),
    ({**NUMBERS[0], "team": "Suporte"}, "team", {"inboxId": 1}),
    (NUMBERS[1], "inbox", {}),
])
def test_the_first_step_finds_what_the_number_does_not_know(number, step, state):
    out = run("whatsapp-to-chatwoot", "Start", {}, {"Route event": {"number": number}})
    assert out == [{"state": state, "step": step, "attempt": 0}]


def reply(inbox_id: Any, inbox_name: str | None = None) -> dict[str, Any]:
    body = {"event": "message_created", "message_type": "outgoing", "private": False, "content": "Olá",
            "conversation": {"id": 7, "meta": {"sender": {"phone_number": "+5511955554444"}}},
            "account": {"id": 1}}
    if inbox_id is not None:
        body["conversation"]["inbox_id"] = inbox_id
        body["inbox"] = {"id": inbox_id, "name": inbox_name}
    return {"headers": {}, "body": body}


@pytest.mark.parametrize("inbox_id, name, instance", [
    (1, "WhatsApp", "principal"),
    (2, "Vendas", "vendas"),          # the second number's inbox: known by name only
    (3, "Outra", None),               # an inbox of no number: nothing is sent
    (1, "Vendas", "principal"),       # the default inbox is known by id, whatever its name
    (None, None, "principal"),        # no inbox in the payload (the architecture document's example)
])
def test_a_reply_leaves_through_the_instance_of_its_inbox(inbox_id, name, instance):
    out = run("chatwoot-to-whatsapp", "Route reply", reply(inbox_id, name))
    assert [o["reply"]["instance"] for o in out] == ([instance] if instance else [])


def test_the_send_uses_the_replys_instance():
    route = {"reply": {"number": "5511955554444", "text": "Olá", "sends": [{"kind": "text", "text": "Olá"}],
                       "conversationId": 7, "accountId": 1, "instance": "vendas"}}
    out = run("chatwoot-to-whatsapp", "Plan", {"state": {"index": 0, "phase": "send"}, "step": "start"},
              {"Route reply": route})
    assert out[0]["request"]["path"] == "/message/sendText/vendas"
    assert out[0]["request"]["url"] == "http://borgstack-evolution-api:8080/message/sendText/vendas"


def plan_and_advance(step: str, body: Any, number: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    event = {"number": number, "instance": number["instance"],
             "message": {"number": "5511955554444", "name": "João", "text": "oi", "id": "M1", "type": "conversation",
                         "receivedAt": "2026-01-01T00:00:00.000Z", "media": None, "key": {}, "content": None}}
    plan = run("whatsapp-to-chatwoot", "Plan", {"state": {}, "step": step, "attempt": 0}, {"Route event": event})[0]
    advance = run("whatsapp-to-chatwoot", "Advance", {"step": step, "state": {}, "last": {"status": 200, "body": body}},
                  {"Route event": event})[0]
    return plan, advance


def test_the_inbox_and_the_team_are_found_by_name():
    plan, advance = plan_and_advance("inbox", {"payload": [{"id": 1, "name": "WhatsApp"}, {"id": 2, "name": "Vendas"}]},
                                     NUMBERS[1])
    assert plan["request"]["method"] == "GET" and plan["request"]["path"] == "/api/v1/accounts/1/inboxes"
    assert advance == {"step": "team", "state": {"inboxId": 2}, "next": "call", "attempt": 0}
    plan, advance = plan_and_advance("team", [{"id": 4, "name": "suporte"}, {"id": 5, "name": "vendas"}], NUMBERS[1])
    assert plan["request"]["path"] == "/api/v1/accounts/1/teams"
    assert advance == {"step": "search", "state": {"teamId": 5}, "next": "call", "attempt": 0}


@pytest.mark.parametrize("step, body, missing", [("inbox", {"payload": [{"id": 1, "name": "WhatsApp"}]}, "no inbox named"),
                                                 ("team", [], "no team named")])
def test_a_missing_inbox_or_team_is_an_error_that_says_what_to_do(step, body, missing):
    _plan, advance = plan_and_advance(step, body, NUMBERS[1])
    assert advance["next"] == "failed"
    assert missing in advance["error"] and "run the play" in advance["error"]


def test_a_new_conversation_goes_to_the_numbers_inbox_and_team():
    event = {"number": NUMBERS[1], "instance": "vendas", "message": {"number": "5511955554444", "name": "João"}}
    out = run("whatsapp-to-chatwoot", "Plan", {"state": {"inboxId": 2, "teamId": 5, "contactId": 9},
                                               "step": "create_conversation", "attempt": 0}, {"Route event": event})
    assert out[0]["request"]["body"] == {"inbox_id": 2, "contact_id": 9, "status": "open", "team_id": 5}
