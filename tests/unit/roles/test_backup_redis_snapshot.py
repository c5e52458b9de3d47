# SPDX-License-Identifier: GPL-3.0-or-later
"""The Redis snapshot of roles/backup/files/borgstack-backup.py (dump_redis) against a stand-in Redis that keeps the
state a real one reports in INFO persistence: one background save at a time, "ERR Background save already in
progress" to a BGSAVE sent while another runs (what stop 32's CI met: Redis' own save rule had started one). The
job waits for that save, starts its own and copies dump.rdb only once its own has finished - counted by rdb_saves,
so a save finishing within the same second as the previous one still counts. The real Redis:
molecule/stack/tests/test_backup.py."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "backup" / "files" / "borgstack-backup.py"
_SPEC = importlib.util.spec_from_file_location("borgstack_backup_redis", SCRIPT)
backup = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(backup)


class FakeRedis:
    """Each INFO read advances a running save by one step; ``busy`` steps of a foreign save are left at the start."""

    def __init__(self, busy: int = 0, steps: int = 2, refuse: str = ""):
        self.running = busy  # steps left of the save in progress (0 = none)
        self.ours = False
        self.saves = 7
        self.last_save_time = 1_700_000_000  # never moves: every save ends "within the same second"
        self.steps, self.refuse = steps, refuse
        self.log = []

    def cli(self, container, password, *args):
        self.log.append(args[0])
        if args[0] == "INFO":
            if self.running:
                self.running -= 1
                if not self.running:
                    self.saves += 1
                    self.ours_done = self.ours
            return (f"# Persistence\r\nrdb_saves:{self.saves}\r\nrdb_bgsave_in_progress:{1 if self.running else 0}\r\n"
                    f"rdb_last_save_time:{self.last_save_time}\r\nrdb_last_bgsave_status:ok\r\n")
        if args[0] == "BGSAVE":
            if self.refuse:
                return self.refuse
            if self.running:
                return "ERR Background save already in progress"
            self.running, self.ours = self.steps, True
            return "Background saving started"
        if args[0] == "CONFIG":
            return f"{args[2]}\n{'/data' if args[2] == 'dir' else 'dump.rdb'}"
        raise AssertionError(args)


@pytest.fixture
def fake(monkeypatch):
    def install(redis: FakeRedis):
        copied = []
        monkeypatch.setattr(backup, "redis_cli", redis.cli)
        monkeypatch.setattr(backup.time, "sleep", lambda s: None)

        def run_to_file(cmd, target, what, stdin=None):  # noqa: ARG001 - the script's signature
            # The copy is taken only once the job's own save has finished.
            copied.append((cmd[-1], redis.ours and not redis.running and getattr(redis, "ours_done", False)))
            target.write_bytes(b"REDIS0011")
        monkeypatch.setattr(backup, "run_to_file", run_to_file)
        return copied
    return install


def test_a_save_already_running_is_waited_for_then_the_jobs_own_save_is_copied(fake, tmp_path):
    redis = FakeRedis(busy=3)
    copied = fake(redis)
    manifest = {}
    backup.dump_redis({"redis_container": "borgstack-redis", "redis_password": "p"}, tmp_path, manifest)
    assert copied == [("/data/dump.rdb", True)]
    assert redis.log.count("BGSAVE") >= 2 and redis.saves == 9
    assert manifest["redis"]["file"] == "redis-dump.rdb"


def test_a_save_in_the_same_second_as_the_last_one_is_seen_finished(fake, tmp_path):
    redis = FakeRedis()
    copied = fake(redis)
    backup.dump_redis({"redis_container": "borgstack-redis", "redis_password": "p"}, tmp_path, {})
    assert copied == [("/data/dump.rdb", True)] and redis.saves == 8


def test_another_refusal_fails_with_redis_own_words(fake, tmp_path):
    fake(FakeRedis(refuse="ERR MISCONF Redis is configured to save RDB snapshots, but it's unable to persist"))
    with pytest.raises(backup.BackupError, match="Redis refused BGSAVE: ERR MISCONF"):
        backup.dump_redis({"redis_container": "borgstack-redis", "redis_password": "p"}, tmp_path, {})


def test_a_foreign_save_that_never_ends_fails_at_the_timeout(fake, tmp_path, monkeypatch):
    fake(FakeRedis(busy=10**9))
    clock = iter(range(0, 10**6, 100))
    monkeypatch.setattr(backup.time, "monotonic", lambda: next(clock))
    with pytest.raises(backup.BackupError, match="still busy with another background save after 300 s"):
        backup.dump_redis({"redis_container": "borgstack-redis", "redis_password": "p"}, tmp_path, {})
