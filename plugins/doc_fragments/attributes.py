# SPDX-License-Identifier: GPL-3.0-or-later
"""Authorship and attributes shared by the borgstack.stack modules (the way community.docker's attributes fragment
gives its modules theirs).

A module that changes state lists ``borgstack.stack.attributes`` (check and diff mode in full, a rerun changes
nothing); one that only reads lists ``borgstack.stack.attributes.read_only``. The module's own ``attributes`` add
the details, and override the fragment where a value differs.
"""
from __future__ import annotations


def _attributes(diff_mode: str, idempotent: str, check_mode_details: str = "") -> str:
    """The fragment's YAML: what differs between the variants is diff mode, idempotence and check mode's details."""
    details = f"\n    details:\n      - {check_mode_details}" if check_mode_details else ""
    return f"""
author:
  - BorgStack engineers (@borgstack)
options: {{}}
attributes:
  check_mode:
    description: Runs in check mode and reports what it would change without changing it.
    support: full{details}
  diff_mode:
    description: Returns what changed (or would change, in check mode) when run with C(--diff).
    support: {diff_mode}
  idempotent:
    description:
      - {idempotent}
    support: full
  platform:
    description: The systems the module runs on.
    support: N/A
    platforms: posix
"""


class ModuleDocFragment:

    DOCUMENTATION = _attributes("full", "When run twice with the same arguments, the second run reports no change.")

    READ_ONLY = _attributes("none", "Read-only.",
                            "Read-only; reads the same in check mode (nothing is written either way).")
