# SPDX-License-Identifier: GPL-3.0-or-later
"""Authorship and attributes shared by the borgstack.stack modules (the way community.docker's attributes fragment
gives its modules theirs).

A module that changes state lists ``borgstack.stack.attributes``: check and diff mode in full, a rerun changes
nothing. A module that only reads lists ``borgstack.stack.attributes.read_only`` first, then
``borgstack.stack.attributes``: Ansible lets the fragment listed earlier win where two give the same key, so diff
mode becomes unsupported and idempotence "read-only". The module's own ``attributes`` add the details, and win over
both.
"""
from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
author:
  - BorgStack engineers (@borgstack)
options: {}
attributes:
  check_mode:
    description: Runs in check mode and reports what it would change without changing it.
    support: full
  diff_mode:
    description: Returns what changed (or would change, in check mode) when run with C(--diff).
    support: full
  idempotent:
    description:
      - When run twice with the same arguments, the second run reports no change.
    support: full
  platform:
    description: The systems the module runs on.
    support: N/A
    platforms: posix
"""

    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    details:
      - Read-only; reads the same in check mode (nothing is written either way).
  diff_mode:
    support: none
  idempotent:
    description: Read-only.
"""
