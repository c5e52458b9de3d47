# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/configuracao.md's variable tables are the roles' argument specs (and their defaults).

The block between the markers of docs/configuracao.md is rendered by scripts/gen-config-doc.py from every role's
meta/argument_specs.yml (name, type, description, choices, required), its defaults/main.yml (the default) and
playbooks/group_vars/all/ (which variables the stack wires). A change to any of them that is not regenerated fails
here:

    python3 scripts/gen-config-doc.py
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gen-config-doc.py"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_config_doc_tables_match_the_argument_specs() -> None:
    diff = _generator().stale_diff()
    assert not diff, (
        "docs/configuracao.md's variable tables differ from the roles' argument specs/defaults; regenerate them with "
        f"`python3 scripts/gen-config-doc.py`:\n{diff}"
    )


def test_config_doc_has_a_table_for_every_role_with_argument_specs() -> None:
    gen = _generator()
    _head, block, _tail = gen.split(gen.DOC.read_text(encoding="utf-8"))
    roles = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
    assert [line[5:-1] for line in block.splitlines() if line.startswith("### `")] == roles
    for role in roles:
        options = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"]["main"].get("options") or {}
        section = block.split(f"### `{role}`", 1)[1].split("### `", 1)[0]
        rows = [line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")]
        assert rows == list(options), f"{role}: table rows differ from the argument spec's options"
