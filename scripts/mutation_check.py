# SPDX-License-Identifier: GPL-3.0-or-later
"""Apply each mutation of tests/mutations.yml to a scratch copy of the tree and check that its tests catch it.

Run it through scripts/mutation-check.sh (see there). The working tree is never modified: the git-tracked files
(as they are on disk, uncommitted edits included) are copied to a mktemp directory, and each mutation is applied
there, tested, and reverted before the next one.

Exit status: 0 when every mutation is caught; 1 when one survived or its tests errored instead of failing; 2 when
the list is stale (``old`` text not found exactly once) or the unmutated tests do not pass.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTEST_FAILED = 1  # pytest's exit code when tests ran and some failed; others are errors or "no tests"


def load(path: Path) -> list[dict[str, Any]]:
    mutations = yaml.safe_load(path.read_text(encoding="utf-8"))
    required = {"id", "file", "old", "new", "tests"}
    for entry in mutations:
        missing = required - set(entry)
        if missing:
            raise SystemExit(f"{path}: mutation {entry.get('id', '?')} lacks {', '.join(sorted(missing))}")
    return mutations


def copy_tracked_tree(destination: Path) -> None:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.exists():  # deleted but not yet staged: skip
            shutil.copy2(source, target)


def run_pytest(tree: Path, paths: list[str]) -> int:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tree / "collections"), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *paths]
    return subprocess.run(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False).returncode


def test_paths(mutation: dict[str, Any], integration: bool) -> list[str]:
    paths = list(mutation["tests"])
    if integration:
        paths += mutation.get("integration", [])
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", default=str(ROOT / "tests" / "mutations.yml"), help="mutation list (YAML)")
    parser.add_argument("--only", action="append", default=[], help="run only this mutation id (repeatable)")
    args = parser.parse_args()
    integration = os.environ.get("MUTATION_INTEGRATION") == "1"

    mutations = [m for m in load(Path(args.list)) if not args.only or m["id"] in args.only]
    if not mutations:
        print("no mutation selected", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="borgstack-mutation-") as scratch:
        tree = Path(scratch)
        copy_tracked_tree(tree)

        stale = [m["id"] for m in mutations if (tree / m["file"]).read_text(encoding="utf-8").count(m["old"]) != 1]
        if stale:
            print(f"stale mutations (old text not found exactly once): {', '.join(stale)}", file=sys.stderr)
            return 2
        baseline = sorted({path for m in mutations for path in test_paths(m, integration)})
        if run_pytest(tree, baseline) != 0:
            print(f"the unmutated tests do not pass: {' '.join(baseline)}", file=sys.stderr)
            return 2

        outcomes = []
        for mutation in mutations:
            target = tree / mutation["file"]
            original = target.read_text(encoding="utf-8")
            target.write_text(original.replace(mutation["old"], mutation["new"], 1), encoding="utf-8")
            try:
                code = run_pytest(tree, test_paths(mutation, integration))
            finally:
                target.write_text(original, encoding="utf-8")
            outcome = {0: "SURVIVED", PYTEST_FAILED: "caught"}.get(code, f"ERROR (pytest exit {code})")
            outcomes.append(outcome)
            print(f"{outcome:<10} {mutation['id']}  ({mutation['file']}; {', '.join(mutation['tests'])})")

    survived = sum(outcome != "caught" for outcome in outcomes)
    print(f"\n{len(outcomes) - survived} of {len(outcomes)} mutations caught"
          + ("" if integration else " (unit tests only; MUTATION_INTEGRATION=1 adds the integration paths)"))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
