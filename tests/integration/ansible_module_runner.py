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


def _command(module: str, args: dict[str, Any], check: bool, diff: bool) -> list[str]:
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
    return command


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    return dict(os.environ, **(env or {}), ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                ANSIBLE_NOCOLOR="1")


def _parse(stdout: str, stderr: str, returncode: int) -> ModuleRun:
    try:
        report = json.loads(stdout)
        result = report["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"unreadable ansible output ({exc}):\n{stdout}\n{stderr}") from exc
    return ModuleRun(result=result, output=stdout + stderr, returncode=returncode)


class BackgroundRun:
    """A module run started with :func:`start_module`; :meth:`wait` collects it like :func:`run_module` would."""

    def __init__(self, proc: subprocess.Popen[str], timeout: int) -> None:
        self.proc = proc
        self.timeout = timeout

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self) -> ModuleRun:
        try:
            stdout, stderr = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
            raise AssertionError(f"the module run did not finish within {self.timeout}s:\n{stdout}\n{stderr}") from exc
        return _parse(stdout, stderr, self.proc.returncode)

    def stop(self) -> None:
        """Kill the run if it still goes (cleanup after a failed test)."""
        if self.running():
            self.proc.kill()
            self.proc.communicate()


def start_module(  # pylint: disable=too-many-arguments
        module: str, args: dict[str, Any], *, check: bool = False, diff: bool = False, timeout: int = 120,
        env: dict[str, str] | None = None) -> BackgroundRun:
    """Start ``module`` like :func:`run_module` but in the background; ``env`` adds to the environment."""
    proc = subprocess.Popen(  # pylint: disable=consider-using-with  # collected by BackgroundRun.wait/stop
        _command(module, args, check, diff), cwd=REPO_ROOT, env=_environment(env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    return BackgroundRun(proc, timeout)


def run_module(  # pylint: disable=too-many-arguments
        module: str, args: dict[str, Any], *, check: bool = False, diff: bool = False, timeout: int = 120,
        env: dict[str, str] | None = None) -> ModuleRun:
    """Run ``module`` with ``args`` on localhost through the ansible CLI, from the repository (its ansible.cfg).

    ``env`` adds variables to the environment of the run (and so of the module: ``-c local`` passes it on).
    """
    proc = subprocess.run(_command(module, args, check, diff), cwd=REPO_ROOT, env=_environment(env),
                          capture_output=True, text=True, timeout=timeout, check=False)
    return _parse(proc.stdout, proc.stderr, proc.returncode)
