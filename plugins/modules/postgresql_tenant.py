#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_tenant
short_description: One PostgreSQL tenant per application - database, owner role, extensions, closed CONNECT
version_added: 0.1.0
description:
  - Ensures everything one application needs in a shared PostgreSQL cluster, in one call - an owner role with a
    password, a database owned by it, the extensions the application expects, and a database that no other role
    may connect to.
  - The password is stored as a SCRAM-SHA-256 verifier computed on the managed node (4096 iterations, random
    16-byte salt); the plaintext is never sent in an SQL statement. Whether the password changed is decided by
    checking the desired password against the stored verifier, so a second run reports no change. An md5 or
    plaintext stored password counts as a change and is rewritten as SCRAM.
  - The owner role gets C(LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS) and the requested
    connection limit.
  - C(CONNECT) and C(TEMPORARY) on the database are revoked from C(PUBLIC); the owner keeps C(CONNECT). The ACL is
    read from C(pg_database.datacl) and only changed when it differs.
  - Extensions are created by the superuser inside the tenant database (some applications fail their
    migrations when they try to create C(vector) as the application user). Extensions already installed and not
    listed are left alone; the module never drops extensions.
  - The owner gets the right to create objects in schema C(public) (PostgreSQL 15 no longer grants it to
    C(PUBLIC)). On PostgreSQL 15+ a C(public) schema owned by C(pg_database_owner) already gives the database
    owner that right and is left as it is; otherwise, and always in a database the module creates, the schema
    is handed to the owner (C(ALTER SCHEMA public OWNER TO)).
  - O(state=absent) never drops a database unless O(drop_database=true) says so. Without it, the role only loses
    C(LOGIN) and the result lists what was kept.
extends_documentation_fragment:
  - borgstack.stack.attributes
  - borgstack.stack.postgresql
attributes:
  check_mode:
    details:
      - Check mode runs the same statements inside transactions that are rolled back, so they are validated by the
        server without changing it.
      - C(CREATE DATABASE) and C(DROP DATABASE) cannot run inside a transaction, so in check mode they are not
        executed, only reported in RV(queries). Statements that depend on a database that does not exist yet
        (ACL, extensions, schema) are reported as would-change without being tried, so the server cannot reject
        them before the real run.
  diff_mode:
    details:
      - The diff shows role attributes, whether the password changes (as V(<unchanged>) or V(<changed>), never
        the secret), the database owner, installed extensions and whether CONNECT is revoked from PUBLIC.
options:
  name:
    description:
      - Name of the tenant, usually the application (V(n8n), V(chatwoot)).
      - Must be a plain SQL identifier - 1 to 63 characters from V(a-z), V(0-9) and V(_), not starting with a
        digit. Other names are refused.
      - One of O(name), O(tenants) and O(readers) is required.
    type: str
  database:
    description:
      - Name of the tenant's database. Same rules as O(name). Defaults to O(name).
    type: str
  owner:
    description:
      - Name of the role that owns the database and logs in as the application. Same rules as O(name); must not
        start with V(pg_), be O(login_user), or be an existing superuser. Defaults to O(name).
    type: str
  password:
    description:
      - Password of O(owner). Required when O(state=present).
    type: str
  extensions:
    description:
      - Extensions to create in the tenant database, for example V(vector), V(pg_trgm), V(pgcrypto),
        V(pg_stat_statements). Dependencies are created too (C(CASCADE)).
      - An extension that the server does not offer (C(pg_available_extensions)) is refused before any change.
    type: list
    elements: str
    default: []
  connection_limit:
    description:
      - Maximum concurrent connections of O(owner); V(-1) means no limit.
    type: int
    default: -1
  state:
    description:
      - V(present) creates or updates the tenant.
      - V(absent) revokes C(LOGIN) from the owner, keeping role and database, unless O(drop_database=true).
    type: str
    choices: [present, absent]
    default: present
  drop_database:
    description:
      - With O(state=absent), drop the database (with all its data) and then the owner role.
      - Fails without changing anything else when applications are still connected to the database.
    type: bool
    default: false
  tenants:
    description:
      - Several tenants in one call, each with the options O(name) (required), O(database), O(owner),
        O(password), O(extensions), O(connection_limit), O(state) and O(drop_database); the login options are
        shared. One module run instead of one per tenant (a loop).
      - Each tenant is read, planned and applied in turn, exactly as a call of its own would be; the first one that
        fails stops the run with its name in the message, and the tenants before it stay done.
      - Mutually exclusive with O(name), O(database), O(owner) and O(password).
    type: list
    elements: dict
    suboptions:
      name: {description: As O(name)., type: str, required: true}
      database: {description: As O(database)., type: str}
      owner: {description: As O(owner)., type: str}
      password: {description: As O(password)., type: str}
      extensions: {description: As O(extensions)., type: list, elements: str, default: []}
      connection_limit: {description: As O(connection_limit)., type: int, default: -1}
      state: {description: As O(state)., type: str, choices: [present, absent], default: present}
      drop_database: {description: As O(drop_database)., type: bool, default: false}
  readers:
    description:
      - Reader roles, handled after the tenants - a login that watches (an exporter) rather than owns - with
        C(LOGIN) and no other attribute, a member of O(readers[].roles), C(CONNECT) on each database of
        O(readers[].grants) and C(SELECT) on the tables named there (schema C(public)), nothing else.
      - A named table that does not exist yet (created later by the app's migrations or a workflow) is granted when
        it is created - an event trigger in that database grants C(SELECT) on exactly the named tables to the
        reader - and is listed under RV(readers[].pending) meanwhile. C(ALTER DEFAULT PRIVILEGES) is not used (it
        cannot name a table, so every later table of the owner would be readable).
      - A database of O(readers[].grants) that does not exist is skipped; a later run grants it.
      - With O(readers[].state=absent) the event triggers and their functions are dropped, the grants revoked
        (C(DROP OWNED BY)) and the role dropped.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the reader role - same rules as O(name), not starting with V(pg_).
        type: str
        required: true
      password:
        description: Its password, required with O(readers[].state=present); stored as a SCRAM verifier.
        type: str
      roles:
        description:
          - Predefined roles it is a member of - V(pg_monitor), V(pg_read_all_stats), V(pg_stat_scan_tables) and
            V(pg_read_all_settings) only; other memberships are revoked.
        type: list
        elements: str
        default: [pg_monitor]
      grants:
        description: Databases it may connect to, each with the tables of schema C(public) it may read.
        type: list
        elements: dict
        default: []
        suboptions:
          database: {description: Name of the database., type: str, required: true}
          tables:
            description: Tables of schema C(public) it may C(SELECT).
            type: list
            elements: str
            default: []
      connection_limit:
        description: Maximum concurrent connections; V(-1) means no limit.
        type: int
        default: 3
      state:
        description: V(present), or V(absent) to drop the role and its grants.
        type: str
        choices: [present, absent]
        default: present
notes:
  - The module connects twice - to O(login_db) for roles and databases, and to the tenant database for
    extensions and schema.
seealso:
  - name: PostgreSQL SCRAM-SHA-256 password storage
    description: How PostgreSQL stores and checks SCRAM verifiers.
    link: https://www.postgresql.org/docs/current/auth-password.html
"""

EXAMPLES = r"""
- name: Provide the Chatwoot tenant with the extensions its migrations expect
  borgstack.stack.postgresql_tenant:
    name: chatwoot
    password: "{{ chatwoot_postgresql_password }}"
    extensions: [vector, pg_trgm, pgcrypto, pg_stat_statements]
    login_unix_socket: /var/run/postgresql

- name: Provide n8n with its own database and role, at most 20 connections
  borgstack.stack.postgresql_tenant:
    name: n8n
    database: n8n_production
    owner: n8n_app
    password: "{{ n8n_postgresql_password }}"
    connection_limit: 20
    login_host: 10.10.0.5
    login_password: "{{ postgresql_service.secrets.postgresql_superuser }}"

- name: Provide several tenants in one call
  borgstack.stack.postgresql_tenant:
    tenants:
      - {name: n8n, password: "{{ n8n_postgresql_password }}"}
      - {name: directus, password: "{{ directus_postgresql_password }}", extensions: [postgis]}
    login_unix_socket: /var/run/postgresql

- name: Let the PostgreSQL exporter read server statistics and two of n8n's tables, nothing else
  borgstack.stack.postgresql_tenant:
    readers:
      - name: monitoring_reader
        password: "{{ monitoring_reader_password }}"
        roles: [pg_monitor]
        grants:
          - {database: n8n, tables: [execution_entity, borgstack_cs_errors]}
    login_unix_socket: /var/run/postgresql

- name: Retire a tenant but keep its data (the role can no longer log in)
  borgstack.stack.postgresql_tenant:
    name: lowcoder
    state: absent
    login_unix_socket: /var/run/postgresql

- name: Remove a tenant with its data
  borgstack.stack.postgresql_tenant:
    name: scratch
    state: absent
    drop_database: true
    login_unix_socket: /var/run/postgresql
"""

RETURN = r"""
readers:
  description: With O(readers), one result per reader, in order.
  returned: when O(tenants) or O(readers) is given
  type: list
  elements: dict
  contains:
    reader:
      description: Name of the reader role.
      type: str
      returned: always
      sample: monitoring_reader
    queries:
      description: SQL statements run, or that check mode would run (the password verifier as C(%s)).
      type: list
      elements: str
      returned: always
    pending:
      description: V(database.table) of the named tables that do not exist yet (the event trigger grants them).
      type: list
      elements: str
      returned: always
      sample: [n8n.borgstack_cs_errors]
    diff:
      description: The reader's state before and after (role, memberships, per database CONNECT and granted tables).
      type: dict
      returned: always
tenants:
  description:
    - With O(tenants), one result per tenant, in order, each with the keys below (RV(tenant), RV(database),
      RV(owner), RV(extensions), RV(queries), RV(kept), RV(diff)); those keys are then not returned at the top level.
  returned: when O(tenants) is given
  type: list
  elements: dict
tenant:
  description: Name of the tenant.
  returned: always
  type: str
  sample: chatwoot
database:
  description: Name of the tenant's database.
  returned: always
  type: str
  sample: chatwoot
owner:
  description: Name of the owner role.
  returned: always
  type: str
  sample: chatwoot
extensions:
  description: Extensions ensured in the tenant database (empty with O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: [vector, pg_trgm]
queries:
  description:
    - SQL statements the module ran, or would run in check mode, in order.
    - The password verifier is shown as the placeholder C(%s); no secret and no verifier appears here.
  returned: always
  type: list
  elements: str
  sample:
    - CREATE ROLE "chatwoot" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT -1 PASSWORD %s
    - CREATE DATABASE "chatwoot" OWNER "chatwoot"
    - REVOKE CONNECT, TEMPORARY ON DATABASE "chatwoot" FROM PUBLIC
    - GRANT CONNECT ON DATABASE "chatwoot" TO "chatwoot"
    - CREATE EXTENSION IF NOT EXISTS "vector" CASCADE
kept:
  description: With O(state=absent) and no O(drop_database), what was kept and how to remove it.
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["role chatwoot (NOLOGIN; set drop_database=true to drop it)"]
diff:
  description: State before and after, the same dictionary shape on both sides.
  returned: always
  type: dict
  contains:
    before:
      description: State read from the server.
      type: dict
      returned: always
    after:
      description: State after the run (or after a real run, in check mode).
      type: dict
      returned: always
  sample:
    before:
      tenant: chatwoot
      role: {exists: false}
      password: <old>
      database: {exists: false}
      extensions: []
      connect_revoked_from_public: false
    after:
      tenant: chatwoot
      role: {exists: true, login: true, superuser: false, createdb: false, createrole: false,
             replication: false, bypassrls: false, connection_limit: -1}
      password: <changed>
      database: {exists: true, owner: chatwoot, public_schema_owner: chatwoot}
      extensions: [vector]
      connect_revoked_from_public: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgstack.stack.plugins.module_utils._postgresql import (
    TenantError,
    TenantManager,
    postgresql_tenant_module_kwargs,
    run_tenants,
)
from ansible_collections.borgstack.stack.plugins.module_utils._psycopg import HAS_PSYCOPG, fail_without_psycopg


def main() -> None:
    module = AnsibleModule(**postgresql_tenant_module_kwargs())
    if not HAS_PSYCOPG:
        fail_without_psycopg(module)
    if module.params["tenants"] is not None or module.params["readers"] is not None:
        try:
            module.exit_json(**run_tenants(module))
        except TenantError as exc:
            module.fail_json(msg=str(exc), **exc.details)
    manager = TenantManager(module)
    try:
        result = manager.run()
    except TenantError as exc:
        module.fail_json(msg=str(exc), queries=manager.queries)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
