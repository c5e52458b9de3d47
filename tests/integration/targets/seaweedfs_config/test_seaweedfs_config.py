# SPDX-License-Identifier: GPL-3.0-or-later
"""The seaweedfs role's rendered Compose file and S3 identity file, and its input validation.

The templates are rendered by Ansible itself (a throwaway playbook on localhost), then checked:
- every `weed server` flag the role passes exists in SeaweedFS 3.97 (the production pin; list in
  weed-3.97-server-flags.txt) and, when the lab image is on this machine, in the lab's `weed` as well;
- master, volume server and filer listen on the container's loopback, only S3 on the network; nothing published;
- every gRPC server (the S3 gateway's shares the S3 address) requires a certificate of the host's CA;
- the S3 identity file holds the stack identity only (no anonymous identity);
- validate.yml refuses bad bucket names and keys, naming the variable.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
from lab_prerequisites import require_docker_images
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
ROLE = REPO / "roles" / "seaweedfs"
LAB_IMAGE = os.environ.get("BORGSTACK_SEAWEEDFS_IMAGE", "borgstack-lab/seaweedfs:4.30")
KEYS = {"seaweedfs_s3_access_key": "A" * 20, "seaweedfs_s3_secret_key": "b" * 40}
# What the registry gives the role (borgstack_contracts.seaweedfs, plugins/filter/contract.py), as the stack's defaults
# make it; each test changes what it looks at.
SERVICE: Dict[str, Any] = {
    "name": "seaweedfs", "enabled": True, "image": "chrislusf/seaweedfs:3.97", "pull": "never", "project": "borgstack",
    "project_dir": "/opt/borgstack", "networks": {"internal": "borgstack_internal", "external": "borgstack_external"},
    "container": "borgstack-seaweedfs", "port": 8333, "memory_limit_mb": 768,
    "volumes": {"data": "borgstack_seaweedfs_data"}, "secrets": dict(KEYS), "buckets": []}


def _service(**changes: Any) -> Dict[str, Any]:
    """The contract with some keys changed (``secrets`` merged over the keys)."""
    secrets = {**KEYS, **changes.pop("secrets", {})}
    return {"seaweedfs_service": {**SERVICE, **changes, "secrets": secrets}}


def _flags_397() -> Set[str]:
    lines = (HERE / "weed-3.97-server-flags.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def _playbook(tmp_path: Path, tasks: List[Dict[str, Any]], extra: Dict[str, Any]) -> subprocess.CompletedProcess:
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump([{"name": "Try the seaweedfs role", "hosts": "localhost", "connection": "local",
                                     "gather_facts": False, "tasks": tasks}]))
    varfile = tmp_path / "vars.json"
    varfile.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **extra}))
    return subprocess.run(["ansible-playbook", "-i", "localhost,", str(book), "-e", f"@{varfile}"], cwd=REPO,
                          capture_output=True, text=True, timeout=180, check=False,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1"})


def _render(tmp_path: Path, service: Dict[str, Any] = None, **overrides: Any) -> Dict[str, Any]:
    tasks = [{"name": "Load the role defaults", "ansible.builtin.include_vars": str(ROLE / "defaults" / "main.yml")},
             {"name": "Load the role vars", "ansible.builtin.include_vars": str(ROLE / "vars" / "main.yml")}]
    for name in ("compose.yaml", "s3.json", "security.toml"):
        tasks.append({"name": f"Render {name}",
                      "ansible.builtin.template": {"src": str(ROLE / "templates" / f"{name}.j2"),
                                                   "dest": str(tmp_path / name), "mode": "0600"}})
    result = _playbook(tmp_path, tasks, {**_service(**(service or {})), **overrides})
    assert result.returncode == 0, result.stdout + result.stderr
    return {"compose": yaml.safe_load((tmp_path / "compose.yaml").read_text()),
            "s3": json.loads((tmp_path / "s3.json").read_text()),
            "security": tomllib.loads((tmp_path / "security.toml").read_text())}


def _server_flags(service: Dict[str, Any]) -> Dict[str, str]:
    command = service["command"]
    assert "server" in command
    flags = {}
    for arg in command[command.index("server") + 1:]:
        assert arg.startswith("-"), arg
        name, _sep, value = arg[1:].partition("=")
        flags[name] = value
    return flags


@pytest.fixture(scope="module")
def default_render(tmp_path_factory) -> Dict[str, Any]:
    return _render(tmp_path_factory.mktemp("default"))


def test_flags_exist_in_seaweedfs_397(default_render):
    flags = _server_flags(default_render["compose"]["services"]["seaweedfs"])
    unknown = set(flags) - _flags_397()
    assert not unknown, f"flags missing from weed 3.97: {sorted(unknown)}"


def test_flags_exist_in_lab_image(default_render):
    require_docker_images(LAB_IMAGE)
    helptext = subprocess.run(["docker", "run", "--rm", LAB_IMAGE, "server", "-h"], capture_output=True, text=True,
                              timeout=60, check=False)
    known = set(re.findall(r"^\s+-([A-Za-z0-9.]+)", helptext.stdout + helptext.stderr, re.M))
    assert len(known) > 50, helptext.stderr
    flags = _server_flags(default_render["compose"]["services"]["seaweedfs"])
    assert not set(flags) - known, f"flags missing from {LAB_IMAGE}: {sorted(set(flags) - known)}"


def test_listeners_and_network(default_render):
    compose = default_render["compose"]
    service = compose["services"]["seaweedfs"]
    flags = _server_flags(service)
    assert flags["ip"] == "127.0.0.1" and flags["ip.bind"] == "127.0.0.1"
    assert flags["s3.ip.bind"] == "0.0.0.0"
    assert flags["s3.config"] == "/etc/seaweedfs/s3.json"
    assert flags["dir"] == "/data" and flags["master.volumePreallocate"] == "false"
    assert int(flags["master.volumeSizeLimitMB"]) <= 30000
    assert service["entrypoint"] == ["/usr/bin/weed"]
    assert "ports" not in service
    assert service["networks"] == ["borgstack_internal"]
    assert compose["networks"]["borgstack_internal"]["external"] is True
    assert service["mem_limit"] == "768m"
    assert service["container_name"] == "borgstack-seaweedfs"
    assert "healthcheck" in service and "8333/status" in service["healthcheck"]["test"][1]
    volume = service["volumes"][0].split(":")[0]
    assert volume.startswith("borgstack_seaweedfs_") and compose["volumes"][volume]["name"] == volume
    assert any(v.endswith(":/etc/seaweedfs/s3.json:ro") for v in service["volumes"])


def test_grpc_needs_the_hosts_certificate(default_render):
    """The S3 gateway's gRPC port shares the S3 address (on the network): every gRPC server demands mutual TLS."""
    service = default_render["compose"]["services"]["seaweedfs"]
    flags = _server_flags(service)
    assert flags["s3.port.grpc"] == "18333"
    mounts = {v.split(":")[1]: v for v in service["volumes"]}
    assert mounts["/etc/seaweedfs/security.toml"].endswith(":ro")
    assert mounts["/etc/seaweedfs/tls"].endswith(":ro")
    assert mounts["/etc/seaweedfs/tls"].startswith("/opt/borgstack/services/seaweedfs/tls:")
    assert not any("/ca" in v.split(":")[0].rsplit("/", 1)[-1] for v in service["volumes"]), "CA key dir mounted"
    grpc = default_render["security"]["grpc"]
    assert grpc["ca"] == "/etc/seaweedfs/tls/ca.crt"
    # weed falls back to plaintext for a component whose cert or key is empty: each must have both.
    for component in ("master", "volume", "filer", "s3", "client"):
        assert grpc[component]["cert"] == "/etc/seaweedfs/tls/weed.crt", component
        assert grpc[component]["key"] == "/etc/seaweedfs/tls/weed.key", component
    for component in ("master", "volume", "filer", "s3"):
        assert grpc[component]["allowed_commonNames"] == "seaweedfs", component


def test_identity_file(default_render):
    identities = default_render["s3"]["identities"]
    assert len(identities) == 1
    identity = identities[0]
    assert identity["name"] == "borgstack" != "anonymous"
    assert identity["credentials"] == [{"accessKey": KEYS["seaweedfs_s3_access_key"],
                                        "secretKey": KEYS["seaweedfs_s3_secret_key"]}]
    assert identity["actions"] == ["Admin", "Read", "Write", "List", "Tagging"]


def test_no_memory_limit_and_extra_args_last(tmp_path):
    rendered = _render(tmp_path, {"memory_limit_mb": 0}, seaweedfs_extra_args=["-s3.port.iceberg=0"])
    service = rendered["compose"]["services"]["seaweedfs"]
    assert "mem_limit" not in service
    assert service["command"][-1] == "-s3.port.iceberg=0"


def _validate(tmp_path: Path, service: Dict[str, Any] = None, **overrides: Any) -> subprocess.CompletedProcess:
    tasks = [{"name": "Validate", "ansible.builtin.include_role": {"name": "borgstack.stack.seaweedfs",
                                                                   "tasks_from": "validate.yml"}}]
    return _playbook(tmp_path, tasks, {**_service(**(service or {})), **overrides})


@pytest.mark.parametrize("buckets, ok", [
    (["borgstack", "n8n", "media.files-1"], True),
    (["ab"], False),
    (["Upper"], False),
    (["bad..dots"], False),
    (["192.168.1.10"], False),
    (["xn--bucket"], False),
    (["ends-"], False),
    (["data-s3alias"], False),
    (["n8n", "n8n"], False),
])
def test_bucket_names(tmp_path, buckets, ok):
    result = _validate(tmp_path, seaweedfs_shared_buckets=buckets)
    assert (result.returncode == 0) is ok, result.stdout[-2000:]
    if not ok:
        assert "seaweedfs_shared_buckets" in result.stdout


def test_registry_buckets_follow_the_shared_ones(tmp_path):
    """The services' buckets (the contract's) come after the shared ones, a name in both only once."""
    result = _playbook(tmp_path, [
        {"name": "Load the role defaults", "ansible.builtin.include_vars": str(ROLE / "defaults" / "main.yml")},
        {"name": "Load the role vars", "ansible.builtin.include_vars": str(ROLE / "vars" / "main.yml")},
        {"name": "Show the buckets", "ansible.builtin.debug": {"msg": "BUCKETS={{ __seaweedfs_buckets | to_json }}"}}],
        _service(buckets=["directus", "borgstack", "chatwoot"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'BUCKETS=["borgstack", "directus", "chatwoot"]' in result.stdout, result.stdout


@pytest.mark.parametrize("overrides", [
    {"seaweedfs_s3_access_key": "short"},
    {"seaweedfs_s3_secret_key": "has spaces in it and is long enough to pass"},
])
def test_bad_keys_refused(tmp_path, overrides):
    result = _validate(tmp_path, {"secrets": overrides})
    assert result.returncode != 0
    assert next(iter(overrides)) in result.stdout
    for secret in [*KEYS.values(), *overrides.values()]:
        assert secret not in result.stdout


@pytest.mark.parametrize("overrides", [
    {"seaweedfs_s3_actions": ["Admin", "Everything"]},
    {"seaweedfs_volume_size_limit_mb": 40000},
    {"seaweedfs_extra_args": ["s3.port.iceberg=0"]},
])
def test_bad_settings_refused(tmp_path, overrides):
    result = _validate(tmp_path, **overrides)
    assert result.returncode != 0
    assert next(iter(overrides)) in result.stdout
    for secret in KEYS.values():
        assert secret not in result.stdout
