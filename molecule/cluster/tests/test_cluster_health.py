# SPDX-License-Identifier: GPL-3.0-or-later
"""The health play's internal checks on the swarm, and a disabled service leaving the swarm (issue 24), against the
real lab cluster.

- stack_health on the first manager checks, besides each swarm service's tasks, the internal endpoints and the
  database logins as on one host: from the network namespace of a task running on that node, over the overlay, at
  the addresses Docker's DNS gives for the container names. First all pass (each check ran: ``ok``, not
  ``skipped``); then Directus's PostgreSQL role is refused logins by hand and the same play fails naming directus, the
  database check and PostgreSQL's own refusal, and nothing else; put back, the play passes again.
- With ``borgstack_services.directus.enabled: false`` a run of the directus and caddy roles removes Directus's swarm
  service, its Docker secrets and configs, and its Caddy site; its volume and its database stay. Check mode first
  reports that and removes nothing; a rerun changes nothing; enabled again, it comes back on the same data.

What did not run, and why: stopping an internal endpoint alone (Directus's /server/health is also its swarm
healthcheck: the swarm replaces such a task before a play can see it) - the unit tests cover that message
(tests/unit/plugins/module_utils/test_swarm_health.py); the first manager without any task of the stack (the
checks then fail saying so; unit-tested); compose_service_purge on a swarm (Compose-only).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# pylint: disable=wrong-import-position,import-error
from playbook_runner import inventory, run_site  # noqa: E402
from test_cluster import DATA, EDGE, NODES, STACK, _changed, _play, sh, wait_for  # noqa: E402

HEALTH_TASK = "Check every enabled service"


def _report(run: Any) -> dict[str, dict]:
    """{service: report entry} of stack_health in a json run."""
    data, _end = json.JSONDecoder().raw_decode(run.output[run.output.index("{"):])
    for play in data["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].startswith(HEALTH_TASK) and DATA in task["hosts"]:
                return {entry["name"]: entry for entry in task["hosts"][DATA].get("report", [])}
    raise AssertionError(f"no stack_health result for {DATA}:\n{run.output[-3000:]}")


def _psql(sql: str) -> str:
    task = sh(DATA, "docker", "ps", "--filter", f"label=com.docker.swarm.service.name={STACK}_postgresql",
              "--format", "{{.Names}}").stdout.split()
    assert len(task) == 1, task
    return sh(DATA, "docker", "exec", task[0], "psql", "-U", "postgres", "-tAc", sql).stdout.strip()


def test_health_play_checks_internal_endpoints_and_logins_over_the_overlay():
    healthy = run_site(DATA, "--tags", "health", json_output=True, timeout=900)
    assert healthy.rc == 0 and healthy.failed == 0, healthy.output[-4000:]
    report = _report(healthy)
    # Each check really ran (ok, not skipped): PostgreSQL's port, Redis's login, Directus's endpoint and its login.
    assert report["postgresql"]["checks"]["internal"] == "ok", report["postgresql"]
    assert report["redis"]["checks"]["database"] == "ok", report["redis"]
    assert report["directus"]["checks"]["internal"] == "ok", report["directus"]
    assert report["directus"]["checks"]["database"] == "ok", report["directus"]

    _psql("ALTER ROLE directus NOLOGIN")
    try:
        broken = run_site(DATA, "--tags", "health", "-e", "borgstack_health_timeout=5", json_output=True,
                          timeout=900)
        messages = " ".join(f.message for f in broken.failures)
        assert broken.rc != 0 and broken.changed == 0, broken.output[-4000:]
        first = messages.split("\n", maxsplit=1)[0]
        assert first.endswith("): directus."), first  # directus alone
        assert "[directus] database: failing: postgresql at " in messages, messages[-3000:]
        assert 'role "directus" is not permitted to log in' in messages, messages[-3000:]
        entry = _report(broken)["directus"]
        assert entry["checks"]["replicas"] == "ok" and entry["checks"]["internal"] == "ok", entry
    finally:
        _psql("ALTER ROLE directus LOGIN")
    again = run_site(DATA, "--tags", "health", json_output=True, timeout=900)
    assert again.rc == 0 and _report(again)["directus"]["checks"]["database"] == "ok", again.output[-4000:]


def test_check_mode_on_the_running_cluster_runs_the_steps_and_predicts_a_drift():
    """`--check --diff --tags postgresql` on the running cluster reads each node's tasks and runs the steps after the
    deployment in check mode, as on one host: Directus's PostgreSQL role refused logins by hand is reported as a change
    on the data node (postgresql_tenant, through the PostgreSQL task there) and nothing is changed - the role still
    cannot log in. (Before, check mode read no task on a cluster and ran no step: changed=0 whatever had drifted.)"""
    assert _psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'directus'") == "t"
    _psql("ALTER ROLE directus NOLOGIN")
    try:
        check = _play(Path(inventory()), "--check", "--diff", "--tags", "postgresql", timeout=900)
        output = check.stdout + check.stderr
        assert check.returncode == 0, output[-4000:]
        assert _changed(output).get(DATA, 0) >= 1, output[-4000:]
        assert _psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'directus'") == "f"
    finally:
        _psql("ALTER ROLE directus LOGIN")


def _inventory_with(tmp_path: Path, service: str, enabled: bool) -> Path:
    """A copy of the scenario's inventory with borgstack_services.<service>.enabled set."""
    copy = tmp_path / "inventory"
    tmp_path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-r", inventory(), str(copy)], check=True)

    def walk(node: Any) -> bool:
        found = False
        if isinstance(node, dict):
            if isinstance(node.get("borgstack_services"), dict):
                node["borgstack_services"].setdefault(service, {})["enabled"] = enabled
                found = True
            for value in node.values():
                found = walk(value) or found
        return found

    changed = []
    # Molecule writes group_vars/<group> without an extension.
    for path in [p for p in copy.rglob("*") if p.is_file()]:
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if walk(data):
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            changed.append(path)
    assert changed, f"no borgstack_services in {inventory()}"
    return copy


def _services() -> list[str]:
    return sh(DATA, "docker", "service", "ls", "--format", "{{.Name}}").stdout.split()


def _objects(kind: str) -> list[str]:
    return sh(DATA, "docker", kind, "ls", "--filter", "label=org.borgstack.service=directus", "--format",
              "{{.Name}}").stdout.split()


def _volumes() -> dict[str, list[str]]:
    return {node: sh(node, "docker", "volume", "ls", "--quiet", "--filter", "name=directus").stdout.split()
            for node in NODES}


def _caddyfile() -> str:
    """The Caddyfile Caddy serves: the file on the edge node's disk, bind-mounted into its task (as on one host)."""
    return sh(EDGE, "cat", "/opt/borgstack/services/caddy/config/Caddyfile").stdout


@pytest.mark.slow
def test_a_disabled_service_leaves_the_swarm_and_comes_back(tmp_path):
    service = f"{STACK}_directus"
    assert service in _services() and _objects("secret"), _services()
    volumes = _volumes()
    assert any(volumes.values()), volumes
    assert "directus." in _caddyfile()
    off = _inventory_with(tmp_path / "off", "directus", False)
    tags = ("--tags", "directus,caddy")
    try:
        dry = _play(off, *tags, "--check")
        assert dry.returncode == 0, (dry.stdout + dry.stderr)[-4000:]
        assert "Remove the swarm services of directus" in dry.stdout and service in _services(), dry.stdout[-4000:]
        assert _changed(dry.stdout)[DATA] > 0, dry.stdout[-3000:]

        run = _play(off, *tags)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        wait_for(f"{service} gone", lambda: service not in _services(), timeout=60)
        assert _objects("secret") == [] and _objects("config") == []
        assert "directus." not in _caddyfile()
        assert _volumes() == volumes  # its data stays on its node(s)
        assert _psql("SELECT count(*) FROM pg_database WHERE datname = 'directus'") == "1"

        rerun = _play(off, *tags)
        assert rerun.returncode == 0 and set(_changed(rerun.stdout).values()) == {0}, rerun.stdout[-4000:]
    finally:
        back = _play(Path(inventory()), *tags)
    assert back.returncode == 0, (back.stdout + back.stderr)[-4000:]
    wait_for(f"{service} running again", lambda: sh(DATA, "docker", "service", "ls", "--filter",
                                                    f"name={service}", "--format", "{{.Replicas}}").stdout.strip()
             in ("1/1", "2/2"), timeout=300, every=3)
    assert "directus." in _caddyfile() and _volumes() == volumes
