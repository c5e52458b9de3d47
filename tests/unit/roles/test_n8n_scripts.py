# SPDX-License-Identifier: GPL-3.0-or-later
"""The scripts the n8n role runs inside the container (`node --eval`) call request() and ready() from
roles/n8n/files/n8n_http.js: every task that hands one of them to node must put n8n_http.js first, and each script
must parse once joined (node --check)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FILES = ROOT / "roles" / "n8n" / "files"
SCRIPTS = ("owner_setup.js", "workflows_sync.js")
USES = [(path, line) for path in sorted((ROOT / "roles").glob("*/tasks/*.yml"))
        for line in path.read_text().splitlines() if any(f"'{s}'" in line for s in SCRIPTS)]


def test_every_task_that_runs_a_script_puts_the_shared_helpers_first():
    assert len(USES) >= 3, USES  # owner, workflows, media pipeline
    bad = [f"{path.relative_to(ROOT)}: {line.strip()}" for path, line in USES
           if not re.search(r"'n8n_http\.js',\s*'(owner_setup|workflows_sync)\.js'", line)]
    assert not bad, bad


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_parses_with_the_helpers(script, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    joined = tmp_path / script
    joined.write_text((FILES / "n8n_http.js").read_text().rstrip("\n") + "\n" + (FILES / script).read_text())
    done = subprocess.run([node, "--check", str(joined)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # The script itself only calls the helpers; it does not carry its own copy.
    assert re.search(r"\b(request|ready)\(", (FILES / script).read_text())
    assert "function request(" not in (FILES / script).read_text()
