# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the borgstack.stack.postgresql_tenant module without a database.

What is exercised: ``TenantManager``'s read -> plan -> apply against ``FakeServer``, an in-memory stand-in for the
few catalogs the module reads (pg_authid, pg_database and its ACL, pg_extension, pg_namespace) that also carries
out the handful of statements the module writes, with transactions that really roll back. The seam is
``TenantManager._connect``: everything above it (SQL composition with psycopg.sql, the decisions, check mode,
the result) is the module's own code. ``main()`` runs once end to end with the same fake.

What is NOT exercised here: that PostgreSQL accepts these statements and catalog queries, and that it computes
the same SCRAM verifier (tests/integration/targets/postgresql_tenant does that against a real server).
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.borgstack.stack.plugins.module_utils._postgresql import (
    TenantManager,
    postgresql_tenant_module_kwargs,
    scram_sha256_matches,
    scram_sha256_verifier,
)
from ansible_collections.borgstack.stack.plugins.modules import postgresql_tenant

SECRET = "tenant-Secret-pw-1"
OTHER_SECRET = "someone-else-changed-it"
PUBLIC = 0
FLAGS = ("rolcanlogin", "rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication", "rolbypassrls")
KEYWORDS = {"LOGIN": "rolcanlogin", "SUPERUSER": "rolsuper", "CREATEDB": "rolcreatedb",
            "CREATEROLE": "rolcreaterole", "REPLICATION": "rolreplication", "BYPASSRLS": "rolbypassrls"}

CREATE_QUERIES = [
    'CREATE ROLE "app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
    "CONNECTION LIMIT -1 PASSWORD %s",
    'CREATE DATABASE "app" OWNER "app"',
    'REVOKE CONNECT, TEMPORARY ON DATABASE "app" FROM PUBLIC',
    'CREATE EXTENSION IF NOT EXISTS "vector" CASCADE',
    'ALTER SCHEMA public OWNER TO "app"',
]
ALTER_PASSWORD = ['ALTER ROLE "app" WITH PASSWORD %s']


# --------------------------------------------------------------------------------------------------------------
# Fake server
# --------------------------------------------------------------------------------------------------------------
class FakeServer:
    """The catalogs the module reads, changed only by the statements it writes.

    ``committed`` lists write statements that took effect (as SQL text); ``tried`` lists every write statement
    executed, including those later rolled back.
    """

    def __init__(self) -> None:
        self.roles: dict[str, dict[str, Any]] = {"postgres": self._role_row(16000, rolsuper=True)}
        self.databases: dict[str, dict[str, Any]] = {"postgres": self._database_row(16000)}
        self.available_extensions = {"vector", "pg_trgm", "pgcrypto", "plpgsql"}
        self.server_version = 170000
        self.committed: list[str] = []
        self.tried: list[str] = []
        self._next_oid = 16384

    @staticmethod
    def _role_row(oid: int, **values: Any) -> dict[str, Any]:
        row: dict[str, Any] = dict.fromkeys(FLAGS, False)
        row.update(oid=oid, rolconnlimit=-1, rolpassword=None)
        row.update(values)
        return row

    @staticmethod
    def _database_row(owner_oid: int) -> dict[str, Any]:
        # acldefault('d', owner): the owner has everything, PUBLIC has CONNECT and TEMPORARY.
        acl = {(owner_oid, "CONNECT"), (owner_oid, "TEMPORARY"), (owner_oid, "CREATE"),
               (PUBLIC, "CONNECT"), (PUBLIC, "TEMPORARY")}
        return {"owner_oid": owner_oid, "acl": acl, "extensions": {"plpgsql"}, "schema_owner": "pg_database_owner"}

    def add_role(self, name: str, password: str | None = SECRET, **values: Any) -> dict[str, Any]:
        self._next_oid += 1
        verifier = scram_sha256_verifier(password) if password is not None else None
        self.roles[name] = self._role_row(self._next_oid, rolcanlogin=True, rolpassword=verifier, **values)
        return self.roles[name]

    def role_name(self, oid: int) -> str:
        return next(name for name, row in self.roles.items() if row["oid"] == oid)

    def snapshot(self) -> tuple[Any, ...]:
        return copy.deepcopy((self.roles, self.databases, self.committed, self._next_oid))

    def restore(self, state: tuple[Any, ...]) -> None:
        self.roles, self.databases, self.committed, self._next_oid = state

    # ------------------------------------------------------------------------------------------------ reads
    def read(self, dbname: str, query: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if "WHERE rolname = current_user" in query:
            return [(True,)]
        if "FROM pg_authid" in query:
            row = self.roles.get(args[0])
            return [tuple(row[flag] for flag in FLAGS) + (row["rolconnlimit"], row["rolpassword"])] if row else []
        if "SELECT oid FROM pg_roles" in query:
            return [(self.roles[args[0]]["oid"],)] if args[0] in self.roles else []
        if "aclexplode" in query:
            return sorted(self.databases[args[0]]["acl"])
        if "FROM pg_database" in query:
            db = self.databases.get(args[0])
            return [(self.role_name(db["owner_oid"]),)] if db else []
        if "pg_available_extensions" in query:
            return [(name,) for name in args[0] if name in self.available_extensions]
        if "FROM pg_extension" in query:
            return [(name,) for name in sorted(self.databases[dbname]["extensions"])]
        if "FROM pg_namespace" in query:
            owner = self.databases[dbname]["schema_owner"]
            return [(owner,)] if owner else []
        raise AssertionError(f"unexpected query: {query}")

    # ----------------------------------------------------------------------------------------------- writes
    def write(self, dbname: str, statement: str, in_transaction: bool) -> None:
        self.tried.append(statement)
        match = re.fullmatch(r'CREATE ROLE "(\w+)" WITH (.*)', statement)
        if match:
            self._next_oid += 1
            self.roles[match[1]] = self._role_row(self._next_oid)
            self._set_role_options(match[1], match[2])
        elif match := re.fullmatch(r'ALTER ROLE "(\w+)" WITH (.*)', statement):
            self._set_role_options(match[1], match[2])
        elif match := re.fullmatch(r'(CREATE|DROP) DATABASE "(\w+)"(?: OWNER "(\w+)")?', statement):
            assert not in_transaction, f"{statement} cannot run inside a transaction block"
            if match[1] == "CREATE":
                self.databases[match[2]] = self._database_row(self.roles[match[3]]["oid"])
            else:
                del self.databases[match[2]]
        elif match := re.fullmatch(r'ALTER DATABASE "(\w+)" OWNER TO "(\w+)"', statement):
            self.databases[match[1]]["owner_oid"] = self.roles[match[2]]["oid"]
        elif match := re.fullmatch(r'REVOKE CONNECT, TEMPORARY ON DATABASE "(\w+)" FROM PUBLIC', statement):
            self.databases[match[1]]["acl"] -= {(PUBLIC, "CONNECT"), (PUBLIC, "TEMPORARY")}
        elif match := re.fullmatch(r'GRANT CONNECT ON DATABASE "(\w+)" TO "(\w+)"', statement):
            self.databases[match[1]]["acl"].add((self.roles[match[2]]["oid"], "CONNECT"))
        elif match := re.fullmatch(r'CREATE EXTENSION IF NOT EXISTS "(\w+)" CASCADE', statement):
            self.databases[dbname]["extensions"].add(match[1])
        elif match := re.fullmatch(r'(?:ALTER SCHEMA public OWNER TO|CREATE SCHEMA public AUTHORIZATION) "(\w+)"',
                                   statement):
            assert match[1] in self.roles, "the new schema owner must exist in this session"
            self.databases[dbname]["schema_owner"] = match[1]
        elif match := re.fullmatch(r'DROP ROLE "(\w+)"', statement):
            del self.roles[match[1]]
        else:
            raise AssertionError(f"unexpected statement: {statement}")
        self.committed.append(statement)

    def _set_role_options(self, name: str, options: str) -> None:
        role = self.roles[name]
        password = re.search(r"PASSWORD '([^']*)'$", options)
        if password:
            role["rolpassword"] = password[1]
            options = options[:password.start()].strip()
        limit = re.search(r"CONNECTION LIMIT (-?\d+)", options)
        if limit:
            role["rolconnlimit"] = int(limit[1])
            options = options[:limit.start()].strip()
        for word in options.split():
            if word.startswith("NO") and word[2:] in KEYWORDS:
                role[KEYWORDS[word[2:]]] = False
            elif word in KEYWORDS:
                role[KEYWORDS[word]] = True
            elif word:
                raise AssertionError(f"unexpected role option {word!r}")


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, query: Any, args: tuple[Any, ...] = ()) -> None:
        assert not self.conn.closed, "query on a closed connection"
        if isinstance(query, str):
            self.rows = self.conn.server.read(self.conn.dbname, query, args)
        else:
            self.conn.server.write(self.conn.dbname, query.as_string(None), self.conn.in_transaction)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


class FakeInfo:
    def __init__(self, server_version: int) -> None:
        self.server_version = server_version


class FakeConnection:
    """What TenantManager uses of a psycopg connection; also a context for ``Composable.as_string``."""

    adapters = psycopg.adapters
    connection = None

    def __init__(self, server: FakeServer, dbname: str) -> None:
        assert dbname in server.databases, f"connection to missing database {dbname}"
        self.server = server
        self.dbname = dbname
        self.info = FakeInfo(server.server_version)
        self.in_transaction = False
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    @contextmanager
    def transaction(self, force_rollback: bool = False) -> Iterator[None]:
        assert not self.in_transaction
        saved = self.server.snapshot()
        self.in_transaction = True
        try:
            yield
        except BaseException:
            self.server.restore(saved)
            raise
        finally:
            self.in_transaction = False
        if force_rollback:
            self.server.restore(saved)

    def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------
class FakeModule:
    def __init__(self, params: dict[str, Any], check_mode: bool) -> None:
        self.params = params
        self.check_mode = check_mode


def params(**overrides: Any) -> dict[str, Any]:
    spec = postgresql_tenant_module_kwargs()["argument_spec"]
    values = {name: option.get("default") for name, option in spec.items()}
    values.update(name="app", password=SECRET, extensions=["vector"], login_unix_socket="/run/postgresql")
    values.update(overrides)
    return values


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()
    monkeypatch.setattr(TenantManager, "_connect", lambda _self, dbname: FakeConnection(fake, dbname))
    return fake


def run(check_mode: bool = False, **overrides: Any) -> dict[str, Any]:
    return TenantManager(FakeModule(params(**overrides), check_mode)).run()


def created(server: FakeServer) -> FakeServer:
    """The server after a first real run: the tenant exists as the module leaves it."""
    run()
    server.tried.clear()
    server.committed.clear()
    return server


def stored_verifier(server: FakeServer) -> str:
    return server.roles["app"]["rolpassword"]


def secrets_in(result: dict[str, Any], server: FakeServer) -> list[str]:
    """Passwords, verifiers and verifier keys found anywhere in ``result``."""
    text = json.dumps(result, default=str)
    needles = [SECRET, OTHER_SECRET]
    for role in server.roles.values():
        verifier = role["rolpassword"] or ""
        needles += [verifier] + [part for part in re.split(r"[$:]", verifier) if len(part) > 20]
    for statement in server.tried:
        needles += re.findall(r"'(SCRAM-SHA-256[^']*)'", statement)
    return [needle for needle in needles if needle and needle in text]


def tamper(verifier: str, part: str) -> str:
    """Flip one bit of the StoredKey or ServerKey of a PostgreSQL verifier."""
    head, keys = verifier.rsplit("$", 1)
    stored, server = keys.split(":")
    index = 0 if part == "stored_key" else 1
    raw = [base64.b64decode(stored), base64.b64decode(server)]
    raw[index] = bytes([raw[index][0] ^ 0x01]) + raw[index][1:]
    return f"{head}${base64.b64encode(raw[0]).decode()}:{base64.b64encode(raw[1]).decode()}"


# --------------------------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------------------------
def test_missing_tenant_is_created(server):
    result = run()
    assert result["changed"] is True
    assert result["queries"] == CREATE_QUERIES
    role = server.roles["app"]
    assert {flag: role[flag] for flag in FLAGS} == {flag: flag == "rolcanlogin" for flag in FLAGS}
    assert scram_sha256_matches(SECRET, stored_verifier(server))
    db = server.databases["app"]
    assert db["owner_oid"] == role["oid"]
    assert (PUBLIC, "CONNECT") not in db["acl"] and (role["oid"], "CONNECT") in db["acl"]
    assert db["extensions"] == {"plpgsql", "vector"}
    assert db["schema_owner"] == "app"
    assert result["diff"]["before"]["role"] == {"exists": False}
    assert result["diff"]["after"]["password"] == "<changed>"


def test_second_identical_run_changes_nothing(server):
    created(server)
    result = run()
    assert result["changed"] is False
    assert result["queries"] == []
    assert server.tried == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert result["diff"]["after"]["password"] == "<unchanged>"


def test_password_drift_is_reset(server):
    created(server)
    server.roles["app"]["rolpassword"] = scram_sha256_verifier(OTHER_SECRET)
    result = run()
    assert result["changed"] is True
    assert result["queries"] == ALTER_PASSWORD
    assert scram_sha256_matches(SECRET, stored_verifier(server))
    assert (result["diff"]["before"]["password"], result["diff"]["after"]["password"]) == ("<old>", "<changed>")


def test_md5_stored_password_is_rewritten_as_scram(server):
    created(server)
    md5 = "md5" + hashlib.md5(f"{SECRET}app".encode()).hexdigest()  # what PostgreSQL stores for md5
    server.roles["app"]["rolpassword"] = md5
    result = run()
    assert result["changed"] is True
    assert result["queries"] == ALTER_PASSWORD
    assert stored_verifier(server).startswith("SCRAM-SHA-256$4096:")
    assert scram_sha256_matches(SECRET, stored_verifier(server))
    assert run()["changed"] is False


@pytest.mark.parametrize("part", ["stored_key", "server_key"])
def test_one_tampered_key_of_the_stored_verifier_is_drift(server, part):
    created(server)
    server.roles["app"]["rolpassword"] = tamper(stored_verifier(server), part)
    result = run()
    assert result["changed"] is True
    assert result["queries"] == ALTER_PASSWORD
    assert scram_sha256_matches(SECRET, stored_verifier(server))


def test_role_attribute_drift_keeps_the_password(server):
    created(server)
    before = stored_verifier(server)
    server.roles["app"]["rolcreatedb"] = True
    result = run(connection_limit=5)
    assert result["queries"] == [
        'ALTER ROLE "app" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 5'
    ]
    assert (server.roles["app"]["rolcreatedb"], server.roles["app"]["rolconnlimit"]) == (False, 5)
    assert stored_verifier(server) == before


def test_reopened_connect_and_missing_extension_are_repaired(server):
    created(server)
    server.databases["app"]["acl"] |= {(PUBLIC, "CONNECT")}
    server.databases["app"]["acl"] -= {(server.roles["app"]["oid"], "CONNECT")}
    result = run(extensions=["vector", "pg_trgm"])
    assert result["queries"] == [
        'REVOKE CONNECT, TEMPORARY ON DATABASE "app" FROM PUBLIC',
        'GRANT CONNECT ON DATABASE "app" TO "app"',
        'CREATE EXTENSION IF NOT EXISTS "pg_trgm" CASCADE',
    ]
    assert run(extensions=["vector", "pg_trgm"])["changed"] is False


# --------------------------------------------------------------------------------------------------------------
# Check mode
# --------------------------------------------------------------------------------------------------------------
def test_check_mode_on_a_new_tenant_reports_the_real_run_and_commits_nothing(server):
    before = server.snapshot()
    result = run(check_mode=True)
    assert result["changed"] is True
    assert result["queries"] == CREATE_QUERIES
    assert server.snapshot() == before
    # The role statement was tried (and rolled back); CREATE DATABASE and what depends on it were not.
    assert [s.split(" WITH ")[0] for s in server.tried] == ['CREATE ROLE "app"']


@pytest.mark.parametrize("drift", ["password", "md5", "attributes"])
def test_check_mode_on_drift_tries_the_statements_and_rolls_back(server, drift):
    created(server)
    role = server.roles["app"]
    if drift == "password":
        role["rolpassword"] = scram_sha256_verifier(OTHER_SECRET)
    elif drift == "md5":
        role["rolpassword"] = "md5" + hashlib.md5(f"{SECRET}app".encode()).hexdigest()
    else:
        role["rolreplication"] = True
    before = server.snapshot()
    result = run(check_mode=True)
    assert result["changed"] is True
    assert server.snapshot() == before
    assert len(server.tried) == 1
    assert server.committed == []


def test_check_mode_without_drift_is_not_changed(server):
    created(server)
    result = run(check_mode=True)
    assert (result["changed"], result["queries"], server.tried) == (False, [], [])


# --------------------------------------------------------------------------------------------------------------
# Absent
# --------------------------------------------------------------------------------------------------------------
def test_absent_keeps_data_and_revokes_login(server):
    created(server)
    result = run(state="absent")
    assert result["queries"] == ['ALTER ROLE "app" WITH NOLOGIN']
    assert server.roles["app"]["rolcanlogin"] is False and "app" in server.databases
    assert len(result["kept"]) == 2
    assert run(state="absent")["changed"] is False


def test_absent_with_drop_database_drops_both(server):
    created(server)
    result = run(state="absent", drop_database=True)
    assert result["queries"] == ['DROP DATABASE "app"', 'DROP ROLE "app"']
    assert "app" not in server.roles and "app" not in server.databases


# --------------------------------------------------------------------------------------------------------------
# No secret in the result
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("check_mode", [False, True])
@pytest.mark.parametrize("setup", ["new", "drift", "md5", "unchanged"])
def test_result_never_contains_a_password_or_verifier(server, setup, check_mode):
    if setup != "new":
        created(server)
    if setup == "drift":
        server.roles["app"]["rolpassword"] = scram_sha256_verifier(OTHER_SECRET)
    elif setup == "md5":
        server.roles["app"]["rolpassword"] = "md5" + hashlib.md5(f"{SECRET}app".encode()).hexdigest()
    result = run(check_mode=check_mode)
    assert secrets_in(result, server) == []


def test_secrets_in_finds_a_leak(server):
    """The leak detector above must be able to say yes."""
    run()
    assert secrets_in({"x": stored_verifier(server)}, server) != []
    assert secrets_in({"x": f"PASSWORD {SECRET}"}, server) == [SECRET]


def test_main_end_to_end(server, capsys):
    args = {"name": "app", "password": SECRET, "extensions": ["vector"], "login_unix_socket": "/run/postgresql"}
    outputs = []
    for _pass in range(2):
        with patch_module_args(args), pytest.raises(SystemExit):
            postgresql_tenant.main()
        outputs.append(json.loads(capsys.readouterr().out))
    assert [out["changed"] for out in outputs] == [True, False]
    assert outputs[0]["queries"] == CREATE_QUERIES
    assert all(secrets_in(out, server) == [] for out in outputs)


def test_the_tenants_form_runs_each_tenant_as_its_own_call_would(server):
    """One module run for several tenants: each is read, planned and applied in turn; a rerun changes nothing."""
    from ansible_collections.borgstack.stack.plugins.module_utils._postgresql import run_tenants

    tenants = [{"name": "app", "database": None, "owner": None, "password": SECRET, "extensions": ["vector"],
                "connection_limit": -1, "state": "present", "drop_database": False},
               {"name": "other", "database": "other_db", "owner": None, "password": SECRET + "2", "extensions": [],
                "connection_limit": -1, "state": "present", "drop_database": False}]
    first = run_tenants(FakeModule(params(name=None, password=None, tenants=tenants), False))
    assert first["changed"] and [r["tenant"] for r in first["tenants"]] == ["app", "other"]
    assert first["tenants"][1]["database"] == "other_db" and "other_db" in server.databases
    assert len(first["diff"]) == 2
    again = run_tenants(FakeModule(params(name=None, password=None, tenants=tenants), False))
    assert not again["changed"] and not any(r["queries"] for r in again["tenants"])


def test_the_tenants_form_stops_at_the_first_bad_tenant_and_names_it(server):
    from ansible_collections.borgstack.stack.plugins.module_utils._postgresql import TenantError, run_tenants

    tenants = [{"name": "app", "database": None, "owner": None, "password": SECRET, "extensions": [],
                "connection_limit": -1, "state": "present", "drop_database": False},
               {"name": "bad", "database": None, "owner": None, "password": None, "extensions": [],
                "connection_limit": -1, "state": "present", "drop_database": False}]
    with pytest.raises(TenantError, match="tenant bad: password: required") as failure:
        run_tenants(FakeModule(params(name=None, password=None, tenants=tenants), False))
    assert [r["tenant"] for r in failure.value.details["results"]] == ["app"]
    assert SECRET not in str(failure.value)
