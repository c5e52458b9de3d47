# SPDX-License-Identifier: GPL-3.0-or-later
"""The other apps on a cluster (issue 24): MongoDB, Chatwoot, Evolution API, Lowcoder, FileFlows and Duplicati, their
Compose files rendered by Ansible on localhost from the stack's real wiring (playbooks/group_vars/all linked into a
throwaway inventory, each role's defaults, its template) and turned into the stack file the first manager would
deploy (filter swarm_stack with the stack's compose_service_swarm).

- One host: each rendered Compose file is byte for byte the one this repository rendered before the cluster
  placement of these apps (fixtures/apps-compose/, rendered from main at 284ae36, every service enabled).
- Three hosts with every service enabled: MongoDB, Evolution API, FileFlows, Lowcoder and Duplicati pinned by the
  node label borgstack.data.<service> to the host listing them in borgstack_node_data (one replica, stop-first);
  Chatwoot's web and Sidekiq spread (swarm_replicas / the registry's Sidekiq replicas, start-first) and its migration
  a swarm job (one task run to completion, never from a web or Sidekiq replica); the six stacks together accepted by
  ``docker stack config`` (the Docker CLI here: 28; it only parses and checks the file, no swarm needed).
- Bad input on a cluster is refused by the swarm role's validation (the validation play's) naming the variable:
  Evolution API asked twice (by its service or its Compose service's name), a pinned app no host lists, Duplicati
  on another host than the volumes it backs up.

- The webhooks to n8n on a cluster go to its webhook processors (borgstack-n8n-webhook, as Caddy sends them):
  Chatwoot's by that name, Evolution API's as borgstack-n8n-webhook.internal (a host with a top-level domain, which
  Evolution's global webhook needs), an alias the webhook processors get on the overlay; the Compose link Evolution
  uses on one host is not in its stack file. One host: the same URLs as before.
- The validation play lets MongoDB, Chatwoot, Evolution API, Lowcoder and FileFlows on a cluster (their steps after
  the install run on the host running the task: test_apps_cluster_steps.py) and still refuses Duplicati.

What does not run here, and why: none of these six apps' images exists in the lab (no MongoDB server package,
Chatwoot's Ruby gems and Evolution API's Prisma engines come from outside; LAB-FACTS.md), so no task of theirs runs on
a swarm; the job-then-services deployment of compose_service was run on a lab swarm with a Debian image instead
(docs/multi-servidor.md).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import role_plays  # noqa: E402  pylint: disable=import-error,wrong-import-position

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "apps-compose"
APPS = ["mongodb", "lowcoder", "fileflows", "evolution_api", "chatwoot", "duplicati"]
SETTINGS = {"borgstack_master_secret": "render-test-master-secret-0123456789abcdef",
            "borgstack_admin_email": "ti@example.com.br", "caddy_acme_email": "ti@example.com.br",
            "borgstack_domain": "example.com.br", "borgstack_ram_mb": 16384,
            "borgstack_services": {app: {"enabled": True} for app in APPS}}
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
PINNED = ["mongodb", "lowcoder", "fileflows", "evolution_api", "duplicati"]
CLUSTER = {
    "n1": {**LOCAL, "borgstack_node_address": "10.0.0.1",
           "borgstack_node_data": ["postgresql", "redis", "seaweedfs", *PINNED]},
    "n2": {**LOCAL, "borgstack_node_address": "10.0.0.2", "borgstack_node_edge": True},
    "n3": {**LOCAL, "borgstack_node_address": "10.0.0.3"},
}


def _inventory(tmp: Path, hosts: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    return role_plays.inventory(tmp, hosts, {**SETTINGS, **settings})


def _render_play(host: str, out: Path) -> Dict[str, Any]:
    """A play that writes <out>/<app>.compose.yaml for each app (and, on a cluster, <app>.stack.json: filter
    swarm_stack with the stack's compose_service_swarm) from its template and defaults."""
    tasks: List[Dict[str, Any]] = []
    for app in APPS:
        compose = f"lookup('ansible.builtin.template', '{ROOT / 'roles' / app / 'templates' / 'compose.yaml.j2'}')"
        tasks += [
            {"name": f"Load the {app} role's defaults",
             "ansible.builtin.include_vars": str(ROOT / "roles" / app / "defaults" / "main.yml")},
            {"name": f"Write the Compose file of {app}", "ansible.builtin.copy": {
                "dest": str(out / f"{app}.compose.yaml"), "mode": "0600", "content": "{{ %s }}" % compose}},
            {"name": f"Write the stack of {app}", "when": "compose_service_swarm.enabled | default(false)",
             "ansible.builtin.copy": {
                 "dest": str(out / f"{app}.stack.json"), "mode": "0600",
                 "content": "{{ %s | borgstack.stack.swarm_stack('%s', compose_service_swarm) | to_json }}"
                            % (compose, app)}},
        ]
    hosts = ", ".join(f"'{app}': compose_service_swarm.plan | borgstack.stack.swarm_hosts('{app}', "
                      f"compose_service_swarm.stateful, compose_service_swarm.edge)" for app in APPS)
    tasks.append({"name": "Write the webhooks to n8n", "ansible.builtin.copy": {
        "dest": str(out / "webhooks.json"), "mode": "0600",
        "content": "{{ {'chatwoot_webhook_url': chatwoot_webhook_url, 'chatwoot_internal_hosts': chatwoot_internal_hosts,"
                   " 'evolution_api_webhook_url': evolution_api_webhook_url,"
                   " 'evolution_api_linked_containers': evolution_api_linked_containers,"
                   " 'n8n_aliases': (compose_service_swarm.internal_aliases | default([]))} | to_json }}"}})
    tasks.append({"name": "Write the hosts that may run each app",
                  "when": "compose_service_swarm.enabled | default(false)",
                  "ansible.builtin.copy": {"dest": str(out / "hosts.json"), "mode": "0600",
                                           "content": "{{ {%s} | to_json }}" % hosts}})
    return {"name": "Render the apps", "hosts": host, "gather_facts": False, "tasks": tasks}


def _validate_play(case: str, host: str, out: Path, play_vars: Mapping[str, Any]) -> Dict[str, Any]:
    """A play that runs the swarm role's checks (what the validation play runs) and writes <out>/<case>.result.json:
    {failed, msg}."""
    return role_plays.validate_play(case, host, out, play_vars, "swarm", "validate")


def _run(tmp: Path, inventory: Path, plays: List[Dict[str, Any]]) -> None:
    role_plays.run_plays(tmp, inventory, plays)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("apps-single")
    _run(out, _inventory(out, {"localhost": LOCAL}, {}), [_render_play("localhost", out)])
    return out


# Each case: the settings, and a fragment of the refusal (None: this rule passes). Duplicati is refused on a cluster
# by swarm_services as well (test_only_duplicati_is_still_refused_on_a_cluster).
CLUSTER_CASES = {
    "evolution-twice": ({"swarm_replicas": {"evolution-api": 2}},
                        "swarm_replicas.evolution-api is 2: evolution_api must run exactly once (two processes on one "
                        "WhatsApp session corrupt it); set it to 1 or remove it"),
    "evolution-twice-by-service": ({"swarm_replicas": {"evolution_api": 3}},
                                   "swarm_replicas.evolution_api is 3: evolution_api must run exactly once"),
    "fileflows-twice": ({"swarm_replicas": {"fileflows": 2}},
                        "swarm_replicas.fileflows is 2: fileflows runs once, on the host that keeps its data"),
    "defaults": ({}, None),
}
# The apps whose steps after the install run on a swarm, without Duplicati (and monitoring, on unless disabled): nothing
# refused.
FIVE_APPS = {"borgstack_services": {**SETTINGS["borgstack_services"], "duplicati": {"enabled": False},
                                    "monitoring": {"enabled": False}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    """Three hosts with every service enabled: the render, and the validation cases, in one run each."""
    out = tmp_path_factory.mktemp("apps-cluster")
    # The project directory under the test's own: `docker stack config` reads each env_file (written empty below).
    _run(out, _inventory(out, CLUSTER, {"swarm_replicas": {"chatwoot": 2}, "stack_project_dir": str(out / "project")}), [
        *[_validate_play(case, "n1", out, settings) for case, (settings, _msg) in CLUSTER_CASES.items()],
        _validate_play("five-apps", "n1", out, FIVE_APPS),
        _render_play("n1", out)])
    return out


@pytest.fixture(scope="module")
def misplaced(tmp_path_factory) -> Path:
    """Three hosts where FileFlows is on no host's list and Duplicati is away from Evolution API's volume."""
    out = tmp_path_factory.mktemp("apps-misplaced")
    hosts = {"n1": {**CLUSTER["n1"], "borgstack_node_data": ["postgresql", "redis", "seaweedfs", "mongodb",
                                                             "lowcoder", "evolution_api"]},
             "n2": {**CLUSTER["n2"], "borgstack_node_data": ["duplicati"]}, "n3": CLUSTER["n3"]}
    _run(out, _inventory(out, hosts, {}), [_validate_play("misplaced", "n1", out, {})])
    return out


@pytest.mark.parametrize("app", APPS)
def test_the_single_host_compose_file_is_unchanged(single, app):
    rendered = (single / f"{app}.compose.yaml").read_text()
    assert rendered == (FIXTURES / f"{app}.yaml").read_text(), (
        f"{app}'s single-host Compose file changed: one host must stay exactly as before")
    assert not (single / f"{app}.stack.json").exists()


def _stacks(cluster_dir: Path) -> Dict[str, Dict[str, Any]]:
    return {app: json.loads((cluster_dir / f"{app}.stack.json").read_text()) for app in APPS}


@pytest.mark.parametrize("app", PINNED)
def test_an_app_with_its_own_data_runs_once_on_the_host_that_keeps_it(cluster, app):
    stack = _stacks(cluster)[app]
    hosts = json.loads((cluster / "hosts.json").read_text())
    assert hosts[app] == ["n1"], "its files (configuration, passwords) are written on its node only"
    for key, spec in stack["services"].items():
        deploy = spec["deploy"]
        assert deploy["placement"] == {"constraints": [f"node.labels.borgstack.data.{app} == true"]}, key
        assert deploy["replicas"] == 1 and deploy["update_config"]["order"] == "stop-first", key
        assert deploy["rollback_config"]["order"] == "stop-first", key


def test_chatwoot_spreads_and_migrates_once_before_its_web_and_workers(cluster):
    stack = _stacks(cluster)["chatwoot"]
    assert sorted(stack["services"]) == ["chatwoot", "chatwoot-migrate", "chatwoot-sidekiq"]
    web, workers, job = (stack["services"][k] for k in ("chatwoot", "chatwoot-sidekiq", "chatwoot-migrate"))
    assert web["deploy"]["replicas"] == 2 and workers["deploy"]["replicas"] == 1
    for spread in (web, workers):
        assert "placement" not in spread["deploy"] and spread["deploy"]["update_config"]["order"] == "start-first"
        assert "chatwoot_prepare" not in json.dumps(spread), "a web or Sidekiq replica never migrates"
    assert job["deploy"]["mode"] == "replicated-job" and job["deploy"]["replicas"] == 1
    assert job["deploy"]["restart_policy"]["condition"] == "on-failure"
    assert "db:chatwoot_prepare" in json.dumps(job["command"])
    assert web["networks"] == {"borgstack_cluster": {"aliases": ["borgstack-chatwoot"]}}
    assert workers["networks"] == ["borgstack_cluster"] and "container_name" not in workers
    # Workers and web: the same settings (one secrets.env, one environment).
    assert web["environment"] == workers["environment"] and web["env_file"] == workers["env_file"]
    assert json.loads((cluster / "hosts.json").read_text())["chatwoot"] == ["n1", "n2", "n3"]


def test_the_registrys_sidekiq_replicas_become_one_swarm_service(tmp_path):
    hosts = dict(CLUSTER)
    _run(tmp_path, _inventory(tmp_path, hosts, {"borgstack_services": {
        **SETTINGS["borgstack_services"], "chatwoot": {"enabled": True,
                                                       "containers": {"chatwoot-sidekiq": {"replicas": 3}}}}}),
         [_render_play("n1", tmp_path)])
    services = json.loads((tmp_path / "chatwoot.stack.json").read_text())["services"]
    assert services["chatwoot-sidekiq"]["deploy"]["replicas"] == 3
    assert not [key for key in services if key.startswith("chatwoot-sidekiq-")]


def test_every_app_together_is_accepted_by_docker_stack_config(cluster):
    if shutil.which("docker") is None:
        pytest.fail("docker not found: `docker stack config` is part of this test")
    combined: Dict[str, Any] = {"version": None, "services": {}, "networks": {}, "volumes": {}}
    for app, stack in _stacks(cluster).items():
        combined["version"] = stack["version"]
        clash = set(combined["services"]) & set(stack["services"])
        assert not clash, f"{app} reuses the Compose service names {clash}"
        combined["services"].update(stack["services"])
        combined["networks"].update(stack.get("networks") or {})
        combined["volumes"].update(stack.get("volumes") or {})
    assert len(combined["services"]) == 8
    for app in APPS:
        (cluster / "project" / "services" / app).mkdir(parents=True, exist_ok=True)
        (cluster / "project" / "services" / app / "secrets.env").touch()
    stack_file = cluster / "all.stack.yaml"
    stack_file.write_text(yaml.safe_dump(combined))
    proc = subprocess.run(["docker", "stack", "config", "--compose-file", str(stack_file)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)["services"]
    assert config["chatwoot-migrate"]["deploy"]["mode"] == "replicated-job"
    assert config["evolution-api"]["deploy"]["placement"]["constraints"] == [
        "node.labels.borgstack.data.evolution_api == true"]
    for key, spec in config.items():
        if key != "chatwoot-migrate":
            assert spec["deploy"]["endpoint_mode"] == "dnsrr", key
            assert spec["deploy"]["update_config"]["failure_action"] == "rollback", key
        assert list(spec["networks"]) == ["borgstack_cluster"], key


def _unplaced(msg: str) -> List[str]:
    """The services the swarm role's refusal names (their order follows Ansible's difference filter: not fixed)."""
    found = re.search(r"cannot be placed on a swarm yet: (?P<names>[a-z_, ]+) \(only ", msg)
    assert found, msg
    return sorted(found["names"].split(", "))


@pytest.mark.parametrize("case", sorted(CLUSTER_CASES))
def test_bad_placement_is_refused_before_any_change_naming_the_variable(cluster, case):
    result = json.loads((cluster / f"{case}.result.json").read_text())
    fragment = CLUSTER_CASES[case][1]
    # Duplicati (and monitoring) are not in swarm_services yet: the validation refuses them on a cluster in any case.
    assert result["failed"] is True
    assert _unplaced(result["msg"]) == ["duplicati", "monitoring"], result["msg"]
    if fragment is None:
        assert "swarm_replicas" not in result["msg"] and "borgstack_node_data" not in result["msg"], result["msg"]
    else:
        assert fragment in result["msg"], result["msg"]


def test_a_pinned_app_on_no_host_and_duplicati_away_from_its_sources_are_refused(misplaced):
    msg = json.loads((misplaced / "misplaced.result.json").read_text())["msg"]
    assert ("fileflows is enabled and, on a cluster, runs on the one host that keeps its data, but no host lists it "
            "in borgstack_node_data: add fileflows to borgstack_node_data of the host whose disk keeps its volumes"
            in msg), msg
    assert ("duplicati (host n2) backs up the volumes of evolution_api, which are on host n1: a volume is read on its "
            "own node only; list duplicati and evolution_api in borgstack_node_data of the same host" in msg), msg


def test_only_duplicati_is_still_refused_on_a_cluster(cluster):
    """MongoDB, Chatwoot, Evolution API, Lowcoder and FileFlows pass the validation on three hosts (their steps run
    on the host running the task); Duplicati alone is named (its host trigger finds one host's container)."""
    assert json.loads((cluster / "five-apps.result.json").read_text()) == {"failed": False}
    msg = json.loads((cluster / "defaults.result.json").read_text())["msg"]
    assert _unplaced(msg) == ["duplicati", "monitoring"], msg


def test_one_host_webhooks_to_n8n_are_unchanged(single):
    hooks = json.loads((single / "webhooks.json").read_text())
    assert hooks["chatwoot_webhook_url"] == "http://borgstack-n8n:5678/webhook/borgstack/chatwoot"
    assert hooks["evolution_api_webhook_url"] == "http://borgstack-n8n.internal:5678/webhook/borgstack/evolution"
    assert hooks["evolution_api_linked_containers"] == ["borgstack-n8n"]
    assert "borgstack-n8n-webhook" not in hooks["chatwoot_internal_hosts"] and hooks["n8n_aliases"] == []


def test_on_a_cluster_the_webhooks_go_to_n8ns_webhook_processors(cluster):
    hooks = json.loads((cluster / "webhooks.json").read_text())
    assert hooks["chatwoot_webhook_url"] == "http://borgstack-n8n-webhook:5678/webhook/borgstack/chatwoot"
    # Accepted by Chatwoot's own validation: a host of the stack's internal network.
    assert "borgstack-n8n-webhook" in hooks["chatwoot_internal_hosts"]
    assert (hooks["evolution_api_webhook_url"]
            == "http://borgstack-n8n-webhook.internal:5678/webhook/borgstack/evolution")
    assert hooks["evolution_api_linked_containers"] == ["borgstack-n8n-webhook"]
    # The name Evolution uses is an alias the webhook processors get on the overlay (filter swarm_stack).
    assert hooks["n8n_aliases"] == ["n8n-webhook"]
    evolution = _stacks(cluster)["evolution_api"]["services"]["evolution-api"]
    assert "external_links" not in evolution, "a swarm has no links: the overlay alias gives the name"
    assert (evolution["environment"]["WEBHOOK_GLOBAL_URL"]
            == "http://borgstack-n8n-webhook.internal:5678/webhook/borgstack/evolution")
