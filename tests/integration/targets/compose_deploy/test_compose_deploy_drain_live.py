# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.compose_deploy draining a proxied container before an update replaces it, against this machine's
real Docker engine, iptables and nsenter.

The "app" is a small Python HTTP server (the lab's contract image, borgstack-lab/contract:3, which has python3)
whose ``/slow`` answers only once the test drops a file into a mounted directory (at most 120 s), and which exits at
once on SIGTERM, as a busy app stopped by ``docker stop`` does. So the request is still in flight whenever the update
starts, however slow the machine: the test releases it only after it saw a new connection refused.
Its versions are two tags of that image. A client on this machine talks to the container's address directly, as
Caddy does over the Docker network.

Covered: with the container in ``drain``, a request already in flight when the update starts is answered in full
(the module waits until it is done before ``up`` stops the old container), and a new connection made meanwhile is
refused at once with a reset (what Caddy retries) while that request is still running; the result names the drained
container. Without ``drain``, the same request is cut when the old container stops - the control that shows the
first test can fail. What does not run here: Caddy itself (the lab stack's benchmark, scripts/benchmark-update.sh,
measures the requests lost through it during an n8n update).
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from ansible_module_runner import ModuleRun, run_module
from lab_prerequisites import require_docker_images

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("BORGSTACK_CONTRACT_IMAGE", "borgstack-lab/contract:3")
MODULE = "borgstack.stack.compose_deploy"
SERVER = (
    "import http.server, os, signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: os._exit(0))\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        if self.path == '/slow':\n"
    "            deadline = time.monotonic() + 120\n"
    "            while not os.path.exists('/release/go') and time.monotonic() < deadline:\n"
    "                time.sleep(0.1)\n"
    "        body = b'done ' + self.path.encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n"
)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300)


class Project:
    def __init__(self, root: Path) -> None:
        self.name = f"bsdrain-{secrets.token_hex(4)}"
        self.dir = root / "project"
        self.network = f"{self.name}_default"
        self.app = f"{self.name}-app"
        self.images = {version: f"{self.name}/app:{version}" for version in ("1", "2", "3", "4")}
        self.release = root / "release"

    def compose(self, version: str) -> str:
        return json.dumps({
            "services": {"app": {
                "image": self.images[version], "container_name": self.app,
                "command": ["python3", "-c", SERVER],
                # root: the release directory sits under pytest's root-only temporary directory.
                "user": "0:0",
                "volumes": [f"{self.release}:/release:ro"],
                "stop_grace_period": "10s",
                "healthcheck": {"test": ["CMD", "python3", "-c",
                                         "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/')"],
                                "interval": "1s", "timeout": "3s", "retries": 5},
            }},
            "networks": {"default": {"name": self.network, "external": True}},
        })

    def run(self, version: str, drain: list[str]) -> ModuleRun:
        return run_module(MODULE, {"name": "app", "project": self.name, "project_dir": str(self.dir),
                                   "compose": self.compose(version), "pull": "never", "wait_timeout": 60,
                                   "drain": drain, "drain_timeout": 20}, timeout=300)

    def address(self) -> str:
        return docker("inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}',
                      self.app).stdout.strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    require_docker_images(IMAGE)
    for tool in ("nsenter", "iptables"):
        assert shutil.which(tool), f"{tool} is missing on this machine (util-linux, iptables)"
    proj = Project(tmp_path_factory.mktemp("compose_deploy_drain"))
    proj.dir.mkdir()
    proj.release.mkdir()
    docker("network", "create", proj.network)
    for image in proj.images.values():
        docker("tag", IMAGE, image)
    yield proj
    docker("rm", "--force", proj.app, check=False)
    docker("network", "rm", proj.network, check=False)
    docker("image", "rm", *proj.images.values(), check=False)
    shutil.rmtree(proj.dir.parent, ignore_errors=True)


def _update_during_a_slow_request(project: Project, version: str, drain: list[str]) -> dict[str, Any]:
    """Start GET /slow, then the update; meanwhile try new connections, and release /slow once one was refused.
    Returns what each side saw."""
    (project.release / "go").unlink(missing_ok=True)
    address = project.address()
    assert address, "the app container has no address on its network"
    with socket.create_connection((address, 8080), timeout=5):
        pass  # the listener answers before the update: a refusal later is the drain, not a dead app
    seen: dict[str, Any] = {"refused_at": None}
    sent = threading.Event()

    def slow() -> None:
        try:
            conn = http.client.HTTPConnection(address, 8080, timeout=180)
            conn.request("GET", "/slow")
            sent.set()
            response = conn.getresponse()
            seen["slow"] = (response.status, response.read().decode())
        except (OSError, http.client.HTTPException) as exc:
            seen["slow"] = ("cut", repr(exc))
        seen["slow_done_at"] = time.monotonic()
        sent.set()

    client = threading.Thread(target=slow)
    client.start()
    assert sent.wait(60), "GET /slow was not sent"  # the request is inside the app before the update starts
    runner: dict[str, ModuleRun] = {}
    module = threading.Thread(target=lambda: runner.setdefault("run", project.run(version, drain)))
    module.start()
    while client.is_alive():
        try:
            with socket.create_connection((address, 8080), timeout=2):
                pass
        except ConnectionRefusedError:
            if seen["refused_at"] is None:
                seen["refused_at"] = time.monotonic()
                (project.release / "go").touch()  # the drain is on: the request in flight may finish now
        except OSError:
            pass
        time.sleep(0.05)
    module.join(timeout=300)
    seen["run"] = runner["run"]
    return seen


def test_an_update_drains_the_container_before_it_stops(project: Project) -> None:
    first = project.run("1", [project.app])
    assert not first.failed and first.changed and "drained" not in first.result, first.output

    seen = _update_during_a_slow_request(project, "2", [project.app])
    run = seen["run"]
    assert not run.failed and run.result.get("drained") == [project.app], run.output
    assert seen["slow"] == (200, "done /slow"), f"the request in flight was not finished: {seen['slow']}"
    assert seen["refused_at"] is not None and seen["refused_at"] < seen["slow_done_at"], (
        "no new connection was refused while the old container still answered its request")
    assert docker("inspect", "--format", "{{.Config.Image}}", project.app).stdout.strip() == project.images["2"]
    again = project.run("2", [project.app])
    assert not again.failed and not again.changed and "drained" not in again.result, again.output


def test_without_draining_the_request_in_flight_is_cut(project: Project) -> None:
    project.run("3", [])
    seen = _update_during_a_slow_request(project, "4", [])
    assert not seen["run"].failed and "drained" not in seen["run"].result, seen["run"].output
    assert seen["slow"][0] == "cut", f"the control did not cut the request, so the drain test proves nothing: {seen}"
