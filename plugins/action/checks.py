# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every rule of a role's settings in one task (borgstack.stack.checks; documented in plugins/modules/checks.py).

A role's validation used to be one ``assert`` per rule: each a task, so ~100 tasks of every run did nothing but
evaluate one condition (a fork, the task's templating and a result sent back, ~70 ms each). Here one task evaluates
all the rules of a role on the controller and fails with the message of every rule that does not hold, joined.

The rules are kept as written (Ansible does not template them before the action runs, as for ``assert``'s ``that``):
a rule's ``when`` and ``that`` are evaluated, its ``msg`` templated only when it fails. A rule that cannot even be
evaluated after an earlier rule failed is a consequence of that failure and is not reported twice; before any failure
it is reported, naming the rule. A ``secret`` rule never shows what it evaluated nor the error it raised.

With ``argument_spec`` (an entry point of the running role's meta/argument_specs.yml), the role's options are first
checked against it as Ansible checks a role's argument spec (the same validator, the same message), and the rules are
evaluated only when they pass: the spec's check and the rules are one task instead of two. ``rules_when`` says when
the rules apply at all (the spec is checked whatever it says), as a ``when`` on the task did before.
"""
from __future__ import annotations

import typing as t

import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

RULE_KEYS = frozenset({"name", "that", "msg", "when", "loop", "loop_var", "secret", "error_msg"})


def _as_list(value: t.Any) -> list:
    return value if isinstance(value, list) else [value]


def rule_errors(rules: t.Any, required: bool = True) -> list[str]:
    """What is wrong with the rules themselves (a typo in a role, caught by its unit tests and at run time)."""
    if rules is None and not required:
        return []
    if not isinstance(rules, list) or not rules:
        return ["rules must be a non-empty list"]
    errors = []
    for index, rule in enumerate(rules):
        where = f"rules[{index}]"
        if not isinstance(rule, dict):
            errors.append(f"{where} must be a mapping")
            continue
        where = f"{where} ({rule.get('name', 'no name')})"
        unknown = sorted(set(rule) - RULE_KEYS)
        if unknown:
            errors.append(f"{where}: unknown key(s) {', '.join(unknown)}")
        if "that" not in rule or "msg" not in rule:
            errors.append(f"{where}: needs that and msg")
        if "loop_var" in rule and "loop" not in rule:
            errors.append(f"{where}: loop_var without loop")
    return errors


class ActionModule(ActionBase):
    """Evaluate a list of rules; fail with the message of each one that does not hold."""

    _requires_connection = False
    TRANSFERS_FILES = False

    @classmethod
    def finalize_task_arg(cls, name, value, templar, context):
        # The rules are evaluated one by one in run(): templating them all up front would render every message (and
        # fail on a message whose variables only exist when its rule applies).
        if name in ("rules", "rules_when"):
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        rules = self._task.args.get("rules")
        entry_point = self._task.args.get("argument_spec")
        unknown = sorted(set(self._task.args) - {"rules", "rules_when", "argument_spec"})
        problems = rule_errors(rules, required=entry_point is None) + (
            [f"unknown option(s) {', '.join(unknown)}"] if unknown else [])
        if problems:
            raise AnsibleError("borgstack.stack.checks: " + "; ".join(problems))
        if entry_point is not None:
            spec_errors = self._argument_spec_errors(str(entry_point), task_vars)
            if spec_errors:
                # Ansible's own message for a role whose options break its argument spec.
                result.update(failed=True, changed=False, failed_rules=[], argument_errors=spec_errors,
                              msg="Validation of arguments failed:\n" + "\n".join(spec_errors))
                return result
        if rules is None or not self._all_true(self._templar, self._task.args.get("rules_when", True)):
            result.update(changed=False, failed_rules=[], msg="the argument spec holds; no rule applies")
            return result

        failed: list[str] = []
        messages: list[str] = []
        for rule in rules:
            try:
                for templar in self._templars(rule, task_vars):
                    if self._all_true(templar, rule.get("when", True)) and not self._all_true(templar, rule["that"]):
                        messages.append(str(templar.template(rule["msg"])).strip())
                        failed.append(rule.get("name", ""))
            except AnsibleError as error:
                if failed:
                    continue  # follows from a rule that already failed
                messages.append(self._error_message(rule, error, task_vars))
                failed.append(rule.get("name", ""))

        result["changed"] = False
        result["failed_rules"] = failed
        if messages:
            # Each message names its variable and the fix; the same separator as the registry's checks.
            result["failed"] = True
            result["msg"] = " | ".join(dict.fromkeys(messages))
        else:
            result["msg"] = f"{len(rules)} rules hold"
        return result

    def _argument_spec_errors(self, entry_point: str, task_vars: dict) -> list[str]:
        """The role's options (the task's variables, templated) against an entry point of its argument spec."""
        role_path = task_vars.get("role_path")
        if not role_path:
            raise AnsibleError("borgstack.stack.checks: argument_spec needs the task to run inside a role")
        path = os.path.join(role_path, "meta", "argument_specs.yml")
        specs = (self._loader.load_from_file(path) or {}).get("argument_specs", {})
        if entry_point not in specs:
            raise AnsibleError(f"borgstack.stack.checks: {path} has no entry point {entry_point}")
        options = specs[entry_point].get("options") or {}
        provided = self._templar.template({name: task_vars[name] for name in options if name in task_vars})
        return list(ArgumentSpecValidator(options).validate(provided, validate_role_argument_spec=True).error_messages)

    def _error_message(self, rule: dict, error: AnsibleError, task_vars: dict) -> str:
        """A rule that could not be evaluated: its error_msg (templated with the error as ``error``), or its name."""
        if rule.get("secret"):
            return f"the rule '{rule.get('name', '')}' could not be evaluated (its values are not shown)"
        detail = str(error)
        if "error_msg" in rule:
            templar = self._templar.copy_with_new_env(available_variables={**task_vars, "error": detail})
            return str(templar.template(rule["error_msg"])).strip()
        return f"the rule '{rule.get('name', '')}' could not be evaluated ({detail})"

    @staticmethod
    def _all_true(templar, conditions) -> bool:
        """Each condition (a string or a list of them) evaluated as assert's that and a task's when are."""
        return all(templar.evaluate_conditional(c) for c in _as_list(conditions))

    def _templars(self, rule, task_vars):
        """One templar per evaluation: the task's, or one per item of the rule's loop (``item`` or its loop_var)."""
        if "loop" not in rule:
            yield self._templar
            return
        for item in self._templar.template(rule["loop"]) or []:
            yield self._templar.copy_with_new_env(
                available_variables={**task_vars, rule.get("loop_var", "item"): item})
