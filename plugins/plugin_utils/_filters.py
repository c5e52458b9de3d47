# SPDX-License-Identifier: GPL-3.0-or-later
"""What every borgstack.stack filter plugin file shares: the ``FilterModule`` Ansible asks for its filters.

A filter file ends with::

    class FilterModule(NamedFilters):
        \"\"\"What these filters are about.\"\"\"

        FILTERS = (first_filter, second_filter)

and each function is offered under its own name (write a function under the name the playbooks use, with its
sidecar documentation ``<name>.yml`` beside the file).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Tuple


class NamedFilters:
    """Base of a filter file's ``FilterModule``: ``FILTERS`` lists the functions, each a filter of its own name."""

    FILTERS: Tuple[Callable[..., Any], ...] = ()

    def filters(self) -> Dict[str, Callable[..., Any]]:
        return {function.__name__: function for function in self.FILTERS}
