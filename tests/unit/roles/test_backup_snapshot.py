# SPDX-License-Identifier: GPL-3.0-or-later
"""The PostgreSQL half of roles/backup/files/borgstack-backup.py: each tenant is dumped inside a snapshot a psql
session exports (pg_dump --snapshot), and the table figures the restore drill compares with are taken in that same
snapshot, after the dump, before the session ends. Against a stand-in for the psql session (the real PostgreSQL
runs in molecule/stack/tests/test_backup.py, whose drill compares a restored dump with these figures)."""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import List

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "backup" / "files" / "borgstack-backup.py"
SQL = (SCRIPT.parent / "table_checksums.sql").read_text()
_SPEC = importlib.util.spec_from_file_location("borgstack_backup_snapshot", SCRIPT)
backup = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(backup)

SNAPSHOT = "00000031-00000003-1"
FIGURES = "public.notes|5|-1234567890\npublic.empty|0|0\n"


class FakePsql:
    """One psql session: answers the snapshot export with ``exported``, then ``figures`` and ``rc`` at the end."""

    def __init__(self, events: List[str], exported: str = SNAPSHOT + "\n", figures: str = FIGURES, rc: int = 0,
                 err: str = "") -> None:
        self.events, self.figures, self.rc, self.err = events, figures, rc, err
        self.stdin = io.StringIO()
        self.stdout = io.StringIO(exported)
        self.returncode = None
        self.sent_at_end = ""

    def __call__(self, cmd, **_kwargs):
        self.events.append("psql " + " ".join(cmd[cmd.index("-d") + 1:]))
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def poll(self):
        return self.returncode

    def kill(self):
        self.events.append("killed")
        self.returncode = -9

    def communicate(self, text: str = ""):
        if self.returncode == -9:
            return "", self.err
        self.sent_at_end = text
        self.events.append("figures")
        self.returncode = self.rc
        return (self.figures if self.rc == 0 else ""), self.err


def test_the_dump_runs_inside_the_exported_snapshot_and_the_figures_after_it_in_the_same_session(monkeypatch):
    events: List[str] = []
    psql = FakePsql(events)
    monkeypatch.setattr(backup.subprocess, "Popen", psql)
    lines = backup.in_one_snapshot("pg", "directus", SQL, lambda snap: events.append(f"dump {snap}"))
    assert events == ["psql directus", f"dump {SNAPSHOT}", "figures"]
    assert "REPEATABLE READ" in psql.stdin.getvalue() and "pg_export_snapshot()" in psql.stdin.getvalue()
    # The figures' SQL and the end of the transaction go to the same session, after the dump.
    assert psql.sent_at_end.startswith(SQL) and psql.sent_at_end.rstrip().endswith("COMMIT;")
    assert lines == ["public.notes|5|-1234567890", "public.empty|0|0"]


def test_no_snapshot_no_dump(monkeypatch):
    events: List[str] = []
    monkeypatch.setattr(backup.subprocess, "Popen", FakePsql(events, exported="", err='database "x" does not exist'))
    with pytest.raises(backup.BackupError, match="exported no snapshot.*does not exist"):
        backup.in_one_snapshot("pg", "x", SQL, lambda snap: events.append("dump"))
    assert "dump" not in events and "killed" in events


def test_a_failing_dump_ends_the_session_and_fails_the_backup(monkeypatch):
    events: List[str] = []
    monkeypatch.setattr(backup.subprocess, "Popen", FakePsql(events))

    def dump(_snap: str) -> None:
        raise backup.BackupError("pg_dump of directus failed (exit 1): boom")

    with pytest.raises(backup.BackupError, match="pg_dump of directus failed"):
        backup.in_one_snapshot("pg", "directus", SQL, dump)
    assert events[-1] == "killed" and "figures" not in events


@pytest.mark.parametrize("psql, message", [
    (dict(rc=3, err="ERROR: permission denied"), "table figures of directus failed .exit 3.: ERROR: permission"),
    (dict(figures="garbage\n"), "are not <table>|<rows>|<checksum> lines"),
])
def test_figures_that_fail_or_make_no_sense_fail_the_backup(monkeypatch, psql, message):
    monkeypatch.setattr(backup.subprocess, "Popen", FakePsql([], **psql))
    with pytest.raises(backup.BackupError, match=message):
        backup.in_one_snapshot("pg", "directus", SQL, lambda snap: None)


def test_settings_without_the_figures_sql_are_refused_before_any_session(monkeypatch):
    events: List[str] = []
    monkeypatch.setattr(backup.subprocess, "Popen", FakePsql(events))
    with pytest.raises(backup.BackupError, match="table_figures_sql"):
        backup.in_one_snapshot("pg", "directus", " \n", lambda snap: None)
    assert not events


def test_each_tenant_gets_its_dump_its_figures_and_both_in_the_manifest(monkeypatch, tmp_path):
    events: List[str] = []
    monkeypatch.setattr(backup.subprocess, "Popen", FakePsql(events))
    commands: List[List[str]] = []

    def run_to_file(cmd, target, what, **_kwargs):
        commands.append(cmd)
        target.write_bytes(b"dump")

    monkeypatch.setattr(backup, "run_to_file", run_to_file)
    manifest: dict = {}
    cfg = {"postgresql_container": "pg", "postgres_tenants": [{"name": "directus", "database": "directus"}],
           "table_figures_sql": SQL}
    backup.dump_postgresql(cfg, tmp_path, manifest)
    assert ["docker", "exec", "pg", "pg_dump", "-U", "postgres", "-Fc", f"--snapshot={SNAPSHOT}", "-d",
            "directus"] in commands
    assert manifest["postgresql"]["tenants"]["directus"] == {
        "database": "directus", "file": "postgresql-directus.dump", "tables": "postgresql-directus.tables"}
    assert (tmp_path / "postgresql-directus.tables").read_text() == FIGURES
    assert (tmp_path / "postgresql-directus.tables").stat().st_mode & 0o777 == 0o600
    json.dumps(manifest)


def test_the_checksum_needs_no_sort_and_no_concatenation():
    """The nightly backup takes the figures on the live database: per table a count and a sum of per-row hashes,
    constant memory (no string_agg of the whole table, no ORDER BY of its rows)."""
    generated = SQL.split("format(", 1)[1].split("FROM pg_class", 1)[0]
    assert "count(*)" in generated and "sum(" in generated and "md5(t::text)" in generated
    assert "string_agg" not in generated and "ORDER BY t" not in generated
