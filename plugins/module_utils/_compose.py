# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deploying one Compose service of the BorgStack project: its files, its containers and their runtime drift.

The compose_deploy module runs everything here in one process on the target host. The pure functions compare:

- a wanted file (content, owner, group, mode) with what is on disk (``file_changes``), and the secret environment
  file's exact text (``env_file_text``);
- the declared services (``docker compose config --format json`` and ``config --hash``) with ``docker inspect`` of
  their containers: missing, stopped, another configuration hash (Compose recreates), or changed by hand with
  ``docker`` where Compose does not look (a network disconnected, ``docker update --memory``, a restart policy,
  another image) - ``plan_services``;
- the project's containers created from this service's file whose service the file no longer declares
  (``stale_containers``), and a data volume's owner or mode (``volume_drift``).

``ComposeDeploy`` reads the current state, computes the difference with them and applies only what differs.

What ``docker compose config`` derives from the files (the declared services and their configuration hashes, never
the resolved environment) is kept in a root-only file beside them (``CACHE_NAME``), under a key made of every input
Compose reads for it (``config_key``): a rerun that finds the same inputs skips the two ``docker compose config``
runs, the slowest reads of a no-op.

An update is a run where a running service's container gets another image reference (``image_updates``). Before its
``up``, the service's PostgreSQL database is dumped (``pg_dump -Fc`` through the PostgreSQL container, into a
root-only directory); when the new version does not become healthy in time, the previous files, image and database
are put back and the run fails with the new version's last log lines (``ComposeDeploy._rollback``).
"""
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# Label of one-off job containers (migrations, setup): they run to completion, and one that exited 0 with the
# declared configuration is done - never compared as a running service, never rerun.
JOB_LABEL = "org.borgstack.job"
# Labels Compose puts on the containers it creates.
HASH_LABEL = "com.docker.compose.config-hash"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
# First line of services/<name>/secrets.env (the format the compose_service role wrote with ansible.builtin.copy).
ENV_FILE_HEADER = "# Managed by BorgStack. Secrets: root-only.\n"
SECRET_CHANGED = "(secret content changed)\n"
# What `docker compose config` derived, kept beside the service's files (root-only; no secret in it).
CACHE_NAME = ".compose-config.json"
# Where the Compose v2 plugin is installed by Debian, Ubuntu and Docker's packages (its version changes the hashes).
COMPOSE_PLUGINS = ("/usr/libexec/docker/cli-plugins/docker-compose", "/usr/lib/docker/cli-plugins/docker-compose",
                   "/usr/local/lib/docker/cli-plugins/docker-compose",
                   "/usr/local/libexec/docker/cli-plugins/docker-compose")
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


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------
def config_key(project: str, project_dir: str, service_dir: str, programs: Sequence[str]) -> str:
    """A digest of everything ``docker compose config`` reads for one service: the project's name and directory, the
    content of every file directly in the service's directory (its compose.yaml, secrets.env and config files; the
    cache itself left out) and of the project directory's ``.env``, and the size and time of the docker CLI and the
    Compose plugin (an upgraded Compose may hash differently). Any change gives another key."""
    digest = hashlib.sha256(f"{project}\0{project_dir}\0".encode())
    try:
        # Neither the cache (nor its temp copy) nor a staged Compose file left by an interrupted run.
        names = sorted(name for name in os.listdir(service_dir)
                       if not name.startswith((CACHE_NAME, ".compose.yaml.")))
    except OSError:
        names = []
    for path in [os.path.join(service_dir, name) for name in names] + [os.path.join(project_dir, ".env")]:
        try:
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                digest.update(f"{path}\0".encode() + hashlib.sha256(handle.read()).digest())
        except OSError:
            digest.update(f"{path}\0unreadable".encode())
    for program in programs:
        try:
            info = os.stat(program)
        except OSError:
            continue
        digest.update(f"{program}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    return digest.hexdigest()


def env_file_text(env: Mapping[str, Any]) -> str:
    """services/<name>/secrets.env: the header, then ``KEY="json string"`` lines sorted by key.

    Byte for byte what the role's template wrote (``{{ key }}={{ value | string | to_json }}``), so a host deployed
    before sees no change.
    """
    return ENV_FILE_HEADER + "".join(f"{key}={json.dumps(str(env[key]))}\n" for key in sorted(env))


def file_changes(wanted: Mapping[str, Any], current: Optional[Mapping[str, Any]]) -> List[str]:
    """What differs between a wanted file and the one on disk; each dict has content (bytes, None for a directory),
    uid, gid and mode (permission bits). ``current`` is None when nothing is there."""
    if current is None:
        return ["created"]
    changes = []
    if wanted.get("content") is not None and current.get("content") != wanted["content"]:
        changes.append("content")
    if current["uid"] != wanted["uid"]:
        changes.append(f"owner {current['uid']} instead of {wanted['uid']}")
    if current["gid"] != wanted["gid"]:
        changes.append(f"group {current['gid']} instead of {wanted['gid']}")
    if current["mode"] & 0o7777 != wanted["mode"]:
        changes.append(f"mode {current['mode'] & 0o7777:04o} instead of {wanted['mode']:04o}")
    return changes


def resolve_id(value: Any, kind: str) -> int:
    """A uid/gid from a number or a name (``root``, ``1000``, 999)."""
    if isinstance(value, bool):
        raise ValueError(f"not a {kind}: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid if kind == "owner" else grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError(f"unknown {'user' if kind == 'owner' else 'group'} {text!r}") from None


def parse_mode(value: Any, default: int) -> int:
    """Permission bits from an octal string ("0640") or an int already holding them; default when unset."""
    if value in (None, ""):
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"0?[0-7]{3,4}", text):
        raise ValueError(f"not an octal mode: {value!r}")
    return int(text, 8)


# ----------------------------------------------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------------------------------------------
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
        name = spec["container"]
        container = inspected.get(name)
        if container is None:
            up[service] = [f"container {name} is missing"]
            continue
        labels = (container.get("Config") or {}).get("Labels") or {}
        state = container.get("State") or {}
        wanted_hash = None if hashes is None else hashes.get(service)
        hash_reason = ([] if wanted_hash is not None and labels.get(HASH_LABEL) == wanted_hash
                       else ["configuration changed (Compose config hash)"])
        if spec["job"]:
            if hash_reason:
                up[service] = hash_reason
            elif not state.get("Running") and state.get("ExitCode", 0) != 0:
                up[service] = [f"job exited with code {state.get('ExitCode')}"]
            continue
        if hash_reason:
            up[service] = hash_reason
        elif not state.get("Running"):
            up[service] = [f"container {name} is {state.get('Status') or 'not running'}"]
        drift = container_drift(spec, container, image_ids.get(spec["image"]))
        if drift:
            force[service] = drift
        elif service not in up and ((state.get("Health") or {}).get("Status") or "healthy") != "healthy":
            waiting.append(service)
    return {"up": up, "force": force, "waiting": waiting}


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


PS_FORMAT = "{{.Names}}\t{{.Label \"%s\"}}\t{{.Label \"%s\"}}" % (SERVICE_LABEL, CONFIG_FILES_LABEL)


def parse_hashes(output: str) -> Dict[str, str]:
    """``docker compose config --hash '*'``: one ``service hash`` per line."""
    return dict(line.split(None, 1) for line in output.splitlines() if len(line.split(None, 1)) == 2)


def not_ready(container: Optional[Mapping[str, Any]]) -> bool:
    """True for a container that is not running, or whose healthcheck does not say healthy."""
    if container is None:
        return True
    state = container.get("State") or {}
    return not state.get("Running") or ((state.get("Health") or {}).get("Status") or "healthy") != "healthy"


def image_updates(declared: Mapping[str, Mapping[str, Any]], inspected: Mapping[str, Mapping[str, Any]]
                  ) -> Dict[str, Dict[str, str]]:
    """Services whose existing container runs another image reference than the one declared: an update.

    Returns service -> {container, from (the reference the container was created from), from_id (its image id), to}.
    A missing container (first deploy) and a one-off job are not updates; neither is another image id behind the
    same reference (runtime drift, healed as such).
    """
    updates = {}
    for service, spec in sorted(declared.items()):
        container = inspected.get(spec["container"])
        if spec["job"] or container is None or not spec["image"]:
            continue
        current = (container.get("Config") or {}).get("Image") or ""
        if current and current != spec["image"]:
            updates[service] = {"container": spec["container"], "from": current,
                                "from_id": container.get("Image") or "", "to": spec["image"]}
    return updates


_TCP_LISTEN, _TCP_ESTABLISHED = "0A", "01"
# The drain: new TCP connections from outside the container answered with a reset (the proxy's "connection refused",
# which it retries); its own healthcheck (loopback) and the connections it opened itself are untouched.
DRAIN_RULE = ["INPUT", "-p", "tcp", "--syn", "!", "-i", "lo", "-j", "REJECT", "--reject-with", "tcp-reset"]


def _loopback(address: str) -> bool:
    """A /proc/net/tcp{,6} address (hex, as the kernel prints it) in 127.0.0.0/8 or ::1 (also as ::ffff:127.x)."""
    if len(address) == 8:  # IPv4, the bytes of one little-endian word: the first octet is the last byte
        return address[6:8] == "7F"
    address = address.upper()
    return address == "00000000000000000000000001000000" or (
        address.startswith("0000000000000000FFFF0000") and address[30:32] == "7F")


def inbound_connections(tables: Sequence[str]) -> int:
    """Open connections clients made to a listening port, from the text of /proc/<pid>/net/tcp and tcp6 (one
    network namespace): established sockets whose local port is a listening one, loopback peers apart (the
    container's own healthcheck). The connections it opened itself (to its database) are not counted."""
    rows = []
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or ":" not in fields[1] or ":" not in fields[2]:
                continue
            local, remote = fields[1].rsplit(":", 1), fields[2].rsplit(":", 1)
            rows.append((local[1], remote[0], fields[3].upper()))
    listening = {port for port, _remote, state in rows if state == _TCP_LISTEN}
    return sum(1 for port, remote, state in rows
               if state == _TCP_ESTABLISHED and port in listening and not _loopback(remote))


def dump_name(service: str, stamp: str) -> str:
    """File name of a pre-update dump: ``<service>-<UTC time>.dump``."""
    return f"{service}-{stamp}.dump"


def dumps_to_prune(names: Sequence[str], service: str, keep: int) -> List[str]:
    """The oldest pre-update dumps of ``service`` beyond the newest ``keep`` (names sort by their UTC time)."""
    pattern = re.compile(rf"^{re.escape(service)}-\d{{8}}T\d{{6}}Z\.dump$")
    mine = sorted(name for name in names if pattern.match(name))
    return mine[:-keep] if keep > 0 else mine


# ----------------------------------------------------------------------------------------------------------------
# The module's core
# ----------------------------------------------------------------------------------------------------------------
_FILE_OPTIONS = {
    "path": {"type": "str", "required": True},
    "content": {"type": "str", "required": True},
    "owner": {"type": "raw"},
    "group": {"type": "raw"},
    "mode": {"type": "raw"},
}
# A secret file's content is masked; its path, owner and mode stay readable in the output.
_SECRET_FILE_OPTIONS = dict(_FILE_OPTIONS, content={"type": "str", "required": True, "no_log": True})
ARGUMENT_SPEC: Dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "project": {"type": "str", "default": "borgstack"},
    "project_dir": {"type": "path", "default": "/opt/borgstack"},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "compose": {"type": "str"},
    "files": {"type": "list", "elements": "dict", "default": [], "options": _FILE_OPTIONS},
    # no_log on the content suboption only, deliberately not on the whole list: that would also mask every path,
    # owner and mode written there ("root", "0400", "999") wherever those strings appear in any output.
    "secret_files": {"type": "list", "elements": "dict", "default": [], "options": _SECRET_FILE_OPTIONS,
                     "no_log": False},
    "env": {"type": "dict", "default": {}, "no_log": True},
    "dirs": {"type": "list", "elements": "dict", "default": [], "options": {
        "path": {"type": "str", "required": True},
        "owner": {"type": "raw"},
        "group": {"type": "raw"},
        "mode": {"type": "raw"},
    }},
    "volumes": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str", "required": True},
        "owner": {"type": "int"},
        "group": {"type": "int"},
        "mode": {"type": "str"},
    }},
    "pull": {"type": "str", "default": "missing", "choices": ["missing", "always", "never"]},
    "wait_timeout": {"type": "int", "default": 600},
    "purge": {"type": "bool", "default": False},
    "rollback": {"type": "bool", "default": True},
    "drain": {"type": "list", "elements": "str", "default": []},
    "drain_timeout": {"type": "int", "default": 10},
    "update_dump": {"type": "dict", "options": {
        "container": {"type": "str", "required": True},
        "database": {"type": "str", "required": True},
        "dir": {"type": "path", "default": "/var/backups/borgstack/updates"},
        "keep": {"type": "int", "default": 3},
    }},
}
# Options that carry secrets, all masked by no_log above (env whole, secret_files' content); the unit tests check
# the spec against this list, and tests/unit/roles/test_no_log.py relies on it.
SECRET_OPTIONS = frozenset({"env", "secret_files"})


class DeployError(Exception):
    """A failure the module reports with fail_json."""


class ComposeDeploy:  # pylint: disable=too-many-instance-attributes
    """Deploys (or removes) one service: reads what is there, compares, applies only what differs.

    ``module`` is an AnsibleModule (run_command, check_mode, _diff, get_bin_path); errors raise DeployError.
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.params = module.params
        self.check = bool(module.check_mode)
        self.name = self.params["name"]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name or ""):
            raise DeployError(f"name {self.name!r} is not a plain directory name")
        self.service_dir = os.path.join(self.params["project_dir"], "services", self.name)
        self.compose_file = os.path.join(self.service_dir, "compose.yaml")
        self.docker = module.get_bin_path("docker") or ""
        self.commands: List[str] = []
        self.files_changed: List[str] = []
        self.content_changed = False
        self.diffs: List[Dict[str, str]] = []
        self.scratch: Optional[str] = None
        # What each file written by this run held before (None: it did not exist): put back by a rollback.
        self.previous: Dict[str, Optional[Dict[str, Any]]] = {}
        self.pull_override: Optional[str] = None

    # -- docker -----------------------------------------------------------------------------------------------
    def _docker(self, *args: str, check: bool = True, data: Optional[str] = None) -> Tuple[int, str, str]:
        shown = ["compose", *args[7:]] if args[:1] == ("compose",) else list(args)  # without project and file
        self.commands.append(" ".join(["docker", *shown]))
        rc, out, err = self.module.run_command([self.docker, *args], cwd=self.params["project_dir"]
                                               if os.path.isdir(self.params["project_dir"]) else None,
                                               environ_update={"COMPOSE_IGNORE_ORPHANS": "true"}, data=data)
        if check and rc != 0:
            raise DeployError(f"docker {' '.join(args[:5])} failed: {(err.strip() or out.strip())}")
        return rc, out, err

    def _compose(self, compose_file: str, *args: str, check: bool = True,
                 data: Optional[str] = None) -> Tuple[int, str, str]:
        return self._docker("compose", "--project-name", self.params["project"], "--project-directory",
                            self.params["project_dir"], "--file", compose_file, *args, check=check, data=data)

    def _hashes(self, config: Mapping[str, Any]) -> Dict[str, str]:
        """Compose's configuration hash of each service, as ``up`` puts it in the config-hash label.

        Computed from the normalised config (``config --format json``) given back on stdin: ``config --hash`` of the
        file itself differs from the label for a service with an env_file (Compose 2.26 hashes it before the file is
        read into ``environment``). Through stdin, the resolved environment never touches the disk.
        """
        return parse_hashes(self._compose("-", "config", "--hash", "*", data=json.dumps(config))[1])

    def _inspect_containers(self, names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        if not names:
            return {}
        _rc, out, _err = self._docker("container", "inspect", *sorted(set(names)), check=False)
        found = json.loads(out) if out.strip().startswith("[") else []
        return {item["Name"].lstrip("/"): item for item in found}

    def docker_answers(self) -> Optional[str]:
        """None when the engine answers, else why not."""
        if not self.docker:
            return "the docker CLI is not installed"
        rc, out, err = self._docker("version", "--format", "{{.Server.Version}}", check=False)
        return None if rc == 0 else (err.strip() or out.strip() or f"docker version exited {rc}")

    # -- files ------------------------------------------------------------------------------------------------
    @staticmethod
    def _current(path: str, read: bool) -> Optional[Dict[str, Any]]:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        content = None
        if read:
            with open(path, "rb") as handle:
                content = handle.read()
        return {"content": content, "uid": info.st_uid, "gid": info.st_gid, "mode": info.st_mode}

    def _wanted(self, spec: Mapping[str, Any], default_mode: int, content: Optional[str]) -> Dict[str, Any]:
        try:
            return {"content": None if content is None else content.encode("utf-8"),
                    "uid": resolve_id(spec.get("owner") if spec.get("owner") is not None else "root", "owner"),
                    "gid": resolve_id(spec.get("group") if spec.get("group") is not None else "root", "group"),
                    "mode": parse_mode(spec.get("mode"), default_mode)}
        except ValueError as exc:
            raise DeployError(f"{spec.get('path', self.name)}: {exc}") from None

    def _relative(self, relative: str) -> str:
        path = os.path.normpath(os.path.join(self.service_dir, relative))
        if relative.startswith("/") or not path.startswith(self.service_dir + os.sep):
            raise DeployError(f"{relative!r} is not a path inside services/{self.name}/")
        return path

    def ensure_dir(self, path: str, spec: Mapping[str, Any]) -> None:
        wanted = self._wanted(spec, 0o750, None)
        changes = file_changes(wanted, self._current(path, read=False))
        if not changes:
            return
        self.files_changed.append(path)
        self.diffs.append({"before_header": path, "after_header": path,
                           "before": "" if changes == ["created"] else "".join(f"{c}\n" for c in changes),
                           "after": f"directory {wanted['uid']}:{wanted['gid']} {wanted['mode']:04o}\n"})
        if not self.check:
            os.makedirs(path, exist_ok=True)
            os.chown(path, wanted["uid"], wanted["gid"])
            os.chmod(path, wanted["mode"])

    def ensure_file(self, path: str, spec: Mapping[str, Any], content: str, default_mode: int, secret: bool,
                    staged: Optional[str] = None) -> bool:
        """Converge one file; True when its content changed. ``staged``: a temp file in the same directory that
        already holds the content (the validated Compose file), renamed over the live one."""
        wanted = self._wanted(spec, default_mode, content)
        current = self._current(path, read=True)
        changes = file_changes(wanted, current)
        if not changes:
            return False
        content_changed = "content" in changes or changes == ["created"]
        self.files_changed.append(path)
        attributes = [c for c in changes if c not in ("content", "created")]
        if secret:
            before = "".join(f"{c}\n" for c in attributes) if current is not None else ""
            after = SECRET_CHANGED if content_changed else "".join(f"{c.split()[0]} as declared\n"
                                                                   for c in attributes)
        else:
            before = (current or {}).get("content") or b""
            before = before.decode("utf-8", "replace") + "".join(f"# {c}\n" for c in attributes)
            after = content + ("".join(f"# {c.split()[0]} as declared\n" for c in attributes) if attributes else "")
        self.diffs.append({"before_header": path, "after_header": path, "before": before, "after": after})
        if self.check:
            return content_changed
        self.previous.setdefault(path, current)
        if content_changed:
            if staged is None:
                fd, staged = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
                with os.fdopen(fd, "wb") as handle:
                    handle.write(wanted["content"])
                    handle.flush()
                    os.fsync(handle.fileno())
            os.chown(staged, wanted["uid"], wanted["gid"])
            os.chmod(staged, wanted["mode"])
            os.rename(staged, path)
        else:
            os.chown(path, wanted["uid"], wanted["gid"])
            os.chmod(path, wanted["mode"])
        return content_changed

    def _stage_compose(self) -> str:
        """The new Compose text in a temp file: in the service's directory (renamed over the live file later), or,
        in check mode or before that directory exists, in a scratch directory removed at the end."""
        directory = self.service_dir
        if self.check or not os.path.isdir(directory):
            self.scratch = tempfile.mkdtemp(prefix="compose_deploy.")
            directory = self.scratch
        fd, staged = tempfile.mkstemp(dir=directory, prefix=".compose.yaml.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.params["compose"])
        os.chmod(staged, 0o644)
        return staged

    def _cleanup(self, *paths: Optional[str]) -> None:
        for path in paths:
            if path and os.path.exists(path):
                os.unlink(path)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    # -- present ----------------------------------------------------------------------------------------------
    def _config(self, compose_file: str, pending: bool) -> Tuple[Dict[str, Any], bool]:
        """(``config --format json``, whether interpolated). ``pending``: files this run writes are not there yet
        (check mode, or before they are written), so a failure that names one is retried without interpolation
        (which does not read env_file)."""
        rc, out, err = self._compose(compose_file, "config", "--format", "json", check=False)
        if rc == 0:
            return json.loads(out), True
        if pending and "env file" in (err + out):
            rc2, out2, _err2 = self._compose(compose_file, "config", "--no-interpolate", "--format", "json",
                                             check=False)
            if rc2 == 0:
                return json.loads(out2), False
        raise DeployError(f"the Compose file of {self.name} is not valid (docker compose config): "
                          f"{err.strip() or out.strip()}")

    def _config_key(self) -> str:
        return config_key(self.params["project"], self.params["project_dir"], self.service_dir,
                          [self.docker, *COMPOSE_PLUGINS])

    def _cached_config(self) -> Optional[Tuple[Dict[str, Dict[str, Any]], Dict[str, str]]]:
        """(declared, hashes) kept by an earlier run from the very same inputs, else None."""
        try:
            with open(os.path.join(self.service_dir, CACHE_NAME), encoding="utf-8") as handle:
                cached = json.load(handle)
            if cached.get("key") == self._config_key():
                return cached["declared"], cached["hashes"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def _keep_config(self, declared: Mapping[str, Any], hashes: Mapping[str, str]) -> None:
        """Written atomically, root-only; a failure to write only costs the next run the two reads."""
        path = os.path.join(self.service_dir, CACHE_NAME)
        key = self._config_key()  # before the temp file exists beside them
        try:
            fd, staged = tempfile.mkstemp(dir=self.service_dir, prefix=f"{CACHE_NAME}.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"key": key, "declared": declared, "hashes": hashes}, handle)
            os.chmod(staged, 0o600)
            os.rename(staged, path)
        except OSError:
            pass

    def _image_ids(self, declared: Mapping[str, Mapping[str, Any]]) -> Dict[str, Optional[str]]:
        ids: Dict[str, Optional[str]] = {}
        for image in sorted({spec["image"] for spec in declared.values() if spec["image"]}):
            rc, out, _err = self._docker("image", "inspect", "--format", "{{.Id}}", image, check=False)
            ids[image] = out.strip() if rc == 0 and out.strip() else None
        return ids

    def present(self) -> Dict[str, Any]:  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
        params = self.params
        if params["compose"] is None:
            raise DeployError("compose is required with state=present")
        live = self._current(self.compose_file, read=True)
        compose_changed = live is None or live["content"] != params["compose"].encode("utf-8")
        staged = self._stage_compose() if compose_changed else None
        try:
            evaluated = staged or self.compose_file
            # 1. The declared services (this also validates a new Compose file), and the images pull=never needs,
            #    before anything is written. An env_file this run writes may be missing (a new service, or
            #    secrets.env deleted by hand): then read without interpolation, and again once it is written.
            #    Unchanged inputs: what an earlier run derived from them.
            cached = None if compose_changed else self._cached_config()
            config: Dict[str, Any] = {}
            if cached:
                declared, interpolated = cached[0], True
            else:
                config, interpolated = self._config(evaluated, pending=True)
                declared = declared_services(config)
            image_ids = self._image_ids(declared)
            if params["pull"] == "never":
                missing = sorted(image for image, image_id in image_ids.items() if image_id is None)
                if missing:
                    raise DeployError(
                        f"{self.name}: the image(s) {', '.join(missing)} are not on this host and the pull policy is "
                        "'never'. Load them first (the images role, or docker load) or set the pull policy to "
                        "'missing' (borgstack_pull).")
            # 2. Directories and files.
            self.ensure_dir(self.service_dir, {"owner": "root", "group": "root", "mode": "0750"})
            for spec in params["dirs"]:
                self.ensure_dir(self._relative(spec["path"]), spec)
            for spec in params["files"]:
                self.content_changed |= self.ensure_file(self._relative(spec["path"]), spec, spec["content"],
                                                         0o644, secret=False)
            for spec in params["secret_files"]:
                self.content_changed |= self.ensure_file(self._relative(spec["path"]), spec, spec["content"],
                                                         0o600, secret=True)
            self.content_changed |= self.ensure_file(os.path.join(self.service_dir, "secrets.env"), {},
                                                     env_file_text(params["env"]), 0o600, secret=True)
            if compose_changed and not self.check:
                if staged and self.scratch:  # staged before the directory existed: stage again inside it
                    self._cleanup(staged)
                    staged = self._stage_compose()
                # Validated with everything it reads in place, before it replaces the live file.
                self._compose(staged, "config", "--quiet")
            self.ensure_file(self.compose_file, {}, params["compose"], 0o644, secret=False, staged=staged)
            if not self.check:
                evaluated = self.compose_file
                if compose_changed or not interpolated:
                    config, interpolated = self._config(evaluated, pending=False)
                    declared = declared_services(config)
            hashes = cached[1] if cached else (self._hashes(config) if interpolated else None)
        finally:
            self._cleanup(staged)  # a staged file not renamed over the live one (check mode, a failure)
        # 3. The containers: what runs compared with what is declared.
        _rc, out, _err = self._docker("ps", "--all", "--filter", f"label={PROJECT_LABEL}={params['project']}",
                                      "--format", PS_FORMAT)
        rows = parse_ps(out)
        inspected = self._inspect_containers([spec["container"] for spec in declared.values()]
                                             + [row["name"] for row in rows])
        plan = plan_services(declared, hashes, inspected, image_ids)
        services = set(plan["up"]) | set(plan["force"])
        if self.content_changed:  # the containers read these files when they start
            services |= {service for service, spec in declared.items() if not spec["job"]}
        # One `up` for all of them; --force-recreate (it applies to every service named) when Compose cannot see
        # the reason itself: runtime drift, or a config file changed.
        force = bool(plan["force"]) or (self.content_changed and bool(services))
        drift: Dict[str, List[str]] = {}
        recreated, started = [], []
        for service in sorted(services):
            reasons = plan["up"].get(service, []) + plan["force"].get(service, [])
            container = declared[service]["container"]
            drift[container] = reasons or ["config files changed"]
            exists = container in inspected
            by_hash = bool(reasons) and reasons[0].startswith("configuration")
            (recreated if exists and (force or by_hash) else started).append(container)
        # An update (another image for a running service): the service's database is dumped first, and a new
        # version that does not become healthy is rolled back.
        updates = {service: found for service, found in image_updates(declared, inspected).items()
                   if service in services}
        dump: Optional[str] = None
        if not self.check and updates and self.params["update_dump"]:
            dump = self._dump_database()
        drained: Dict[str, int] = {}
        if not self.check and services:
            drained = self._drain([declared[s]["container"] for s in sorted(services)
                                   if declared[s]["container"] in self.params["drain"]], inspected)
        if not self.check and (services or plan["waiting"]):
            # Only waiting (healthchecks still starting): the same `up --wait`, which changes nothing.
            try:
                try:
                    self._up(sorted(services or plan["waiting"]), declared, force and bool(services))
                finally:
                    self._undrain(drained)
            except DeployError as exc:
                if not updates or not self.params["rollback"]:
                    raise
                self._rollback(str(exc), sorted(services), updates, dump)
        # 4. Containers this file created for services it no longer declares.
        removed = stale_containers(rows, self.compose_file, list(declared))
        if removed and not self.check:
            self._docker("rm", "--force", *removed)
        # 5. Data volumes' owner, group and mode.
        healed = self._volumes(drift)
        # What was derived from the files as they are now (read after this run wrote them, or none written), for
        # the next run.
        if not self.check and not cached and hashes is not None and (compose_changed or not self.content_changed):
            self._keep_config(declared, hashes)
        changed = bool(self.files_changed or services or removed or healed)
        result: Dict[str, Any] = {
            "changed": changed,
            "files_changed": self.files_changed,
            "recreated": recreated,
            "started": started,
            "removed": removed,
            "drift": drift,
            "commands": self.commands,
        }
        if drained:
            result["drained"] = sorted(drained)
        if updates:
            result["updated"] = {declared[service]["container"]: {"from": found["from"], "to": found["to"]}
                                 for service, found in updates.items()}
            result["dump"] = dump
        if changed and self.check:
            result["msg"] = f"{self.name} would be deployed"
            if updates and self.params["update_dump"]:
                result["msg"] += (f" (an update: the database {self.params['update_dump']['database']} would be "
                                  "dumped first)")
        if self.module._diff:  # pylint: disable=protected-access
            diffs = list(self.diffs)
            lines = [(name, line) for name, found in drift.items() for line in found]
            lines += [(name, "stale: no longer declared") for name in removed]
            if lines:
                diffs.append({"before_header": "runtime", "after_header": "runtime",
                              "before": "".join(f"{name}: {line}\n" for name, line in lines),
                              "after": "".join(f"{name}: as declared\n" for name in
                                               dict.fromkeys(name for name, _line in lines))})
            result["diff"] = diffs
        return result

    def _up(self, services: Sequence[str], declared: Mapping[str, Mapping[str, Any]], force: bool) -> None:
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
        args = ["up", "--detach", "--wait", "--wait-timeout", str(self.params["wait_timeout"]),
                "--pull", self.pull_override or self.params["pull"]]
        if force:
            args.append("--force-recreate")
        rc, out, err = self._compose(self.compose_file, *args, *rest, check=False)
        if rc == 0:
            return
        self._up_failed(rest, declared, err.strip() or out.strip())

    def _run_jobs(self, jobs: Sequence[str], declared: Mapping[str, Mapping[str, Any]], force: bool) -> None:
        """Start one-off jobs and wait (up to wait_timeout) until each exited; one that exited non-zero fails."""
        args = ["up", "--detach", "--pull", self.pull_override or self.params["pull"]] + (
            ["--force-recreate"] if force else [])
        rc, out, err = self._compose(self.compose_file, *args, *jobs, check=False)
        if rc != 0:
            self._up_failed(jobs, declared, err.strip() or out.strip())
        names = [declared[s]["container"] for s in jobs]
        deadline = time.monotonic() + self.params["wait_timeout"]
        while True:
            states = {name: (c.get("State") or {}) for name, c in self._inspect_containers(names).items()}
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
        inspected = self._inspect_containers(names)
        logs = []
        for name in names:
            if (every or not_ready(inspected.get(name))) and name in inspected:
                _lrc, lout, lerr = self._docker("logs", "--tail", str(LOG_LINES), name, check=False)
                logs.append(f"--- last {LOG_LINES} log lines of {name} ---\n{(lout + lerr).rstrip()}")
        raise DeployError(f"{self.name}: docker compose up failed: {reason}"
                          + ("\n" + "\n".join(logs) if logs else ""))

    # -- drain: a proxied container takes no new connection and finishes its requests before it is replaced ----
    def _drain(self, names: Sequence[str], inspected: Mapping[str, Mapping[str, Any]]) -> Dict[str, int]:
        """Before ``up`` replaces these running containers: refuse new TCP connections in each one's network namespace
        (a reset, so the proxy sees a connection refused, which it always retries - it holds the request until the
        new container answers) and wait, up to ``drain_timeout`` seconds, until the connections already open are
        closed. The rule goes with the old container's namespace. Where it cannot be applied (no nsenter or
        iptables on the host), the container is replaced without draining and a warning says so.

        Returns the drained containers with the process whose namespace holds the rule."""
        pids = {}
        for name in names:
            state = (inspected.get(name) or {}).get("State") or {}
            if state.get("Running") and state.get("Pid"):
                pids[name] = int(state["Pid"])
        if not pids or self.params["drain_timeout"] <= 0:
            return {}
        if not self.module.get_bin_path("nsenter") or not self.module.get_bin_path("iptables"):
            self.module.warn(f"{self.name}: nsenter or iptables is missing on this host: {', '.join(sorted(pids))} "
                             "replaced without draining (requests in flight may fail at the proxy)")
            return {}
        drained = {}
        for name, pid in sorted(pids.items()):
            self.commands.append(f"nsenter --net iptables: refuse new connections to {name}")
            rc, _out, err = self._drain_rule("-I", pid)
            if rc != 0:
                self.module.warn(f"{self.name}: {name} replaced without draining: iptables in its network "
                                 f"namespace failed: {err.strip()}")
                continue
            drained[name] = pid
        deadline = time.monotonic() + self.params["drain_timeout"]
        waiting = sorted(drained)
        while waiting and time.monotonic() < deadline:
            waiting = [name for name in waiting if inbound_connections(self._tcp_tables(drained[name]))]
            if waiting:
                time.sleep(0.1)
        return drained

    def _undrain(self, drained: Mapping[str, int]) -> None:
        """A drained container that ``up`` did not replace (it failed before stopping it) would refuse every new
        connection for good: the rule is taken out again where the same process still runs."""
        if not drained:
            return
        now = self._inspect_containers(list(drained))
        for name, pid in sorted(drained.items()):
            state = (now.get(name) or {}).get("State") or {}
            if state.get("Running") and state.get("Pid") == pid:
                self.commands.append(f"nsenter --net iptables: accept new connections to {name} again (not replaced)")
                self._drain_rule("-D", pid)

    def _drain_rule(self, action: str, pid: int) -> Tuple[int, str, str]:
        """Insert (``-I``) or delete (``-D``) DRAIN_RULE in the network namespace of process ``pid``."""
        return self.module.run_command([self.module.get_bin_path("nsenter"), "--target", str(pid), "--net",
                                        self.module.get_bin_path("iptables"), "-w", action, *DRAIN_RULE])

    @staticmethod
    def _tcp_tables(pid: int) -> List[str]:
        tables = []
        for name in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{pid}/net/{name}", encoding="ascii") as handle:
                    tables.append(handle.read())
            except OSError:  # the process exited, or no IPv6
                continue
        return tables

    # -- update: dump first, roll back when the new version does not become healthy --------------------------------
    def _dump_database(self) -> str:
        """pg_dump -Fc of the service's database through the PostgreSQL container, into a root-only directory (the
        backup role's command); the oldest dumps of this service beyond ``keep`` are deleted afterwards."""
        spec = self.params["update_dump"]
        os.makedirs(spec["dir"], mode=0o700, exist_ok=True)
        os.chmod(spec["dir"], 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = os.path.join(spec["dir"], dump_name(self.name, stamp))
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # root-only before it holds data
        command = " ".join(shlex.quote(part) for part in [
            self.docker, "exec", spec["container"], "pg_dump", "-U", "postgres", "-Fc", "-d", spec["database"]])
        self.commands.append(f"docker exec {spec['container']} pg_dump -Fc -d {spec['database']} > {path}")
        rc, _out, err = self.module.run_command(f"{command} > {shlex.quote(path)}", use_unsafe_shell=True)
        if rc != 0 or os.path.getsize(path) == 0:
            os.unlink(path)
            raise DeployError(f"{self.name}: the pre-update dump of the database {spec['database']} failed, so "
                              f"nothing was updated: {err.strip() or 'pg_dump wrote nothing'}")
        for old in dumps_to_prune(os.listdir(spec["dir"]), self.name, spec["keep"]):
            os.unlink(os.path.join(spec["dir"], old))
        return path

    def _restore_database(self, path: str) -> None:
        """The pre-update dump back in place of the database the new version may have migrated: its connections
        closed, then ``pg_restore --clean --create`` (drops and recreates it, owner and grants as dumped)."""
        spec = self.params["update_dump"]
        database = spec["database"]
        self._docker("exec", "-i", spec["container"], "psql", "-U", "postgres", "-d", "postgres", "-v",
                     "ON_ERROR_STOP=1", "-v", f"db={database}", "-q", "-f", "-",
                     data="SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :'db' AND pid <> pg_backend_pid();")
        command = " ".join(shlex.quote(part) for part in [
            self.docker, "exec", "-i", spec["container"], "pg_restore", "-U", "postgres", "--clean", "--if-exists",
            "--create", "--exit-on-error", "-d", "postgres"])
        self.commands.append(f"docker exec -i {spec['container']} pg_restore --clean --create < {path}")
        rc, out, err = self.module.run_command(f"{command} < {shlex.quote(path)}", use_unsafe_shell=True)
        if rc != 0:
            raise DeployError(f"pg_restore of {path} into {database} failed: {err.strip() or out.strip()}")

    def _restore_files(self) -> None:
        """Every file this run wrote, back as it was (content, owner, mode); a file it created is deleted."""
        for path, before in self.previous.items():
            if before is None:
                if os.path.exists(path):
                    os.unlink(path)
                continue
            fd, staged = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
            with os.fdopen(fd, "wb") as handle:
                handle.write(before["content"] or b"")
            os.chown(staged, before["uid"], before["gid"])
            os.chmod(staged, before["mode"] & 0o7777)
            os.rename(staged, path)

    def _rollback(self, failure: str, services: Sequence[str], updates: Mapping[str, Mapping[str, str]],
                  dump: Optional[str]) -> None:
        """The new version did not become healthy: stop it, put back the database (from the pre-update dump), the
        files and the previous image, bring the previous version up again, and fail saying all of it."""
        versions = ", ".join(f"{found['container']} {found['from']} -> {found['to']}" for found in updates.values())
        done: List[str] = []
        try:
            self._compose(self.compose_file, "stop", *services, check=False)
            if dump:
                self._restore_database(dump)
                done.append(f"the database {self.params['update_dump']['database']} restored from the pre-update "
                            f"dump {dump}")
            self._restore_files()
            done.append("the previous files put back")
            for found in updates.values():
                # The previous reference must name the image the container ran (a pull may have moved the tag).
                rc, out, _err = self._docker("image", "inspect", "--format", "{{.Id}}", found["from"], check=False)
                if found["from_id"] and (rc != 0 or out.strip() != found["from_id"]):
                    self._docker("tag", found["from_id"], found["from"])
            config, _interpolated = self._config(self.compose_file, pending=False)
            previous = declared_services(config)
            self.pull_override = "never"
            self._up([service for service in services if service in previous], previous, True)
            done.append("the previous version running and healthy")
        except DeployError as exc:
            raise DeployError(
                f"{self.name}: the update ({versions}) did not become healthy, and the ROLLBACK FAILED: {exc}. Done "
                f"before it failed: {'; '.join(done) or 'nothing'}. "
                + (f"The pre-update dump is {dump} (pg_restore --clean --create). " if dump else "")
                + f"Why the new version failed: {failure}") from None
        raise DeployError(
            f"{self.name}: the update ({versions}) did not become healthy within {self.params['wait_timeout']} s and "
            f"was rolled back: {'; '.join(done)}. Fix the new version (its last log lines are below) before trying "
            f"again. Why it failed: {failure}")

    def _volumes(self, drift: Dict[str, List[str]]) -> List[str]:
        healed = []
        volumes = self.params["volumes"]
        if not volumes:
            return healed
        _rc, out, _err = self._docker("volume", "inspect", *[v["name"] for v in volumes], check=False)
        found = {item["Name"]: item for item in (json.loads(out) if out.strip().startswith("[") else [])}
        for volume in volumes:
            info = found.get(volume["name"])
            if info is None:
                continue  # not created yet: Compose creates it, the image sets it up
            path = info["Mountpoint"]
            stat = os.stat(path)
            lines = volume_drift(volume, stat.st_uid, stat.st_gid, stat.st_mode)
            if not lines:
                continue
            drift[f"volume {volume['name']}"] = lines
            healed.append(volume["name"])
            if not self.check:
                os.chown(path, -1 if volume.get("owner") is None else volume["owner"],
                         -1 if volume.get("group") is None else volume["group"])
                if volume.get("mode") is not None:
                    os.chmod(path, int(str(volume["mode"]), 8))
        return healed

    # -- absent -----------------------------------------------------------------------------------------------
    def absent(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {"changed": False, "files_changed": [], "recreated": [], "started": [],
                                  "removed": [], "drift": {}, "commands": self.commands}
        if not os.path.exists(self.compose_file):
            return result
        config, _interpolated = self._config(self.compose_file, pending=True)
        declared = declared_services(config)
        _rc, out, _err = self._docker("ps", "--all", "--filter", f"label={PROJECT_LABEL}={self.params['project']}",
                                      "--format", PS_FORMAT)
        containers = sorted(row["name"] for row in parse_ps(out) if row["config_files"] == self.compose_file
                            or row["name"] in {spec["container"] for spec in declared.values()})
        volumes: List[str] = []
        if self.params["purge"]:
            wanted = [(spec or {}).get("name", f"{config.get('name')}_{key}")
                      for key, spec in (config.get("volumes") or {}).items() if not (spec or {}).get("external")]
            if wanted:
                _rc, vout, _verr = self._docker("volume", "inspect", *wanted, check=False)
                volumes = sorted(item["Name"] for item in (json.loads(vout) if vout.strip().startswith("[") else []))
        result["removed"] = containers + [f"volume {name}" for name in volumes]
        result["changed"] = bool(result["removed"])
        if result["changed"] and not self.check:
            self._compose(self.compose_file, "down", *(["--volumes"] if self.params["purge"] else []))
        if self.module._diff and result["changed"]:  # pylint: disable=protected-access
            result["diff"] = {"before": "".join(f"{name}\n" for name in result["removed"]), "after": ""}
        return result
