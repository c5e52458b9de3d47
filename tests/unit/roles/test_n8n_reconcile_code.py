# SPDX-License-Identifier: GPL-3.0-or-later
"""The decisions of the reconciliation and of the reply limiter, run as n8n runs them: the Code nodes' JavaScript
(built by scripts/n8n-workflows.py into a temporary directory, the site's @@settings@@ filled in) executed by node
with the n8n globals they use ($input, $('Node'), $workflow) stubbed. The whole flow runs in the lab
(molecule/stack/tests/test_customer_service_reconcile.py); here each rule is checked alone, fast."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
NODE = shutil.which("node")
SETTINGS = {"chatwoot_url": "http://borgstack-chatwoot:3000", "chatwoot_account_id": "1", "chatwoot_inbox_id": "1",
            "evolution_url": "http://borgstack-evolution-api:8080", "evolution_instance": "principal",
            "n8n_port": "5678", "reconcile_field": "seconds", "reconcile_seconds": "20", "reconcile_minutes": "5",
            "reconcile_lookback": "3600", "reconcile_grace": "2", "rate_limit": "5", "rate_window": "10",
            "queue_retry": "7", "queue_field": "seconds", "queue_seconds": "2", "queue_minutes": "5"}

# Runs one Code node: stdin {code, input, nodes: {name: [json...]}}, prints the items' json.
HARNESS = r"""
const spec = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const wrap = (list) => ({ first: () => ({ json: list[0] }), last: () => ({ json: list[list.length - 1] }),
  all: () => list.map((json) => ({ json })), isExecuted: true });
const $ = (name) => {
  if (!(name in spec.nodes)) return { isExecuted: false, first: () => { throw new Error(`${name} did not run`); } };
  return wrap(spec.nodes[name]);
};
const $input = wrap([spec.input]);
const $workflow = { name: 'test' };
const $runIndex = 0;
const run = new Function('$', '$input', '$workflow', '$runIndex', spec.code);
process.stdout.write(JSON.stringify((run($, $input, $workflow, $runIndex) || []).map((item) => item.json)));
"""

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module")
def workflows(tmp_path_factory):
    out = tmp_path_factory.mktemp("workflows")
    subprocess.run([sys.executable, str(ROOT / "scripts/n8n-workflows.py")], check=True,
                   env={**os.environ, "N8N_WORKFLOWS_OUT": str(out)})
    found = {}
    for path in out.glob("*.json"):
        text = re.sub(r"@@([a-z0-9_]+)@@", lambda m: SETTINGS[m.group(1)], path.read_text(encoding="utf-8"))
        found[path.stem] = json.loads(text)
    return found


def code_of(workflow: dict, name: str) -> str:
    return next(n for n in workflow["nodes"] if n["name"] == name)["parameters"]["jsCode"]


def run(workflow: dict, name: str, input_json: dict, nodes: dict | None = None) -> list[dict]:
    spec = {"code": code_of(workflow, name), "input": input_json, "nodes": nodes or {}}
    answer = subprocess.run([NODE, "-e", HARNESS], input=json.dumps(spec), capture_output=True, text=True,
                            check=False, timeout=30)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def event(recovered: bool) -> dict:
    payload = {"event": "messages.upsert", "instance": "principal"}
    if recovered:
        payload["borgstack_recovered"] = True
    return {"instance": "principal", "payload": payload, "message": {
        "number": "5511987654321", "name": "Ana", "text": "oi", "id": "ABC123", "type": "conversation",
        "receivedAt": "2025-01-01T00:00:00.000Z", "media": None, "key": {}, "content": None}}


# --- WhatsApp -> Chatwoot: a recovered message is checked against the conversation, under the lock ----------------
@pytest.mark.parametrize("recovered,step", [(True, "check_recovered"), (False, "message")])
def test_only_a_recovered_message_is_checked_before_it_is_written(workflows, recovered, step):
    out = run(workflows["whatsapp-to-chatwoot"], "Advance",
              {"step": "conversations", "state": {"contactId": 7}, "last": {"status": 200, "body": {
                  "payload": [{"id": 3, "status": "open", "inbox_id": 1}]}}},
              {"Route event": [event(recovered)]})
    assert out[0]["step"] == step and out[0]["state"]["conversationId"] == 3, out


@pytest.mark.parametrize("message,done", [
    ({"id": 9, "content_attributes": {"whatsapp_message_id": "ABC123"}}, True),
    ({"id": 9, "source_id": "ABC123", "content_attributes": {}}, True),
    ({"id": 9, "content_attributes": {"whatsapp_message_id": "OTHER"}}, False),
])
def test_a_recovered_message_chatwoot_has_is_not_written_again(workflows, message, done):
    out = run(workflows["whatsapp-to-chatwoot"], "Advance",
              {"step": "check_recovered", "state": {"contactId": 7, "conversationId": 3},
               "last": {"status": 200, "body": {"payload": [{"id": 1, "content_attributes": {}}, message]}}},
              {"Route event": [event(True)]})
    assert (out[0]["next"] == "done") is done, out
    if not done:
        assert out[0]["step"] == "message" and out[0]["next"] == "call", out


def test_a_recovered_message_is_marked(workflows):
    out = run(workflows["whatsapp-to-chatwoot"], "Plan",
              {"step": "message", "state": {"conversationId": 3, "checked": True}, "attempt": 0},
              {"Route event": [event(True)]})
    assert out[0]["request"]["body"]["content_attributes"]["borgstack_recovered"] is True
    live = run(workflows["whatsapp-to-chatwoot"], "Plan", {"step": "message", "state": {"conversationId": 3},
                                                           "attempt": 0}, {"Route event": [event(False)]})
    assert "borgstack_recovered" not in live[0]["request"]["body"]["content_attributes"]


# --- the reconciliation: which saved messages, in which order --------------------------------------------------------
def record(mid: str, ts: int, jid: str = "5511987654321@s.whatsapp.net", from_me: bool = False) -> dict:
    return {"id": mid.lower(), "key": {"id": mid, "remoteJid": jid, "fromMe": from_me}, "pushName": "Ana",
            "messageType": "conversation", "message": {"conversation": mid}, "messageTimestamp": ts,
            "instanceId": "x", "source": "android"}


def test_candidates_are_customers_messages_once_oldest_first(workflows):
    records = [record("C", 30), record("A", 10), record("MINE", 15, from_me=True),
               record("GROUP", 12, jid="120363@g.us"), record("B", 20), record("A", 10)]
    out = run(workflows["reconcile"], "Candidates", {"records": records})
    assert [o["body"]["data"]["key"]["id"] for o in out] == ["A", "B", "C"]
    assert all(o["body"]["borgstack_recovered"] is True and o["body"]["event"] == "messages.upsert" for o in out)
    assert run(workflows["reconcile"], "Candidates", {"records": [record("MINE", 1, from_me=True)]}) == [
        {"empty": True}]


def test_the_window_starts_at_the_cursor_less_the_grace(workflows):
    out = run(workflows["reconcile"], "Window", {"cursor": "1000"})
    assert out[0]["from"] == 998 and out[0]["page"] == 1
    asked = run(workflows["reconcile"], "Window", {"cursor": "1000"}, {"Reconcile request": [{"since": 500}]})
    assert asked[0]["from"] == 500


# --- the limiter and the queue ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("count,decision", [(1, "send"), (5, "send"), (6, "queue"), (40, "queue")])
def test_the_limiter_lets_through_the_limit_and_queues_the_rest(workflows, count, decision):
    out = run(workflows["chatwoot-to-whatsapp"], "Within limit", {"borgstack:cs:rate:5511:0": str(count)})
    assert out[0]["next"] == decision, out


@pytest.mark.parametrize("ahead,decision", [(0, "count"), (1, "queue")])
def test_a_reply_waits_behind_the_queued_ones_of_its_number(workflows, ahead, decision):
    out = run(workflows["chatwoot-to-whatsapp"], "Before send", {"ahead": ahead},
              {"Route reply": [{"reply": {"number": "5511"}}]})
    assert out[0]["next"] == decision, out


def reply(queue=None) -> dict:
    return {"payload": {"event": "message_created", "borgstack_queue": queue},
            "reply": {"number": "5511", "sends": [{"kind": "text", "text": "a"}, {"kind": "text", "text": "b"}],
                      "conversationId": 3, "accountId": 1, "queue": queue}}


def test_a_reply_over_the_limit_waits_for_the_next_window(workflows):
    out = run(workflows["chatwoot-to-whatsapp"], "Queue row", {"next": "queue", "reason": "limiter"},
              {"Route reply": [reply()]})
    row = json.loads(out[0]["row"])
    assert row["retry_at"] % 10 == 0 and row["start_index"] == 0 and row["queue_id"] is None
    assert "borgstack_queue" not in row["payload"]


def test_a_429_queues_the_rest_of_the_reply_until_retry_after(workflows):
    out = run(workflows["chatwoot-to-whatsapp"], "Queue row",
              {"state": {"index": 1}, "last": {"status": 429, "headers": {"retry-after": "30"}}},
              {"Route reply": [reply({"id": 4, "index": 0})]})
    row = json.loads(out[0]["row"])
    assert row["reason"] == "429" and row["start_index"] == 1 and row["queue_id"] == 4
    import time  # pylint: disable=import-outside-toplevel
    assert 25 < row["retry_at"] - time.time() <= 30


def test_only_a_second_or_long_429_goes_to_the_queue(workflows):
    node = next(n for n in workflows["chatwoot-to-whatsapp"]["nodes"] if n["name"] == "Retry or queue")
    expr = node["parameters"]["output"][len("={{"):-len("}}")]
    for judged, queued in (({"last": {"status": 429}, "attempt": 1, "waitSeconds": 3}, 0),
                           ({"last": {"status": 429}, "attempt": 2, "waitSeconds": 1}, 1),
                           ({"last": {"status": 429}, "attempt": 1, "waitSeconds": 30}, 1),
                           ({"last": {"status": 503}, "attempt": 2, "waitSeconds": 2}, 0)):
        spec = {"code": f"return [{{ json: {{ out: {expr.replace('$json', '$input.first().json')} }} }}];",
                "input": judged, "nodes": {}}
        answer = subprocess.run([NODE, "-e", HARNESS], input=json.dumps(spec), capture_output=True, text=True,
                                check=True, timeout=30)
        assert json.loads(answer.stdout)[0]["out"] == queued, judged
