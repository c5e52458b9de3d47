# SPDX-License-Identifier: GPL-3.0-or-later
"""Reader roles of ``postgresql_tenant`` (its ``readers`` option): a login that watches, not one that owns.

A reader is a login role with no power of its own (``NOSUPERUSER NOCREATEDB ...``), a member of the roles it is
given (``pg_monitor`` for an exporter's server statistics), allowed to connect to the databases it is given and to
``SELECT`` the tables named there - and nothing else of those databases.

Tables created later (an app's migrations at its first start, a table a workflow creates on its first error) get
their grant when they are created: in each database the module keeps an event trigger (``ddl_command_end`` on
``CREATE TABLE``) whose function grants ``SELECT`` on exactly the named tables to the reader. The function runs as
whoever created the table - its owner, who may grant on it. ``ALTER DEFAULT PRIVILEGES`` was not used: it cannot
name a table, so every later table of the owner (an app's users and credentials after an upgrade) would be readable.
Granting in the step that creates the table would tie the apps (and n8n's workflows) to the monitoring's login.

``ReaderManager`` is "read -> plan -> apply" like ``TenantManager``: ``plan`` is a pure function of the state read
(unit-tested without a server), check mode runs the statements in transactions that are rolled back.
"""
from __future__ import annotations

from typing import Any

from ansible_collections.borgstack.stack.plugins.module_utils._postgresql import (
    IDENTIFIER_RE,
    _ROLE_FLAGS,
    TenantError,
    TenantManager,
    _Step,
    scram_sha256_matches,
    scram_sha256_verifier,
)
from ansible_collections.borgstack.stack.plugins.module_utils._psycopg import sql

# Attributes of a reader: those of a tenant owner - it logs in and holds no cluster-wide power.
_READER_FLAGS = _ROLE_FLAGS
# The predefined roles a reader may be made a member of: reading statistics, never writing or reading files.
READER_ROLES = frozenset(("pg_monitor", "pg_read_all_stats", "pg_stat_scan_tables", "pg_read_all_settings"))

READER_OPTIONS = {
    "name": {"type": "str", "required": True},
    "password": {"type": "str", "no_log": True},
    "roles": {"type": "list", "elements": "str", "default": ["pg_monitor"]},
    "grants": {"type": "list", "elements": "dict", "default": [],
               "options": {"database": {"type": "str", "required": True},
                           "tables": {"type": "list", "elements": "str", "default": []}}},
    "connection_limit": {"type": "int", "default": 3},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
}


def trigger_name(reader: str) -> str:
    """The event trigger (and its function, in schema public) that grants ``reader`` the tables created later."""
    return f"borgstack_grant_{reader}"[:63]


def trigger_body(reader: str, tables: list[str]) -> str:
    """The PL/pgSQL body of the grant function: SELECT on each named table of schema public to ``reader``, when a
    CREATE TABLE creates it. A failure only warns: it must never stop the app's own CREATE TABLE."""
    names = ", ".join(f"'public.{table}'" for table in sorted(tables))
    return (
        "\nDECLARE obj record;\nBEGIN\n"
        "  FOR obj IN SELECT object_identity FROM pg_event_trigger_ddl_commands()\n"
        f"      WHERE object_type = 'table' AND object_identity IN ({names}) LOOP\n"
        f"    EXECUTE format('GRANT SELECT ON %s TO %I', obj.object_identity, '{reader}');\n"
        "  END LOOP;\n"
        "EXCEPTION WHEN OTHERS THEN\n"
        f"  RAISE WARNING '{trigger_name(reader)}: %', SQLERRM;\n"
        "END\n"
    )


class ReaderManager(TenantManager):
    """One reader role: read its state (role, memberships, and per database CONNECT, SELECT on the named tables
    that exist, the grant trigger), plan the statements that differ, apply them or roll them back."""

    def __init__(self, module: Any, params: dict[str, Any], cluster: Any = None, keep_cluster: bool = False) -> None:
        params = {**params, "database": None, "owner": None, "extensions": [], "drop_database": False}
        super().__init__(module, params, cluster, keep_cluster)
        self.roles: list[str] = list(dict.fromkeys(self.params["roles"] or []))
        self.grants: dict[str, list[str]] = {}
        for grant in self.params["grants"] or []:
            tables = self.grants.setdefault(grant["database"], [])
            tables.extend(t for t in grant.get("tables") or [] if t not in tables)
        self.state: dict[str, Any] = {}
        self._dbs: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------------------- validation
    def validate(self) -> None:
        where = f"readers[{self.name!r}]"
        if not IDENTIFIER_RE.match(self.name) or self.name.startswith("pg_"):
            raise TenantError(f"{where}.name: {self.name!r} is not a valid reader name; use 1 to 63 characters from "
                              "a-z, 0-9 and _, starting with a letter or _, not pg_")
        if self.name == self.params["login_user"]:
            raise TenantError(f"{where}.name: {self.name!r} is the login_user; a reader must be a role of its own")
        unknown = [role for role in self.roles if role not in READER_ROLES]
        if unknown:
            raise TenantError(f"{where}.roles: {', '.join(unknown)} not allowed; a reader may only be a member of "
                              f"{', '.join(sorted(READER_ROLES))}")
        for database, tables in self.grants.items():
            for value, what in [(database, "database")] + [(t, "tables") for t in tables]:
                if not IDENTIFIER_RE.match(value):
                    raise TenantError(f"{where}.grants.{what}: {value!r} is not a plain SQL name (a-z, 0-9, _; "
                                      "tables are in schema public)")
        if self.params["connection_limit"] < -1:
            raise TenantError(f"{where}.connection_limit: use -1 (no limit) or a number of connections >= 0")
        if self.params["state"] == "present" and not self.params["password"]:
            raise TenantError(f"{where}.password: required and not empty with state=present")

    # ----------------------------------------------------------------------------------------------- reading
    def read(self) -> None:
        if self._cluster is None:
            self._open_cluster()
        rows = self._fetchall(
            self._cluster,
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolconnlimit, "
            "rolpassword, ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
            "WHERE m.member = a.oid ORDER BY 1) FROM pg_authid a WHERE rolname = %s",
            (self.name,),
        )
        role = None
        if rows:
            names = [flag[0] for flag in _READER_FLAGS] + ["rolconnlimit", "rolpassword", "member_of"]
            role = dict(zip(names, rows[0]))
            if role["rolsuper"]:
                raise TenantError(f"readers[{self.name!r}].name: role {self.name!r} exists and is a superuser; the "
                                  "module will not touch it. Pick another name")
        databases: dict[str, Any] = {}
        for database, tables in self.grants.items():
            exists = self._fetchall(self._cluster, "SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if not exists:
                databases[database] = None
                continue
            conn = self._connect(database)
            self._dbs[database] = conn
            info: dict[str, Any] = {"connect": False, "usage": False, "tables": {}, "trigger": None}
            if role is not None:
                row = self._fetchall(conn, "SELECT has_database_privilege(%s, current_database(), 'CONNECT'), "
                                           "has_schema_privilege(%s, 'public', 'USAGE')", (self.name, self.name))[0]
                info["connect"], info["usage"] = bool(row[0]), bool(row[1])
            for table in tables:
                row = self._fetchall(conn, "SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",))[0]
                granted = False
                if row[0] and role is not None:
                    granted = self._fetchall(conn, "SELECT has_table_privilege(%s, %s, 'SELECT')",
                                             (self.name, f"public.{table}"))[0][0]
                info["tables"][table] = {"exists": bool(row[0]), "select": bool(granted)}
            trig = self._fetchall(
                conn,
                "SELECT t.evtenabled, p.prosrc, p.proname FROM pg_event_trigger t JOIN pg_proc p ON p.oid = t.evtfoid "
                "WHERE t.evtname = %s",
                (trigger_name(self.name),),
            )
            function = self._fetchall(conn, "SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = "
                                            "'public'::regnamespace", (trigger_name(self.name),))
            info["trigger"] = {"enabled": trig[0][0] if trig else None,
                               "body": function[0][0] if function else None}
            databases[database] = info
        password_ok = role is not None and self.params["state"] == "present" and scram_sha256_matches(
            self.params["password"], role["rolpassword"])
        self.state = {"role": role, "password_ok": password_ok, "databases": databases}

    # ---------------------------------------------------------------------------------------------- planning
    def plan(self) -> None:
        self.steps = plan_reader(self.name, self.params, self.roles, self.grants, self.state)
        self.before, self.after = reader_diff(self.name, self.roles, self.grants, self.state,
                                              self.params["state"], self.params["connection_limit"])

    # ---------------------------------------------------------------------------------------------- applying
    def apply(self) -> None:
        by_target: dict[str, list[_Step]] = {}
        for step in self.steps:
            by_target.setdefault(step.target, []).append(step)
        for target, steps in by_target.items():
            conn = self._cluster if target == "cluster" else self._dbs.get(target)
            if self.check_mode:
                if conn is None:
                    for step in steps:
                        self.queries.append(step.display.as_string(self._cluster))
                    continue
                with conn.transaction(force_rollback=True):
                    for step in steps:
                        self._execute(conn, step)
            else:
                self._run_batch(conn, steps)

    def close(self) -> None:
        for conn in self._dbs.values():
            conn.close()
        super().close()

    def result(self) -> dict[str, Any]:
        return {"changed": bool(self.steps), "reader": self.name, "queries": self.queries,
                "pending": pending_tables(self.grants, self.state) if self.params["state"] == "present" else [],
                "diff": {"before": self.before, "after": self.after}}


def pending_tables(grants: dict[str, list[str]], state: dict[str, Any]) -> list[str]:
    """``database.table`` of the named tables that do not exist yet (the trigger grants them when created)."""
    out = []
    for database, tables in grants.items():
        info = state["databases"].get(database)
        for table in tables:
            if info is None or not info["tables"][table]["exists"]:
                out.append(f"{database}.{table}")
    return out


def _role_options(limit: int, password: Any) -> Any:
    parts = [sql.SQL(keyword if wanted else f"NO{keyword}") for _col, keyword, wanted in _READER_FLAGS]
    parts.append(sql.SQL(f"CONNECTION LIMIT {int(limit)}"))
    if password is not None:
        parts.append(sql.SQL("PASSWORD {}").format(password))
    return sql.SQL(" ").join(parts)


def plan_reader(name: str, params: dict[str, Any], roles: list[str], grants: dict[str, list[str]],
                state: dict[str, Any]) -> list[_Step]:
    """The statements that bring the reader from ``state`` (ReaderManager.read) to what ``params`` ask for. A
    database that does not exist is skipped (its tenant creates it; a later run grants)."""
    steps: list[_Step] = []
    reader = sql.Identifier(name)
    role = state["role"]
    limit = params["connection_limit"]
    if params["state"] == "absent":
        if role is None:
            return steps
        for database, info in state["databases"].items():
            if info is None:
                continue
            trig = sql.Identifier(trigger_name(name))
            if info["trigger"]["enabled"] is not None:
                steps.append(_Step(database, sql.SQL("DROP EVENT TRIGGER {}").format(trig), None))
            if info["trigger"]["body"] is not None:
                steps.append(_Step(database, sql.SQL("DROP FUNCTION public.{}()").format(trig), None))
            # Revokes its grants in this database (it owns nothing).
            steps.append(_Step(database, sql.SQL("DROP OWNED BY {}").format(reader), None))
        steps.append(_Step("cluster", sql.SQL("DROP OWNED BY {}").format(reader), None))
        # Check mode rolled back the revokes in each database, which DROP ROLE needs: it cannot be tried there.
        steps.append(_Step("cluster", sql.SQL("DROP ROLE {}").format(reader), None, check_runnable=False))
        for step in steps:
            step.display = step.statement
        return steps

    def add(target: str, statement: Any, display: Any = None, secret: str | None = None,
            check_runnable: bool = True) -> None:
        steps.append(_Step(target, statement, display if display is not None else statement,
                           check_runnable=check_runnable, secret=secret))

    verifier = None if state["password_ok"] else scram_sha256_verifier(params["password"])
    if role is None:
        create = sql.SQL("CREATE ROLE {} WITH {}")
        add("cluster", create.format(reader, _role_options(limit, sql.Literal(verifier))),
            create.format(reader, _role_options(limit, sql.Placeholder())), secret=verifier)
    else:
        if not (all(role[col] == wanted for col, _kw, wanted in _READER_FLAGS) and role["rolconnlimit"] == limit):
            add("cluster", sql.SQL("ALTER ROLE {} WITH {}").format(reader, _role_options(limit, None)))
        if verifier is not None:
            alter = sql.SQL("ALTER ROLE {} WITH PASSWORD {}")
            add("cluster", alter.format(reader, sql.Literal(verifier)), alter.format(reader, sql.Placeholder()),
                secret=verifier)
    member_of = set(role["member_of"]) if role else set()
    for granted in roles:
        if granted not in member_of:
            add("cluster", sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), reader))
    # Memberships it should not have (a reader keeps to what it is given).
    for extra in sorted(member_of - set(roles)):
        add("cluster", sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(extra), reader))
    new_role = role is None
    for database, tables in grants.items():
        info = state["databases"].get(database)
        if info is None:
            continue
        if not info["connect"]:
            add("cluster", sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), reader))
        # Another session cannot see a role that check mode created and rolled back.
        if not info["usage"]:
            add(database, sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reader), check_runnable=not new_role)
        for table in tables:
            if info["tables"][table]["exists"] and not info["tables"][table]["select"]:
                add(database, sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier("public", table), reader),
                    check_runnable=not new_role)
        body = trigger_body(name, tables)
        trig = sql.Identifier(trigger_name(name))
        if info["trigger"]["body"] != body:
            add(database, sql.SQL("CREATE OR REPLACE FUNCTION public.{}() RETURNS event_trigger LANGUAGE plpgsql "
                                  "AS {}").format(trig, sql.Literal(body)))
        if info["trigger"]["enabled"] is None:
            add(database, sql.SQL("CREATE EVENT TRIGGER {} ON ddl_command_end WHEN TAG IN ('CREATE TABLE', "
                                  "'CREATE TABLE AS', 'SELECT INTO') EXECUTE FUNCTION public.{}()").format(trig, trig))
        elif info["trigger"]["enabled"] != "O":
            add(database, sql.SQL("ALTER EVENT TRIGGER {} ENABLE").format(trig))
    return steps


def reader_diff(name: str, roles: list[str], grants: dict[str, list[str]], state: dict[str, Any], wanted: str,
                limit: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after) for --diff: the role, its memberships, and per database CONNECT and the granted tables;
    the password only as <unchanged>/<changed>."""
    role = state["role"]

    def view(exists: bool, login: Any, conn_limit: Any, member_of: list[str], dbs: dict[str, Any],
             password: str) -> dict[str, Any]:
        return {"reader": name, "role": {"exists": exists, "login": login, "connection_limit": conn_limit},
                "password": password, "member_of": member_of, "databases": dbs}

    before_dbs = {}
    for database, info in state["databases"].items():
        before_dbs[database] = None if info is None else {
            "connect": info["connect"], "select": sorted(t for t, v in info["tables"].items() if v["select"]),
            "grant_trigger": info["trigger"]["enabled"] is not None}
    before = view(role is not None, role and role["rolcanlogin"], role and role["rolconnlimit"],
                  sorted(role["member_of"]) if role else [], before_dbs,
                  "<unchanged>" if state["password_ok"] or role is None else "<old>")
    if wanted == "absent":
        return before, view(False, None, None, [], {d: None for d in before_dbs}, "<unchanged>")
    after_dbs = {database: None if state["databases"].get(database) is None else {
        "connect": True, "select": sorted(t for t in tables if state["databases"][database]["tables"][t]["exists"]),
        "grant_trigger": True} for database, tables in grants.items()}
    return before, view(True, True, limit, sorted(roles), after_dbs,
                        "<unchanged>" if state["password_ok"] else "<changed>")


def run_readers(module: Any, cluster: Any = None) -> tuple[list[dict[str, Any]], Any]:
    """Each reader of the ``readers`` option in turn (after the tenants, whose databases they read)."""
    results: list[dict[str, Any]] = []
    for reader in module.params["readers"] or []:
        params = {**module.params, **{key: reader.get(key) for key in READER_OPTIONS}}
        manager = ReaderManager(module, params, cluster, keep_cluster=True)
        try:
            results.append(manager.run())
        except TenantError as exc:
            raise TenantError(f"reader {reader['name']}: {exc}", readers=results, queries=manager.queries) from exc
        finally:
            cluster = manager.cluster
    return results, cluster
