# SPDX-License-Identifier: GPL-3.0-or-later
"""Runtime drift of a Compose service (plugins/module_utils/_compose.py): declared state vs docker inspect."""
from __future__ import annotations

import copy

import pytest

from ansible_collections.borgstack.stack.plugins.module_utils._compose import (
    container_drift,
    declared_services,
    parse_size,
    volume_drift,
)

# The shape of `docker compose config --format json` for one of our services (trimmed).
CONFIG = {
    "name": "borgstack",
    "services": {
        "redis": {"container_name": "borgstack-redis", "image": "redis:8.2-alpine", "mem_limit": "1745879040",
                  "networks": {"internal": None}, "restart": "unless-stopped"},
        "migrate": {"image": "app:1.0", "labels": {"org.borgstack.job": "true"}, "networks": {"internal": None}},
        "worker": {"image": "app:1.0", "networks": {"internal": None, "borgstack_external": {}}},
    },
    "networks": {"internal": {"name": "borgstack_internal", "external": True},
                 "borgstack_external": {"name": "borgstack_external", "external": True}},
}
RUNNING = {
    "Image": "sha256:" + "a" * 64,
    "NetworkSettings": {"Networks": {"borgstack_internal": {"IPAddress": "172.18.0.2"}}},
    "HostConfig": {"Memory": 1745879040, "RestartPolicy": {"Name": "unless-stopped"}},
}


@pytest.mark.parametrize("value,expected", [
    (None, 0), ("", 0), (1745879040, 1745879040), ("1745879040", 1745879040), ("1665m", 1665 * 1024 ** 2),
    ("2g", 2 * 1024 ** 3), ("512MB", 512 * 1024 ** 2), ("64k", 65536),
])
def test_sizes(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["lots", "12q", True])
def test_a_size_that_is_none_is_refused(value):
    with pytest.raises(ValueError):
        parse_size(value)


def test_declared_services_resolve_network_names_container_names_and_jobs():
    declared = declared_services(CONFIG)
    assert declared["redis"] == {"container": "borgstack-redis", "image": "redis:8.2-alpine",
                                 "networks": ["borgstack_internal"], "memory": 1745879040,
                                 "restart": "unless-stopped", "job": False}
    assert declared["worker"]["container"] == "borgstack-worker-1"
    assert declared["worker"]["networks"] == ["borgstack_external", "borgstack_internal"]
    assert declared["worker"]["restart"] == "no" and declared["worker"]["memory"] == 0
    assert declared["migrate"]["job"] is True


def test_a_container_as_declared_has_no_drift():
    assert container_drift(declared_services(CONFIG)["redis"], RUNNING, RUNNING["Image"]) == []


@pytest.mark.parametrize("change,expected", [
    (lambda c: c["NetworkSettings"].update(Networks={}), "networks [] instead of ['borgstack_internal']"),
    (lambda c: c["NetworkSettings"]["Networks"].update(bridge={}), "networks ['borgstack_internal', 'bridge']"),
    (lambda c: c["HostConfig"].update(Memory=314572800), "memory limit 314572800 bytes instead of 1745879040"),
    (lambda c: c["HostConfig"].update(Memory=0), "memory limit 0 bytes"),
    (lambda c: c["HostConfig"].update(RestartPolicy={"Name": "no"}), "restart policy no instead of unless-stopped"),
    (lambda c: c.update(Image="sha256:" + "b" * 64), "runs image sha256:bbbbbbbbbbbb instead of redis:8.2-alpine"),
])
def test_each_kind_of_hand_made_change_is_named(change, expected):
    running = copy.deepcopy(RUNNING)
    change(running)
    drift = container_drift(declared_services(CONFIG)["redis"], running, RUNNING["Image"])
    assert len(drift) == 1 and drift[0].startswith(expected), drift


def test_a_missing_container_is_drift():
    assert container_drift(declared_services(CONFIG)["redis"], None, None) == ["container borgstack-redis is missing"]


@pytest.mark.parametrize("uid,gid,mode,expected", [
    (1000, 1000, 0o40700, []),
    (0, 1000, 0o40700, ["owner 0 instead of 1000"]),
    (1000, 0, 0o40700, ["group 0 instead of 1000"]),
    (1000, 1000, 0o40777, ["mode 0777 instead of 0700"]),
    (0, 0, 0o40755, ["owner 0 instead of 1000", "group 0 instead of 1000", "mode 0755 instead of 0700"]),
])
def test_volume_owner_group_and_mode(uid, gid, mode, expected):
    assert volume_drift({"name": "v", "owner": 1000, "group": 1000, "mode": "0700"}, uid, gid, mode) == expected


def test_a_volume_setting_left_out_is_not_compared():
    assert volume_drift({"name": "v", "mode": "0750"}, 0, 0, 0o40750) == []
