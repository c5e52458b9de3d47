# SPDX-License-Identifier: GPL-3.0-or-later
"""Directus, running for real in the lab (borgstack-lab/directus: the npm package on Node 22, see
lab/images/README.md), reached like a user would: from the public network, through Caddy over HTTPS.

The administrator's first password is read on the lab host from the root-only file the role writes; requests are
made with curl on the controller (the public side). Objects are looked up in SeaweedFS with the stack's S3 identity
on the lab host (test_data_redis_seaweedfs's client)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import inspect, public_ip
from test_data_redis_seaweedfs import S3_CLIENT, s3  # noqa: F401  pylint: disable=unused-import

HOST_NAME = "directus.lab.borgstack.test"
CONTAINER = "borgstack-directus"
PASSWORD_FILE = "/opt/borgstack/services/directus/admin-password"
ADMIN = "admin@example.com"
BUCKET = "directus"


def _curl(host, root_cert: Path, path: str, *extra: str) -> Tuple[int, bytes]:
    out = root_cert.parent / "directus-body"
    cmd: List[str] = ["curl", "--silent", "--show-error", "--max-time", "60", "--output", str(out),
                      "--write-out", "%{http_code}", "--resolve", f"{HOST_NAME}:443:{public_ip(host)}",
                      "--cacert", str(root_cert), *extra, f"https://{HOST_NAME}{path}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"{path}: curl failed: {run.stderr}"
    return int(run.stdout), out.read_bytes()


def _json(host, root_cert: Path, path: str, *extra: str) -> Tuple[int, Dict]:
    status, body = _curl(host, root_cert, path, *extra)
    return status, json.loads(body or b"{}")


@pytest.fixture(scope="module")
def token(host, root_cert) -> str:
    password = host.file(PASSWORD_FILE).content_string.strip()
    status, body = _json(host, root_cert, "/auth/login", "-X", "POST", "-H", "Content-Type: application/json",
                         "--data", json.dumps({"email": ADMIN, "password": password}))
    assert status == 200, body
    return body["data"]["access_token"]


def test_healthy_behind_caddy_with_its_secrets_in_files(host, root_cert):
    status, body = _json(host, root_cert, "/server/health")
    assert status == 200 and body.get("status") == "ok", body
    info = inspect(host, CONTAINER)
    env = dict(item.split("=", 1) for item in info["Config"]["Env"])
    for name in ("SECRET", "ADMIN_PASSWORD", "DB_PASSWORD", "REDIS_PASSWORD", "STORAGE_S3_SECRET", "STORAGE_S3_KEY"):
        assert name not in env and env.get(f"{name}_FILE", "").startswith("/run/secrets/"), name
    assert env["PUBLIC_URL"] == f"https://{HOST_NAME}" and env["TELEMETRY"] == "false"
    assert not info["HostConfig"]["PortBindings"]


def test_the_admin_was_created_by_the_play_and_nobody_can_register(host, root_cert, token):
    status, me = _json(host, root_cert, "/users/me", "-H", f"Authorization: Bearer {token}")
    assert status == 200 and me["data"]["email"] == ADMIN, me
    wrong = _curl(host, root_cert, "/auth/login", "-X", "POST", "-H", "Content-Type: application/json",
                  "--data", json.dumps({"email": ADMIN, "password": "not-the-password-0"}))[0]
    assert wrong == 401
    status, body = _json(host, root_cert, "/users/register", "-X", "POST", "-H", "Content-Type: application/json",
                         "--data", json.dumps({"email": "visitor@example.com", "password": "Visitor-passw0rd"}))
    assert status in (400, 403), f"public registration must be off: {status} {body}"


def test_upload_lands_in_its_bucket_and_comes_back_identical(host, root_cert, token, tmp_path, s3):  # noqa: F811
    payload = tmp_path / "relatorio.bin"
    payload.write_bytes(os.urandom(300 * 1024))
    status, body = _json(host, root_cert, "/files", "-X", "POST", "-H", f"Authorization: Bearer {token}",
                         "-F", f"file=@{payload};type=application/octet-stream")
    assert status == 200, body
    file_id, on_disk = body["data"]["id"], body["data"]["filename_disk"]
    found = s3([{"name": "list", "method": "GET", "path": f"/{BUCKET}", "auth": "stack"},
                {"name": "head", "method": "HEAD", "path": f"/{BUCKET}/{on_disk}", "auth": "stack"}])
    assert found["list"]["status"] == 200 and on_disk in found["list"]["body"], found["list"]
    assert found["head"]["status"] == 200, found["head"]
    status, data = _curl(host, root_cert, f"/assets/{file_id}", "-H", f"Authorization: Bearer {token}")
    assert status == 200
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(payload.read_bytes()).hexdigest()


def test_a_session_survives_a_restart(host, root_cert, token):
    """SECRET is stable (derived, from a file): tokens signed before a restart are still valid after it."""
    host.check_output(f"docker restart {CONTAINER}")
    waited = host.run("timeout 300 sh -c 'until [ \"$(docker inspect --format {{.State.Health.Status}} "
                      f"{CONTAINER})\" = healthy ]; do sleep 2; done'")
    assert waited.rc == 0, f"Directus did not come back healthy: {waited.stderr}"
    status, me = _json(host, root_cert, "/users/me", "-H", f"Authorization: Bearer {token}")
    assert status == 200 and me["data"]["email"] == ADMIN, me
