# SPDX-License-Identifier: GPL-3.0-or-later
"""Rerun the real site playbook from a molecule verify test against the scenario's own host."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
# The one skip-or-fail helper of the project's tests (tests/integration/lab_prerequisites.py).
sys.path.insert(0, str(PROJECT / "tests" / "integration"))
from lab_prerequisites import require_env, unavailable  # noqa: E402  pylint: disable=wrong-import-position,import-error

__all__ = ["Failure", "Run", "inventory", "run_site", "require_env", "unavailable"]
# Molecule's inventory is a directory (hosts file plus group_vars/host_vars): pass the directory.
INVENTORY_FILE_VARIABLE = "MOLECULE_INVENTORY_FILE"


@dataclass(frozen=True)
class Failure:
    """One failed task (or loop item) of a json run: where it failed and the message the operator reads."""

    play: str
    task: str
    message: str


@dataclass
class Run:
    """One ansible-playbook run: exit code, everything it printed, the recap counts of the host."""

    rc: int
    output: str
    changed: int
    failed: int
    # With json_output: every failure on the host, in order. An assert's message is its fail_msg; an argument-spec
    # check gives one message per wrong argument.
    failures: list[Failure] = field(default_factory=list)


def _failures(report: dict[str, Any], host: str) -> list[Failure]:
    found: list[Failure] = []
    for play in report.get("plays", []):
        play_name = play.get("play", {}).get("name", "")
        for task in play.get("tasks", []):
            result = task.get("hosts", {}).get(host)
            if not result:
                continue
            name = task.get("task", {}).get("name", "")
            items = [item for item in result.get("results", []) if isinstance(item, dict) and item.get("failed")]
            for item in items:
                found.append(Failure(play_name, name, str(item.get("msg", ""))))
            if result.get("failed") and not items:
                errors = result.get("argument_errors") or [result.get("msg", "")]
                found.extend(Failure(play_name, name, str(error)) for error in errors)
    return found


def inventory() -> str:
    """The scenario's inventory directory (molecule's inventory file sits in it beside group_vars/host_vars)."""
    return os.path.dirname(require_env(INVENTORY_FILE_VARIABLE, "run through molecule verify"))


# Every playbook run of the session: (what ran, seconds) - summed up at the end of a verify (``runs_summary``),
# since playbook runs are most of a scenario's test time.
RUNS: list[tuple[str, float]] = []


def runs_summary(top: int = 8) -> list[str]:
    """Lines for the terminal summary: how many playbook runs, their total seconds and the slowest."""
    if not RUNS:
        return []
    lines = [f"{len(RUNS)} playbook runs took {sum(s for _r, s in RUNS):.0f} s; the slowest:"]
    lines += [f"{seconds:7.1f} s  {what}" for what, seconds in sorted(RUNS, key=lambda r: -r[1])[:top]]
    return lines


def playbook_env(*args: str) -> dict[str, str]:
    """The environment of an ansible-playbook run of the scenario's project. Molecule gives the verifier its provisioner
    environment, and a scenario's ANSIBLE_RUN_TAGS (the converge's roles) would be added to a run's own ``--tags``
    (ansible-playbook appends the command line's tags to that default): a run that names its tags gets none of it, so
    `--tags swarm` runs the swarm role only, as it does outside molecule."""
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / "collections"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_ROLES_PATH": str(PROJECT / "roles")}
    if any(arg in ("--tags", "-t") or arg.startswith("--tags=") for arg in args):
        env.pop("ANSIBLE_RUN_TAGS", None)
    return env


def run_site(host: str, *args: str, timeout: int = 1500, json_output: bool = False,
             playbook: str = "site.yml") -> Run:
    """ansible-playbook site.yml --limit HOST ARGS... with the scenario's inventory; the recap must name HOST.

    ``playbook``: another playbook of the project (e.g. playbooks/backup.yml), relative to the project root.

    ``json_output`` runs with the json stdout callback and fills ``Run.failures``.
    """
    started = time.monotonic()
    env = playbook_env(*args)
    if json_output:
        env.update(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    proc = subprocess.run(
        ["ansible-playbook", str(PROJECT / playbook), "-i", inventory(), "--limit", host, *args],
        cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )
    output = proc.stdout + proc.stderr
    RUNS.append((" ".join([playbook, *args])[:100], time.monotonic() - started))
    if json_output:
        try:
            report = json.loads(proc.stdout)
            stats = report["stats"][host]
        except (ValueError, KeyError) as exc:
            raise AssertionError(f"no json report for {host} ({exc}):\n{output[-4000:]}") from exc
        return Run(proc.returncode, output, int(stats["changed"]), int(stats["failures"]), _failures(report, host))
    recap = re.search(rf"^{re.escape(host)}\s*:.*?changed=(\d+).*?failed=(\d+)", output, re.M)
    assert recap, f"no play recap for {host} in the output:\n{output[-4000:]}"
    return Run(proc.returncode, output, int(recap.group(1)), int(recap.group(2)))
