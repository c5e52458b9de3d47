# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.compose_deploy end to end with a fake ``docker`` (no Docker needed).

``FakeDocker`` answers the commands the module runs from a small in-memory state (the declared config, hashes,
containers) and records them, so these tests see which docker commands a run needs: none that change anything on a
no-op, one ``up`` with ``--force-recreate`` after a config file changed, an ``up --wait`` that is not a change while
a healthcheck is starting, and the Docker-less host (check mode reports, a real run fails). Files are written for
real under a temp project directory. The real engine is exercised in tests/integration/targets/compose_deploy.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.borgstack.stack.plugins.module_utils._compose_runtime import HASH_LABEL
from ansible_collections.borgstack.stack.plugins.modules import compose_deploy

SECRET = "Fake-s3cret-0b7e21"
COMPOSE = "services:\n  app:\n    image: app:1.0\n    container_name: bs-app\n"
IMAGE_ID = "sha256:" + "a" * 64


class FakeDocker:
    """The docker CLI as compose_deploy calls it."""

    def __init__(self, answers: bool = True) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []
        self.health = "healthy"
        self.running = True
        self.config_hash = "h1"

    def inspect(self) -> dict[str, Any]:
        return {"Name": "/bs-app", "Image": IMAGE_ID, "Config": {"Labels": {HASH_LABEL: self.config_hash}},
                "State": {"Running": self.running, "Status": "running", "Health": {"Status": self.health}},
                "NetworkSettings": {"Networks": {"bs_default": {}}},
                "HostConfig": {"Memory": 0, "RestartPolicy": {"Name": "no"}}}

    def __call__(self, args: list[str], **kwargs: Any) -> tuple[int, str, str]:
        args = args[1:]
        self.calls.append(args)
        if not self.answers:
            return 1, "", "Cannot connect to the Docker daemon"
        if args[0] == "compose":
            sub = args[7:]
            if sub[:3] == ["config", "--format", "json"]:
                return 0, json.dumps({"name": "bs", "services": {"app": {
                    "image": "app:1.0", "container_name": "bs-app", "networks": {"default": None},
                    "environment": {"TOKEN": SECRET}}}, "networks": {"default": {"name": "bs_default"}}}), ""
            if sub[:2] == ["config", "--hash"]:
                # As Compose 2.26 with an env_file: only the normalised config (on stdin) hashes like `up`'s label.
                return 0, "app h1\n" if args[6] == "-" and kwargs.get("data") else "app h-of-the-file\n", ""
            if sub[0] == "up":
                self.health, self.running, self.config_hash = "healthy", True, "h1"
                return 0, "", ""
            return 0, "", ""
        if args[:2] == ["image", "inspect"]:
            return 0, IMAGE_ID + "\n", ""
        if args[0] == "ps":
            return 0, "bs-app\tapp\t/x\n", ""
        if args[:2] == ["container", "inspect"]:
            return 0, json.dumps([self.inspect()]), ""
        return 0, "", ""

    def ran(self, *prefix: str) -> list[list[str]]:
        return [call for call in self.calls if call[:1] == ["compose"] and call[7:7 + len(prefix)] == list(prefix)
                or call[:len(prefix)] == list(prefix)]


def run(monkeypatch, capsys, fake: FakeDocker, project_dir: Path, **args: Any) -> dict[str, Any]:
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/docker")
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kwargs: fake(argv, **kwargs))
    params = {"name": "app", "project": "bs", "project_dir": str(project_dir), "compose": COMPOSE,
              "files": [{"path": "app.conf", "content": "a = 1\n"}],
              "secret_files": [{"path": "key.pem", "content": SECRET}], "env": {"TOKEN": SECRET}}
    params.update(args)
    with patch_module_args(params), pytest.raises(SystemExit):
        compose_deploy.main()
    out = capsys.readouterr().out
    assert SECRET not in out
    return json.loads(out)


def test_deploy_then_no_op_then_config_change(monkeypatch, capsys, tmp_path):
    fake = FakeDocker()
    fake.config_hash = "h0"  # a container from an older config
    first = run(monkeypatch, capsys, fake, tmp_path, _ansible_diff=True)
    assert first["changed"] and first["recreated"] == ["bs-app"]
    assert (tmp_path / "services/app/key.pem").stat().st_mode & 0o7777 == 0o600
    assert [d["after"] for d in first["diff"] if d["after_header"].endswith("key.pem")] == [
        "(secret content changed)\n"]
    # The new Compose file was validated from its temp copy before it replaced the live one.
    assert fake.ran("config", "--quiet")

    fake.calls.clear()
    second = run(monkeypatch, capsys, fake, tmp_path)
    assert not second["changed"] and second["files_changed"] == []
    assert not fake.ran("up") and not fake.ran("rm")
    # version, image inspect, ps, container inspect: `config` and `config --hash` come from the first run's cache.
    assert len(fake.calls) == 4 and not fake.ran("config")

    fake.calls.clear()
    third = run(monkeypatch, capsys, fake, tmp_path, files=[{"path": "app.conf", "content": "a = 2\n"}])
    assert third["changed"] and third["recreated"] == ["bs-app"]
    assert [call[7:] for call in fake.ran("up")] == [
        ["up", "--detach", "--wait", "--wait-timeout", "600", "--pull", "missing", "--force-recreate", "app"]]


def test_a_starting_healthcheck_is_waited_for_without_a_change(monkeypatch, capsys, tmp_path):
    fake = FakeDocker()
    run(monkeypatch, capsys, fake, tmp_path)
    fake.health = "starting"
    fake.calls.clear()
    result = run(monkeypatch, capsys, fake, tmp_path)
    assert not result["changed"]
    assert [call[7:] for call in fake.ran("up")] == [
        ["up", "--detach", "--wait", "--wait-timeout", "600", "--pull", "missing", "app"]]


def test_check_mode_writes_and_starts_nothing(monkeypatch, capsys, tmp_path):
    fake = FakeDocker()
    fake.running = False
    result = run(monkeypatch, capsys, fake, tmp_path, _ansible_check_mode=True)
    # New config files: the stopped container would be recreated (forced), not just started.
    assert result["changed"] and result["recreated"] == ["bs-app"]
    assert not (tmp_path / "services").exists()
    assert not fake.ran("up")


def test_a_host_without_docker(monkeypatch, capsys, tmp_path):
    check = run(monkeypatch, capsys, FakeDocker(answers=False), tmp_path, _ansible_check_mode=True)
    assert check["changed"] and "would be deployed" in check["msg"] and not check.get("failed")
    real = run(monkeypatch, capsys, FakeDocker(answers=False), tmp_path)
    assert real["failed"] and "Run the docker role first (--tags docker)" in real["msg"]
    assert not (tmp_path / "services").exists()


def test_a_path_outside_the_service_directory_is_refused(monkeypatch, capsys, tmp_path):
    result = run(monkeypatch, capsys, FakeDocker(), tmp_path, files=[{"path": "../../etc/x", "content": "x"}])
    assert result["failed"] and "is not a path inside services/app/" in result["msg"]


def test_the_config_cache_holds_no_secret_and_is_dropped_when_an_input_changes(monkeypatch, capsys, tmp_path):
    fake = FakeDocker()
    run(monkeypatch, capsys, fake, tmp_path)
    cache = tmp_path / "services/app/.compose-config.json"
    assert cache.stat().st_mode & 0o7777 == 0o600
    assert SECRET not in cache.read_text() and json.loads(cache.read_text())["hashes"] == {"app": "h1"}

    # secrets.env edited by hand: the cache no longer matches, so Compose is asked again (and the file healed).
    env = tmp_path / "services/app/secrets.env"
    env.write_text("TOKEN=other\n")
    fake.calls.clear()
    healed = run(monkeypatch, capsys, fake, tmp_path)
    assert healed["changed"] and fake.ran("config", "--format", "json") and fake.ran("config", "--hash")

    # The run after the heal reads config again (it was read before secrets.env was rewritten), then keeps it.
    fake.calls.clear()
    run(monkeypatch, capsys, fake, tmp_path)
    fake.calls.clear()
    quiet = run(monkeypatch, capsys, fake, tmp_path)
    assert not quiet["changed"] and not fake.ran("config")

    # A cache that does not parse is ignored, not trusted.
    cache.write_text("{not json")
    fake.calls.clear()
    again = run(monkeypatch, capsys, fake, tmp_path)
    assert not again["changed"] and fake.ran("config", "--format", "json")
