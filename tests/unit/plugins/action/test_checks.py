# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.checks (plugins/action/checks.py): every rule of a role in one task, run by the real
ansible-playbook on localhost. A rule that holds adds nothing; each one that does not adds its own message (templated
only then), joined with " | "; ``when`` and ``loop`` (with ``loop_var``) work as on a task; an error in a rule after
an earlier failure is not reported twice, before any failure it names the rule; a ``secret`` rule never shows what
it evaluated; a rule with a typo in its keys is refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]

CASES = {
    "all-hold": [
        {"name": "a", "that": "number > 1", "msg": "number {{ number }}"},
        {"name": "b", "that": ["item > -5"], "msg": "item {{ item }}", "loop": "{{ numbers }}"},
        # Not applied: its message would not even template.
        {"name": "c", "that": False, "msg": "{{ no_such_variable.x }}", "when": "number < 1"},
    ],
    "two-fail": [
        {"name": "a", "that": "number > 10", "msg": "number must be over 10 (found {{ number }})"},
        {"name": "holds", "that": "number > 1", "msg": "never shown"},
        {"name": "b", "that": ["n > 0"], "msg": "numbers has {{ n }}", "loop": "{{ numbers }}", "loop_var": "n"},
        # Follows from an earlier failure: not reported.
        {"name": "c", "that": "no_such_variable.x > 1", "msg": "consequence"},
    ],
    "error-first": [
        {"name": "broken", "that": "no_such_variable.x > 1", "msg": "never templated"},
    ],
    "error-msg": [
        {"name": "sized", "that": "(number | to_datetime).year > 0", "msg": "never templated",
         "error_msg": "number {{ number }} cannot be read: {{ error }}"},
    ],
    "secret-error": [
        # to_datetime's error quotes the value it could not read.
        {"name": "the password", "that": "(password | to_datetime).year > 0", "msg": "x", "secret": True},
    ],
    "typo": [
        {"name": "a", "that": "true", "fail_msg": "old key"},
    ],
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("checks")
    tasks = []
    for case, rules in CASES.items():
        tasks.append({"name": case, "borgstack.stack.checks": {"rules": rules}, "register": f"__{case.replace('-', '_')}",
                      "ignore_errors": True})
    record = "{{ {%s} | to_json }}" % ", ".join(
        f"'{case}': {{'failed': __{case.replace('-', '_')}.failed | default(false), "
        f"'msg': __{case.replace('-', '_')}.msg | default(''), "
        f"'failed_rules': __{case.replace('-', '_')}.failed_rules | default([])}}" for case in CASES)
    tasks.append({"name": "Record", "ansible.builtin.copy": {"dest": str(out / "outcomes.json"), "content": record,
                                                             "mode": "0600"}})
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"number": 5, "numbers": [1, 2, -3], "password": "s3cr3t-value-never-shown"}, "tasks": tasks}]
    playbook = out / "play.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(playbook)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "s3cr3t-value-never-shown" not in proc.stdout + proc.stderr
    return json.loads((out / "outcomes.json").read_text())


def test_rules_that_hold_pass_and_a_rule_that_does_not_apply_is_not_templated(outcomes):
    assert outcomes["all-hold"] == {"failed": False, "msg": "3 rules hold", "failed_rules": []}


def test_every_failing_rule_gives_its_own_message_once(outcomes):
    assert outcomes["two-fail"] == {"failed": True, "failed_rules": ["a", "b"],
                                    "msg": "number must be over 10 (found 5) | numbers has -3"}


def test_an_error_before_any_failure_names_the_rule(outcomes):
    found = outcomes["error-first"]
    assert found["failed"] and found["failed_rules"] == ["broken"], found
    assert found["msg"].startswith("the rule 'broken' could not be evaluated (") and "no_such_variable" in found["msg"]


def test_a_rule_that_cannot_be_evaluated_says_its_own_error_msg(outcomes):
    found = outcomes["error-msg"]
    assert found["failed"] and found["failed_rules"] == ["sized"], found
    assert found["msg"].startswith("number 5 cannot be read: ") and "to_datetime" in found["msg"], found


def test_a_secret_rule_shows_nothing_it_read(outcomes):
    assert outcomes["secret-error"] == {
        "failed": True, "failed_rules": ["the password"],
        "msg": "the rule 'the password' could not be evaluated (its values are not shown)"}


def test_a_rule_with_an_unknown_key_is_refused(outcomes):
    found = outcomes["typo"]
    assert found["failed"] and "unknown key(s) fail_msg" in found["msg"] and "needs that and msg" in found["msg"]


SPEC_CASES = {
    # The spec holds and the rules apply: a broken rule fails with its own message.
    "spec-holds": {"count": 5, "mode": "fast", "on": True},
    # The spec breaks: Ansible's message naming the option; the rules are not evaluated (their message would be).
    "spec-breaks": {"count": "many", "mode": "slow", "on": True},
    # rules_when false: the spec is still checked, no rule applies.
    "rules-off": {"count": 5, "mode": "fast", "on": False},
    "rules-off-spec-breaks": {"count": 5, "mode": "slow", "on": False},
}


@pytest.fixture(scope="module")
def spec_outcomes(tmp_path_factory) -> dict:
    """A role whose checks task carries argument_spec (entry point validate) and rules_when, included as the
    validation play includes the roles (tasks_from validate, rolespec_validate false)."""
    out = tmp_path_factory.mktemp("checks_spec")
    role = out / "roles" / "specrole"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"validate": {
        "short_description": "t", "options": {
            "count": {"type": "int", "required": True, "description": "c"},
            "mode": {"type": "str", "choices": ["fast"], "description": "m"}}}}}))
    (role / "tasks" / "validate.yml").write_text(yaml.safe_dump([{
        "name": "Check", "register": "__spec_out", "ignore_errors": True,
        "borgstack.stack.checks": {"argument_spec": "validate", "rules_when": "on | bool", "rules": [
            {"name": "big", "that": "count | int > 10", "msg": "count must be over 10 (found {{ count }})"}]}}]))
    tasks = []
    for case, values in SPEC_CASES.items():
        tasks.append({"name": case, "ansible.builtin.include_role": {
            "name": "specrole", "tasks_from": "validate", "rolespec_validate": False}, "vars": values})
        tasks.append({"name": f"keep {case}", "ansible.builtin.set_fact": {
            f"__{case.replace('-', '_')}": "{{ {'failed': __spec_out.failed | default(false), 'msg': __spec_out.msg, "
                                           "'argument_errors': __spec_out.argument_errors | default([])} }}"}})
    record = "{{ {%s} | to_json }}" % ", ".join(f"'{case}': __{case.replace('-', '_')}" for case in SPEC_CASES)
    tasks.append({"name": "Record", "ansible.builtin.copy": {"dest": str(out / "outcomes.json"), "content": record,
                                                             "mode": "0600"}})
    playbook = out / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                                       sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_ROLES_PATH=str(out / "roles"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_LOCALHOST_WARNING="0")
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(playbook)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((out / "outcomes.json").read_text())


def test_the_argument_spec_is_checked_before_the_rules(spec_outcomes):
    assert spec_outcomes["spec-holds"] == {"failed": True, "msg": "count must be over 10 (found 5)",
                                           "argument_errors": []}
    broken = spec_outcomes["spec-breaks"]
    assert broken["failed"] and broken["msg"].startswith("Validation of arguments failed:\n"), broken
    assert any("count" in e for e in broken["argument_errors"]), broken
    assert any("mode" in e and "fast" in e for e in broken["argument_errors"]), broken
    assert "count must be over 10" not in broken["msg"]


def test_rules_when_turns_off_the_rules_but_not_the_spec(spec_outcomes):
    assert spec_outcomes["rules-off"] == {"failed": False, "msg": "the argument spec holds; no rule applies",
                                          "argument_errors": []}
    broken = spec_outcomes["rules-off-spec-breaks"]
    assert broken["failed"] and any("mode" in e for e in broken["argument_errors"]), broken
