# SPDX-License-Identifier: GPL-3.0-or-later
"""The LUKS passphrase never leaks: not at -vvv --diff on the run that writes the key file, in any encoding.

The key file is deleted on purpose so that the rerun takes the path that writes the passphrase (the change path,
not a no-op); the scan (molecule/shared/leak_scan.py) looks for it raw, JSON-escaped, URL-encoded and in base64.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
# pylint: disable=wrong-import-position,import-error
from leak_scan import describe, find_leaks  # noqa: E402
from playbook_runner import PROJECT, run_site  # noqa: E402

HOST = "borgstack-mol-trixie"
KEY_FILE = "/etc/cryptsetup-keys.d/borgstack_data.key"
# The scenario's passphrase (molecule.yml, luks_key): lab-only, and exactly what must never be printed.
PASSPHRASE = "lab-only-luks-passphrase-not-secret"


def _on_host(*argv: str) -> str:
    """Run a command on the lab host (a container on this machine) and return its output."""
    return subprocess.run(["docker", "exec", HOST, *argv], capture_output=True, text=True, check=True).stdout


def test_key_file_rewrite_prints_no_passphrase():
    assert _on_host("cat", KEY_FILE) == PASSPHRASE, "positive control: the key file holds the passphrase"
    _on_host("rm", "-f", KEY_FILE)
    run = run_site(HOST, "-vvv", "--diff", "--tags", "luks")
    assert run.rc == 0 and run.changed > 0, run.output[-4000:]
    assert _on_host("stat", "--format", "%a %U", KEY_FILE).split() == ["400", "root"]
    assert _on_host("cat", KEY_FILE) == PASSPHRASE
    master = subprocess.run([str(PROJECT / "lab" / "lab.sh"), "secret"], capture_output=True, text=True,
                            check=True).stdout.strip()
    leaks = find_leaks(run.output, {"luks_key": PASSPHRASE, "master": master})
    assert not leaks, f"printed at -vvv --diff: {describe(leaks)}"
