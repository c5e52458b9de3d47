# SPDX-License-Identifier: GPL-3.0-or-later
"""A disabled service on a cluster (issue 24): compose_service's swarm.yml removes it from the swarm on the first
manager - its swarm services (``<project>_<Compose service>``, the keys of its contract's containers), then its Docker
secrets and configs (labelled with it) - and keeps its volumes, database and files, as compose_deploy's state absent
does on one host. Here: the task file's shape (the removal only when disabled, only on the first manager, one read
that runs in check mode too and fails soft where there is no swarm yet, removals by modules that honour check mode,
no volume touched) and its loop expressions evaluated by Ansible's templating on what ``docker ... ls`` prints.

What does not run here: Docker itself (no swarm on this machine). molecule/cluster's
test_a_disabled_service_leaves_the_swarm_and_comes_back removes Directus from a real swarm and puts it back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
SWARM = ROOT / "roles" / "compose_service" / "tasks" / "swarm.yml"


def _removal() -> dict[str, Any]:
    tasks = yaml.safe_load(SWARM.read_text(encoding="utf-8"))
    found = [t for t in tasks if str(t.get("name", "")).startswith("Remove from the swarm the disabled service")]
    assert len(found) == 1
    return found[0]


def _task(block: dict[str, Any], prefix: str) -> dict[str, Any]:
    found = [t for t in block["block"] if t["name"].startswith(prefix)]
    assert len(found) == 1, prefix
    return found[0]


def _render(block: dict[str, Any], expression: str, **facts: Any) -> Any:
    variables = {"compose_service_name": "directus", "compose_service_project": "borgstack",
                 "compose_service_contracts": {"directus": {"containers": {"directus": {}, "directus-worker": {}}}},
                 **facts}
    templar = Templar(loader=DataLoader(), variables=variables)
    for key, value in block.get("vars", {}).items():
        variables[key] = templar.template(trust_as_template(value))
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template(expression))


def test_only_a_disabled_service_is_removed_and_only_by_the_first_manager():
    block = _removal()
    assert block["when"] == ["not compose_service_enabled | bool",
                             "inventory_hostname == compose_service_swarm.plan.first_manager"]
    # The deploy block stays the enabled service's.
    deploy = [t for t in yaml.safe_load(SWARM.read_text(encoding="utf-8"))
              if str(t.get("name", "")).startswith("Place on the swarm the service")]
    # ... and places nothing in check mode before the swarm exists (swarm_active false, from the swarm role); unset
    # (a run without the swarm role) or outside check mode, it places the enabled service.
    for enabled, check, active, placed in [(True, False, None, True), (True, True, False, False),
                                           (True, True, True, True), (True, True, None, True),
                                           (True, False, False, True), (False, False, True, False)]:
        variables = {"compose_service_enabled": enabled, "ansible_check_mode": check,
                     **({} if active is None else {"swarm_active": active})}
        when = Templar(loader=DataLoader(), variables=variables).template(
            trust_as_template("{{ " + deploy[0]["when"] + " }}"))
        assert when is placed, (enabled, check, active, when)


def test_the_read_runs_in_check_mode_and_is_soft_where_there_is_no_swarm():
    read = _task(_removal(), "Read the swarm services")
    assert read["check_mode"] is False and read["changed_when"] is False and read["failed_when"] is False
    assert read["loop"] == ["service", "secret", "config"]
    argv = _render(_removal(), read["ansible.builtin.command"]["argv"], item="service")
    assert argv == ["docker", "service", "ls", "--filter", "label=com.docker.stack.namespace=borgstack",
                    "--format", "{{.Name}}"]
    argv = _render(_removal(), read["ansible.builtin.command"]["argv"], item="secret")
    assert argv == ["docker", "secret", "ls", "--filter", "label=org.borgstack.service=directus",
                    "--filter", "label=org.borgstack.stack=borgstack", "--format", "{{.Name}}"]


def test_only_this_services_swarm_services_that_exist_are_removed():
    block = _removal()
    remove = _task(block, "Remove the swarm services")
    assert remove["community.docker.docker_swarm_service"]["state"] == "absent"
    left = {"results": [{"stdout_lines": ["borgstack_postgresql", "borgstack_directus", "borgstack_directus-x"]},
                        {"stdout_lines": ["borgstack_directus-secret-v2"]},
                        {"stdout_lines": []}]}
    assert _render(block, remove["loop"], __compose_service_left=left) == ["borgstack_directus"]
    assert _render(block, _task(block, "Remove the Docker secrets")["loop"], __compose_service_left=left) == [
        "borgstack_directus-secret-v2"]
    # Nothing left (a rerun) or no swarm (the read failed, no stdout_lines): nothing to remove.
    empty = {"results": [{"stdout_lines": []}, {"stdout_lines": []}, {"stdout_lines": []}]}
    assert _render(block, remove["loop"], __compose_service_left=empty) == []
    failed = {"results": [{"rc": 1}, {"rc": 1}, {"rc": 1}]}
    assert _render(block, remove["loop"], __compose_service_left=failed) == []
    assert _render(block, _task(block, "Remove the Docker configs")["loop"], __compose_service_left=failed) == []


def test_the_data_stays_secrets_stay_hidden():
    block = _removal()
    text = yaml.safe_dump(block)
    assert "docker_volume" not in text and "purge" not in text
    assert _task(block, "Remove the Docker secrets")["no_log"] is True
    assert _task(block, "Remove the Docker secrets")["community.docker.docker_secret"]["state"] == "absent"
    assert _task(block, "Remove the Docker configs")["community.docker.docker_config"]["state"] == "absent"
