# SPDX-License-Identifier: GPL-3.0-or-later
"""postgresql_dump (the major upgrade's dump) with a fake ``docker exec``: the shell command the module runs is
executed by this test's stand-in, which writes what pg_dump/pg_dumpall would into the redirected file. The real
pg_dump runs in tests/integration/targets/postgresql_upgrade."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.borgstack.stack.plugins.modules import postgresql_dump


class FakeExec:
    """``docker exec <container> pg_dump ... > file``: writes ``outputs[database]`` (or the globals) into the file."""

    def __init__(self, outputs: dict[str | None, bytes], rc: int = 0) -> None:
        self.outputs = outputs
        self.rc = rc
        self.commands: list[str] = []

    def __call__(self, command: str, **_kwargs: Any) -> tuple[int, str, str]:
        self.commands.append(command)
        argv_text, target = command.rsplit(" > ", 1)
        argv = shlex.split(argv_text)
        path = Path(shlex.split(target)[0])
        assert path.stat().st_mode & 0o777 == 0o600, "the file must be root-only before it holds data"
        key = None if "pg_dumpall" in argv else argv[argv.index("-d") + 1]
        path.write_bytes(self.outputs.get(key, b""))
        return (self.rc, "", "pg_dump: error: connection failed" if self.rc else "")


def run(monkeypatch, capsys, fake: FakeExec, check_mode: bool = False, **args: Any) -> dict[str, Any]:
    monkeypatch.setattr(AnsibleModule, "get_bin_path", lambda self, name, *a, **k: "/usr/bin/docker")
    monkeypatch.setattr(AnsibleModule, "run_command", lambda self, command, **kwargs: fake(command, **kwargs))
    params = {"container": "bs-postgresql", "_ansible_check_mode": check_mode, **args}
    with patch_module_args(params), pytest.raises(SystemExit):
        postgresql_dump.main()
    return json.loads(capsys.readouterr().out)


def test_roles_then_each_database_into_root_only_files(monkeypatch, capsys, tmp_path):
    fake = FakeExec({None: b"CREATE ROLE n8n;", "n8n": b"PGDMP n8n", "globals": b"PGDMP a database named globals"})
    out_dir = tmp_path / "upgrade"
    result = run(monkeypatch, capsys, fake, globals=True, databases=["n8n", "globals"], dir=str(out_dir))
    files = [str(out_dir / name) for name in ("globals.sql", "n8n.dump", "globals.dump")]
    assert result["changed"] and result["files"] == files
    assert (out_dir / "globals.sql").read_bytes() == b"CREATE ROLE n8n;"
    assert (out_dir / "globals.dump").read_bytes() == b"PGDMP a database named globals"
    assert out_dir.stat().st_mode & 0o777 == 0o700
    assert all(re.search(r"docker exec bs-postgresql pg_dump(all)? -U postgres", c) for c in fake.commands)
    assert "--globals-only" in fake.commands[0] and "-Fc -d n8n" in fake.commands[1]


def test_an_empty_dump_stops_the_run_and_leaves_no_file(monkeypatch, capsys, tmp_path):
    fake = FakeExec({"n8n": b"PGDMP n8n"})  # directus's dump comes out empty
    result = run(monkeypatch, capsys, fake, databases=["n8n", "directus", "other"], dir=str(tmp_path))
    assert result["failed"] and "the database directus" in result["msg"] and "pg_dump wrote nothing" in result["msg"]
    assert result["files"] == [str(tmp_path / "n8n.dump")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n8n.dump"]


def test_a_failed_dump_says_pg_dumps_words(monkeypatch, capsys, tmp_path):
    fake = FakeExec({None: b"CREATE ROLE x;"}, rc=1)
    result = run(monkeypatch, capsys, fake, globals=True, dir=str(tmp_path))
    assert result["failed"] and "the roles" in result["msg"] and "connection failed" in result["msg"]
    assert not list(tmp_path.iterdir())


def test_check_mode_dumps_nothing(monkeypatch, capsys, tmp_path):
    fake = FakeExec({"n8n": b"PGDMP"})
    result = run(monkeypatch, capsys, fake, check_mode=True, databases=["n8n"], dir=str(tmp_path / "new"))
    assert result["changed"] and result["files"] == [str(tmp_path / "new" / "n8n.dump")]
    assert fake.commands == [] and not (tmp_path / "new").exists()


# --- The pre-update dump of a swarm update (update: the same PgDump.dump_rotated as compose_deploy's) ----------------
def test_a_pre_update_dump_is_rotated_and_root_only(monkeypatch, capsys, tmp_path):
    out_dir = tmp_path / "updates"
    out_dir.mkdir(mode=0o755)
    # Three older dumps of n8n and one of directus: keep 2 of n8n's (the new one and the newest old one).
    for name in ("n8n-20261201T000000Z.dump", "n8n-20261202T000000Z.dump", "n8n-20261203T000000Z.dump",
                 "directus-20261201T000000Z.dump"):
        (out_dir / name).write_bytes(b"old")
    fake = FakeExec({"n8n": b"PGDMP n8n"})
    result = run(monkeypatch, capsys, fake, dir=str(out_dir), update={"database": "n8n", "name": "n8n", "keep": 2})
    assert result["changed"] and result["files"] == [result["dump"]]
    dump = Path(result["dump"])
    assert dump.parent == out_dir and re.fullmatch(r"n8n-\d{8}T\d{6}Z\.dump", dump.name)
    assert dump.read_bytes() == b"PGDMP n8n" and dump.stat().st_mode & 0o777 == 0o600
    assert out_dir.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["directus-20261201T000000Z.dump", "n8n-20261203T000000Z.dump", dump.name])
    assert len(fake.commands) == 1 and "docker exec bs-postgresql pg_dump -U postgres -Fc -d n8n" in fake.commands[0]


def test_an_empty_pre_update_dump_fails_before_the_update(monkeypatch, capsys, tmp_path):
    result = run(monkeypatch, capsys, FakeExec({}), dir=str(tmp_path),
                 update={"database": "n8n", "name": "n8n", "keep": 3})
    assert result["failed"] and "the pre-update dump of the database n8n" in result["msg"]
    assert "so nothing was updated" in result["msg"] and "pg_dump wrote nothing" in result["msg"]
    assert not list(tmp_path.iterdir())


def test_check_mode_takes_no_pre_update_dump(monkeypatch, capsys, tmp_path):
    fake = FakeExec({"n8n": b"PGDMP"})
    result = run(monkeypatch, capsys, fake, check_mode=True, dir=str(tmp_path / "new"),
                 update={"database": "n8n", "name": "n8n"})
    assert result["changed"] and "would be dumped" in result["msg"]
    assert fake.commands == [] and not (tmp_path / "new").exists()


def test_a_pre_update_dump_is_one_database_only(monkeypatch, capsys, tmp_path):
    result = run(monkeypatch, capsys, FakeExec({}), dir=str(tmp_path), databases=["n8n"],
                 update={"database": "n8n", "name": "n8n"})
    assert result["failed"] and "mutually exclusive" in result["msg"]


# --- A dump put back after the swarm rolled an update back (restore: the same PgDump.restore as compose_deploy's) ---
class FakeRestore:
    """``docker exec -i <container> psql ...`` (argv, SQL on stdin) and ``docker exec -i ... pg_restore ... < file``
    (a shell line): records both; ``restore_rc`` is pg_restore's exit code."""

    def __init__(self, restore_rc: int = 0) -> None:
        self.restore_rc = restore_rc
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, command: Any, **kwargs: Any) -> tuple[int, str, str]:
        if isinstance(command, list):
            self.calls.append((" ".join(command), kwargs.get("data")))
            return 0, "", ""
        self.calls.append((command, None))
        return (self.restore_rc, "", "pg_restore: error: could not execute query" if self.restore_rc else "")


def test_a_restore_refuses_new_sessions_ends_the_open_ones_then_pg_restore_recreates(monkeypatch, capsys, tmp_path):
    dump = tmp_path / "n8n-20261207T080000Z.dump"
    dump.write_bytes(b"PGDMP")
    fake = FakeRestore()
    result = run(monkeypatch, capsys, fake, dir=str(tmp_path), restore={"database": "n8n", "path": str(dump)})
    assert result["changed"] and result["restored"] == str(dump)
    (psql, sql), (restore, _none) = fake.calls
    assert "exec -i bs-postgresql psql -U postgres -d postgres" in psql and "db=n8n" in psql
    # Refused first (the swarm's rolled-back tasks reconnect at once), then ended, in that order.
    assert sql.index('ALTER DATABASE :"db" ALLOW_CONNECTIONS false') < sql.index("pg_terminate_backend")
    assert "pg_restore -U postgres --clean --if-exists --create --exit-on-error -d postgres" in restore
    assert restore.endswith(f"< {dump}")


def test_a_failed_restore_says_pg_restores_words_and_allows_sessions_again(monkeypatch, capsys, tmp_path):
    dump = tmp_path / "n8n.dump"
    dump.write_bytes(b"PGDMP")
    fake = FakeRestore(restore_rc=1)
    result = run(monkeypatch, capsys, fake, dir=str(tmp_path), restore={"database": "n8n", "path": str(dump)})
    assert result["failed"] and "the restore of the database n8n" in result["msg"]
    assert "could not execute query" in result["msg"]
    assert 'ALLOW_CONNECTIONS true' in (fake.calls[-1][1] or ""), fake.calls


def test_a_restore_from_a_missing_dump_touches_nothing(monkeypatch, capsys, tmp_path):
    fake = FakeRestore()
    result = run(monkeypatch, capsys, fake, dir=str(tmp_path),
                 restore={"database": "n8n", "path": str(tmp_path / "none.dump")})
    assert result["failed"] and "does not exist: nothing was restored" in result["msg"] and fake.calls == []


def test_check_mode_restores_nothing(monkeypatch, capsys, tmp_path):
    dump = tmp_path / "n8n.dump"
    dump.write_bytes(b"PGDMP")
    fake = FakeRestore()
    result = run(monkeypatch, capsys, fake, check_mode=True, dir=str(tmp_path),
                 restore={"database": "n8n", "path": str(dump)})
    assert result["changed"] and "would be restored" in result["msg"] and fake.calls == []
