# SPDX-License-Identifier: GPL-3.0-or-later
"""The media pipeline's n8n workflow (roles/n8n/files/media/media-pipeline.json, built by scripts/n8n-workflows.py):
every call's failure reaches the error row, and the decision on FileFlows' status (its code node, run here with node
and stand-ins for n8n's $input, $() and $runIndex) goes on, waits or fails as FileFlows' FileStatus says."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Built by the script (the source of truth); test_n8n_workflows checks the shipped file is the script's output.
WORKFLOW = json.loads(subprocess.run([sys.executable, str(ROOT / "scripts/n8n-workflows.py"), "--print-media"],
                                     capture_output=True, text=True, check=True, timeout=60).stdout)
NODES = {n["name"]: n for n in WORKFLOW["nodes"]}
SETTINGS = {"media_timeout_seconds": "10", "media_poll_seconds": "2"}


def test_the_webhook_and_its_credentials():
    hooks = [n for n in WORKFLOW["nodes"] if n["type"] == "n8n-nodes-base.webhook"]
    assert [h["parameters"]["path"] for h in hooks] == ["borgstack/media"]
    used = {c["id"] for n in WORKFLOW["nodes"] for c in (n.get("credentials") or {}).values()}
    assert used == {"BorgStackCrDir01", "BorgStackCrPg001"}


def test_every_failing_call_reaches_the_error_row():
    conns = WORKFLOW["connections"]
    calls = [n for n in WORKFLOW["nodes"] if n["type"] == "n8n-nodes-base.httpRequest" and n["name"] != "Mark failed"]
    assert len(calls) == 8
    for call in calls:
        assert call["onError"] == "continueErrorOutput", call["name"]
        assert [t["node"] for t in conns[call["name"]]["main"][1]] == ["Error row"], call["name"]
    assert [t["node"] for t in conns["Processing"]["main"][2]] == ["Error row"]
    assert [t["node"] for t in conns["Processing"]["main"][1]] == ["Poll wait"]
    chain = ["Error row", "Ensure error table", "Store error", "Mark failed"]
    assert [conns[a]["main"][0][0]["node"] for a in chain[:-1]] == chain[1:]
    # The error row goes to the table the monitoring counts and the replay webhook reads.
    assert "borgstack_cs_errors" in NODES["Store error"]["parameters"]["query"]


def judge(answer, run_index=0):
    code = NODES["Judge processing"]["parameters"]["jsCode"]
    for key, value in SETTINGS.items():
        code = code.replace(f"@@{key}@@", value)
    script = (
        "const $input = { first: () => ({ json: " + json.dumps({"data": json.dumps(answer)}) + " }) };\n"
        "const $ = (name) => ({ first: () => ({ json: { data: '/manual/f.bin' } }) });\n"
        f"const $runIndex = {run_index};\n"
        "const out = (() => {\n" + code + "\n})();\nprocess.stdout.write(JSON.stringify(out));\n")
    run = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(run.stdout)[0]["json"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run the workflow's code")
@pytest.mark.parametrize("answer,run_index,expected", [
    ([{"Uid": "u1", "Status": 1}], 0, {"next": "done", "uid": "u1"}),
    ([{"Uid": "u1", "Status": 2}], 0, {"next": "wait"}),
    ([{"Uid": "u1", "Status": 0}], 3, {"next": "wait"}),
    ([], 0, {"next": "wait"}),
])
def test_the_status_decides(answer, run_index, expected):
    assert judge(answer, run_index) == expected


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run the workflow's code")
@pytest.mark.parametrize("status", [3, 4])
def test_a_failed_file_is_an_error_with_fileflows_reason(status):
    out = judge([{"Uid": "u1", "Status": status, "FailureReason": "FFmpeg exited 1" if status == 4 else ""}])
    assert out["next"] == "failed" and out["step"] == "fileflows"
    assert ("FFmpeg exited 1" if status == 4 else "fluxo não encontrado") in out["error"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run the workflow's code")
def test_a_file_still_processing_at_the_time_limit_is_an_error():
    # 10 s / 2 s: the fifth answer is the last one waited for.
    assert judge([{"Uid": "u1", "Status": 2}], 3)["next"] == "wait"
    out = judge([{"Uid": "u1", "Status": 2}], 4)
    assert out["next"] == "failed" and "10 s" in out["error"]
