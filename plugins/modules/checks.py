#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: checks
short_description: Evaluate every rule of a role's settings in one task and fail with the message of each broken one
version_added: 0.4.0
description:
  - The validation of a role's settings, one task per role instead of one C(ansible.builtin.assert) per rule.
    Each rule is evaluated as C(assert) evaluates its O(rules[].that); a rule that does not hold adds its
    O(rules[].msg), templated only then, to the task's message, joined with C( | ).
  - Runs on the controller only (an action plugin); never connects to the host and never changes anything.
  - A rule that cannot be evaluated (an undefined variable, a filter error) after an earlier rule failed follows from
    that failure and is not reported; before any failure it fails the task naming the rule.
extends_documentation_fragment:
  - borgstack.stack.attributes.read_only
  - borgstack.stack.attributes
options:
  argument_spec:
    description:
      - An entry point of the running role's C(meta/argument_specs.yml). The role's options (the task's variables,
        templated) are checked against it first, with Ansible's own validator and message
        (C(Validation of arguments failed)); the rules are evaluated only when they pass.
      - Include the role with C(rolespec_validate=false) so that the spec is not checked twice.
    type: str
  rules_when:
    description: Conditions under which the rules apply (all must be true); the argument spec is checked whatever
      they say.
    type: raw
  rules:
    description:
      - The rules, evaluated in order. Ansible does not template them before the action runs.
      - Required without O(argument_spec).
    type: list
    elements: dict
    suboptions:
      name:
        description: What the rule checks, shown when it cannot be evaluated.
        type: str
      that:
        description: Conditions, as C(assert)'s C(that); all must be true.
        type: raw
        required: true
      msg:
        description: What is wrong and how to fix it (name the variable); templated only when the rule fails.
        type: str
        required: true
      when:
        description: Conditions under which the rule applies (all must be true); by default it always applies.
        type: raw
      loop:
        description: A list (or a template giving one); the rule is evaluated once per element.
        type: raw
      loop_var:
        description: The name each element of O(rules[].loop) gets.
        type: str
        default: item
      error_msg:
        description: What to say when the rule cannot be evaluated (a filter that refuses the settings, for example),
          templated with the error's text as C(error); without it the task names the rule and quotes the error.
        type: str
      secret:
        description: The rule reads a secret; an error while evaluating it is reported without its details.
        type: bool
        default: false
attributes:
  action:
    description: Runs on the controller as an action plugin; the host is never contacted.
    support: full
  check_mode:
    details:
      - Evaluates the same in check mode.
  async:
    description: Evaluated at once on the controller; async does not apply.
    support: none
"""

EXAMPLES = r"""
- name: Check the Redis settings
  borgstack.stack.checks:
    argument_spec: validate
    rules_when: redis_service.enabled | bool
    rules:
      - name: memory
        that: redis_maxmemory_mb | int >= 32
        msg: "redis_maxmemory_mb must be at least 32 (found {{ redis_maxmemory_mb }})."
      - name: ports
        that: item | int > 0
        msg: "redis_ports has {{ item }}: a port is a positive number."
        loop: "{{ redis_ports }}"
"""

RETURN = r"""
argument_errors:
  description: What breaks the argument spec, one message per option (Ansible's validator's words).
  returned: when the argument spec does not hold
  type: list
  elements: str
failed_rules:
  description: The names of the rules that did not hold (or could not be evaluated).
  returned: always
  type: list
  elements: str
msg:
  description: The messages of the rules that did not hold, joined with C( | ); or how many rules hold.
  returned: always
  type: str
"""
