# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WhatsApp numbers of the customer service (borgstack_customer_service): each an Evolution API instance, the
Chatwoot API inbox its conversations go to and, optionally, the Chatwoot team new conversations are given to.

Without ``numbers`` the stack serves one number, as before: ``instance`` and the inbox ``chatwoot_inbox_id`` (named
``default_inbox``). With ``numbers`` the first entry is that default number (inbox ``chatwoot_inbox_id``, renamed to
its ``inbox``) and each further entry gets an inbox of its own, found by name."""
from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

VARIABLE = "borgstack_customer_service"
# The instance name is a path segment of every Evolution API call (/message/sendText/<instance>) and its Redis and
# file keys: the evolution_api role's rule (tasks/validate.yml).
INSTANCE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEYS = {"instance", "inbox", "team"}
# Chatwoot's Inbox and Team names: presence and a length the dashboard accepts; the inbox name is matched exactly.
NAME_MAX = 100


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.strip() == value and 0 < len(value) <= NAME_MAX


def _claim(seen: dict[str, int], name: str, index: int) -> int | None:
    """The index of the number that already has ``name`` (case ignored); else ``name`` is now ``index``'s."""
    earlier = seen.setdefault(name.lower(), index)
    return None if earlier == index else earlier


def whatsapp_number_errors(customer_service: Any) -> list[str]:
    """Every problem of ``borgstack_customer_service.numbers`` / ``.teams``, each naming the variable and the fix
    (empty: the numbers are fine)."""
    if not isinstance(customer_service, dict):
        return [f"{VARIABLE} must be a dict (instance, chatwoot_account_id, chatwoot_inbox_id, optional numbers and "
                "teams); see playbooks/group_vars/all/customer_service.yml"]
    errors: list[str] = []
    teams = customer_service.get("teams", [])
    if not isinstance(teams, list) or not all(_is_name(t) for t in teams):
        errors.append(f"{VARIABLE}.teams must be a list of Chatwoot team names (1-{NAME_MAX} characters, no leading "
                      "or trailing spaces), e.g. [Vendas, Suporte]")
        teams = []
    elif len({t.lower() for t in teams}) != len(teams):
        errors.append(f"{VARIABLE}.teams lists a team twice (Chatwoot team names ignore case): keep one of each")
    if "numbers" not in customer_service:
        instance = customer_service.get("instance", "principal")
        if not isinstance(instance, str) or not INSTANCE.match(instance):
            errors.append(f"{VARIABLE}.instance: {instance!r} is not an Evolution API instance name; use 1-64 "
                          "letters, digits, _ or - (no spaces, it is part of every API path), e.g. principal")
        return errors
    numbers = customer_service["numbers"]
    if not isinstance(numbers, list) or not numbers:
        return errors + [f"{VARIABLE}.numbers must be a non-empty list of {{instance, inbox, team}} (the first is the "
                         "default number); remove it to serve one number"]
    seen_instances: dict[str, int] = {}
    seen_inboxes: dict[str, int] = {}
    for index, number in enumerate(numbers):
        where = f"{VARIABLE}.numbers[{index}]"
        if not isinstance(number, dict):
            errors.append(f"{where} must be a dict with instance, inbox and optional team")
            continue
        unknown = sorted(set(number) - KEYS, key=str)
        if unknown:
            errors.append(f"{where} has unknown key(s) {', '.join(map(str, unknown))}: only instance, inbox and team")
        instance = number.get("instance")
        if not isinstance(instance, str) or not INSTANCE.match(instance):
            errors.append(f"{where}.instance: {instance!r} is not an Evolution API instance name; use 1-64 letters, "
                          "digits, _ or - (no spaces, it is part of every API path), e.g. vendas")
        # Evolution API finds instances by name; two names that differ only in case are one WhatsApp session's
        # files and Redis keys on a case-insensitive volume, and certainly one operator's mistake.
        elif (earlier := _claim(seen_instances, instance, index)) is not None:
            errors.append(f"{where}.instance: {instance!r} is already numbers[{earlier}]'s "
                          "instance; give each number its own instance name")
        inbox = number.get("inbox")
        if not _is_name(inbox):
            errors.append(f"{where}.inbox: {inbox!r} is not a Chatwoot inbox name; write 1-{NAME_MAX} characters "
                          "without leading or trailing spaces, e.g. Vendas")
        elif (earlier := _claim(seen_inboxes, inbox, index)) is not None:
            errors.append(f"{where}.inbox: {inbox!r} is already numbers[{earlier}]'s inbox; give "
                          "each number its own inbox name (the workflows route replies by inbox)")
        if "team" in number and number["team"] is not None:
            team = number["team"]
            if not _is_name(team) or team.lower() not in {t.lower() for t in teams}:
                errors.append(f"{where}.team: {team!r} is not one of {VARIABLE}.teams ({', '.join(teams) or 'none'}); "
                              "add it to teams (the play creates it in Chatwoot) or fix the spelling")
    return errors


def whatsapp_numbers(customer_service: Any, default_inbox: Any = "WhatsApp") -> list[dict[str, Any]]:
    """The numbers as the roles use them: ``[{instance, inbox, inbox_id, team}]``, the default number first with
    ``inbox_id`` = ``chatwoot_inbox_id``, the others with ``inbox_id`` None (Chatwoot gives the id; the workflows find
    it by name) and ``team`` None when not set. Fails on what whatsapp_number_errors refuses."""
    errors = whatsapp_number_errors(customer_service)
    if errors:
        raise AnsibleFilterError("; ".join(errors))
    inbox_id = int(customer_service.get("chatwoot_inbox_id", 1))
    if "numbers" not in customer_service:
        return [{"instance": customer_service.get("instance", "principal"), "inbox": default_inbox,
                 "inbox_id": inbox_id, "team": None}]
    return [{"instance": n["instance"], "inbox": n["inbox"], "inbox_id": inbox_id if i == 0 else None,
             "team": n.get("team")} for i, n in enumerate(customer_service["numbers"])]


class FilterModule(NamedFilters):
    """WhatsApp number filters."""

    FILTERS = (whatsapp_number_errors, whatsapp_numbers)
