"""Shared helpers for the stack scenario's verify tests: rerun the real playbook against the scenario's host."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
HOST = "borgstack-mol-stack"
PUBLIC_IP = "198.51.100.31"


@dataclass
class Run:
    rc: int
    output: str
    changed: int
    failed: int


def run_site(*args: str, timeout: int = 1500) -> Run:
    # Molecule's inventory is a directory (hosts file plus group_vars/host_vars): pass the directory.
    inventory = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
    if not inventory:
        pytest.skip("needs MOLECULE_INVENTORY_FILE (run through molecule verify)")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / "collections"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_ROLES_PATH": str(PROJECT / "roles")}
    proc = subprocess.run(
        ["ansible-playbook", str(PROJECT / "playbooks" / "site.yml"), "-i", inventory, "--limit", HOST, *args],
        cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )
    output = proc.stdout + proc.stderr
    recap = re.search(rf"^{re.escape(HOST)}\s*:.*?changed=(\d+).*?failed=(\d+)", output, re.M)
    assert recap, f"no play recap in the output:\n{output[-4000:]}"
    return Run(proc.returncode, output, int(recap.group(1)), int(recap.group(2)))


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
