"""Bad registry input is refused before any change, naming the variable (the converged host is left as it is)."""
from __future__ import annotations

import json

import pytest

from conftest import failure_messages, run_site

LAB_IMAGES = {
    "postgresql": {"image": "borgstack-lab/postgresql:17"},
    "redis": {"image": "borgstack-lab/redis:8.0"},
    "seaweedfs": {"image": "borgstack-lab/seaweedfs:4.30"},
    "n8n": {"image": "borgstack-lab/n8n:1.113.3"},
    "caddy": {"image": "borgstack-lab/caddy:2.10.2"},
}


def _services(**changes):
    merged = {k: dict(v) for k, v in LAB_IMAGES.items()}
    for name, change in changes.items():
        merged.setdefault(name, {}).update(change)
    return {"borgstack_services": merged}


CASES = [
    ("unknown service", _services(wordpress={"enabled": True}), "borgstack_services: unknown service"),
    ("two services on one hostname", _services(n8n={"hostname": "x.lab.borgstack.test"},
                                               seaweedfs={"public": True, "hostname": "x.lab.borgstack.test"}),
     "borgstack_services.seaweedfs.hostname and borgstack_services.n8n.hostname are both"),
    ("hostname that is not a DNS name", _services(n8n={"hostname": "https://n8n.example"}),
     "borgstack_services.n8n.hostname"),
    ("ACME email that is not an email", {"caddy_acme_email": "not-an-email", **_services()}, "caddy_acme_email"),
    ("port collision", _services(n8n={"port": 5432}), "borgstack_services.postgresql.port and borgstack_services.n8n.port"),
    ("n8n without PostgreSQL", _services(postgresql={"enabled": False}), "n8n needs postgresql: enable borgstack_services.postgresql"),
]


@pytest.mark.parametrize("label,extra,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_refused_before_any_change(label, extra, expected):
    run = run_site("-e", json.dumps(extra))
    assert run.rc != 0, f"{label}: the run did not fail"
    messages = failure_messages(run.output)
    assert any(expected in m for m in messages), f"{label}: no failure message names {expected!r}: {messages}"
    assert run.changed == 0, f"{label}: changed={run.changed} before the failure"


def test_services_that_do_not_fit_the_ram_are_refused():
    run = run_site("-e", json.dumps({"borgstack_ram_mb": 2048}))
    assert run.rc != 0
    messages = failure_messages(run.output)
    assert any("do not fit the budget" in m and m.startswith("borgstack_ram_mb (2048 MiB)") for m in messages), \
        messages
    assert run.changed == 0
