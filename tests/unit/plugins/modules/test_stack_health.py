# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the borgstack.stack.stack_health module and its module_utils ``_health``.

The checks run against ``FakeProbe``, which holds containers, HTTP answers and database passwords in memory and
records every call; time is a fake clock that only moves when the checker sleeps or a probe "takes" time, so the
backoff and the deadline are exact. ``main()`` runs end to end with the fake injected. The real ``Probe`` is
exercised here where it needs no Docker (RESP exchange with a local socket server, HTTP pinned to an address,
log merging); against real containers in tests/integration/targets/stack_health.
"""
from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Any, Iterator

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.borgstack.stack.plugins.module_utils._health import (
    HttpAnswer,
    Probe,
    ProbeError,
    StackHealth,
    merge_timestamped_logs,
    render_table,
)
from ansible_collections.borgstack.stack.plugins.modules import stack_health

NETWORK = "borgstack_internal"
PG_PASSWORD = "Pg-s3cret-9f2c81"
REDIS_PASSWORD = "Redis-s3cret-77ab"
CADDY_IP = "198.51.100.10"


def container_info(ip: str | None, status: str = "running", health: str | None = "healthy",
                   exit_code: int = 0, probe_output: str = "", network: str = NETWORK) -> dict[str, Any]:
    """The parts of ``docker container inspect`` the module reads."""
    state: dict[str, Any] = {"Status": status, "Running": status == "running", "Restarting": False,
                             "ExitCode": exit_code, "Error": ""}
    if health is not None:
        state["Health"] = {"Status": health, "Log": [{"ExitCode": 1, "Output": probe_output}] if probe_output else []}
    networks = {network: {"IPAddress": ip if status == "running" else ""}} if ip is not None else {}
    return {"State": state, "NetworkSettings": {"Networks": networks}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeProbe:
    """In-memory stack. ``containers`` maps name -> inspect dict or a list of them (one per call, last repeats)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.containers: dict[str, Any] = {}
        self.http_answers: dict[tuple[str, str | None], HttpAnswer | Exception] = {}
        self.listening: set[tuple[str, int]] = set()
        self.pg_users: dict[tuple[str, int, str], str] = {}
        self.redis: dict[tuple[str, int], str] = {}
        self.log_text: dict[str, list[str]] = {}
        self.calls: list[tuple] = []

    def inspect(self, container: str) -> dict[str, Any] | None:
        self.calls.append(("inspect", container))
        value = self.containers.get(container)
        if isinstance(value, list):
            return value.pop(0) if len(value) > 1 else value[0]
        return value

    def logs(self, container: str, lines: int) -> list[str]:
        self.calls.append(("logs", container, lines))
        return self.log_text.get(container, [])[-lines:]

    def http(self, url: str, *, address: str | None, timeout: float, ca_path: str | None,
             validate_certs: bool) -> HttpAnswer:
        self.calls.append(("http", url, address, ca_path, validate_certs))
        answer = self.http_answers.get((url, address), ProbeError(f"connection to {address or url} refused"))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def tcp(self, host: str, port: int, *, timeout: float) -> None:
        self.calls.append(("tcp", host, port))
        if (host, port) not in self.listening:
            raise ProbeError(f"connection to {host}:{port} refused")

    def pg_login(self, *, host: str, port: int, user: str, password: str | None, dbname: str | None,
                 timeout: float) -> None:
        self.calls.append(("pg_login", host, port, user, dbname))
        expected = self.pg_users.get((host, port, user))
        if expected is None:
            raise ProbeError(f"connection to {host}:{port} refused")
        if password != expected:
            # Some drivers echo the connection string; the module must mask it anyway.
            raise ProbeError(f'FATAL: password authentication failed for user "{user}" (password={password})')

    def redis_ping(self, *, host: str, port: int, user: str | None, password: str | None, db: int,
                   timeout: float) -> None:
        self.calls.append(("redis_ping", host, port, db))
        expected = self.redis.get((host, port))
        if expected is None:
            raise ProbeError(f"connection to {host}:{port} refused")
        if password != expected:
            raise ProbeError("AUTH answered '-WRONGPASS invalid username-password pair or user is disabled.'")


def healthy_stack(clock: FakeClock | None = None) -> tuple[FakeProbe, list[dict[str, Any]]]:
    """postgresql, redis and n8n (internal check, public URL through Caddy, PostgreSQL login), all fine."""
    probe = FakeProbe(clock)
    probe.containers = {
        "borgstack-postgresql-1": container_info("172.29.1.2"),
        "borgstack-redis-1": container_info("172.29.1.3"),
        "borgstack-n8n-1": container_info("172.29.1.5", health=None),
    }
    probe.pg_users = {("172.29.1.2", 5432, "postgres"): PG_PASSWORD, ("172.29.1.2", 5432, "n8n"): "n8n-pw-1"}
    probe.redis = {("172.29.1.3", 6379): REDIS_PASSWORD}
    probe.http_answers = {
        ("http://172.29.1.5:5678/healthz/readiness", None): HttpAnswer(200, '{"status":"ok"}'),
        ("https://n8n.lab.borgstack.test/healthz", CADDY_IP): HttpAnswer(200, '{"status":"ok"}'),
    }
    services = [
        {"name": "postgresql", "container": "borgstack-postgresql-1",
         "database": {"type": "postgresql", "user": "postgres", "password": PG_PASSWORD}},
        {"name": "redis", "container": "borgstack-redis-1",
         "database": {"type": "redis", "password": REDIS_PASSWORD, "db": 0}},
        {"name": "n8n", "container": "borgstack-n8n-1",
         "internal_check": {"type": "http", "port": 5678, "path": "/healthz/readiness", "expect_status": [200],
                            "expect_body": '"ok"'},
         "public_url": "https://n8n.lab.borgstack.test/healthz", "public_expect_status": [200],
         "database": {"type": "postgresql", "container": "borgstack-postgresql-1", "dbname": "n8n", "user": "n8n",
                      "password": "n8n-pw-1"}},
    ]
    return probe, services


def checker(probe: FakeProbe, services: list[dict[str, Any]], clock: FakeClock, **kwargs: Any) -> StackHealth:
    kwargs.setdefault("public_resolve", {"n8n.lab.borgstack.test": CADDY_IP})
    kwargs.setdefault("timeout", 60)
    return StackHealth(services, probe, network=NETWORK, clock=clock, sleep=clock.sleep, **kwargs)


# --------------------------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------------------------
def test_all_ok_report_table_and_probe_targets():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    result = checker(probe, services, clock, ca_path="/etc/borgstack/root.crt").run()

    summary = [(entry["name"], entry["status"], entry["checks"], entry["url"], entry["docker_health"])
               for entry in result["report"]]
    assert summary == [
        ("postgresql", "ok", {"container": "ok", "health": "ok", "internal": "skipped", "public": "skipped",
                              "database": "ok"}, None, {"borgstack-postgresql-1": "healthy"}),
        ("redis", "ok", {"container": "ok", "health": "ok", "internal": "skipped", "public": "skipped",
                         "database": "ok"}, None, {"borgstack-redis-1": "healthy"}),
        ("n8n", "ok", {"container": "ok", "health": "ok", "internal": "ok", "public": "ok", "database": "ok"},
         "https://n8n.lab.borgstack.test/healthz", {"borgstack-n8n-1": "none"}),
    ]
    assert result["failing"] == []
    assert "msg" not in result
    assert clock.sleeps == []
    assert result["table"] == [
        "service    | url                                    | status",
        "-----------+----------------------------------------+-------",
        "postgresql | -                                      | ok",
        "redis      | -                                      | ok",
        "n8n        | https://n8n.lab.borgstack.test/healthz | ok",
    ]
    network_calls = [call for call in probe.calls if call[0] not in ("inspect",)]
    assert network_calls == [
        ("pg_login", "172.29.1.2", 5432, "postgres", None),
        ("redis_ping", "172.29.1.3", 6379, 0),
        ("http", "http://172.29.1.5:5678/healthz/readiness", None, "/etc/borgstack/root.crt", True),
        ("http", "https://n8n.lab.borgstack.test/healthz", CADDY_IP, "/etc/borgstack/root.crt", True),
        ("pg_login", "172.29.1.2", 5432, "n8n", "n8n"),
    ]


def test_one_stopped_container_is_named_with_its_log_lines():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    probe.containers["borgstack-redis-1"] = container_info("172.29.1.3", status="exited", exit_code=137)
    probe.log_text["borgstack-redis-1"] = [f"1:M line {number}" for number in range(1, 31)]
    result = checker(probe, services, clock, timeout=10, log_lines=5).run()

    assert result["failing"] == ["redis"]
    redis = result["report"][1]
    assert redis["status"] == "failing"
    assert redis["checks"]["container"] == "failing: container borgstack-redis-1 is exited (exit code 137)"
    assert redis["checks"]["health"] == "skipped"
    assert redis["checks"]["database"].startswith("failing: no address: container borgstack-redis-1 is exited")
    assert redis["logs"] == {"borgstack-redis-1": [f"1:M line {number}" for number in range(26, 31)]}
    message = result["msg"]
    assert message.startswith("1 of 3 services still failing after 10s (timeout 10s): redis.")
    assert "[redis] container: failing: container borgstack-redis-1 is exited (exit code 137)" in message
    assert "    1:M line 30" in message and "    1:M line 26" in message and "1:M line 25" not in message
    assert "postgresql" not in message and "n8n" not in message
    assert ("logs", "borgstack-redis-1", 5) in probe.calls
    assert [call for call in probe.calls if call[0] == "logs"] == [("logs", "borgstack-redis-1", 5)]
    assert result["table"][3] == "redis      | -                                      | failing (container, database)"


def test_every_failing_service_is_named_with_each_failing_check():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    probe.containers["borgstack-n8n-1"] = container_info("172.29.1.5", health="unhealthy",
                                                         probe_output="wget: server returned error: 503")
    probe.http_answers[("https://n8n.lab.borgstack.test/healthz", CADDY_IP)] = HttpAnswer(502, "bad gateway")
    del probe.containers["borgstack-postgresql-1"]
    result = checker(probe, services, clock, timeout=0).run()

    assert result["failing"] == ["postgresql", "n8n"]
    message = result["msg"]
    assert "[postgresql] container: failing: container borgstack-postgresql-1 does not exist" in message
    n8n_line = next(line for line in message.splitlines() if line.startswith("[n8n] health"))
    assert "health: failing: borgstack-n8n-1 is unhealthy (last probe: wget: server returned error: 503)" in n8n_line
    assert ("public: failing: GET https://n8n.lab.borgstack.test/healthz (via 198.51.100.10) answered 502, "
            "expected 200") in n8n_line
    assert "database: failing: container borgstack-postgresql-1 does not exist" in n8n_line
    assert "internal:" not in n8n_line  # the endpoint itself answered


def test_backoff_doubles_caps_at_15_and_gives_up_at_the_deadline():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    probe.containers["borgstack-redis-1"] = container_info("172.29.1.3", health="starting")
    result = checker(probe, services, clock, timeout=45).run()

    assert clock.sleeps == [1, 2, 4, 8, 15, 15]
    assert clock.now - 1000.0 == 45
    assert result["failing"] == ["redis"]
    redis = result["report"][1]
    assert redis["attempts"] == 7
    assert redis["elapsed"] == 45
    assert redis["checks"]["health"] == "failing: borgstack-redis-1 is starting"
    # Services that passed are not checked again.
    assert probe.calls.count(("pg_login", "172.29.1.2", 5432, "postgres", None)) == 1
    assert probe.calls.count(("inspect", "borgstack-redis-1")) == 7


def test_last_pause_is_cut_to_the_deadline():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    probe.http_answers[("https://n8n.lab.borgstack.test/healthz", CADDY_IP)] = HttpAnswer(404, "")
    result = checker(probe, services, clock, timeout=10).run()
    assert clock.sleeps == [1, 2, 4, 3]
    assert result["failing"] == ["n8n"]


def test_health_starting_then_healthy_passes_within_the_deadline():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    probe.containers["borgstack-postgresql-1"] = [
        container_info("172.29.1.2", health="starting"),
        container_info("172.29.1.2", health="starting"),
        container_info("172.29.1.2", health="healthy"),
    ]
    result = checker(probe, services[:2], clock, timeout=300).run()

    assert result["failing"] == []
    postgresql = result["report"][0]
    assert (postgresql["status"], postgresql["attempts"], postgresql["docker_health"]) == (
        "ok", 3, {"borgstack-postgresql-1": "healthy"})
    assert clock.sleeps == [1, 2]
    assert postgresql["elapsed"] == 3


def test_container_not_on_the_network_and_multi_container_service():
    clock = FakeClock()
    probe = FakeProbe(clock)
    probe.containers = {
        "borgstack-chatwoot-1": container_info("172.29.1.7", network="bridge"),
        "borgstack-chatwoot-worker-1": container_info("172.29.1.8", health="unhealthy"),
    }
    services = [{"name": "chatwoot", "containers": ["borgstack-chatwoot-1", "borgstack-chatwoot-worker-1"],
                 "internal_check": {"type": "tcp", "port": 3000}}]
    result = checker(probe, services, clock, timeout=0, log_lines=0).run()
    checks = result["report"][0]["checks"]
    assert checks["container"] == "ok"
    assert checks["health"] == "failing: borgstack-chatwoot-worker-1 is unhealthy"
    assert checks["internal"] == ("failing: container borgstack-chatwoot-1 has no address on network "
                                  "borgstack_internal (attached to: bridge)")
    assert "logs" not in result["report"][0]
    assert "log lines" not in result["msg"]


def test_internal_url_and_body_expectation():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    probe.http_answers[("http://172.29.1.5:5678/healthz/readiness", None)] = HttpAnswer(200, '{"status":"error"}')
    probe.listening.add(("172.29.1.3", 6379))
    services[1]["internal_url"] = "http://redis.example:8080/"
    probe.http_answers[("http://redis.example:8080/", None)] = HttpAnswer(200, "")
    result = checker(probe, services, clock, timeout=0).run()
    assert result["report"][1]["checks"]["internal"] == "ok"
    assert result["report"][1]["url"] == "http://redis.example:8080/"
    assert result["report"][2]["checks"]["internal"] == (
        "failing: GET http://172.29.1.5:5678/healthz/readiness answered 200 but the body does not match '\"ok\"'")


def test_passwords_never_appear_in_the_result():
    clock = FakeClock()
    probe, services = healthy_stack(clock)
    probe.pg_users[("172.29.1.2", 5432, "postgres")] = "the-real-one"
    probe.redis[("172.29.1.3", 6379)] = "another-real-one"
    probe.log_text["borgstack-postgresql-1"] = [f"connection string password={PG_PASSWORD}"]
    result = checker(probe, services, clock, timeout=0).run()

    assert result["failing"] == ["postgresql", "redis"]
    dumped = json.dumps(result)
    assert PG_PASSWORD not in dumped and REDIS_PASSWORD not in dumped and "n8n-pw-1" not in dumped
    assert 'password authentication failed for user "postgres" (password=********)' in result["msg"]
    assert "connection string password=********" in result["msg"]


# --------------------------------------------------------------------------------------------------------------
# main() end to end with the fake probe
# --------------------------------------------------------------------------------------------------------------
def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], probe: FakeProbe,
             args: dict[str, Any]) -> dict[str, Any]:
    monkeypatch.setattr(stack_health, "Probe", lambda module: probe)
    with patch_module_args(args), pytest.raises(SystemExit):
        stack_health.main()
    return json.loads(capsys.readouterr().out)


def test_main_reports_ok_unchanged_in_check_mode(monkeypatch, capsys):
    probe, services = healthy_stack()
    result = run_main(monkeypatch, capsys, probe, {
        "services": services, "public_resolve": {"n8n.lab.borgstack.test": CADDY_IP}, "timeout": 0,
        "_ansible_check_mode": True})
    assert (result.get("failed", False), result["changed"], result["failing"]) == (False, False, [])
    assert [entry["status"] for entry in result["report"]] == ["ok", "ok", "ok"]
    assert "password" not in json.dumps(result["report"])


def test_main_fails_naming_the_service_without_the_password(monkeypatch, capsys):
    probe, services = healthy_stack()
    services[2]["database"]["password"] = "Wrong-Pass-31337"
    probe.log_text["borgstack-n8n-1"] = ["n8n ready on 0.0.0.0, port 5678"]
    result = run_main(monkeypatch, capsys, probe, {
        "services": services, "public_resolve": {"n8n.lab.borgstack.test": CADDY_IP}, "timeout": 0})
    assert (result["failed"], result["changed"], result["failing"]) == (True, False, ["n8n"])
    assert "[n8n] database: failing: postgresql at 172.29.1.2:5432: FATAL: password authentication failed" in (
        result["msg"])
    assert "n8n ready on 0.0.0.0, port 5678" in result["msg"]
    output = json.dumps(result)
    for secret in ("Wrong-Pass-31337", PG_PASSWORD, REDIS_PASSWORD, "n8n-pw-1"):
        assert secret not in output


def test_main_requires_psycopg_only_for_postgresql(monkeypatch, capsys):
    monkeypatch.setattr(stack_health, "HAS_PSYCOPG", False)
    probe, services = healthy_stack()
    result = run_main(monkeypatch, capsys, probe, {"services": services[:1], "timeout": 0})
    assert result["failed"] and "psycopg" in result["msg"] and probe.calls == []
    result = run_main(monkeypatch, capsys, probe, {"services": services[1:2], "timeout": 0})
    assert result.get("failed", False) is False


def test_main_refuses_container_and_containers_together(monkeypatch, capsys):
    probe = healthy_stack()[0]
    result = run_main(monkeypatch, capsys, probe, {
        "services": [{"name": "x", "container": "a", "containers": ["b"]}]})
    assert result["failed"] and "mutually exclusive" in result["msg"]


# --------------------------------------------------------------------------------------------------------------
# The real Probe, where no Docker is needed
# --------------------------------------------------------------------------------------------------------------
class FakeModule:
    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.commands: list[list[str]] = []

    def get_bin_path(self, name: str, required: bool = False) -> str:
        return f"/usr/bin/{name}"

    def run_command(self, args: list[str]) -> tuple[int, str, str]:
        self.commands.append(args)
        return self.answers[tuple(args[1:])]


def test_probe_inspect_and_logs_use_the_docker_cli():
    module = FakeModule({
        ("container", "inspect", "a"): (0, json.dumps([container_info("10.1.0.2")]), ""),
        ("container", "inspect", "b"): (1, "[]", "Error response from daemon: No such container: b"),
        ("container", "inspect", "c"): (1, "", "Cannot connect to the Docker daemon"),
        ("logs", "--timestamps", "--tail", "3", "a"): (
            0,
            "2025-01-01T10:00:00.000000001Z out one\n2025-01-01T10:00:02.000000000Z out two\n",
            "2025-01-01T10:00:01.000000000Z err one\n2025-01-01T10:00:03.000000000Z err two\n",
        ),
    })
    probe = Probe(module)
    assert probe.inspect("a")["NetworkSettings"]["Networks"][NETWORK]["IPAddress"] == "10.1.0.2"
    assert probe.inspect("b") is None
    with pytest.raises(ProbeError, match="Cannot connect to the Docker daemon"):
        probe.inspect("c")
    assert probe.logs("a", 3) == ["err one", "out two", "err two"]
    assert module.commands[0] == ["/usr/bin/docker", "container", "inspect", "a"]


def test_merge_timestamped_logs_keeps_unstamped_lines_and_zero():
    assert merge_timestamped_logs("plain line\n", "", 5) == ["plain line"]
    assert merge_timestamped_logs("2025-01-01T10:00:00.000000000Z x\n", "", 0) == []


@pytest.fixture()
def resp_server() -> Iterator[tuple[int, list[bytes]]]:
    """A one-connection RESP server: password 'pw', answers AUTH/SELECT/PING the way Redis does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            with conn:
                reader = conn.makefile("rb")
                authed = False
                while True:
                    header = reader.readline()
                    if not header:
                        break
                    words = []
                    for _index in range(int(header[1:])):
                        length = int(reader.readline()[1:])
                        words.append(reader.read(length + 2)[:-2])
                    received.append(b" ".join(words))
                    if words[0] == b"AUTH":
                        authed = words[-1] == b"pw"
                        conn.sendall(b"+OK\r\n" if authed else b"-WRONGPASS invalid username-password pair\r\n")
                    elif not authed:
                        conn.sendall(b"-NOAUTH Authentication required.\r\n")
                    elif words[0] == b"SELECT":
                        conn.sendall(b"+OK\r\n")
                    else:
                        conn.sendall(b"+PONG\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], received
    listener.close()


def test_probe_redis_ping_speaks_resp(resp_server):
    port, received = resp_server
    probe = Probe(FakeModule({}))
    probe.redis_ping(host="127.0.0.1", port=port, user=None, password="pw", db=2, timeout=5)
    assert received == [b"AUTH pw", b"SELECT 2", b"PING"]
    with pytest.raises(ProbeError, match="AUTH answered '-WRONGPASS"):
        probe.redis_ping(host="127.0.0.1", port=port, user="app", password="nope", db=0, timeout=5)
    with pytest.raises(ProbeError, match="PING answered '-NOAUTH"):
        probe.redis_ping(host="127.0.0.1", port=port, user=None, password=None, db=0, timeout=5)
    assert received[3:] == [b"AUTH app nope", b"PING"]


def test_probe_http_connects_to_the_pinned_address_with_the_url_host():
    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append((self.path, self.headers.get("Host")))
            body = b"ready"
            self.send_response(503 if self.path.startswith("/down") else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        probe = Probe(FakeModule({}))
        answer = probe.http(f"http://app.test:{port}/health?full=1", address="127.0.0.1", timeout=5, ca_path=None,
                            validate_certs=True)
        assert (answer.status, answer.body) == (200, "ready")
        assert probe.http(f"http://app.test:{port}/down", address="127.0.0.1", timeout=5, ca_path=None,
                          validate_certs=True).status == 503
        assert seen == [("/health?full=1", f"app.test:{port}"), ("/down", f"app.test:{port}")]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ProbeError, match="refused"):
        probe.http(f"http://app.test:{port}/", address="127.0.0.1", timeout=5, ca_path=None, validate_certs=True)
    with pytest.raises(ProbeError, match="not an http"):
        probe.http("ftp://app.test/", address=None, timeout=5, ca_path=None, validate_certs=True)


def test_render_table_pads_columns():
    table = render_table([{"name": "a", "url": None, "status": "ok", "checks": {}},
                          {"name": "longer", "url": "https://x", "status": "failing",
                           "checks": {"container": "ok", "public": "failing: 502"}}])
    assert table == [
        "service | url       | status",
        "--------+-----------+-------",
        "a       | -         | ok",
        "longer  | https://x | failing (public)",
    ]
