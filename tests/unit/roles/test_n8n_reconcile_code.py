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
NUMBERS = [{"instance": "principal", "inbox": "WhatsApp", "inbox_id": 1, "team": None},
           {"instance": "vendas", "inbox": "Vendas", "inbox_id": 2, "team": None}]
SETTINGS = {"chatwoot_url": "http://borgstack-chatwoot:3000", "chatwoot_account_id": "1", "chatwoot_inbox_id": "1",
            "evolution_url": "http://borgstack-evolution-api:8080", "evolution_instance": "principal",
            "numbers": json.dumps(NUMBERS).replace('"', '\\"'),
            "n8n_port": "5678", "reconcile_cron": "*/20 * * * * *", "reconcile_lookback": "3600",
            "reconcile_grace": "2", "rate_limit": "5", "rate_window": "10", "queue_retry": "7",
            "queue_cron": "*/2 * * * * *"}

# Runs one Code node: stdin {code, input, nodes: {name: [json...]}}, prints the items' json.
HARNESS = r"""
const spec = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const wrap = (list) => ({ first: () => ({ json: list[0] }), last: () => ({ json: list[list.length - 1] }),
  all: () => list.map((json) => ({ json })), isExecuted: true });
const $ = (name) => {
  if (!(name in spec.nodes)) return { isExecuted: false, first: () => { throw new Error(`${name} did not run`); } };
  return wrap(spec.nodes[name]);
};
const $input = wrap(Array.isArray(spec.inputs) ? spec.inputs : [spec.input]);
const $workflow = { name: 'test' };
const $execution = { id: '41' };
const $runIndex = 0;
const run = new Function('$', '$input', '$workflow', '$runIndex', '$execution', spec.code);
process.stdout.write(JSON.stringify((run($, $input, $workflow, $runIndex, $execution) || []).map((item) => item.json)));
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


def run(workflow: dict, name: str, input_json: dict | list, nodes: dict | None = None) -> list[dict]:
    """Run one Code node; a list is several input items."""
    key = "inputs" if isinstance(input_json, list) else "input"
    spec = {"code": code_of(workflow, name), key: input_json, "nodes": nodes or {}}
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
def record(mid: str, ts: int, jid: str = "5511987654321@s.whatsapp.net", from_me: bool = False,
           instance: str = "principal") -> dict:
    return {"id": mid.lower(), "key": {"id": mid, "remoteJid": jid, "fromMe": from_me}, "pushName": "Ana",
            "messageType": "conversation", "message": {"conversation": mid}, "messageTimestamp": ts,
            "instanceId": "x", "source": "android", "borgstack_instance": instance}


def test_candidates_are_customers_messages_once_oldest_first(workflows):
    records = [record("C", 30), record("A", 10), record("MINE", 15, from_me=True),
               record("GROUP", 12, jid="120363@g.us"), record("B", 20), record("A", 10)]
    out = run(workflows["reconcile"], "Candidates", {"records": records})
    assert [o["body"]["data"]["key"]["id"] for o in out] == ["A", "B", "C"]
    assert all(o["body"]["borgstack_recovered"] is True and o["body"]["event"] == "messages.upsert" for o in out)
    assert run(workflows["reconcile"], "Candidates", {"records": [record("MINE", 1, from_me=True)]}) == [
        {"empty": True}]


def test_each_candidate_goes_back_through_its_own_number(workflows):
    records = [record("V1", 11, instance="vendas"), record("P1", 10), record("V0", 9, instance="vendas")]
    out = run(workflows["reconcile"], "Candidates", {"records": records})
    assert [(o["body"]["instance"], o["body"]["data"]["key"]["id"]) for o in out] == [
        ("vendas", "V0"), ("principal", "P1"), ("vendas", "V1")]
    # The same WhatsApp id under two numbers is two messages.
    twice = run(workflows["reconcile"], "Candidates", {"records": [record("X", 1), record("X", 1, instance="vendas")]})
    assert len(twice) == 2


def test_every_number_is_searched_page_after_page(workflows):
    window = run(workflows["reconcile"], "Window", {"cursor": "1000"})[0]
    assert window["instances"] == ["principal", "vendas"] and window["at"] == 0
    page = run(workflows["reconcile"], "Page", window)[0]
    assert page["request"]["path"] == "/chat/findMessages/principal"
    answer = {"statusCode": 200, "body": {"messages": {"pages": 2, "records": [record("A", 1000)]}}}
    more = run(workflows["reconcile"], "Collect", answer, {"Page": [page]})[0]
    assert (more["next"], more["page"], more["at"]) == ("more", 2, 0)
    last = {"statusCode": 200, "body": {"messages": {"pages": 2, "records": [record("B", 999)]}}}
    turn = run(workflows["reconcile"], "Collect", last, {"Page": [{**page, **more}]})[0]
    assert (turn["next"], turn["page"], turn["at"]) == ("more", 1, 1)
    assert run(workflows["reconcile"], "Page", turn)[0]["request"]["path"] == "/chat/findMessages/vendas"
    done = run(workflows["reconcile"], "Collect", {"statusCode": 200, "body": {"messages": {"pages": 0, "records": []}}},
               {"Page": [{**page, **turn}]})[0]
    assert done["next"] == "done" and [r["key"]["id"] for r in done["records"]] == ["A", "B"]
    assert [r["borgstack_instance"] for r in done["records"]] == ["principal", "principal"]


def test_a_failed_search_delivers_nothing_and_keeps_the_cursor(workflows):
    window = run(workflows["reconcile"], "Window", {"cursor": "1000"})[0]
    page = run(workflows["reconcile"], "Page", window)[0]
    failed = run(workflows["reconcile"], "Collect", {"statusCode": 500, "body": {}}, {"Page": [page]})[0]
    assert failed["failed"] and failed["next"] == "done"
    assert run(workflows["reconcile"], "Candidates", failed) == [{"empty": True}]
    cursor = run(workflows["reconcile"], "Cursor", {}, {"Collect": [failed], "Candidates": [{"empty": True}],
                                                        "Read cursor": [{"cursor": "1000"}]})[0]
    assert cursor["cursor"] == "1000" and cursor["failed"], cursor


@pytest.mark.parametrize("statuses,moved", [([200, 200], True), ([200, 404], False), ([500], False)])
def test_the_cursor_moves_only_when_every_recovered_message_was_delivered(workflows, statuses, moved):
    collect = {"from": 900, "to": 1500, "failed": None}
    candidates = [{"empty": False, "body": {}}] * len(statuses)
    # The loop's "done" output: Recover's answers, one an item.
    cursor = run(workflows["reconcile"], "Cursor", [{"statusCode": status} for status in statuses], {
        "Collect": [collect], "Candidates": candidates, "Read cursor": [{"cursor": "1000"}]})[0]
    assert cursor["cursor"] == ("1500" if moved else "1000"), cursor
    assert bool(cursor["failed"]) is not moved


@pytest.mark.parametrize("workflow", ["reconcile", "reply-queue"])
@pytest.mark.parametrize("holder,goes_on", [("41", True), ("7", False), (None, False)])
def test_a_run_goes_on_only_with_its_own_lease(workflows, workflow, holder, goes_on):
    answer = {"holder": holder} if holder else {"success": True}
    assert bool(run(workflows[workflow], "Lease taken", answer)) is goes_on


@pytest.mark.parametrize("workflow", ["reconcile", "reply-queue"])
def test_the_schedule_is_the_cron_the_role_computed(workflows, workflow):
    node = next(n for n in workflows[workflow]["nodes"] if n["type"] == "n8n-nodes-base.scheduleTrigger")
    rule = node["parameters"]["rule"]["interval"][0]
    assert rule == {"field": "cronExpression", "expression": SETTINGS[{"reconcile": "reconcile_cron", "reply-queue": "queue_cron"}[workflow]]}


def test_the_limiter_counts_per_whatsapp_number_of_the_stack(workflows):
    node = next(n for n in workflows["chatwoot-to-whatsapp"]["nodes"] if n["name"] == "Count reply")
    expr = node["parameters"]["key"][len("={{"):-len("}}")]
    spec = {"code": f"return [{{ json: {{ key: {expr} }} }}];", "input": {},
            "nodes": {"Route reply": [{"reply": {"number": "5511", "instance": "vendas"}}]}}
    answer = subprocess.run([NODE, "-e", HARNESS], input=json.dumps(spec), capture_output=True, text=True,
                            check=True, timeout=30)
    assert re.fullmatch(r"borgstack:cs:rate:vendas:\d+0", json.loads(answer.stdout)[0]["key"])


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


@pytest.mark.parametrize("outcome,note_id,cleared", [("delivered", 77, True), ("failed", 77, False),
                                                     ("delivered", None, False)])
def test_the_waiting_note_is_cleared_once_the_reply_went_out(workflows, outcome, note_id, cleared):
    out = run(workflows["chatwoot-to-whatsapp"], "Note delivered",
              {"id": 4, "conversation_id": 3, "account_id": 1, "note_id": note_id},
              {"Queue outcome": [{"outcome": outcome}]})
    if not cleared:
        assert out == [], out
        return
    assert out[0]["request"]["method"] == "DELETE"
    assert out[0]["request"]["path"] == "/api/v1/accounts/1/conversations/3/messages/77"


@pytest.mark.parametrize("workflow,loop,call,after", [("reconcile", "Recover loop", "Recover", "Cursor"),
                                                      ("reply-queue", "Send loop", "Send again", "Count")])
def test_recovered_messages_and_queued_replies_go_one_after_the_other(workflows, workflow, loop, call, after):
    """The call sits inside a one-item loop (the next starts when the previous answered); no batching option."""
    nodes = {n["name"]: n for n in workflows[workflow]["nodes"]}
    assert nodes[loop]["type"] == "n8n-nodes-base.splitInBatches" and nodes[loop]["parameters"]["batchSize"] == 1
    conns = workflows[workflow]["connections"]
    assert [[t["node"] for t in out] for out in conns[loop]["main"]] == [[after], [call]]
    assert [t["node"] for t in conns[call]["main"][0]] == [loop]
    assert "batching" not in nodes[call]["parameters"]["options"]
