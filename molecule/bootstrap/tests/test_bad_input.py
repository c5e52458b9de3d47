"""Bad input is refused before the first change, with a message that names the variable.

Each case reruns the real site playbook against the converged lab host with one bad value and checks: the run
fails, the message names the variable, and the recap reports changed=0 (nothing on the host was touched).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
# Molecule's inventory is a directory (hosts file plus group_vars/host_vars): pass the directory.
INVENTORY = os.path.dirname(os.environ.get("MOLECULE_INVENTORY_FILE", ""))
HOST = "borgstack-mol-trixie"

CASES = [
    ("domain with a scheme", {"borgstack_domain": "https://example.com.br"}, "borgstack_domain"),
    ("ssh port out of range", {"firewall_ssh_port": 70000}, "firewall_ssh_port"),
    ("ssh port of the wrong type", {"firewall_ssh_port": "twenty-two"}, "firewall_ssh_port"),
    ("luks device that does not exist", {"luks_device": "/dev/does-not-exist"}, "luks_device"),
    ("RAM minimum above the host's", {"preflight_min_ram_mb": 10_000_000}, "preflight_min_ram_mb"),
    ("luks_force_format as a yes/no", {"luks_force_format": "yes"}, "luks_force_format"),
    ("IP forwarding turned off", {"kernel_sysctl_overrides": {"net.ipv4.ip_forward": 0}}, "net.ipv4.ip_forward"),
]


@pytest.mark.skipif(not INVENTORY, reason="needs MOLECULE_INVENTORY_FILE (run through molecule verify)")
@pytest.mark.parametrize("label,extra,variable", CASES, ids=[c[0] for c in CASES])
def test_bad_input_refused_before_any_change(label, extra, variable):
    run = subprocess.run(
        ["ansible-playbook", str(PROJECT / "site.yml"), "-i", INVENTORY, "--limit", HOST, "-e", json.dumps(extra)],
        cwd=PROJECT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / "collections"), "ANSIBLE_FORCE_COLOR": "0"},
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, f"{label}: the run did not fail\n{output[-3000:]}"
    assert variable in output, f"{label}: the error does not name {variable}\n{output[-3000:]}"
    recap = re.search(rf"^{re.escape(HOST)}\s*:.*changed=(\d+).*failed=(\d+)", output, re.M)
    assert recap, output[-2000:]
    assert recap.group(1) == "0", f"{label}: something changed before the failure\n{output[-3000:]}"
    assert recap.group(2) != "0"
