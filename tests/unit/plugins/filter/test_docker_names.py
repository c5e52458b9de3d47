"""Table-driven tests of the Docker naming-rule filters, and the shipped names held to the same rules."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.docker_names import compose_project_errors, docker_name_errors

ROOT = Path(__file__).resolve().parents[4]
SHIPPED = sorted([*ROOT.glob("roles/*/defaults/main.yml"), *ROOT.glob("playbooks/group_vars/all/*.yml")])


@pytest.mark.parametrize("name", ["borgstack_internal", "bs", "a1", "My.Net-2", "0net", "borgstack_caddy_data"])
def test_good_docker_names_pass(name):
    assert docker_name_errors({"stack_internal_network": name}) == []


@pytest.mark.parametrize("name", ["bad net", "a", "", "_net", ".net", "-net", "net/x", "rede-ç", "net\n", None, 5])
def test_bad_docker_names_are_refused_naming_the_variable(name):
    errors = docker_name_errors({"stack_internal_network": name})
    assert errors == [f"stack_internal_network must be a Docker name - a letter or digit, then at least one more "
                      f"letter, digit, '_', '.' or '-' (no spaces or '/'), found {name!r}: rename it in your inventory "
                      f"(e.g. borgstack_internal, borgstack_n8n_data)"]


def test_every_bad_name_is_reported_and_optional_ones_may_be_empty():
    names = {"n8n_volume": "n8n data", "redis_volume": "ok_volume", "postgresql_upgrade_volume": "",
             "caddy_internal_network": ""}
    errors = docker_name_errors(names, optional=["postgresql_upgrade_volume"])
    assert [e.split(" ", 1)[0] for e in errors] == ["n8n_volume", "caddy_internal_network"]
    assert docker_name_errors({"postgresql_upgrade_volume": "pg 17"}, optional=["postgresql_upgrade_volume"])


@pytest.mark.parametrize("name", ["borgstack", "bs", "a", "0stack", "my_stack-2"])
def test_good_project_names_pass(name):
    assert compose_project_errors({"stack_project_name": name}) == []


@pytest.mark.parametrize("name", ["BorgStack", "bad stack", "-stack", "_stack", "stack.prod", "stack\n", "", None])
def test_bad_project_names_are_refused_naming_the_variable(name):
    assert compose_project_errors({"stack_project_name": name}) == [
        f"stack_project_name must be a Docker Compose project name - lower-case letters, digits, '-' or '_', starting "
        f"with a letter or digit - found {name!r}: set it in your inventory to a name such as borgstack"]


@pytest.mark.parametrize("names", [["stack_internal_network"], "x", {"": "y"}, None])
def test_the_input_must_map_variables_to_values(names):
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        docker_name_errors(names)
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        compose_project_errors(names)


def _literal(values, pattern):
    """The variables of a vars file whose name matches ``pattern`` and whose value is written out (not templated)."""
    return {k: v for k, v in values.items() if re.fullmatch(pattern, k) and not (isinstance(v, str) and "{{" in v)}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_names_follow_the_rules(path):
    """The names the roles and group_vars ship (the validation play sees only what the inventory sets)."""
    values = yaml.safe_load(path.read_text()) or {}
    assert docker_name_errors(_literal(values, r"[a-z][a-z0-9_]*_(network|volume)"),
                              optional=["postgresql_upgrade_volume"]) == []
    assert compose_project_errors(_literal(values, r"[a-z][a-z0-9_]*_project(_name)?")) == []


def test_the_shipped_files_do_name_docker_objects():
    pattern = r"[a-z][a-z0-9_]*_(network|volume|project(_name)?)"
    found = {k for path in SHIPPED for k in _literal(yaml.safe_load(path.read_text()) or {}, pattern)}
    assert {"stack_internal_network", "stack_external_network", "stack_project_name"} <= found, found
