# SPDX-License-Identifier: GPL-3.0-or-later
"""Secret rotation on the converged lab host: n8n's PostgreSQL password and the Redis password move one version
forward (borgstack_secret_versions), one run of the roles that hold them (the documented --tags; a full run adds
only the rest of the stack) applies them - PostgreSQL (postgresql_tenant) and Redis
(requirepass in its auth file, container recreated) in the data play first, then the apps (n8n, Directus: their secret
files change, compose_deploy recreates them; n8n's shipped credentials are re-imported by fingerprint), then the
health play. Checked on the real servers: the old passwords are refused, the new ones work, n8n's workflows and
credentials are all there and decrypt, the versions are recorded on the server, a second run changes nothing, and
going back to the old versions is refused by the validation play before any change.

Versions only move forward: the test writes them to the scenario inventory's host_vars (conftest.SECRET_VERSIONS_FILE)
and leaves them there, so every later run and test keeps the rotated secrets (conftest derives with them); a rerun
of this test moves both one version further.

Not run here: the SeaweedFS keys (same path: its identity file then the apps' secret files; not rotated by this test
to keep it short), and the apps the lab has no image for (Evolution API, Chatwoot, Lowcoder, MongoDB).
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import yaml
from conftest import (SECRET_VERSIONS_FILE, VALIDATION_PLAY, assert_no_leak, derived, inspect, run_site,
                      secret_versions)
from playbook_runner import inventory

POSTGRESQL = "borgstack-postgresql"
REDIS = "borgstack-redis"
N8N = "borgstack-n8n"
DIRECTUS = "borgstack-directus"
INTERNAL_NETWORK = "borgstack_internal"
CLIENT_IMAGE = "borgstack-lab/postgresql:17"
ROTATED = ("postgresql_n8n", "redis_password")
RECORD = "/opt/borgstack/secret-versions.json"
# The roles that hold these two secrets, server first (docs/rotacao-segredos.md), and the health play that checks them
# and records the versions: a full run does the same plus everything else (three full runs took ~18 min on the shared
# 2-core lab machine).
TAGS = "--tags=backup,postgresql,redis,n8n,directus,health"
# Recreated because a file they mount changed: Redis (auth.conf), n8n (db-password), Directus (Redis password).
RECREATED = (REDIS, N8N, DIRECTUS)


def _psql_tcp(host, user: str, password: str, dbname: str):
    """psql over TCP from a client container on the internal network (the password through the environment)."""
    return host.run(
        f"PGPASSWORD={shlex.quote(password)} docker run --rm --network {INTERNAL_NETWORK} -e PGPASSWORD "
        f"--entrypoint psql {CLIENT_IMAGE} -h {POSTGRESQL} -U {shlex.quote(user)} -d {shlex.quote(dbname)} "
        f"-v ON_ERROR_STOP=1 -tAc 'select current_user'")


def _redis_ping(host, password: str):
    """PING with a password given through `docker exec`'s environment (never argv)."""
    return host.run(f"REDISCLI_AUTH={shlex.quote(password)} docker exec -e REDISCLI_AUTH {REDIS} "
                    f"redis-cli --no-auth-warning ping")


def _n8n_rows(host) -> dict[str, list[str]]:
    """Ids of n8n's workflows and credentials, read as the superuser through the server's socket."""
    rows = {}
    for table in ("workflow_entity", "credentials_entity"):
        out = host.check_output(f"docker exec {POSTGRESQL} psql -U postgres -d n8n -v ON_ERROR_STOP=1 -tAc "
                                f"{shlex.quote(f'select id from {table} order by id')}")
        rows[table] = out.split()
    return rows


def _n8n_credentials(host) -> dict[str, dict]:
    """Every n8n credential decrypted by n8n's own CLI (it fails on one it cannot decrypt): {id: data}. The file
    stays inside the container, root-only /tmp, and is removed; nothing of it goes into an assertion message."""
    path = "/tmp/borgstack-rotation-credentials.json"
    export = host.run(f"docker exec {N8N} n8n export:credentials --all --decrypted --output={path}")
    try:
        assert export.rc == 0, f"n8n could not export (decrypt) its credentials: rc={export.rc}"
        data = json.loads(host.check_output(f"docker exec {N8N} cat {path}"))
    finally:
        host.run(f"docker exec {N8N} rm -f {path}")
    return {c["id"]: c.get("data") or {} for c in data}


def _started(host) -> dict[str, str]:
    return {name: inspect(host, name)["State"]["StartedAt"] for name in RECREATED}


def test_rotating_postgresql_and_redis_passwords(host):
    began = time.monotonic()
    before_versions = secret_versions()
    after_versions = {**before_versions, **{p: int(before_versions.get(p, 1)) + 1 for p in ROTATED}}
    old = {"postgresql_n8n": derived("postgresql_n8n", versions=before_versions),
           "redis_password": derived("redis_password", versions=before_versions)}
    new = {"postgresql_n8n": derived("postgresql_n8n", versions=after_versions),
           "redis_password": derived("redis_password", versions=after_versions)}
    assert old["postgresql_n8n"] != new["postgresql_n8n"] and old["redis_password"] != new["redis_password"]
    # The host runs the current versions (else the test starts from an unknown state).
    assert _psql_tcp(host, "n8n", old["postgresql_n8n"], "n8n").rc == 0, "n8n's current password does not log in"
    assert _redis_ping(host, old["redis_password"]).stdout.strip() == "PONG", "Redis refuses its current password"
    rows_before = _n8n_rows(host)
    assert rows_before["workflow_entity"] and rows_before["credentials_entity"], rows_before
    started_before = _started(host)

    # The operator's change: one version forward, in the inventory (kept: later runs and tests use it too).
    versions_file = Path(inventory()) / SECRET_VERSIONS_FILE
    versions_file.parent.mkdir(parents=True, exist_ok=True)
    versions_file.write_text("---\n# Written by molecule/stack/tests/test_rotation.py: versions only move forward.\n"
                             + yaml.safe_dump({"borgstack_secret_versions": after_versions}), encoding="utf-8")

    run = run_site(TAGS)
    assert run.rc == 0 and run.failed == 0, f"the rotation run failed:\n{run.output[-3000:]}"
    assert run.changed > 0
    assert_no_leak(host, run.output, "the rotation run")

    # The servers: old passwords refused, new ones accepted.
    refused = _psql_tcp(host, "n8n", old["postgresql_n8n"], "n8n")
    assert refused.rc != 0 and 'password authentication failed for user "n8n"' in refused.stderr, refused.stderr
    accepted = _psql_tcp(host, "n8n", new["postgresql_n8n"], "n8n")
    assert accepted.rc == 0 and accepted.stdout.strip() == "n8n", accepted.stderr
    refused = _redis_ping(host, old["redis_password"])
    assert "PONG" not in refused.stdout and "WRONGPASS" in refused.stdout + refused.stderr, refused.stdout
    assert _redis_ping(host, new["redis_password"]).stdout.strip() == "PONG"

    # The apps: recreated with the new secret files, and n8n still has every workflow and credential, all
    # decryptable, its shipped database and Redis credentials carrying the new passwords.
    started_after = _started(host)
    assert all(started_after[n] != started_before[n] for n in RECREATED), (started_before, started_after)
    assert host.file("/opt/borgstack/services/n8n/db-password").content_string.strip() == new["postgresql_n8n"], \
        "n8n's db-password file does not hold the new password"
    assert _n8n_rows(host) == rows_before
    credentials = _n8n_credentials(host)
    assert sorted(credentials) == sorted(rows_before["credentials_entity"])
    assert credentials["BorgStackCrPg001"].get("password") == new["postgresql_n8n"], \
        "n8n's database credential was not updated to the new password"
    assert credentials["BorgStackCrRed01"].get("password") == new["redis_password"], \
        "n8n's Redis credential was not updated to the new password"
    for state in (inspect(host, name)["State"] for name in RECREATED):
        assert state["Running"] and state.get("Health", {}).get("Status") == "healthy", state

    # The healthy run recorded the versions the server runs (numbers only, root-only).
    record = host.file(RECORD)
    assert record.exists and record.mode == 0o600 and record.user == "root"
    assert json.loads(record.content_string) == after_versions

    # Converged: the next run changes nothing.
    again = run_site(TAGS)
    assert again.rc == 0 and again.changed == 0, f"changed={again.changed} on the run after the rotation"

    # Going back to the old versions is refused before anything changes, naming the variable.
    back = run_site(TAGS, "-e", json.dumps({"borgstack_secret_versions": before_versions}), json_output=True)
    assert back.rc != 0 and back.changed == 0, f"rc={back.rc} changed={back.changed}"
    assert {f.play for f in back.failures} == {VALIDATION_PLAY}, back.failures
    expected = f"borgstack_secret_versions.postgresql_n8n is {after_versions['postgresql_n8n'] - 1} but this server " \
               f"already runs version {after_versions['postgresql_n8n']}"
    assert any(expected in f.message for f in back.failures), back.failures
    print(f"rotation test: {time.monotonic() - began:.0f} s (versions {after_versions})")
