# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/mutations.yml stays applicable: scripts/mutation-check.sh replaces each entry's ``old`` text, which must
occur exactly once in its file (a refactor that rewrites the line leaves an entry that mutates nothing, or the wrong
place), ids are unique, and every test path it names exists."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ENTRIES = yaml.safe_load((ROOT / "tests" / "mutations.yml").read_text(encoding="utf-8"))


def test_ids_are_unique():
    twice = [name for name, n in Counter(e["id"] for e in ENTRIES).items() if n > 1]
    assert not twice, f"mutation ids used twice: {twice}"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_old_text_occurs_once_and_tests_exist(entry):
    text = (ROOT / entry["file"]).read_text(encoding="utf-8")
    assert text.count(entry["old"]) == 1, (
        f"{entry['id']}: its old text occurs {text.count(entry['old'])} times in {entry['file']}; update the entry")
    assert entry["new"] != entry["old"], f"{entry['id']}: new equals old"
    for path in entry.get("tests", []) + entry.get("integration", []):
        assert (ROOT / path).exists(), f"{entry['id']}: {path} does not exist"
