# SPDX-License-Identifier: GPL-3.0-or-later
"""Adding a service is what docs/adicionar-servico.md says: its role, its registry entry, one line in site.yml.

The guide's example service (``wiki``) lives in ``tests/unit/fixtures/example_service/``: its role directory, its
registry entry and its site.yml line, and each code block of the guide marked ``<!-- fixture: <file> -->`` is that
file's text (first test). The other tests copy the repository's Ansible content into a temporary directory, add
the three pieces there, nothing else, and prove with Ansible on localhost (connection local, an inventory like the
lab's with a test master secret and 16 GB of RAM) that the service gets everything the registry derives: the
registry validates, its PostgreSQL tenant, its bucket, its RAM share, its Caddy site, its health check, its tag,
the validation play of playbooks/site.yml (run with --tags wiki) checks its role's argument spec and
tasks/validate.yml, and its Compose template renders from its contract. The repository's own consistency checks
(tests/unit/playbooks/test_site_tags.py and tests/unit/roles/test_argument_specs.py, loaded from the copy) pass.
Then, one piece left out at a time, those checks fail naming the missing piece.

What does not run here: the role's main tasks (compose_deploy needs Docker; the molecule stack scenario converges
real services) and the app itself (``ghcr.io/example/wiki`` is an example, not an image).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "unit" / "fixtures" / "example_service"
GUIDE = ROOT / "docs" / "adicionar-servico.md"
NAME = "wiki"
MASTER = "example-service-test-master-secret-0123456789abcdef"
# What a run of the playbooks needs, and the tests whose consistency checks run against the copy.
COPIED = ("ansible.cfg", "galaxy.yml", "site.yml", "meta", "playbooks", "plugins", "roles", "collections",
          "inventories/lab", "molecule/bootstrap/molecule.yml", "scripts/role-docs.py",
          "tests/unit/playbooks/test_site_tags.py", "tests/unit/roles/test_argument_specs.py")
PIECES = ("role", "registry", "site")
# The guide's blocks that must be fixture files (the role's README.md is generated; meta/main.yml is galaxy_info).
SHOWN = ("registry-entry.yml", "site-line.yml", "roles/wiki/defaults/main.yml", "roles/wiki/meta/argument_specs.yml",
         "roles/wiki/tasks/main.yml", "roles/wiki/tasks/validate.yml", "roles/wiki/templates/compose.yaml.j2")


def _text(path: Path) -> str:
    """A fixture file as the guide shows it: without the YAML document start."""
    text = path.read_text(encoding="utf-8")
    return text[4:] if text.startswith("---\n") else text


def _guide_blocks() -> Dict[str, str]:
    """{fixture file: code block} for each block of the guide preceded by ``<!-- fixture: <file> -->``."""
    pattern = re.compile(r"<!-- fixture: (\S+) -->\n```[a-z0-9]*\n(.*?)^```$", re.S | re.M)
    return {match.group(1): match.group(2) for match in pattern.finditer(GUIDE.read_text(encoding="utf-8"))}


def test_the_guide_shows_the_fixture():
    blocks = _guide_blocks()
    missing = [name for name in SHOWN if name not in blocks]
    assert not missing, f"docs/adicionar-servico.md shows no block marked <!-- fixture: NAME --> for {missing}"
    for name, block in blocks.items():
        assert (FIXTURE / name).is_file(), f"the guide names a fixture file that does not exist: {name}"
        assert block == _text(FIXTURE / name), (
            f"docs/adicionar-servico.md's block for {name} differs from tests/unit/fixtures/example_service/{name}: "
            f"change both")


# --- A copy of the repository with the example service added -----------------------------------------------------

def _copy(dest: Path) -> None:
    for item in COPIED:
        src, dst = ROOT / item, dest / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".git", "__pycache__", "cache"))
        else:
            shutil.copy2(src, dst, follow_symlinks=False)


def _add_registry_entry(repo: Path) -> None:
    """The entry's lines at the end of borgstack_service_defaults (before the next top-level line)."""
    path = repo / "playbooks" / "group_vars" / "all" / "services.yml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    entry = _text(FIXTURE / "registry-entry.yml").splitlines(keepends=True)
    assert entry[0] == "borgstack_service_defaults:\n"
    start = lines.index("borgstack_service_defaults:\n") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].strip() and not lines[i][0].isspace())
    while not lines[end - 1].strip():
        end -= 1
    path.write_text("".join(lines[:end] + entry[1:] + lines[end:]), encoding="utf-8")


def _add_site_line(repo: Path) -> None:
    """The line in the apps play, before Duplicati's (the last app: it mounts the others' volumes) and its comment."""
    path = repo / "playbooks" / "site.yml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "name: borgstack.stack.duplicati," in line)
    while lines[at - 1].lstrip().startswith("#"):
        at -= 1
    path.write_text("".join(lines[:at]) + (FIXTURE / "site-line.yml").read_text(encoding="utf-8")
                    + "".join(lines[at:]), encoding="utf-8")


def _inventory(repo: Path) -> Path:
    """The lab's settings on localhost, with a test master secret and 16 GB of RAM."""
    inventory = repo / "inventories" / "example"
    (inventory / "group_vars" / "borgstack").mkdir(parents=True)
    settings = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "borgstack" / "main.yml").read_text())
    settings.update({"borgstack_master_secret": MASTER, "borgstack_ram_mb": 16384,
                     "ssh_login_key_file": "/dev/null", "ssh_login_host": "192.0.2.1"})
    (inventory / "group_vars" / "borgstack" / "main.yml").write_text(yaml.safe_dump(settings))
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"borgstack": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return inventory


def make_repo(dest: Path, without: str = "") -> Path:
    """The copy with the example service's pieces added, all but ``without``."""
    _copy(dest)
    if without != "role":
        shutil.copytree(FIXTURE / "roles" / NAME, dest / "roles" / NAME)
    if without != "registry":
        _add_registry_entry(dest)
    if without != "site":
        _add_site_line(dest)
    _inventory(dest)
    return dest


# The validation play of playbooks/site.yml, then what the test reads: the values the registry derives and the
# role's Compose file rendered from its contract (the role's defaults loaded as a run of it loads them).
EVALUATE = [{
    "name": "Read what the registry derives for the example service",
    "hosts": "borgstack",
    "gather_facts": False,
    "tags": ["always"],
    "tasks": [
        {"name": "Load the role's defaults",
         "ansible.builtin.include_role": {"name": f"borgstack.stack.{NAME}", "tasks_from": "validate",
                                          "public": True}},
        {"name": "Render its Compose file",
         "ansible.builtin.template": {"src": f"{{{{ playbook_dir }}}}/../roles/{NAME}/templates/compose.yaml.j2",
                                      "dest": "{{ __out }}/compose.yaml", "mode": "0600"},
         "no_log": True},
        {"name": "Write the derived values",
         "ansible.builtin.copy": {"dest": "{{ __out }}/values.json", "mode": "0600", "content": "{{ __values | to_json }}"},
         "vars": {"__values": {
             "registry_errors": "{{ borgstack_registry | borgstack.stack.registry_errors(borgstack_domain) }}",
             "contract_tenants": "{{ borgstack_contracts.postgresql.tenants | map(attribute='name') | list }}",
             "buckets": "{{ borgstack_contracts.seaweedfs.buckets }}",
             "ram": f"{{{{ borgstack_ram_plan.services.{NAME} }}}}",
             "sites": "{{ borgstack_contracts.caddy.sites }}",
             "health": "{{ borgstack_health_services }}",
             "known_tags": "{{ borgstack_known_tags }}",
             "roles": "{{ borgstack_roles }}",
             "validated": "{{ borgstack_validated_roles }}",
             "contract": f"{{{{ {NAME}_service }}}}",
             "duplicati_sources": "{{ borgstack_contracts.duplicati.sources }}"}},
         "no_log": True},
    ],
}]


def run_validation(repo: Path, out: Path, evaluate: bool) -> subprocess.CompletedProcess:
    """``ansible-playbook --tags wiki`` of the copy's validation play (the first play of playbooks/site.yml), and,
    with ``evaluate``, the play that writes what the test reads into ``out``."""
    plays = yaml.safe_load((repo / "playbooks" / "site.yml").read_text())[:1] + (EVALUATE if evaluate else [])
    playbook = repo / "playbooks" / "example-service-test.yml"  # beside site.yml: the same group_vars, tasks/
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    # The copy's own collection: scripts/test.sh exports ANSIBLE_COLLECTIONS_PATH for the checkout it runs in, which
    # would win over the copy's ansible.cfg and leave the example role out.
    env = dict(os.environ, ANSIBLE_CONFIG=str(repo / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(repo / "collections"),
               ANSIBLE_LOCAL_TEMP=str(out / "tmp"), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    return subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i",
                           str(repo / "inventories" / "example"), str(playbook), "--tags", NAME,
                           "-e", json.dumps({"__out": str(out)})],
                          cwd=repo, env=env, capture_output=True, text=True, check=False)


def load_checks(repo: Path, test_file: str) -> Any:
    """A test module of the repository, loaded from the copy (its paths are the copy's)."""
    spec = importlib.util.spec_from_file_location(f"copy_{uuid.uuid4().hex}", repo / test_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failure(check: Callable[[], None]) -> str:
    """The message of a failing check ('' when it passes)."""
    try:
        check()
    except AssertionError as exc:
        return str(exc)
    return ""


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    """The copy with the three pieces added (``repo``), and what the playbook run wrote (``values``, ``compose``)."""
    repo = make_repo(tmp_path_factory.mktemp("repo"))
    out = tmp_path_factory.mktemp("out")
    run = run_validation(repo, out, evaluate=True)
    assert run.returncode == 0, f"ansible-playbook failed:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    # The validation play's own output (before the play that reads the values): the role's spec was checked.
    validation = run.stdout.split("PLAY [Read what the registry derives")[0]
    # One task checks the role's argument spec (entry point validate) and its rules; Ansible's own is not run again.
    assert f"borgstack.stack.{NAME} : Check the wiki's settings" in validation, validation
    assert "Validating arguments against arg spec" not in validation
    return {"repo": repo, "values": json.loads((out / "values.json").read_text()),
            "compose": yaml.safe_load((out / "compose.yaml").read_text())}


def test_the_registry_derives_everything(added):
    values = added["values"]
    assert values["registry_errors"] == []
    assert NAME in values["contract_tenants"]
    assert NAME in values["buckets"]
    assert values["ram"]["limit_mb"] >= 512  # its min_mb
    site = next(site for site in values["sites"] if site["hostname"] == f"{NAME}.lab.borgstack.test")
    assert site["upstream"] == f"borgstack-{NAME}:3000" and site["max_body_mb"] == 100
    check = next(check for check in values["health"] if check["name"] == NAME)
    assert check["container"] == f"borgstack-{NAME}"
    assert check["internal_check"] == {"type": "http", "port": 3000, "path": "/healthz"}
    assert check["public_url"] == f"https://{NAME}.lab.borgstack.test/healthz"
    assert check["database"]["dbname"] == NAME and check["database"]["user"] == NAME
    assert NAME in values["known_tags"] and NAME in values["roles"]["apps"]
    assert f"borgstack_{NAME}_data" in values["duplicati_sources"]


def test_the_validation_play_checks_its_role(added):
    """The run above passed the validation play with --tags wiki: the role's argument spec (entry point validate)
    and its tasks/validate.yml ran (the fixture reads the play's output), for it and the stack role only."""
    values = added["values"]
    # With it the stack role, which the data play runs under every service's tag (networks, the top Compose file).
    assert values["validated"] == [NAME, "stack"]
    assert values["contract"]["memory_limit_mb"] == values["ram"]["limit_mb"]


def test_its_compose_file_renders_from_the_contract(added):
    values, compose = added["values"], added["compose"]
    service = compose["services"][NAME]
    assert service["image"] == "ghcr.io/example/wiki:1.4.2"
    assert service["container_name"] == f"borgstack-{NAME}"
    assert service["networks"] == ["borgstack_internal", "borgstack_external"]
    assert service["mem_limit"] == f"{values['ram']['limit_mb']}m"
    env = service["environment"]
    assert (env["DB_HOST"], env["DB_PORT"], env["DB_NAME"], env["DB_USER"]) == (
        "borgstack-postgresql", "5432", NAME, NAME)
    assert env["PUBLIC_URL"] == f"https://{NAME}.lab.borgstack.test/"
    assert env["S3_BUCKET"] == NAME and env["S3_ENDPOINT"] == "http://borgstack-seaweedfs:8333"
    assert MASTER not in json.dumps(compose) and "PASSWORD" not in " ".join(k for k in env if not k.endswith("_FILE"))
    assert f"borgstack_{NAME}_data:/data" in service["volumes"]
    assert set(compose["networks"]) == {"borgstack_internal", "borgstack_external"}
    assert compose["volumes"] == {f"borgstack_{NAME}_data": {"name": f"borgstack_{NAME}_data"}}


def test_the_repository_checks_pass(added):
    repo = added["repo"]
    site_tags = load_checks(repo, "tests/unit/playbooks/test_site_tags.py")
    for check in (site_tags.test_registry_roles_and_playbook_agree, site_tags.test_known_tags_are_the_tags_of_site_yml,
                  site_tags.test_the_host_layer_scenario_switches_every_service_off):
        check()
    specs = load_checks(repo, "tests/unit/roles/test_argument_specs.py")
    role = repo / "roles" / NAME
    specs.test_every_role_has_specs()
    specs.test_defaults_and_specs_agree(role)
    specs.test_validate_entry_point_matches_main(role)
    specs.test_validation_play_runs_the_validate_entry_point()
    specs.test_roles_that_skip_their_spec_are_validated_up_front()
    specs.test_a_role_validated_up_front_does_not_validate_again(role)
    run = subprocess.run([sys.executable, str(repo / "scripts" / "role-docs.py"), "--check"], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr


# --- One piece left out: the repository's checks name it -------------------------------------------------------

@pytest.mark.parametrize("without", PIECES)
def test_a_missing_piece_is_named(without, tmp_path):
    repo = make_repo(tmp_path / "repo", without=without)
    site_tags = load_checks(repo, "tests/unit/playbooks/test_site_tags.py")
    layout = failure(site_tags.test_registry_roles_and_playbook_agree)
    tags = failure(site_tags.test_known_tags_are_the_tags_of_site_yml)
    if without == "role":
        assert "registry service 'wiki' has no role roles/wiki/" in layout
        # The validation play stops before any change, naming the role it cannot find.
        (tmp_path / "out").mkdir()
        run = run_validation(repo, tmp_path / "out", evaluate=False)
        assert run.returncode != 0 and "the role 'borgstack.stack.wiki' was not found" in run.stdout + run.stderr, (
            run.stdout[-3000:])
    elif without == "registry":
        assert "role 'wiki' is not in the registry (playbooks/group_vars/all/services.yml)" in layout
        assert ("the apps play of playbooks/site.yml runs role 'wiki', which has no registry entry "
                "(borgstack_service_defaults in playbooks/group_vars/all/services.yml)") in layout
        assert "tags in playbooks/site.yml that --tags would refuse: ['wiki']" in tags
    else:
        assert ("registry service 'wiki' (layer apps) has no line in the apps play of playbooks/site.yml: add "
                "`- {name: Role wiki, ansible.builtin.import_role: {name: borgstack.stack.wiki, rolespec_validate: "
                "false}, tags: [wiki]}`") in layout
        # ... the very line the guide shows.
        assert (FIXTURE / "site-line.yml").read_text().strip() in layout
