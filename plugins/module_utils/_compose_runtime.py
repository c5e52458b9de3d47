# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compose at run time for one service: what it declares, what runs, what differs, and ``up``.

The pure functions compare the declared services (``docker compose config --format json`` and ``config --hash``)
with ``docker inspect`` of their containers: missing, stopped, another configuration hash (Compose recreates), or
changed by hand with ``docker`` where Compose does not look (a network disconnected, ``docker update --memory``, a
restart policy, another image) - ``plan_services``; they find the project's containers created from this service's
file whose service the file no longer declares (``stale_containers``), and a data volume's owner or mode
(``volume_drift``). ``ComposeRuntime`` runs the docker commands behind them.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import ComposePart, DeployError, inspect_list

# Label of one-off job containers (migrations, setup): they run to completion, and one that exited 0 with the
# declared configuration is done - never compared as a running service, never rerun.
JOB_LABEL = "org.borgstack.job"
# Labels Compose puts on the containers it creates.
HASH_LABEL = "com.docker.compose.config-hash"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
PS_FORMAT = "{{.Names}}\t{{.Label \"%s\"}}\t{{.Label \"%s\"}}" % (SERVICE_LABEL, CONFIG_FILES_LABEL)
LOG_LINES = 30
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
            "depends_on": sorted(spec.get("depends_on") or {}),
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


def _unhealthy(state: Mapping[str, Any]) -> bool:
    return ((state.get("Health") or {}).get("Status") or "healthy") != "healthy"


def _up_reasons(spec: Mapping[str, Any], container: Mapping[str, Any], wanted_hash: Optional[str]) -> List[str]:
    """Why Compose's ``up`` acts on one existing container by itself: another config hash (or an unknown one), a
    service that is not running, a one-off job that exited non-zero. Empty: nothing."""
    labels = (container.get("Config") or {}).get("Labels") or {}
    state = container.get("State") or {}
    if wanted_hash is None or labels.get(HASH_LABEL) != wanted_hash:
        return ["configuration changed (Compose config hash)"]
    if spec["job"]:
        if not state.get("Running") and state.get("ExitCode", 0) != 0:
            return [f"job exited with code {state.get('ExitCode')}"]
        return []
    if not state.get("Running"):
        return [f"container {spec['container']} is {state.get('Status') or 'not running'}"]
    return []


def plan_services(declared: Mapping[str, Mapping[str, Any]], hashes: Optional[Mapping[str, str]],
                  inspected: Mapping[str, Mapping[str, Any]], image_ids: Mapping[str, Optional[str]]
                  ) -> Dict[str, Any]:
    """What each declared service needs, from ``docker inspect`` of the containers (by name).

    Returns ``up`` (service -> reasons Compose acts on by itself: container missing or not running, another config
    hash - or ``hashes`` None, unknown), ``force`` (service -> runtime drift Compose does not see: only a forced
    recreate heals it) and ``waiting`` (services running as declared whose healthcheck does not say healthy yet).
    A one-off job is never compared as a running service: done when it exited 0 with the declared hash.
    """
    up: Dict[str, List[str]] = {}
    force: Dict[str, List[str]] = {}
    waiting: List[str] = []
    for service, spec in sorted(declared.items()):
        container = inspected.get(spec["container"])
        if container is None:
            up[service] = [f"container {spec['container']} is missing"]
            continue
        reasons = _up_reasons(spec, container, None if hashes is None else hashes.get(service))
        if reasons:
            up[service] = reasons
        if spec["job"]:
            continue
        drift = container_drift(spec, container, image_ids.get(spec["image"]))
        if drift:
            force[service] = drift
        elif service not in up and _unhealthy(container.get("State") or {}):
            waiting.append(service)
    return {"up": up, "force": force, "waiting": waiting}


def replacements(services: Sequence[str], plan: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]],
                 inspected: Mapping[str, Any], force: bool) -> Tuple[Dict[str, List[str]], List[str], List[str]]:
    """(drift: container -> why ``up`` acts on it, recreated containers, started containers) of the services one
    ``up`` names; ``force``: that ``up`` recreates every one of them."""
    drift: Dict[str, List[str]] = {}
    recreated, started = [], []
    for service in sorted(services):
        reasons = plan["up"].get(service, []) + plan["force"].get(service, [])
        container = declared[service]["container"]
        drift[container] = reasons or ["config files changed"]
        exists = container in inspected
        by_hash = bool(reasons) and reasons[0].startswith("configuration")
        (recreated if exists and (force or by_hash) else started).append(container)
    return drift, recreated, started


def stale_containers(rows: Sequence[Mapping[str, str]], config_file: str, declared: Sequence[str]) -> List[str]:
    """Containers created from ``config_file`` (Compose's config_files label) for a service it no longer declares.

    ``rows``: ``docker ps --all`` of the project, each with name, service and config_files.
    """
    return sorted(row["name"] for row in rows
                  if row.get("config_files") == config_file and row.get("service") not in declared)


def parse_ps(output: str) -> List[Dict[str, str]]:
    """Rows of ``docker ps --format`` with PS_FORMAT (tab separated)."""
    rows = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            rows.append({"name": parts[0], "service": parts[1], "config_files": parts[2]})
    return rows


def parse_hashes(output: str) -> Dict[str, str]:
    """``docker compose config --hash '*'``: one ``service hash`` per line."""
    return dict(line.split(None, 1) for line in output.splitlines() if len(line.split(None, 1)) == 2)


def not_ready(container: Optional[Mapping[str, Any]]) -> bool:
    """True for a container that is not running, or whose healthcheck does not say healthy."""
    if container is None:
        return True
    state = container.get("State") or {}
    return not state.get("Running") or _unhealthy(state)


class ComposeRuntime(ComposePart):
    """The docker commands of a deploy: ``config``, ``ps``, ``up`` (and one-off jobs), ``rm`` and volumes.

    ``pull_override`` replaces the ``pull`` option (a rollback brings the previous version up with ``never``).
    """

    def __init__(self, base: Any) -> None:
        super().__init__(base)
        self.pull_override: Optional[str] = None

    def config(self, compose_file: str, pending: bool) -> Tuple[Dict[str, Any], bool]:
        """(``config --format json``, whether interpolated). ``pending``: files this run writes are not there yet
        (check mode, or before they are written), so a failure that names one is retried without interpolation
        (which does not read env_file)."""
        rc, out, err = self.base.run_compose(compose_file, "config", "--format", "json", check=False)
        if rc == 0:
            return json.loads(out), True
        if pending and "env file" in (err + out):
            rc2, out2, _err2 = self.base.run_compose(compose_file, "config", "--no-interpolate", "--format", "json",
                                                     check=False)
            if rc2 == 0:
                return json.loads(out2), False
        raise DeployError(f"the Compose file of {self.name} is not valid (docker compose config): "
                          f"{err.strip() or out.strip()}")

    def hashes(self, config: Mapping[str, Any]) -> Dict[str, str]:
        """Compose's configuration hash of each service, as ``up`` puts it in the config-hash label.

        Computed from the normalised config (``config --format json``) given back on stdin: ``config --hash`` of the
        file itself differs from the label for a service with an env_file (Compose 2.26 hashes it before the file is
        read into ``environment``). Through stdin, the resolved environment never touches the disk.
        """
        return parse_hashes(self.base.run_compose("-", "config", "--hash", "*", data=json.dumps(config))[1])

    def image_ids(self, declared: Mapping[str, Mapping[str, Any]]) -> Dict[str, Optional[str]]:
        """The local image id of each declared image reference; None for one not on this host."""
        ids: Dict[str, Optional[str]] = {}
        for image in sorted({spec["image"] for spec in declared.values() if spec["image"]}):
            rc, out, _err = self.base.run_docker("image", "inspect", "--format", "{{.Id}}", image, check=False)
            ids[image] = out.strip() if rc == 0 and out.strip() else None
        return ids

    def require_images(self, image_ids: Mapping[str, Optional[str]]) -> None:
        """With the pull policy ``never``, every image must be on this host already."""
        if self.params["pull"] != "never":
            return
        missing = sorted(image for image, image_id in image_ids.items() if image_id is None)
        if missing:
            raise DeployError(
                f"{self.name}: the image(s) {', '.join(missing)} are not on this host and the pull policy is "
                "'never'. Load them first (the images role, or docker load) or set the pull policy to "
                "'missing' (borgstack_pull).")

    def project_rows(self) -> List[Dict[str, str]]:
        """Every container of the Compose project (all services' files), as parse_ps rows."""
        _rc, out, _err = self.base.run_docker("ps", "--all", "--filter",
                                              f"label={PROJECT_LABEL}={self.params['project']}", "--format", PS_FORMAT)
        return parse_ps(out)

    def project_volumes(self, config: Mapping[str, Any]) -> List[str]:
        """The volumes the Compose file declares (not external ones) that exist."""
        wanted = [(spec or {}).get("name", f"{config.get('name')}_{key}")
                  for key, spec in (config.get("volumes") or {}).items() if not (spec or {}).get("external")]
        if not wanted:
            return []
        _rc, out, _err = self.base.run_docker("volume", "inspect", *wanted, check=False)
        return sorted(item["Name"] for item in inspect_list(out))

    def remove(self, containers: Sequence[str]) -> None:
        if containers and not self.check:
            self.base.run_docker("rm", "--force", *containers)

    # -- up ---------------------------------------------------------------------------------------------------
    def _pull(self) -> str:
        return self.pull_override or self.params["pull"]

    def up(self, services: Sequence[str], declared: Mapping[str, Mapping[str, Any]], force: bool) -> None:
        """``up --wait`` of these services (``--force-recreate`` with ``force``); a failure raises DeployError with
        the last log lines of the containers that are not ready."""
        # `up --wait` fails on a named service whose container exits, even with 0: a one-off job no other named
        # service depends on (a migration rerun after a failure, or recreated alone) is started on its own and
        # waited for until it exits. A job another named service depends on goes with it: Compose runs it first and
        # starts the dependant only when it completed successfully.
        needed = {dep for s in services if not declared[s]["job"] for dep in declared[s].get("depends_on", [])}
        alone = [s for s in services if declared[s]["job"] and s not in needed]
        rest = [s for s in services if s not in alone]
        if alone:
            self._run_jobs(alone, declared, force)
        if not rest:
            return
        args = ["up", "--detach", "--wait", "--wait-timeout", str(self.params["wait_timeout"]), "--pull", self._pull()]
        if force:
            args.append("--force-recreate")
        rc, out, err = self.base.run_compose(self.base.compose_file, *args, *rest, check=False)
        if rc == 0:
            return
        self._up_failed(rest, declared, err.strip() or out.strip())

    def _run_jobs(self, jobs: Sequence[str], declared: Mapping[str, Mapping[str, Any]], force: bool) -> None:
        """Start one-off jobs and wait (up to wait_timeout) until each exited; one that exited non-zero fails."""
        args = ["up", "--detach", "--pull", self._pull()] + (["--force-recreate"] if force else [])
        rc, out, err = self.base.run_compose(self.base.compose_file, *args, *jobs, check=False)
        if rc != 0:
            self._up_failed(jobs, declared, err.strip() or out.strip())
        names = [declared[s]["container"] for s in jobs]
        deadline = time.monotonic() + self.params["wait_timeout"]
        while True:
            states = {name: (c.get("State") or {}) for name, c in self.base.inspect_containers(names).items()}
            if all(name in states and not states[name].get("Running") for name in names):
                break
            if time.monotonic() > deadline:
                self._up_failed(jobs, declared, f"job(s) still running after {self.params['wait_timeout']} s")
            time.sleep(1)
        failed = [f"{name} exited with code {states[name].get('ExitCode')}" for name in names
                  if states[name].get("ExitCode", 0) != 0]
        if failed:
            self._up_failed(jobs, declared, "; ".join(failed), every=True)

    def _up_failed(self, services: Sequence[str], declared: Mapping[str, Mapping[str, Any]], reason: str,
                   every: bool = False) -> None:
        names = [declared[s]["container"] for s in services]
        inspected = self.base.inspect_containers(names)
        logs = []
        for name in names:
            if (every or not_ready(inspected.get(name))) and name in inspected:
                _lrc, lout, lerr = self.base.run_docker("logs", "--tail", str(LOG_LINES), name, check=False)
                logs.append(f"--- last {LOG_LINES} log lines of {name} ---\n{(lout + lerr).rstrip()}")
        raise DeployError(f"{self.name}: docker compose up failed: {reason}"
                          + ("\n" + "\n".join(logs) if logs else ""))

    # -- volumes ----------------------------------------------------------------------------------------------
    def volumes(self, drift: Dict[str, List[str]]) -> List[str]:
        """Data volumes whose root directory has another owner, group or mode than declared: recorded in ``drift``
        and set right (not in check mode). A volume not created yet is left to Compose."""
        volumes = self.params["volumes"]
        if not volumes:
            return []
        _rc, out, _err = self.base.run_docker("volume", "inspect", *[v["name"] for v in volumes], check=False)
        found = {item["Name"]: item for item in inspect_list(out)}
        healed = []
        for volume in volumes:
            info = found.get(volume["name"])
            if info is None:
                continue  # not created yet: Compose creates it, the image sets it up
            lines = volume_drift(volume, *self._owner_and_mode(info["Mountpoint"]))
            if lines:
                drift[f"volume {volume['name']}"] = lines
                healed.append(volume["name"])
                self._heal_volume(info["Mountpoint"], volume)
        return healed

    @staticmethod
    def _owner_and_mode(path: str) -> Tuple[int, int, int]:
        stat = os.stat(path)
        return stat.st_uid, stat.st_gid, stat.st_mode

    def _heal_volume(self, path: str, volume: Mapping[str, Any]) -> None:
        if self.check:
            return
        os.chown(path, -1 if volume.get("owner") is None else volume["owner"],
                 -1 if volume.get("group") is None else volume["group"])
        if volume.get("mode") is not None:
            os.chmod(path, int(str(volume["mode"]), 8))
