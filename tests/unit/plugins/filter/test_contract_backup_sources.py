# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_sources: what Duplicati backs up (``backup: files`` volumes of the enabled services, the apps' first) and
what it refuses (``backup: dump`` volumes of every service), from the registry's ``volumes``."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.borgstack.stack.plugins.filter.contract import backup_sources
from ansible_collections.borgstack.stack.plugins.filter.registry import service_registry

SERVICES = Path(__file__).resolve().parents[4] / "playbooks" / "group_vars" / "all" / "services.yml"


def _svc(layer: str, enabled: bool = True, **volumes: str) -> dict:
    return {"enabled": enabled, "layer": layer, "volumes": {key: {"backup": backup} for key, backup in volumes.items()}}


CASES = {
    # case: (registry, sources, database_volumes)
    "apps before the data layer, registry order within each": (
        {"store": _svc("data", data="files"), "db": _svc("data", data="dump"), "a1": _svc("apps", data="files"),
         "a2": _svc("apps", extra="files", logs="none")},
        ["borgstack_a1_data", "borgstack_a2_extra", "borgstack_store_data"], ["borgstack_db_data"]),
    "a disabled service is not backed up, its dump volume still refused": (
        {"db": _svc("data", False, data="dump"), "a1": _svc("apps", False, data="files"),
         "a2": _svc("apps", data="files")},
        ["borgstack_a2_data"], ["borgstack_db_data"]),
    "none and no volumes": (
        {"proxy": _svc("proxy", data="none"), "bare": {"enabled": True, "layer": "apps"}}, [], []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_backup_sources(case):
    registry, sources, database_volumes = CASES[case]
    assert backup_sources(registry) == {"sources": sources, "database_volumes": database_volumes}


def test_the_stacks_registry_keeps_the_order_duplicati_has_always_had():
    """The job's source list and the container's mounts compare in order: the apps' volumes, then SeaweedFS'."""
    entries = yaml.safe_load(SERVICES.read_text())["borgstack_service_defaults"]
    registry = service_registry(entries, {name: {"enabled": True} for name in entries})
    assert backup_sources(registry) == {
        "sources": ["borgstack_n8n_data", "borgstack_directus_extensions", "borgstack_lowcoder_assets",
                    "borgstack_fileflows_data", "borgstack_evolution_api_instances", "borgstack_seaweedfs_data"],
        "database_volumes": ["borgstack_postgresql_data", "borgstack_redis_data", "borgstack_mongodb_data",
                             "borgstack_mongodb_config"],
    }
