# SPDX-License-Identifier: GPL-3.0-or-later
"""Webhook requests through Caddy, from the public side, for the benchmarks that count requests lost while
something changes behind the proxy: scripts/benchmark-update.sh (an n8n update) and scripts/benchmark-update.sh --node-loss
(a cluster node stopped). Prints figures; asserts nothing about time.

    benchmark_webhooks.py update WORK LABEL IP HOSTNAME PATH WORKERS LIMIT -- COMMAND...
        runs COMMAND (the playbook) while WORKERS clients POST https://HOSTNAME/PATH at IP:443 (at most LIMIT
        requests), prints the one line of figures of scripts/benchmark-update.sh.
    benchmark_webhooks.py webhook-create IP HOSTNAME CAFILE EMAIL PASSWORD_FILE
        logs in to n8n through Caddy, creates and activates a webhook workflow answering at once, prints
        "<workflow id> webhook/<path>" (a cluster runs no shipped workflows, so there is no webhook to call).
    benchmark_webhooks.py webhook-delete IP HOSTNAME CAFILE EMAIL PASSWORD_FILE ID
    benchmark_webhooks.py node-loss WORK IP HOSTNAME PATH RATE MANAGER NODE
        stops the lab host NODE (docker stop) while RATE requests a second are sent (each on its own, so held ones
        do not slow the rest), counts the requests lost in flight at the loss and
        after it, the seconds until every swarm service is back at its replica count, then starts NODE again.
"""
from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass


class _Connection(http.client.HTTPSConnection):
    """HTTPS to the public address with the site's name (SNI and certificate check): curl --resolve."""

    address = ""

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(socket.create_connection((self.address, 443), self.timeout),
                                              server_hostname=self.host)


def connection(ip: str, hostname: str, cafile: str, timeout: float = 150) -> http.client.HTTPSConnection:
    conn = _Connection(hostname, 443, context=ssl.create_default_context(cafile=cafile), timeout=timeout)
    conn.address = ip
    return conn


@dataclass(frozen=True)
class Result:
    outcome: int | str  # the HTTP status, or the name of the error
    sent: float  # time.monotonic() when the request started
    answered: float  # ... and when it ended

    @property
    def ok(self) -> bool:
        return isinstance(self.outcome, int) and 200 <= self.outcome < 300

    @property
    def seconds(self) -> float:
        return self.answered - self.sent


class Load:
    """WORKERS clients POSTing the webhook one request after the other (a new connection each, as a webhook
    sender does), until stopped or LIMIT requests were sent."""

    def __init__(self, ip: str, hostname: str, path: str, cafile: str, workers: int, limit: int = 0) -> None:
        self.ip, self.hostname, self.path, self.cafile, self.limit = ip, hostname, path, cafile, limit
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.results: list[Result] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _worker in range(workers)]

    def _client(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                if self.limit and len(self.results) >= self.limit:
                    return
            self._send()

    def _send(self) -> None:
        """One webhook request; its outcome (HTTP status or error name) and times recorded."""
        sent = time.monotonic()
        try:
            conn = connection(self.ip, self.hostname, self.cafile)
            conn.request("POST", f"/{self.path}", body=b"{}",
                         headers={"Content-Type": "application/json", "Connection": "close"})
            answer = conn.getresponse()
            answer.read()
            outcome: int | str = answer.status
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
        with self.lock:
            self.results.append(Result(outcome, sent, time.monotonic()))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join()


class SteadyLoad(Load):
    """RATE requests a second whatever the earlier ones do (each in its own thread): requests held by Caddy do not
    hold back the next ones, so requests keep being sent after a loss as before it."""

    def __init__(self, ip: str, hostname: str, path: str, cafile: str, rate: int) -> None:
        super().__init__(ip, hostname, path, cafile, 0)
        self.rate = rate
        self.threads = [threading.Thread(target=self._dispatch, daemon=True)]
        self.sent: list[threading.Thread] = []

    def _dispatch(self) -> None:
        while not self.stopped.is_set():
            thread = threading.Thread(target=self._send, daemon=True)
            thread.start()
            self.sent.append(thread)
            time.sleep(1 / self.rate)

    def stop(self) -> None:
        super().stop()
        for thread in self.sent:  # every request sent gets its answer (or its error) counted
            thread.join()


def summary(results: list[Result]) -> str:
    """sent=N failed=F {"502": 3} - the failures by kind."""
    kinds: dict[str, int] = {}
    for result in results:
        if not result.ok:
            kinds[str(result.outcome)] = kinds.get(str(result.outcome), 0) + 1
    failed = sum(kinds.values())
    return f"sent={len(results)} failed={failed}{' ' + json.dumps(kinds) if kinds else ''}"


def update(work: str, label: str, ip: str, hostname: str, path: str, workers: str, limit: str,
           command: list[str]) -> int:
    log_path = f"{work}/{re.sub('[^A-Za-z0-9.-]+', '_', label)}.log"
    load = Load(ip, hostname, path, f"{work}/root.crt", int(workers), int(limit))
    load.start()
    time.sleep(3)  # requests already flowing before the update starts
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    took = time.monotonic() - started
    time.sleep(5)  # and after it ended
    load.stop()
    results = load.results
    slowest = max((r.seconds for r in results), default=0.0)
    # The recap: one line per host (one on a single server); the changes of every host summed.
    recap = re.findall(r"^\S+\s*: ok=\d+\s+changed=(\d+)", open(log_path, encoding="utf-8").read(), re.M)
    changed = f"changed={sum(int(c) for c in recap)}" if recap else "?"
    print(f"{label:<28} playbook rc={rc} in {took:6.1f} s ({changed})  requests {summary(results)}  "
          f"slowest answer={slowest:.1f} s", flush=True)
    if rc != 0:
        print(open(log_path, encoding="utf-8").read()[-3000:], file=sys.stderr)
    return rc


# --- n8n: a webhook of our own on a cluster ----------------------------------------------------------------------
class N8n:
    """n8n's REST API through Caddy, logged in as the owner (cookie kept between calls)."""

    def __init__(self, ip: str, hostname: str, cafile: str, email: str, password_file: str) -> None:
        self.ip, self.hostname, self.cafile, self.cookie = ip, hostname, cafile, ""
        with open(password_file, encoding="utf-8") as handle:
            password = handle.read().strip()
        status, body = self.call("POST", "/rest/login", {"emailOrLdapLoginId": email, "password": password})
        if status != 200:
            raise SystemExit(f"benchmark: n8n refused the owner's login through Caddy ({status}): {body}")

    def call(self, method: str, path: str, data: dict | None = None) -> tuple[int, dict]:
        conn = connection(self.ip, self.hostname, self.cafile, timeout=60)
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        conn.request(method, path, body=json.dumps(data).encode() if data is not None else None, headers=headers)
        answer = conn.getresponse()
        raw = answer.read()
        for header, value in answer.getheaders():
            if header.lower() == "set-cookie" and value.startswith("n8n-auth="):
                self.cookie = value.split(";", 1)[0]
        conn.close()
        try:
            return answer.status, json.loads(raw or b"{}")
        except ValueError:
            return answer.status, {"raw": raw[:200].decode(errors="replace")}


def webhook_create(n8n: N8n) -> None:
    path = f"borgstack-benchmark-{secrets.token_hex(4)}"
    status, body = n8n.call("POST", "/rest/workflows", {
        "name": f"BorgStack benchmark {path}", "active": False, "connections": {}, "settings": {},
        "nodes": [{"id": str(uuid.uuid4()), "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
                   "position": [0, 0], "webhookId": str(uuid.uuid4()),
                   "parameters": {"httpMethod": "POST", "path": path, "responseMode": "onReceived"}}]})
    if status != 200:
        raise SystemExit(f"benchmark: n8n did not create the benchmark workflow ({status}): {body}")
    workflow = body["data"]["id"]
    status, body = n8n.call("PATCH", f"/rest/workflows/{workflow}", {"active": True})
    if status != 200 or not body.get("data", {}).get("active"):
        raise SystemExit(f"benchmark: n8n did not activate the benchmark workflow ({status}): {body}")
    # Registered once it answers (the main writes the webhook to the database as it activates it).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = connection(n8n.ip, n8n.hostname, n8n.cafile, timeout=30)
        conn.request("POST", f"/webhook/{path}", body=b"{}", headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
        conn.close()
        if status == 200:
            print(f"{workflow} webhook/{path}")
            return
        time.sleep(2)
    raise SystemExit(f"benchmark: the benchmark webhook webhook/{path} did not answer 200 (last {status})")


def webhook_delete(n8n: N8n, workflow: str) -> None:
    """Deactivate, archive (n8n 1.9x deletes only archived workflows) and delete; a failure is only reported."""
    for method, path, data in (("PATCH", f"/rest/workflows/{workflow}", {"active": False}),
                               ("POST", f"/rest/workflows/{workflow}/archive", {}),
                               ("DELETE", f"/rest/workflows/{workflow}", None)):
        status, body = n8n.call(method, path, data)
        if status >= 300:
            print(f"benchmark: {method} {path} answered {status} {body} - delete workflow {workflow} by hand",
                  file=sys.stderr)


# --- node loss on a swarm ----------------------------------------------------------------------------------------
def _docker(node: str, *argv: str, timeout: int = 120) -> str:
    return subprocess.run(["docker", "exec", node, "docker", *argv], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def running_tasks(manager: str) -> dict[str, list[str]]:
    """Service -> the nodes of its tasks that run (and are healthy: a task with a health check stays
    "Starting" until it passes)."""
    ids = _docker(manager, "service", "ls", "-q").split()
    tasks: dict[str, list[str]] = {}
    out = _docker(manager, "service", "ps", *ids, "--filter", "desired-state=running", "--format",
                  "{{.Name}}\t{{.Node}}\t{{.CurrentState}}")
    for line in out.splitlines():
        name, node, state = line.split("\t")
        service = name.rsplit(".", 1)[0]
        tasks.setdefault(service, [])
        if state.startswith("Running"):
            tasks[service].append(node)
    return tasks


def desired_counts(manager: str) -> dict[str, int]:
    out = _docker(manager, "service", "ls", "--format", "{{.Name}}\t{{.Replicas}}")
    counts = {}
    for line in out.splitlines():
        name, replicas = line.split("\t")
        counts[name] = int(replicas.split()[0].split("/")[1])
    return counts


def nodes_ready(manager: str) -> dict[str, str]:
    out = _docker(manager, "node", "ls", "--format", "{{.Hostname}}\t{{.Status}}")
    return dict(line.split("\t") for line in out.splitlines())


def node_loss(work: str, ip: str, hostname: str, path: str, rate: str, manager: str, node: str) -> int:
    def at_count(without: str = "") -> bool:
        running = running_tasks(manager)
        return all(len([n for n in running.get(s, []) if n != without]) >= count for s, count in wanted.items())

    wanted = desired_counts(manager)
    deadline = time.monotonic() + 300
    while not at_count():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: the services are not all at their replica count: {running_tasks(manager)}")
        time.sleep(3)
    before = running_tasks(manager)
    on_node = sorted(f"{service} ({nodes.count(node)})" for service, nodes in before.items() if node in nodes)
    print(f"on {node} before the loss: {', '.join(on_node) or 'no task'}", flush=True)
    if not on_node:  # a loss that moves nothing would measure nothing (the swarm does not rebalance by itself)
        print(f"benchmark: no task runs on {node}; move one there first (e.g. docker service update --force "
              f"borgstack_n8n on {manager}) and run again", file=sys.stderr)
        return 1
    load = SteadyLoad(ip, hostname, path, f"{work}/root.crt", int(rate))
    load.start()
    time.sleep(5)
    stop_began = time.monotonic()
    subprocess.run(["docker", "stop", "--time", "30", node], check=True, capture_output=True, timeout=120)
    node_down = time.monotonic()
    back = None
    deadline = node_down + 600
    while time.monotonic() < deadline:
        try:
            if at_count(without=node):
                back = time.monotonic()
                break
        except (subprocess.SubprocessError, ValueError):
            pass  # a manager busy electing a leader answers nothing for a moment
        time.sleep(2)
    time.sleep(10)  # requests after every service is back
    load.stop()
    after = running_tasks(manager)
    started = time.monotonic()
    subprocess.run(["docker", "start", node], check=True, capture_output=True, timeout=120)
    rejoined = None
    while time.monotonic() < started + 300:
        try:
            ready = nodes_ready(manager)
        except (subprocess.SubprocessError, ValueError):
            ready = {}
        if len(ready) == len(nodes_ready_before) and all(state == "Ready" for state in ready.values()):
            rejoined = time.monotonic() - started
            break
        time.sleep(3)

    results = load.results
    earlier = [r for r in results if r.answered < stop_began]
    in_flight = [r for r in results if r.answered >= stop_began and r.sent < node_down]
    later = [r for r in results if r.sent >= node_down]
    slowest = max((r.seconds for r in results), default=0.0)
    print(f"docker stop {node}: {node_down - stop_began:.1f} s (the lab host shuts down: SIGRTMIN+3 to its systemd)")
    print(f"requests through Caddy  {summary(results)}  slowest answer={slowest:.1f} s")
    print(f"  before the loss         {summary(earlier)}")
    print(f"  in flight at the loss   {summary(in_flight)}  (sent before {node} was down, answered after its stop "
          f"began)")
    print(f"  after the loss          {summary(later)}  (sent once {node} was down; target failed=0)")
    if back is None:
        print(f"services NOT back at their replica count within 600 s: {json.dumps(after)}")
    else:
        print(f"every service back at its replica count {back - stop_began:.1f} s after the stop began "
              f"({back - node_down:.1f} s after {node} was down)")
    print(f"{node} back Ready {rejoined:.1f} s after docker start" if rejoined is not None
          else f"{node} NOT back Ready within 300 s of docker start")
    moved = sorted(f"{s}: {', '.join(sorted(n))}" for s, n in after.items() if s in {x.split()[0] for x in on_node})
    print(f"where they run now: {'; '.join(moved) or '-'}")
    return 0 if back is not None and rejoined is not None else 1


nodes_ready_before: dict[str, str] = {}


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "update":
        cut = args.index("--")
        return update(*args[:cut], command=args[cut + 1:])
    if mode in ("webhook-create", "webhook-delete"):
        n8n = N8n(*args[:5])
        if mode == "webhook-create":
            webhook_create(n8n)
        else:
            webhook_delete(n8n, args[5])
        return 0
    if mode == "node-loss":
        nodes_ready_before.update(nodes_ready(args[5]))
        return node_loss(*args)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
