"""Shared helpers for the stack scenario's verify tests: rerun the real playbook against the scenario's host."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbook_runner import PROJECT, Run, inventory, runs_summary, run_site as _run_site  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, str(PROJECT / "collections"))
# pylint: disable=wrong-import-position,import-error
from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret  # noqa: E402
from leak_scan import describe, find_leaks  # noqa: E402

# A developer may run a private copy of the scenario beside another one (scripts/molecule-private.sh): its host name
# and address come from the environment; CI runs the scenario as committed.
HOST = os.environ.get("BORGSTACK_MOL_HOST", "borgstack-mol-stack")
PUBLIC_IP = os.environ.get("BORGSTACK_MOL_IP", "198.51.100.31")
__all__ = ["PROJECT", "PUBLIC_IP", "HOST", "VALIDATION_PLAY", "Run", "run_site", "changed_tasks", "inspect",
           "env_file", "DERIVED", "lab_master", "host_secrets", "assert_no_leak", "public_ip", "root_cert",
           "ROOT_CERT", "secret_versions", "SECRET_VERSIONS_FILE", "derived", "wait_for"]
VALIDATION_PLAY = "Validate every setting before anything changes"


def run_site(*args: str, timeout: int = 1500, json_output: bool = False, playbook: str = "site.yml") -> Run:
    return _run_site(HOST, *args, timeout=timeout, json_output=json_output, playbook=playbook)


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported 'changed' in a default-callback run."""
    tasks, current = [], None
    for line in output.splitlines():
        head = re.match(r"^TASK \[(.*)\]", line)
        if head:
            current = head.group(1)
        elif line.startswith("changed:") and current:
            tasks.append(current)
    return tasks


def inspect(host, name: str) -> dict:
    """``docker inspect`` of one container on the lab host."""
    result = host.run(f"docker inspect {shlex.quote(name)}")
    assert result.rc == 0, f"{name} does not exist on the lab host: {result.stderr}"
    return json.loads(result.stdout)[0]


def env_file(host, path: str) -> dict[str, str]:
    """Parse a secrets.env written by compose_service (KEY="json string"), on the lab host."""
    values = {}
    for line in host.file(path).content_string.splitlines():
        match = re.match(r"^([A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            values[match.group(1)] = json.loads(match.group(2))
    return values


def _derived_secrets() -> dict[str, int]:
    """Every secret the stack derives, purpose -> length, from the registry (playbooks/group_vars/all/services.yml):
    each entry's `secrets` (length 40 unless given) and the logins the contracts derive for it (postgresql_<service>,
    mongodb_<service>, basic_auth_<service>, 40 characters). A derived value with a suffix (n8n's and Chatwoot's
    first passwords end in "-Aa1") is looked for without it: the printed value contains it."""
    registry = yaml.safe_load((PROJECT / "playbooks" / "group_vars" / "all" / "services.yml").read_text(
        encoding="utf-8"))["borgstack_service_defaults"]
    found: dict[str, int] = {}
    for name, entry in registry.items():
        for purpose, spec in (entry.get("secrets") or {}).items():
            found[purpose] = int((spec or {}).get("length", 40))
        if entry.get("postgres"):
            found[f"postgresql_{name}"] = 40
        if entry.get("mongodb"):
            found[f"mongodb_{name}"] = 40
        if (entry.get("site") or {}).get("basic_auth"):
            found[f"basic_auth_{name}"] = 40
    return found


DERIVED = _derived_secrets()
# test_rotation.py rotates secrets forward and leaves the versions here, in the scenario's inventory, so that every
# later run of the playbook (and every later test) keeps the rotated secrets: versions never move back.
SECRET_VERSIONS_FILE = f"host_vars/{HOST}/secret_versions.yml"


def secret_versions() -> dict[str, int]:
    """borgstack_secret_versions as the scenario's inventory has it now ({} before any rotation)."""
    path = Path(inventory()) / SECRET_VERSIONS_FILE
    if not path.exists():
        return {}
    return dict((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("borgstack_secret_versions") or {})


def derived(purpose: str, length: int = 40, versions: dict[str, int] | None = None) -> str:
    """The secret the lab host has for ``purpose`` (the lab master, at the inventory's current version)."""
    return stack_secret(purpose, lab_master(), {}, length, versions=secret_versions() if versions is None else versions)


CA_KEYS = ("/data/caddy/pki/authorities/local/root.key", "/data/caddy/pki/authorities/local/intermediate.key")


def lab_master() -> str:
    """The lab master secret (lab/lab.sh secret), as the lab inventory reads it."""
    return subprocess.run([str(PROJECT / "lab" / "lab.sh"), "secret"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _pem_lines(pem: str) -> list[str]:
    """The base64 body lines of a PEM key: any of them in the output means the key leaked."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----") and len(line) >= 32]


def host_secrets(host) -> dict[str, str]:
    """Every secret of the lab stack: derived ones, the master, each secrets.env value, Caddy's CA key lines."""
    master = lab_master()
    found = {"master": master}
    versions = secret_versions()
    for purpose, length in DERIVED.items():
        found[purpose] = stack_secret(purpose, master, {}, length, versions=versions)
    for path in host.check_output("find /opt/borgstack/services -name secrets.env").split():
        service = path.split("/")[-2]
        for key, value in env_file(host, path).items():
            found[f"{service}:{key}"] = value
    for path in CA_KEYS:
        pem = host.run(f"docker exec borgstack-caddy cat {path}")
        assert pem.rc == 0, f"Caddy's CA key {path} is missing: {pem.stderr}"
        for number, line in enumerate(_pem_lines(pem.stdout)):
            found[f"caddy:{path.rsplit('/', 1)[1]}:{number}"] = line
    return found


def assert_no_leak(host, output: str, what: str) -> None:
    leaks = find_leaks(output, host_secrets(host))
    assert not leaks, f"secrets printed by {what}: {describe(leaks)}"


ROOT_CERT = "/opt/borgstack/services/caddy/root.crt"


def public_ip(host) -> str:
    """The lab host's address on the public network: BORGSTACK_PUBLIC_IP, else its lab_public_ip, else PUBLIC_IP."""
    if os.environ.get("BORGSTACK_PUBLIC_IP"):
        return os.environ["BORGSTACK_PUBLIC_IP"]
    try:
        return str(host.ansible.get_variables().get("lab_public_ip") or PUBLIC_IP)
    except (AttributeError, RuntimeError):
        return PUBLIC_IP


@pytest.fixture(scope="module")
def root_cert(host, tmp_path_factory) -> Path:
    """The internal CA root as the caddy role left it on the host, saved on the controller (per test module: a
    redeployment in between makes a new CA)."""
    cert = host.file(ROOT_CERT)
    assert cert.exists, f"{ROOT_CERT} is missing: the caddy role did not copy the internal CA root"
    path = tmp_path_factory.mktemp("caddy") / "root.crt"
    path.write_text(cert.content_string)
    return path


def wait_for(what: str, probe, timeout: float = 60, every: float = 0.5):
    """Poll until probe() returns something truthy and return it; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what} did not happen within {timeout} s (last: {last!r})")


def pytest_terminal_summary(terminalreporter) -> None:
    """The playbook runs' share of the verify time (for the CI-time work)."""
    for line in runs_summary():
        terminalreporter.write_line(line)
