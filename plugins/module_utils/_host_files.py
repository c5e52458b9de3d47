# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read → compare → write for a set of files and directories (the host_files module), and the small read-only
look-ups the roles need beside them (the host_facts module): systemd units, dpkg packages, live sysctl values,
paths, globs and read-only commands.

Everything here takes absolute paths and plain callables, so the unit tests run it on ``tmp_path`` as it is.
"""
from __future__ import annotations

import glob
import grp
import hashlib
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

FILE_ENTRY_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "default": "file", "choices": ["file", "directory", "absent"]},
    "content": {"type": "str"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "str"},
    "secret": {"type": "bool", "default": False},
    "validate": {"type": "str"},
}

HOST_FILES_SPEC: dict[str, Any] = {
    "files": {"type": "list", "elements": "dict", "required": True, "options": FILE_ENTRY_SPEC},
}

HOST_FACTS_SPEC: dict[str, Any] = {
    "units": {"type": "list", "elements": "str", "default": []},
    "packages": {"type": "list", "elements": "str", "default": []},
    "sysctl": {"type": "list", "elements": "str", "default": []},
    "paths": {"type": "list", "elements": "path", "default": []},
    "globs": {"type": "list", "elements": "str", "default": []},
    "commands": {"type": "dict", "default": {}},
}

HIDDEN = "(content hidden: secret)"

# A runner: argv -> (rc, stdout, stderr). AnsibleModule.run_command fits (with check_rc=False).
Runner = Callable[[list[str]], "tuple[int, str, str]"]


class HostFilesError(Exception):
    """A wanted state that cannot be reached safely (e.g. a directory where a file should be)."""


@dataclass
class Entry:
    path: str
    state: str = "file"
    content: str | None = None
    owner: str | None = None
    group: str | None = None
    mode: str | None = None
    secret: bool = False
    validate: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Entry":
        entry = cls(**{key: params.get(key) for key in FILE_ENTRY_SPEC if key in params})
        entry.state = entry.state or "file"
        entry.secret = bool(entry.secret)
        if not os.path.isabs(entry.path):
            raise HostFilesError(f"{entry.path}: give an absolute path")
        if entry.state == "file" and entry.content is None:
            raise HostFilesError(f"{entry.path}: state=file needs content")
        if entry.state != "file" and (entry.content is not None or entry.validate):
            raise HostFilesError(f"{entry.path}: content and validate only go with state=file")
        if entry.validate and "%s" not in entry.validate:
            raise HostFilesError(f"{entry.path}: validate must contain %s (the path of the file to check)")
        if entry.mode is not None:
            entry.mode = normalise_mode(entry.mode, entry.path)
        return entry


@dataclass
class Current:
    kind: str  # file, directory, link, other
    uid: int
    gid: int
    mode: str
    content: bytes | None = None


@dataclass
class Plan:
    entry: Entry
    current: Current | None
    changes: list[str] = field(default_factory=list)
    uid: int | None = None
    gid: int | None = None


def normalise_mode(mode: str, path: str = "") -> str:
    """'644', '0644', '0o644' -> '0644'; symbolic modes are refused (say them in octal)."""
    text = str(mode).strip().lower().removeprefix("0o")
    try:
        value = int(text, 8)
    except ValueError:
        raise HostFilesError(f"{path}: mode {mode!r} is not octal; write it like \"0644\"") from None
    if value > 0o7777:
        raise HostFilesError(f"{path}: mode {mode!r} is out of range")
    return f"{value:04o}"


def _resolve_id(name: str | None, lookup: Callable[[str], int], kind: str) -> int | None:
    """A numeric id as it is, a name through ``lookup``; None stays None (the attribute is not managed)."""
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    try:
        return lookup(name)
    except KeyError:
        raise HostFilesError(f"{kind} {name!r} does not exist on this host") from None


def resolve_uid(owner: str | None) -> int | None:
    return _resolve_id(owner, lambda name: pwd.getpwnam(name).pw_uid, "user")


def resolve_gid(group: str | None) -> int | None:
    return _resolve_id(group, lambda name: grp.getgrnam(name).gr_gid, "group")


def read_path(path: str, with_content: bool = True) -> Current | None:
    """The path as it is: None when missing; a file's bytes only when asked."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        kind = "link"
    elif stat.S_ISDIR(st.st_mode):
        kind = "directory"
    elif stat.S_ISREG(st.st_mode):
        kind = "file"
    else:
        kind = "other"
    content = None
    if kind == "file" and with_content:
        with open(path, "rb") as handle:
            content = handle.read()
    return Current(kind=kind, uid=st.st_uid, gid=st.st_gid, mode=f"{stat.S_IMODE(st.st_mode):04o}", content=content)


def plan_entry(entry: Entry) -> Plan:
    """What differs between the path and the entry, in the order it is applied."""
    current = read_path(entry.path, with_content=entry.state == "file")
    plan = Plan(entry=entry, current=current, uid=resolve_uid(entry.owner), gid=resolve_gid(entry.group))
    if entry.state == "absent":
        if current is not None:
            plan.changes.append("absent")
        return plan
    if current is None:
        plan.changes.append("created")
    elif entry.state == "directory" and current.kind != "directory":
        raise HostFilesError(f"{entry.path} is a {current.kind}, not a directory: move it away first")
    elif entry.state == "file" and current.kind not in ("file", "link"):
        raise HostFilesError(f"{entry.path} is a {current.kind}, not a file: move it away first")
    elif entry.state == "file" and current.kind == "link":
        plan.changes.append("replaced link")
    if entry.state == "file" and (current is None or current.content != entry.content.encode("utf-8")):
        if current is not None and current.kind == "file":
            plan.changes.append("content")
    if current is not None and current.kind != "link":
        if plan.uid is not None and current.uid != plan.uid:
            plan.changes.append("owner")
        if plan.gid is not None and current.gid != plan.gid:
            plan.changes.append("group")
        if entry.mode is not None and current.mode != entry.mode:
            plan.changes.append("mode")
    return plan


def _set_attributes(path: str, plan: Plan) -> None:
    if plan.uid is not None or plan.gid is not None:
        os.chown(path, -1 if plan.uid is None else plan.uid, -1 if plan.gid is None else plan.gid)
    if plan.entry.mode is not None:
        os.chmod(path, int(plan.entry.mode, 8))


def apply_plan(plan: Plan, run: Runner) -> None:
    """Make the path what the entry asks (only called when plan.changes is not empty, never in check mode)."""
    entry = plan.entry
    if entry.state == "absent":
        if plan.current is not None and plan.current.kind == "directory":
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        return
    if entry.state == "directory":
        if plan.current is None:
            os.makedirs(entry.path)
        _set_attributes(entry.path, plan)
        return
    if set(plan.changes) <= {"owner", "group", "mode"}:
        _set_attributes(entry.path, plan)
        return
    # New content: a temporary file beside the target, with its final owner and mode, checked, then renamed over.
    directory = os.path.dirname(entry.path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(entry.path)}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(entry.content.encode("utf-8"))
        if plan.current is not None and plan.current.kind == "file":
            # Keep what the entry does not set from the file it replaces.
            os.chmod(temporary, int(plan.current.mode, 8))
            os.chown(temporary, plan.current.uid, plan.current.gid)
        else:
            os.chmod(temporary, 0o644 if entry.mode is None else int(entry.mode, 8))
        _set_attributes(temporary, plan)
        if entry.validate:
            rc, out, err = run(entry.validate.replace("%s", temporary))
            if rc != 0:
                raise HostFilesError(f"{entry.path}: validation failed ({entry.validate}): rc={rc} "
                                     f"{(err or out).strip()[-2000:]}")
        os.replace(temporary, entry.path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def _sha1(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha1(data).hexdigest()


def _text(data: bytes | None) -> str:
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"(binary content, sha1 {_sha1(data)})\n"


def describe(plan: Plan) -> dict[str, Any]:
    """The per-entry result: what changed, never content."""
    return {"path": plan.entry.path, "state": plan.entry.state, "changed": bool(plan.changes),
            "changes": list(plan.changes), "secret": plan.entry.secret}


def diff_items(plan: Plan, hide: bool) -> list[dict[str, Any]]:
    """Ansible diff entries for one changed path: its attributes, and its content unless hidden."""
    if not plan.changes:
        return []
    entry, current = plan.entry, plan.current
    items = []

    def attributes(exists: bool, kind: str | None, uid: Any, gid: Any, mode: Any) -> str:
        if not exists:
            return "absent\n"
        return f"{kind} owner={uid} group={gid} mode={mode}\n"

    before_attrs = attributes(current is not None, current and current.kind, current and current.uid,
                              current and current.gid, current and current.mode)
    if entry.state == "absent":
        after_attrs = "absent\n"
    else:
        keep = current if current is not None and current.kind == entry.state else None
        after_attrs = attributes(True, entry.state,
                                 plan.uid if plan.uid is not None else (keep.uid if keep else "(default)"),
                                 plan.gid if plan.gid is not None else (keep.gid if keep else "(default)"),
                                 entry.mode or (keep.mode if keep else "(default)"))
    if before_attrs != after_attrs:
        items.append({"before_header": f"{entry.path} (attributes)", "after_header": f"{entry.path} (attributes)",
                      "before": before_attrs, "after": after_attrs})
    if entry.state == "file" or (current is not None and current.kind == "file"):
        before = _text(current.content) if current is not None and current.kind == "file" else ""
        after = entry.content if entry.state == "file" else ""
        if before != after:
            if hide:
                before = HIDDEN + "\n" if before else ""
                after = HIDDEN + " (changed)\n" if after else ""
            items.append({"before_header": entry.path, "after_header": entry.path, "before": before, "after": after})
    return items


def sync_files(entries: list[Entry], check_mode: bool, run: Runner, hide_all: bool = False) -> dict[str, Any]:
    """Plan every entry first (so a bad one changes nothing), then apply in order. Returns the module's result."""
    plans = [plan_entry(entry) for entry in entries]
    results, diff = [], []
    for plan in plans:
        if plan.changes and not check_mode:
            apply_plan(plan, run)
        results.append(describe(plan))
        diff.extend(diff_items(plan, hide_all or plan.entry.secret))
    return {"changed": any(plan.changes for plan in plans), "files": results,
            "changed_paths": [plan.entry.path for plan in plans if plan.changes], "diff": diff}


# ---- read-only look-ups (host_facts) ----

def _output(run: Runner, argv: list[str]) -> tuple[int, str, str]:
    try:
        return run(argv)
    except OSError as error:
        return 127, "", str(error)


def read_units(units: list[str], run: Runner) -> dict[str, dict[str, str]]:
    """systemctl is-enabled / is-active of each unit ('' when systemd does not answer)."""
    return {unit: {"enabled": _output(run, ["systemctl", "is-enabled", unit])[1].strip(),
                   "active": _output(run, ["systemctl", "is-active", unit])[1].strip()} for unit in units}


def parse_dpkg(text: str) -> dict[str, dict[str, str]]:
    """Lines of ``dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'`` -> {name: {version, status}}.
    ``installed`` is true only for the status ``ii``."""
    found: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            status = fields[2].strip()
            found[fields[0]] = {"version": fields[1], "status": status, "installed": status == "ii"}
    return found


def read_packages(packages: list[str], run: Runner) -> dict[str, dict[str, Any]]:
    if not packages:
        return {}
    _rc, out, _err = _output(run, ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n",
                                   *packages])
    return parse_dpkg(out)


def read_sysctl(keys: list[str], proc: str = "/proc/sys") -> dict[str, dict[str, Any]]:
    """The live value of each key (whitespace collapsed) and whether it can be written here; None when absent."""
    values = {}
    for key in keys:
        path = os.path.join(proc, key.replace(".", "/"))
        try:
            with open(path, encoding="utf-8") as handle:
                value: str | None = " ".join(handle.read().split())
        except OSError:
            value = None
        values[key] = {"value": value, "writable": value is not None and os.access(path, os.W_OK)}
    return values


def read_paths(paths: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for path in paths:
        current = read_path(path, with_content=False)
        out[path] = {"exists": current is not None, "writable": current is not None and os.access(path, os.W_OK),
                     "type": current.kind if current else None}
    return out


def read_globs(patterns: list[str]) -> dict[str, list[str]]:
    return {pattern: sorted(glob.glob(pattern)) for pattern in patterns}


def read_commands(commands: dict[str, Any], run: Runner) -> dict[str, dict[str, Any]]:
    """Each named argv run once; a missing program gives rc 127, never an error."""
    out = {}
    for name, argv in commands.items():
        if not isinstance(argv, list) or not argv or not all(isinstance(arg, (str, int)) for arg in argv):
            raise HostFilesError(f"commands.{name}: give a non-empty list of arguments (argv)")
        rc, stdout, stderr = _output(run, [str(arg) for arg in argv])
        out[name] = {"rc": rc, "stdout": stdout.strip(), "stderr": stderr.strip()}
    return out


def host_facts(params: dict[str, Any], run: Runner) -> dict[str, Any]:
    return {
        "changed": False,
        "units": read_units(params.get("units") or [], run),
        "packages": read_packages(params.get("packages") or [], run),
        "sysctl": read_sysctl(params.get("sysctl") or []),
        "paths": read_paths(params.get("paths") or []),
        "globs": read_globs(params.get("globs") or []),
        "commands": read_commands(params.get("commands") or {}, run),
    }
