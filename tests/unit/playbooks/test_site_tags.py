"""Adding a service touches its role, its registry entry and one line of playbooks/site.yml - and forgetting one of
the three fails here: a registry entry with no role or no play line, a role that is neither a service of the
registry nor a host role, a play line untagged or in the wrong layer. The tags --tags/--skip-tags accept
(borgstack_known_tags) are exactly the tags playbooks/site.yml uses, plus the ones Ansible itself understands."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List

import yaml
from ansible.template import Templar, trust_as_template

from ansible_collections.borgstack.stack.plugins.filter.registry import service_registry, service_roles

ROOT = Path(__file__).resolve().parents[3]
SITE = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
STACK = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "stack.yml").read_text())
DEFAULTS = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "services.yml").read_text())[
    "borgstack_service_defaults"]
ROLE_DIRS = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())
# Roles that are neither a host role nor a service: the project's networks/top file and the shared mechanics.
INFRASTRUCTURE = {"stack", "compose_service"}
ANSIBLE_TAGS = {"all", "tagged", "untagged"}


def _template(value: Any, registry: Dict[str, Any], play: Dict[str, Any] | None = None) -> Any:
    """Template ``value`` as Ansible would: role tags see only the play's own variables (templated here with a
    loader rooted at playbooks/, so its lookups read the real files); everything else sees the wiring."""
    if play is not None:
        files: Dict[str, str] = {}
        variables = {k: trust_as_template(_read_file_lookups(v, files)) if isinstance(v, str) else v
                     for k, v in (play.get("vars") or {}).items()}
        variables.update(files)
    else:
        variables = {**STACK, "borgstack_registry": registry, "borgstack_service_roles": service_roles(registry)}
    return Templar(variables=variables).template(trust_as_template(value) if isinstance(value, str) else value)


def _read_file_lookups(text: str, files: Dict[str, str]) -> str:
    """``lookup('ansible.builtin.file', '<path>')`` replaced by a variable holding the file's content (relative to
    playbooks/, as Ansible resolves it for a play there); a path that does not exist fails the test."""
    def content(match: re.Match) -> str:
        name = f"__file_{len(files)}"
        files[name] = (ROOT / "playbooks" / match.group(1)).read_text()
        return name
    return re.sub(r"lookup\('ansible\.builtin\.file', '([^']+)'\)", content, text)


def _entry_tags(entry: Dict[str, Any], registry: Dict[str, Any], play: Dict[str, Any]) -> List[str]:
    tags = entry.get("tags", [])
    tags = _template(tags, registry, play) if isinstance(tags, str) else tags
    return list(tags)


def _role_entries(play: Dict[str, Any]) -> List[tuple[str, Dict[str, Any]]]:
    """The roles a play runs, in order: its ``roles:`` entries, then the tasks that import a role."""
    entries = [(entry["role"].rsplit(".", 1)[-1], entry) for entry in play.get("roles", [])]
    entries += [(task["ansible.builtin.import_role"]["name"].rsplit(".", 1)[-1], task)
                for task in play.get("tasks", []) if "ansible.builtin.import_role" in task]
    return entries


def site_line(role: str) -> str:
    """The line of playbooks/site.yml that runs a service's role (docs/adicionar-servico.md shows the same)."""
    return (f"- {{name: Role {role}, ansible.builtin.import_role: {{name: borgstack.stack.{role}, "
            f"rolespec_validate: false}}, tags: [{role}]}}")


def _missing_lines(layer: str, roles: List[str]) -> List[str]:
    """A role its layer's play should run and does not: named, with the line to add."""
    if layer == "bootstrap":
        return [f"host role {role!r} (borgstack_host_roles) has no line in the bootstrap play of playbooks/site.yml"
                for role in roles]
    return [f"registry service {role!r} (layer {layer}) has no line in the {layer} play of playbooks/site.yml: add "
            f"`{site_line(role)}`" if role != "stack" else "the stack role is missing from the data play's roles"
            for role in roles]


def _extra_lines(layer: str, roles: List[str], registry: Dict[str, Any], host_roles: List[str]) -> List[str]:
    """A role a play runs that its layer does not list: in another layer, or in none (no registry entry)."""
    errors = []
    for role in roles:
        if role in registry:
            errors.append(f"the {layer} play of playbooks/site.yml runs {role!r}, whose registry layer is "
                          f"{registry[role].get('layer')!r} (borgstack_services.{role}.layer): move its line to "
                          f"that play")
        elif role in host_roles:
            errors.append(f"the {layer} play of playbooks/site.yml runs the host role {role!r}: its line belongs "
                          f"in the bootstrap play")
        else:
            errors.append(f"the {layer} play of playbooks/site.yml runs role {role!r}, which has no registry entry "
                          f"(borgstack_service_defaults in playbooks/group_vars/all/services.yml) and is not a host "
                          f"role (borgstack_host_roles)")
    return errors


def layout_errors(registry: Dict[str, Any], site: List[Dict[str, Any]], role_dirs: List[str]) -> List[str]:
    """What disagrees between the registry, the roles and the playbook (empty when the three agree)."""
    errors = []
    layers = service_roles(registry)
    host_roles = STACK["borgstack_host_roles"]
    for name in registry:
        if name not in role_dirs:
            errors.append(f"registry service {name!r} has no role roles/{name}/")
    for role in role_dirs:
        if role not in registry and role not in host_roles and role not in INFRASTRUCTURE:
            errors.append(f"role {role!r} is not in the registry (playbooks/group_vars/all/services.yml) nor a host "
                          f"role (borgstack_host_roles)")
    plays = {tuple(play.get("tags", [])): play for play in site}
    expected = {"bootstrap": host_roles, "data": ["stack"] + layers["data"], "apps": layers["apps"],
                "proxy": layers["proxy"]}
    for layer, roles in expected.items():
        play = plays.get((layer,))
        if play is None:
            errors.append(f"no play of playbooks/site.yml is tagged only {layer!r}")
            continue
        entries = {role: _entry_tags(entry, registry, play) for role, entry in _role_entries(play)}
        errors += _missing_lines(layer, [role for role in roles if role not in entries])
        errors += _extra_lines(layer, [role for role in entries if role not in roles], registry, host_roles)
        for role, tags in entries.items():
            if role not in tags:
                errors.append(f"role {role} in the {layer} play lacks its own tag {role!r}")
        if "stack" in entries and set(registry) - set(entries["stack"]):
            errors.append(f"the stack role does not run with --tags {sorted(set(registry) - set(entries['stack']))}")
    return errors


def _tags(node: Any, registry: Dict[str, Any], play: Dict[str, Any] | None = None) -> Iterator[str]:
    """Every tag written anywhere in a play, role entry, block or task (templated ones evaluated)."""
    if isinstance(node, dict):
        play = node if "hosts" in node else play
        tags = node.get("tags", [])
        tags = _template(tags, registry, play) if isinstance(tags, str) and "{{" in tags else tags
        yield from [tags] if isinstance(tags, str) else tags
        for key, value in node.items():
            if key != "tags":
                yield from _tags(value, registry, play)
    elif isinstance(node, list):
        for item in node:
            yield from _tags(item, registry, play)


def test_registry_roles_and_playbook_agree():
    errors = layout_errors(service_registry(DEFAULTS, {}), SITE, ROLE_DIRS)
    assert not errors, "\n".join(errors)


def test_a_forgotten_piece_is_named():
    registry = service_registry(DEFAULTS, {})
    extra = copy.deepcopy(registry)
    extra["wiki"] = {**copy.deepcopy(registry["n8n"]), "layer": "apps"}
    assert layout_errors(extra, SITE, ROLE_DIRS) == [
        "registry service 'wiki' has no role roles/wiki/",
        # (this registry is not the file's: the stack role's tags, read from the file, lack the new service)
        "the stack role does not run with --tags ['wiki']",
        "registry service 'wiki' (layer apps) has no line in the apps play of playbooks/site.yml: add `- {name: Role "
        "wiki, ansible.builtin.import_role: {name: borgstack.stack.wiki, rolespec_validate: false}, tags: [wiki]}`",
    ]
    assert layout_errors(registry, SITE, ROLE_DIRS + ["wiki"]) == [
        "role 'wiki' is not in the registry (playbooks/group_vars/all/services.yml) nor a host role "
        "(borgstack_host_roles)"]
    untagged = copy.deepcopy(SITE)
    apps = next(play for play in untagged if play.get("tags") == ["apps"])
    apps["tasks"][0]["tags"] = ["apps"]  # the n8n line
    assert layout_errors(registry, untagged, ROLE_DIRS) == ["role n8n in the apps play lacks its own tag 'n8n'"]
    moved = copy.deepcopy(registry)
    moved["n8n"]["layer"] = "data"
    assert layout_errors(moved, SITE, ROLE_DIRS) == [
        "registry service 'n8n' (layer data) has no line in the data play of playbooks/site.yml: add `- {name: Role "
        "n8n, ansible.builtin.import_role: {name: borgstack.stack.n8n, rolespec_validate: false}, tags: [n8n]}`",
        "the apps play of playbooks/site.yml runs 'n8n', whose registry layer is 'data' (borgstack_services.n8n."
        "layer): move its line to that play"]
    unknown = copy.deepcopy(SITE)
    apps = next(play for play in unknown if play.get("tags") == ["apps"])
    apps["tasks"].append({"name": "Role wiki", "ansible.builtin.import_role": {"name": "borgstack.stack.wiki"},
                          "tags": ["wiki"]})
    assert layout_errors(registry, unknown, ROLE_DIRS) == [
        "the apps play of playbooks/site.yml runs role 'wiki', which has no registry entry (borgstack_service_defaults "
        "in playbooks/group_vars/all/services.yml) and is not a host role (borgstack_host_roles)"]


def test_known_tags_are_the_tags_of_site_yml():
    registry = service_registry(DEFAULTS, {})
    roles = _template(STACK["borgstack_roles"], registry)
    known = set(Templar(variables={**STACK, "borgstack_roles": roles}).template(
        trust_as_template(STACK["borgstack_known_tags"])))
    used = set(_tags(SITE, registry))
    assert used - known == set(), f"tags in playbooks/site.yml that --tags would refuse: {sorted(used - known)}"
    assert known - ANSIBLE_TAGS - used == set(), (
        f"borgstack_known_tags names tags playbooks/site.yml never uses: {sorted(known - ANSIBLE_TAGS - used)}"
    )
    assert set(registry) <= known


def test_the_host_layer_scenario_switches_every_service_off():
    """molecule/bootstrap covers the host layer only: a service of the registry not switched off there would be
    validated (and refused: its dependencies are off) in that scenario. The scenario derives the list from the
    registry, so adding a service costs no edit there."""
    scenario = yaml.safe_load((ROOT / "molecule" / "bootstrap" / "molecule.yml").read_text())
    services = scenario["provisioner"]["inventory"]["group_vars"]["borgstack"]["borgstack_services"]
    # An expression over the registry (so adding a service needs no edit there), evaluated as Ansible would.
    services = Templar(variables={"borgstack_service_defaults": DEFAULTS}).template(trust_as_template(services))
    assert services == {name: {"enabled": False} for name in DEFAULTS}
