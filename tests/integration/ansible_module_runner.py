# SPDX-License-Identifier: GPL-3.0-or-later
"""Run one of the collection's modules the way Ansible runs it (``ansible localhost -c local -m ...``)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ModuleRun:
    """One run of a module through ansible: its result dictionary and everything it printed."""

    result: dict[str, Any]
    output: str
    returncode: int

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))


def run_module(module: str, args: dict[str, Any], check: bool = False, diff: bool = False,
               timeout: int = 120) -> ModuleRun:
    """Run ``module`` with ``args`` on localhost through the ansible CLI, from the repository (its ansible.cfg)."""
    ansible = shutil.which("ansible", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert ansible, "the ansible CLI is not installed"
    command = [
        ansible, "localhost", "--inventory", "localhost,", "--connection", "local",
        "--extra-vars", f"ansible_python_interpreter={sys.executable}",
        "--module-name", module, "--args", json.dumps(args),
    ]
    if diff:
        command.append("--diff")
    if check:
        command.append("--check")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    try:
        report = json.loads(proc.stdout)
        result = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"unreadable ansible output ({exc}):\n{proc.stdout}\n{proc.stderr}") from exc
    return ModuleRun(result=result, output=proc.stdout + proc.stderr, returncode=proc.returncode)
