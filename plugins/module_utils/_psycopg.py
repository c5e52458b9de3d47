# SPDX-License-Identifier: GPL-3.0-or-later
"""The optional psycopg 3 import shared by the modules that speak to PostgreSQL, and the failure they give without it.

``psycopg`` and ``sql`` are ``None`` when the library is missing; a module checks ``HAS_PSYCOPG`` before it needs
them and calls ``fail_without_psycopg``.
"""
from __future__ import annotations

import traceback

from ansible.module_utils.basic import missing_required_lib

__all__ = ["HAS_PSYCOPG", "PSYCOPG_IMPORT_ERROR", "fail_without_psycopg", "psycopg", "sql"]

PSYCOPG_IMPORT_ERROR: str | None = None
try:
    import psycopg
    from psycopg import sql
except ImportError:
    psycopg = None
    sql = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()

HAS_PSYCOPG = psycopg is not None


def fail_without_psycopg(module) -> None:
    """Fail the module run, naming the library and the Debian package that provides it."""
    module.fail_json(msg=missing_required_lib("psycopg (Debian: python3-psycopg)"), exception=PSYCOPG_IMPORT_ERROR)
