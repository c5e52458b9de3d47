# SPDX-License-Identifier: GPL-3.0-or-later
"""No guide names what the code does not have: the names an operator copies from docs/*.md and README.md exist.

- YAML blocks (inventory snippets): every top-level key is a variable the project reads (a role's argument spec or
  default, playbooks/group_vars/all/, the example inventory, a playbook's vars, Ansible's connection variables);
  under ``borgstack_services`` only services of the registry and keys a registry entry has.
- ``-e name=value`` (in command blocks and inline code): ``name`` is such a variable.
- ``--tags``: tags the validation play accepts (borgstack_fixed_tags, the layers, the host roles, the registry's
  services).
- Paths of the checkout (``playbooks/…``, ``scripts/…``, ``roles/<role>/…``, ``inventories/…`` …) and the playbook an
  ``ansible-playbook`` line runs: the file or directory exists.
- Inline code that looks like a setting of the stack (``borgstack_…``, ``vault_…``, ``<role>_…`` for a role with an
  argument spec): a variable, a secret purpose of the registry (borgstack.stack.secret_policies), a Docker volume
  or network of the project, or one of OTHER_NAMES below (tables, units: each with what it is).

docs/adicionar-servico.md's YAML shows a new role's files (``wiki_*``), not an inventory: only its paths and tags are
checked. Pure file reading, about a second.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.borgstack.stack.plugins.filter.contract import secret_policies
from ansible_collections.borgstack.stack.plugins.filter.registry import service_registry

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "molecule" / "shared"))
# pylint: disable=wrong-import-position,import-error
from guide_commands import COMMANDS, blocks  # noqa: E402

GUIDES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
TEMPLATE_PAGES = {"docs/adicionar-servico.md"}
SERVICES = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "services.yml").read_text())
REGISTRY = service_registry(SERVICES["borgstack_service_defaults"], {})
STACK = yaml.safe_load((ROOT / "playbooks" / "group_vars" / "all" / "stack.yml").read_text())
# Names in inline code that look like settings and are not: what each one is.
OTHER_NAMES = {
    "borgstack_cs_errors": "PostgreSQL table of the customer-service workflows (n8n's database)",
    "borgstack_cs_message_status": "PostgreSQL table of the customer-service workflows (n8n's database)",
    "borgstack_cs_reply_queue": "PostgreSQL table of the reply queue (scripts/n8n_reconcile.py, n8n's database)",
    "borgstack_cs_leases": "PostgreSQL table of the reconciliation's and the queue's run leases (scripts/n8n_reconcile.py)",
    "borgstack_recovered": "content attribute the reconciliation puts on a recovered Chatwoot message",
    "borgstack_chatwoot_migrations": "the Chatwoot migration container's name",
    "borgstack_validated_roles": "a fact the validation play sets",
    "borgstack_data": "the project's layer name in Compose",
    "stack_service_files": "a fact the stack role sets (the services with a Compose file on the host)",
    "borgstack_cs_messages": "a query block of the PostgreSQL exporter (roles/monitoring/files/queries.yaml)",
    "borgstack_cs_messages_handled": "the metric of that query block (messages handled, dashboard and weekly report)",
    "monitoring_reader": "the PostgreSQL role of the monitoring's postgres_reader (contract.py reader_name)",
    "borgstack_grant_monitoring_reader": "the event trigger postgresql_tenant keeps for that reader",
    "borgstack_cluster": "the overlay network the swarm role creates (swarm_network_name)",
    "docker_swarm": "a community.docker module the swarm role uses",
    "docker_node": "a community.docker module the swarm role uses",
}
ANSIBLE_VARIABLES = {"ansible_host", "ansible_user", "ansible_port", "ansible_ssh_private_key_file",
                     "ansible_become_password", "ansible_python_interpreter"}
PLACEHOLDER = re.compile(r"<[^>]+>")


def _keys(data) -> set[str]:
    """Every key of a nested YAML value."""
    if isinstance(data, dict):
        return {str(k) for k in data} | {k for v in data.values() for k in _keys(v)}
    if isinstance(data, list):
        return {k for v in data for k in _keys(v)}
    return set()


def _choices() -> set[str]:
    """The values the argument specs allow (`images_sideload_method: docker_exec`)."""
    out: set[str] = set()
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            out |= {str(c) for o in (entry.get("options") or {}).values() for c in o.get("choices") or ()}
    return out


def _variables() -> set[str]:
    names: set[str] = set(ANSIBLE_VARIABLES)
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names |= set(entry.get("options") or {})
    for path in [*ROOT.glob("roles/*/defaults/main.yml"), *ROOT.glob("playbooks/group_vars/all/*.yml"),
                 *ROOT.glob("inventories/*/group_vars/*/*"), *ROOT.glob("inventories/*/hosts.yml")]:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yml", ".example") else None
        names |= set(data) if isinstance(data, dict) and "hosts.yml" != path.name else set()
        # A role's dict settings (monitoring's thresholds: `backup_max_age`) are named by their keys too.
        names |= _keys(data) if "defaults" in path.parts else set()
        # The example inventory's commented settings ("# duplicati_destination_url: ...") are settings too.
        names |= set(re.findall(r"^[ \t]*#\s?([a-z][a-z0-9_]*):", text, re.M))
    for playbook in ROOT.glob("playbooks/*.yml"):
        for play in yaml.safe_load(playbook.read_text()) or []:
            names |= set(play.get("vars") or {}) if isinstance(play, dict) else set()
    return names


VARIABLES = _variables()
ROLES_WITH_SPECS = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/meta/argument_specs.yml"))
SETTING = re.compile(rf"^(?:borgstack|vault|{'|'.join(ROLES_WITH_SPECS)})_[a-z0-9_]+$")
REGISTRY_KEYS = {key for entry in REGISTRY.values() for key in entry}
# Modules and filters of the collection (`postgresql_tenant`, `kernel_sysctl`): named in the docs as what they are.
PLUGINS = {p.stem for p in [*ROOT.glob("plugins/modules/*.py"), *ROOT.glob("plugins/filter/*.yml")]}
TAGS = (set(STACK["borgstack_fixed_tags"]) | {"bootstrap", "data", "apps", "proxy", "stack"}
        | set(STACK["borgstack_host_roles"]) | set(REGISTRY))
VOLUMES = {f"borgstack_{name}_{volume}" for name, entry in REGISTRY.items() for volume in entry.get("volumes") or {}}
NETWORKS = {"borgstack_internal", "borgstack_external"}
PURPOSES = set(secret_policies(REGISTRY))
CHOICES = _choices()
CHECKOUT_PATH = re.compile(r"(?<![\w/.-])((?:playbooks|scripts|roles|inventories|molecule|tests|lab|plugins|docs)"
                           r"/[\w./<>-]*[\w>])")


def _pages():
    for path in GUIDES:
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


def _inline(text: str):
    """(line number, code) of every inline code span outside fenced blocks."""
    fenced = {n for b in blocks(text, "") for n in range(b.line - 1, b.line + len(b.lines) + 1)}
    for n, line in enumerate(text.splitlines(), 1):
        if n not in fenced:
            for code in re.findall(r"`([^`\n]+)`", line):
                yield n, code


def _settings(data) -> dict:
    """The settings a YAML block sets: its top-level keys, or, for an inventory (groups with ``hosts``, ``children``
    or ``vars``), the variables of every group and host in it."""
    if not isinstance(data, dict):
        return {}
    groups = [g for g in data.values() if isinstance(g, dict) and {"hosts", "children", "vars"} & set(g)]
    if not groups or len(groups) != len(data):
        return data
    out: dict = {}
    for group in groups:
        out.update(group.get("vars") or {})
        for host in (group.get("hosts") or {}).values():
            out.update(host or {})
        out.update(_settings(group.get("children") or {}))
    return out


def yaml_key_errors(doc: str, text: str) -> list[str]:
    errors = []
    for block in blocks(text, doc):
        if block.language != "yaml" or doc in TEMPLATE_PAGES:
            continue
        data = _settings(yaml.safe_load("\n".join(block.lines)))
        for key, value in data.items():
            if key not in VARIABLES:
                errors.append(f"{doc}:{block.line}: `{key}` is no variable of the project")
            if key == "borgstack_services" and isinstance(value, dict):
                for name, entry in value.items():
                    if name not in REGISTRY:
                        errors.append(f"{doc}:{block.line}: borgstack_services.{name}: no such service")
                    for sub in entry or {}:
                        if sub not in REGISTRY_KEYS:
                            errors.append(f"{doc}:{block.line}: borgstack_services.{name}.{sub}: no such key")
    return errors


def command_errors(doc: str, text: str) -> list[str]:
    """``-e name=``, ``--tags`` and the playbook of ``ansible-playbook`` in command blocks and inline code."""
    lines = [(b.line + i, line) for b in blocks(text, doc) if b.language in COMMANDS for i, line in enumerate(b.lines)]
    lines += list(_inline(text))
    errors = []
    for n, line in lines:
        for name in re.findall(r"(?:-e|--extra-vars)\s+[\"']?([a-z_][a-z0-9_]*)=", line):
            if name not in VARIABLES:
                errors.append(f"{doc}:{n}: -e {name}=: no playbook or role reads {name}")
        for value in re.findall(r"--(?:skip-)?tags[ =]([\w,<>-]+)", line):
            for tag in value.split(","):
                if not PLACEHOLDER.fullmatch(tag) and tag not in TAGS:
                    errors.append(f"{doc}:{n}: --tags {tag}: site.yml has no such tag")
        for playbook in re.findall(r"ansible-playbook\s+(\S+\.ya?ml)", line):
            if not (ROOT / playbook).is_file():
                errors.append(f"{doc}:{n}: ansible-playbook {playbook}: no such playbook")
    return errors


def _made_by_the_guide(doc: str, path: str) -> bool:
    """The example role docs/adicionar-servico.md has the reader create."""
    return doc in TEMPLATE_PAGES and path.startswith("roles/wiki/")


def path_errors(doc: str, text: str) -> list[str]:
    errors = []
    for n, line in enumerate(text.splitlines(), 1):
        for path in CHECKOUT_PATH.findall(line):
            if "<" in path or "*" in path or "…" in path or _made_by_the_guide(doc, path):
                continue
            # The installation guide's inventory is a copy of inventories/prod: its files are prod's.
            if not (ROOT / re.sub(r"^inventories/minhaempresa", "inventories/prod", path)).exists():
                errors.append(f"{doc}:{n}: {path}: no such file in the checkout")
    return errors


def name_errors(doc: str, text: str) -> list[str]:
    known = VARIABLES | PURPOSES | VOLUMES | NETWORKS | PLUGINS | CHOICES | _keys(REGISTRY) | set(OTHER_NAMES)
    errors = []
    for n, code in _inline(text):
        name = re.split(r"[:=.\s\[(]", code.strip(), maxsplit=1)[0]
        if SETTING.match(name) and name not in known:
            errors.append(f"{doc}:{n}: `{name}` is no variable, secret purpose, volume or network of the project")
    return errors


@pytest.mark.parametrize("check", [yaml_key_errors, command_errors, path_errors, name_errors],
                         ids=lambda f: f.__name__)
def test_the_guides_name_only_what_the_code_has(check):
    errors = [e for doc, text in _pages() for e in check(doc, text)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("check, page, expected", [
    (yaml_key_errors, "```yaml\nbackup_keepp: 7\n```\n", "`backup_keepp` is no variable"),
    (yaml_key_errors, "```yaml\nborgstack_services:\n  n8m: {enabled: true}\n```\n", "borgstack_services.n8m"),
    (yaml_key_errors, "```yaml\nborgstack_services:\n  n8n: {enable: true}\n```\n", "borgstack_services.n8n.enable"),
    (command_errors, "```bash não-roda controlador\nansible-playbook playbooks/restaur.yml\n```\n", "restaur.yml"),
    (command_errors, "```bash não-roda controlador\nansible-playbook site.yml --tags n8n,n8m\n```\n", "--tags n8m"),
    (command_errors, "use `-e restore_servic=n8n`\n", "-e restore_servic="),
    (path_errors, "veja scripts/no-such-script.sh\n", "scripts/no-such-script.sh"),
    (name_errors, "a variável `backup_kep`\n", "`backup_kep`"),
])
def test_a_stale_name_is_found(check, page, expected):
    errors = check("p.md", page)
    assert len(errors) == 1 and expected in errors[0], errors


@pytest.mark.parametrize("check, page", [
    (yaml_key_errors, "```yaml\nbackup_keep: 7\nborgstack_services:\n  n8n: {enabled: true}\n```\n"),
    (command_errors, "```bash não-roda controlador\nansible-playbook site.yml --tags <serviço>,n8n,apps\n```\n"),
    (command_errors, "use `-e restore_service=n8n`\n"),
    (path_errors, "veja scripts/test.sh e roles/<serviço>/README.md\n"),
    (name_errors, "`backup_keep: 7`, `n8n_encryption_key`, `borgstack_n8n_data`, `borgstack_internal`\n"),
])
def test_a_name_the_code_has_passes(check, page):
    assert not check("p.md", page)


def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table under ``heading`` (a ``## `` line starting with it), header and rule left out."""
    section = text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]


def test_the_installation_guide_lists_every_public_name_and_login():
    """The DNS table of docs/instalacao.md names every service with a public site (the preflight refuses a name that
    does not resolve), and its first-access table every service with a login, with the file the play writes."""
    text = (ROOT / "docs" / "instalacao.md").read_text(encoding="utf-8")
    names = {re.sub(r"^`([a-z0-9-]+)\..*", r"\1", row[1]) for row in _table_rows(text, "4. DNS")}
    public = {name.replace("_", "-") for name, entry in REGISTRY.items() if entry.get("site")}
    assert names == public, f"DNS table: missing {sorted(public - names)}, extra {sorted(names - public)}"
    logins = {row[2].split("/opt/borgstack/services/", 1)[1].rstrip("`") for row in
              _table_rows(text, "8. Primeiro acesso") if "/opt/borgstack/services/" in row[2]}
    expected = {f"{name}/{entry['login']['password_file']}" for name, entry in REGISTRY.items() if entry.get("login")}
    expected.add("evolution_api/api-key")  # Evolution API's manager asks for the global API key, not a login
    assert logins == expected, (f"first-access table: missing {sorted(expected - logins)}, "
                                f"extra {sorted(logins - expected)}")
