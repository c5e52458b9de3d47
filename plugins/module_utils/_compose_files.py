# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files of one Compose service: its directory, Compose file, config and secret files, and the config cache.

The pure functions compare a wanted file (content, owner, group, mode) with what is on disk (``file_changes``) and
give the secret environment file's exact text (``env_file_text``). ``ServiceFiles`` writes only what differs (each
file atomically, through a temp file renamed over it), remembers what each file held before (a rollback puts it
back) and keeps the diffs.

What ``docker compose config`` derives from the files (the declared services and their configuration hashes, never
the resolved environment) is kept in a root-only file beside them (``CACHE_NAME``), under a key made of every input
Compose reads for it (``config_key``): a rerun that finds the same inputs skips the two ``docker compose config``
runs, the slowest reads of a no-op.
"""
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import ComposePart, DeployError

# First line of services/<name>/secrets.env (the format the compose_service role wrote with ansible.builtin.copy).
ENV_FILE_HEADER = "# Managed by BorgStack. Secrets: root-only.\n"
SECRET_CHANGED = "(secret content changed)\n"
# What `docker compose config` derived, kept beside the service's files (root-only; no secret in it).
CACHE_NAME = ".compose-config.json"
# Where the Compose v2 plugin is installed by Debian, Ubuntu and Docker's packages (its version changes the hashes).
COMPOSE_PLUGINS = ("/usr/libexec/docker/cli-plugins/docker-compose", "/usr/lib/docker/cli-plugins/docker-compose",
                   "/usr/local/lib/docker/cli-plugins/docker-compose",
                   "/usr/local/libexec/docker/cli-plugins/docker-compose")


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


def file_diff(path: str, current: Optional[Mapping[str, Any]], content: str, changes: Sequence[str],
              secret: bool) -> Dict[str, str]:
    """The --diff entry of one file: its text before and after, a secret file's content never shown, owner, group
    and mode changes as lines (comments in a text file)."""
    content_changed = "content" in changes or list(changes) == ["created"]
    attributes = [c for c in changes if c not in ("content", "created")]
    if secret:
        before = "".join(f"{c}\n" for c in attributes) if current is not None else ""
        after = SECRET_CHANGED if content_changed else "".join(f"{c.split()[0]} as declared\n" for c in attributes)
    else:
        before = (current or {}).get("content") or b""
        before = before.decode("utf-8", "replace") + "".join(f"# {c}\n" for c in attributes)
        after = content + ("".join(f"# {c.split()[0]} as declared\n" for c in attributes) if attributes else "")
    return {"before_header": path, "after_header": path, "before": before, "after": after}


def stage_bytes(path: str, content: bytes, sync: bool) -> str:
    """A temp file beside ``path`` holding ``content`` (flushed to disk with ``sync``), to be renamed over it."""
    fd, staged = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    return staged


def install(staged: str, path: str, uid: int, gid: int, mode: int) -> None:
    """The staged file with its owner and mode, renamed over ``path`` (atomic)."""
    os.chown(staged, uid, gid)
    os.chmod(staged, mode)
    os.rename(staged, path)


class ServiceFiles(ComposePart):
    """Converges services/<name>/: directories, files, secret files, secrets.env and the Compose file.

    Keeps the changed paths (``files_changed``), whether a file the containers read changed (``content_changed``),
    the diffs, and what each file written held before (``previous``, None: it did not exist) for a rollback.
    """

    def __init__(self, base: Any) -> None:
        super().__init__(base)
        self.files_changed: List[str] = []
        self.content_changed = False
        self.diffs: List[Dict[str, str]] = []
        self.previous: Dict[str, Optional[Dict[str, Any]]] = {}
        self.staged: Optional[str] = None  # the new Compose file, until it replaces the live one
        self.scratch: Optional[str] = None

    @staticmethod
    def current(path: str, read: bool) -> Optional[Dict[str, Any]]:
        """Content (when ``read``), uid, gid and mode of what is at ``path``; None when nothing is there."""
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
        path = os.path.normpath(os.path.join(self.base.service_dir, relative))
        if relative.startswith("/") or not path.startswith(self.base.service_dir + os.sep):
            raise DeployError(f"{relative!r} is not a path inside services/{self.name}/")
        return path

    def ensure_dir(self, path: str, spec: Mapping[str, Any]) -> None:
        wanted = self._wanted(spec, 0o750, None)
        changes = file_changes(wanted, self.current(path, read=False))
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

    def ensure_file(self, path: str, spec: Mapping[str, Any], content: str, default_mode: int, *, secret: bool,
                    staged: Optional[str] = None) -> bool:
        """Converge one file; True when its content changed. ``staged``: a temp file in the same directory that
        already holds the content (the validated Compose file), renamed over the live one."""
        wanted = self._wanted(spec, default_mode, content)
        current = self.current(path, read=True)
        changes = file_changes(wanted, current)
        if not changes:
            return False
        content_changed = "content" in changes or changes == ["created"]
        self.files_changed.append(path)
        self.diffs.append(file_diff(path, current, content, changes, secret))
        if self.check:
            return content_changed
        self.previous.setdefault(path, current)
        if content_changed:
            install(staged or stage_bytes(path, wanted["content"], sync=True), path, wanted["uid"], wanted["gid"],
                    wanted["mode"])
        else:
            os.chown(path, wanted["uid"], wanted["gid"])
            os.chmod(path, wanted["mode"])
        return content_changed

    def write_service_files(self) -> None:
        """The service's directory, its ``dirs``, ``files``, ``secret_files`` and secrets.env (from ``env``)."""
        self.ensure_dir(self.base.service_dir, {"owner": "root", "group": "root", "mode": "0750"})
        for spec in self.params["dirs"]:
            self.ensure_dir(self._relative(spec["path"]), spec)
        for spec in self.params["files"]:
            self.content_changed |= self.ensure_file(self._relative(spec["path"]), spec, spec["content"],
                                                     0o644, secret=False)
        for spec in self.params["secret_files"]:
            self.content_changed |= self.ensure_file(self._relative(spec["path"]), spec, spec["content"],
                                                     0o600, secret=True)
        self.content_changed |= self.ensure_file(os.path.join(self.base.service_dir, "secrets.env"), {},
                                                 env_file_text(self.params["env"]), 0o600, secret=True)

    def place_compose(self, compose_changed: bool) -> None:
        """The new Compose file, validated with everything it reads in place, renamed over the live one."""
        if compose_changed and not self.check:
            if self.staged and self.scratch:  # staged before the directory existed: stage again inside it
                self.cleanup()
                self.stage_compose()
            self.base.run_compose(self.staged, "config", "--quiet")
        self.ensure_file(self.base.compose_file, {}, self.params["compose"], 0o644, secret=False, staged=self.staged)

    def stage_compose(self) -> str:
        """The new Compose text in a temp file: in the service's directory (renamed over the live file later), or,
        in check mode or before that directory exists, in a scratch directory removed at the end."""
        directory = self.base.service_dir
        if self.check or not os.path.isdir(directory):
            self.scratch = tempfile.mkdtemp(prefix="compose_deploy.")
            directory = self.scratch
        fd, self.staged = tempfile.mkstemp(dir=directory, prefix=".compose.yaml.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.params["compose"])
        os.chmod(self.staged, 0o644)
        return self.staged

    def cleanup(self) -> None:
        """A staged Compose file not renamed over the live one (check mode, a failure), and the scratch directory."""
        if self.staged and os.path.exists(self.staged):
            os.unlink(self.staged)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def restore(self) -> None:
        """Every file this run wrote, back as it was (content, owner, mode); a file it created is deleted."""
        for path, before in self.previous.items():
            if before is None:
                if os.path.exists(path):
                    os.unlink(path)
                continue
            install(stage_bytes(path, before["content"] or b"", sync=False), path, before["uid"], before["gid"],
                    before["mode"] & 0o7777)

    # -- the config cache -----------------------------------------------------------------------------------------
    def _config_key(self) -> str:
        return config_key(self.params["project"], self.params["project_dir"], self.base.service_dir,
                          [self.base.docker_bin, *COMPOSE_PLUGINS])

    def cached_config(self) -> Optional[Tuple[Dict[str, Dict[str, Any]], Dict[str, str]]]:
        """(declared, hashes) kept by an earlier run from the very same inputs, else None."""
        try:
            with open(os.path.join(self.base.service_dir, CACHE_NAME), encoding="utf-8") as handle:
                cached = json.load(handle)
            if cached.get("key") == self._config_key():
                return cached["declared"], cached["hashes"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def keep_config(self, declared: Mapping[str, Any], hashes: Mapping[str, str]) -> None:
        """Written atomically, root-only; a failure to write only costs the next run the two reads."""
        path = os.path.join(self.base.service_dir, CACHE_NAME)
        key = self._config_key()  # before the temp file exists beside them
        try:
            fd, staged = tempfile.mkstemp(dir=self.base.service_dir, prefix=f"{CACHE_NAME}.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"key": key, "declared": declared, "hashes": hashes}, handle)
            os.chmod(staged, 0o600)
            os.rename(staged, path)
        except OSError:
            pass
