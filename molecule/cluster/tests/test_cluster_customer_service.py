# SPDX-License-Identifier: GPL-3.0-or-later
"""The customer-service workflows (WhatsApp through Evolution API <-> Chatwoot) on the lab cluster (issue 24).

site.yml installed and activated the shipped workflows in the n8n main's task (on whichever node runs it: the n8n
role's steps after the install go to the container compose_service_step_containers names); in queue mode the
webhook processors (borgstack_n8n-webhook) answer the production webhooks and put the executions on the Redis
queue, and the workers (borgstack_n8n-worker) run them. These tests prove, in a few seconds each:

- a customer's text message posted as Evolution API posts it (to the webhook processors, on the overlay) becomes a
  contact, a conversation and the message in Chatwoot; the agent's answer written in Chatwoot (Chatwoot's own
  message_created webhook, to the webhook processors) is sent once through Evolution API - every execution put on
  the queue by a webhook processor and started by a worker (their logs say so), none taken by the main;
- the same webhook through the edge node's Caddy (the internet's way in) is answered by the webhook processors and
  dropped by the workflow (it came through Caddy: X-Forwarded-For) - nobody outside injects a message.

What ran: the real n8n (main, webhook processors, workers on the swarm), PostgreSQL, Redis, Caddy. What did not:
there is no Evolution API nor Chatwoot image in the lab; both are played by the contract server
(borgstack-lab/contract, molecule/stack/tests/contract.py) on one node, attached to the cluster's overlay under the
apps' stack names (borgstack-evolution-api:8080, borgstack-chatwoot:3000) - it checks the documented API, it is not
the apps. Evolution's webhook is posted by the test from inside that container (as Evolution would, on the overlay);
Chatwoot's is sent by the contract server itself. The full behaviour of the workflows (retries, two numbers, media,
reconciliation) is tested on one host (molecule/stack/tests/test_customer_service*.py): the same workflows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "molecule" / "stack" / "tests"))
sys.path.insert(0, str(PROJECT / "collections"))
# pylint: disable=wrong-import-position,import-error
import contract  # noqa: E402
from test_cluster import sh, wait_for as _wait_for  # noqa: E402  pylint: disable=import-error
from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret  # noqa: E402

# As tests/test_cluster.py: the nodes in inventory order - the data node, the edge node, then app nodes
# (BORGSTACK_CLUSTER_NODES for a private copy of the scenario; two nodes are enough here).
NODES = dict(item.split("=", 1) for item in os.environ.get(
    "BORGSTACK_CLUSTER_NODES",
    "borgstack-swarm-1=198.51.100.47,borgstack-swarm-2=198.51.100.48,borgstack-swarm-3=198.51.100.49").split(","))
DATA, EDGE = list(NODES)[:2]
NETWORK = "borgstack_cluster"
STACK = "borgstack"

# The webhook processors' name on the overlay (their tasks' alias; Caddy sends /webhook/* there too).
WEBHOOKS = "http://borgstack-n8n-webhook:5678"
EVOLUTION_HOOK = "/webhook/borgstack/evolution"
CHATWOOT_HOOK = "/webhook/borgstack/chatwoot"
# The wiring's defaults (playbooks/group_vars/all/customer_service.yml): instance, Chatwoot account and inbox.
INSTANCE, ACCOUNT, INBOX = "principal", 1, 1
N8N_HOST = "n8n.lab.borgstack.test"
ROOT_CERT = "/opt/borgstack/services/caddy/root.crt"
# WhatsApp -> Chatwoot and Chatwoot -> WhatsApp (fixed ids, scripts/n8n-workflows.py).
CS_WORKFLOWS = ("BorgStackCsEvo01", "BorgStackCsCwt01")


def wait_for(what: str, probe, timeout: float, every: float = 1.0):
    """test_cluster's poll, a contract server's error also counting as "not yet"."""
    return _wait_for(what, probe, timeout, every, also=(contract.ContractError,))


def derived(purpose: str) -> str:
    """The secret the cluster derived for ``purpose`` (the lab master; its length from the registry)."""
    registry = yaml.safe_load((PROJECT / "playbooks" / "group_vars" / "all" / "services.yml").read_text(
        encoding="utf-8"))["borgstack_service_defaults"]
    length = next(int((spec or {}).get("length", 40)) for entry in registry.values()
                  for name, spec in (entry.get("secrets") or {}).items() if name == purpose)
    master = subprocess.run([str(PROJECT / "lab" / "lab.sh"), "secret"], capture_output=True, text=True,
                            check=True).stdout.strip()
    return stack_secret(purpose, master, {}, length)


def sql(query: str) -> list[list[str]]:
    """Rows of a query on n8n's database, in PostgreSQL's task on the data node."""
    container = sh(DATA, "docker", "ps", "--quiet", "--filter",
                   f"label=com.docker.swarm.service.name={STACK}_postgresql").stdout.split()[0]
    out = sh(DATA, "docker", "exec", container, "psql", "-U", "postgres", "-d", "n8n", "-tA", "-F", "|",
             "-c", query).stdout
    return [line.split("|") for line in out.splitlines() if line]


def executions_since(start_id: int) -> list[list[str]]:
    """[id, workflowId, status] of the customer-service executions after ``start_id``."""
    ids = ", ".join(f"'{w}'" for w in CS_WORKFLOWS)
    return sql(f'SELECT id, "workflowId", status FROM execution_entity WHERE id > {start_id} '
               f'AND "workflowId" IN ({ids}) ORDER BY id')


def last_execution_id() -> int:
    return int(sql("SELECT coalesce(max(id), 0) FROM execution_entity")[0][0])


def finished_since(start_id: int, count: int) -> list[list[str]] | None:
    """The customer-service executions after ``start_id`` once there are ``count`` and none is still running."""
    rows = executions_since(start_id)
    return rows if len(rows) >= count and all(row[2] not in ("new", "running", "waiting") for row in rows) else None


def service_logs(service: str) -> str:
    run = sh(DATA, "docker", "service", "logs", "--raw", "--since", "10m", f"{STACK}_{service}", check=False,
             timeout=120)
    return run.stdout + run.stderr


@pytest.fixture(scope="module")
def server():
    started = contract.start(
        DATA, NETWORK, ["borgstack-evolution-api", "borgstack-chatwoot"],
        {"EVOLUTION_API_KEY": derived("evolution_api_key"), "CHATWOOT_API_TOKEN": derived("chatwoot_api_token"),
         # Chatwoot's account webhook, to the webhook processors as the chatwoot role would set it on a cluster.
         "CHATWOOT_WEBHOOK_URL": WEBHOOKS + CHATWOOT_HOOK,
         "CHATWOOT_ACCOUNT_ID": str(ACCOUNT), "CHATWOOT_INBOX_ID": str(INBOX), "EVOLUTION_INSTANCE": INSTANCE},
        timeout=120)
    started.reset()
    yield started
    contract.stop(DATA)


def incoming(number: str, text: str, message_id: str) -> dict:
    """Evolution API -> n8n, messages.upsert (as molecule/stack/tests/test_customer_service.py sends it)."""
    return {"event": "messages.upsert", "instance": INSTANCE,
            "data": {"key": {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": False, "id": message_id},
                     "message": {"conversation": text}, "messageTimestamp": int(time.time()),
                     "pushName": "João Silva", "messageType": "conversation",
                     "owner": "5511999887766@s.whatsapp.net"},
            "destination": WEBHOOKS + EVOLUTION_HOOK, "date_time": "2026-12-07T12:00:00.000Z",
            "server_url": "http://borgstack-evolution-api:8080", "apikey": "ignored"}


def test_workflows_are_active_in_the_clusters_n8n():
    ids = ", ".join(f"'{w}'" for w in CS_WORKFLOWS)
    assert sorted(sql(f"SELECT id, active FROM workflow_entity WHERE id IN ({ids})")) == \
        [[w, "t"] for w in sorted(CS_WORKFLOWS)]


def test_whatsapp_to_chatwoot_and_the_answer_back_through_the_webhook_processors_and_workers(server):
    server.reset()
    start = last_execution_id()
    number, text, answer = "5511987650001", f"Olá do cluster {uuid.uuid4().hex[:6]}", "Resposta do atendente"
    status, body = server.post_to_n8n(EVOLUTION_HOOK, incoming(number, text, uuid.uuid4().hex[:20].upper()),
                                      base_url=WEBHOOKS)
    assert status == 200, f"the webhook processors answered {status}: {body}"
    messages = wait_for("the message in Chatwoot", lambda: [
        m for m in server.state()["chatwoot"]["messages"] if m.get("content") == text], timeout=90)
    assert len(messages) == 1, messages
    conversation = server.state()["chatwoot"]["conversations"][0]
    contacts = [c for c in server.state()["chatwoot"]["contacts"] if c.get("identifier") == f"whatsapp:{number}"]
    assert len(contacts) == 1, server.state()["chatwoot"]["contacts"]

    # The agent answers in Chatwoot: its message_created webhook goes to the webhook processors.
    server.agent_message(conversation.get("display_id", conversation["id"]), answer)
    sent = wait_for("the answer sent through Evolution API", lambda: server.calls(
        service="evolution", method="POST", path_regex=f"^/message/sendText/{INSTANCE}$"), timeout=90)
    # Three executions: the customer's message, then the two message_created webhooks Chatwoot sends - for the
    # customer's message n8n wrote (incoming: not sent back) and for the agent's answer.
    rows = wait_for("the three executions finished", lambda: finished_since(start, 3), timeout=60)
    assert [(c["body"]["number"], c["body"]["text"]) for c in sent] == [(number, answer)], sent
    assert sorted(row[1] for row in rows) == sorted([CS_WORKFLOWS[0]] + [CS_WORKFLOWS[1]] * 2), rows
    assert [row[2] for row in rows] == ["success"] * 3, rows
    assert not server.rejected(), f"the contract server refused calls n8n made: {server.rejected()}"
    # Put on the queue by the webhook processors and run by the workers (each logs it), none by the main.
    processors, workers, main = service_logs("n8n-webhook"), service_logs("n8n-worker"), service_logs("n8n")
    for row in rows:
        assert f"Enqueued execution {row[0]} (job" in processors, f"no webhook processor enqueued execution {row[0]}"
        assert f"Worker started execution {row[0]} (job" in workers, f"no worker started execution {row[0]}"
        assert f"Enqueued execution {row[0]} (job" not in main, f"the main took execution {row[0]}"


def test_the_same_webhook_through_the_edges_caddy_is_answered_and_dropped(server):
    server.reset()
    start = last_execution_id()
    payload = json.dumps(incoming("5511987650002", "de fora", "XFFCLUSTER1"))
    code = sh(DATA, "curl", "--silent", "--max-time", "30", "--cacert", ROOT_CERT, "--resolve",
              f"{N8N_HOST}:443:{NODES[EDGE]}", "-H", "Content-Type: application/json", "--data", payload,
              "--output", "/dev/null", "--write-out", "%{http_code}", f"https://{N8N_HOST}{EVOLUTION_HOOK}").stdout
    assert code == "200", f"POST {EVOLUTION_HOOK} through the edge's Caddy: {code}"
    rows = wait_for("the execution finished", lambda: finished_since(start, 1), timeout=60)
    assert [row[1] for row in rows] == [CS_WORKFLOWS[0]], rows
    assert not server.calls(service="chatwoot"), "a webhook call from the internet reached Chatwoot"
