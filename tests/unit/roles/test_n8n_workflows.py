# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped n8n workflows (roles/n8n/files/workflows/) agree with the task that installs them."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
FILES = sorted((ROOT / "roles/n8n/files/workflows").glob("*.json"))
TASK = yaml.safe_load((ROOT / "roles/n8n/tasks/workflows.yml").read_text())[0]
INPUT = TASK["vars"]["__n8n_workflows_input"]
CREDENTIALS = {c["id"]: c for c in INPUT["credentials"]}
WEBHOOKS = {"borgstack/evolution", "borgstack/chatwoot", "borgstack/replay", "borgstack/evolution-session",
            # the reconciliation and the reply queue (scripts/n8n_reconcile.py): their on-demand runs, and the ways
            # back into the delivery workflows that answer when the delivery ended
            "borgstack/reconcile", "borgstack/evolution-recovered", "borgstack/reply-queue",
            "borgstack/chatwoot-queued"}
# Calls outside the retry loop, on purpose: a failed findMessages ends the reconciliation run (the schedule is its
# retry, the cursor stays); the queue's notes to the agents are best effort (a lost note is not a lost message).
NOT_RETRIED = {"Find messages", "Post queued note", "Clear queued note"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_ids_are_fixed_and_unique():
    ids = [load(path)["id"] for path in FILES]
    assert len(FILES) == 6 and len(set(ids)) == len(ids), ids
    assert all(re.fullmatch(r"[A-Za-z0-9]{16}", i) for i in ids + list(CREDENTIALS)), ids


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_is_consistent(path):
    workflow = load(path)
    assert isinstance(workflow["meta"]["borgstack"]["version"], int), "version marker meta.borgstack.version"
    assert workflow["active"] is False, "imported inactive; the install script activates it"
    names = [node["name"] for node in workflow["nodes"]]
    assert len(set(names)) == len(names)
    for source, outputs in workflow["connections"].items():
        assert source in names, source
        for branch in outputs["main"]:
            assert all(target["node"] in names for target in branch), (source, branch)
    for node in workflow["nodes"]:
        for credential in (node.get("credentials") or {}).values():
            assert credential["id"] in CREDENTIALS, f"{node['name']} uses credential {credential['id']}"
            assert CREDENTIALS[credential["id"]]["name"] == credential["name"]
    placeholders = set(re.findall(r"@@([a-z0-9_]+)@@", path.read_text(encoding="utf-8")))
    assert placeholders <= set(INPUT["settings"]), placeholders - set(INPUT["settings"])


def test_the_webhooks_are_shipped():
    paths = {node["parameters"]["path"] for path in FILES for node in load(path)["nodes"]
             if node["type"] == "n8n-nodes-base.webhook"}
    assert paths == WEBHOOKS


def test_every_outbound_call_goes_through_the_retry_loop():
    """Each call with a credential is judged (Judge) and can wait (Back off) before Plan sends it again."""
    for path in FILES:
        workflow = load(path)
        calls = [n for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.httpRequest" and n.get("credentials")
                 and n["name"] not in NOT_RETRIED]
        for call in calls:
            assert workflow["connections"][call["name"]]["main"][0][0]["node"] == "Judge"
            assert call.get("onError") == "continueRegularOutput"
            assert call["parameters"]["options"]["response"]["response"]["neverError"] is True
        if calls:
            assert [t["node"] for t in workflow["connections"]["Back off"]["main"][0]] == ["Plan"]


def test_files_are_built_from_the_script():
    """The JSON files are what scripts/n8n-workflows.py writes (the readable source of the Code nodes)."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts/n8n-workflows.py"), "--check"], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
