# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup script's textfile metrics (read by the monitoring service's node exporter): a backup run writes its
result, and keeps the last success's time on a failure; --restore-keys and --check-keys (restore.yml and the drill
call them) are not backups and write nothing - a drill must never make a failed or stale backup look fresh."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "backup" / "files" / "borgstack-backup.py"
_SPEC = importlib.util.spec_from_file_location("borgstack_backup_metrics", SCRIPT)
backup = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(backup)


@pytest.fixture
def metrics(tmp_path, monkeypatch):
    path = tmp_path / "borgstack_backup.prom"
    monkeypatch.setattr(backup, "METRICS", path)
    return path


def _values(path: Path) -> dict:
    return {line.split()[0]: int(line.split()[1]) for line in path.read_text().splitlines()}


def test_a_backup_run_writes_its_result(metrics, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["borgstack-backup", "--config", "/nonexistent.json"])
    monkeypatch.setattr(backup, "backup", lambda config: 0)
    assert backup.main() == 0
    first = _values(metrics)
    assert first["borgstack_backup_last_status"] == 1
    success = first["borgstack_backup_last_success_timestamp_seconds"]
    assert success == first["borgstack_backup_last_run_timestamp_seconds"]
    monkeypatch.setattr(backup, "backup", lambda config: 1)
    assert backup.main() == 1
    failed = _values(metrics)
    assert failed["borgstack_backup_last_status"] == 0
    assert failed["borgstack_backup_last_success_timestamp_seconds"] == success


@pytest.mark.parametrize("argv", [["--restore-keys", "set.keys.json"],
                                  ["--check-keys", "set.keys.json", "--redis-container", "scratch"]])
def test_key_commands_write_no_backup_result(metrics, monkeypatch, argv, tmp_path):
    config = tmp_path / "backup.json"
    config.write_text("{}")
    monkeypatch.setattr(sys, "argv", ["borgstack-backup", "--config", str(config), *argv])
    monkeypatch.setattr(backup, "keys_command", lambda cfg, path, container: 0)
    monkeypatch.setattr(backup, "backup", lambda config: pytest.fail("a key command ran a backup"))
    assert backup.main() == 0
    assert not metrics.exists()
