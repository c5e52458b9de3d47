# SPDX-License-Identifier: GPL-3.0-or-later
"""CertificadoVencendo means something with Caddy's internal CA too: the stack tells the monitoring role that its
sites' certificates come from that CA (monitoring_tls_internal_ca, from caddy_tls_internal), the role's validation
refuses a cert_min_validity at or above the point where Caddy renews those 12-hour certificates, and the lab
inventory's value passes it. Evaluated with the real wiring (playbooks/group_vars/all) for the lab inventory and a
production-like one (tests/unit/playbooks/wiring_snapshot.py); the check itself is table-tested in
tests/unit/plugins/filter/test_monitoring.py, and the lab stack's alert batch proves the alert by its fault."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "playbooks"))
from wiring_snapshot import REPO_ROOT, evaluate  # noqa: E402  pylint: disable=wrong-import-position,import-error

DEFAULTS = yaml.safe_load((REPO_ROOT / "roles/monitoring/defaults/main.yml").read_text(encoding="utf-8"))
ROLE = {key: DEFAULTS[key] for key in ("monitoring_thresholds", "monitoring_durations", "monitoring_service",
                                       "monitoring_tls_internal_ca")}
# The role's own check, read from tasks/validate.yml (the expression of the task variable its rule wants empty).
VALIDATE = yaml.safe_load((REPO_ROOT / "roles/monitoring/tasks/validate.yml").read_text(encoding="utf-8"))
CHECK = next(t["vars"]["__monitoring_errors"] for t in VALIDATE
             if "__monitoring_errors" in t.get("vars", {})).strip().removeprefix("{{").removesuffix("}}")


def test_the_lab_uses_the_internal_ca_and_a_threshold_under_its_renewal_point():
    found = evaluate("lab", {"internal": "monitoring_tls_internal_ca", "errors": CHECK,
                             "validity": "monitoring_durations.cert_min_validity"}, ROLE)
    assert found == {"internal": True, "errors": [], "validity": "2h"}, found
    # The lab keeps the role's other durations: only the certificate threshold differs.
    lab = yaml.safe_load((REPO_ROOT / "inventories/lab/group_vars/borgstack/main.yml").read_text(encoding="utf-8"))
    assert {k: v for k, v in lab["monitoring_durations"].items() if k != "cert_min_validity"} == \
        {k: v for k, v in DEFAULTS["monitoring_durations"].items() if k != "cert_min_validity"}


def test_acme_keeps_the_14_day_default_and_the_internal_ca_refuses_it():
    assert CHECK.count("monitoring_tls_internal_ca") == 1, CHECK
    found = evaluate("production", {"internal": "monitoring_tls_internal_ca", "errors": CHECK,
                                    "refused": CHECK.replace("monitoring_tls_internal_ca", "true")}, ROLE)
    assert found["internal"] is False and found["errors"] == [], found
    assert len(found["refused"]) == 1 and found["refused"][0].startswith(
        "monitoring_durations.cert_min_validity: 14d is not below"), found
