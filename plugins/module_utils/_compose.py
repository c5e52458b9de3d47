# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runtime drift of a Compose service: what runs compared with what its Compose file declares.

Compose recreates a container when its configuration hash or its image changes, but it does not see what was changed
on a running container by hand with ``docker`` (a network disconnected, ``docker update --memory``, a restart policy)
nor a data volume whose owner or mode was changed. These pure functions compare the declared state (``docker compose
config --format json``) with ``docker inspect`` and a volume's ``stat``; the compose_runtime module acts on them.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional

# Label of one-off job containers (migrations, setup): they exit when done and are left out of the comparison.
JOB_LABEL = "org.borgstack.job"
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3}


def parse_size(value: Any) -> int:
    """Bytes of a Compose size (1745879040, "1745879040", "1665m", "2g"); 0 for unset."""
    if value in (None, ""):
        return 0
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def declared_services(config: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """{service: {container, image, networks, memory, restart}} from ``docker compose config --format json``.

    Network keys of a service are mapped to the real network names (an external network's ``name``).
    """
    names = {key: (spec or {}).get("name", key) for key, spec in (config.get("networks") or {}).items()}
    declared = {}
    for service, spec in (config.get("services") or {}).items():
        networks = spec.get("networks") or {}
        declared[service] = {
            "container": spec.get("container_name") or f"{config.get('name')}-{service}-1",
            "image": spec.get("image", ""),
            "networks": sorted(names.get(key, key) for key in networks),
            "memory": parse_size(spec.get("mem_limit")),
            "restart": spec.get("restart") or "no",
            # One-off jobs (migrations) run to completion: not compared with a running container.
            "job": (spec.get("labels") or {}).get(JOB_LABEL) == "true",
        }
    return declared


def container_drift(declared: Mapping[str, Any], inspected: Optional[Mapping[str, Any]],
                    image_id: Optional[str]) -> List[str]:
    """What differs between a declared service and its running container, one readable line per difference."""
    if inspected is None:
        return [f"container {declared['container']} is missing"]
    drift = []
    networks = sorted((inspected.get("NetworkSettings") or {}).get("Networks") or {})
    if networks != declared["networks"]:
        drift.append(f"networks {networks} instead of {declared['networks']}")
    host = inspected.get("HostConfig") or {}
    memory = int(host.get("Memory") or 0)
    if memory != declared["memory"]:
        drift.append(f"memory limit {memory} bytes instead of {declared['memory']}")
    restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    if restart != declared["restart"]:
        drift.append(f"restart policy {restart} instead of {declared['restart']}")
    if image_id and inspected.get("Image") and inspected["Image"] != image_id:
        drift.append(f"runs image {inspected['Image'][:19]} instead of {declared['image']} ({image_id[:19]})")
    return drift


def volume_drift(wanted: Mapping[str, Any], uid: int, gid: int, mode: int) -> List[str]:
    """What differs between a volume's wanted owner/group/mode and its root directory's."""
    drift = []
    if wanted.get("owner") is not None and int(wanted["owner"]) != uid:
        drift.append(f"owner {uid} instead of {wanted['owner']}")
    if wanted.get("group") is not None and int(wanted["group"]) != gid:
        drift.append(f"group {gid} instead of {wanted['group']}")
    if wanted.get("mode") is not None and int(str(wanted["mode"]), 8) != mode & 0o7777:
        drift.append(f"mode {mode & 0o7777:04o} instead of {int(str(wanted['mode']), 8):04o}")
    return drift
