# SPDX-License-Identifier: GPL-3.0-or-later
"""Rerun the real site playbook from a molecule verify test against the scenario's own host."""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
# Molecule's inventory is a directory (hosts file plus group_vars/host_vars): pass the directory.
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))


@dataclass
class Run:
    rc: int
    output: str
    changed: int
    failed: int


def run_site(host: str, *args: str, timeout: int = 1500) -> Run:
    """ansible-playbook site.yml --limit HOST ARGS... with the scenario's inventory; the recap must name HOST."""
    if not INVENTORY:
        pytest.skip("needs MOLECULE_INVENTORY_FILE (run through molecule verify)")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / "collections"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_ROLES_PATH": str(PROJECT / "roles")}
    proc = subprocess.run(
        ["ansible-playbook", str(PROJECT / "site.yml"), "-i", INVENTORY, "--limit", host, *args],
        cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )
    output = proc.stdout + proc.stderr
    recap = re.search(rf"^{re.escape(host)}\s*:.*?changed=(\d+).*?failed=(\d+)", output, re.M)
    assert recap, f"no play recap for {host} in the output:\n{output[-4000:]}"
    return Run(proc.returncode, output, int(recap.group(1)), int(recap.group(2)))
