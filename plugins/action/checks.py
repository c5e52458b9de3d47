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
"""
from __future__ import annotations

import typing as t

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

RULE_KEYS = frozenset({"name", "that", "msg", "when", "loop", "loop_var", "secret"})


def _as_list(value: t.Any) -> list:
    return value if isinstance(value, list) else [value]


def rule_errors(rules: t.Any) -> list[str]:
    """What is wrong with the rules themselves (a typo in a role, caught by its unit tests and at run time)."""
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
        if name == "rules":
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        rules = self._task.args.get("rules")
        unknown = sorted(set(self._task.args) - {"rules"})
        problems = rule_errors(rules) + ([f"unknown option(s) {', '.join(unknown)}"] if unknown else [])
        if problems:
            raise AnsibleError("borgstack.stack.checks: " + "; ".join(problems))

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
                detail = "its values are not shown" if rule.get("secret") else str(error)
                messages.append(f"the rule '{rule.get('name', '')}' could not be evaluated ({detail})")
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
