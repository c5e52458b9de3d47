# SPDX-License-Identifier: GPL-3.0-or-later
"""Private helpers for borgstack.stack PostgreSQL modules.

Contents:
- argument specs (login options shared by PostgreSQL modules, and the tenant module's own options);
- SCRAM-SHA-256 verifiers as PostgreSQL stores them in ``pg_authid.rolpassword`` (build one client-side, check a
  password against a stored one) so that plaintext passwords never travel inside an SQL statement;
- ``TenantManager``: the "read current state -> plan the difference -> apply" core of ``postgresql_tenant``.
"""
from __future__ import annotations

import base64
import os
import re
from typing import Any

from ansible_collections.borgstack.stack.plugins.module_utils._scram import (
    derive_keys,
    keys_match,
    postgresql_saslprep,
)

from ansible_collections.borgstack.stack.plugins.module_utils._psycopg import psycopg, sql

# A tenant, database or owner name becomes an unquoted-looking SQL identifier: lower case, at most 63 bytes.
IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RESERVED_DATABASES = frozenset(("postgres", "template0", "template1"))
MIN_SERVER_VERSION = 100000  # SCRAM-SHA-256 verifiers exist since PostgreSQL 10

SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16
_SCRAM_RE = re.compile(
    r"^SCRAM-SHA-256\$(?P<iterations>[0-9]+):(?P<salt>[A-Za-z0-9+/=]+)"
    r"\$(?P<stored_key>[A-Za-z0-9+/=]+):(?P<server_key>[A-Za-z0-9+/=]+)$"
)

# Role attributes a tenant owner must have: it logs in, and holds no cluster-wide power.
_ROLE_FLAGS = (
    ("rolcanlogin", "LOGIN", True),
    ("rolsuper", "SUPERUSER", False),
    ("rolcreatedb", "CREATEDB", False),
    ("rolcreaterole", "CREATEROLE", False),
    ("rolreplication", "REPLICATION", False),
    ("rolbypassrls", "BYPASSRLS", False),
)


# --------------------------------------------------------------------------------------------------------------
# Argument specs
# --------------------------------------------------------------------------------------------------------------
def postgresql_login_argument_spec() -> dict[str, dict[str, Any]]:
    """Login options documented by the ``borgstack.stack.postgresql`` doc fragment."""
    return {
        "login_unix_socket": {"type": "path"},
        "login_host": {"type": "str"},
        "login_port": {"type": "int", "default": 5432},
        "login_user": {"type": "str", "default": "postgres"},
        "login_password": {"type": "str", "no_log": True},
        "login_db": {"type": "str", "default": "postgres"},
        "connect_timeout": {"type": "int", "default": 10},
    }


def postgresql_tenant_module_kwargs() -> dict[str, Any]:
    """Everything ``AnsibleModule`` needs for ``borgstack.stack.postgresql_tenant``."""
    tenant: dict[str, dict[str, Any]] = {
        "name": {"type": "str"},
        "database": {"type": "str"},
        "owner": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "extensions": {"type": "list", "elements": "str", "default": []},
        "connection_limit": {"type": "int", "default": -1},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "drop_database": {"type": "bool", "default": False},
    }
    spec: dict[str, dict[str, Any]] = dict(tenant)
    # Several tenants in one call (one module run instead of one per tenant): each element takes the options above.
    spec["tenants"] = {"type": "list", "elements": "dict",
                       "options": {**tenant, "name": {"type": "str", "required": True}}}
    # Reader roles (module_utils/_postgresql_reader.py): logins that watch, after the tenants whose tables they read.
    from ansible_collections.borgstack.stack.plugins.module_utils._postgresql_reader import READER_OPTIONS

    spec["readers"] = {"type": "list", "elements": "dict", "options": READER_OPTIONS}
    spec.update(postgresql_login_argument_spec())
    return {
        "argument_spec": spec,
        "required_one_of": [("name", "tenants", "readers")],
        "mutually_exclusive": [("login_unix_socket", "login_host"), ("tenants", "name"), ("tenants", "database"),
                               ("tenants", "owner"), ("tenants", "password"), ("readers", "name")],
        "supports_check_mode": True,
    }


TENANT_OPTIONS = ("name", "database", "owner", "password", "extensions", "connection_limit", "state", "drop_database")


# --------------------------------------------------------------------------------------------------------------
# SCRAM-SHA-256 verifiers (RFC 5802 / RFC 7677, stored the way PostgreSQL stores them); the key derivation and
# SASLprep are the collection's one implementation in _scram.
# --------------------------------------------------------------------------------------------------------------
def scram_sha256_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """Return (StoredKey, ServerKey) for a password, salt and iteration count, prepared the way PostgreSQL does."""
    keys = derive_keys(postgresql_saslprep(password), salt, iterations, "sha256")
    return keys.stored_key, keys.server_key


def scram_sha256_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """Build ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64 parts), a random salt by default."""
    if salt is None:
        salt = os.urandom(SCRAM_SALT_BYTES)
    stored_key, server_key = scram_sha256_keys(password, salt, iterations)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def scram_sha256_matches(password: str, verifier: str | None) -> bool:
    """True when ``verifier`` is a SCRAM-SHA-256 verifier of ``password``.

    md5 hashes, plaintext and anything unparsable count as "does not match", so the caller rewrites them as SCRAM.
    """
    if not verifier:
        return False
    match = _SCRAM_RE.fullmatch(verifier)
    if not match:
        return False
    try:
        iterations = int(match.group("iterations"))
        salt = base64.b64decode(match.group("salt"), validate=True)
        stored_key = base64.b64decode(match.group("stored_key"), validate=True)
        server_key = base64.b64decode(match.group("server_key"), validate=True)
    except ValueError:
        return False
    if iterations < 1:
        return False
    return keys_match(derive_keys(postgresql_saslprep(password), salt, iterations, "sha256"), stored_key, server_key)


# --------------------------------------------------------------------------------------------------------------
# Tenant manager
# --------------------------------------------------------------------------------------------------------------
class TenantError(Exception):
    """A problem to report with ``fail_json``; the message names the option and the fix. ``details``: what to
    report with it (the statements run, the tenants already done)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class _Step:
    """One statement of the plan.

    ``target`` is ``cluster`` (the maintenance database) or ``tenant`` (the tenant's database).
    ``transactional`` is False for CREATE/DROP DATABASE, which PostgreSQL refuses inside a transaction block.
    ``check_runnable`` is False when the statement cannot be tried in check mode (not transactional, or it
    depends on an object that check mode did not create).
    """

    def __init__(self, target: str, statement: Any, display: Any, transactional: bool = True,
                 check_runnable: bool = True, secret: str | None = None) -> None:
        self.target = target
        self.statement = statement
        self.display = display
        self.transactional = transactional
        self.check_runnable = check_runnable and transactional
        self.secret = secret


class TenantManager:
    """Read a tenant's current state, plan the statements that differ, apply them (or roll them back)."""

    def __init__(self, module: Any, params: dict[str, Any] | None = None, cluster: Any = None,
                 keep_cluster: bool = False) -> None:
        """``params``: one tenant's options over the module's login options (the ``tenants`` form), else the
        module's own. ``cluster``: a connection to the maintenance database that an earlier tenant of the same run
        opened and checked (server version, superuser), reused as it is. ``keep_cluster``: leave that connection
        open at the end (the caller closes it)."""
        self.module = module
        self.params = module.params if params is None else params
        self.check_mode: bool = module.check_mode
        self.name: str = self.params["name"]
        self.database: str = self.params["database"] or self.name
        self.owner: str = self.params["owner"] or self.name
        self.extensions: list[str] = list(dict.fromkeys(self.params["extensions"] or []))
        self.queries: list[str] = []
        self.kept: list[str] = []
        self.steps: list[_Step] = []
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self._cluster: Any = cluster
        self._keep_cluster = keep_cluster
        self._tenant: Any = None
        self._role: dict[str, Any] | None = None
        self._db: dict[str, Any] | None = None
        self._password_ok = False

    # ---------------------------------------------------------------------------------------------- validation
    def validate(self) -> None:
        for option, value in (("name", self.name), ("database", self.database), ("owner", self.owner)):
            if not IDENTIFIER_RE.match(value):
                raise TenantError(
                    f"{option}: {value!r} is not a valid name; use 1 to 63 characters from a-z, 0-9 and _, "
                    "starting with a letter or _ (it becomes an SQL identifier)"
                )
        if self.owner.startswith("pg_"):
            raise TenantError(f"owner: {self.owner!r} starts with pg_, which PostgreSQL reserves; pick another name")
        if self.database in RESERVED_DATABASES:
            raise TenantError(
                f"database: {self.database!r} is a system database and cannot belong to a tenant; pick another name"
            )
        if self.owner == self.params["login_user"]:
            raise TenantError(
                f"owner: {self.owner!r} is the login_user the module connects as; a tenant owner must be an "
                "unprivileged role of its own"
            )
        if self.params["connection_limit"] < -1:
            raise TenantError("connection_limit: use -1 (no limit) or a number of connections >= 0")
        if self.params["state"] == "present" and not self.params["password"]:
            raise TenantError("password: required and not empty with state=present; give the tenant owner a password")
        for ext in self.extensions:
            if not ext or len(ext) > 63:
                raise TenantError(f"extensions: {ext!r} is not a valid extension name")

    # ------------------------------------------------------------------------------------------- connections
    def _where(self) -> str:
        params = self.params
        host = params["login_unix_socket"] or params["login_host"] or "the default socket"
        return f"{host} port {params['login_port']}"

    def _connect(self, dbname: str) -> Any:
        params = self.params
        kwargs: dict[str, Any] = {
            "dbname": dbname,
            "user": params["login_user"],
            "port": params["login_port"],
            "connect_timeout": params["connect_timeout"],
            "application_name": "borgstack.stack.postgresql_tenant",
        }
        host = params["login_unix_socket"] or params["login_host"]
        if host:
            kwargs["host"] = host
        if params["login_password"]:
            kwargs["password"] = params["login_password"]
        try:
            return psycopg.connect(autocommit=True, **kwargs)
        except psycopg.Error as exc:
            raise TenantError(
                f"login: cannot connect to database {dbname!r} at {self._where()} as {params['login_user']!r}: "
                f"{str(exc).strip()}; check login_unix_socket/login_host, login_port, login_user and login_password"
            ) from exc

    def close(self) -> None:
        if self._tenant is not None:
            self._tenant.close()
        if not self._keep_cluster and self._cluster is not None:
            self._cluster.close()

    @property
    def cluster(self) -> Any:
        """The checked connection to the maintenance database (None before ``read`` opened it)."""
        return self._cluster

    def _fetchall(self, conn: Any, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()

    # ----------------------------------------------------------------------------------------------- reading
    def _open_cluster(self) -> None:
        """Connect to the maintenance database and check the server's version and that login_user is a superuser."""
        self._cluster = self._connect(self.params["login_db"])
        version = self._cluster.info.server_version
        if version < MIN_SERVER_VERSION:
            raise TenantError(f"login: the server runs PostgreSQL {version}; this module needs PostgreSQL 10 or newer")
        rows = self._fetchall(self._cluster, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not rows or not rows[0][0]:
            raise TenantError(
                f"login_user: {self.params['login_user']!r} is not a superuser; the module reads pg_authid and "
                "creates extensions, so connect as a superuser (for example postgres over the Unix socket)"
            )

    def read(self) -> None:
        if self._cluster is None:
            self._open_cluster()
        rows = self._fetchall(
            self._cluster,
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            "rolconnlimit, rolpassword FROM pg_authid WHERE rolname = %s",
            (self.owner,),
        )
        if rows:
            names = [flag[0] for flag in _ROLE_FLAGS] + ["rolconnlimit", "rolpassword"]
            self._role = dict(zip(names, rows[0]))
            if self._role["rolsuper"]:
                raise TenantError(
                    f"owner: role {self.owner!r} exists and is a superuser; a tenant owner must be unprivileged, "
                    "so the module will not touch it. Pick another owner name"
                )

        rows = self._fetchall(
            self._cluster,
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
            (self.database,),
        )
        if rows:
            self._db = {"owner": rows[0][0]}
            acl = self._fetchall(
                self._cluster,
                "SELECT a.grantee, a.privilege_type FROM pg_database d "
                "CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) AS a "
                "WHERE d.datname = %s",
                (self.database,),
            )
            owner_oid = self._fetchall(self._cluster, "SELECT oid FROM pg_roles WHERE rolname = %s", (self.owner,))
            owner_oid = owner_oid[0][0] if owner_oid else None
            public = {priv for grantee, priv in acl if grantee == 0}
            self._db["public_privileges"] = public
            self._db["connect_revoked_from_public"] = not (public & {"CONNECT", "TEMPORARY"})
            self._db["owner_can_connect"] = any(g == owner_oid and p == "CONNECT" for g, p in acl)
            self._tenant = self._connect(self.database)
            extensions = self._fetchall(self._tenant, "SELECT extname FROM pg_extension")
            self._db["extensions"] = sorted(row[0] for row in extensions)
            rows = self._fetchall(
                self._tenant, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
            )
            self._db["public_schema_owner"] = rows[0][0] if rows else None

        if self.params["state"] == "present":
            self._check_extensions_available()
            self._password_ok = self._role is not None and scram_sha256_matches(
                self.params["password"], self._role["rolpassword"]
            )

    def _check_extensions_available(self) -> None:
        if not self.extensions:
            return
        rows = self._fetchall(
            self._cluster, "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (self.extensions,)
        )
        available = {r[0] for r in rows}
        missing = [ext for ext in self.extensions if ext not in available]
        if missing:
            names = ", ".join(repr(ext) for ext in missing)
            verb = "is" if len(missing) == 1 else "are"
            raise TenantError(
                f"extensions: {names} {verb} not available on this server (pg_available_extensions); "
                "install it or remove it from the list"
            )

    # ---------------------------------------------------------------------------------------------- planning
    def _state_dict(self, role: dict[str, Any] | None, password: str, db: dict[str, Any] | None) -> dict[str, Any]:
        role_view: dict[str, Any] = {"exists": role is not None}
        if role is not None:
            role_view.update({
                "login": role["rolcanlogin"],
                "superuser": role["rolsuper"],
                "createdb": role["rolcreatedb"],
                "createrole": role["rolcreaterole"],
                "replication": role["rolreplication"],
                "bypassrls": role["rolbypassrls"],
                "connection_limit": role["rolconnlimit"],
            })
        db_view: dict[str, Any] = {"exists": db is not None}
        if db is not None:
            db_view.update({"owner": db["owner"], "public_schema_owner": db["public_schema_owner"]})
        return {
            "tenant": self.name,
            "role": role_view,
            "password": password,
            "database": db_view,
            "extensions": list(db["extensions"]) if db else [],
            "connect_revoked_from_public": bool(db and db["connect_revoked_from_public"]),
        }

    def _add(self, target: str, statement: Any, transactional: bool = True, check_runnable: bool = True,
             display: Any = None, secret: str | None = None) -> None:
        self.steps.append(_Step(target, statement, display if display is not None else statement,
                                transactional=transactional, check_runnable=check_runnable, secret=secret))

    def plan(self) -> None:
        if self.params["state"] == "present":
            self._plan_present()
        else:
            self._plan_absent()

    def _role_options(self, password: Any) -> Any:
        flags = [sql.SQL(keyword if wanted else f"NO{keyword}") for _col, keyword, wanted in _ROLE_FLAGS]
        parts = flags + [sql.SQL(f"CONNECTION LIMIT {int(self.params['connection_limit'])}")]
        if password is not None:
            parts.append(sql.SQL("PASSWORD {}").format(password))
        return sql.SQL(" ").join(parts)

    def _plan_present(self) -> None:
        role = self._role
        db = self._db
        limit = self.params["connection_limit"]
        password_marker = "<unchanged>" if self._password_ok else "<changed>"
        self.before = self._state_dict(role, "<unchanged>" if self._password_ok else "<old>", db)
        self._plan_role(role, limit)
        self._plan_database(db)
        installed = set(db["extensions"]) if db else set()
        schema_owner = db["public_schema_owner"] if db else None
        self._plan_inside_database(role, db, installed, schema_owner)

        after_role = {"rolcanlogin": True, "rolsuper": False, "rolcreatedb": False, "rolcreaterole": False,
                      "rolreplication": False, "rolbypassrls": False, "rolconnlimit": limit}
        after_db = {
            "owner": self.owner,
            "public_schema_owner": schema_owner if schema_owner in (self.owner, "pg_database_owner") else self.owner,
            "extensions": sorted(installed | set(self.extensions)),
            "connect_revoked_from_public": True,
        }
        self.after = self._state_dict(after_role, password_marker, after_db)

    def _plan_role(self, role: dict | None, limit: int) -> None:
        """Role: created with its SCRAM verifier, or attributes/password brought in line."""
        owner = sql.Identifier(self.owner)
        verifier = None if self._password_ok else scram_sha256_verifier(self.params["password"])
        if role is None:
            create = sql.SQL("CREATE ROLE {} WITH {}")
            self._add("cluster", create.format(owner, self._role_options(sql.Literal(verifier))),
                      display=create.format(owner, self._role_options(sql.Placeholder())), secret=verifier)
            return
        attrs_ok = all(role[col] == wanted for col, _kw, wanted in _ROLE_FLAGS) and role["rolconnlimit"] == limit
        if not attrs_ok:
            self._add("cluster", sql.SQL("ALTER ROLE {} WITH {}").format(owner, self._role_options(None)))
        if verifier is not None:
            self._add("cluster", sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(owner, sql.Literal(verifier)),
                      display=sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(owner, sql.Placeholder()),
                      secret=verifier)

    def _plan_database(self, db: dict | None) -> None:
        """Database, its owner and who may connect: nobody but the owner (and superusers)."""
        owner = sql.Identifier(self.owner)
        database = sql.Identifier(self.database)
        # Created outside a transaction (PostgreSQL refuses CREATE DATABASE inside one).
        db_missing = db is None
        if db_missing:
            self._add("cluster", sql.SQL("CREATE DATABASE {} OWNER {}").format(database, owner), transactional=False)
        elif db["owner"] != self.owner:
            self._add("cluster", sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, owner))
        if db_missing or not db["connect_revoked_from_public"]:
            self._add("cluster", sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(database),
                      check_runnable=not db_missing)
        # A database created with OWNER already grants the owner CONNECT (acldefault); an owner change or an
        # edited ACL may not.
        if not db_missing and (db["owner"] != self.owner or not db["owner_can_connect"]):
            self._add("cluster", sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, owner))

    def _plan_inside_database(self, role: dict | None, db: dict | None, installed: set,
                              schema_owner: str | None) -> None:
        """Inside the tenant database, as superuser: extensions, and a public schema the owner may use."""
        owner = sql.Identifier(self.owner)
        db_missing = db is None
        for ext in self.extensions:
            if ext not in installed:
                self._add("tenant", sql.SQL("CREATE EXTENSION IF NOT EXISTS {} CASCADE").format(sql.Identifier(ext)),
                          check_runnable=not db_missing)
        if db_missing or schema_owner not in (self.owner, "pg_database_owner"):
            if db is not None and schema_owner is None:
                statement = sql.SQL("CREATE SCHEMA public AUTHORIZATION {}").format(owner)
            else:
                statement = sql.SQL("ALTER SCHEMA public OWNER TO {}").format(owner)
            # Another session cannot see a role that check mode created and rolled back.
            self._add("tenant", statement, check_runnable=not db_missing and role is not None)

    def _plan_absent(self) -> None:
        role = self._role
        db = self._db
        owner = sql.Identifier(self.owner)
        self.before = self._state_dict(role, "<unchanged>", db)
        after_role = dict(role) if role else None
        after_db = db
        if self.params["drop_database"]:
            if db is not None:
                self._add("cluster", sql.SQL("DROP DATABASE {}").format(sql.Identifier(self.database)),
                          transactional=False)
                after_db = None
            if role is not None:
                # Check mode keeps the database, which the role may still own: the drop cannot be tried.
                self._add("cluster", sql.SQL("DROP ROLE {}").format(owner), check_runnable=db is None)
                after_role = None
        else:
            if role is not None and role["rolcanlogin"]:
                self._add("cluster", sql.SQL("ALTER ROLE {} WITH NOLOGIN").format(owner))
                after_role["rolcanlogin"] = False
            if role is not None:
                self.kept.append(f"role {self.owner} (NOLOGIN; set drop_database=true to drop it)")
            if db is not None:
                self.kept.append(f"database {self.database} (set drop_database=true to drop it)")
        self.after = self._state_dict(after_role, "<unchanged>", after_db)

    # ---------------------------------------------------------------------------------------------- applying
    def _execute(self, conn: Any, step: _Step) -> None:
        self.queries.append(step.display.as_string(self._cluster))
        if self.check_mode and not step.check_runnable:
            return
        try:
            with conn.cursor() as cur:
                cur.execute(step.statement)
        except psycopg.Error as exc:
            message = str(exc).strip()
            if step.secret:
                message = message.replace(step.secret, "<verifier>")
            display = self.queries[-1]
            if isinstance(exc, psycopg.errors.ObjectInUse):
                message += "; stop the applications connected to it and run again"
            elif isinstance(exc, psycopg.errors.DependentObjectsStillExist):
                message += ("; the role still owns objects or holds privileges in other databases: "
                            "REASSIGN OWNED / DROP OWNED there, then run again")
            raise TenantError(f"{display}: {message}") from exc

    def apply(self) -> None:
        cluster_steps = [s for s in self.steps if s.target == "cluster"]
        tenant_steps = [s for s in self.steps if s.target == "tenant"]
        if not tenant_steps and self._tenant is not None:
            # Our own session would block DROP DATABASE; nothing else needs it.
            self._tenant.close()
            self._tenant = None
        if self.check_mode:
            # Everything that can run inside a transaction runs, then is rolled back.
            with self._cluster.transaction(force_rollback=True):
                for step in cluster_steps:
                    self._execute(self._cluster, step)
            if self._tenant is not None:
                with self._tenant.transaction(force_rollback=True):
                    for step in tenant_steps:
                        self._execute(self._tenant, step)
            else:
                for step in tenant_steps:
                    self._execute(None, step)
            return
        # Real run: consecutive transactional steps share a transaction; CREATE/DROP DATABASE run on their own.
        batch: list[_Step] = []
        for step in cluster_steps:
            if step.transactional:
                batch.append(step)
                continue
            self._run_batch(self._cluster, batch)
            batch = []
            self._execute(self._cluster, step)
        self._run_batch(self._cluster, batch)
        if tenant_steps:
            if self._tenant is None:
                self._tenant = self._connect(self.database)
            self._run_batch(self._tenant, tenant_steps)

    def _run_batch(self, conn: Any, steps: list[_Step]) -> None:
        if not steps:
            return
        with conn.transaction():
            for step in steps:
                self._execute(conn, step)

    # ----------------------------------------------------------------------------------------------- result
    def run(self) -> dict[str, Any]:
        """Validate, then read -> plan -> apply (connections closed whatever happens); the module's result."""
        self.validate()
        try:
            self.read()
            self.plan()
            self.apply()
        finally:
            self.close()
        return self.result()

    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "changed": bool(self.steps),
            "tenant": self.name,
            "database": self.database,
            "owner": self.owner,
            "queries": self.queries,
            "extensions": self.extensions if self.params["state"] == "present" else [],
            "diff": {"before": self.before, "after": self.after},
        }
        if self.params["state"] == "absent":
            result["kept"] = self.kept
        return result


def run_tenants(module: Any) -> dict[str, Any]:
    """The ``tenants`` form: each tenant read, planned and applied in turn, as one call per tenant would; the
    first that fails stops the run, naming it (the ones before it are done, as with a loop). Then the ``readers``,
    each the same way (``readers`` in the result)."""
    from ansible_collections.borgstack.stack.plugins.module_utils._postgresql_reader import run_readers

    results: list[dict[str, Any]] = []
    readers: list[dict[str, Any]] = []
    cluster = None  # one connection to the maintenance database for every tenant, opened by the first
    try:
        for tenant in module.params["tenants"] or []:
            params = {**module.params, **{option: tenant.get(option) for option in TENANT_OPTIONS}}
            manager = TenantManager(module, params, cluster, keep_cluster=True)
            try:
                results.append(manager.run())
            except TenantError as exc:
                raise TenantError(f"tenant {tenant['name']}: {exc}", results=results,
                                  queries=manager.queries) from exc
            finally:
                cluster = manager.cluster
        try:
            readers, cluster = run_readers(module, cluster)
        except TenantError as exc:
            exc.details["results"] = results
            raise
    finally:
        if cluster is not None:
            cluster.close()
    return {"changed": any(result["changed"] for result in results + readers), "tenants": results,
            "readers": readers, "diff": [result["diff"] for result in results + readers]}
