# SPDX-License-Identifier: GPL-3.0-or-later
"""Private helpers for ``borgstack.stack.stack_health``: argument spec, probes and the bounded wait.

Contents:
- ``stack_health_module_kwargs``: everything ``AnsibleModule`` needs (the option documentation lives in the module);
- ``Probe``: the only place that touches the outside world (Docker CLI, HTTP(S), PostgreSQL login, Redis RESP), in
  small methods that unit tests replace with a fake;
- ``StackHealth``: runs every check of every service, retries the failing services with exponential backoff until
  all pass or the deadline hits, and builds the report, the printable table and the failure message.
"""
from __future__ import annotations

import contextlib
import heapq
import http.client
import json
import random
import re
import socket
import ssl
import struct
import time
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

from ansible_collections.borgstack.stack.plugins.module_utils._netns import NetnsError, container_netns, in_netns
from ansible_collections.borgstack.stack.plugins.module_utils._psycopg import psycopg
from ansible_collections.borgstack.stack.plugins.module_utils._swarm_health import (
    parse_json_lines,
    summary_cell,
    summary_problem,
    task_summary,
)

OK = "ok"
SKIPPED = "skipped"
CHECK_NAMES = ("container", "health", "internal", "public", "database")
# On a swarm the tasks run on other nodes: their containers cannot be inspected from here. The internal endpoints and
# the database logins are reached over the overlay, from the network namespace of a container of this node on it.
SWARM_CHECK_NAMES = ("replicas", "internal", "public", "database")
EMBEDDED_DNS = "127.0.0.11"  # Docker's DNS server inside every container on a user-defined network

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 15.0
ATTEMPT_TIMEOUT = 10.0  # longest a single probe (HTTP request, login, docker call) may take
BODY_LIMIT = 65536  # bytes of a response body kept for O(expect_body)
REASON_LIMIT = 300  # characters of a probe's own error text kept in a reason
MASK = "********"

DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379}


# --------------------------------------------------------------------------------------------------------------
# Argument spec
# --------------------------------------------------------------------------------------------------------------
def stack_health_module_kwargs() -> dict[str, Any]:
    """Everything ``AnsibleModule`` needs for ``borgstack.stack.stack_health``."""
    internal_check = {
        "type": {"type": "str", "default": "http", "choices": ["http", "tcp"]},
        "port": {"type": "int", "required": True},
        "path": {"type": "str", "default": "/"},
        "expect_status": {"type": "list", "elements": "int", "default": [200]},
        "expect_body": {"type": "str"},
    }
    database = {
        "type": {"type": "str", "required": True, "choices": ["postgresql", "redis"]},
        "container": {"type": "str"},
        "host": {"type": "str"},
        "port": {"type": "int"},
        "dbname": {"type": "str"},
        "user": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "db": {"type": "int", "default": 0},
    }
    service = {
        "name": {"type": "str", "required": True},
        "container": {"type": "str"},
        "containers": {"type": "list", "elements": "str"},
        "internal_url": {"type": "str"},
        "internal_check": {"type": "dict", "options": internal_check},
        "public_url": {"type": "str"},
        "public_expect_status": {"type": "list", "elements": "int", "default": [200]},
        "swarm_services": {"type": "list", "elements": "str"},
        "database": {
            "type": "dict",
            "options": database,
            "mutually_exclusive": [("container", "host")],
            "required_if": [("type", "postgresql", ("user",))],
        },
    }
    return {
        "argument_spec": {
            "services": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": service,
                "mutually_exclusive": [("container", "containers"), ("internal_url", "internal_check")],
                "required_one_of": [("container", "containers")],
            },
            "network": {"type": "str", "default": "borgstack_internal"},
            "public_resolve": {"type": "dict"},
            "ca_path": {"type": "path"},
            "validate_certs": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 300},
            "log_lines": {"type": "int", "default": 20},
            "swarm_stack": {"type": "str"},
        },
        "supports_check_mode": True,
    }


# --------------------------------------------------------------------------------------------------------------
# Probes: every bit of I/O, behind small methods
# --------------------------------------------------------------------------------------------------------------
class ProbeError(Exception):
    """A probe could not get an answer (refused, timed out, docker failed). The text becomes the check's reason."""


class HttpAnswer:
    """Status code and the beginning of the body of one HTTP response."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed IP address while SNI, certificate name and Host header use the URL's host name."""

    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to a fixed IP address with the URL's host name in the Host header."""

    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class Probe:
    """Reads the state of the host. Unit tests replace it with a fake that has the same methods."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self._docker: str | None = None

    # Docker ---------------------------------------------------------------------------------------------------
    def _docker_cli(self, *args: str) -> tuple[int, str, str]:
        if self._docker is None:
            self._docker = self.module.get_bin_path("docker", required=True)
        return self.module.run_command([self._docker, *args])

    def inspect(self, container: str) -> dict[str, Any] | None:
        """``docker inspect`` of one container, or None when no container has that name."""
        rc, out, err = self._docker_cli("container", "inspect", container)
        if rc != 0:
            if "no such" in err.lower():
                return None
            raise ProbeError(f"docker container inspect {container} failed: {err.strip()}")
        try:
            return json.loads(out)[0]
        except (ValueError, IndexError) as exc:
            raise ProbeError(f"docker container inspect {container}: unreadable output ({exc})") from exc

    def logs(self, container: str, lines: int) -> list[str]:
        """The last ``lines`` lines the container wrote, stdout and stderr merged in time order."""
        rc, out, err = self._docker_cli("logs", "--timestamps", "--tail", str(lines), container)
        if rc != 0:
            return [f"(docker logs failed: {err.strip()})"]
        return merge_timestamped_logs(out, err, lines)

    # Swarm (on a manager) -------------------------------------------------------------------------------------
    def swarm_services(self, stack: str) -> dict[str, str]:
        """{service name: REPLICAS cell} of every service of the stack ``stack``."""
        rc, out, err = self._docker_cli("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                                        "--format", "{{json .}}")
        if rc != 0:
            raise ProbeError(f"docker service ls failed (is this host a swarm manager?): {err.strip()}")
        try:
            return {str(row["Name"]): str(row.get("Replicas") or "") for row in parse_json_lines(out)}
        except (ValueError, KeyError) as exc:
            raise ProbeError(f"docker service ls: unreadable output ({exc})") from exc

    def swarm_tasks(self, service: str) -> list[dict[str, Any]]:
        """``docker service ps`` rows of one service, its task history included (newest first per slot)."""
        rc, out, err = self._docker_cli("service", "ps", "--no-trunc", "--format", "{{json .}}", service)
        if rc != 0:
            raise ProbeError(f"docker service ps {service} failed: {err.strip()}")
        try:
            return parse_json_lines(out)
        except ValueError as exc:
            raise ProbeError(f"docker service ps {service}: unreadable output ({exc})") from exc

    def swarm_logs(self, target: str, lines: int) -> list[str]:
        """The last ``lines`` lines of a swarm service or task (by ID), from whichever node ran it."""
        rc, out, err = self._docker_cli("service", "logs", "--timestamps", "--no-trunc", "--tail", str(lines),
                                        target)
        if rc != 0:
            return [f"(docker service logs failed: {err.strip()})"]
        return merge_timestamped_logs(out, err, lines)

    # The overlay (on a swarm manager) ------------------------------------------------------------------------
    def overlay_netns(self, network: str) -> str:
        """The network namespace (``/proc/<pid>/ns/net``) of a running container of this node attached to
        ``network``: the probes entered into it reach every task of the overlay, wherever it runs."""
        rc, out, err = self._docker_cli("ps", "--quiet", "--no-trunc", "--filter", f"network={network}",
                                        "--filter", "status=running")
        if rc != 0:
            raise ProbeError(f"docker ps failed: {err.strip()}")
        ids = out.split()
        if not ids:
            raise ProbeError(f"no running container of this node is attached to network {network}, so the overlay "
                             "cannot be reached from here (run a task of the stack on the first manager)")
        try:
            return container_netns(lambda argv: self._docker_cli(*argv[1:]), "docker", ids[0][:12])
        except NetnsError as exc:
            raise ProbeError(str(exc)) from exc

    @contextlib.contextmanager
    def in_netns(self, path: str) -> Any:
        """Run the body's probes (sockets, psycopg) in the network namespace ``path``, then come back
        (module_utils/_netns.py)."""
        try:
            with in_netns(path):
                yield
        except NetnsError as exc:
            raise ProbeError(str(exc)) from exc

    def resolve(self, name: str, *, timeout: float) -> list[str]:
        """IPv4 addresses of ``name`` from Docker's embedded DNS (called inside a container's namespace): on the
        overlay, a task's container name is an alias of it (every task of a replicated service answers)."""
        return dns_a_records(name, EMBEDDED_DNS, timeout=timeout)

    # Network --------------------------------------------------------------------------------------------------
    def http(self, url: str, *, address: str | None, timeout: float, ca_path: str | None,
             validate_certs: bool) -> HttpAnswer:
        """One GET of ``url`` without following redirects, connected to ``address`` when given."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProbeError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = address or parts.hostname
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = _PinnedHTTPSConnection(parts.hostname, port, target, timeout=timeout,
                                          context=tls_context(ca_path, validate_certs))
        else:
            conn = _PinnedHTTPConnection(parts.hostname, port, target, timeout=timeout)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        try:
            conn.request("GET", path, headers={"User-Agent": "borgstack-stack-health", "Accept": "*/*",
                                               "Connection": "close"})
            response = conn.getresponse()
            body = response.read(BODY_LIMIT)
            return HttpAnswer(response.status, body.decode("utf-8", "replace"))
        except ssl.SSLError as exc:
            raise ProbeError(f"TLS error: {getattr(exc, 'verify_message', None) or exc.reason or exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ProbeError(_describe_os_error(exc, target, port)) from exc
        finally:
            conn.close()

    def tcp(self, host: str, port: int, *, timeout: float) -> None:
        """Connect and close: something listens on ``host:port``."""
        try:
            with socket.create_connection((host, port), timeout):
                pass
        except OSError as exc:
            raise ProbeError(_describe_os_error(exc, host, port)) from exc

    def pg_login(self, *, host: str, port: int, user: str, password: str | None, dbname: str | None,
                 timeout: float) -> None:
        """Log in to PostgreSQL and run ``SELECT 1``."""
        if psycopg is None:
            raise ProbeError("psycopg (Debian: python3-psycopg) is not installed")
        kwargs: dict[str, Any] = {"host": host, "port": port, "user": user,
                                  "connect_timeout": max(1, int(timeout)), "autocommit": True}
        if password is not None:
            kwargs["password"] = password
        if dbname:
            kwargs["dbname"] = dbname
        try:
            with psycopg.connect(**kwargs) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise ProbeError(" ".join(str(exc).split())) from exc

    def redis_ping(self, *, host: str, port: int, user: str | None, password: str | None, db: int,
                   timeout: float) -> None:
        """``AUTH`` (when a password is given), ``SELECT`` (when db is not 0) and ``PING`` over raw RESP."""
        commands: list[list[str]] = []
        if password is not None:
            commands.append(["AUTH", user, password] if user else ["AUTH", password])
        if db:
            commands.append(["SELECT", str(db)])
        commands.append(["PING"])
        try:
            with socket.create_connection((host, port), timeout) as sock:
                reader = sock.makefile("rb")
                for command in commands:
                    sock.sendall(resp_command(command))
                    reply = read_resp_line(reader)
                    expected = "+PONG" if command[0] == "PING" else "+OK"
                    if reply != expected:
                        raise ProbeError(f"{command[0]} answered {reply[:200]!r}")
        except OSError as exc:
            raise ProbeError(_describe_os_error(exc, host, port)) from exc


def dns_query(name: str, query_id: int) -> bytes:
    """A DNS query (recursion desired) for the A records of ``name``."""
    labels = b"".join(bytes([len(part)]) + part.encode("ascii") for part in name.strip(".").split(".") if part)
    return struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", 1, 1)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        if offset >= len(data):
            raise ValueError("truncated name")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def dns_answer_addresses(data: bytes, query_id: int) -> list[str]:
    """The IPv4 addresses of a DNS answer; an empty list for NXDOMAIN or no A record; ValueError when unreadable."""
    if len(data) < 12:
        raise ValueError("short DNS answer")
    answer_id, flags, questions, answers, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    if answer_id != query_id:
        raise ValueError("DNS answer to another query")
    rcode = flags & 0x000F
    if rcode == 3:
        return []
    if rcode != 0:
        raise ValueError(f"DNS error code {rcode}")
    offset = 12
    for _question in range(questions):
        offset = _skip_name(data, offset) + 4
    addresses = []
    for _answer in range(answers):
        offset = _skip_name(data, offset)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(data[offset:offset + 4]))
        offset += length
    return sorted(addresses, key=socket.inet_aton)


def dns_a_records(name: str, server: str, *, timeout: float) -> list[str]:
    """Ask ``server`` (UDP port 53) for the A records of ``name``."""
    query_id = random.randint(0, 0xFFFF)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(dns_query(name, query_id), (server, 53))
            data, _peer = sock.recvfrom(4096)
        return dns_answer_addresses(data, query_id)
    except OSError as exc:
        raise ProbeError(f"DNS lookup of {name}: {_describe_os_error(exc, server, 53)}") from exc
    except (ValueError, struct.error) as exc:
        raise ProbeError(f"DNS lookup of {name}: unreadable answer ({exc})") from exc


def tls_context(ca_path: str | None, validate_certs: bool) -> ssl.SSLContext:
    """A client context: verified against ``ca_path`` (or the system store), or not verified at all."""
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_path)


def resp_command(words: list[str]) -> bytes:
    """A RESP array of bulk strings, the way clients send commands."""
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def read_resp_line(reader: Any) -> str:
    """The first line of a reply (``+OK``, ``+PONG``, ``-ERR ...``), without CRLF."""
    line = reader.readline(4096)
    if not line:
        raise ProbeError("connection closed without an answer")
    return line.rstrip(b"\r\n").decode("utf-8", "replace")


def _describe_os_error(exc: BaseException, host: str, port: int) -> str:
    if isinstance(exc, socket.timeout):
        return f"no answer from {host}:{port} (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {host}:{port} refused"
    text = str(exc) or type(exc).__name__
    return f"{host}:{port}: {text}"


def merge_timestamped_logs(stdout: str, stderr: str, lines: int) -> list[str]:
    """Merge ``docker logs --timestamps`` output of both streams by time, drop the stamps, keep the last lines.

    Docker prints a fixed-width RFC 3339 stamp with nanoseconds and a space before each line, so the stamps
    sort as strings.
    """
    def stamped(text: str) -> list[tuple[str, str]]:
        rows = []
        for line in text.splitlines():
            stamp, sep, rest = line.partition(" ")
            rows.append((stamp, rest) if sep and stamp[:1].isdigit() else ("", line))
        return rows

    merged = list(heapq.merge(stamped(stdout), stamped(stderr), key=lambda row: row[0]))
    return [row[1] for row in merged][-lines:] if lines > 0 else []


# --------------------------------------------------------------------------------------------------------------
# The checks and the bounded wait
# --------------------------------------------------------------------------------------------------------------
class ServiceState:
    """What is known about one service after the latest round of checks."""

    def __init__(self, spec: dict[str, Any], swarm_stack: str | None = None) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.containers: list[str] = list(spec.get("containers") or [spec["container"]])
        self.swarm_services: list[str] = (list(spec.get("swarm_services") or [f"{swarm_stack}_{self.name}"])
                                          if swarm_stack else [])
        self.swarm: list[dict[str, Any]] = []
        self.checks: dict[str, str] = {name: SKIPPED
                                       for name in (SWARM_CHECK_NAMES if swarm_stack else CHECK_NAMES)}
        self.docker_health: dict[str, str] = {}
        self.url: str | None = spec.get("public_url") or spec.get("internal_url")
        self.elapsed: float = 0.0
        self.attempts = 0

    @property
    def ok(self) -> bool:
        return all(not value.startswith("failing") for value in self.checks.values())

    def failing_checks(self) -> dict[str, str]:
        return {name: value for name, value in self.checks.items() if value.startswith("failing")}


class StackHealth:
    """Checks every service; retries failing services with exponential backoff until all pass or time runs out."""

    def __init__(self, services: list[dict[str, Any]], probe: Any, *, network: str = "borgstack_internal",
                 public_resolve: dict[str, str] | None = None, ca_path: str | None = None,
                 validate_certs: bool = True, timeout: int = 300, log_lines: int = 20,
                 swarm_stack: str | None = None, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.swarm_stack = swarm_stack or None
        self.services = [ServiceState(spec, self.swarm_stack) for spec in services]
        self.probe = probe
        self.network = network
        self.public_resolve = dict(public_resolve or {})
        self.ca_path = ca_path
        self.validate_certs = validate_certs
        self.timeout = max(0, timeout)
        self.log_lines = max(0, log_lines)
        self.clock = clock
        self.sleep = sleep
        self.secrets = sorted({str((spec.get("database") or {}).get("password") or "") for spec in services}
                              - {""}, key=len, reverse=True)
        self.deadline = 0.0
        self.sleeps: list[float] = []
        self._netns: str | None = None

    # The wait -------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Check until every service passes or the deadline hits. Returns the result dictionary."""
        start = self.clock()
        self.deadline = start + self.timeout
        pending = list(self.services)
        delay = BACKOFF_FIRST
        while True:
            for service in pending:
                self.check_service(service)
                service.attempts += 1
                service.elapsed = round(self.clock() - start, 1)
            pending = [service for service in pending if not service.ok]
            remaining = self.deadline - self.clock()
            if not pending or remaining <= 0:
                break
            pause = min(delay, remaining)
            self.sleeps.append(pause)
            self.sleep(pause)
            delay = min(delay * 2, BACKOFF_CAP)
        return self.result()

    def _attempt_timeout(self) -> float:
        return max(1.0, min(ATTEMPT_TIMEOUT, self.deadline - self.clock()))

    # One service ----------------------------------------------------------------------------------------------
    def check_service(self, service: ServiceState) -> None:
        if self.swarm_stack:
            self.check_swarm_service(service)
            return
        spec = service.spec
        inspected: dict[str, dict[str, Any] | None] = {}
        container_problems: list[str] = []
        for container in service.containers:
            try:
                info = self.probe.inspect(container)
            except ProbeError as exc:
                info = None
                container_problems.append(str(exc))
            else:
                if info is None:
                    container_problems.append(f"container {container} does not exist")
                else:
                    problem = _not_running(container, info)
                    if problem:
                        container_problems.append(problem)
            inspected[container] = info
        service.checks["container"] = _verdict(container_problems)

        service.docker_health = {}
        health_problems: list[str] = []
        for container, info in inspected.items():
            if info is None or _not_running(container, info):
                continue
            status, detail = _health_of(info)
            service.docker_health[container] = status
            if status not in ("healthy", "none"):
                health_problems.append(f"{container} is {status}{detail}")
        service.checks["health"] = _verdict(health_problems) if service.docker_health else SKIPPED

        service.checks["internal"] = self._check_internal(service, inspected)
        service.checks["public"] = self._check_public(spec)
        service.checks["database"] = self._check_database(service, inspected)

    def check_swarm_service(self, service: ServiceState) -> None:
        """On a swarm manager: every swarm service of the service runs all its wanted tasks; its public URL answers."""
        problems: list[str] = []
        service.swarm = []
        try:
            listed = self.probe.swarm_services(self.swarm_stack)
            for name in service.swarm_services:
                if name not in listed:
                    problems.append(f"swarm service {name} does not exist in stack {self.swarm_stack}")
                    continue
                summary = task_summary(name, listed[name], self.probe.swarm_tasks(name))
                service.swarm.append(summary)
                problem = summary_problem(summary)
                if problem:
                    problems.append(problem)
        except (ProbeError, ValueError) as exc:
            problems.append(str(exc))
        service.checks["replicas"] = _verdict(self._clean(problem) for problem in problems)
        service.checks["internal"], service.checks["database"] = self._check_overlay(service)
        service.checks["public"] = self._check_public(service.spec)

    def _check_overlay(self, service: ServiceState) -> tuple[str, str]:
        """The internal endpoint and the database login of a swarm service, as on one host, from the network
        namespace of a container of this node on the overlay ``network`` (its tasks' container names are aliases
        there, resolved by Docker's DNS)."""
        spec = service.spec
        wanted = (bool(spec.get("internal_check") or spec.get("internal_url")), bool(spec.get("database")))
        if not any(wanted):
            return SKIPPED, SKIPPED
        try:
            if self._netns is None:
                self._netns = self.probe.overlay_netns(self.network)
            with self.probe.in_netns(self._netns):
                return self._check_internal(service, {}), self._check_database(service, {})
        except ProbeError as exc:
            self._netns = None  # that container may be gone: look for one again next round
            reason = f"failing: {self._clean(str(exc))}"
            return tuple(reason if want else SKIPPED for want in wanted)  # type: ignore[return-value]

    def _address_of(self, container: str, info: dict[str, Any] | None) -> str:
        """The container's IP on ``network``; raises ProbeError with the reason when it has none. On a swarm (inside
        the overlay's namespace): the first address Docker's DNS gives for the container name, a task's alias."""
        if self.swarm_stack:
            addresses = self.probe.resolve(container, timeout=self._attempt_timeout())
            if not addresses:
                raise ProbeError(f"no task answers to {container} on network {self.network} (is it running?)")
            return addresses[0]
        if info is None:
            info = self.probe.inspect(container)
            if info is None:
                raise ProbeError(f"container {container} does not exist")
        problem = _not_running(container, info)
        if problem:
            raise ProbeError(f"no address: {problem}")
        networks = (info.get("NetworkSettings") or {}).get("Networks") or {}
        address = (networks.get(self.network) or {}).get("IPAddress")
        if not address:
            attached = ", ".join(sorted(networks)) or "none"
            raise ProbeError(f"container {container} has no address on network {self.network} "
                             f"(attached to: {attached})")
        return address

    def _check_internal(self, service: ServiceState, inspected: dict[str, dict[str, Any] | None]) -> str:
        spec = service.spec
        check = spec.get("internal_check")
        try:
            if spec.get("internal_url"):
                return self._expect_http(spec["internal_url"], None, [200], None)
            if not check:
                return SKIPPED
            container = service.containers[0]
            address = self._address_of(container, inspected.get(container))
            if check["type"] == "tcp":
                self.probe.tcp(address, check["port"], timeout=self._attempt_timeout())
                return OK
            path = check.get("path") or "/"
            url = f"http://{address}:{check['port']}{path if path.startswith('/') else '/' + path}"
            if not spec.get("public_url"):
                service.url = url
            return self._expect_http(url, None, check.get("expect_status") or [200], check.get("expect_body"))
        except ProbeError as exc:
            return f"failing: {self._clean(str(exc))}"

    def _check_public(self, spec: dict[str, Any]) -> str:
        url = spec.get("public_url")
        if not url:
            return SKIPPED
        host = urlsplit(url).hostname or ""
        try:
            return self._expect_http(url, self.public_resolve.get(host), spec.get("public_expect_status") or [200],
                                     None)
        except ProbeError as exc:
            return f"failing: {self._clean(str(exc))}"

    def _expect_http(self, url: str, address: str | None, statuses: list[int], body_re: str | None) -> str:
        answer = self.probe.http(url, address=address, timeout=self._attempt_timeout(), ca_path=self.ca_path,
                                 validate_certs=self.validate_certs)
        via = f" (via {address})" if address else ""
        if answer.status not in statuses:
            expected = ", ".join(str(code) for code in statuses)
            return f"failing: GET {url}{via} answered {answer.status}, expected {expected}"
        if body_re and not re.search(body_re, answer.body):
            return f"failing: GET {url}{via} answered {answer.status} but the body does not match {body_re!r}"
        return OK

    def _check_database(self, service: ServiceState, inspected: dict[str, dict[str, Any] | None]) -> str:
        database = service.spec.get("database")
        if not database:
            return SKIPPED
        kind = database["type"]
        port = database.get("port") or DEFAULT_PORTS[kind]
        where = ""
        try:
            if database.get("host"):
                host = database["host"]
            else:
                container = database.get("container") or service.containers[0]
                host = self._address_of(container, inspected.get(container))
            where = f"{kind} at {host}:{port}"
            if kind == "postgresql":
                self.probe.pg_login(host=host, port=port, user=database["user"], password=database.get("password"),
                                    dbname=database.get("dbname"), timeout=self._attempt_timeout())
            else:
                self.probe.redis_ping(host=host, port=port, user=database.get("user"),
                                      password=database.get("password"), db=database.get("db") or 0,
                                      timeout=self._attempt_timeout())
            return OK
        except ProbeError as exc:
            return f"failing: {where}: {self._clean(str(exc))}" if where else f"failing: {self._clean(str(exc))}"

    # Results --------------------------------------------------------------------------------------------------
    def _clean(self, text: str) -> str:
        """A probe's text, shortened, with every password replaced by a mask."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        if len(text) > REASON_LIMIT:
            text = text[:REASON_LIMIT] + "..."
        return text

    def result(self) -> dict[str, Any]:
        report = []
        failing = []
        logs: dict[str, dict[str, list[str]]] = {}
        for service in self.services:
            entry: dict[str, Any] = {
                "name": service.name,
                "status": OK if service.ok else "failing",
                "checks": dict(service.checks),
                "url": service.url,
                "elapsed": service.elapsed,
                "attempts": service.attempts,
                "containers": list(service.containers),
                "docker_health": dict(service.docker_health),
            }
            if self.swarm_stack:
                entry["replicas"] = [dict(summary) for summary in service.swarm]
            if not service.ok:
                failing.append(service.name)
                if self.log_lines:
                    logs[service.name] = self._failing_logs(service)
                    entry["logs"] = logs[service.name]
            report.append(entry)
        result: dict[str, Any] = {"report": report, "failing": failing, "table": render_table(report)}
        if failing:
            result["msg"] = self.failure_message(failing, logs)
        return result

    def _failing_logs(self, service: ServiceState) -> dict[str, list[str]]:
        """The last log lines of a failing service: per container, or on a swarm per task that keeps failing (else
        per swarm service that does not run all its tasks)."""
        if not self.swarm_stack:
            return {container: [self._clean(line) for line in self.probe.logs(container, self.log_lines)]
                    for container in service.containers}
        logs: dict[str, list[str]] = {}
        for summary in service.swarm:
            if not summary_problem(summary):
                continue
            targets = [(task["task"], task["id"]) for task in summary["failing_tasks"] if task["id"]]
            for label, target in targets or [(summary["service"], summary["service"])]:
                logs[label] = [self._clean(line) for line in self.probe.swarm_logs(target, self.log_lines)]
        return logs

    def failure_message(self, failing: list[str], logs: dict[str, dict[str, list[str]]]) -> str:
        by_name = {service.name: service for service in self.services}
        waited = max((service.elapsed for service in self.services), default=0.0)
        parts = [f"{len(failing)} of {len(self.services)} services still failing after {waited:.0f}s "
                 f"(timeout {self.timeout}s): {', '.join(failing)}."]
        for name in failing:
            service = by_name[name]
            checks = "; ".join(f"{check}: {value}" for check, value in service.failing_checks().items())
            parts.append(f"[{name}] {checks}")
            for container, lines in logs.get(name, {}).items():
                parts.append(f"[{name}] last {len(lines)} log lines of {container}:")
                parts.extend(f"    {line}" for line in lines)
                if not lines:
                    parts.append("    (no output)")
        return "\n".join(parts)


def _not_running(container: str, info: dict[str, Any]) -> str:
    """Why a container does not count as running, or an empty string."""
    state = info.get("State") or {}
    status = state.get("Status") or ("running" if state.get("Running") else "unknown")
    if status == "running" and not state.get("Restarting"):
        return ""
    detail = f"exit code {state.get('ExitCode')}" if status in ("exited", "restarting") else ""
    if state.get("Error"):
        detail = f"{detail}, {state['Error']}" if detail else str(state["Error"])
    return f"container {container} is {status}" + (f" ({detail})" if detail else "")


def _health_of(info: dict[str, Any]) -> tuple[str, str]:
    """Docker health status (``none`` without a healthcheck) and, when not healthy, the last probe's output."""
    health = (info.get("State") or {}).get("Health")
    if not health:
        return "none", ""
    status = health.get("Status") or "none"
    detail = ""
    if status not in ("healthy", "none"):
        log = health.get("Log") or []
        output = " ".join(str((log[-1] if log else {}).get("Output") or "").split())
        if output:
            detail = f" (last probe: {output[:200]})"
    return status, detail


def _verdict(problems: Iterable[str]) -> str:
    problems = list(problems)
    return f"failing: {'; '.join(problems)}" if problems else OK


def render_table(report: list[dict[str, Any]]) -> list[str]:
    """``service | url | status`` lines, columns padded to the widest cell; on a swarm (entries with ``replicas``)
    a fourth column, ``tasks @nodes``, gives each swarm service's running/desired tasks and their nodes."""
    swarm = any("replicas" in entry for entry in report)
    rows = [("service", "url", "status") + (("tasks @nodes",) if swarm else ())] + [
        (entry["name"], entry.get("url") or "-",
         entry["status"] if entry["status"] == OK else f"failing ({', '.join(_failing_names(entry))})")
        + ((summary_cell(entry.get("replicas") or []) or "-",) if swarm else ())
        for entry in report
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]) - 1)]
    lines = [" | ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]) for row in rows]
    rule = "-+-".join(["-" * width for width in widths] + ["-" * max(6, len(rows[0][-1]))])
    lines.insert(1, rule)
    return lines


def _failing_names(entry: dict[str, Any]) -> list[str]:
    return [name for name, value in entry["checks"].items() if value.startswith("failing")]
