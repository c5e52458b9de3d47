# SPDX-License-Identifier: GPL-3.0-or-later
"""The evolution_api role's instance creation (roles/evolution_api/files/instance.js), against a contract server.

No Evolution API image can be run here (see test_evolution_api_role.py), so the script tasks/instance.yml runs inside
the Evolution container is run by the Node of the n8n lab image (Node 20, as in evoapicloud/evolution-api:v2.2.3,
host network) against a small HTTP server standing in for Evolution 2.2.3. The server accepts only what upstream's
source at tag 2.2.3 defines (src/api/routes/instance.router.ts, src/api/guards/instance.guard.ts,
src/api/guards/auth.guard.ts, src/api/dto/instance.dto.ts): the `apikey` header with the global key (else 401),
``GET /instance/fetchInstances?instanceName=`` (200 with a list, 404 when the instance does not exist),
``POST /instance/create`` with a JSON body (403 when the name is in use); it records every call and can be told to
fail. NOT exercised: the real Evolution answering, the instance then showing a QR code.

The sequence of the house's integration pattern: check (would create, nothing sent) -> apply (created, one create
with the documented body) -> check again and apply again (present, no second create) -> failures (500, wrong key)
reported with the step and the answer, never the key.
"""
from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[4]
SCRIPT = (REPO_ROOT / "roles" / "evolution_api" / "files" / "instance.js").read_text()
KEY = "K" * 16 + "evolution-contract-key-0123456789"
# InstanceDto fields (src/api/dto/instance.dto.ts at 2.2.3) the create route accepts; integrations of the schema.
CREATE_FIELDS = {"instanceName", "instanceId", "qrcode", "number", "integration", "token", "status", "businessId",
                 "rejectCall", "msgCall", "groupsIgnore", "alwaysOnline", "readMessages", "readStatus", "syncFullHistory",
                 "webhook", "proxyHost", "proxyPort", "proxyProtocol", "proxyUsername", "proxyPassword"}
INTEGRATIONS = {"WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION"}

pytestmark = pytest.mark.integration


class Contract(BaseHTTPRequestHandler):
    instances: set[str] = set()
    calls: list[dict[str, Any]] = []
    fail_with: int | None = None

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.calls.append({"method": method, "path": url.path, "query": parse_qs(url.query),
                           "apikey": self.headers.get("apikey"), "body": raw.decode()})
        if method == "GET" and url.path == "/":
            return self._answer(200, {"status": 200, "message": "Welcome to the Evolution API, it is working!",
                                      "version": "2.2.3"})
        if self.fail_with:
            return self._answer(self.fail_with, {"status": self.fail_with, "error": "Internal Server Error"})
        if self.headers.get("apikey") != KEY:
            return self._answer(401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}})
        if method == "GET" and url.path == "/instance/fetchInstances":
            name = parse_qs(url.query).get("instanceName", [None])[0]
            if name and name not in self.instances:
                return self._answer(404, {"status": 404, "error": "Not Found",
                                          "response": {"message": [f'Instance "{name}" not found']}})
            return self._answer(200, [{"name": n, "connectionStatus": "close"} for n in sorted(self.instances)
                                      if not name or n == name])
        if method == "POST" and url.path == "/instance/create":
            if self.headers.get("content-type", "").split(";")[0] != "application/json":
                return self._answer(400, {"status": 400, "error": "Bad Request"})
            body = json.loads(raw or b"{}")
            if (not isinstance(body.get("instanceName"), str) or body.get("integration") not in INTEGRATIONS
                    or set(body) - CREATE_FIELDS):
                return self._answer(400, {"status": 400, "error": "Bad Request"})
            if body["instanceName"] in self.instances:
                return self._answer(403, {"status": 403, "error": "Forbidden", "response": {
                    "message": [f'This name "{body["instanceName"]}" is already in use.']}})
            self.instances.add(body["instanceName"])
            return self._answer(201, {"instance": {"instanceName": body["instanceName"], "status": "created"},
                                      "hash": "token-of-the-instance"})
        return self._answer(404, {"status": 404, "error": "Not Found"})

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Contract)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def _n8n_image() -> str:
    tags = subprocess.run(["docker", "images", "borgstack-lab/n8n", "--format", "{{.Repository}}:{{.Tag}}"],
                          capture_output=True, text=True, check=True).stdout.split()
    if not tags:
        pytest.fail("lab image borgstack-lab/n8n missing (it provides Node 20): run lab/build-images.sh")
    return tags[0]


def _run(server, check: bool, key: str = KEY) -> subprocess.CompletedProcess:
    stdin = json.dumps({"port": server.server_address[1], "key": key, "instance": "principal", "check": check,
                        "wait": 20})
    return subprocess.run(["docker", "run", "--rm", "-i", "--network", "host", "--entrypoint", "node", _n8n_image(),
                           "--eval", SCRIPT], input=stdin, capture_output=True, text=True, check=False, timeout=120)


def _state(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["state"]


def _creates() -> list[dict[str, Any]]:
    return [c for c in Contract.calls if c["path"] == "/instance/create"]


def test_check_apply_check_apply(server):
    Contract.instances.clear()
    Contract.calls.clear()
    states = [_state(_run(server, check=True))]
    creates_after_check = len(_creates())
    states += [_state(_run(server, check=False)), _state(_run(server, check=True)), _state(_run(server, check=False))]
    assert (states, creates_after_check) == (["would_create", "created", "present", "present"], 0)
    assert [json.loads(c["body"]) for c in _creates()] == [
        {"instanceName": "principal", "integration": "WHATSAPP-BAILEYS", "qrcode": False}]
    assert all(c["apikey"] == KEY for c in Contract.calls if c["path"] != "/")
    assert Contract.instances == {"principal"}


def test_an_existing_instance_is_left_alone(server):
    Contract.instances.clear()
    Contract.instances.add("principal")
    Contract.calls.clear()
    assert _state(_run(server, check=False)) == "present"
    assert _creates() == []


def test_failures_name_the_step_and_never_print_the_key(server):
    Contract.instances.clear()
    Contract.fail_with = 500
    try:
        broken = _run(server, check=False)
    finally:
        Contract.fail_with = None
    wrong_key = _run(server, check=False, key="W" * 40)
    assert broken.returncode == 1 and "GET /instance/fetchInstances answered HTTP 500" in broken.stderr
    assert wrong_key.returncode == 1 and "HTTP 401" in wrong_key.stderr
    assert KEY not in broken.stdout + broken.stderr + wrong_key.stdout + wrong_key.stderr
    assert "principal" not in Contract.instances
