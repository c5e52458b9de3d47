# SPDX-License-Identifier: GPL-3.0-or-later
"""What the role render tests share (test_n8n_compose, test_caddyfile, test_apps_cluster): an inventory of lab-like
hosts that reads the project's group_vars, a playbook run that must succeed, and a play that runs a role's
validation and records its outcome."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Mapping

import yaml

ROOT = Path(__file__).resolve().parents[3]


def inventory(tmp: Path, hosts: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    """<tmp>/inventory: the project's group_vars/all, ``settings`` for the group borgstack, ``hosts`` in it."""
    path = tmp / "inventory"
    (path / "group_vars" / "borgstack").mkdir(parents=True)
    (path / "group_vars" / "all").symlink_to(ROOT / "playbooks" / "group_vars" / "all")
    (path / "group_vars" / "borgstack" / "test.yml").write_text(yaml.safe_dump(dict(settings)))
    (path / "hosts.yml").write_text(yaml.safe_dump({"borgstack": {"hosts": dict(hosts)}}))
    return path / "hosts.yml"


def run_plays(tmp: Path, inventory_file: Path, plays: List[Dict[str, Any]]) -> None:
    """ansible-playbook on ``plays`` (written to <tmp>/play.yml) with the project's collection; it must succeed."""
    playbook = tmp / "play.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory_file), str(playbook)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def validate_play(case: str, host: str, out: Path, play_vars: Mapping[str, Any], role: str,
                  tasks_from: str) -> Dict[str, Any]:
    """A play that runs borgstack.stack.<role>'s tasks_from and writes <out>/<case>.result.json: {failed, msg} (the
    checks task's message: every failed rule's own, joined)."""
    return {"name": f"Case {case}", "hosts": host, "gather_facts": False, "vars": dict(play_vars), "tasks": [{
        "name": "Validate", "block": [
            {"name": "Run the role's validation",
             "ansible.builtin.include_role": {"name": f"borgstack.stack.{role}", "tasks_from": tasks_from}},
            {"name": "Record success", "ansible.builtin.copy": {
                "dest": str(out / f"{case}.result.json"), "mode": "0600", "content": '{"failed": false}'}}],
        "rescue": [{"name": "Record the failure", "ansible.builtin.copy": {
            "dest": str(out / f"{case}.result.json"), "mode": "0600",
            "content": "{{ {'failed': true, 'msg': ansible_failed_result.msg} | to_json }}"}}]}]}
