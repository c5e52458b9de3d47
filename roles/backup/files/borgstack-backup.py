# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by the borgstack.stack.backup role: do not edit here (Ansible overwrites it).
"""BorgStack backup: one consistent dump set of the stack's databases, taken through their containers.

Reads its settings (containers, databases, passwords) from a root-only JSON file - never from its command line - and
writes <dir>/<UTC time>/ (0700): postgresql-globals.sql (pg_dumpall --globals-only), postgresql-<service>.dump
(pg_dump -Fc of each tenant) with postgresql-<service>.tables (every table's row count and checksum, taken in the
snapshot the dump was taken in: what a restore of that dump must give back, whatever the apps wrote since - the
restore drill compares with it), redis-<service>.keys.json (the Redis keys a service's state needs besides its
database - its registry's redis_keys with restore: true -, taken right after that service's dump: Redis DUMP
payloads with their type, expiry and a digest of their value), mongodb-<service>.archive.gz (mongodump --archive
--gzip), redis-dump.rdb (after a BGSAVE), manifest.json and SHA256SUMS. The set is written under a hidden name and renamed when complete, so a set
that exists is whole. Then the oldest sets beyond `keep` are deleted. Any failure: a message on stderr (the
journal), a webhook POST and/or an e-mail when configured, exit status 1.

On a cluster (Docker Swarm) the settings name each data service's swarm service (postgresql_swarm_service, ...): the
container is the running task of that service on this node (docker ps --filter label=com.docker.swarm.service.name=),
found at the start of each run, and Redis is reached from inside that task's network namespace (the node is not on
the overlay). Without those settings (one host) the containers are the settings' names, as always.

The same program replaces a service's keys from a set (restore.yml, the service stopped) and loads them into a
scratch Redis and compares them (the restore drill); each prints a JSON summary with key names and counts only.

Usage: borgstack-backup [--config PATH]
       borgstack-backup [--config PATH] --restore-keys SET/redis-<service>.keys.json
       borgstack-backup [--config PATH] --check-keys SET/redis-<service>.keys.json --redis-container NAME
"""
from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

SET_NAME = re.compile(r"^\d{8}T\d{6}Z$")
CHUNK = 1 << 20


class BackupError(Exception):
    """A step failed: the message says which and why."""


def log(message: str) -> None:
    print(message, flush=True)


def run_to_file(cmd: List[str], target: Path, what: str, stdin: Optional[bytes] = None,
                env: Optional[Dict[str, str]] = None) -> None:
    """Run ``cmd`` with its standard output written to ``target`` (0600); fail with its stderr."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, input=stdin, env=env, check=False)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    if target.stat().st_size == 0:
        raise BackupError(f"{what} wrote nothing")


def run(cmd: List[str], what: str, env: Optional[Dict[str, str]] = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class Redis:
    """A minimal RESP2 client over TCP to a Redis container's address: binary-safe (DUMP payloads), the password sent
    in AUTH (never on a command line). Error replies raise BackupError without the command's arguments."""

    def __init__(self, container: str, port: int, password: str, db: int, netns: bool = False) -> None:
        if netns:
            # A swarm task: its overlay address is not reachable from the node; connect from its own namespace.
            self.sock = connect_in_netns(container, port)
        else:
            out = run(["docker", "inspect", "--format",
                       "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container],
                      f"docker inspect of {container}")
            addresses = out.split()
            if not addresses:
                raise BackupError(f"{container} has no network address (is it running?)")
            self.sock = socket.create_connection((addresses[0], port), timeout=120)
        self.reader = self.sock.makefile("rb")
        if password:
            self.call("AUTH", password)
        self.call("SELECT", str(db))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, *args: Any) -> None:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts)
                          + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))

    def read(self) -> Any:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise BackupError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise BackupError(f"Redis answered: {rest.decode(errors='replace')}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            return data[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _item in range(size)]
        raise BackupError(f"unexpected Redis reply {line[:20]!r}")

    def call(self, *args: Any) -> Any:
        self.send(*args)
        return self.read()

    def scan(self, globs: List[str]) -> List[bytes]:
        found = set()
        for glob in globs:
            cursor = b"0"
            while True:
                cursor, keys = self.call("SCAN", cursor, "MATCH", glob, "COUNT", "1000")
                found.update(keys)
                if cursor == b"0":
                    break
        return sorted(found)


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes  # pylint: disable=import-outside-toplevel
    import ctypes.util  # pylint: disable=import-outside-toplevel
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def connect_in_netns(container: str, port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` made inside ``container``'s network namespace (setns, as root): the
    socket stays in that namespace after the process comes back to its own."""
    pid = run(["docker", "container", "inspect", "--format", "{{.State.Pid}}", container],
              f"docker container inspect of {container}").strip()
    if not pid.isdigit() or pid == "0":
        raise BackupError(f"{container} is not running (no process)")
    here = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        there = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            _setns(there)
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=120)
            finally:
                _setns(here)
        finally:
            os.close(there)
    except OSError as exc:
        raise BackupError(f"cannot reach Redis inside {container}'s network namespace: {exc}") from exc
    finally:
        os.close(here)


# The data services whose containers the settings name, and the key of their swarm service (on a cluster).
SWARM_KINDS = ("postgresql", "redis", "mongodb")


def swarm_task(service: str) -> str:
    """The one running container of the swarm service ``service`` on this node; fails naming the service and the
    node when there is none or more than one."""
    out = run(["docker", "ps", "--filter", f"label=com.docker.swarm.service.name={service}",
               "--filter", "status=running", "--format", "{{.Names}}"], f"docker ps for {service}")
    names = out.split()
    if len(names) != 1:
        raise BackupError(f"{len(names)} running tasks of the swarm service {service} on this node "
                          f"({socket.gethostname()}), one expected: the backup runs where the data is held "
                          f"(docker service ps {service} on a manager)")
    return names[0]


def resolve_containers(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The settings with each data service's container: on a cluster (a <kind>_swarm_service setting) its running
    task on this node, found now; on one host the settings' names, unchanged."""
    resolved = dict(cfg)
    for kind in SWARM_KINDS:
        service = cfg.get(f"{kind}_swarm_service", "")
        if service and cfg.get(f"{kind}_container"):
            resolved[f"{kind}_container"] = swarm_task(service)
    return resolved


# How each type's value is read; what comes back is put in a canonical order before it is digested.
READS = {"string": ("GET",), "hash": ("HGETALL",), "list": ("LRANGE", "0", "-1"), "set": ("SMEMBERS",),
         "zset": ("ZRANGE", "0", "-1", "WITHSCORES"), "stream": ("XRANGE", "-", "+")}


def _flat(value: Any) -> bytes:
    if value is None:
        return b"n"
    if isinstance(value, int):
        return b"i%d;" % value
    if isinstance(value, bytes):
        return b"b%d:%s" % (len(value), value)
    return b"l%d:%s" % (len(value), b"".join(_flat(item) for item in value))


def value_digest(kind: str, value: Any) -> Tuple[str, int]:
    """sha256 of a key's type and value in a canonical order (hash fields and set members sorted), and its size in
    elements (1 for a string)."""
    if kind == "hash":
        items: Any = sorted(zip(value[0::2], value[1::2]))
        size = len(items)
    elif kind == "set":
        items = sorted(value)
        size = len(items)
    elif kind == "string":
        items, size = [value], 1
    elif kind == "zset":
        items, size = value, len(value) // 2
    else:
        items, size = value, len(value)
    return hashlib.sha256(kind.encode() + b"\0" + _flat(items)).hexdigest(), size


def read_key(conn: Redis, key: bytes, with_dump: bool) -> Optional[Dict[str, Any]]:
    """A key's type, expiry, value digest (and DUMP payload), read in one MULTI/EXEC so that they agree; None when
    the key vanished meanwhile."""
    for _attempt in range(3):
        kind = conn.call("TYPE", key).decode()
        if kind == "none":
            return None
        if kind not in READS:
            raise BackupError(f"Redis key {key!r} has the type {kind}, which the backup cannot read")
        commands = [("TYPE", key), ("PTTL", key), (*READS[kind][:1], key, *READS[kind][1:])]
        if with_dump:
            commands.append(("DUMP", key))
        conn.call("MULTI")
        for command in commands:
            conn.call(*command)
        replies = conn.call("EXEC")
        if replies is None or replies[0].decode() != kind:
            continue
        digest, size = value_digest(kind, replies[2])
        entry = {"key": base64.b64encode(key).decode(), "name": key.decode(errors="replace"), "type": kind,
                 "pttl": replies[1], "sha256": digest, "size": size}
        if with_dump:
            entry["dump"] = base64.b64encode(replies[3]).decode()
        return entry
    raise BackupError(f"Redis key {key!r} kept changing type while it was read")


def dump_redis_keys(cfg: Dict[str, Any], unit: Dict[str, Any], work: Path, manifest: Dict[str, Any]) -> None:
    """The keys of one service's surviving spaces, into redis-<service>.keys.json (0600)."""
    name, globs = unit["service"], [g for space in unit["spaces"].values() for g in space]
    conn = Redis(cfg["redis_container"], int(cfg.get("redis_port", 6379)), cfg.get("redis_password", ""),
                 int(unit["db"]), netns=bool(cfg.get("redis_swarm_service")))
    try:
        keys = [entry for entry in (read_key(conn, key, True) for key in conn.scan(globs)) if entry is not None]
    finally:
        conn.close()
    target = work / f"redis-{name}.keys.json"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"service": name, "db": unit["db"], "spaces": unit["spaces"], "keys": keys}, out)
    manifest.setdefault("redis_keys", {})[name] = {"db": unit["db"], "file": target.name, "spaces": unit["spaces"],
                                                   "keys": len(keys)}
    log(f"redis: {len(keys)} keys of {name} (db {unit['db']}: {', '.join(globs)}) -> {target.name}")


def load_keys(conn: Redis, keyset: Dict[str, Any], replace: bool) -> Dict[str, Any]:
    """Replace the keys of the set's spaces with the set's keys, in one MULTI/EXEC (nothing merged: a live key of
    those spaces that the set lacks is deleted), then read them back and compare. Returns the summary."""
    globs = [g for space in keyset["spaces"].values() for g in space]
    stale = conn.scan(globs) if replace else []
    conn.call("MULTI")
    for start in range(0, len(stale), 500):
        conn.call("DEL", *stale[start:start + 500])
    for entry in keyset["keys"]:
        ttl = entry["pttl"] if entry["pttl"] > 0 else 0
        conn.call("RESTORE", base64.b64decode(entry["key"]), str(ttl), base64.b64decode(entry["dump"]), "REPLACE")
    conn.call("EXEC")
    return compare_keys(conn, keyset, deleted=len(stale))


def compare_keys(conn: Redis, keyset: Dict[str, Any], deleted: int = 0) -> Dict[str, Any]:
    differences: List[str] = []
    matched = 0
    for entry in keyset["keys"]:
        now = read_key(conn, base64.b64decode(entry["key"]), False)
        if now is None:
            differences.append(f"{entry['name']}: missing")
        elif now["type"] != entry["type"]:
            differences.append(f"{entry['name']}: type {now['type']}, {entry['type']} in the set")
        elif now["sha256"] != entry["sha256"]:
            differences.append(f"{entry['name']}: {now['size']} elements, {entry['size']} in the set, other values")
        else:
            matched += 1
    globs = [g for space in keyset["spaces"].values() for g in space]
    extra = sorted(set(conn.scan(globs)) - {base64.b64decode(e["key"]) for e in keyset["keys"]})
    differences.extend(f"{key.decode(errors='replace')}: not in the set" for key in extra)
    return {"service": keyset["service"], "db": keyset["db"], "keys": len(keyset["keys"]), "matched": matched,
            "deleted": deleted, "elements": sum(e["size"] for e in keyset["keys"]), "differences": differences}


def keys_command(cfg: Dict[str, Any], path: str, scratch: Optional[str]) -> int:
    """--restore-keys (the live Redis of the settings) or --check-keys (a scratch Redis without a password, emptied
    first): print the JSON summary; exit 1 on a difference or an error."""
    try:
        keyset = json.loads(Path(path).read_text())
        if scratch:
            conn = Redis(scratch, 6379, "", int(keyset["db"]))
            conn.call("FLUSHDB")
        else:
            cfg = resolve_containers(cfg)
            conn = Redis(cfg["redis_container"], int(cfg.get("redis_port", 6379)), cfg.get("redis_password", ""),
                         int(keyset["db"]), netns=bool(cfg.get("redis_swarm_service")))
        try:
            summary = load_keys(conn, keyset, replace=True)
        finally:
            conn.close()
    except (BackupError, OSError, KeyError, ValueError) as exc:
        print(f"borgstack-backup: the keys of {path} could not be loaded: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0 if not summary["differences"] else 1


SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


def in_one_snapshot(container: str, database: str, sql: str, dump: Callable[[str], None]) -> List[str]:
    """Run ``dump(snapshot)`` inside a snapshot this psql session exports (pg_dump --snapshot), then run ``sql`` (the
    table figures, table_checksums.sql) in the same snapshot: the figures describe exactly what the dump holds.
    Returns the figures' lines; fails when the session, the dump or the figures fail."""
    if not sql.strip():
        raise BackupError("the settings have no table_figures_sql (rerun the backup role)")
    cmd = ["docker", "exec", "-i", container, "psql", "-U", "postgres", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
           "-d", database]
    what = f"the snapshot session on {database}"
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            proc.stdin.write("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n")
            proc.stdin.flush()
            snapshot = proc.stdout.readline().strip()   # psql flushes each result: the session stays open
            if not SNAPSHOT_ID.match(snapshot):
                proc.kill()
                _out, err = proc.communicate()
                raise BackupError(f"{what} exported no snapshot ({snapshot!r}): {err.strip()}")
            dump(snapshot)
            out, err = proc.communicate(f"{sql}\nCOMMIT;\n")
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            raise
    if proc.returncode != 0:
        raise BackupError(f"the table figures of {database} failed (exit {proc.returncode}): {err.strip()}")
    lines = [line for line in out.splitlines() if line]
    if any(line.count("|") != 2 for line in lines):
        raise BackupError(f"the table figures of {database} are not <table>|<rows>|<checksum> lines")
    return lines


def dump_postgresql(cfg: Dict[str, Any], work: Path, manifest: Dict[str, Any]) -> None:
    container = cfg.get("postgresql_container")
    units = {unit["service"]: unit for unit in cfg.get("redis_key_units", [])} if cfg.get("redis_container") else {}
    if not container:
        return
    # Local connections inside the container (its unix socket, trust for local users): no password involved.
    run_to_file(["docker", "exec", container, "pg_dumpall", "-U", "postgres", "--globals-only"],
                work / "postgresql-globals.sql", "pg_dumpall --globals-only")
    manifest["postgresql"] = {"container": container, "globals": "postgresql-globals.sql", "tenants": {}}
    for tenant in cfg.get("postgres_tenants", []):
        name, database = tenant["name"], tenant["database"]
        target, tables = work / f"postgresql-{name}.dump", work / f"postgresql-{name}.tables"

        def dump(snapshot: str, name: str = name, database: str = database, target: Path = target) -> None:
            run_to_file(["docker", "exec", container, "pg_dump", "-U", "postgres", "-Fc", f"--snapshot={snapshot}",
                         "-d", database], target, f"pg_dump of {database} (service {name})")

        figures = in_one_snapshot(container, database, cfg.get("table_figures_sql", ""), dump)
        fd = os.open(tables, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{line}\n" for line in figures)
        manifest["postgresql"]["tenants"][name] = {"database": database, "file": target.name, "tables": tables.name}
        log(f"postgresql: {database} ({name}) -> {target.name}, {target.stat().st_size} bytes, "
            f"{len(figures)} tables' figures")
        # The service's Redis keys right after its database, the older of the two: a key newer than the database
        # (a pre-key not yet counted in Evolution's creds) is harmless, a database newer than its keys is not.
        if name in units:
            dump_redis_keys(cfg, units[name], work, manifest)


def dump_mongodb(cfg: Dict[str, Any], work: Path, manifest: Dict[str, Any]) -> None:
    container = cfg.get("mongodb_container")
    if not container or not cfg.get("mongodb_users"):
        return
    manifest["mongodb"] = {"container": container, "databases": {}}
    for user in cfg["mongodb_users"]:
        name, database = user["name"], user["database"]
        target = work / f"mongodb-{name}.archive.gz"
        # mongodump reads the password from a YAML --config file (never its command line): the file is written by
        # the shell inside the container from standard input, in a private temporary directory, and removed.
        config = json.dumps({"password": cfg["mongodb_root_password"]}).encode()
        script = ('d=$(mktemp -d) && umask 077 && cat > "$d/c.yaml" && '
                  'mongodump --quiet --config="$d/c.yaml" --username="$1" --authenticationDatabase=admin '
                  '--db="$2" --archive --gzip; rc=$?; rm -rf "$d"; exit $rc')
        run_to_file(["docker", "exec", "-i", container, "sh", "-c", script, "mongodump",
                     cfg["mongodb_root_username"], database], target, f"mongodump of {database} (service {name})",
                    stdin=config)
        manifest["mongodb"]["databases"][name] = {"database": database, "file": target.name}
        log(f"mongodb: {database} ({name}) -> {target.name}, {target.stat().st_size} bytes")


def redis_cli(container: str, password: str, *args: str) -> str:
    # REDISCLI_AUTH is passed by name (-e NAME): its value goes from this process's environment to the container's
    # without appearing on any command line.
    env = {**os.environ, "REDISCLI_AUTH": password}
    return run(["docker", "exec", "-e", "REDISCLI_AUTH", container, "redis-cli", "--no-auth-warning", *args],
               f"redis-cli {args[0]}", env=env).strip()


def redis_persistence(container: str, password: str) -> Dict[str, str]:
    info = redis_cli(container, password, "INFO", "persistence")
    return {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in info.splitlines() if ":" in line)}


def redis_saved_since(before: Dict[str, str], now: Dict[str, str]) -> bool:
    """Whether a snapshot finished after ``before`` was read: the count of snapshots (rdb_saves, Redis 7+) went up;
    on an older Redis, the time of the last one (whole seconds) moved."""
    if "rdb_saves" in before and "rdb_saves" in now:
        return int(now["rdb_saves"]) > int(before["rdb_saves"])
    return int(now.get("rdb_last_save_time", 0)) > int(before.get("rdb_last_save_time", 0))


def dump_redis(cfg: Dict[str, Any], work: Path, manifest: Dict[str, Any]) -> None:
    container = cfg.get("redis_container")
    if not container:
        return
    password = cfg.get("redis_password", "")
    timeout = int(cfg.get("redis_timeout", 300))
    deadline = time.monotonic() + timeout
    # Redis runs one background save at a time. One already running (Redis' own save rules, a replica's sync, another
    # client) is waited for and then ours is started, so the snapshot is never older than this run; SCHEDULE defers
    # ours while an AOF rewrite runs.
    while True:
        before = redis_persistence(container, password)
        reply = redis_cli(container, password, "BGSAVE", "SCHEDULE")
        if "started" in reply.lower() or "scheduled" in reply.lower():
            break
        if "in progress" not in reply.lower():
            raise BackupError(f"Redis refused BGSAVE: {reply}")
        if time.monotonic() > deadline:
            raise BackupError(f"Redis was still busy with another background save after {timeout} s: {reply}")
        time.sleep(1)
    while True:
        fields = redis_persistence(container, password)
        if fields.get("rdb_bgsave_in_progress") == "0" and redis_saved_since(before, fields):
            if fields.get("rdb_last_bgsave_status") != "ok":
                raise BackupError("Redis BGSAVE failed (rdb_last_bgsave_status is not ok; see the redis logs)")
            break
        if time.monotonic() > deadline:
            raise BackupError(f"Redis BGSAVE did not finish within {timeout} s")
        time.sleep(1)
    directory = redis_cli(container, password, "CONFIG", "GET", "dir").splitlines()[-1]
    filename = redis_cli(container, password, "CONFIG", "GET", "dbfilename").splitlines()[-1]
    target = work / "redis-dump.rdb"
    run_to_file(["docker", "exec", container, "cat", f"{directory}/{filename}"], target, "copy of Redis's dump.rdb")
    manifest["redis"] = {"container": container, "file": target.name}
    log(f"redis: snapshot -> {target.name}, {target.stat().st_size} bytes")


def write_checksums(work: Path) -> None:
    lines = [f"{sha256(path)}  {path.name}\n" for path in sorted(work.iterdir()) if path.name != "SHA256SUMS"]
    fd = os.open(work / "SHA256SUMS", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(lines)


def prune(base: Path, keep: int) -> None:
    sets = sorted(p for p in base.iterdir() if p.is_dir() and SET_NAME.match(p.name))
    for old in sets[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
        log(f"removed the old dump set {old.name}")
    for partial in base.glob(".partial-*"):
        shutil.rmtree(partial, ignore_errors=True)


def notify(cfg: Dict[str, Any], error: str, started: str) -> None:
    """Report a failure besides the exit status and the journal; a notifier that fails is logged, not fatal."""
    host = socket.getfqdn()
    if cfg.get("notify_webhook_url"):
        body = json.dumps({"host": host, "status": "failed", "error": error, "started": started,
                           "source": "borgstack-backup"}).encode()
        request = urllib.request.Request(cfg["notify_webhook_url"], data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the operator's own URL
                log(f"failure reported to the webhook (HTTP {response.status})")
        except OSError as exc:
            print(f"borgstack-backup: the webhook could not be reached: {exc}", file=sys.stderr)
    if cfg.get("notify_email"):
        sendmail = shutil.which("sendmail") or "/usr/sbin/sendmail"
        message = (f"To: {cfg['notify_email']}\nSubject: [BorgStack] backup FAILED on {host}\n\n"
                   f"The backup started at {started} failed:\n\n{error}\n\nSee: journalctl -u borgstack-backup\n")
        try:
            subprocess.run([sendmail, "-t"], input=message.encode(), check=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"borgstack-backup: the failure e-mail could not be sent: {exc}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--config", default="/etc/borgstack/backup.json")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--restore-keys", metavar="FILE", help="replace the live keys of FILE's spaces with FILE's")
    action.add_argument("--check-keys", metavar="FILE", help="load FILE's keys into --redis-container and compare")
    parser.add_argument("--redis-container", help="the scratch Redis (no password) of --check-keys")
    args = parser.parse_args()
    os.umask(0o077)
    if args.restore_keys or args.check_keys:
        if args.check_keys and not args.redis_container:
            parser.error("--check-keys needs --redis-container")
        try:
            cfg = json.loads(Path(args.config).read_text()) if args.restore_keys else {}
        except (OSError, ValueError) as exc:
            print(f"borgstack-backup: cannot read the settings {args.config}: {exc}", file=sys.stderr)
            return 1
        return keys_command(cfg, args.restore_keys or args.check_keys,
                            args.redis_container if args.check_keys else None)
    # Only a backup run is a backup's result: --restore-keys and --check-keys (restore.yml, the drill) write none.
    status = backup(args.config)
    write_metrics(status)
    return status


def backup(config: str) -> int:
    """One dump set under the settings' directory; 0 when it is complete."""
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    try:
        cfg = json.loads(Path(config).read_text())
    except (OSError, ValueError) as exc:
        print(f"borgstack-backup: cannot read the settings {config}: {exc}", file=sys.stderr)
        return 1
    base = Path(cfg["dir"])
    work = base / f".partial-{stamp}"
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        work.mkdir(mode=0o700)
        manifest: Dict[str, Any] = {"created": started.isoformat(), "host": socket.getfqdn(), "format": 1}
        cfg = resolve_containers(cfg)
        dump_postgresql(cfg, work, manifest)
        for unit in cfg.get("redis_key_units", []) if cfg.get("redis_container") else []:
            if unit["service"] not in manifest.get("redis_keys", {}):
                dump_redis_keys(cfg, unit, work, manifest)
        dump_mongodb(cfg, work, manifest)
        dump_redis(cfg, work, manifest)
        fd = os.open(work / "manifest.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(manifest, out, indent=2, sort_keys=True)
        write_checksums(work)
        final = base / stamp
        work.rename(final)
        prune(base, int(cfg.get("keep", 7)))
    except (BackupError, OSError, KeyError, ValueError) as exc:
        shutil.rmtree(work, ignore_errors=True)
        error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BackupError) else str(exc)
        print(f"borgstack-backup: FAILED: {error}", file=sys.stderr)
        notify(cfg, error, started.isoformat())
        return 1
    log(f"dump set {final} complete ({len(list(final.iterdir()))} files)")
    return 0


# The monitoring service's node exporter reads *.prom files here (its textfile directory); nothing is written when
# the directory does not exist (no monitoring).
METRICS = Path(os.environ.get("BORGSTACK_METRICS_DIR", "/var/lib/prometheus/node-exporter")) / "borgstack_backup.prom"


def write_metrics(status: int) -> None:
    """The run's result and time, and the time of the last success (kept from the previous file on a failure)."""
    if not METRICS.parent.is_dir():
        return
    now = int(time.time())
    success = now if status == 0 else 0
    if status != 0 and METRICS.exists():
        found = re.search(r"^borgstack_backup_last_success_timestamp_seconds (\d+)$", METRICS.read_text(), re.M)
        success = int(found.group(1)) if found else 0
    lines = [f"borgstack_backup_last_status {int(status == 0)}", f"borgstack_backup_last_run_timestamp_seconds {now}"]
    if success:
        lines.append(f"borgstack_backup_last_success_timestamp_seconds {success}")
    tmp = METRICS.with_name(".borgstack_backup.prom.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    tmp.replace(METRICS)


if __name__ == "__main__":
    sys.exit(main())
