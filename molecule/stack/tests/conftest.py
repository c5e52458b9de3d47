"""Shared helpers for the stack scenario's verify tests: rerun the real playbook against the scenario's host."""
from __future__ import annotations

import json
import re
import shlex
import sys
import textwrap
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbook_runner import PROJECT, Run, run_site as _run_site  # noqa: E402  pylint: disable=wrong-import-position

HOST = "borgstack-mol-stack"
PUBLIC_IP = "198.51.100.31"
__all__ = ["PROJECT", "PUBLIC_IP", "HOST", "Run", "run_site", "changed_tasks", "inspect", "env_file",
           "failure_messages", "failed_plays"]
VALIDATION_PLAY = "Validate every setting before anything changes"


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


def failure_messages(output: str) -> list[str]:
    """The ``msg`` of every failed task in a default-callback run (what the operator reads), nothing else.

    Assertions that a run "names the variable" look here, never at task titles or the whole output.
    """
    messages = []
    for match in re.finditer(r"^fatal: \[[^\]]+\]: FAILED! =>(.*?)(?=^\S|\Z)", output, re.M | re.S):
        body = textwrap.dedent(match.group(1).strip("\n"))
        try:
            parsed = yaml.safe_load(body)
        except yaml.YAMLError:
            parsed = None
        messages.append(str(parsed.get("msg", "")) if isinstance(parsed, dict) else body)
    return messages


def failed_plays(output: str) -> list[str]:
    """Name of the play of every failed task in a default-callback run, in order.

    "Refused before any change" means the only entry is the validation play: a converged host reports changed=0
    even when a later play fails, so the recap alone cannot tell.
    """
    plays, current = [], None
    for line in output.splitlines():
        head = re.match(r"^PLAY \[(.*)\] \*", line)
        if head:
            current = head.group(1)
        elif line.startswith("fatal: [") and current:
            plays.append(current)
    return plays
