# SPDX-License-Identifier: GPL-3.0-or-later
"""The apps' steps after the install on a cluster (issue 24): Chatwoot's first account (``rails runner`` in the web
container), Evolution API's WhatsApp instances (``node`` in its container) and Lowcoder's question to MongoDB
(``mongosh`` in MongoDB's container, before Lowcoder's own deployment), run by Ansible on three local hosts of a
cluster inventory (the stack's real group_vars, each role's own task files) with a fake ``docker`` on the PATH that
answers as the Docker CLI of each node would and records every call.

- Each step runs on one host only: the first, in play order, that runs a task of the service (compose_service's
  step_containers.yml, filter swarm_step_containers), in the container the swarm named there; the other hosts skip
  it. Chatwoot with a web task on two nodes gets its step once.
- Lowcoder's answer, asked on the node running MongoDB's task, reaches every host (the first manager renders the
  stack file from it); with no MongoDB task anywhere, every host stops naming the service.
- One host: the same steps call ``docker`` exactly as before (the Compose containers' names, the same arguments).

What does not run here, and why: no image of Chatwoot, Evolution API, Lowcoder or MongoDB exists in the lab
(LAB-FACTS.md), so the fake docker answers as their scripts would (a result line, an instance state, a count); what
their scripts do inside is tested elsewhere (setup.rb, instance.js are the one-host code, unchanged). MongoDB's users
and Duplicati's job enter the task's network namespace (tests/unit/plugins/module_utils/test_netns.py and the
modules' tests); their role steps need pymongo and a Duplicati server, so they are not run here.
"""
from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import role_plays  # noqa: E402  pylint: disable=import-error,wrong-import-position

APPS = ["mongodb", "lowcoder", "evolution_api", "chatwoot"]
SETTINGS = {"borgstack_master_secret": "render-test-master-secret-0123456789abcdef",
            "borgstack_admin_email": "ti@example.com.br", "caddy_acme_email": "ti@example.com.br",
            "borgstack_domain": "example.com.br", "borgstack_ram_mb": 16384,
            "borgstack_services": {app: {"enabled": True} for app in APPS}}
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
CLUSTER = {
    "n1": {**LOCAL, "borgstack_node_address": "10.0.0.1",
           "borgstack_node_data": ["postgresql", "redis", "seaweedfs", "mongodb", "lowcoder", "evolution_api"]},
    "n2": {**LOCAL, "borgstack_node_address": "10.0.0.2", "borgstack_node_edge": True},
    "n3": {**LOCAL, "borgstack_node_address": "10.0.0.3"},
}
# The stack's tasks each node runs (docker ps: <swarm service> <container>): Chatwoot's web on n2 and n3.
TASKS = {
    "n1": {"borgstack_mongodb": "borgstack_mongodb.1.m0ng0", "borgstack_evolution-api": "borgstack_evolution-api.1.ev0",
           "borgstack_lowcoder": "borgstack_lowcoder.1.l0w"},
    "n2": {"borgstack_chatwoot": "borgstack_chatwoot.1.cw1", "borgstack_caddy": "borgstack_caddy.x.cad"},
    "n3": {"borgstack_chatwoot": "borgstack_chatwoot.2.cw2", "borgstack_chatwoot-sidekiq": "borgstack_chatwoot-sidekiq.1.sk"},
    "localhost": {},
}
NO_MONGODB = {host: {k: v for k, v in tasks.items() if k != "borgstack_mongodb"} for host, tasks in TASKS.items()}

# Answers as the Docker CLI would, per node (FAKE_HOST); every call recorded (never stdin: it holds secrets).
FAKE_DOCKER = r'''#!/usr/bin/env python3
import json, os, sys
argv = sys.argv[1:]
host = os.environ.get("FAKE_HOST", "?")
entry = {"host": host, "argv": argv}
if "BORGSTACK_LOWCODER_MONGODB_URL" in argv:
    entry["url_in_env"] = os.environ.get("BORGSTACK_LOWCODER_MONGODB_URL", "").startswith("mongodb://")
if argv[:1] == ["exec"]:
    sys.stdin.read()
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\n")
tasks = json.loads(os.environ["FAKE_TASKS"]).get(host, {})
if argv[:1] == ["ps"]:
    print("\n".join(f"{service} {container}" for service, container in tasks.items()))
elif argv[:1] == ["inspect"]:
    print("true")
elif argv[:1] == ["exec"] and "rails" in argv:
    print('BORGSTACK_RESULT {"changed": false, "account_id": 1, "inbox_id": 1, "actions": []}')
elif argv[:1] == ["exec"] and "node" in argv:
    print(json.dumps({"state": "exists"}))
elif argv[:1] == ["exec"] and "mongosh" in argv:
    print(os.environ.get("FAKE_ADMINS", "1"))
'''


def _fake_docker(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _play(name: str, hosts: str, tmp: Path, tasks: Mapping[str, Any], admins: str,
          steps: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"name": name, "hosts": hosts, "gather_facts": False,
            "environment": {"PATH": f"{tmp / 'bin'}:{{{{ lookup('env', 'PATH') }}}}",
                            "FAKE_HOST": "{{ inventory_hostname }}", "FAKE_DOCKER_LOG": str(tmp / "docker.log"),
                            "FAKE_TASKS": json.dumps(tasks), "FAKE_ADMINS": admins},
            "tasks": steps}


def _steps(tmp: Path, case: str, swarm: bool) -> List[Dict[str, Any]]:
    """What the roles run after their deployments (compose_service's swarm.yml records the step containers first)."""
    record = {"name": "Record the Lowcoder answer on each host", "ansible.builtin.copy": {
        "dest": str(tmp / f"{case}-{{{{ inventory_hostname }}}}.json"), "mode": "0600",
        "content": "{{ {'admin_exists': __lowcoder_admin_exists | bool} | to_json }}"}}
    steps: List[Dict[str, Any]] = []
    if swarm:
        steps.append({"name": "Record the containers of the steps (compose_service, after a deployment)",
                      "ansible.builtin.include_role": {"name": "borgstack.stack.compose_service",
                                                       "tasks_from": "step_containers"},
                      "vars": {"compose_service_project": "borgstack"}})
    steps += [
        {"name": "Chatwoot's steps",
         "ansible.builtin.include_role": {"name": "borgstack.stack.chatwoot", "tasks_from": "steps"}},
        {"name": "Evolution API's steps",
         "ansible.builtin.include_role": {"name": "borgstack.stack.evolution_api", "tasks_from": "steps"}},
        {"name": "Lowcoder's question to MongoDB", "ansible.builtin.include_role": {
            "name": "borgstack.stack.lowcoder", "tasks_from": "admin_lookup"}},
        record,
    ]
    return steps


def _refused(tmp: Path) -> Dict[str, Any]:
    """Lowcoder's question when no host runs MongoDB's task: every host records the refusal."""
    return {"name": "Lowcoder without MongoDB", "block": [
        {"name": "Ask",
         "ansible.builtin.include_role": {"name": "borgstack.stack.lowcoder", "tasks_from": "admin_lookup"}},
        {"name": "Record success", "ansible.builtin.copy": {
            "dest": str(tmp / "refused-{{ inventory_hostname }}.json"), "mode": "0600", "content": '{"failed": false}'}}],
        "rescue": [{"name": "Record the refusal", "ansible.builtin.copy": {
            "dest": str(tmp / "refused-{{ inventory_hostname }}.json"), "mode": "0600",
            "content": "{{ {'failed': true, 'msg': ansible_failed_result.msg} | to_json }}"}}]}


def _calls(tmp: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (tmp / "docker.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("steps-cluster")
    _fake_docker(tmp)
    inventory = role_plays.inventory(tmp, CLUSTER, SETTINGS)
    role_plays.run_plays(tmp, inventory, [
        _play("The steps on the cluster", "borgstack", tmp, TASKS, "1", _steps(tmp, "cluster", True)),
        _play("The steps with no MongoDB task", "borgstack", tmp, NO_MONGODB, "1", [
            {"name": "Record the containers", "ansible.builtin.include_role": {
                "name": "borgstack.stack.compose_service", "tasks_from": "step_containers"},
             "vars": {"compose_service_project": "borgstack"}},
            {"name": "Forget the first play's answer", "ansible.builtin.set_fact": {"__lowcoder_admin_lookup": {}}},
            _refused(tmp)])])
    return tmp


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("steps-single")
    _fake_docker(tmp)
    inventory = role_plays.inventory(tmp, {"localhost": LOCAL}, SETTINGS)
    role_plays.run_plays(tmp, inventory, [_play("The steps on one host", "borgstack", tmp, TASKS, "0",
                                                _steps(tmp, "single", False))])
    return tmp


def _steps_of(calls: List[Dict[str, Any]], word: str) -> List[Dict[str, Any]]:
    return [call for call in calls if call["argv"][:1] == ["exec"] and word in call["argv"]]


def test_each_step_runs_once_on_the_host_running_the_task_in_its_container(cluster):
    calls = _calls(cluster)
    # Every host read its own tasks (docker ps of the stack) once per include of step_containers.
    assert {call["host"] for call in calls if call["argv"][:1] == ["ps"]} == {"n1", "n2", "n3"}
    chatwoot = _steps_of(calls, "rails")
    assert [(c["host"], c["argv"][2]) for c in chatwoot] == [("n2", "borgstack_chatwoot.1.cw1")], (
        "Chatwoot's web runs on n2 and n3: its first account is made once, on n2 (the first in play order)")
    assert [c["host"] for c in calls if c["argv"][:1] == ["inspect"]] == ["n2"]
    evolution = _steps_of(calls, "node")
    assert evolution and {(c["host"], c["argv"][2]) for c in evolution} == {("n1", "borgstack_evolution-api.1.ev0")}
    mongosh = _steps_of(calls, "mongosh")
    assert [(c["host"], c["argv"][3]) for c in mongosh] == [("n1", "borgstack_mongodb.1.m0ng0")]
    assert mongosh[0]["url_in_env"] is True, "the MongoDB URL reaches docker exec through the environment"


def test_lowcoders_answer_reaches_every_host(cluster):
    for host in CLUSTER:
        assert json.loads((cluster / f"cluster-{host}.json").read_text()) == {"admin_exists": True}, host


def test_without_a_mongodb_task_every_host_stops_naming_it(cluster):
    for host in CLUSTER:
        result = json.loads((cluster / f"refused-{host}.json").read_text())
        assert result["failed"] is True, host
        assert result["msg"].startswith("No task of MongoDB (borgstack_mongodb) runs on any host of the swarm"), result
        assert "Nothing of Lowcoder was changed." in result["msg"]
    second = [c for c in _calls(cluster) if "mongosh" in c["argv"]]
    assert len(second) == 1, "the second play asked nobody"


def test_one_host_calls_docker_as_before(single):
    calls = _calls(single)
    assert not [c for c in calls if c["argv"][:1] == ["ps"]], "one host: no swarm tasks to look up"
    assert [c["argv"] for c in calls if c["argv"][:1] == ["inspect"]] == [
        ["inspect", "--format", "{{.State.Running}}", "borgstack-chatwoot"]]
    assert [c["argv"][:9] for c in _steps_of(calls, "rails")] == [
        ["exec", "--interactive", "borgstack-chatwoot", "bundle", "exec", "rails", "runner", "/borgstack/setup.rb"]]
    assert {tuple(c["argv"][:4]) for c in _steps_of(calls, "node")} == {
        ("exec", "--interactive", "borgstack-evolution-api", "node")}
    assert [c["argv"][:4] for c in _steps_of(calls, "mongosh")] == [
        ["exec", "--env", "BORGSTACK_LOWCODER_MONGODB_URL", "borgstack-mongodb"]]
    assert json.loads((single / "single-localhost.json").read_text()) == {"admin_exists": False}
