#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Mutation check (a developer tool, not a step of scripts/test.sh): do the tests catch what they claim to?
#
# Copies the git-tracked tree to a scratch directory (mktemp), applies each mutation listed in tests/mutations.yml
# there (file, exact old text, new text), runs the unit tests the entry names, and reports per mutation "caught"
# or "SURVIVED". Exits non-zero when any mutation survives, when its tests error instead of failing, or when an
# entry is stale. The working tree is never touched.
#
# Usage: scripts/mutation-check.sh [--only ID]... [--list FILE]
#   MUTATION_INTEGRATION=1  also run each entry's integration paths (need Docker and the lab images)
# Add an entry whenever a test is written to guard a rule: the entry proves the test can fail.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
exec python3 "$ROOT/scripts/mutation_check.py" "$@"
