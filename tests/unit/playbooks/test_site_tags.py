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
        if sorted(entries) != sorted(roles):
            errors.append(f"the {layer} play runs {sorted(entries)}, the registry's {layer} layer says {sorted(roles)}")
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
    assert layout_errors(service_registry(DEFAULTS, {}), SITE, ROLE_DIRS) == []


def test_a_forgotten_piece_is_named():
    registry = service_registry(DEFAULTS, {})
    extra = copy.deepcopy(registry)
    extra["wiki"] = {**copy.deepcopy(registry["n8n"]), "layer": "apps"}
    app_names = sorted(name for name, svc in registry.items() if svc["layer"] == "apps")
    assert layout_errors(extra, SITE, ROLE_DIRS) == [
        "registry service 'wiki' has no role roles/wiki/",
        # (this registry is not the file's: the stack role's tags, read from the file, lack the new service)
        "the stack role does not run with --tags ['wiki']",
        f"the apps play runs {app_names}, the registry's apps layer says {sorted(app_names + ['wiki'])}",
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
    others = [name for name in app_names if name != "n8n"]
    assert f"the apps play runs {app_names}, the registry's apps layer says {others}" in layout_errors(
        moved, SITE, ROLE_DIRS)


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
    """molecule/bootstrap covers the host layer only: a service added to the registry and not switched off there
    would be validated (and refused: its dependencies are off) in that scenario."""
    scenario = yaml.safe_load((ROOT / "molecule" / "bootstrap" / "molecule.yml").read_text())
    services = scenario["provisioner"]["inventory"]["group_vars"]["borgstack"]["borgstack_services"]
    assert services == {name: {"enabled": False} for name in DEFAULTS}
