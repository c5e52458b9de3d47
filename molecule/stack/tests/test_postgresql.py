# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify PostgreSQL on the lab host against real state (testinfra, ``host`` = the lab host).

The live settings are compared with the RAM plan computed here from the host's own facts by the collection's
filters (ram_budget → pgtune), not with the file the role wrote. Logins over TCP run from a throw-away client
container on the internal network (the lab PostgreSQL image's psql), the way an app connects; passwords go through
the client's environment and never into an assertion message.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import HOST, PROJECT, inspect, run_site

sys.path.insert(0, str(PROJECT / "collections"))
# pylint: disable=wrong-import-position
from ansible_collections.borgstack.stack.plugins.filter.registry import memory_specs, service_registry  # noqa: E402
from ansible_collections.borgstack.stack.plugins.filter.sizing import pgtune, ram_budget  # noqa: E402
from playbook_runner import inventory  # noqa: E402

POSTGRESQL = "borgstack-postgresql"
INTERNAL_NETWORK = "borgstack_internal"
CLIENT_IMAGE = "borgstack-lab/postgresql:17"
PG_CONF = "/opt/borgstack/services/postgresql/postgresql.conf"
# The services the lab enables (inventories/lab): the RAM plan is split among them.
# The registry as the lab has it: the shipped defaults with the lab inventory's changes (its images, and the apps
# the lab cannot run switched off), so the memory plan is the one the host got.
_ROOT = Path(__file__).resolve().parents[3]
REGISTRY = service_registry(
    yaml.safe_load((_ROOT / "playbooks/group_vars/all/services.yml").read_text())["borgstack_service_defaults"],
    yaml.safe_load((_ROOT / "inventories/lab/group_vars/borgstack/main.yml").read_text())["borgstack_services"])
_UNITS = {"B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def _psql_tcp(host, user: str, password: str, dbname: str, sql: str = "select 1"):
    """psql over TCP from a client container on the internal network; returns the command result."""
    return host.run(
        f"PGPASSWORD={shlex.quote(password)} docker run --rm --network {INTERNAL_NETWORK} -e PGPASSWORD "
        f"--entrypoint psql {CLIENT_IMAGE} -h {POSTGRESQL} -U {shlex.quote(user)} -d {shlex.quote(dbname)} "
        f"-v ON_ERROR_STOP=1 -tAc {shlex.quote(sql)}"
    )


def _psql_super(host, sql: str, dbname: str = "postgres") -> str:
    """psql as the superuser through the container's socket."""
    return host.check_output(f"docker exec {POSTGRESQL} psql -U postgres -d {dbname} -v ON_ERROR_STOP=1 "
                             f"-tAc {shlex.quote(sql)}")


def _bytes(value: str, unit: str = "") -> int:
    """A size in bytes from pgtune's strings ('2340MB', '5760kB') or pg_settings (setting, unit '8kB')."""
    if unit:
        number, base = re.fullmatch(r"(\d*)([kMGT]?B)", unit).groups()
        return int(value) * int(number or 1) * _UNITS[base]
    number, base = re.fullmatch(r"(-?\d+)([kMGT]?B)", value).groups()
    return int(number) * _UNITS[base]


def _live_settings(host, names) -> dict[str, tuple[str, str]]:
    quoted = ",".join(f"'{n}'" for n in names)
    rows = _psql_super(host, f"select json_agg(json_build_array(name, setting, coalesce(unit, ''))) "
                             f"from pg_settings where name in ({quoted})")
    return {name: (setting, unit) for name, setting, unit in json.loads(rows)}


@pytest.fixture(scope="module")
def plan(host) -> dict[str, str]:
    facts = host.ansible("setup", "gather_subset=!all,hardware", check=False)["ansible_facts"]
    budget = ram_budget(int(facts["ansible_memtotal_mb"]), memory_specs(REGISTRY))
    return pgtune(budget["postgresql"]["ram_mb"], int(facts["ansible_processor_vcpus"]), 200, "ssd", "mixed", 17)


@pytest.fixture(scope="module")
def n8n_password(host) -> str:
    # n8n reads it from this root-only file (DB_POSTGRESDB_PASSWORD_FILE).
    return host.file("/opt/borgstack/services/n8n/db-password").content_string.strip()


def _assert_live_equals_plan(host, plan: dict[str, str]) -> None:
    live = _live_settings(host, plan)
    assert set(live) == set(plan), f"unknown to the server: {set(plan) - set(live)}"
    wrong = {}
    for name, wanted in plan.items():
        setting, unit = live[name]
        if unit and re.fullmatch(r"-?\d+[kMGT]?B", wanted):
            ok = _bytes(setting, unit) == _bytes(wanted)
        elif unit and wanted == "-1":
            ok = setting == "-1"
        else:
            ok = setting == wanted
        if not ok:
            wrong[name] = {"plan": wanted, "live": f"{setting} {unit}".strip()}
    assert not wrong, wrong


def test_healthy_on_the_internal_network_only(host):
    info = inspect(host, POSTGRESQL)
    assert info["State"]["Health"]["Status"] == "healthy"
    assert set(info["NetworkSettings"]["Networks"]) == {INTERNAL_NETWORK}
    assert not info["HostConfig"]["PortBindings"]
    # Positive control for the unpublished port: the server does listen on 5432 on that network.
    assert _psql_tcp(host, "postgres", "wrong-password-000", "postgres").rc != 0
    listening = host.check_output(f"docker exec {POSTGRESQL} cat /proc/net/tcp")
    assert re.search(r"^\s*\d+: 00000000:1538 00000000:0000 0A", listening, re.M), "5432 is not listening"


def test_live_settings_equal_the_ram_plan(host, plan):
    assert plan["shared_buffers"] != "128MB", "the plan is PostgreSQL's default: the RAM plan was not applied"
    _assert_live_equals_plan(host, plan)
    assert _psql_super(host, "select count(*) from pg_settings where pending_restart").strip() == "0"


def test_tenant_logs_in_over_tcp_and_a_wrong_password_is_refused(host, n8n_password):
    good = _psql_tcp(host, "n8n", n8n_password, "n8n", "select current_user")
    assert good.rc == 0 and good.stdout.strip() == "n8n", good.stderr
    bad = _psql_tcp(host, "n8n", n8n_password[:-1] + ("x" if n8n_password[-1] != "x" else "y"), "n8n")
    assert bad.rc != 0
    assert 'password authentication failed for user "n8n"' in bad.stderr, bad.stderr
    hba = _psql_super(host, "select distinct auth_method from pg_hba_file_rules where type = 'host'").split()
    assert hba and set(hba) <= {"scram-sha-256"}, hba


def test_tenant_extensions_present(host):
    extensions = _psql_super(host, "select extname from pg_extension", dbname="n8n").split()
    assert "vector" in extensions, extensions
    owner = _psql_super(host, "select pg_get_userbyid(datdba) from pg_database where datname = 'n8n'").strip()
    assert owner == "n8n"
    superuser = _psql_super(host, "select rolsuper from pg_roles where rolname = 'n8n'").strip()
    assert superuser == "f", "the tenant's owner must not be a superuser"


def test_a_tenant_cannot_connect_to_another_tenants_database(host, n8n_password):
    """A second tenant is made by the same module the role uses; each is refused at the other's database."""
    probe_password = secrets.token_urlsafe(18)
    args = {"name": "probe", "database": "probe", "password": probe_password, "extensions": [],
            "login_unix_socket": "/opt/borgstack/services/postgresql/run", "login_user": "postgres"}
    module = subprocess.run(
        ["ansible", HOST, "-i", inventory(), "-m", "borgstack.stack.postgresql_tenant", "-a", json.dumps(args)],
        cwd=PROJECT, capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / "collections")})
    try:
        assert module.returncode == 0, module.stdout[-2000:] + module.stderr[-2000:]
        # Positive controls: each tenant reaches its own database.
        assert _psql_tcp(host, "probe", probe_password, "probe").rc == 0
        assert _psql_tcp(host, "n8n", n8n_password, "n8n").rc == 0
        for user, password, other in (("n8n", n8n_password, "probe"), ("probe", probe_password, "n8n")):
            refused = _psql_tcp(host, user, password, other)
            assert refused.rc != 0, f"{user} connected to {other}"
            assert "permission denied for database" in refused.stderr, refused.stderr
    finally:
        _psql_super(host, "drop database if exists probe")
        _psql_super(host, "drop role if exists probe")


def test_changed_setting_heals_live_without_pending_restart(host, plan):
    """A hand edit made live (reload) is put back by a rerun: the live values are the plan's, nothing pending."""
    host.check_output(f"printf \"work_mem = '1MB'\\nshared_buffers = '128MB'\\n\" >> {PG_CONF}")
    _psql_super(host, "select pg_reload_conf()")
    # Positive control: the drift is live (work_mem) and waiting for a restart (shared_buffers).
    for _attempt in range(50):
        if _live_settings(host, ["work_mem"])["work_mem"] == ("1024", "kB"):
            break
        host.run("sleep 0.2")
    assert _live_settings(host, ["work_mem"])["work_mem"] == ("1024", "kB")
    pending = _psql_super(host, "select string_agg(name, ',') from pg_settings where pending_restart").strip()
    assert pending == "shared_buffers", pending

    heal = run_site("--tags", "postgresql")
    assert heal.rc == 0 and heal.changed > 0, heal.output[-4000:]
    _assert_live_equals_plan(host, plan)
    assert _psql_super(host, "select count(*) from pg_settings where pending_restart").strip() == "0"
    again = run_site("--tags", "postgresql")
    assert again.rc == 0 and again.changed == 0, again.output[-4000:]
