"""Shared helpers for the stack scenario's verify tests: rerun the real playbook against the scenario's host."""
from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbook_runner import PROJECT, Run, run_site as _run_site  # noqa: E402  pylint: disable=wrong-import-position

HOST = "borgstack-mol-stack"
PUBLIC_IP = "198.51.100.31"
__all__ = ["PROJECT", "PUBLIC_IP", "HOST", "VALIDATION_PLAY", "Run", "run_site", "changed_tasks", "inspect",
           "env_file"]
VALIDATION_PLAY = "Validate every setting before anything changes"


def run_site(*args: str, timeout: int = 1500, json_output: bool = False) -> Run:
    return _run_site(HOST, *args, timeout=timeout, json_output=json_output)


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


def inspect(host, name: str) -> dict:
    """``docker inspect`` of one container on the lab host."""
    result = host.run(f"docker inspect {shlex.quote(name)}")
    assert result.rc == 0, f"{name} does not exist on the lab host: {result.stderr}"
    return json.loads(result.stdout)[0]


def env_file(host, path: str) -> dict[str, str]:
    """Parse a secrets.env written by compose_service (KEY="json string"), on the lab host."""
    values = {}
    for line in host.file(path).content_string.splitlines():
        match = re.match(r"^([A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            values[match.group(1)] = json.loads(match.group(2))
    return values
