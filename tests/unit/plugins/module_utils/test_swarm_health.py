# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for stack_health on a Docker Swarm: the pure readers of ``docker service ls``/``ps`` output
(module_utils ``_swarm_health``) and ``StackHealth`` with ``swarm_stack`` set, against a fake swarm probe whose rows
have the shape the Docker CLI prints (``--format '{{json .}}'``). Against a real swarm: molecule/cluster's
test_health_play_names_a_task_that_keeps_failing.
"""
from __future__ import annotations

import contextlib
from typing import Any

import pytest

from ansible_collections.borgstack.stack.plugins.module_utils._health import HttpAnswer, ProbeError, StackHealth
from ansible_collections.borgstack.stack.plugins.module_utils._swarm_health import (
    parse_json_lines,
    replica_counts,
    summary_cell,
    summary_problem,
    task_summary,
)

STACK = "borgstack"


def task(name: str, node: str, state: str, desired: str = "Running", error: str = "", task_id: str = "") -> dict:
    return {"ID": task_id or f"id-{name}-{node}-{state}", "Name": name, "Node": node, "DesiredState": desired,
            "CurrentState": f"{state} 3 minutes ago", "Error": error, "Image": "img", "Ports": ""}


@pytest.mark.parametrize("cell, expected", [
    ("1/1", (1, 1)),
    ("0/2", (0, 2)),
    ("2/2 (max 1 per node)", (2, 2)),
    (" 3/4", (3, 4)),
])
def test_replica_counts_reads_the_replicas_cell(cell, expected):
    assert replica_counts(cell) == expected


@pytest.mark.parametrize("cell", ["", "n/a", "1-1", None])
def test_replica_counts_refuses_what_it_cannot_read(cell):
    with pytest.raises(ValueError, match="unreadable replica count"):
        replica_counts(cell)


def test_parse_json_lines_skips_blank_lines_and_refuses_non_objects():
    assert parse_json_lines('{"a": 1}\n\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError):
        parse_json_lines("[1, 2]\n")
    with pytest.raises(ValueError):
        parse_json_lines("not json\n")


def test_all_running_is_healthy_with_the_nodes_listed_once():
    rows = [task("borgstack_directus.1", "node-2", "Running"), task("borgstack_directus.2", "node-3", "Running"),
            # An old task of slot 1, shut down by an update: history, not a failure.
            task("\\_ borgstack_directus.1", "node-3", "Shutdown", desired="Shutdown")]
    summary = task_summary("borgstack_directus", "2/2", rows)
    assert summary == {"service": "borgstack_directus", "running": 2, "desired": 2, "nodes": ["node-2", "node-3"],
                       "failing_tasks": [], "pending": []}
    assert summary_problem(summary) == ""
    assert summary_cell([summary]) == "directus 2/2 @node-2,node-3"


def test_a_task_starting_or_shutting_down_is_not_counted_running():
    rows = [task("borgstack_n8n.1", "node-3", "Starting"),
            task("borgstack_n8n.1", "node-2", "Running", desired="Shutdown")]
    summary = task_summary("borgstack_n8n", "0/1", rows)
    assert (summary["running"], summary["nodes"]) == (0, [])
    assert summary_problem(summary) == "borgstack_n8n 0/1 tasks running"


def test_a_slot_that_failed_twice_is_named_with_its_newest_error_node_and_id():
    rows = [task("borgstack_n8n-worker.1", "node-2", "Running"),
            task("borgstack_n8n-worker.2", "node-4", "Starting"),
            task("\\_ borgstack_n8n-worker.2", "node-4", "Failed", desired="Shutdown",
                 error="task: non-zero exit (3)", task_id="newest"),
            task("\\_ borgstack_n8n-worker.2", "node-3", "Rejected", desired="Shutdown",
                 error="No such image: borgstack-lab/n8n:9", task_id="older"),
            # Slot 1 failed once long ago and runs now: not "keeps failing".
            task("\\_ borgstack_n8n-worker.1", "node-2", "Failed", desired="Shutdown", error="task: non-zero exit (1)")]
    summary = task_summary("borgstack_n8n-worker", "1/2", rows)
    assert summary["failing_tasks"] == [{"task": "borgstack_n8n-worker.2", "id": "newest", "failures": 2,
                                         "node": "node-4", "error": "task: non-zero exit (3)"}]
    assert summary_problem(summary) == (
        "borgstack_n8n-worker 1/2 tasks running (on node-2); task borgstack_n8n-worker.2 keeps failing "
        "(2 failures, last on node-4: task: non-zero exit (3))")


def test_one_failure_alone_does_not_keep_failing():
    rows = [task("borgstack_redis.1", "node-1", "Running"),
            task("\\_ borgstack_redis.1", "node-1", "Failed", desired="Shutdown", error="task: non-zero exit (137)")]
    summary = task_summary("borgstack_redis", "1/1", rows)
    assert summary["failing_tasks"] == [] and summary_problem(summary) == ""


def test_pending_tasks_give_their_reason_and_zero_wanted_is_a_problem():
    rows = [task("borgstack_postgresql.1", "", "Pending",
                 error="no suitable node (scheduling constraints not satisfied on 4 nodes)")]
    summary = task_summary("borgstack_postgresql", "0/1", rows)
    assert summary_problem(summary) == ("borgstack_postgresql 0/1 tasks running; pending: no suitable node "
                                        "(scheduling constraints not satisfied on 4 nodes)")
    assert "no task is wanted" in summary_problem(task_summary("borgstack_directus", "0/0", []))


class FakeSwarm:
    """A manager's view: ``services`` {name: replicas cell}, ``tasks`` {name: rows}, logs by task ID or service."""

    def __init__(self) -> None:
        self.services: dict[str, str] = {}
        self.tasks: dict[str, list[dict]] = {}
        self.log_text: dict[str, list[str]] = {}
        self.http_answers: dict[tuple[str, str | None], HttpAnswer] = {}
        self.calls: list[tuple] = []

    def swarm_services(self, stack: str) -> dict[str, str]:
        self.calls.append(("swarm_services", stack))
        if stack != STACK:
            raise ProbeError("docker service ls failed (is this host a swarm manager?): This node is not a manager")
        return dict(self.services)

    def swarm_tasks(self, service: str) -> list[dict]:
        self.calls.append(("swarm_tasks", service))
        return list(self.tasks.get(service, []))

    def swarm_logs(self, target: str, lines: int) -> list[str]:
        self.calls.append(("swarm_logs", target, lines))
        return self.log_text.get(target, [])[-lines:]

    def http(self, url: str, *, address: str | None, timeout: float, ca_path: str | None,
             validate_certs: bool) -> HttpAnswer:
        self.calls.append(("http", url, address, validate_certs) + ((self.inside,) if self.inside else ()))
        answer = self.http_answers.get((url, address))
        if answer is None:
            raise ProbeError(f"connection to {address or url.split('/')[2]} refused")
        return answer

    # The overlay: a namespace to enter, the embedded DNS's answers there, the probes (recorded with the namespace
    # they ran in, so a probe run outside it is seen).
    netns_error: str = ""
    names: dict[str, list[str]] = {}
    listening: set[tuple[str, int]] = set()
    logins: dict[tuple[str, str], str] = {}

    def overlay_netns(self, network: str) -> str:
        self.calls.append(("overlay_netns", network))
        if self.netns_error:
            raise ProbeError(self.netns_error)
        return "/proc/42/ns/net"

    @contextlib.contextmanager
    def in_netns(self, path: str) -> Any:
        self.inside = path
        try:
            yield
        finally:
            self.inside = None

    inside: str | None = None

    def resolve(self, name: str, *, timeout: float) -> list[str]:
        self.calls.append(("resolve", name, self.inside))
        return list(self.names.get(name, []))

    def tcp(self, host: str, port: int, *, timeout: float) -> None:
        self.calls.append(("tcp", host, port, self.inside))
        if (host, port) not in self.listening:
            raise ProbeError(f"connection to {host}:{port} refused")

    def pg_login(self, *, host: str, port: int, user: str, password: str | None, dbname: str | None,
                 timeout: float) -> None:
        self.calls.append(("pg_login", host, port, user, self.inside))
        if self.logins.get((host, user)) != password:
            raise ProbeError(f'connection failed: FATAL:  password authentication failed for user "{user}"')

    def redis_ping(self, **kwargs: Any) -> None:
        raise AssertionError("no Redis in these services")

    def inspect(self, container: str) -> Any:  # never on a swarm: the containers are on other nodes
        raise AssertionError(f"inspect({container}) called on a swarm")

    def logs(self, container: str, lines: int) -> Any:
        raise AssertionError(f"logs({container}) called on a swarm")


SERVICES = [
    {"name": "postgresql", "container": "borgstack-postgresql-1", "swarm_services": ["borgstack_postgresql"],
     "database": {"type": "postgresql", "container": "borgstack-postgresql-1", "user": "postgres",
                  "password": "Pg-s3cret-1"}},
    {"name": "n8n", "containers": ["borgstack-n8n-1", "borgstack-n8n-worker-1"],
     "swarm_services": ["borgstack_n8n", "borgstack_n8n-worker"],
     "internal_check": {"type": "http", "port": 5678, "path": "/healthz"},
     "public_url": "https://n8n.lab.test/healthz"},
]


def healthy_swarm() -> FakeSwarm:
    swarm = FakeSwarm()
    swarm.services = {"borgstack_postgresql": "1/1", "borgstack_n8n": "1/1", "borgstack_n8n-worker": "2/2"}
    swarm.tasks = {
        "borgstack_postgresql": [task("borgstack_postgresql.1", "node-1", "Running")],
        "borgstack_n8n": [task("borgstack_n8n.1", "node-3", "Running")],
        "borgstack_n8n-worker": [task("borgstack_n8n-worker.1", "node-2", "Running"),
                                 task("borgstack_n8n-worker.2", "node-4", "Running")],
    }
    swarm.http_answers = {("https://n8n.lab.test/healthz", "10.0.0.2"): HttpAnswer(200, "ok"),
                          ("http://10.0.1.7:5678/healthz", None): HttpAnswer(200, "ok")}
    swarm.names = {"borgstack-postgresql-1": ["10.0.1.3"], "borgstack-n8n-1": ["10.0.1.7", "10.0.1.9"]}
    swarm.logins = {("10.0.1.3", "postgres"): "Pg-s3cret-1"}
    return swarm


def checker(swarm: FakeSwarm, **kwargs: Any) -> StackHealth:
    return StackHealth(SERVICES, swarm, swarm_stack=STACK, public_resolve={"n8n.lab.test": "10.0.0.2"},
                       validate_certs=False, timeout=kwargs.pop("timeout", 0), sleep=lambda _s: None, **kwargs)


def test_a_healthy_swarm_reports_replicas_and_nodes_per_service():
    swarm = healthy_swarm()
    result = checker(swarm).run()
    assert result["failing"] == [] and "msg" not in result
    n8n = result["report"][1]
    assert n8n["checks"] == {"replicas": "ok", "internal": "ok", "public": "ok", "database": "skipped"}
    assert result["report"][0]["checks"] == {"replicas": "ok", "internal": "skipped", "public": "skipped",
                                             "database": "ok"}
    assert [(r["service"], r["running"], r["desired"], r["nodes"]) for r in n8n["replicas"]] == [
        ("borgstack_n8n", 1, 1, ["node-3"]), ("borgstack_n8n-worker", 2, 2, ["node-2", "node-4"])]
    assert result["table"][0].split(" | ")[-1] == "tasks @nodes"
    assert result["table"][3] == ("n8n        | https://n8n.lab.test/healthz | ok     | "
                                  "n8n 1/1 @node-3, n8n-worker 2/2 @node-2,node-4")
    # The public URL went to the edge node's address, from this host; the internal endpoint and the login to the
    # addresses the overlay's DNS gave for the container names, from inside the namespace (looked up once).
    assert ("http", "https://n8n.lab.test/healthz", "10.0.0.2", False) in swarm.calls
    assert ("http", "http://10.0.1.7:5678/healthz", None, False, "/proc/42/ns/net") in swarm.calls
    assert ("pg_login", "10.0.1.3", 5432, "postgres", "/proc/42/ns/net") in swarm.calls
    assert [call for call in swarm.calls if call[0] == "overlay_netns"] == [("overlay_netns", "borgstack_internal")]
    assert swarm.inside is None
    assert not any(call[0] == "swarm_logs" for call in swarm.calls)


def test_a_task_that_keeps_failing_is_named_with_its_logs():
    swarm = healthy_swarm()
    swarm.services["borgstack_n8n-worker"] = "1/2"
    swarm.tasks["borgstack_n8n-worker"] = [
        task("borgstack_n8n-worker.1", "node-2", "Running"),
        task("borgstack_n8n-worker.2", "node-4", "Starting"),
        task("\\_ borgstack_n8n-worker.2", "node-4", "Failed", desired="Shutdown", error="task: non-zero exit (3)",
             task_id="t-new"),
        task("\\_ borgstack_n8n-worker.2", "node-4", "Failed", desired="Shutdown", error="task: non-zero exit (3)",
             task_id="t-old"),
    ]
    swarm.log_text = {"t-new": ["booting", "Error: cannot connect with password Pg-s3cret-1", "exit 3"]}
    result = checker(swarm, log_lines=2).run()
    assert result["failing"] == ["n8n"]
    n8n = result["report"][1]
    assert n8n["checks"]["replicas"] == (
        "failing: borgstack_n8n-worker 1/2 tasks running (on node-2); task borgstack_n8n-worker.2 keeps failing "
        "(2 failures, last on node-4: task: non-zero exit (3))")
    assert n8n["logs"] == {"borgstack_n8n-worker.2": ["Error: cannot connect with password ********", "exit 3"]}
    assert "[n8n] last 2 log lines of borgstack_n8n-worker.2:" in result["msg"]
    assert "Pg-s3cret-1" not in result["msg"]
    assert ("swarm_logs", "t-new", 2) in swarm.calls
    assert result["table"][3].startswith("n8n ") and "failing (replicas)" in result["table"][3]


def test_a_service_short_of_tasks_without_failures_shows_the_service_logs():
    swarm = healthy_swarm()
    swarm.services["borgstack_postgresql"] = "0/1"
    swarm.tasks["borgstack_postgresql"] = [task("borgstack_postgresql.1", "node-1", "Starting")]
    swarm.log_text = {"borgstack_postgresql": ["database system is starting up"]}
    result = checker(swarm).run()
    assert result["failing"] == ["postgresql"]
    assert result["report"][0]["logs"] == {"borgstack_postgresql": ["database system is starting up"]}


def test_a_missing_swarm_service_and_a_non_manager_are_named():
    swarm = healthy_swarm()
    del swarm.services["borgstack_n8n-worker"]
    result = checker(swarm).run()
    assert result["report"][1]["checks"]["replicas"] == (
        "failing: swarm service borgstack_n8n-worker does not exist in stack borgstack")
    result = StackHealth(SERVICES[:1], swarm, swarm_stack="other", timeout=0, log_lines=0).run()
    assert "is this host a swarm manager?" in result["report"][0]["checks"]["replicas"]


def test_failing_tasks_are_retried_until_they_run():
    swarm = healthy_swarm()
    swarm.services["borgstack_n8n"] = "0/1"
    swarm.tasks["borgstack_n8n"] = [task("borgstack_n8n.1", "node-3", "Starting")]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        swarm.services["borgstack_n8n"] = "1/1"
        swarm.tasks["borgstack_n8n"] = [task("borgstack_n8n.1", "node-3", "Running")]

    now = iter(range(0, 1000))
    result = StackHealth(SERVICES, swarm, swarm_stack=STACK, public_resolve={"n8n.lab.test": "10.0.0.2"},
                         validate_certs=False, timeout=60, sleep=sleep, clock=lambda: float(next(now))).run()
    assert result["failing"] == [] and sleeps == [1.0]
    assert result["report"][1]["attempts"] == 2 and result["report"][0]["attempts"] == 1


def test_without_a_swarm_stack_the_swarm_services_option_is_ignored():
    # The single-host checks keep their five check names (no "replicas").
    health = StackHealth(SERVICES[:1], healthy_swarm(), timeout=0)
    assert list(health.services[0].checks) == ["container", "health", "internal", "public", "database"]
    assert health.services[0].swarm_services == []


def test_a_broken_login_and_a_stopped_endpoint_fail_with_the_single_host_messages():
    swarm = healthy_swarm()
    swarm.logins = {("10.0.1.3", "postgres"): "another"}
    del swarm.http_answers[("http://10.0.1.7:5678/healthz", None)]
    result = checker(swarm, log_lines=0).run()
    assert result["failing"] == ["postgresql", "n8n"]
    assert result["report"][0]["checks"]["database"] == (
        'failing: postgresql at 10.0.1.3:5432: connection failed: FATAL:  password authentication failed for user '
        '"postgres"')
    assert result["report"][1]["checks"]["internal"] == "failing: connection to 10.0.1.7:5678 refused"
    assert result["report"][1]["checks"]["replicas"] == "ok"
    assert "[postgresql] database: failing: postgresql at 10.0.1.3:5432" in result["msg"]
    assert "Pg-s3cret-1" not in str(result)


def test_a_container_name_no_task_answers_to_is_named():
    swarm = healthy_swarm()
    del swarm.names["borgstack-postgresql-1"]
    result = checker(swarm, log_lines=0).run()
    assert result["report"][0]["checks"]["database"] == (
        "failing: no task answers to borgstack-postgresql-1 on network borgstack_internal (is it running?)")


def test_without_a_container_on_the_overlay_here_both_checks_say_why_and_the_lookup_is_retried():
    swarm = healthy_swarm()
    swarm.netns_error = "no running container of this node is attached to network borgstack_cluster, ..."
    result = checker(swarm, log_lines=0).run()
    assert result["report"][1]["checks"]["internal"].startswith("failing: no running container of this node")
    assert result["report"][1]["checks"]["database"] == "skipped"
    assert result["report"][0]["checks"]["database"].startswith("failing: no running container of this node")
    assert [call[0] for call in swarm.calls].count("overlay_netns") == 2


def dns_answer(query: bytes, addresses: list[str], rcode: int = 0) -> bytes:
    """The answer Docker's DNS gives: the question echoed, one A record per address (name compressed)."""
    import socket
    import struct
    header = struct.pack(">HHHHHH", struct.unpack(">H", query[:2])[0], 0x8180 | rcode, 1, len(addresses), 0, 0)
    records = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 600, 4) + socket.inet_aton(a) for a in addresses)
    return header + query[12:] + records


def test_the_dns_client_reads_the_embedded_servers_answers():
    from ansible_collections.borgstack.stack.plugins.module_utils._health import dns_answer_addresses, dns_query
    query = dns_query("borgstack-directus-1", 4660)
    assert query[12:] == b"\x14borgstack-directus-1\x00\x00\x01\x00\x01"
    assert dns_answer_addresses(dns_answer(query, ["10.0.1.12", "10.0.1.9"]), 4660) == ["10.0.1.9", "10.0.1.12"]
    assert dns_answer_addresses(dns_answer(query, [], rcode=3), 4660) == []
    with pytest.raises(ValueError, match="another query"):
        dns_answer_addresses(dns_answer(query, ["10.0.1.9"]), 1)
    with pytest.raises(ValueError, match="code 2"):
        dns_answer_addresses(dns_answer(query, [], rcode=2), 4660)
