# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input is refused before the first change, with a message that names the variable.

Each case reruns the real site playbook against the converged lab host with one bad value and checks: the run
fails, the failing check's own message (the fail_msg of the assert that failed, or the argument-spec error) names
the variable and none of the other cases' variables (so a title or a message listing every variable does not
pass), and the recap reports changed=0 (nothing on the host was touched).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbook_runner import run_site  # noqa: E402  pylint: disable=wrong-import-position

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


@pytest.mark.parametrize("label,extra,variable", CASES, ids=[c[0] for c in CASES])
def test_bad_input_refused_before_any_change(label, extra, variable):
    run = run_site(HOST, "-e", json.dumps(extra), timeout=600, json_output=True)
    context = f"{label}: failures {run.failures}\n{run.output[-3000:]}"
    assert run.rc != 0, f"{label}: the run did not fail\n{run.output[-3000:]}"
    assert len(run.failures) == 1, context
    message = run.failures[0].message
    assert variable in message, f"{label}: the failing check's message does not name {variable}: " + context
    others = sorted({other for _label, _extra, other in CASES if other != variable and other in message})
    assert not others, f"{label}: the message also names {others}, so it is not this variable's own: " + context
    assert run.changed == 0, f"{label}: something changed before the failure\n{run.output[-3000:]}"
    assert run.failed == 1, context
