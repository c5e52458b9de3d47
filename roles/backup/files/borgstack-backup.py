# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by the borgstack.stack.backup role: do not edit here (Ansible overwrites it).
"""BorgStack backup: one consistent dump set of the stack's databases, taken through their containers.

Reads its settings (containers, databases, passwords) from a root-only JSON file - never from its command line - and
writes <dir>/<UTC time>/ (0700): postgresql-globals.sql (pg_dumpall --globals-only), postgresql-<service>.dump
(pg_dump -Fc of each tenant), mongodb-<service>.archive.gz (mongodump --archive --gzip), redis-dump.rdb (after a
BGSAVE), manifest.json and SHA256SUMS. The set is written under a hidden name and renamed when complete, so a set
that exists is whole. Then the oldest sets beyond `keep` are deleted. Any failure: a message on stderr (the
journal), a webhook POST and/or an e-mail when configured, exit status 1.

Usage: borgstack-backup [--config PATH]
"""
from __future__ import annotations

import argparse
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
from typing import Any, Dict, List, Optional

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


def dump_postgresql(cfg: Dict[str, Any], work: Path, manifest: Dict[str, Any]) -> None:
    container = cfg.get("postgresql_container")
    if not container:
        return
    # Local connections inside the container (its unix socket, trust for local users): no password involved.
    run_to_file(["docker", "exec", container, "pg_dumpall", "-U", "postgres", "--globals-only"],
                work / "postgresql-globals.sql", "pg_dumpall --globals-only")
    manifest["postgresql"] = {"container": container, "globals": "postgresql-globals.sql", "tenants": {}}
    for tenant in cfg.get("postgres_tenants", []):
        name, database = tenant["name"], tenant["database"]
        target = work / f"postgresql-{name}.dump"
        run_to_file(["docker", "exec", container, "pg_dump", "-U", "postgres", "-Fc", "-d", database], target,
                    f"pg_dump of {database} (service {name})")
        manifest["postgresql"]["tenants"][name] = {"database": database, "file": target.name}
        log(f"postgresql: {database} ({name}) -> {target.name}, {target.stat().st_size} bytes")


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


def dump_redis(cfg: Dict[str, Any], work: Path, manifest: Dict[str, Any]) -> None:
    container = cfg.get("redis_container")
    if not container:
        return
    password = cfg.get("redis_password", "")
    before = int(redis_cli(container, password, "LASTSAVE"))
    reply = redis_cli(container, password, "BGSAVE")
    if "started" not in reply.lower() and "scheduled" not in reply.lower():
        raise BackupError(f"Redis refused BGSAVE: {reply}")
    deadline = time.monotonic() + int(cfg.get("redis_timeout", 300))
    while True:
        info = redis_cli(container, password, "INFO", "persistence")
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        done = (fields.get("rdb_bgsave_in_progress", "").strip() == "0"
                and int(redis_cli(container, password, "LASTSAVE")) > before)
        if done:
            if fields.get("rdb_last_bgsave_status", "").strip() != "ok":
                raise BackupError("Redis BGSAVE failed (rdb_last_bgsave_status is not ok; see the redis logs)")
            break
        if time.monotonic() > deadline:
            raise BackupError(f"Redis BGSAVE did not finish within {cfg.get('redis_timeout', 300)} s")
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
    args = parser.parse_args()
    os.umask(0o077)
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    try:
        cfg = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as exc:
        print(f"borgstack-backup: cannot read the settings {args.config}: {exc}", file=sys.stderr)
        return 1
    base = Path(cfg["dir"])
    work = base / f".partial-{stamp}"
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        work.mkdir(mode=0o700)
        manifest: Dict[str, Any] = {"created": started.isoformat(), "host": socket.getfqdn(), "format": 1}
        dump_postgresql(cfg, work, manifest)
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
    RESULT = main()
    write_metrics(RESULT)
    sys.exit(RESULT)
