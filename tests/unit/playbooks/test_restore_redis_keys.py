# SPDX-License-Identifier: GPL-3.0-or-later
"""restore.yml and the restore drill over a service's Redis keys: which restored services ran (only those are
started and checked), the refusal of a set that lacks a service's keys, the drill's differences and report lines.
The Jinja expressions are evaluated with Ansible's own templating, as the plays evaluate them, against the summaries
borgstack-backup prints (roles/backup/files/borgstack-backup.py, summary keys checked below)."""
from __future__ import annotations

import json
from pathlib import Path

from ansible.parsing.dataloader import DataLoader
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
RESTORE = AnsibleLoader((ROOT / "playbooks" / "restore.yml").read_text()).get_single_data()[0]
DRILL = AnsibleLoader((ROOT / "playbooks" / "restore-drill.yml").read_text()).get_single_data()[0]
SCRIPT = (ROOT / "roles" / "backup" / "files" / "borgstack-backup.py").read_text()


def _task(play: dict, name: str) -> dict:
    for task in play["tasks"]:
        if task.get("name") == name:
            return task
        for inner in task.get("block", []) + task.get("always", []):
            if inner.get("name") == name:
                return inner
    raise KeyError(name)


def _render(expression: str, variables: dict):
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


def _summary(service: str, keys: int, matched: int, differences=()) -> str:
    return json.dumps({"service": service, "db": 3, "keys": keys, "matched": matched, "deleted": 1,
                       "elements": 12, "differences": list(differences)})


def test_the_script_prints_the_summary_keys_the_plays_read():
    for key in ("service", "db", "keys", "matched", "deleted", "elements", "differences"):
        assert f'"{key}":' in SCRIPT, key


def test_only_restored_services_that_ran_are_started_and_checked():
    task = _task(RESTORE, "Work out which restored services ran")
    variables = {
        "__restore_services": ["n8n", "evolution_api", "directus"],
        "__restore_running": {"stdout_lines": ["borgstack-n8n", "borgstack-redis", "borgstack-directus-2"]},
        "borgstack_endpoints": {
            "n8n": {"containers": {"n8n": ["borgstack-n8n"], "n8n-worker": []}},
            "evolution_api": {"containers": {"evolution-api": ["borgstack-evolution-api"]}},
            "directus": {"containers": {"directus": ["borgstack-directus-1", "borgstack-directus-2"]}}},
    }
    assert _render(task["vars"]["__ran"], variables) == ["n8n", "directus"]


def test_a_set_without_the_keys_of_a_service_that_needs_them_is_refused():
    task = _task(RESTORE, "Refuse a set that lacks the Redis keys of a service whose state needs them")
    contracts = {"redis": {"key_spaces": [{"service": "evolution_api", "db": 3, "spaces": {}}]}}

    def missing(services, manifest):
        variables = {"backup_contracts": contracts, "__restore_services": services, "__backup_manifest": manifest}
        need = _render(task["vars"]["__need_keys"], variables)
        return _render(task["vars"]["__missing"], {**variables, "__need_keys": need})

    assert missing(["n8n", "evolution_api"], {"postgresql": {}}) == ["evolution_api"]
    assert missing(["n8n", "evolution_api"], {"redis_keys": {"evolution_api": {}}}) == []
    assert missing(["n8n"], {}) == []


def test_the_drill_reports_the_keys_and_counts_every_difference():
    task = _task(DRILL, "Build the report")
    manifest = {"redis_keys": {"evolution_api": {"keys": 2}}}
    variables = {
        "__drill_keys": {"results": [{"stdout": _summary("evolution_api", 2, 2)}]},
        "__drill_tables": {}, "__drill_n8n": {}, "__drill_redis": {}, "__backup_manifest": manifest,
        "__backup_set_dir": "/var/backups/borgstack/20261206T063013Z",
    }
    keys = _render(task["vars"]["__keys"], variables)
    variables["__keys"] = keys
    assert _render(task["vars"]["__diffs"], variables) == []
    report = _render(task["ansible.builtin.set_fact"]["__drill_report"], {**variables, "__diffs": []})
    assert "redis keys of evolution_api (db 3): 2/2 load and match the set (12 elements)" in report

    variables["__keys"] = _render(task["vars"]["__keys"], {**variables, "__drill_keys": {"results": [
        {"stdout": _summary("evolution_api", 3, 1, ["a: missing"])}]}})
    assert _render(task["vars"]["__diffs"], variables) == [
        "redis keys of evolution_api: a: missing",
        "redis keys of evolution_api: 3 in the file, 2 in the manifest"]


def test_a_service_that_owns_no_dumped_state_is_refused_before_any_set_is_read():
    names = [task.get("name") for task in RESTORE["tasks"]]
    refusal = names.index("Refuse a service that owns no dumped state")
    assert refusal < names.index("Resolve and check the dump set")
    task = RESTORE["tasks"][refusal]
    contracts = {
        "postgresql": {"enabled": True, "tenants": [{"name": "n8n", "database": "n8n"}]},
        "mongodb": {"enabled": False, "users": [{"name": "lowcoder", "database": "lowcoder"}]},
        "redis": {"enabled": True, "key_spaces": [{"service": "evolution_api", "db": 3, "spaces": {}}]},
    }
    restorable = _render(task["vars"]["__restorable"], {
        "backup_contracts": contracts, "__pg": contracts["postgresql"], "__mongo": contracts["mongodb"]})
    assert restorable == ["n8n", "evolution_api"]

    def holds(service):
        return _render("{{ " + task["ansible.builtin.assert"]["that"] + " }}",
                       {"restore_service": service, "__restorable": restorable})

    assert holds("all") and holds("n8n") and holds("evolution_api")
    assert not holds("redis") and not holds("lowcoder") and not holds("caddy")
