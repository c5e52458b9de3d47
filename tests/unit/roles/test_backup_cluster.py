# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the backup job goes on a cluster, and what its settings tell the script (roles/backup: vars/main.yml, the
filter cluster_backup_host, templates/backup.json.j2), with the project's group_vars on throwaway local inventories:

- two hosts, PostgreSQL and Redis held by n1: only n1 gets the job (n2 none), and its settings name the swarm
  services (borgstack_postgresql, borgstack_redis) the script finds the tasks of on its own node;
- one host: the job as always, its settings without any swarm key (the script looks the containers up by name);
- Redis held by another node than PostgreSQL: the validation refuses before any change, naming both hosts and the fix;
- restore.yml and restore-drill.yml are refused on a cluster (before any change, pointing at the manual procedure).

What does not run here: the job itself (molecule/cluster/tests/test_cluster_backup.py runs it on a lab swarm).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Mapping

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import role_plays  # noqa: E402  pylint: disable=import-error,wrong-import-position

ROOT = Path(__file__).resolve().parents[3]
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
SETTINGS = {"borgstack_master_secret": "render-test-master-secret-0123456789abcdef",
            "borgstack_admin_email": "ti@example.com.br", "caddy_acme_email": "ti@example.com.br",
            "borgstack_domain": "example.com.br", "borgstack_ram_mb": 16384,
            "borgstack_services": {name: {"enabled": False} for name in (
                "mongodb", "lowcoder", "fileflows", "evolution_api", "chatwoot", "duplicati", "monitoring",
                "directus", "seaweedfs")}}
CLUSTER = {"n1": {**LOCAL, "borgstack_node_address": "10.0.0.1", "borgstack_node_data": ["postgresql", "redis"]},
           "n2": {**LOCAL, "borgstack_node_address": "10.0.0.2", "borgstack_node_edge": True}}
SPLIT = {"n1": {**CLUSTER["n1"], "borgstack_node_data": ["postgresql"]},
         "n2": {**CLUSTER["n2"], "borgstack_node_data": ["redis"]}}


def _outcome_play(out: Path) -> Dict[str, Any]:
    """The backup role's validation on every host, then <out>/<host>.json: whether the job goes there, where it goes
    and the script's settings (secrets left out); or the validation's message."""
    settings = "lookup('ansible.builtin.template', '%s') | from_json" % (
        ROOT / "roles" / "backup" / "templates" / "backup.json.j2")
    record = ("{{ {'failed': false, 'here': __backup_here | bool, 'host': __backup_placement.host, 'settings': (%s)"
              " | dict2items | rejectattr('key', 'search', 'password|table_figures') | items2dict} | to_json }}"
              % settings)
    return {"name": "Backup placement", "hosts": "borgstack", "gather_facts": False, "tasks": [{
        "name": "Validate", "block": [
            {"name": "Run the role's validation", "ansible.builtin.include_role": {
                "name": "borgstack.stack.backup", "tasks_from": "validate", "public": True}},
            {"name": "Record", "ansible.builtin.copy": {
                "dest": str(out) + "/{{ inventory_hostname }}.json", "mode": "0600", "content": record}}],
        "rescue": [{"name": "Record the failure", "ansible.builtin.copy": {
            "dest": str(out) + "/{{ inventory_hostname }}.json", "mode": "0600",
            "content": "{{ {'failed': true, 'msg': ansible_failed_result.msg} | to_json }}"}}]}]}


def _run(tmp: Path, hosts: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    inventory = role_plays.inventory(tmp, hosts, SETTINGS)
    # The template reads the role's table_checksums.sql by a file lookup: outside the role, from the play's files/.
    (tmp / "files").mkdir()
    (tmp / "files" / "table_checksums.sql").symlink_to(ROOT / "roles" / "backup" / "files" / "table_checksums.sql")
    role_plays.run_plays(tmp, inventory, [_outcome_play(tmp)])
    return {host: json.loads((tmp / f"{host}.json").read_text()) for host in hosts}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("cluster"), CLUSTER)


def test_only_the_node_holding_the_data_gets_the_job_and_finds_the_swarm_tasks(cluster):
    n1, n2 = cluster["n1"], cluster["n2"]
    assert not n1["failed"] and not n2["failed"], cluster
    assert n1["here"] is True and n2["here"] is False
    assert n1["host"] == n2["host"] == "n1"
    assert n1["settings"]["postgresql_swarm_service"] == "borgstack_postgresql"
    assert n1["settings"]["redis_swarm_service"] == "borgstack_redis"
    assert n1["settings"]["mongodb_swarm_service"] == ""  # off here
    assert n1["settings"]["postgresql_container"] == "borgstack-postgresql"


def test_one_host_keeps_the_job_and_its_container_names(tmp_path):
    solo = _run(tmp_path, {"solo": LOCAL})["solo"]
    assert not solo["failed"] and solo["here"] is True and solo["host"] is None
    assert solo["settings"]["postgresql_container"] == "borgstack-postgresql"
    assert solo["settings"]["redis_container"] == "borgstack-redis"
    # The settings file of one host is the one it always was: no swarm key at all.
    assert not [key for key in solo["settings"] if "swarm" in key]


def test_redis_on_another_node_is_refused_naming_both_hosts_and_the_fix(tmp_path):
    outcome = _run(tmp_path, SPLIT)
    for host in ("n1", "n2"):
        assert outcome[host]["failed"], outcome
        assert "redis is held by n2 but postgresql by n1" in outcome[host]["msg"]
        assert "Hold redis on n1 too (borgstack_node_data), or set backup_enabled: false" in outcome[host]["msg"]
        assert "Nothing was changed." in outcome[host]["msg"]


@pytest.mark.parametrize("playbook, extra", [("restore.yml", ["-e", "restore_confirm=all"]),
                                             ("restore-drill.yml", [])])
def test_restore_and_drill_are_refused_on_a_cluster_before_any_change(tmp_path, playbook, extra):
    inventory = role_plays.inventory(tmp_path, CLUSTER, SETTINGS)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), str(ROOT / "playbooks" / playbook), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode != 0
    assert f"Refuse {playbook} on a cluster" in proc.stdout
    assert 'Restore by hand on that node, as docs/multi-servidor.md says ("Restaurar um dump num cluster")' in \
        " ".join(proc.stdout.split())
    assert "whose dump sets are on n1" in " ".join(proc.stdout.split())
    assert "changed=0" in proc.stdout and "changed=1" not in proc.stdout
