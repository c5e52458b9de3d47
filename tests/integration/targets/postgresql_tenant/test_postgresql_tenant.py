# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.postgresql_tenant against a real PostgreSQL 17 + pgvector server (see conftest.py)."""
from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest

pytestmark = pytest.mark.integration

EXTENSIONS = ["vector", "pg_trgm", "pgcrypto", "pg_stat_statements"]


def _password() -> str:
    return secrets.token_urlsafe(18)


def _role_exists(pg_server: Any, name: str) -> bool:
    return pg_server.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", name) == 1


def _database_exists(pg_server: Any, name: str) -> bool:
    return pg_server.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", name) == 1


def _can_login(pg_server: Any, user: str, password: str, dbname: str) -> str:
    """'ok', or the server's refusal."""
    try:
        with pg_server.tcp(user, password, dbname) as conn:
            conn.execute("SELECT 1")
        return "ok"
    except psycopg.OperationalError as exc:
        return str(exc).strip()


def test_lifecycle_check_apply_idempotent_change(pg_server, tenant_module, fresh_name):
    first, second = _password(), _password()
    args = {"name": fresh_name, "password": first, "extensions": EXTENSIONS}

    observed = []
    run = tenant_module(check=True, **args)
    observed.append(("check fresh", run.failed, run.changed, _database_exists(pg_server, fresh_name)))
    run = tenant_module(**args)
    observed.append(("apply", run.failed, run.changed, _database_exists(pg_server, fresh_name)))
    run = tenant_module(check=True, **args)
    observed.append(("check again", run.failed, run.changed, run.result.get("queries")))
    run = tenant_module(**args)
    observed.append(("apply again", run.failed, run.changed, run.result.get("queries")))
    args["password"] = second
    run = tenant_module(**args)
    observed.append(("new password", run.failed, run.changed, run.result.get("queries")))
    run = tenant_module(**args)
    observed.append(("new password again", run.failed, run.changed, run.result.get("queries")))
    observed.append(("login with new password", _can_login(pg_server, fresh_name, second, fresh_name)))
    observed.append(("old password refused", "password authentication failed" in
                     _can_login(pg_server, fresh_name, first, fresh_name)))
    installed = pg_server.scalar("SELECT array_agg(extname ORDER BY extname) FROM pg_extension", dbname=fresh_name)
    observed.append(("extensions", sorted(set(installed) & set(EXTENSIONS))))

    assert observed == [
        ("check fresh", False, True, False),
        ("apply", False, True, True),
        ("check again", False, False, []),
        ("apply again", False, False, []),
        ("new password", False, True, [f'ALTER ROLE "{fresh_name}" WITH PASSWORD %s']),
        ("new password again", False, False, []),
        ("login with new password", "ok"),
        ("old password refused", True),
        ("extensions", sorted(EXTENSIONS)),
    ]


def test_password_changed_by_hand_is_reset_and_stored_as_scram(pg_server, tenant_module, fresh_name):
    desired = _password()
    assert not tenant_module(name=fresh_name, password=desired).failed
    with pg_server.superuser() as conn:
        conn.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            psycopg.sql.Identifier(fresh_name), psycopg.sql.Literal("changed-by-hand")))

    run = tenant_module(name=fresh_name, password=desired)
    stored = pg_server.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", fresh_name)
    hba = pg_server.scalar("SELECT array_agg(DISTINCT auth_method) FROM pg_hba_file_rules WHERE type = 'host'")
    assert (run.changed, run.result["queries"], stored.split(":")[0], hba,
            _can_login(pg_server, fresh_name, desired, fresh_name)) == (
        True, [f'ALTER ROLE "{fresh_name}" WITH PASSWORD %s'], "SCRAM-SHA-256$4096", ["scram-sha-256"], "ok")


@pytest.mark.parametrize("password, encryption, expect_changed", [
    pytest.param("plain-ascii-Passw0rd", "scram-sha-256", False, id="server-made-scram"),
    pytest.param("sênha-çom-acentos-ﬁ", "scram-sha-256", False, id="server-made-scram-saslprep"),
    pytest.param("plain-ascii-Passw0rd", "md5", True, id="md5-migrated-to-scram"),
])
def test_password_checked_against_verifier_stored_by_server(pg_server, tenant_module, fresh_name, password,
                                                            encryption, expect_changed):
    """A verifier PostgreSQL computed itself must be recognised; md5 must be rewritten as SCRAM."""
    with pg_server.superuser() as conn:
        conn.execute(psycopg.sql.SQL("SET password_encryption = {}").format(psycopg.sql.Literal(encryption)))
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            psycopg.sql.Identifier(fresh_name), psycopg.sql.Literal(password)))
    run = tenant_module(name=fresh_name, password=password)
    stored = pg_server.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", fresh_name)
    password_queries = [q for q in run.result["queries"] if "PASSWORD" in q]
    assert (run.failed, bool(password_queries), stored.startswith("SCRAM-SHA-256$"),
            _can_login(pg_server, fresh_name, password, fresh_name)) == (False, expect_changed, True, "ok")


@pytest.fixture(scope="module")
def two_tenants(shared_tenant_module):
    module = shared_tenant_module
    tenants = {}
    for _round in range(2):
        name, password = f"t_{secrets.token_hex(4)}", _password()
        run = module(name=name, password=password, extensions=["vector"])
        assert not run.failed, run.result.get("msg")
        tenants[name] = password
    return tenants


def test_tenant_cannot_connect_to_another_tenants_database(pg_server, two_tenants):
    (first, first_pw), (second, second_pw) = two_tenants.items()
    outcomes = [
        _can_login(pg_server, first, first_pw, first),
        _can_login(pg_server, second, second_pw, second),
        _can_login(pg_server, second, second_pw, first),
        _can_login(pg_server, first, first_pw, second),
    ]
    assert outcomes[:2] == ["ok", "ok"]
    assert all("permission denied for database" in o for o in outcomes[2:]), outcomes


def test_vector_works_as_tenant_user_in_each_database(pg_server, two_tenants):
    nearest = {}
    for name, password in two_tenants.items():
        with pg_server.tcp(name, password, name) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
            conn.execute("INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[4,5,6]'), (3, '[9,9,9]')")
            row = conn.execute("SELECT id FROM items ORDER BY embedding <-> '[3,5,5]' LIMIT 1").fetchone()
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'").fetchone()
        nearest[name] = (row[0], owner[0])
    assert nearest == {name: (2, name) for name in two_tenants}


def test_unavailable_extension_is_refused_before_any_change(pg_server, tenant_module, fresh_name):
    run = tenant_module(name=fresh_name, password=_password(), extensions=["vector", "no_such_extension"])
    assert (run.failed, "extensions: 'no_such_extension' is not available" in run.result.get("msg", ""),
            run.result.get("queries"), _role_exists(pg_server, fresh_name),
            _database_exists(pg_server, fresh_name)) == (True, True, [], False, False), run.result


@pytest.mark.parametrize("bad_name", ["App1", "1app", "app-one", "a" * 64, "app;drop"])
def test_invalid_tenant_name_is_refused(pg_server, tenant_module, bad_name):
    run = tenant_module(name=bad_name, password=_password())
    assert (run.failed, run.result.get("msg", "").startswith("name: "), _role_exists(pg_server, bad_name),
            _database_exists(pg_server, bad_name)) == (True, True, False, False), run.result


def test_absent_keeps_database_unless_drop_database(pg_server, tenant_module, fresh_name):
    password = _password()
    assert not tenant_module(name=fresh_name, password=password, extensions=["vector"]).failed

    observed = []
    run = tenant_module(name=fresh_name, state="absent")
    observed.append(("absent", run.changed, _database_exists(pg_server, fresh_name),
                     _role_exists(pg_server, fresh_name), len(run.result.get("kept", []))))
    observed.append(("login refused", "not permitted to log in" in
                     _can_login(pg_server, fresh_name, password, fresh_name)))
    run = tenant_module(name=fresh_name, state="absent")
    observed.append(("absent again", run.changed))
    run = tenant_module(check=True, name=fresh_name, state="absent", drop_database=True)
    observed.append(("drop, check mode", run.changed, _database_exists(pg_server, fresh_name)))
    run = tenant_module(name=fresh_name, state="absent", drop_database=True)
    observed.append(("drop", run.changed, _database_exists(pg_server, fresh_name),
                     _role_exists(pg_server, fresh_name)))
    run = tenant_module(name=fresh_name, state="absent", drop_database=True)
    observed.append(("drop again", run.changed))

    assert observed == [
        ("absent", True, True, True, 2),
        ("login refused", True),
        ("absent again", False),
        ("drop, check mode", True, True),
        ("drop", True, False, False),
        ("drop again", False),
    ]


def test_check_mode_on_fresh_tenant_changes_nothing(pg_server, tenant_module, fresh_name):
    run = tenant_module(check=True, name=fresh_name, password=_password(), extensions=EXTENSIONS)
    assert (run.failed, run.changed, f'CREATE DATABASE "{fresh_name}" OWNER "{fresh_name}"' in run.result["queries"],
            _role_exists(pg_server, fresh_name), _database_exists(pg_server, fresh_name)) == (
        False, True, True, False, False), run.result


def test_check_mode_on_existing_tenant_rolls_back(pg_server, tenant_module, fresh_name):
    """Statements run in check mode are rolled back: an extension reported as created is still missing."""
    assert not tenant_module(name=fresh_name, password=_password()).failed
    run = tenant_module(check=True, name=fresh_name, password=_password(), extensions=["pg_trgm"],
                        connection_limit=5)
    limit = pg_server.scalar("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", fresh_name)
    trgm = pg_server.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'", dbname=fresh_name)
    assert (run.changed, len(run.result["queries"]), limit, trgm) == (True, 3, -1, 0), run.result


def test_check_mode_with_new_password_keeps_old_password_working(pg_server, tenant_module, fresh_name):
    """Check mode reports the password change it would make, and the old password still logs in afterwards."""
    old, new = _password(), _password()
    assert not tenant_module(name=fresh_name, password=old).failed
    stored_before = pg_server.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", fresh_name)
    run = tenant_module(check=True, name=fresh_name, password=new)
    stored_after = pg_server.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", fresh_name)
    assert (run.failed, run.changed, run.result.get("queries"), stored_after == stored_before,
            _can_login(pg_server, fresh_name, old, fresh_name),
            "password authentication failed" in _can_login(pg_server, fresh_name, new, fresh_name)) == (
        False, True, [f'ALTER ROLE "{fresh_name}" WITH PASSWORD %s'], True, "ok", True), run.result


def test_no_secret_text_in_module_output(pg_server, tenant_module, fresh_name):
    first, second = _password(), _password()
    tenant_module(check=True, name=fresh_name, password=first, extensions=["vector"])
    tenant_module(name=fresh_name, password=first, extensions=["vector"])
    tenant_module(name=fresh_name, password=second, extensions=["vector"])
    tenant_module(name=fresh_name, password=second, extensions=["no_such_extension"])
    tenant_module(name=fresh_name, state="absent", drop_database=True)
    verifier = pg_server.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = %s", fresh_name)
    leaks = [
        (index, secret_name)
        for index, run in enumerate(tenant_module.runs)
        for secret_name, secret in (("first password", first), ("second password", second),
                                    ("SCRAM verifier", "SCRAM-SHA-256$"))
        if secret in run.output
    ]
    assert (len(tenant_module.runs), verifier, leaks) == (5, None, [])


# ---------------------------------------------------------------------------------------------------------------
# Reader roles (the readers option): the monitoring exporter's own login
# ---------------------------------------------------------------------------------------------------------------
def _reader_sees(pg_server: Any, user: str, password: str, dbname: str, query: str) -> str:
    """The first value ``query`` gives the reader, or the server's refusal (its SQLSTATE class name)."""
    try:
        with pg_server.tcp(user, password, dbname) as conn:
            return str(conn.execute(query).fetchone()[0])
    except psycopg.Error as exc:
        return type(exc).__name__


def test_reader_reads_only_the_named_tables_also_those_created_later(pg_server, tenant_module, fresh_name):
    """A tenant with one table at the start; the reader is given it and a table the app creates only later (as the
    n8n workflows create borgstack_cs_errors on their first error). Check mode, apply, idempotence, the table made
    later readable the moment the app creates it with no module run in between (the rerun stays unchanged), a table
    not named never readable, pg_monitor's statistics, password rotation, and state=absent."""
    app_password, first, second = _password(), _password(), _password()
    reader = f"{fresh_name}_reader"
    tenant_module(tenants=[{"name": fresh_name, "password": app_password},
                           {"name": f"{fresh_name}_o", "password": app_password}])
    with pg_server.tcp(fresh_name, app_password, fresh_name) as conn:
        conn.execute("CREATE TABLE early (n int); INSERT INTO early VALUES (1); CREATE TABLE secret (n int)")
    readers = [{"name": reader, "password": first, "roles": ["pg_monitor"],
                "grants": [{"database": fresh_name, "tables": ["early", "later"]}]}]

    observed = []
    run = tenant_module(check=True, readers=readers)
    observed.append(("check fresh", run.failed, run.changed, _role_exists(pg_server, reader)))
    run = tenant_module(readers=readers)
    observed.append(("apply", run.failed, run.changed, run.result["readers"][0]["pending"]))
    run = tenant_module(readers=readers)
    observed.append(("apply again", run.failed, run.changed, run.result["readers"][0]["queries"]))
    observed.append(("early", _reader_sees(pg_server, reader, first, fresh_name, "SELECT count(*) FROM early")))
    observed.append(("not named", _reader_sees(pg_server, reader, first, fresh_name, "SELECT count(*) FROM secret")))
    observed.append(("pg_monitor", _reader_sees(pg_server, reader, first, fresh_name,
                                                "SELECT count(*) > 0 FROM pg_stat_activity WHERE query <> ''")))
    observed.append(("write refused", _reader_sees(pg_server, reader, first, fresh_name,
                                                   "INSERT INTO early VALUES (2) RETURNING n")))
    observed.append(("other tenant", _reader_sees(pg_server, reader, first, f"{fresh_name}_o", "SELECT 1")))
    # The app creates the later table (its owner, as n8n does), no module run in between.
    with pg_server.tcp(fresh_name, app_password, fresh_name) as conn:
        conn.execute("CREATE TABLE later (n int); INSERT INTO later VALUES (7); CREATE TABLE later_not_named (n int)")
    observed.append(("later", _reader_sees(pg_server, reader, first, fresh_name, "SELECT sum(n) FROM later")))
    observed.append(("later, not named", _reader_sees(pg_server, reader, first, fresh_name,
                                                      "SELECT count(*) FROM later_not_named")))
    run = tenant_module(readers=readers)
    observed.append(("rerun after the app's table", run.changed, run.result["readers"][0]["pending"]))
    # Drift heals: a grant revoked by hand comes back.
    with pg_server.superuser(fresh_name) as conn:
        conn.execute(f'REVOKE SELECT ON early FROM "{reader}"')
    run = tenant_module(readers=readers)
    observed.append(("drift", run.changed, run.result["readers"][0]["queries"]))
    readers[0]["password"] = second
    run = tenant_module(readers=readers)
    observed.append(("rotation", run.changed, run.result["readers"][0]["queries"],
                     _reader_sees(pg_server, reader, second, fresh_name, "SELECT 1"),
                     "password authentication failed" in _can_login(pg_server, reader, first, fresh_name)))
    readers[0]["state"] = "absent"
    run = tenant_module(check=True, readers=readers)
    observed.append(("check absent", run.failed, run.changed, _role_exists(pg_server, reader)))
    run = tenant_module(readers=readers)
    observed.append(("absent", run.failed, run.changed, _role_exists(pg_server, reader),
                     pg_server.scalar("SELECT count(*) FROM pg_event_trigger", dbname=fresh_name)))
    run = tenant_module(readers=readers)
    observed.append(("absent again", run.changed))

    assert observed == [
        ("check fresh", False, True, False),
        ("apply", False, True, [f"{fresh_name}.later"]),
        ("apply again", False, False, []),
        ("early", "1"),
        ("not named", "InsufficientPrivilege"),
        ("pg_monitor", "True"),
        ("write refused", "InsufficientPrivilege"),
        ("other tenant", "OperationalError"),   # CONNECT only where it reads
        ("later", "7"),
        ("later, not named", "InsufficientPrivilege"),
        ("rerun after the app's table", False, []),
        ("drift", True, [f'GRANT SELECT ON "public"."early" TO "{reader}"']),
        ("rotation", True, [f'ALTER ROLE "{reader}" WITH PASSWORD %s'], "1", True),
        ("check absent", False, True, True),
        ("absent", False, True, False, 0),
        ("absent again", False),
    ]
    assert first not in str(tenant_module.runs) and second not in str(tenant_module.runs)


def test_reader_cannot_be_made_a_member_of_a_role_that_writes(pg_server, tenant_module, fresh_name):
    run = tenant_module(readers=[{"name": f"{fresh_name}_r", "password": _password(), "roles": ["pg_write_all_data"]}])
    assert run.failed and "roles: pg_write_all_data not allowed" in run.result["msg"], run.result
    assert not _role_exists(pg_server, f"{fresh_name}_r")
