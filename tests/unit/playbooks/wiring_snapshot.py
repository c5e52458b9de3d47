# SPDX-License-Identifier: GPL-3.0-or-later
"""Evaluate variables of the stack's wiring for a fixed set of inventories and hash their values.

Used twice: once, before the registry fed the roles through one contract, to record what every wiring variable
held (``fixtures/wiring-before-contract.json``: a SHA-256 per variable and inventory, so no secret is stored); and by
``test_contract_equivalence.py``, which evaluates the contract expressions that replaced them and compares hashes:
an operator's inventory from before the change converges to the same files, containers and secrets.

Run ``python3 tests/unit/playbooks/wiring_snapshot.py <var> ...`` to print the hashes of the given variables.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
MASTER = "contract-equivalence-master-secret-0123456789abcdef"

# The inventories the snapshot covers: the lab's (as the molecule scenario uses it) and a production-like one with
# every app on, n8n queue mode and Duplicati with a destination (more branches of the wiring).
INVENTORIES: Dict[str, Dict[str, Any]] = {
    "lab": {"source": "inventories/lab/group_vars/borgstack/main.yml", "settings": {}},
    "production": {
        "source": "inventories/prod/group_vars/borgstack/main.yml",
        "settings": {
            "borgstack_services": {
                "n8n": {"containers": {"n8n-worker": {"replicas": 2}}},
                "duplicati": {"enabled": True},
                "directus": {"site": {"hostname": "cms.loja.com.br"}},
            },
            "duplicati_destination_url": "s3://backups-loja/borgstack?s3-server-name=s3.example.net",
            "borgstack_secret_overrides": {"chatwoot_admin_password": "Override-Senha-Forte-1!"},
            "borgstack_secret_versions": {"redis_password": 2},
        },
    },
}


# The roles the registry feeds (the host roles read no registry value but the backup role's).
SERVICE_ROLES = ("stack", "postgresql", "redis", "mongodb", "seaweedfs", "n8n", "directus", "lowcoder", "fileflows",
                 "evolution_api", "chatwoot", "duplicati", "caddy", "backup", "compose_service")


def normalise(value: Any) -> Any:
    """Numbers written as strings compare equal to numbers; mappings are compared by content."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(normalise(value), sort_keys=True).encode()).hexdigest()


def evaluate(inventory: str, expressions: Mapping[str, str], role_defaults: Mapping[str, Any] = None) -> Dict[str, Any]:
    """{name: value} of each Jinja expression for localhost in ``inventory`` (see INVENTORIES), with
    ``role_defaults`` as variables of the lowest level."""
    spec = INVENTORIES[inventory]
    role_defaults = dict(role_defaults or {})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        group_vars = tmp / "inventory" / "group_vars"
        (group_vars / "borgstack").mkdir(parents=True)
        (group_vars / "all").mkdir()
        for path in (REPO_ROOT / "playbooks" / "group_vars" / "all").glob("*.yml"):
            (group_vars / "all" / path.name).symlink_to(path)
        # What the roles' defaults set and the wiring does not, at the same (lowest) level: what a role saw.
        (group_vars / "all" / "zz-role-defaults.yml").write_text(yaml.safe_dump(role_defaults))
        settings = yaml.safe_load((REPO_ROOT / spec["source"]).read_text()) or {}
        settings.update(spec["settings"])
        settings.update({"borgstack_master_secret": MASTER, "borgstack_ram_mb": 16384,
                         "ssh_login_key_file": "/dev/null", "ssh_login_host": "192.0.2.1"})
        (group_vars / "borgstack" / "main.yml").write_text(yaml.safe_dump(settings))
        hosts = tmp / "inventory" / "hosts.yml"
        hosts.write_text(yaml.safe_dump({"borgstack": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
        out = tmp / "values.json"
        playbook = tmp / "snapshot.yml"
        playbook.write_text(yaml.safe_dump([{
            "hosts": "borgstack", "gather_facts": False,
            "tasks": [{"ansible.builtin.copy": {
                "dest": str(out), "mode": "0600",
                "content": "{{ __snapshot | to_json }}"},
                "vars": {"__snapshot": {name: "{{ %s }}" % expr for name, expr in expressions.items()}},
                "delegate_to": "localhost", "no_log": True}],
        }]))
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        run = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(hosts),
                              str(playbook)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"ansible-playbook failed for {inventory}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}")
        return json.loads(out.read_text())


def snapshot(inventory: str, expressions: Mapping[str, str], role_defaults: Mapping[str, Any] = None) -> Dict[str, str]:
    return {name: digest(value) for name, value in evaluate(inventory, expressions, role_defaults).items()}


def wiring_variables() -> Dict[str, Any]:
    """Every top-level variable of playbooks/group_vars/all, {name: its file's name}."""
    names: Dict[str, Any] = {}
    for path in sorted((REPO_ROOT / "playbooks" / "group_vars" / "all").glob("*.yml")):
        for name in (yaml.safe_load(path.read_text()) or {}):
            names[name] = path.name
    return names


def role_defaults() -> Dict[str, Any]:
    """Every role default the wiring does not set: {name: default}."""
    wiring = wiring_variables()
    found: Dict[str, Any] = {}
    for role in SERVICE_ROLES:
        path = REPO_ROOT / "roles" / role / "defaults" / "main.yml"
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            if name not in wiring:
                found[name] = value
    return found


if __name__ == "__main__":
    defaults = role_defaults()
    wanted = sys.argv[1:] or list(wiring_variables()) + list(defaults)
    print(json.dumps({inv: snapshot(inv, {name: name for name in wanted}, defaults) for inv in INVENTORIES},
                     indent=1, sort_keys=True))
