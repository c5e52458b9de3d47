# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for stack_health: a small stack of real containers on its own Docker network, and a module runner.

The stack: Redis 8.0 with a password and a ``redis-cli ping`` healthcheck that a hold file (``HOLD_FILE`` in the
container) keeps failing, inside a long start period so that a held Redis stays "starting" as long as a test wants,
PostgreSQL 17 with a superuser password
and a ``pg_isready`` healthcheck, and Caddy 2.11.7 serving ``https://app.test`` with ``tls internal``. All three sit
on an ``internal`` user network on a free private subnet; the host reaches them at their addresses there, as it
reaches the real stack. Caddy's local root CA is copied to the host so TLS is verified for real.

Without Docker or an image the tests are skipped, unless BORGSTACK_REQUIRE_INTEGRATION=1 turns the skip into a
failure. Containers and the network are removed at the end of the session.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pytest
from ansible_module_runner import BackgroundRun, ModuleRun, run_module, start_module
from lab_prerequisites import require_docker_images

REDIS_IMAGE = os.environ.get("BORGSTACK_REDIS_IMAGE", "borgstack-lab/redis:8.0")
POSTGRESQL_IMAGE = os.environ.get("BORGSTACK_POSTGRESQL_IMAGE", "borgstack-lab/postgresql:17")
CADDY_IMAGE = os.environ.get("BORGSTACK_CADDY_IMAGE", "borgstack-lab/caddy:2.11.7")
REPO_ROOT = Path(__file__).resolve().parents[4]
# Private /24s tried in turn; one already routed on this machine or used by another Docker network is skipped.
SUBNETS = ("172.31.240.0/24", "172.31.241.0/24", "172.31.242.0/24", "172.30.240.0/24")
READY_TIMEOUT = 120.0
# While this file exists in the Redis container its healthcheck fails; within the start period Docker then reports
# "starting" (never "unhealthy"), so a test holds Redis in that state for as long as it needs.
HOLD_FILE = "/borgstack-hold-health"
REDIS_START_PERIOD = "900s"
APP_HOST = "app.test"
CADDYFILE = f"""{{
\tskip_install_trust
\tadmin off
}}

https://{APP_HOST} {{
\ttls internal
\trespond "ok" 200
}}
"""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def _routed_prefixes() -> str:
    return subprocess.run(["ip", "route"], capture_output=True, text=True, check=False).stdout


def _create_network(name: str) -> str:
    routes = _routed_prefixes()
    errors = []
    for subnet in SUBNETS:
        if subnet.rsplit(".", 1)[0] + "." in routes:
            continue
        proc = docker("network", "create", "--driver", "bridge", "--internal", "--subnet", subnet, name, check=False)
        if proc.returncode == 0:
            return subnet
        errors.append(f"{subnet}: {proc.stderr.strip()}")
    pytest.fail(f"no free subnet for the test network: {'; '.join(errors) or 'all routed already'}")


@dataclass
class Stack:
    network: str
    redis: str
    postgresql: str
    caddy: str
    redis_password: str
    postgresql_password: str
    ca_path: str
    caddy_ip: str
    redis_hold_file: ClassVar[str] = HOLD_FILE

    def ip(self, container: str) -> str:
        return inspect_ip(container, self.network)

    @staticmethod
    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return docker(*args, check=check)

    @staticmethod
    def health_of(container: str) -> str:
        return health_of(container)

    @staticmethod
    def wait_healthy(*containers: str) -> None:
        wait_healthy(*containers)

    def services(self, **overrides: Any) -> list[dict[str, Any]]:
        """The module's ``services`` for this stack; ``app`` stands for an application behind Caddy using PostgreSQL."""
        app_db_password = overrides.get("app_db_password", self.postgresql_password)
        return [
            {"name": "redis", "container": self.redis,
             "database": {"type": "redis", "password": self.redis_password}},
            {"name": "postgresql", "container": self.postgresql,
             "database": {"type": "postgresql", "user": "postgres", "password": self.postgresql_password}},
            {"name": "app", "container": self.caddy,
             "internal_check": {"type": "http", "port": 80, "path": "/", "expect_status": [301, 308]},
             "public_url": f"https://{APP_HOST}/", "public_expect_status": [200],
             "database": {"type": "postgresql", "container": self.postgresql, "dbname": "postgres",
                          "user": "postgres", "password": app_db_password}},
        ]

    def module_args(self, **overrides: Any) -> dict[str, Any]:
        args = {
            "network": self.network,
            "public_resolve": {APP_HOST: self.caddy_ip},
            "ca_path": self.ca_path,
            "timeout": overrides.pop("timeout", 60),
            "log_lines": overrides.pop("log_lines", 5),
            "services": self.services(**overrides),
        }
        return args


def inspect_ip(container: str, network: str) -> str:
    template = "{{with index .NetworkSettings.Networks \"" + network + "\"}}{{.IPAddress}}{{end}}"
    return docker("inspect", "--format", template, container).stdout.strip()


def health_of(container: str) -> str:
    return docker("inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                  container, check=False).stdout.strip()


def wait_healthy(*containers: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        states = {name: health_of(name) for name in containers}
        if all(state == "healthy" for state in states.values()):
            return
        time.sleep(0.5)
    logs = {name: docker("logs", "--tail", "20", name, check=False) for name in containers}
    pytest.fail(f"containers not healthy after {READY_TIMEOUT:.0f}s: {states}\n"
                + "\n".join(f"{name}:\n{proc.stdout}{proc.stderr}" for name, proc in logs.items()))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    require_docker_images(REDIS_IMAGE, POSTGRESQL_IMAGE, CADDY_IMAGE)

    tag = secrets.token_hex(4)
    network = f"borgstack-test-health-{tag}"
    names = {key: f"borgstack-test-health-{key}-{tag}" for key in ("redis", "postgresql", "caddy")}
    workdir = Path(tempfile.mkdtemp(prefix="stack-health-"))
    redis_password = secrets.token_urlsafe(18)
    postgresql_password = secrets.token_urlsafe(18)
    created_network = False
    try:
        _create_network(network)
        created_network = True
        caddyfile = workdir / "Caddyfile"
        caddyfile.write_text(CADDYFILE)
        caddyfile.chmod(0o644)
        common = ["run", "--detach", "--network", network, "--health-interval", "1s", "--health-timeout", "5s",
                  "--health-retries", "30"]
        docker(*common, "--name", names["redis"], "--health-start-period", REDIS_START_PERIOD,
               "--health-cmd", f"test ! -e {HOLD_FILE} && "
                               f"redis-cli --no-auth-warning -a '{redis_password}' ping | grep -q PONG",
               REDIS_IMAGE, "redis-server", "--requirepass", redis_password)
        docker(*common, "--name", names["postgresql"], "--env", f"POSTGRES_PASSWORD={postgresql_password}",
               "--health-cmd", "pg_isready -U postgres -h 127.0.0.1 -q", POSTGRESQL_IMAGE)
        docker(*common, "--name", names["caddy"], "--volume", f"{caddyfile}:/etc/caddy/Caddyfile:ro",
               "--health-cmd", "bash -c 'echo > /dev/tcp/127.0.0.1/443'", CADDY_IMAGE)
        wait_healthy(*names.values())
        ca_path = workdir / "caddy-root.crt"
        deadline = time.monotonic() + READY_TIMEOUT
        while docker("cp", f"{names['caddy']}:/data/caddy/pki/authorities/local/root.crt", str(ca_path),
                     check=False).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail("Caddy did not create its local root CA")
            time.sleep(0.5)
        yield Stack(network=network, redis=names["redis"], postgresql=names["postgresql"], caddy=names["caddy"],
                    redis_password=redis_password, postgresql_password=postgresql_password, ca_path=str(ca_path),
                    caddy_ip=inspect_ip(names["caddy"], network))
    finally:
        for name in names.values():
            docker("rm", "--force", "--volumes", name, check=False)
        if created_network:
            docker("network", "rm", network, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class HealthModule:
    """Runs borgstack.stack.stack_health with ``ansible -c local`` from the repository, as Ansible would."""

    runs: list[ModuleRun] = field(default_factory=list)

    def __call__(self, args: dict[str, Any], check: bool = False) -> ModuleRun:
        run = run_module("borgstack.stack.stack_health", args, check=check, timeout=600)
        self.runs.append(run)
        return run

    @staticmethod
    def start(args: dict[str, Any], env: dict[str, str] | None = None) -> BackgroundRun:
        """The same run in the background (collect it with ``.wait()``); ``env`` adds to its environment."""
        return start_module("borgstack.stack.stack_health", args, timeout=600, env=env)


DOCKER_SHIM = """#!{python}
# A stand-in for docker, first in PATH of one module run: runs the real docker, and after every successful
# `docker container inspect` appends one line per container to the log: its name and its Docker health status.
import json
import subprocess
import sys

proc = subprocess.run([{real!r}, *sys.argv[1:]], capture_output=True, text=True, check=False)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
sys.stdout.flush()
if sys.argv[1:3] == ["container", "inspect"] and proc.returncode == 0:
    with open({log!r}, "a", encoding="utf-8") as log:
        for info in json.loads(proc.stdout):
            health = (info.get("State") or {{}}).get("Health") or {{}}
            log.write(f"{{info['Name'].lstrip('/')}} {{health.get('Status', 'none')}}\\n")
sys.exit(proc.returncode)
"""


@dataclass
class DockerShim:
    """Environment for a module run whose docker calls are observed; ``inspected()`` reads what it saw so far."""

    env: dict[str, str]
    log: Path

    def inspected(self) -> list[tuple[str, str]]:
        if not self.log.exists():
            return []
        return [tuple(line.split(" ", 1)) for line in self.log.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def docker_shim(tmp_path: Path) -> DockerShim:
    real = shutil.which("docker")
    assert real, "the docker CLI is not installed"
    bindir = tmp_path / "shim-bin"
    bindir.mkdir()
    log = tmp_path / "docker-inspect.log"
    shim = bindir / "docker"
    shim.write_text(DOCKER_SHIM.format(python=sys.executable, real=real, log=str(log)), encoding="utf-8")
    shim.chmod(0o755)
    return DockerShim(env={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}, log=log)


@pytest.fixture()
def health_module() -> HealthModule:
    return HealthModule()
