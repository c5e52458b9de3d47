# SPDX-License-Identifier: GPL-3.0-or-later
"""Private helpers for ``borgstack.stack.stack_health`` on a Docker Swarm: reading ``docker service ls`` and
``docker service ps`` output (pure functions, table-tested) into what the report says of a swarm service - how many
of its tasks run out of how many are wanted, on which nodes, and which task keeps failing and why.

A swarm service's task is counted as running when Docker wants it running and it is (the task state of a container
with a healthcheck becomes ``running`` only once it is healthy). A task slot (``borgstack_directus.2``; a global
service's slot is its node) whose history holds ``FAILURE_REPEAT`` or more failed or rejected tasks keeps failing:
it is named with the last error and the node, and its newest failed task's logs are shown.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

FAILURE_REPEAT = 2
_FAILED_STATES = ("failed", "rejected")
_REPLICAS_RE = re.compile(r"^\s*(\d+)/(\d+)")


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """One dict per non-empty line of ``--format '{{json .}}'`` output; unreadable lines raise ValueError."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"not a JSON object: {line[:100]}")
            rows.append(row)
    return rows


def replica_counts(replicas: str) -> tuple[int, int]:
    """``docker service ls``'s REPLICAS cell (``1/2``, ``2/2 (max 1 per node)``) as (running, desired)."""
    match = _REPLICAS_RE.match(str(replicas or ""))
    if not match:
        raise ValueError(f"unreadable replica count {replicas!r}")
    return int(match.group(1)), int(match.group(2))


def _state(task: dict[str, Any]) -> str:
    """First word of a task's CurrentState (``Running 5 minutes ago`` -> ``running``)."""
    words = str(task.get("CurrentState") or "").split()
    return words[0].lower() if words else ""


def _slot(task: dict[str, Any]) -> str:
    """The task's slot name: ``docker service ps`` prints older tasks of a slot as ``\\_ name``."""
    return str(task.get("Name") or "").replace("\\_", "").strip()


def task_summary(service: str, replicas: str, tasks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What a swarm service's rows say: running/desired, the nodes its running tasks are on, the task slots that
    keep failing (newest first as ``docker service ps`` lists them) and the pending tasks' reasons."""
    tasks = list(tasks)
    _listed, desired = replica_counts(replicas)
    running = [t for t in tasks if str(t.get("DesiredState") or "").lower() == "running" and _state(t) == "running"]
    failed_by_slot: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if _state(task) in _FAILED_STATES:
            failed_by_slot.setdefault(_slot(task), []).append(task)
    failing_tasks = []
    for slot, failures in failed_by_slot.items():
        if len(failures) >= FAILURE_REPEAT:
            newest = failures[0]
            failing_tasks.append({"task": slot, "id": str(newest.get("ID") or ""), "failures": len(failures),
                                  "node": str(newest.get("Node") or ""),
                                  "error": " ".join(str(newest.get("Error") or newest.get("CurrentState") or "")
                                                    .split())})
    pending = sorted({" ".join(str(t.get("Error") or "").split()) for t in tasks
                      if str(t.get("DesiredState") or "").lower() == "running" and _state(t) == "pending"
                      and t.get("Error")})
    return {"service": service, "running": len(running), "desired": desired,
            "nodes": sorted({str(t.get("Node") or "") for t in running} - {""}),
            "failing_tasks": failing_tasks, "pending": pending}


def summary_problem(summary: dict[str, Any]) -> str:
    """Why a swarm service is not healthy (every wanted task running), or an empty string."""
    if summary["desired"] > 0 and summary["running"] >= summary["desired"]:
        return ""
    where = f" (on {', '.join(summary['nodes'])})" if summary["nodes"] else ""
    parts = [f"{summary['service']} {summary['running']}/{summary['desired']} tasks running{where}"]
    if summary["desired"] == 0:
        parts[0] += " - no task is wanted (scaled to 0?)"
    for task in summary["failing_tasks"]:
        on = f" on {task['node']}" if task["node"] else ""
        parts.append(f"task {task['task']} keeps failing ({task['failures']} failures, last{on}: {task['error']})")
    for reason in summary["pending"]:
        parts.append(f"pending: {reason}")
    return "; ".join(parts)


def summary_cell(summaries: Iterable[dict[str, Any]]) -> str:
    """A table cell: ``n8n 1/1 @node-3, n8n-worker 2/2 @node-2,node-4`` (the stack prefix dropped)."""
    cells = []
    for summary in summaries:
        name = summary["service"].split("_", 1)[-1]
        nodes = ",".join(summary["nodes"]) or "-"
        cells.append(f"{name} {summary['running']}/{summary['desired']} @{nodes}")
    return ", ".join(cells)
