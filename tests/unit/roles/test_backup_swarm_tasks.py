# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster half of roles/backup/files/borgstack-backup.py: with <kind>_swarm_service in its settings, each data
service's container is the one running task of that swarm service on this node (docker ps by the swarm's service
label), found at the start of a run; none or two is a failure naming the service and the node; Redis is reached from
inside that task's network namespace (setns to the task's, connect to 127.0.0.1, setns back). Without those settings
(one host): the settings' container names and no docker ps at all. Against a stand-in for the docker CLI and setns
(the real swarm: molecule/cluster/tests/test_cluster_backup.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "backup" / "files" / "borgstack-backup.py"
_SPEC = importlib.util.spec_from_file_location("borgstack_backup_swarm", SCRIPT)
backup = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(backup)

ONE_HOST = {"postgresql_container": "borgstack-postgresql", "redis_container": "borgstack-redis",
            "mongodb_container": "", "postgresql_swarm_service": "", "redis_swarm_service": "",
            "mongodb_swarm_service": ""}
CLUSTER = {**ONE_HOST, "postgresql_swarm_service": "borgstack_postgresql", "redis_swarm_service": "borgstack_redis"}


def _fake_docker(monkeypatch, tasks, calls: List[List[str]]):
    def run(cmd, what, env=None):  # noqa: ARG001 - the script's signature
        calls.append(cmd)
        service = next(arg.rsplit("=", 1)[1] for arg in cmd if arg.startswith("label=com.docker.swarm.service.name="))
        return "".join(f"{name}\n" for name in tasks.get(service, []))
    monkeypatch.setattr(backup, "run", run)


def test_one_host_keeps_the_container_names_without_asking_docker(monkeypatch):
    calls: List[List[str]] = []
    _fake_docker(monkeypatch, {}, calls)
    assert backup.resolve_containers(ONE_HOST) == ONE_HOST
    assert not calls


def test_on_a_cluster_each_container_is_its_swarm_services_task_on_this_node(monkeypatch):
    calls: List[List[str]] = []
    _fake_docker(monkeypatch, {"borgstack_postgresql": ["borgstack_postgresql.1.abc"],
                               "borgstack_redis": ["borgstack_redis.1.def"]}, calls)
    resolved = backup.resolve_containers(CLUSTER)
    assert resolved["postgresql_container"] == "borgstack_postgresql.1.abc"
    assert resolved["redis_container"] == "borgstack_redis.1.def"
    assert resolved["mongodb_container"] == ""  # off: not looked up
    assert calls == [["docker", "ps", "--filter", f"label=com.docker.swarm.service.name={name}", "--filter",
                      "status=running", "--format", "{{.Names}}"] for name in ("borgstack_postgresql",
                                                                               "borgstack_redis")]
    assert CLUSTER["postgresql_container"] == "borgstack-postgresql"  # the settings read are not changed


@pytest.mark.parametrize("tasks", [[], ["borgstack_redis.1.a", "borgstack_redis.1.b"]])
def test_no_task_or_two_on_this_node_fail_naming_the_service(monkeypatch, tasks):
    _fake_docker(monkeypatch, {"borgstack_postgresql": ["borgstack_postgresql.1.abc"], "borgstack_redis": tasks},
                 [])
    with pytest.raises(backup.BackupError, match=rf"{len(tasks)} running tasks of the swarm service borgstack_redis "
                                                 r"on this node \(.*\), one expected.*docker service ps"):
        backup.resolve_containers(CLUSTER)


def test_redis_is_reached_inside_the_tasks_network_namespace_and_the_process_comes_back(monkeypatch):
    events: List[str] = []
    monkeypatch.setattr(backup, "run", lambda cmd, what, env=None: "4242\n")
    opened = {}

    def fake_open(path, flags):  # noqa: ARG001
        opened[path] = len(opened) + 100
        events.append(f"open {path}")
        return opened[path]

    monkeypatch.setattr(backup.os, "open", fake_open)
    monkeypatch.setattr(backup.os, "close", lambda fd: events.append(f"close {fd}"))
    monkeypatch.setattr(backup, "_setns", lambda fd: events.append(f"setns {fd}"))
    monkeypatch.setattr(backup.socket, "create_connection",
                        lambda address, timeout: events.append(f"connect {address[0]}:{address[1]}") or "sock")
    assert backup.connect_in_netns("borgstack_redis.1.def", 6379) == "sock"
    here, there = opened["/proc/self/ns/net"], opened["/proc/4242/ns/net"]
    assert events == ["open /proc/self/ns/net", "open /proc/4242/ns/net", f"setns {there}", "connect 127.0.0.1:6379",
                      f"setns {here}", f"close {there}", f"close {here}"]


def test_a_stopped_task_has_no_namespace_to_enter(monkeypatch):
    monkeypatch.setattr(backup, "run", lambda cmd, what, env=None: "0\n")
    with pytest.raises(backup.BackupError, match="borgstack_redis.1.def is not running"):
        backup.connect_in_netns("borgstack_redis.1.def", 6379)


def test_the_redis_keys_use_the_namespace_only_on_a_cluster(monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def fake_redis(container, port, password, db, netns=False):  # noqa: ARG001
        seen.append((container, netns))
        raise Stop

    monkeypatch.setattr(backup, "Redis", fake_redis)
    unit = {"service": "evolution_api", "db": 3, "spaces": {"sessions": ["evo:*"]}}
    for cfg in (ONE_HOST, CLUSTER):
        with pytest.raises(Stop):
            backup.dump_redis_keys({**cfg, "redis_port": 6379}, unit, Path("/nonexistent"), {})
    assert seen == [("borgstack-redis", False), ("borgstack-redis", True)]
