"""Make ``ansible_collections.borgstack.stack`` importable from the checkout (collections/ holds a symlink)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))
# Shared helpers of the integration tests (ansible_module_runner).
sys.path.insert(0, str(ROOT / "tests" / "integration"))
