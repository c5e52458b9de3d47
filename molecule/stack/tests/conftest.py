"""Shared helpers for the stack scenario's verify tests: rerun the real playbook against the scenario's host."""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbook_runner import PROJECT, Run, run_site as _run_site  # noqa: E402  pylint: disable=wrong-import-position

HOST = "borgstack-mol-stack"
PUBLIC_IP = "198.51.100.31"
__all__ = ["PROJECT", "PUBLIC_IP", "HOST", "Run", "run_site", "changed_tasks"]


def run_site(*args: str, timeout: int = 1500) -> Run:
    return _run_site(HOST, *args, timeout=timeout)


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported 'changed' in a default-callback run."""
    tasks, current = [], None
    for line in output.splitlines():
        head = re.match(r"^TASK \[(.*)\]", line)
        if head:
            current = head.group(1)
        elif line.startswith("changed:") and current:
            tasks.append(current)
    return tasks
