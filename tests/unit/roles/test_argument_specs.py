"""Every role's defaults and argument specs agree: each default is specified, each option has a default, the
default value lives only in defaults/ (no `default:` in the spec), secrets are no_log, and the `validate` entry
point (run by the up-front validation play) checks the same options as `main`."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
ROLE_DIRS = sorted(p for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists())
SECRET_WORDS = ("password", "secret", "_key", "token")


def _load(role: Path):
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.exists() else {}
    return specs, defaults


def test_every_role_has_specs():
    have = {p.name for p in ROLE_DIRS}
    roles = {p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists()}
    assert roles == have, f"roles without meta/argument_specs.yml: {sorted(roles - have)}"


@pytest.mark.parametrize("role", ROLE_DIRS, ids=lambda p: p.name)
def test_defaults_and_specs_agree(role):
    specs, defaults = _load(role)
    options = specs["main"].get("options", {})
    assert set(defaults) == set(options), (
        f"{role.name}: in defaults only: {sorted(set(defaults) - set(options))}; "
        f"in specs only: {sorted(set(options) - set(defaults))}"
    )
    for name, option in options.items():
        assert name.startswith(role.name + "_"), f"{role.name}: {name} does not start with the role name"
        assert "default" not in option, f"{role.name}: {name} has a default in the spec; keep it in defaults/"
        assert option.get("description"), f"{role.name}: {name} has no description"
        if name.endswith(SECRET_WORDS) and option.get("type") == "str":
            assert option.get("no_log") is True, f"{role.name}: {name} looks secret but is not no_log"
            assert defaults[name] in ("", None), f"{role.name}: {name} has a placeholder secret in defaults"


@pytest.mark.parametrize("role", [r for r in ROLE_DIRS if (r / "tasks" / "validate.yml").exists()],
                         ids=lambda p: p.name)
def test_validate_entry_point_matches_main(role):
    specs = _load(role)[0]
    assert "validate" in specs, f"{role.name}: tasks/validate.yml exists but no 'validate' entry point"
    assert specs["validate"] == specs["main"], (
        f"{role.name}: the 'validate' entry point differs from 'main'; write it as `validate: *{role.name}_spec`"
    )


def test_validation_play_runs_the_validate_entry_point():
    """Ansible picks a role's argument spec by the exact ``tasks_from`` value: ``validate.yml`` finds no spec and
    checks nothing, so the up-front play must say ``validate`` and every role it loops over must define it."""
    site = yaml.safe_load((ROLES.parent / "playbooks" / "site.yml").read_text())
    includes = [task["ansible.builtin.include_role"] for play in site for task in play.get("tasks", [])
                if "ansible.builtin.include_role" in task]
    assert includes, "playbooks/site.yml no longer includes the roles' validation"
    for include in includes:
        assert include.get("tasks_from") == "validate", (
            f"tasks_from: {include.get('tasks_from')!r} selects no argument spec; use tasks_from: validate"
        )
    stack = yaml.safe_load((ROLES.parent / "playbooks" / "group_vars" / "all" / "stack.yml").read_text())
    services = yaml.safe_load((ROLES.parent / "playbooks" / "group_vars" / "all" / "services.yml").read_text())
    for name in [*stack["borgstack_host_roles"], "stack", *services["borgstack_service_defaults"]]:
        specs = _load(ROLES / name)[0]
        assert "validate" in specs, f"{name} is validated up front but has no 'validate' entry point"


def test_roles_that_skip_their_spec_are_validated_up_front():
    """site.yml imports the service and host roles with rolespec_validate: false because its first play checked their
    'validate' spec (the same as 'main'): every role imported so is one that play validates - a host role or a
    service of the registry - never one outside ``borgstack_roles`` (it would run unchecked)."""
    site = yaml.safe_load((ROLES.parent / "playbooks" / "site.yml").read_text())
    stack = yaml.safe_load((ROLES.parent / "playbooks" / "group_vars" / "all" / "stack.yml").read_text())
    services = yaml.safe_load((ROLES.parent / "playbooks" / "group_vars" / "all" / "services.yml").read_text())
    # stack: in the data layer, and validated with any service's tag (the data play runs it under every one).
    validated = {*stack["borgstack_host_roles"], "stack", *services["borgstack_service_defaults"]}
    unchecked = [task["ansible.builtin.import_role"]["name"].rsplit(".", 1)[-1] for play in site
                 for task in play.get("tasks", []) if "ansible.builtin.import_role" in task
                 and task["ansible.builtin.import_role"].get("rolespec_validate") is False]
    assert unchecked, "site.yml no longer imports roles without a second spec check: update this test"
    assert set(unchecked) <= validated, f"imported unchecked, never validated up front: {set(unchecked) - validated}"


def test_role_readmes_are_generated_from_the_specs():
    import subprocess
    import sys

    script = ROLES.parent / "scripts" / "role-docs.py"
    run = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("role", [r for r in ROLE_DIRS if (r / "tasks" / "validate.yml").exists()],
                         ids=lambda p: p.name)
def test_a_role_validated_up_front_does_not_validate_again(role):
    """Run alone, a role checks its settings itself; under site.yml the first play did it (borgstack_validated_roles)
    and the role's own include is skipped - a role that forgets the condition runs every check twice per run."""
    tasks = yaml.safe_load((role / "tasks" / "main.yml").read_text())
    includes = [t for t in tasks if (t.get("ansible.builtin.include_tasks") or t.get("include_tasks")) == "validate.yml"]
    assert len(includes) == 1, f"{role.name}: tasks/main.yml does not include validate.yml exactly once"
    assert includes[0].get("when") == f"'{role.name}' not in borgstack_validated_roles | default([])", (
        f"{role.name}: the validate.yml include must say when: \"'{role.name}' not in borgstack_validated_roles "
        "| default([])\"")


SITE = yaml.safe_load((ROLES.parent / "playbooks" / "site.yml").read_text())


@pytest.mark.parametrize("role", [r for r in ROLE_DIRS if (r / "tasks" / "deploy.yml").exists()], ids=lambda p: p.name)
def test_site_runs_the_roles_deploy_entry_point_without_their_validation(role):
    """site.yml validated every role up front: it imports a role's deploy.yml (no validation include in it, not even
    a skipped one), while main.yml - the role run alone - validates and then imports the same deploy.yml."""
    imports = [t["ansible.builtin.import_role"] for play in SITE for t in play.get("tasks", [])
               if t.get("ansible.builtin.import_role", {}).get("name") == f"borgstack.stack.{role.name}"]
    assert [i.get("tasks_from") for i in imports] == ["deploy"], f"{role.name}: site.yml must import tasks_from: deploy"
    deploy = yaml.safe_load((role / "tasks" / "deploy.yml").read_text())
    assert not [t for t in deploy if t.get("ansible.builtin.include_tasks") == "validate.yml"], role.name
    main = yaml.safe_load((role / "tasks" / "main.yml").read_text())
    assert [t.get("ansible.builtin.include_tasks") or t.get("ansible.builtin.import_tasks") for t in main] == [
        "validate.yml", "deploy.yml"], f"{role.name}: main.yml must validate, then import deploy.yml"
