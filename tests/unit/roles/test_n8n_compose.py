# SPDX-License-Identifier: GPL-3.0-or-later
"""n8n's Compose file and, on a cluster, its stack, rendered by Ansible on localhost from the stack's real wiring
(playbooks/group_vars/all linked into a throwaway inventory, the n8n role's defaults, its template).

- One host: the rendered Compose file is byte for byte the one this repository rendered before queue mode came to
  the cluster (fixtures/n8n-compose/, rendered from main at 24c58d6): regular mode by default, and the opt-in queue
  mode with two named workers.
- Three hosts (a cluster): n8n runs in queue mode without being asked - one main process (one replica, stop-first),
  one ``n8n-worker`` swarm service with the registry's number of replicas (2 by default on a cluster) and one
  ``n8n-webhook`` service of webhook processors (2 by default, start-first), all on
  the same database, Redis database and password file, encryption key (secrets.env) and binary-data mode ``default``
  (n8n 1.113.3 has no shared mode without a licence: filesystem is one node's volume, s3 needs one); the worker's
  memory limit from the per-node RAM plan.
- Bad input on a cluster is refused by the role's validation naming the variable; webhook processors on one host
  are refused.

What does not run here: n8n itself (molecule/cluster runs it on three lab hosts and proves an execution on a
worker).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import role_plays  # noqa: E402  pylint: disable=import-error,wrong-import-position

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "n8n-compose"
TEMPLATE = ROOT / "roles" / "n8n" / "templates" / "compose.yaml.j2"
DEFAULTS = ROOT / "roles" / "n8n" / "defaults" / "main.yml"
SETTINGS = {"borgstack_master_secret": "render-test-master-secret-0123456789abcdef",
            "borgstack_admin_email": "ti@example.com.br", "caddy_acme_email": "ti@example.com.br",
            "borgstack_domain": "example.com.br", "borgstack_ram_mb": 16384}
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
CLUSTER = {
    "n1": {**LOCAL, "borgstack_node_address": "10.0.0.1", "borgstack_node_data": ["postgresql", "redis", "seaweedfs"]},
    "n2": {**LOCAL, "borgstack_node_address": "10.0.0.2", "borgstack_node_edge": True},
    # A smaller node (every app may land on it, so it still holds their minimums): the workers' limit is the
    # smallest any node that may run them gives.
    "n3": {**LOCAL, "borgstack_node_address": "10.0.0.3", "borgstack_ram_mb": 12288},
}


def _inventory(tmp: Path, hosts: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    return role_plays.inventory(tmp, hosts, {**SETTINGS, **settings})


def _render_play(name: str, host: str, out: Path, play_vars: Mapping[str, Any] | None = None) -> Dict[str, Any]:
    """A play that writes <out>/<name>.compose.yaml (and, on a cluster, <name>.stack.yaml: filter swarm_stack with
    the stack's compose_service_swarm) from n8n's template and defaults."""
    compose = f"lookup('ansible.builtin.template', '{TEMPLATE}')"
    return {"name": f"Render {name}", "hosts": host, "gather_facts": False, "vars": dict(play_vars or {}), "tasks": [
        {"name": "Load the n8n role's defaults", "ansible.builtin.include_vars": str(DEFAULTS)},
        {"name": "Write the Compose file", "ansible.builtin.copy": {
            "dest": str(out / f"{name}.compose.yaml"), "mode": "0600", "content": "{{ %s }}" % compose}},
        {"name": "Write the stack", "when": "compose_service_swarm.enabled | default(false)",
         "ansible.builtin.copy": {"dest": str(out / f"{name}.stack.json"), "mode": "0600",
                                  "content": "{{ %s | borgstack.stack.swarm_stack('n8n', compose_service_swarm)"
                                             " | to_json }}" % compose}},
        {"name": "Write the contract and the mode", "ansible.builtin.copy": {
            "dest": str(out / f"{name}.facts.json"), "mode": "0600",
            "content": "{{ {'redis': n8n_service.redis, 'worker': n8n_service.containers['n8n-worker'],"
                       " 'webhook': n8n_service.containers['n8n-webhook'],"
                       " 'plan': borgstack_ram_plan, 'mode': n8n_executions_mode} | to_json }}"}},
    ]}


def _validate_play(case: str, host: str, out: Path, play_vars: Mapping[str, Any],
                   tasks_from: str = "validate_cluster") -> Dict[str, Any]:
    """A play that runs n8n's cluster checks (tasks/validate_cluster.yml, which validate.yml includes on a cluster:
    the whole validation takes ~25 s a case) and writes <out>/<case>.result.json: {failed, msg}."""
    return role_plays.validate_play(case, host, out, play_vars, "n8n", tasks_from)


def _run(tmp: Path, inventory: Path, plays: List[Dict[str, Any]]) -> None:
    role_plays.run_plays(tmp, inventory, plays)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One host: the default (regular) and the opt-in queue mode with two workers."""
    out = tmp_path_factory.mktemp("n8n-single")
    # The check first: the render plays' include_vars outranks play vars for the rest of the run.
    _run(out, _inventory(out, {"localhost": LOCAL}, {}), [
        _validate_play("one-host-processors", "localhost", out,
                       {"borgstack_services": {"n8n": {"containers": {"n8n-worker": {"replicas": 1},
                                                                      "n8n-webhook": {"replicas": 2}}}}},
                       tasks_from="validate"),
        _render_play("regular", "localhost", out),
        _render_play("queue-two-workers", "localhost", out,
                     {"borgstack_services": {"n8n": {"containers": {"n8n-worker": {"replicas": 2}}}}}),
    ])
    return out


CLUSTER_CASES = {
    "workers-zero": ({"borgstack_services": {"n8n": {"containers": {"n8n-worker": {"replicas": 0}}}}},
                     "borgstack_services.n8n.containers.n8n-worker.replicas (found 0): on a cluster n8n runs in "
                     "queue mode and needs at least one worker"),
    "filesystem": ({"n8n_binary_data_mode": "filesystem"},
                   "n8n_binary_data_mode (found filesystem): filesystem keeps files on one node's volume"),
    "two-mains": ({"swarm_replicas": {"n8n": 2}},
                  "swarm_replicas.n8n (found 2): n8n's main process runs exactly once"),
    "workers-in-swarm-replicas": ({"swarm_replicas": {"n8n-worker": 3}},
                                  "swarm_replicas.n8n-worker (found 3): the number of workers is "
                                  "borgstack_services.n8n.containers.n8n-worker.replicas"),
    "webhook-in-swarm-replicas": ({"swarm_replicas": {"n8n-webhook": 3}},
                                  "swarm_replicas.n8n-webhook (found 3): the number of webhook processors is "
                                  "borgstack_services.n8n.containers.n8n-webhook.replicas"),
    "regular-asked": ({"n8n_executions_mode": "regular"},
                      "n8n_executions_mode (found regular): on a cluster n8n runs in queue mode"),
    "defaults": ({}, None),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    """Three hosts: the defaults, three workers asked for, and the validation cases, in one run."""
    out = tmp_path_factory.mktemp("n8n-cluster")
    # The checks first: the render plays' include_vars outranks play vars for the rest of the run.
    _run(out, _inventory(out, CLUSTER, {}), [
        *[_validate_play(case, "n1", out, settings) for case, (settings, _msg) in CLUSTER_CASES.items()],
        _render_play("cluster", "n1", out),
        _render_play("cluster-three", "n1", out,
                     {"borgstack_services": {"n8n": {"containers": {"n8n-worker": {"replicas": 3},
                                                                    "n8n-webhook": {"replicas": 3}}}}}),
        _render_play("cluster-no-processors", "n1", out,
                     {"borgstack_services": {"n8n": {"containers": {"n8n-webhook": {"replicas": 0}}}}}),
    ])
    return out


@pytest.mark.parametrize("name", ["regular", "queue-two-workers"])
def test_the_single_host_compose_file_is_unchanged(single, name):
    rendered = (single / f"{name}.compose.yaml").read_text()
    assert rendered == (FIXTURES / f"{name}.yaml").read_text(), (
        f"n8n's single-host Compose file ({name}) changed: one host must stay exactly as before")
    assert not (single / f"{name}.stack.json").exists()


def test_one_host_stays_in_regular_mode(single):
    facts = json.loads((single / "regular.facts.json").read_text())
    assert facts["mode"] == "regular" and facts["worker"]["names"] == []
    assert "EXECUTIONS_MODE: \"regular\"" in (single / "regular.compose.yaml").read_text()


def _env(service: Mapping[str, Any]) -> Dict[str, str]:
    return {str(k): str(v) for k, v in service["environment"].items()}


def test_a_cluster_runs_n8n_in_queue_mode_with_workers(cluster):
    stack = json.loads((cluster / "cluster.stack.json").read_text())
    facts = json.loads((cluster / "cluster.facts.json").read_text())
    assert facts["mode"] == "queue"
    assert sorted(stack["services"]) == ["n8n", "n8n-webhook", "n8n-worker"]
    main, worker = stack["services"]["n8n"], stack["services"]["n8n-worker"]
    assert main["deploy"]["replicas"] == 1 and main["deploy"]["update_config"]["order"] == "stop-first"
    assert worker["deploy"]["replicas"] == 2 and worker["deploy"]["update_config"]["order"] == "start-first"
    assert worker["command"] == ["worker", "--concurrency=10"] and "command" not in main
    # Caddy reaches the main by its name; the workers have none (nothing connects to them).
    assert main["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-n8n"]}}
    assert worker["networks"] == ["borgstack_cluster"]
    main_env, worker_env = _env(main), _env(worker)
    assert main_env == worker_env, "the main and the workers must share every setting"
    assert main_env["EXECUTIONS_MODE"] == "queue"
    assert main_env["QUEUE_BULL_REDIS_HOST"] == facts["redis"]["host"] == "borgstack-redis"
    assert main_env["QUEUE_BULL_REDIS_DB"] == str(facts["redis"]["db"])
    assert main_env["QUEUE_BULL_REDIS_PASSWORD_FILE"] == "/run/secrets/n8n-redis-password"
    assert main_env["N8N_DEFAULT_BINARY_DATA_MODE"] == "default"
    assert main_env["DB_POSTGRESDB_HOST"] == "borgstack-postgresql"
    assert main["env_file"] == worker["env_file"] == ["/opt/borgstack/services/n8n/secrets.env"]
    assert "/opt/borgstack/services/n8n/redis-password:/run/secrets/n8n-redis-password:ro" in worker["volumes"]


def test_a_cluster_runs_webhook_processors_start_first(cluster):
    """Two ``n8n webhook`` processors by default on a cluster, start-first (an update of n8n keeps one answering),
    with every setting of the main, one name on the overlay for all their tasks (Caddy's upstream for /webhook/*), a
    health check that passes only once the webhook routes answer, and their memory limit from the RAM plan."""
    stack = json.loads((cluster / "cluster.stack.json").read_text())
    facts = json.loads((cluster / "cluster.facts.json").read_text())
    main, hook = stack["services"]["n8n"], stack["services"]["n8n-webhook"]
    assert hook["command"] == ["webhook"]
    assert hook["deploy"]["replicas"] == 2 == len(facts["webhook"]["names"])
    assert hook["deploy"]["update_config"]["order"] == "start-first"
    assert hook["deploy"]["rollback_config"]["order"] == "start-first"
    assert hook["deploy"]["update_config"]["failure_action"] == "rollback"
    assert hook["deploy"]["endpoint_mode"] == "dnsrr"
    # ... and borgstack-n8n-webhook.internal, Evolution API's webhook host (it refuses a host without a top-level
    # domain; a swarm has no Compose links: compose_service_swarm.internal_aliases).
    assert hook["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-n8n-webhook",
                                                                  "borgstack-n8n-webhook.internal"]}}
    assert main["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-n8n"]}}
    assert _env(hook) == _env(main) and hook["env_file"] == main["env_file"] and hook["volumes"] == main["volumes"]
    probe = hook["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "node", "-e"]
    assert "http://127.0.0.1:5678/webhook/borgstack-health" in probe[3] and "statusCode === 404" in probe[3]
    assert "/json/" in probe[3] and hook["healthcheck"]["start_interval"] == "2s"
    limit = facts["plan"]["services"]["n8n-webhook"]["limit_mb"]
    assert hook["deploy"]["resources"]["limits"]["memory"] == f"{limit}m" and limit >= 512
    three = json.loads((cluster / "cluster-three.stack.json").read_text())
    assert three["services"]["n8n-webhook"]["deploy"]["replicas"] == 3
    none = json.loads((cluster / "cluster-no-processors.stack.json").read_text())
    assert sorted(none["services"]) == ["n8n", "n8n-worker"]


def test_webhook_processors_on_one_host_are_refused(single):
    outcome = json.loads((single / "one-host-processors.result.json").read_text())
    assert outcome["failed"] is True, outcome
    assert "borgstack_services.n8n.containers.n8n-webhook.replicas is 2" in outcome["msg"]
    assert "run on a cluster only" in outcome["msg"] and "Nothing was changed" in outcome["msg"]


def test_the_workers_memory_comes_from_the_per_node_ram_plan(cluster):
    stack = json.loads((cluster / "cluster.stack.json").read_text())
    plan = json.loads((cluster / "cluster.facts.json").read_text())["plan"]
    nodes = plan["nodes"]
    assert sorted(nodes) == ["n1", "n2", "n3"] and nodes["n3"]["total_mb"] == 12288
    worker_limits = {host: node["services"]["n8n-worker"]["limit_mb"] for host, node in nodes.items()}
    # Every node may run a worker; the node with the least room (here the data node, which also holds PostgreSQL,
    # Redis and SeaweedFS) gives the limit of every worker task; the smaller app node gives less than the larger.
    assert plan["services"]["n8n-worker"]["limit_mb"] == min(worker_limits.values()) < worker_limits["n2"]
    assert worker_limits["n3"] < worker_limits["n2"]
    limit = plan["services"]["n8n-worker"]["limit_mb"]
    assert stack["services"]["n8n-worker"]["deploy"]["resources"]["limits"]["memory"] == f"{limit}m"
    # PostgreSQL is sized by the node that holds it only.
    assert "postgresql" not in nodes["n2"]["services"] and "postgresql" in nodes["n1"]["services"]
    assert plan["postgresql"] == nodes["n1"]["postgresql"]


def test_the_number_of_workers_comes_from_the_registry(cluster):
    stack = json.loads((cluster / "cluster-three.stack.json").read_text())
    assert stack["services"]["n8n-worker"]["deploy"]["replicas"] == 3
    plan = json.loads((cluster / "cluster-three.facts.json").read_text())["plan"]
    assert plan["services"]["n8n-worker"]["count"] == 3
    # Three workers over three nodes: one per node in each node's plan.
    assert {n["services"]["n8n-worker"]["count"] for n in plan["nodes"].values()} == {1}


@pytest.mark.parametrize("case", list(CLUSTER_CASES))
def test_bad_cluster_input_is_refused_naming_the_variable(cluster, case):
    outcome = json.loads((cluster / f"{case}.result.json").read_text())
    message = CLUSTER_CASES[case][1]
    if message is None:
        assert outcome == {"failed": False}
    else:
        assert outcome["failed"] is True and message in outcome["msg"], outcome
