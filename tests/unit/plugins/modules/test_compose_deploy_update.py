# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.compose_deploy updating a service to another image, with a fake ``docker`` (no Docker needed).

The fake keeps which image the container runs and whether ``up`` makes it healthy, and records every command, so
these tests see: no dump and no ``up`` on a no-op run; a dump (``pg_dump -Fc`` through the PostgreSQL container,
written 0600) before the ``up`` of an image change; a new version that does not become healthy rolled back - stopped,
database restored from that dump, the previous Compose file put back, the previous version up again with
``--pull never`` - and the run failed with both versions, the dump and the new version's log lines; no rollback
with ``rollback: false``; check mode dumping nothing; an empty dump stopping the update before ``up``; the rollback
ending the database's other sessions before ``pg_restore`` and tagging the image the container ran again when a pull
moved its tag. The real engine and PostgreSQL run in
tests/integration/targets/compose_deploy and molecule/stack/tests/test_update.py.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.borgstack.stack.plugins.module_utils._compose_drain import ConnectionDrain, inbound_connections
from ansible_collections.borgstack.stack.plugins.module_utils._compose_hooks import image_updates
from ansible_collections.borgstack.stack.plugins.module_utils._compose_runtime import HASH_LABEL
from ansible_collections.borgstack.stack.plugins.module_utils._pg_dump import dumps_to_prune
from ansible_collections.borgstack.stack.plugins.modules import compose_deploy

IDS = {"app:1.0": "sha256:" + "a" * 64, "app:2.0": "sha256:" + "b" * 64}


def compose(image: str) -> str:
    return f"services:\n  app:\n    image: {image}\n    container_name: bs-app\n"


class FakeDocker:
    """docker as compose_deploy calls it: one container ``bs-app`` whose image follows the last ``up``.

    ``tags`` maps each local reference to its image id (``docker tag`` moves one; ``up`` runs what its reference
    names); ``stdin`` keeps each call that was given input, with that input; ``dump`` is what pg_dump writes."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir
        self.calls: list[Any] = []
        self.stdin: list[tuple[Any, str]] = []
        self.tags = dict(IDS)
        self.dump = b"PGDMP fake dump"
        self.image = "app:1.0"
        self.image_id = IDS["app:1.0"]
        self.healthy_images = {"app:1.0", "app:2.0"}
        self.healthy = True
        self.pid = 4242  # the container's process: another one after each `up` (a new container)

    def declared(self) -> str:
        text = (self.project_dir / "services/app/compose.yaml").read_text() if (
            self.project_dir / "services/app/compose.yaml").exists() else compose("app:1.0")
        return re.search(r"image: (\S+)", text).group(1)

    def __call__(self, args: Any, **kwargs: Any) -> tuple[int, str, str]:
        self.calls.append(args)
        if kwargs.get("data") is not None:
            self.stdin.append((args, kwargs["data"]))
        if isinstance(args, str):  # the shell pipelines of the dump and the restore
            if "pg_dump" in args:
                Path(args.rsplit("> ", 1)[1].strip("'")).write_bytes(self.dump)
            return 0, "", ""
        args = args[1:]
        if args[0] == "compose":
            sub = args[7:]
            image = self.declared() if args[6] != "-" else json.loads(kwargs["data"])["services"]["app"]["image"]
            if sub[:3] == ["config", "--format", "json"]:
                config_file = Path(args[6])
                text = config_file.read_text() if config_file.exists() else compose(image)
                image = re.search(r"image: (\S+)", text).group(1)
                return 0, json.dumps({"name": "bs", "services": {"app": {
                    "image": image, "container_name": "bs-app", "networks": {"default": None}}},
                    "networks": {"default": {"name": "bs_default"}}}), ""
            if sub[:2] == ["config", "--hash"]:
                return 0, f"app h-{image}\n", ""
            if sub[0] == "up":
                self.pid += 1
                self.image = self.declared()
                self.image_id = self.tags[self.image]
                self.healthy = self.image in self.healthy_images
                if not self.healthy:
                    return 1, "", "container bs-app is unhealthy"
            return 0, "", ""
        if args[:2] == ["image", "inspect"]:
            return 0, self.tags[args[-1]] + "\n", ""
        if args[0] == "tag":
            self.tags[args[2]] = args[1]
            return 0, "", ""
        if args[0] == "ps":
            return 0, "bs-app\tapp\t/x\n", ""
        if args[:2] == ["container", "inspect"]:
            return 0, json.dumps([{
                "Name": "/bs-app", "Image": self.image_id,
                "Config": {"Image": self.image, "Labels": {HASH_LABEL: f"h-{self.image}"}},
                "State": {"Running": True, "Status": "running", "Pid": self.pid,
                          "Health": {"Status": "healthy" if self.healthy else "starting"}},
                "NetworkSettings": {"Networks": {"bs_default": {}}},
                "HostConfig": {"Memory": 0, "RestartPolicy": {"Name": "no"}}}]), ""
        if args[0] == "logs":
            return 0, "migration 42 done\nnew version: waiting forever\n", ""
        return 0, "", ""

    def ran(self, words: str) -> list[Any]:
        """The calls with these words in a row (a shell command: as a substring)."""
        wanted = words.split()

        def matches(call: Any) -> bool:
            if isinstance(call, str):
                return words.strip() in call
            return any(call[i:i + len(wanted)] == wanted for i in range(len(call)))
        return [call for call in self.calls if matches(call)]


def run(monkeypatch, capsys, fake: FakeDocker, image: str, **args: Any) -> dict[str, Any]:
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/docker")
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kwargs: fake(argv, **kwargs))
    params = {"name": "app", "project": "bs", "project_dir": str(fake.project_dir), "compose": compose(image),
              "update_dump": {"container": "bs-postgresql", "database": "appdb",
                              "dir": str(fake.project_dir / "dumps"), "keep": 2}}
    params.update(args)
    with patch_module_args(params), pytest.raises(SystemExit):
        compose_deploy.main()
    return json.loads(capsys.readouterr().out)


def test_no_op_and_a_healthy_update(monkeypatch, capsys, tmp_path):
    fake = FakeDocker(tmp_path)
    first = run(monkeypatch, capsys, fake, "app:1.0")
    assert first["changed"] and "updated" not in first  # first deploy (same image): no dump
    fake.calls.clear()
    again = run(monkeypatch, capsys, fake, "app:1.0")
    assert not again["changed"] and not fake.ran("pg_dump") and not fake.ran("up --detach")

    update = run(monkeypatch, capsys, fake, "app:2.0")
    assert update["changed"] and update["updated"] == {"bs-app": {"from": "app:1.0", "to": "app:2.0"}}
    dump = Path(update["dump"])
    assert dump.read_bytes() == b"PGDMP fake dump" and dump.stat().st_mode & 0o777 == 0o600
    assert dump.parent.stat().st_mode & 0o777 == 0o700
    dump_call, up_call = fake.calls.index(fake.ran("pg_dump")[0]), fake.calls.index(fake.ran("up --detach")[0])
    assert dump_call < up_call, "the database must be dumped before the new version starts"
    assert "bs-postgresql pg_dump -U postgres -Fc -d appdb" in fake.ran("pg_dump")[0]
    assert not fake.ran("pg_restore") and fake.image == "app:2.0"


def test_an_unhealthy_update_is_rolled_back(monkeypatch, capsys, tmp_path):
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    fake.healthy_images = {"app:1.0"}
    fake.calls.clear()
    result = run(monkeypatch, capsys, fake, "app:2.0")
    assert result["failed"]
    msg = result["msg"]
    assert "the update (bs-app app:1.0 -> app:2.0) did not become healthy" in msg and "rolled back" in msg
    assert "restored from the pre-update dump" in msg and "migration 42 done" in msg
    # Stopped, restored, then the previous file and version back (never pulled again).
    order = [fake.calls.index(fake.ran(word)[0]) for word in ("pg_dump", "--pull missing", "stop", "pg_restore")]
    assert order == sorted(order)
    assert "--clean --if-exists --create" in fake.ran("pg_restore")[0]
    assert fake.ran("--pull never") and fake.calls.index(fake.ran("--pull never")[0]) > order[-1]
    assert "image: app:1.0" in (tmp_path / "services/app/compose.yaml").read_text()
    assert fake.image == "app:1.0" and fake.healthy
    # A rerun with the previous image finds nothing to do.
    fake.calls.clear()
    assert not run(monkeypatch, capsys, fake, "app:1.0")["changed"] and not fake.ran("pg_dump")


def test_the_rollback_ends_the_sessions_before_pg_restore(monkeypatch, capsys, tmp_path):
    """pg_restore --clean --create drops the database: with the new version's (or a client's) sessions still open
    it fails, so every other session of that database is ended first."""
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    fake.healthy_images = {"app:1.0"}
    fake.calls.clear()
    assert run(monkeypatch, capsys, fake, "app:2.0")["failed"]
    ended = [(call, data) for call, data in fake.stdin if "pg_terminate_backend(pid)" in data]
    assert len(ended) == 1, fake.stdin
    call, data = ended[0]
    assert call[:5] == ["/usr/bin/docker", "exec", "-i", "bs-postgresql", "psql"] and "db=appdb" in call
    assert "WHERE datname = :'db' AND pid <> pg_backend_pid()" in data
    assert fake.calls.index(call) < fake.calls.index(fake.ran("pg_restore")[0])


def test_the_rollback_tags_the_previous_image_again(monkeypatch, capsys, tmp_path):
    """A pull since the last deploy moved app:1.0 to another image: the rollback must bring back the image the
    container ran (its id), not whatever the tag names now."""
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    fake.tags["app:1.0"] = "sha256:" + "c" * 64  # the tag moved; the container still runs IDS["app:1.0"]
    fake.healthy_images = {"app:1.0"}
    fake.calls.clear()
    result = run(monkeypatch, capsys, fake, "app:2.0")
    assert result["failed"] and "rolled back" in result["msg"]
    tagged = fake.ran(f"tag {IDS['app:1.0']} app:1.0")
    assert len(tagged) == 1 and fake.calls.index(tagged[0]) < fake.calls.index(fake.ran("--pull never")[0])
    assert fake.image == "app:1.0" and fake.image_id == IDS["app:1.0"], "the previous image runs again"


def test_an_empty_pre_update_dump_stops_the_update(monkeypatch, capsys, tmp_path):
    """pg_dump can exit 0 and write nothing (a broken pipe, a full disk on the way): an empty dump restores
    nothing, so the update must not start on it."""
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    fake.dump = b""
    fake.calls.clear()
    result = run(monkeypatch, capsys, fake, "app:2.0")
    assert result["failed"]
    assert "the pre-update dump of the database appdb failed, so nothing was updated: pg_dump wrote nothing" \
        in result["msg"]
    assert not fake.ran("up --detach") and fake.image == "app:1.0"
    assert not list((tmp_path / "dumps").iterdir()), "the empty dump is not kept"


def test_without_rollback_the_failed_version_stays(monkeypatch, capsys, tmp_path):
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    fake.healthy_images = {"app:1.0"}
    result = run(monkeypatch, capsys, fake, "app:2.0", rollback=False)
    assert result["failed"] and "rolled back" not in result["msg"] and "unhealthy" in result["msg"]
    assert not fake.ran("pg_restore") and "image: app:2.0" in (tmp_path / "services/app/compose.yaml").read_text()


def test_check_mode_reports_the_update_and_dumps_nothing(monkeypatch, capsys, tmp_path):
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    fake.calls.clear()
    result = run(monkeypatch, capsys, fake, "app:2.0", _ansible_check_mode=True)
    assert result["changed"] and "the database appdb would be dumped first" in result["msg"]
    assert not fake.ran("pg_dump") and not fake.ran("up --detach") and not (tmp_path / "dumps").exists()


SPEC = {"container": "bs-app", "image": "app:2.0", "job": False}


@pytest.mark.parametrize(("declared", "inspected", "expected"), [
    ({"app": SPEC}, {}, {}),  # first deploy
    ({"app": SPEC}, {"bs-app": {"Image": "sha256:x", "Config": {"Image": "app:2.0"}}}, {}),  # same reference
    ({"app": SPEC}, {"bs-app": {"Image": "sha256:x", "Config": {"Image": "app:1.0"}}},
     {"app": {"container": "bs-app", "from": "app:1.0", "from_id": "sha256:x", "to": "app:2.0"}}),
    ({"app": dict(SPEC, job=True)}, {"bs-app": {"Image": "sha256:x", "Config": {"Image": "app:1.0"}}}, {}),
])
def test_image_updates(declared, inspected, expected):
    assert image_updates(declared, inspected) == expected


def test_dumps_to_prune_keeps_the_newest_of_the_service_only():
    names = ["app-20261101T000000Z.dump", "app-20261103T000000Z.dump", "app-20261102T000000Z.dump",
             "application-20261101T000000Z.dump", "app-notes.txt"]
    assert dumps_to_prune(names, "app", 2) == ["app-20261101T000000Z.dump"]
    assert dumps_to_prune(names, "app", 0) == sorted(names[:3])


# /proc/<pid>/net/tcp of a web container: listening on 5678 (0x162E), a client (172.20.0.5) connected to it, the
# container's own healthcheck over loopback, and its own connection out to PostgreSQL (local port 41234).
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:162E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1
   1: 030014AC:162E 050014AC:C350 01 00000000:00000000 00:00000000 00000000  1000        0 2 1
   2: 0100007F:162E 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 3 1
   3: 030014AC:A0D2 040014AC:1538 01 00000000:00000000 00:00000000 00000000  1000        0 4 1
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:162E 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 0000000000000000FFFF00000300140A:162E 0000000000000000FFFF00000600140A:C351 01 00000000:00000000
   2: 00000000000000000000000001000000:162E 00000000000000000000000001000000:C352 01 00000000:00000000
"""


def test_inbound_connections_counts_clients_of_a_listening_port_only():
    assert inbound_connections([TCP]) == 1
    assert inbound_connections([TCP, TCP6]) == 2  # a v4-mapped client counts, ::1 does not
    closed = TCP.replace("030014AC:162E 050014AC:C350 01", "030014AC:162E 050014AC:C350 06")  # TIME_WAIT
    assert inbound_connections([closed]) == 0
    assert inbound_connections([]) == 0


def test_an_update_drains_the_proxied_container_first(monkeypatch, capsys, tmp_path):
    """New connections are refused in the old container's namespace before `up` replaces it, and `up` waits until
    its open connection closed; a container not in ``drain`` and a no-op run are never touched."""
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    reads: list[int] = []

    def tables(pid):
        reads.append(pid)
        return [TCP] if len(reads) < 3 else [TCP.replace(" 01 ", " 06 ", 1)]
    monkeypatch.setattr(ConnectionDrain, "tcp_tables", staticmethod(tables))
    fake.calls.clear()
    assert not run(monkeypatch, capsys, fake, "app:1.0", drain=["bs-app"])["changed"]
    assert not fake.ran("--net") and not reads

    update = run(monkeypatch, capsys, fake, "app:2.0", drain=["bs-app", "bs-other"])
    assert update["drained"] == ["bs-app"]
    rule = fake.ran(f"--target {fake.pid - 1} --net")
    assert len(rule) == 1 and "--syn" in rule[0] and rule[0][-2:] == ["--reject-with", "tcp-reset"]
    assert fake.calls.index(rule[0]) < fake.calls.index(fake.ran("up --detach")[0])
    assert reads == [fake.pid - 1] * 3, "it waits until the open connection is closed, no longer"

    fake.calls.clear()
    other = run(monkeypatch, capsys, fake, "app:1.0", drain=["bs-other"])
    assert other["changed"] and "drained" not in other and not fake.ran("--net")


def test_draining_gives_up_after_the_timeout(monkeypatch, capsys, tmp_path):
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    monkeypatch.setattr(ConnectionDrain, "tcp_tables", staticmethod(lambda pid: [TCP]))  # a websocket never closes
    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    update = run(monkeypatch, capsys, fake, "app:2.0", drain=["bs-app"], drain_timeout=10)
    assert update["drained"] == ["bs-app"] and fake.image == "app:2.0"


def test_a_failed_up_that_left_the_container_running_takes_the_drain_back(monkeypatch, capsys, tmp_path):
    """`up` can fail before it stops the old container (here: it fails and the same process still runs): the
    container must not refuse every new connection for good - the rule is deleted again, and the run fails."""
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    monkeypatch.setattr(ConnectionDrain, "tcp_tables", staticmethod(lambda pid: []))
    real = fake.__call__

    def up_fails_early(args, **kwargs):
        if not isinstance(args, str) and args[1:2] == ["compose"] and "up" in args:
            fake.calls.append(args)
            return 1, "", "network bs_default not found"  # nothing was replaced
        return real(args, **kwargs)
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, argv, **kwargs: up_fails_early(argv, **kwargs))
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/docker")
    params = {"name": "app", "project": "bs", "project_dir": str(tmp_path), "compose": compose("app:2.0"),
              "drain": ["bs-app"], "rollback": False}
    with patch_module_args(params), pytest.raises(SystemExit):
        compose_deploy.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "network bs_default not found" in result["msg"]
    inserted, deleted = fake.ran("--net /usr/bin/docker -w -I"), fake.ran("--net /usr/bin/docker -w -D")
    assert len(inserted) == 1 and len(deleted) == 1 and inserted[0][7:] == deleted[0][7:]
    assert inserted[0][:5] == deleted[0][:5], "the rule is deleted in the same (old) namespace"
    assert fake.calls.index(deleted[0]) > fake.calls.index(fake.ran("up --detach")[0])


def test_a_replaced_container_keeps_no_rule_to_take_back(monkeypatch, capsys, tmp_path):
    """The rule went with the old container's namespace: nothing is deleted in the new one's."""
    fake = FakeDocker(tmp_path)
    run(monkeypatch, capsys, fake, "app:1.0")
    monkeypatch.setattr(ConnectionDrain, "tcp_tables", staticmethod(lambda pid: []))
    old_pid = fake.pid
    update = run(monkeypatch, capsys, fake, "app:2.0", drain=["bs-app"])
    assert update["drained"] == ["bs-app"] and fake.pid != old_pid
    assert fake.ran(f"--target {old_pid} --net") and not fake.ran("-w -D")
