# SPDX-License-Identifier: GPL-3.0-or-later
"""The nightly dumps on the lab cluster (roles/backup on a swarm): the job is installed only on the node holding
PostgreSQL and Redis (the first node of the scenario), and the other nodes have no timer, no script and no settings;
started by hand there (`systemctl start borgstack-backup.service`, the unit the timer starts), it finds the
PostgreSQL and Redis tasks of the swarm services on its own node and writes a whole dump set: every file its manifest
names, SHA256SUMS over every file (checked with sha256sum -c on the node), each tenant's dump read by pg_restore
--list (a table of contents with tables), the Redis snapshot an RDB file. A few seconds.

What did not run here, and why: MongoDB (no image in the lab; its dumps go through the same lookup of the task, on
the same node); the Redis keys of a service's state (only Evolution API has them, and it has no image here: the
namespace connection is unit-tested in tests/unit/roles/test_backup_swarm_tasks.py); restore.yml and the drill,
which are refused on a cluster (tests/unit/roles/test_backup_cluster.py). The rerun's changed=0 is molecule's
idempotence step.
"""
from __future__ import annotations

import json
import os
import subprocess

NODES = dict(item.split("=", 1) for item in os.environ.get(
    "BORGSTACK_CLUSTER_NODES",
    "borgstack-swarm-1=198.51.100.47,borgstack-swarm-2=198.51.100.48,borgstack-swarm-3=198.51.100.49").split(","))
DATA, OTHERS = list(NODES)[0], list(NODES)[1:]
BACKUP_DIR = "/var/backups/borgstack"


def sh(node: str, *argv: str, check: bool = True, timeout: int = 120, stdin: bytes | None = None):
    return subprocess.run(["docker", "exec", "-i", node, *argv], capture_output=True, timeout=timeout, check=check,
                          input=stdin)


def test_only_the_data_node_has_the_backup_job():
    assert sh(DATA, "systemctl", "is-enabled", "borgstack-backup.timer").stdout.decode().strip() == "enabled"
    assert sh(DATA, "systemctl", "is-active", "borgstack-backup.timer").stdout.decode().strip() == "active"
    settings = json.loads(sh(DATA, "cat", "/etc/borgstack/backup.json").stdout)
    assert settings["postgresql_swarm_service"] == "borgstack_postgresql"
    assert settings["redis_swarm_service"] == "borgstack_redis"
    for node in OTHERS:
        for path in ("/etc/systemd/system/borgstack-backup.timer", "/etc/systemd/system/borgstack-backup.service",
                     "/usr/local/sbin/borgstack-backup", "/etc/borgstack/backup.json"):
            assert sh(node, "test", "-e", path, check=False).returncode == 1, f"{path} on {node}"
        assert sh(node, "systemctl", "is-active", "borgstack-backup.timer", check=False).stdout.decode().strip() in (
            "inactive", "unknown")


def test_the_job_takes_a_whole_dump_set_through_the_swarm_tasks_on_its_node():
    before = set(sh(DATA, "ls", BACKUP_DIR).stdout.decode().split())
    run = sh(DATA, "systemctl", "start", "borgstack-backup.service", check=False, timeout=300)
    journal = sh(DATA, "journalctl", "--no-pager", "-o", "cat", "-n", "30", "-u", "borgstack-backup.service",
                 check=False).stdout.decode()
    assert run.returncode == 0, journal
    new = sorted(set(sh(DATA, "ls", BACKUP_DIR).stdout.decode().split()) - before)
    assert len(new) == 1, (new, journal)
    path = f"{BACKUP_DIR}/{new[0]}"
    assert sh(DATA, "stat", "-c", "%a", path).stdout.decode().strip() == "700"
    manifest = json.loads(sh(DATA, "cat", f"{path}/manifest.json").stdout)
    # The containers it dumped through are the swarm tasks (<stack>_<service>.<slot>.<id>), not single-host names.
    assert manifest["postgresql"]["container"].startswith("borgstack_postgresql.1.")
    assert manifest["redis"]["container"].startswith("borgstack_redis.1.")
    tenants = manifest["postgresql"]["tenants"]
    assert "n8n" in tenants, tenants
    expected = {"manifest.json", "SHA256SUMS", manifest["postgresql"]["globals"], manifest["redis"]["file"]}
    for tenant in tenants.values():
        expected |= {tenant["file"], tenant["tables"]}
    files = set(sh(DATA, "ls", path).stdout.decode().split())
    assert files == expected, files ^ expected
    sums = sh(DATA, "sh", "-c", f"cd {path} && sha256sum -c SHA256SUMS", check=False)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sorted(line.split()[1] for line in sh(DATA, "cat", f"{path}/SHA256SUMS").stdout.decode().splitlines()) \
        == sorted(expected - {"SHA256SUMS"})
    assert sh(DATA, "head", "-c", "5", f"{path}/redis-dump.rdb").stdout == b"REDIS"
    task = sh(DATA, "docker", "ps", "--filter", "label=com.docker.swarm.service.name=borgstack_postgresql",
              "--format", "{{.Names}}").stdout.decode().split()
    assert len(task) == 1, task
    for name, tenant in tenants.items():
        dump = sh(DATA, "cat", f"{path}/{tenant['file']}").stdout
        listing = sh(DATA, "docker", "exec", "-i", task[0], "pg_restore", "--list", stdin=dump, check=False)
        assert listing.returncode == 0, (name, listing.stderr)
        assert " TABLE " in listing.stdout.decode(), (name, listing.stdout[:500])
