# SPDX-License-Identifier: GPL-3.0-or-later
"""An operator's inventory from before the contract converges to the same stack after it.

``fixtures/wiring-before-contract.json`` holds, for the lab inventory and a production-like one (every app on, n8n
queue mode, Duplicati with a destination, a secret override and a rotated secret), a SHA-256 of every value the
service roles saw before the registry fed them through ``borgstack_contracts``: the 18 wiring files' variables and
the roles' own defaults. ``fixtures/wiring-to-contract/*.yml`` say where each of those values comes from now: an
expression in the role's terms (``directus_service.postgres.host``), evaluated with today's group_vars and role
defaults. A variable not listed there must still exist under its own name. Every hash must match, except for the
entries listed under ``changed`` with the reason (a deliberate change). What did not run: the roles themselves (the
molecule stack scenario converges them; here, only the values they read)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from wiring_snapshot import INVENTORIES, digest, evaluate, role_defaults  # pylint: disable=import-error

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BEFORE = json.loads((FIXTURES / "wiring-before-contract.json").read_text())


def _mapping():
    merged = {"now": {}, "changed": {}}
    for path in sorted((FIXTURES / "wiring-to-contract").glob("*.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        for key in merged:
            twice = set(merged[key]) & set(data.get(key) or {})
            assert not twice, f"{path.name}: {', '.join(sorted(twice))} already listed in another file"
            merged[key].update(data.get(key) or {})
    return merged


MAPPING = _mapping()


@pytest.fixture(scope="module", params=sorted(INVENTORIES))
def after(request):
    """(inventory, {old variable: digest of its value now}) for one inventory."""
    names = set(BEFORE[request.param]) - set(MAPPING.get("changed") or {})
    expressions = {name: (MAPPING.get("now") or {}).get(name, name) for name in names}
    values = evaluate(request.param, expressions, role_defaults())
    return request.param, {name: digest(value) for name, value in values.items()}


def test_every_value_is_the_same(after):
    inventory, now = after
    differ = sorted(name for name, value in now.items() if BEFORE[inventory][name] != value)
    assert not differ, (
        f"{inventory}: these values changed with the contract (fix the contract or the role, or list the variable "
        f"under 'changed' in {FIXTURES / 'wiring-to-contract'}/<role>.yml with the reason): {', '.join(differ)}")


def test_changes_are_explained():
    for name, why in (MAPPING.get("changed") or {}).items():
        assert name in BEFORE["lab"], f"changed: {name} was not a variable before the contract"
        assert isinstance(why, str) and len(why) > 20, f"changed: {name} needs the reason"


def test_mapping_names_old_variables_only():
    unknown = sorted(set(MAPPING.get("now") or {}) - set(BEFORE["lab"]))
    assert not unknown, f"now: not variables before the contract: {', '.join(unknown)}"
