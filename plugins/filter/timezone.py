# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time zones checked against the IANA zone database, not by shape: ``America/Sao_Paul`` has the shape of a zone,
and a container given it runs on UTC while its logs say "America"."""
from __future__ import annotations

import difflib
import functools
import zoneinfo
from typing import Any, FrozenSet

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters


@functools.lru_cache(maxsize=1)
def _zones() -> FrozenSet[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_error(value: Any, variable: Any) -> str:
    """'' when ``value`` names a zone of the IANA database, else a message naming ``variable`` and the fix
    (with the nearest zone names when there are any)."""
    if not isinstance(variable, str) or not variable:
        raise AnsibleFilterError("timezone_error: the variable name must be a non-empty string")
    zones = _zones()
    if not zones:
        raise AnsibleFilterError(
            f"timezone_error: no time zone database on the Ansible controller to check {variable} against; install "
            "the tzdata package (apt install tzdata, or pip install tzdata in Ansible's Python)"
        )
    if isinstance(value, str) and value in zones:
        return ""
    message = (f"{variable}: {value!r} is not a time zone of the IANA database; write one such as America/Sao_Paulo "
               "or UTC (list them with: timedatectl list-timezones)")
    if isinstance(value, str):
        near = difflib.get_close_matches(value, sorted(zones), n=3, cutoff=0.8)
        if near:
            message += f"; did you mean {' or '.join(near)}?"
    return message


class FilterModule(NamedFilters):
    """Time zone filters."""

    FILTERS = (timezone_error,)
