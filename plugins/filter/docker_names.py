# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names that become Docker objects, checked against Docker's own rules before anything is created.

Containers, volumes and networks: moby's RestrictedNamePattern, ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` (a letter or digit,
then at least one more letter, digit, ``_``, ``.`` or ``-``). Compose project names: lower case,
``[a-z0-9][a-z0-9_-]*``. A name such as ``bad net`` would otherwise pass the validation play, and the engine or
Compose refuse it half-way through a run.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, List, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

# moby daemon/names: RestrictedNameChars + "+" (containers and volumes; the stack holds its networks to it too).
# Whole-string matches (fullmatch): Python's $ would let a trailing newline through, Go's does not.
_OBJECT_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
# compose-go: project names are lower-case letters, digits, dashes and underscores, starting with a letter or digit.
_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")


def _names(filter_name: str, names: Any) -> Mapping[str, Any]:
    if not isinstance(names, Mapping) or not all(isinstance(k, str) and k for k in names):
        raise AnsibleFilterError(f"{filter_name}: expects a dict {{<variable name>: <value>}}, got {names!r}")
    return names


def docker_name_errors(names: Any, optional: Iterable[str] = ()) -> List[str]:
    """One message per variable of ``names`` ({variable: value}) whose value Docker would refuse as a container,
    volume or network name, each naming the variable and the fix. ``optional``: variables whose empty value means
    "not set" (the role then derives the name)."""
    errors = []
    for variable, value in _names("docker_name_errors", names).items():
        if value == "" and variable in optional:
            continue
        if not isinstance(value, str) or not _OBJECT_RE.fullmatch(value):
            errors.append(f"{variable} must be a Docker name - a letter or digit, then at least one more letter, "
                          f"digit, '_', '.' or '-' (no spaces or '/'), found {value!r}: rename it in your inventory "
                          f"(e.g. borgstack_internal, borgstack_n8n_data)")
    return errors


def compose_project_errors(names: Any) -> List[str]:
    """One message per variable of ``names`` ({variable: value}) whose value is not a Docker Compose project name,
    naming the variable and the fix."""
    errors = []
    for variable, value in _names("compose_project_errors", names).items():
        if not isinstance(value, str) or not _PROJECT_RE.fullmatch(value):
            errors.append(f"{variable} must be a Docker Compose project name - lower-case letters, digits, '-' or "
                          f"'_', starting with a letter or digit - found {value!r}: set it in your inventory to a "
                          f"name such as borgstack")
    return errors


class FilterModule(NamedFilters):
    """Docker naming-rule filters."""

    FILTERS = (docker_name_errors, compose_project_errors)
