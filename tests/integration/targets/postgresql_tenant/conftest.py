# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for postgresql_tenant: a throwaway PostgreSQL 17 + pgvector container and a module runner.

The container publishes no port. The module reaches it through its Unix socket directory, bind-mounted from a
host temporary directory (owned by the container's postgres uid); tests log in as tenants over TCP to the
container's bridge IP, where pg_hba.conf asks for scram-sha-256.

Without Docker or the image the tests are skipped, unless BORGSTACK_REQUIRE_INTEGRATION=1 (set in CI, which builds
the image) turns the skip into a failure.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from ansible_module_runner import ModuleRun, run_module
from lab_prerequisites import require_docker_images

IMAGE = os.environ.get("BORGSTACK_POSTGRESQL_IMAGE", "borgstack-lab/postgresql:17")
REPO_ROOT = Path(__file__).resolve().parents[4]
POSTGRES_UID = 999
READY_TIMEOUT = 90.0


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@dataclass
class PgServer:
    """A running container: superuser over the socket, anyone over TCP with a password."""

    container: str
    socket_dir: str
    ip: str
    superuser_password: str

    def superuser(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(host=self.socket_dir, user="postgres", dbname=dbname, autocommit=True)

    def tcp(self, user: str, password: str, dbname: str) -> Any:
        import psycopg

        return psycopg.connect(host=self.ip, port=5432, user=user, password=password, dbname=dbname,
                               connect_timeout=5, autocommit=True)

    def scalar(self, query: str, *args: Any, dbname: str = "postgres") -> Any:
        with self.superuser(dbname) as conn:
            row = conn.execute(query, args).fetchone()
        return None if row is None else row[0]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    require_docker_images(IMAGE)

    socket_dir = tempfile.mkdtemp(prefix="pgsock-")
    os.chown(socket_dir, POSTGRES_UID, POSTGRES_UID)
    os.chmod(socket_dir, 0o2775)
    name = f"borgstack-test-pg-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    started = False
    try:
        _docker("run", "--detach", "--name", name, "--env", f"POSTGRES_PASSWORD={password}",
                "--volume", f"{socket_dir}:/var/run/postgresql", IMAGE)
        started = True
        ip = _docker("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                     name).stdout.strip()
        server = PgServer(container=name, socket_dir=socket_dir, ip=ip, superuser_password=password)
        _wait_ready(server)
        yield server
    finally:
        if started:
            _docker("rm", "--force", "--volumes", name, check=False)
        shutil.rmtree(socket_dir, ignore_errors=True)


def _wait_ready(server: PgServer) -> None:
    """The entrypoint first runs a socket-only server for initdb; only the final server listens on TCP."""
    import psycopg

    deadline = time.monotonic() + READY_TIMEOUT
    last_error = ""
    while time.monotonic() < deadline:
        state = _docker("inspect", "--format", "{{.State.Running}}", server.container, check=False).stdout.strip()
        if state != "true":
            logs = _docker("logs", server.container, check=False)
            pytest.fail(f"container {server.container} stopped:\n{logs.stdout}{logs.stderr}")
        try:
            with server.tcp("postgres", server.superuser_password, "postgres"):
                pass
            with server.superuser():
                return
        except psycopg.Error as exc:
            last_error = str(exc)
        time.sleep(0.5)
    pytest.fail(f"PostgreSQL in {server.container} not ready after {READY_TIMEOUT:.0f}s: {last_error}")


@dataclass
class TenantModule:
    """Runs borgstack.stack.postgresql_tenant with ``ansible -c local`` from the repository, as Ansible would."""

    server: PgServer
    runs: list[ModuleRun] = field(default_factory=list)

    def __call__(self, check: bool = False, **args: Any) -> ModuleRun:
        args.setdefault("login_unix_socket", self.server.socket_dir)
        run = run_module("borgstack.stack.postgresql_tenant", args, check=check, diff=True)
        self.runs.append(run)
        return run


@pytest.fixture()
def tenant_module(pg_server: PgServer) -> TenantModule:
    return TenantModule(pg_server)


@pytest.fixture(scope="module")
def shared_tenant_module(pg_server: PgServer) -> TenantModule:
    """The runner for module-scoped fixtures that provision tenants several tests share."""
    return TenantModule(pg_server)


@pytest.fixture()
def fresh_name() -> str:
    """A tenant name no other test uses."""
    return f"t_{secrets.token_hex(4)}"
