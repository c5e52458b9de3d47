"""What the role tests share: a throwaway inventory wired like the stack (group_vars/all linked), a playbook runner,
and one play per bad-input case running a role's validation entry point and recording whether it failed and with
which message (how the tests check that `validate` refuses each case naming the variable)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def _ansible_bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def wiring_inventory(tmp: Path, group_vars: Mapping[str, Any]) -> Path:
    """An inventory with localhost in the borgstack group, the stack's wiring (playbooks/group_vars/all linked) and
    ``group_vars`` as the operator's settings; returns its hosts file."""
    inventory_dir = tmp / "inventory"
    (inventory_dir / "group_vars" / "borgstack").mkdir(parents=True, exist_ok=True)
    link = inventory_dir / "group_vars" / "all"
    if not link.exists():
        link.symlink_to(REPO_ROOT / "playbooks" / "group_vars" / "all")
    (inventory_dir / "hosts.yml").write_text(yaml.safe_dump({"borgstack": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    (inventory_dir / "group_vars" / "borgstack" / "test.yml").write_text(yaml.safe_dump(dict(group_vars)))
    return inventory_dir / "hosts.yml"


def run_playbook(tmp: Path, plays: List[Dict[str, Any]], inventory: Path) -> subprocess.CompletedProcess:
    """ansible-playbook on ``plays`` (written under ``tmp``), from the repository root."""
    path = tmp / f"play-{len(list(tmp.glob('play-*.yml')))}.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_STDOUT_CALLBACK="default")
    return subprocess.run([_ansible_bin("ansible-playbook"), "-i", str(inventory), str(path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=env, timeout=900, check=False)


def validation_plays(role: str, cases: Mapping[str, Tuple[Any, ...]], results: Path, hosts: str = "borgstack",
                     base_vars: Mapping[str, Any] | None = None, tasks_from: str = "validate") -> List[Dict[str, Any]]:
    """Plays for ``cases`` ({case: (settings, ...)}): each writes results/<case>.json - {"failed": false} or
    {"failed": true, "msg": <the failing task's message>}."""
    plays = []
    for case, (settings, *_rest) in cases.items():
        plays.append({
            "name": f"Case {case}",
            "hosts": hosts,
            "gather_facts": False,
            "vars": {**(base_vars or {}), **settings},
            "tasks": [{
                "name": "Validate",
                "block": [
                    {"name": "Run the role's validation",
                     "ansible.builtin.include_role": {"name": f"borgstack.stack.{role}", "tasks_from": tasks_from}},
                    {"name": "Record success", "ansible.builtin.copy": {
                        "dest": str(results / f"{case}.json"), "mode": "0600", "content": '{"failed": false}'}},
                ],
                "rescue": [
                    {"name": "Record the failure", "ansible.builtin.copy": {
                        "dest": str(results / f"{case}.json"), "mode": "0600",
                        "content": "{{ {'failed': true, 'msg': ansible_failed_result.msg | default('')} | to_json }}"}},
                ],
            }],
        })
    return plays


def outcomes(results: Path) -> Dict[str, Dict[str, Any]]:
    """{case: outcome} read back from the files the plays wrote."""
    return {path.stem: json.loads(path.read_text()) for path in results.glob("*.json")}


def expose_role(role: str, tasks_from: str = "validate") -> Dict[str, Any]:
    """A task that runs a role's validation with the wiring and keeps its defaults for the tasks after it."""
    return {"name": f"Validate and expose the {role} role's defaults",
            "ansible.builtin.include_role": {"name": f"borgstack.stack.{role}", "tasks_from": tasks_from,
                                             "public": True}}


def render_task(name: str, template: Path, dest: Path, mode: str = "0644") -> Dict[str, Any]:
    """A task that renders one of the collection's templates with everything the play has exposed."""
    return {"name": name,
            "ansible.builtin.copy": {"dest": str(dest), "mode": mode,
                                     "content": "{{ lookup('ansible.builtin.template', '%s') }}" % template}}


def assert_outcome(outcome: Mapping[str, Any], fragment: str | None) -> None:
    """A case without a fragment passed validation; one with a fragment failed with it in the message."""
    if fragment is None:
        assert outcome == {"failed": False}
    else:
        assert outcome["failed"] is True, outcome
        assert fragment in str(outcome["msg"]), outcome["msg"]


def docker_compose_config(compose_file: Path) -> Dict[str, Any]:
    """``docker compose config`` of a rendered file: --quiet must accept it; the normalised JSON is returned."""
    base = ["docker", "compose", "--project-name", "borgstack", "--file", str(compose_file), "config"]
    quiet = subprocess.run([*base, "--quiet"], capture_output=True, text=True, check=False, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run([*base, "--format", "json"], capture_output=True, text=True, check=False, timeout=60)
    assert full.returncode == 0, full.stderr
    return json.loads(full.stdout)
