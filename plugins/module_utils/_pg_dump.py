# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dump and restore one PostgreSQL database through its container (``docker exec``, as ``postgres``).

``PgDump`` writes ``pg_dump -Fc`` into a root-only file (0600 before it holds data; an empty or failed dump is
removed and refused), keeps the newest dumps of a name in a root-only directory (``dump_rotated``) and puts a dump
back (``restore``: the database's sessions ended, then ``pg_restore --clean --create``, owner and grants as
dumped). It needs only ``run_command`` (an AnsibleModule's) and the docker CLI, so any module that dumps a tenant's
database can use it; failures raise ``PgDumpError`` for the caller to word.
"""
from __future__ import annotations

import os
import re
import shlex
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

# Ends every other session of the database named by the psql variable ``db`` (pg_restore --clean drops it).
END_SESSIONS_SQL = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :'db' AND pid <> pg_backend_pid();")
# Before ending them while its clients still run (a swarm's rolled-back tasks reconnect at once): no new session
# until pg_restore --create recreates the database (a new one allows connections again).
REFUSE_SESSIONS_SQL = "ALTER DATABASE :\"db\" ALLOW_CONNECTIONS false;"
ALLOW_SESSIONS_SQL = "ALTER DATABASE :\"db\" ALLOW_CONNECTIONS true;"


class PgDumpError(Exception):
    """A dump or a restore that failed; the message says why (pg_dump's or pg_restore's own words)."""


def dump_name(service: str, stamp: str) -> str:
    """File name of a pre-update dump: ``<service>-<UTC time>.dump``."""
    return f"{service}-{stamp}.dump"


def dumps_to_prune(names: Sequence[str], service: str, keep: int) -> List[str]:
    """The oldest pre-update dumps of ``service`` beyond the newest ``keep`` (names sort by their UTC time)."""
    pattern = re.compile(rf"^{re.escape(service)}-\d{{8}}T\d{{6}}Z\.dump$")
    mine = sorted(name for name in names if pattern.match(name))
    return mine[:-keep] if keep > 0 else mine


def _shell(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(part) for part in argv)


class PgDump:
    """One PostgreSQL container, reached with ``docker exec`` (``docker``: the CLI's path).

    ``commands`` receives a readable line for each dump or restore; ``run_docker(*args, data=...)`` runs a plain
    ``docker`` command (recording it, raising on failure) - the caller's own runner, needed by ``restore`` only.
    """

    def __init__(self, module: Any, docker: str, container: str, commands: List[str],
                 run_docker: Optional[Callable[..., Tuple[int, str, str]]]) -> None:
        self.module = module
        self.docker = docker
        self.container = container
        self.commands = commands
        self.run_docker = run_docker

    def dump(self, database: str, path: str) -> None:
        """``pg_dump -Fc`` of ``database`` into ``path`` (created 0600 first); PgDumpError when pg_dump fails or
        writes nothing, and then no file is left."""
        self._write(["pg_dump", "-U", "postgres", "-Fc", "-d", database], path, f"pg_dump -Fc -d {database}")

    def dump_globals(self, path: str) -> None:
        """``pg_dumpall --globals-only`` (roles with their passwords, tablespaces) into ``path``, as ``dump`` does."""
        self._write(["pg_dumpall", "-U", "postgres", "--globals-only"], path, "pg_dumpall --globals-only")

    def _write(self, argv: List[str], path: str, shown: str) -> None:
        """The output of ``argv`` run in the container into ``path``, root-only before it holds data; a failed or
        empty output is refused and no file is left."""
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # root-only before it holds data
        command = _shell([self.docker, "exec", self.container, *argv])
        self.commands.append(f"docker exec {self.container} {shown} > {path}")
        rc, _out, err = self.module.run_command(f"{command} > {shlex.quote(path)}", use_unsafe_shell=True)
        if rc != 0 or os.path.getsize(path) == 0:
            os.unlink(path)
            raise PgDumpError(err.strip() or f"{argv[0]} wrote nothing")

    def dump_rotated(self, database: str, directory: str, name: str, keep: int) -> str:
        """A new dump ``<name>-<UTC time>.dump`` in ``directory`` (made root-only); the oldest dumps of ``name``
        beyond ``keep`` are deleted afterwards. Returns the new dump's path."""
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = os.path.join(directory, dump_name(name, stamp))
        self.dump(database, path)
        for old in dumps_to_prune(os.listdir(directory), name, keep):
            os.unlink(os.path.join(directory, old))
        return path

    def restore(self, database: str, path: str, refuse_sessions: bool = False) -> None:
        """The dump at ``path`` back in place of ``database``: its other sessions ended, then ``pg_restore --clean
        --create`` (drops and recreates it, owner and grants as dumped). ``refuse_sessions``: while its clients
        still run, the database first refuses new sessions (allowed again if pg_restore fails)."""
        self._psql(database, (REFUSE_SESSIONS_SQL if refuse_sessions else "") + END_SESSIONS_SQL)
        command = _shell([self.docker, "exec", "-i", self.container, "pg_restore", "-U", "postgres", "--clean",
                          "--if-exists", "--create", "--exit-on-error", "-d", "postgres"])
        self.commands.append(f"docker exec -i {self.container} pg_restore --clean --create < {path}")
        rc, out, err = self.module.run_command(f"{command} < {shlex.quote(path)}", use_unsafe_shell=True)
        if rc != 0:
            if refuse_sessions:
                self._psql(database, ALLOW_SESSIONS_SQL, check=False)
            raise PgDumpError(f"pg_restore of {path} into {database} failed: {err.strip() or out.strip()}")

    def _psql(self, database: str, sql: str, check: bool = True) -> None:
        """``sql`` run by psql in the ``postgres`` database, ``database`` as its variable ``db``."""
        argv = ("exec", "-i", self.container, "psql", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                "-v", f"db={database}", "-q", "-f", "-")
        if check:
            self.run_docker(*argv, data=sql)
        else:
            self.run_docker(*argv, data=sql, check=False)
