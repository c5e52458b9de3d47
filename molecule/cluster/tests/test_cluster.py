# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the three-host lab cluster against real state: three managers Ready, node labels from the inventory, an
overlay network that carries traffic between containers on two different nodes, a new leader when the leader is
lost (and the old one rejoins), and an outside scan of every node that finds none of the swarm's ports.

What could not run here, and why: this kernel has no ESP, so the overlay is unencrypted in the lab
(swarm_network_encrypted: false in molecule.yml; production keeps the role's default, true - checked below from the
role's defaults). The outside scan is a TCP scan (lab/lab.sh probe): 7946/udp and 4789/udp are not probed from
outside (UDP gives no answer either way); the UFW rules that admit only the peers to them are checked instead.
The services that run for real in the lab are placed on the swarm (PostgreSQL, Redis and SeaweedFS on the data
node, Caddy on the edge node, n8n and Directus - two replicas - wherever the scheduler puts them); the others
(MongoDB, Chatwoot, Evolution API, Lowcoder, FileFlows, Duplicati, monitoring) are off here - their stack files are
rendered and checked by `docker stack config` in their role tests. Caddy's certificates come from its internal CA,
whose root the caddy role copies from the edge node to every host: the HTTPS probes below check the chain against
it (test_cluster_secrets.py covers the Docker secrets, the Caddyfile as a Docker config and the edge's certificates).

The tests run once for the scenario (no testinfra ``host`` fixture): each speaks to the nodes through docker exec.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sys

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbook_runner import inventory, playbook_env, run_site  # noqa: E402  pylint: disable=wrong-import-position,import-error

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
LAB = PROJECT / "lab" / "lab.sh"
# The scenario's nodes in inventory order - the data node, the edge node, then app nodes - as molecule.yml has them.
# A private copy of the scenario on other lab hosts (other names, addresses, a fourth node) says which in
# BORGSTACK_CLUSTER_NODES="name=address,name=address,...".
NODES = dict(item.split("=", 1) for item in os.environ.get(
    "BORGSTACK_CLUSTER_NODES",
    "borgstack-swarm-1=198.51.100.47,borgstack-swarm-2=198.51.100.48,borgstack-swarm-3=198.51.100.49").split(","))
# A two-node copy (data node, edge node) has no app-only node: the edge node stands in for it.
DATA, EDGE, APP = (list(NODES) + list(NODES)[-1:])[:3]
NETWORK = "borgstack_cluster"
IMAGE = "borgstack-lab/python:3.11"
# Inventory of molecule.yml: which node carries data, which is the public edge.
LABELS = {
    DATA: {"borgstack.data": "true", "borgstack.edge": "false", "borgstack.data.postgresql": "true",
           "borgstack.data.redis": "true", "borgstack.data.mongodb": "true", "borgstack.data.seaweedfs": "true"},
    # borgstack.edge.ready: set by the caddy role once the node has the edge's certificates (Caddy runs only there).
    EDGE: {"borgstack.data": "false", "borgstack.edge": "true", "borgstack.edge.ready": "true"},
    **{name: {"borgstack.data": "false", "borgstack.edge": "false"} for name in list(NODES)[2:]},
}


def sh(node: str, *argv: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, timeout=timeout,
                          check=check)


def _build_on_every_node(tag: str, dockerfile: str) -> None:
    """An image derived from a lab image (``dockerfile`` on stdin, no context), built on every node's engine."""
    for node in NODES:
        subprocess.run(["docker", "exec", "-i", node, "docker", "build", "--quiet", "--tag", tag, "-"],
                       input=dockerfile, text=True, check=True, capture_output=True, timeout=300)


def nodes_seen_from(node: str) -> list[dict]:
    out = sh(node, "docker", "node", "ls", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for(what: str, probe, timeout: float, every: float = 1.0, also: tuple = ()):
    """Poll ``probe`` until it returns something truthy; fail naming what did not happen. A subprocess error, a
    ValueError or one of ``also`` (exception types) raised by the probe counts as "not yet"."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (subprocess.SubprocessError, ValueError, *also) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last: {last!r})")


def test_three_managers_ready_one_leader():
    nodes = nodes_seen_from(DATA)
    assert sorted(n["Hostname"] for n in nodes) == sorted(NODES), nodes
    assert all(n["Status"] == "Ready" and n["Availability"] == "Active" for n in nodes), nodes
    # Three managers (the first three hosts); a fourth host and more are workers.
    assert sorted(n["ManagerStatus"] for n in nodes if n["ManagerStatus"]) == ["Leader", "Reachable", "Reachable"], nodes


def test_node_labels_come_from_the_inventory():
    for name, labels in LABELS.items():
        spec = json.loads(sh(DATA, "docker", "node", "inspect", name, "--format",
                             "{{json .Spec.Labels}}").stdout)
        assert spec == labels, name
    # Each node advertises the address the inventory gave it.
    for name, address in NODES.items():
        assert sh(name, "docker", "info", "--format", "{{.Swarm.NodeAddr}}").stdout.strip() == address


def test_overlay_is_attachable_and_unencrypted_only_in_the_lab():
    net = json.loads(sh(DATA, "docker", "network", "inspect", NETWORK).stdout)[0]
    assert net["Driver"] == "overlay" and net["Scope"] == "swarm" and net["Attachable"] is True, net
    # The lab's kernel has no ESP (LAB-FACTS.md): molecule.yml turns encryption off, so the option is absent here...
    assert "encrypted" not in (net.get("Options") or {}), net["Options"]
    # ...while production renders it: the role's default is on.
    defaults = yaml.safe_load((PROJECT / "roles" / "swarm" / "defaults" / "main.yml").read_text())
    assert defaults["swarm_network_encrypted"] is True


def test_overlay_carries_http_between_containers_on_two_nodes():
    token = secrets.token_hex(8)
    for node in (EDGE, APP):
        subprocess.run([str(LAB), "load-images", node, IMAGE], check=True, capture_output=True, timeout=300)
    server = "borgstack-overlay-probe"
    sh(EDGE, "docker", "rm", "-f", server, check=False)
    # This image's Python has no http package: a minimal HTTP/1.0 exchange over a plain socket.
    sh(EDGE, "docker", "run", "-d", "--name", server, "--network", NETWORK, IMAGE, "python3", "-c",
       "import socket\n"
       "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', 8080)); s.listen()\n"
       "while True:\n"
       " c, _ = s.accept(); c.recv(1024)\n"
       f" c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 16\\r\\n\\r\\n{token}'); c.close()")
    try:
        client = ("import socket\n"
                  f"c = socket.create_connection(('{server}', 8080), timeout=5)\n"
                  "c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); data = b''\n"
                  "while chunk := c.recv(1024): data += chunk\n"
                  "print(data.decode().split('\\r\\n\\r\\n', 1)[1])")
        body = wait_for(
            f"an HTTP answer from {EDGE}'s container to {APP}'s over the overlay",
            lambda: sh(APP, "docker", "run", "--rm", "--network", NETWORK, IMAGE, "python3", "-c",
                       client, check=False).stdout.strip() == token,
            timeout=60, every=2)
        assert body
        # The answer crossed nodes: the server runs on swarm-2 only.
        assert sh(APP, "docker", "ps", "-q", "--filter", f"name={server}").stdout.strip() == ""
    finally:
        sh(EDGE, "docker", "rm", "-f", server, check=False)


STACK = "borgstack"
# Where the inventory's labels put each service's tasks (None: anywhere), and how many run.
PLACED = {"postgresql": ({DATA}, 1), "redis": ({DATA}, 1),
          "seaweedfs": ({DATA}, 1), "caddy": ({EDGE}, 1), "n8n": (None, 1),
          "n8n-worker": (None, 2), "directus": (None, 2)}


def running_tasks(service: str, manager: str = DATA) -> list[dict]:
    """The running tasks of one stack service: [{id, node, state}]."""
    out = sh(manager, "docker", "service", "ps", f"{STACK}_{service}", "--filter", "desired-state=running",
             "--format", "{{.ID}}|{{.Node}}|{{.CurrentState}}").stdout
    tasks = [dict(zip(("id", "node", "state"), line.split("|"))) for line in out.splitlines() if line.strip()]
    return [t for t in tasks if t["state"].startswith("Running")]


def overlay_address(node: str, service: str) -> list[str]:
    """The overlay addresses of ``service``'s task containers on ``node``."""
    names = sh(node, "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_{service}").stdout
    return [sh(node, "docker", "inspect", "--format",
               "{{ (index .NetworkSettings.Networks \"%s\").IPAddress }}" % NETWORK, cid).stdout.strip()
            for cid in names.split()]


def test_tasks_run_where_their_labels_say():
    """Each service's tasks run on the nodes its labels allow, at its count; the app tier on more than one node."""
    app_nodes = set()
    for service, (allowed, count) in PLACED.items():
        tasks = running_tasks(service)
        assert len(tasks) == count, (service, tasks)
        nodes = {t["node"] for t in tasks}
        if allowed:
            assert nodes == allowed, (service, tasks)
        else:
            app_nodes |= nodes
        spec = json.loads(sh(DATA, "docker", "service", "inspect", f"{STACK}_{service}").stdout)[0]
        assert spec["Spec"]["EndpointSpec"]["Mode"] == "dnsrr", service
        assert spec["Spec"]["UpdateConfig"]["FailureAction"] == "rollback", service
        assert spec["Spec"]["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] > 0, service
    assert len(app_nodes) >= 2, app_nodes
    # Directus' two replicas on two nodes.
    assert len({t["node"] for t in running_tasks("directus")}) == 2
    # Rolling updates: the apps that may overlap start the new task first; the data and the edge stop first.
    orders = {service: json.loads(sh(DATA, "docker", "service", "inspect", "--format",
                                     "{{json .Spec.UpdateConfig.Order}}", f"{STACK}_{service}").stdout)
              for service in ("directus", "n8n", "postgresql", "caddy")}
    assert orders == {"directus": "start-first", "n8n": "stop-first", "postgresql": "stop-first",
                      "caddy": "stop-first"}, orders


def test_n8n_and_directus_reach_postgresql_across_hosts():
    """PostgreSQL (on swarm-1) sees each app's tenant connected from the overlay address of a task running on
    another node: the apps' database traffic crossed hosts over the overlay."""
    query = ("SELECT DISTINCT usename || ' ' || host(client_addr) FROM pg_stat_activity "
             "WHERE usename IN ('n8n', 'directus') AND client_addr IS NOT NULL")
    pg = sh(DATA, "docker", "ps", "-q", "--filter",
            f"label=com.docker.swarm.service.name={STACK}_postgresql").stdout.strip()
    seen = set(sh(DATA, "docker", "exec", pg, "psql", "-U", "postgres", "-tAc", query)
               .stdout.split("\n"))
    crossed = set()
    for app in ("n8n", "directus"):
        for task in running_tasks(app):
            for address in overlay_address(task["node"], app):
                if f"{app} {address}" in seen and task["node"] != DATA:
                    crossed.add(app)
    assert crossed == {"n8n", "directus"}, (seen, {a: running_tasks(a) for a in ("n8n", "directus")})


ROOT_CERT = "/opt/borgstack/services/caddy/root.crt"


def test_caddy_answers_on_the_edge_node_only():
    """From a peer, n8n's and Directus' public names resolved to the edge node's address: Caddy answers there (and
    proxies to the apps over the overlay), its chain verified against the internal root the play copied to that
    peer; the data node's 443 has no Caddy."""
    def https(name: str, address: str, path: str) -> str:
        return sh(APP, "curl", "--cacert", ROOT_CERT, "--silent", "--max-time", "10", "--output", "/dev/null",
                  "--write-out", "%{http_code}", "--resolve", f"{name}:443:{address}", f"https://{name}{path}",
                  check=False).stdout.strip()
    edge = NODES[EDGE]
    wait_for("n8n and Directus answering through Caddy on the edge",
             lambda: (https("n8n.lab.borgstack.test", edge, "/healthz"),
                      https("directus.lab.borgstack.test", edge, "/server/health")) == ("200", "200"),
             timeout=120, every=3)
    assert https("n8n.lab.borgstack.test", NODES[DATA], "/healthz") == "000"


def _probe(node: str, port: int) -> tuple[str, int, str]:
    proc = subprocess.run([str(LAB), "probe", node, str(port)], capture_output=True, text=True, timeout=60,
                          check=False)
    return node, port, proc.stdout.strip() + proc.stderr.strip()


def test_outside_scan_finds_no_swarm_or_docker_port():
    """From the public-looking network (not a member): the swarm's TCP ports and Docker's API ports are closed on
    every node, while 22 answers (the scan itself works). The peers' UFW rules admit the swarm ports (UDP too)."""
    closed_ports = [2377, 7946, 2375, 2376]
    jobs = [(n, p) for n in NODES for p in [22, *closed_ports]]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda job: _probe(*job), jobs))
    for node, port, verdict in results:
        if port == 22:
            assert verdict.endswith(" open"), (node, port, verdict)
        else:
            assert " closed " in verdict, (node, port, verdict)
    for node, address in NODES.items():
        rules = sh(node, "ufw", "status").stdout
        for peer in (a for n, a in NODES.items() if n != node):
            for port in ("2377/tcp", "7946/tcp", "7946/udp", "4789/udp"):
                assert any(port in line and peer in line and "ALLOW" in line for line in rules.splitlines()), (
                    node, peer, port, rules)
        assert address not in rules  # a node never lists itself


def test_bad_cluster_input_is_refused_before_any_change():
    """One validation run with three faults at once (cluster_errors reports them all): an even manager count, every
    host claiming PostgreSQL's data, Evolution API asked to run twice. Refused by the validation play, changed=0."""
    bad = json.dumps({"borgstack_swarm_managers": 2, "borgstack_node_data": ["postgresql"],
                      "swarm_replicas": {"evolution_api": 2}})
    run = run_site(DATA, "--tags", "swarm", "-e", bad, json_output=True, timeout=600)
    assert run.rc != 0 and run.changed == 0, run.output[-3000:]
    messages = " ".join(f.message for f in run.failures)
    assert all(f.play == "Validate every setting before anything changes" for f in run.failures), run.failures
    for expected in ("swarm_managers is 2: an even number of managers",
                     f"postgresql is claimed by hosts {', '.join(NODES)}",
                     "swarm_replicas.evolution_api is 2: evolution_api must run exactly once"):
        assert expected in messages, messages


def test_a_host_that_cannot_reach_the_swarm_ports_is_refused_naming_it():
    """swarm-1 (the first manager) drops swarm-3's packets to 2377/tcp for the length of one run: the swarm role's
    pre-flight on swarm-3 stops the run naming the host and the ports to open."""
    rule = ["INPUT", "-s", NODES[APP], "-p", "tcp", "--dport", "2377", "-j", "DROP"]
    sh(DATA, "iptables", "-I", *rule)
    try:
        env = playbook_env("--tags", "swarm")
        proc = subprocess.run(
            ["ansible-playbook", str(PROJECT / "site.yml"), "-i", inventory(), "--limit",
             f"{DATA},{APP}", "--tags", "swarm", "-e", "swarm_preflight_timeout=3"],
            cwd=PROJECT, capture_output=True, text=True, timeout=600, env=env, check=False)
    finally:
        sh(DATA, "iptables", "-D", *rule)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert (f"Host {APP} ({NODES[APP]}) cannot reach the first manager {DATA} at "
            f"{NODES[DATA]} on the swarm ports") in " ".join(output.split()), output[-3000:]
    assert "Open 2377/tcp, 7946/tcp+udp and 4789/udp" in " ".join(output.split())


def test_losing_the_leader_elects_another_and_it_rejoins():
    nodes = nodes_seen_from(DATA)
    leader = next(n["Hostname"] for n in nodes if n["ManagerStatus"] == "Leader")
    witness = next(name for name in NODES if name != leader)
    started = time.monotonic()
    subprocess.run(["docker", "stop", "--time", "30", leader], check=True, capture_output=True, timeout=90)
    try:
        def new_leader():
            seen = nodes_seen_from(witness)
            return next((n["Hostname"] for n in seen if n["ManagerStatus"] == "Leader"
                         and n["Hostname"] != leader), None)
        elected = wait_for(f"a new leader after stopping {leader}", new_leader, timeout=60, every=1)
        print(f"{elected} elected {time.monotonic() - started:.1f} s after {leader} was stopped")
    finally:
        subprocess.run(["docker", "start", leader], check=True, capture_output=True, timeout=90)
    wait_for(f"{leader} back Ready and Reachable",
             lambda: all(n["Status"] == "Ready" and n["ManagerStatus"] in ("Leader", "Reachable")
                         for n in nodes_seen_from(witness)) and len(nodes_seen_from(witness)) == len(NODES),
             timeout=120, every=2)


def test_losing_an_app_node_moves_its_tasks_and_loses_nothing_pinned():
    """swarm-3 (no data, not the edge) stops: its app tasks run again on the survivors, the pinned services keep
    their very tasks on swarm-1, and Caddy on the edge still answers. Then it comes back."""
    lost = APP
    # Settled first (the leader's loss above restarted what ran on it).
    wait_for("every service at its count", lambda: all(len(running_tasks(s)) == placed[1] for s, placed in PLACED.items()),
             timeout=300, every=3)
    before = {service: running_tasks(service) for service in PLACED}
    moved = [service for service, tasks in before.items() if any(t["node"] == lost for t in tasks)]
    assert moved, before  # the spread put app tasks on swarm-3 (test_tasks_run_where_their_labels_say)
    started = time.monotonic()
    subprocess.run(["docker", "stop", "--time", "30", lost], check=True, capture_output=True, timeout=90)
    try:
        def rescheduled():
            now = {service: running_tasks(service) for service in moved}
            return all(len(tasks) == PLACED[service][1] and lost not in {t["node"] for t in tasks}
                       for service, tasks in now.items())
        wait_for(f"{', '.join(moved)} running again without {lost}", rescheduled, timeout=300, every=3)
        print(f"{', '.join(moved)} back at their replica count {time.monotonic() - started:.1f} s after {lost} stopped")
        for service in ("postgresql", "redis", "seaweedfs", "caddy"):
            assert [(t["id"], t["node"]) for t in running_tasks(service)] == [
                (t["id"], t["node"]) for t in before[service]], service
    finally:
        subprocess.run(["docker", "start", lost], check=True, capture_output=True, timeout=90)
    wait_for(f"{lost} back Ready", lambda: all(n["Status"] == "Ready" for n in nodes_seen_from(DATA))
             and len(nodes_seen_from(DATA)) == len(NODES), timeout=180, every=3)


# --- n8n in queue mode ----------------------------------------------------------------------------------------
N8N_HOST = "n8n.lab.borgstack.test"
ADMIN = "admin@example.com"


def _service_env(service: str) -> dict:
    spec = json.loads(sh(DATA, "docker", "service", "inspect", f"{STACK}_{service}").stdout)[0]
    return dict(item.split("=", 1) for item in spec["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", []))


def test_n8n_runs_in_queue_mode_with_a_worker_on_another_node():
    """A cluster runs n8n in queue mode without being asked: the main process once, the registry's two workers
    (one swarm service) spread by the swarm - at least one on a node other than the main's - on the same database,
    Redis database and binary-data mode."""
    main = wait_for("n8n's main task running", lambda: running_tasks("n8n"), timeout=120, every=3)

    def both_workers():
        tasks = running_tasks("n8n-worker")
        return tasks if len(tasks) == 2 else None
    workers = wait_for("both n8n workers running", both_workers, timeout=180, every=3)
    assert len(main) == 1, main
    assert {t["node"] for t in workers} - {main[0]["node"]}, (main, workers)
    main_env, worker_env = _service_env("n8n"), _service_env("n8n-worker")
    for key in ("EXECUTIONS_MODE", "QUEUE_BULL_REDIS_HOST", "QUEUE_BULL_REDIS_DB", "DB_POSTGRESDB_HOST",
                "N8N_DEFAULT_BINARY_DATA_MODE"):
        assert main_env.get(key) == worker_env.get(key), key
    assert main_env["EXECUTIONS_MODE"] == "queue" and main_env["N8N_DEFAULT_BINARY_DATA_MODE"] == "default"


def _n8n(method: str, path: str, data=None, node: str = APP) -> tuple[int, dict]:
    """n8n's REST API through Caddy on the edge node (from a peer, the public name resolved to the edge), with a
    cookie jar kept on that node."""
    argv = ["curl", "-k", "--silent", "--max-time", "30", "-b", "/tmp/queue-n8n-cookies", "-c",
            "/tmp/queue-n8n-cookies", "-X", method, "-H", "Content-Type: application/json",
            "--resolve", f"{N8N_HOST}:443:{NODES[EDGE]}", "--write-out", "\n%{http_code}"]
    if data is not None:
        argv += ["--data", json.dumps(data)]
    out = sh(node, *argv, f"https://{N8N_HOST}{path}", check=False).stdout
    body, _newline, status = out.rpartition("\n")
    return int(status or 0), json.loads(body or "{}")


def test_webhook_processors_run_apart_from_the_main_and_start_first():
    """The registry's two webhook processors (one swarm service, `n8n webhook`) run, spread by the swarm, with the
    main's settings, an update order that starts a new one before stopping an old one, and one name on the overlay
    (the alias Caddy dials for /webhook/*) that answers with every processor task's address and no other."""
    def both():
        tasks = running_tasks("n8n-webhook")
        return tasks if len(tasks) == 2 else None
    tasks = wait_for("both webhook processors running", both, timeout=300, every=3)
    spec = json.loads(sh(DATA, "docker", "service", "inspect", f"{STACK}_n8n-webhook").stdout)[0]["Spec"]
    assert spec["TaskTemplate"]["ContainerSpec"]["Args"] == ["webhook"], spec["TaskTemplate"]["ContainerSpec"]
    assert spec["UpdateConfig"]["Order"] == "start-first" and spec["UpdateConfig"]["FailureAction"] == "rollback"
    main_env, hook_env = _service_env("n8n"), _service_env("n8n-webhook")
    assert main_env == hook_env, "the processors must share every setting with the main"
    addresses = sorted(a for node in {t["node"] for t in tasks} for a in overlay_address(node, "n8n-webhook"))
    assert len(addresses) == 2, (tasks, addresses)
    # Caddy's upstream name, resolved where Caddy runs (the edge node's Caddy task).
    caddy = sh(EDGE, "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_caddy").stdout
    resolved = sh(EDGE, "docker", "exec", caddy.strip(), "getent", "ahostsv4", "borgstack-n8n-webhook").stdout
    assert sorted({line.split()[0] for line in resolved.splitlines() if line.strip()}) == addresses, resolved


def test_a_webhook_through_caddy_runs_on_a_worker():
    """A webhook workflow, active, called through Caddy on the edge: the execution row PostgreSQL holds finished
    successfully, the log of a worker task says it started and finished that execution, and a webhook processor's
    log says it queued it - not the main's, which Caddy keeps for the editor: the login above (/rest) and a test
    webhook (/webhook-test/, which only the main registers) go to it."""
    # Only the logs written since this test began: after updates and benchmarks the services' whole logs take
    # minutes to read on a loaded machine.
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    password = sh(DATA, "cat", "/opt/borgstack/services/n8n/owner-password").stdout.strip()
    status, body = _n8n("POST", "/rest/login", {"emailOrLdapLoginId": ADMIN, "password": password})
    assert status == 200, body
    path = f"queue-{secrets.token_hex(4)}"
    status, body = _n8n("POST", "/rest/workflows", {
        "name": f"queue proof {path}", "active": False, "connections": {}, "settings": {},
        "nodes": [{"id": str(uuid.uuid4()), "name": "Webhook", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
                   "position": [0, 0], "webhookId": str(uuid.uuid4()),
                   "parameters": {"httpMethod": "POST", "path": path, "responseMode": "onReceived"}}]})
    assert status == 200, body
    workflow = body["data"]["id"]
    status, body = _n8n("PATCH", f"/rest/workflows/{workflow}", {"active": True})
    assert status == 200 and body["data"]["active"] is True, body

    def called():
        answer = _n8n("POST", f"/webhook/{path}", {"pedido": 42})
        return answer if answer[0] == 200 else None
    status, body = wait_for("the production webhook answering through Caddy", called, timeout=60, every=2)
    pg = sh(DATA, "docker", "ps", "-q", "--filter",
            f"label=com.docker.swarm.service.name={STACK}_postgresql").stdout.strip()
    query = (f"SELECT id || ' ' || status || ' ' || mode FROM execution_entity WHERE \"workflowId\" = '{workflow}' "
             f"AND finished ORDER BY id")
    rows = wait_for("the execution finished in PostgreSQL", lambda: sh(
        DATA, "docker", "exec", pg, "psql", "-U", "postgres", "-d", "n8n", "-tAc", query)
        .stdout.split("\n")[:-1] or None, timeout=60, every=2)
    assert len(rows) == 1, rows
    execution, state, mode = rows[0].split()
    assert (state, mode) == ("success", "webhook"), rows

    def log(service: str) -> str:
        return sh(DATA, "docker", "service", "logs", "--raw", "--no-trunc", "--since", since, f"{STACK}_{service}",
                  timeout=120).stdout

    def worker_finished():
        text = log("n8n-worker")
        return text if f"Worker finished execution {execution} " in text else None
    worker_log = wait_for("a worker's log naming the execution", worker_finished, timeout=60, every=3)
    assert f"Worker started execution {execution} " in worker_log
    main_log, hook_log = log("n8n"), log("n8n-webhook")
    # A processor queued it (n8n 1.113.3's scaling service logs that at info level); the main never saw it, and
    # neither ran it.
    assert f"Enqueued execution {execution} " in hook_log
    assert f"Enqueued execution {execution} " not in main_log
    assert f"Worker started execution {execution} " not in main_log + hook_log
    # A test webhook is the main's (the editor's "listen for test event"): unregistered here, the main's own 404
    # says so - the processors do not serve /webhook-test/ at all (Express' HTML 404).
    status, body = _n8n("POST", f"/webhook-test/{path}", {"pedido": 43})
    assert status == 404 and "is not registered" in json.dumps(body), (status, body)
    _n8n("PATCH", f"/rest/workflows/{workflow}", {"active": False})


# --- the pre-update dump on a swarm -------------------------------------------------------------------------------
UPDATES = "/var/backups/borgstack/updates"


def _dumps(node: str) -> dict[str, str]:
    """{file name: "<mode> <size>"} of n8n's pre-update dumps on ``node``."""
    out = sh(node, "sh", "-c", f"stat -c '%n %a %s' {UPDATES}/n8n-*.dump 2>/dev/null", check=False).stdout
    return {Path(name).name: f"{mode} {size}" for name, mode, size in (line.split() for line in out.splitlines())}


def _site_n8n(image: str) -> subprocess.CompletedProcess:
    """`site.yml --tags n8n` with n8n's image set through the inventory (the scenario's borgstack_services)."""
    scenario = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())
    services = scenario["provisioner"]["inventory"]["group_vars"]["borgstack"]["borgstack_services"]
    env = playbook_env("--tags", "n8n")
    extra = json.dumps({"borgstack_services": {**services, "n8n": {"image": image}}})
    return subprocess.run(["ansible-playbook", str(PROJECT / "site.yml"), "-i", inventory(), "--tags", "n8n",
                           "-e", extra], cwd=PROJECT, capture_output=True, text=True, timeout=1500, env=env,
                          check=False)


@pytest.mark.slow
def test_a_new_n8n_image_is_preceded_by_a_dump_on_the_data_node():
    """n8n's image changed through the inventory (a lab build of the same n8n under another tag, on every node):
    before the stack deploy, n8n's database is dumped on the node holding PostgreSQL's data, through its running
    task, into the same root-only directory, name and format as on one host - a new non-empty 0600 file that
    pg_restore reads as n8n's database - and the services then run the new image. Back to the inventory's image:
    another dump (an update again); neither update restores anything. That a rerun with nothing to update takes no
    dump and changes nothing is the last step of the rollback test below (same run, same assertions).
    What this lab cannot show: here the data node is also the first manager (molecule.yml), so the delegation to
    another node runs on the same host; the empty-dump refusal is proven by the module's unit test (a real
    pg_dump of a live database is never empty)."""
    base = "borgstack-lab/n8n:1.113.3"
    other = f"{base}-dumptest"
    _build_on_every_node(other, f"FROM {base}\nLABEL borgstack.test=pre-update-dump\n")
    before = _dumps(DATA)
    try:
        for image in (other, base):
            proc = _site_n8n(image)
            assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
            # A successful update restores nothing (the restore runs only after the swarm rolled one back).
            task = "Restore from the pre-update dump, on the PostgreSQL node, the database of n8n"
            assert task in proc.stdout, proc.stdout[-3000:]  # listed (skipped): the play reached it
            restore = proc.stdout.split(task, 1)[1].split("TASK [", 1)[0]
            assert "changed:" not in restore and "ok:" not in restore, restore
            after = _dumps(DATA)
            new = sorted(set(after) - set(before))
            assert len(new) == 1 and re.fullmatch(r"n8n-\d{8}T\d{6}Z\.dump", new[0]), (before, after)
            mode, size = after[new[0]].split()
            assert mode == "600" and int(size) > 0, after
            for node in NODES:
                if node != DATA:
                    assert not _dumps(node), f"a dump on {node}, which does not hold PostgreSQL"
            assert sh(DATA, "stat", "-c", "%a %U", UPDATES).stdout.split() == ["700", "root"]
            pg = sh(DATA, "docker", "ps", "-q", "--filter",
                    f"label=com.docker.swarm.service.name={STACK}_postgresql").stdout.strip()
            listing = sh(DATA, "sh", "-c", f"docker exec -i {pg} pg_restore --list < {UPDATES}/{new[0]}").stdout
            assert "dbname: n8n" in listing and "TABLE public workflow_entity" in listing, listing[:1000]
            spec = json.loads(sh(DATA, "docker", "service", "inspect", f"{STACK}_n8n").stdout)[0]["Spec"]
            assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == image
            before = after
    finally:
        for node in NODES:
            sh(node, "docker", "image", "rm", other, check=False)


# --- a rolling update that fails ----------------------------------------------------------------------------------
# A "new version" that migrates n8n's database (a table the inventory's version does not have) with n8n's own pg
# client and credentials, says so on its log, then exits 1: it never becomes a running n8n.
BAD_MIGRATION = """
const fs = require('fs');
const { Client } = require('module').createRequire(fs.realpathSync('/usr/local/bin/n8n'))('pg');
const env = process.env;
const client = new Client({host: env.DB_POSTGRESDB_HOST, port: Number(env.DB_POSTGRESDB_PORT || 5432),
  database: env.DB_POSTGRESDB_DATABASE, user: env.DB_POSTGRESDB_USER,
  password: fs.readFileSync(env.DB_POSTGRESDB_PASSWORD_FILE, 'utf8').trim()});
client.connect()
  .then(() => client.query('CREATE TABLE IF NOT EXISTS borgstack_bad_migration (id int)'))
  .then(() => { console.log('borgstack-test: bad migration applied'); process.exit(1); },
        (error) => { console.error('borgstack-test: ' + error.message); process.exit(2); });
"""


def _psql(database: str, sql: str) -> str:
    """``sql`` run by psql as postgres in PostgreSQL's task on the data node (unaligned, tuples only)."""
    pg = sh(DATA, "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_postgresql").stdout
    return sh(DATA, "docker", "exec", pg.strip(), "psql", "-U", "postgres", "-d", database, "-XAtq", "-v",
              "ON_ERROR_STOP=1", "-c", sql).stdout.strip()


def test_a_bad_n8n_version_is_rolled_back_its_database_restored_and_the_play_fails_naming_it():
    """An n8n "version" that migrates n8n's database (creates a table the inventory's version does not have, with
    n8n's own credentials) and then exits 1 (the lab build with that as its entrypoint, built on every node), through
    `site.yml --tags n8n`: the pre-update dump is taken, the swarm's update fails, it rolls the main and the workers
    back (failure_action: rollback) to the inventory's image, the play puts n8n's database back from that dump on the
    data node - as compose_deploy does on one host - and fails naming the service, the images and the restore.
    What proves the restore (none of it can pass without one): the bad version's log says it created its table, and
    the table is gone; n8n's database has another OID (pg_restore --create recreated it); a marker row written just
    before the run is there (the dump is this run's, taken after it). The rolled-back n8n then runs on it, and the
    next run deploys the inventory's image and changes nothing (no dump, no restore). Runs last: n8n is down for
    part of it."""
    base = "borgstack-lab/n8n:1.113.3"
    broken = f"{base}-broken"
    _build_on_every_node(broken, f"FROM {base}\nENTRYPOINT {json.dumps(['node', '-e', BAD_MIGRATION])}\n")
    marker = f"written before the run {uuid.uuid4()}"
    _psql("n8n", f"CREATE TABLE borgstack_restore_marker (note text); INSERT INTO borgstack_restore_marker "
                 f"VALUES ('{marker}')")
    oid = _psql("postgres", "SELECT oid FROM pg_database WHERE datname = 'n8n'")
    dumps = _dumps(DATA)
    try:
        started = time.monotonic()
        proc = _site_n8n(broken)
        output = " ".join((proc.stdout + proc.stderr).split())
        print(f"the bad version's run failed after {time.monotonic() - started:.0f} s")
        assert proc.returncode != 0, output[-3000:]
        assert "The swarm did not finish the update of borgstack_n8n" in output, output[-3000:]
        assert "rollback_completed" in output, output[-3000:]
        new = sorted(set(_dumps(DATA)) - set(dumps))
        assert len(new) == 1, (dumps, new)
        assert f"{STACK}_n8n {base} -> {broken}" in output, output[-3000:]
        assert f"The database n8n was put back from the pre-update dump {UPDATES}/{new[0]}" in output, output[-3000:]
        logs = sh(DATA, "docker", "service", "logs", "--raw", f"{STACK}_n8n", check=False)
        assert "borgstack-test: bad migration applied" in logs.stdout + logs.stderr, "the bad version never migrated"
        assert _psql("n8n", "SELECT to_regclass('borgstack_bad_migration') IS NULL") == "t", "the bad table stayed"
        assert _psql("postgres", "SELECT oid FROM pg_database WHERE datname = 'n8n'") != oid, "n8n not recreated"
        assert _psql("n8n", "SELECT note FROM borgstack_restore_marker") == marker
        for service in ("n8n", "n8n-worker"):
            spec = json.loads(sh(DATA, "docker", "service", "inspect", f"{STACK}_{service}").stdout)[0]
            assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == base, (service, spec["Spec"])
        main = wait_for("n8n's main running again", lambda: running_tasks("n8n"), timeout=300, every=3)
        assert len(main) == 1, main
        # The rolled-back n8n is ready on the restored database (/healthz/readiness: connected and migrated).
        node = main[0]["node"]
        container = sh(node, "docker", "ps", "-q", "--filter",
                       f"label=com.docker.swarm.service.name={STACK}_n8n").stdout.split()[0]
        ready = ("fetch('http://127.0.0.1:5678/healthz/readiness')"
                 ".then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))")
        wait_for("n8n ready on the restored database",
                 lambda: sh(node, "docker", "exec", container, "node", "-e", ready, check=False).returncode == 0,
                 timeout=300, every=5)
        # The inventory's image again: the swarm already runs it, so nothing changes (no dump, no restore).
        settled = _dumps(DATA)
        proc = _site_n8n(base)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-3000:]
        assert all(int(c) == 0 for c in re_changed(output)), output[-3000:]
        assert _dumps(DATA) == settled, "a dump without an update"
        assert _psql("n8n", "SELECT note FROM borgstack_restore_marker") == marker, "restored without a rollback"
    finally:
        _psql("n8n", "DROP TABLE IF EXISTS borgstack_restore_marker")
        for node in NODES:
            sh(node, "docker", "image", "rm", broken, check=False)


def re_changed(output: str) -> list[str]:
    """The changed= counts of a play recap, one per host (three here)."""
    names = "|".join(re.escape(node) for node in NODES)
    counts = re.findall(rf"^(?:{names})\s*: ok=\d+\s+changed=(\d+)", output, re.M)
    assert len(counts) == len(NODES), output[-3000:]
    return counts


# --- Health on the swarm (stack_health with swarm_stack) ------------------------------------------------------
def test_health_play_counts_every_task_and_names_one_that_keeps_failing():
    """The health play (stack_health on the first manager) passes on the converged cluster, its table giving each
    swarm service's running/desired tasks and nodes. Then n8n's workers are broken for real - the swarm runs them
    with a command that prints a marker and exits 3, over and over - and the same play fails naming n8n, the worker
    slot that keeps failing and the marker from that task's logs (read from the node that ran it). Rolled back after.
    The internal endpoints and the database logins over the overlay: test_cluster_health.py."""
    healthy = run_site(DATA, "--tags", "health", timeout=900)
    assert healthy.rc == 0 and healthy.failed == 0, healthy.output[-4000:]
    table = " ".join(healthy.output.split())  # the YAML callback folds long lines
    assert f"postgresql 1/1 @{DATA}" in table, healthy.output[-4000:]
    assert f"caddy 1/1 @{EDGE}" in table, healthy.output[-4000:]
    assert "n8n-worker 2/2 @" in table and "directus 2/2 @" in table, healthy.output[-4000:]

    marker = f"grow-broken-{uuid.uuid4().hex[:8]}"
    service = f"{STACK}_n8n-worker"
    sh(DATA, "docker", "service", "update", "--detach", "--update-failure-action", "continue", "--update-order",
       "stop-first", "--update-parallelism", "0", "--entrypoint", "sh", "--args",
       f"-c 'echo {marker} cannot start >&2; exit 3'", service)
    try:
        def keeps_failing():
            rows = sh(DATA, "docker", "service", "ps", "--format", "{{.CurrentState}}", service).stdout
            return sum(line.startswith("Failed") for line in rows.splitlines()) >= 4
        wait_for(f"{service} failing twice per slot", keeps_failing, timeout=180, every=3)
        broken = run_site(DATA, "--tags", "health", "-e", "borgstack_health_timeout=15", json_output=True,
                          timeout=900)
        messages = " ".join(f.message for f in broken.failures)
        assert broken.rc != 0 and broken.changed == 0, broken.output[-4000:]
        assert "services still failing" in messages and ": n8n." in messages, messages[-3000:]
        assert f"task {service}." in messages and "keeps failing" in messages, messages[-3000:]
        assert "non-zero exit (3)" in messages, messages[-3000:]
        assert marker in messages, messages[-3000:]  # the failed task's own log line, from its node
        # The other services are not blamed.
        first = messages.split("\n", maxsplit=1)[0]
        assert "directus" not in first and "postgresql" not in first, messages
    finally:
        sh(DATA, "docker", "service", "rollback", "--detach", service, check=False)
    wait_for(f"{service} back at 2 running tasks", lambda: len(running_tasks("n8n-worker")) == 2, timeout=300,
             every=3)


# --- Shrinking and growing by inventory ----------------------------------------------------------------------
LAST = list(NODES)[-1]  # an app node (no data, not the edge): the one taken out and put back


def _inventory_without(tmp_path: Path, host: str) -> Path:
    """A copy of the scenario's inventory with ``host`` moved out of the borgstack group into borgstack_retired (the
    inventory still reaches it, so the play can make it leave; its connection variables go with it)."""
    source = Path(inventory())
    copy = tmp_path / "inventory"
    tmp_path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-r", str(source), str(copy)], check=True)
    moved = False
    # molecule writes the scenario's groups to inventory/hosts (no extension) beside its ansible_inventory.yml.
    for path in sorted(p for p in copy.iterdir() if p.is_file()):
        data = yaml.safe_load(path.read_text()) or {}
        for root in (data, data.get("all", {}).get("children", {})):
            group = (root or {}).get("borgstack") if isinstance(root, dict) else None
            if isinstance(group, dict) and host in (group.get("hosts") or {}):
                host_vars = group["hosts"].pop(host)
                root["borgstack_retired"] = {"hosts": {host: host_vars}}
                moved = True
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert moved, f"{host} not found in the borgstack group of {source}"
    return copy


def _play(inventory_dir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = playbook_env(*args)
    return subprocess.run(["ansible-playbook", str(PROJECT / "site.yml"), "-i", str(inventory_dir), *args],
                          cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _changed(output: str) -> dict[str, int]:
    """{host: changed} from the play recap."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", output, re.M)}


def _rules_for(node: str, address: str) -> list[str]:
    return [line for line in sh(node, "ufw", "status").stdout.splitlines() if address in line]


@pytest.mark.slow
def test_a_host_removed_from_the_inventory_is_drained_and_leaves_and_comes_back_on_return(tmp_path):
    """The last node (apps only) leaves the borgstack group: the rerun drains it (its tasks start on the others),
    the host leaves the swarm, a manager removes it from the node list, and the other members' UFW rules for its
    address are deleted; a second rerun changes nothing. Holding data no other host takes over is refused before
    any change, naming node and service. Then the node is put back: the rerun makes it join, and after a forced
    rebalance of the n8n workers (the swarm does not move running tasks by itself) it runs tasks again."""
    address = NODES[LAST]
    assert all(_rules_for(node, address) for node in NODES if node != LAST)
    smaller = _inventory_without(tmp_path, LAST)
    run = _play(smaller, "--tags", "swarm")
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    assert "Take out the nodes" in run.stdout or "Drain the departing nodes" in run.stdout, run.stdout[-3000:]
    assert LAST not in {n["Hostname"] for n in nodes_seen_from(DATA)}
    assert sh(LAST, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    for node in NODES:
        if node != LAST:
            assert _rules_for(node, address) == [], (node, sh(node, "ufw", "status").stdout)

    def settled_without_it():
        now = {service: running_tasks(service) for service in PLACED}
        return all(len(now[s]) == count and LAST not in {t["node"] for t in now[s]}
                   for s, (_allowed, count) in PLACED.items())
    wait_for("every service at its count without the removed node", settled_without_it, timeout=300, every=3)
    again = _play(smaller, "--tags", "swarm")
    assert again.returncode == 0 and set(_changed(again.stdout).values()) == {0}, again.stdout[-4000:]

    # Back in the inventory: it joins (the firewall role gives the others their rules for it again).
    back = _play(Path(inventory()), "--tags", "firewall,swarm")
    assert back.returncode == 0, (back.stdout + back.stderr)[-5000:]
    wait_for(f"{LAST} Ready again", lambda: any(n["Hostname"] == LAST and n["Status"] == "Ready"
                                                for n in nodes_seen_from(DATA)), timeout=120, every=3)
    assert all(_rules_for(node, address) for node in NODES if node != LAST)
    sh(DATA, "docker", "service", "update", "--force", "--detach", f"{STACK}_n8n-worker")
    wait_for(f"an n8n worker task on {LAST}",
             lambda: LAST in {t["node"] for t in running_tasks("n8n-worker")}, timeout=300, every=3)

    # Taking the data node out with no other host holding PostgreSQL: refused before any change, naming both. Once the
    # third host is back, so that the other two are managers again and the validation reads the swarm from the first
    # of them: with the data node as the only manager left, no host of the group can read the swarm, and the refusal
    # is the inventory's own (no host carries data), which names the services and borgstack_node_data, not the node.
    refused = _play(_inventory_without(tmp_path / "data", DATA), "--tags", "swarm", timeout=600)
    output = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0 and set(_changed(refused.stdout).values()) == {0}, output[-3000:]
    assert (f"swarm node {DATA} ({NODES[DATA]}) is no longer in the inventory but holds the data of postgresql"
            in output), output[-3000:]
    assert DATA in {n["Hostname"] for n in nodes_seen_from(EDGE)}
