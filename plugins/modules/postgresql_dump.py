#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: postgresql_dump
short_description: Dump the roles and databases of a PostgreSQL container into a root-only directory
version_added: 0.3.0
description:
  - Dumps through the PostgreSQL container (C(docker exec), as C(postgres)) into O(dir) - created root-only
    (V(0700)) when missing - the cluster's roles and tablespaces with C(pg_dumpall --globals-only) into
    C(globals.sql) when O(globals=true), then each database of O(databases) with C(pg_dump -Fc) into
    C(<database>.dump).
  - Each file is root-only (V(0600)) before it holds data. A dump that fails or writes nothing stops the run with
    pg_dump's own message, and its file is removed; the dumps written before it stay.
  - With O(update), instead, one pre-update dump C(<update.name>-<UTC time>.dump) of the database
    O(update.database) in O(dir), the oldest of that name beyond O(update.keep) deleted - the dump
    M(borgstack.stack.compose_deploy) makes before an update on one host, taken here on the node that runs
    PostgreSQL before a swarm update (the play delegates to it).
  - With O(restore), instead, the dump O(restore.path) put back in place of the database O(restore.database);
    the database first refuses new sessions and its open ones are ended (its clients may still run, as a swarm's
    rolled-back tasks do), then C(pg_restore --clean --if-exists --create) drops and recreates it, owner and grants as
    dumped - the restore M(borgstack.stack.compose_deploy) makes when an update is rolled back on one host, made here
    on the node that runs PostgreSQL when the swarm rolled a service's update back (the play delegates to it). A
    failed restore stops the run with pg_restore's own message (the database accepts sessions again).
  - The same dump helper makes the pre-update dump of M(borgstack.stack.compose_deploy).
extends_documentation_fragment:
  - borgstack.stack.attributes
attributes:
  check_mode:
    details:
      - Check mode dumps nothing and reports the files that would be written.
  diff_mode:
    support: none
  idempotent:
    description:
      - A dump is taken (or a dump restored) on every run (it is a copy of the data as it is now), so every run
        outside check mode reports a change.
    support: none
options:
  container:
    description: The PostgreSQL container.
    type: str
    required: true
  databases:
    description: The databases to dump, in this order.
    type: list
    elements: str
    default: []
  globals:
    description: Dump the roles (with their password verifiers) and tablespaces into C(globals.sql) first.
    type: bool
    default: false
  dir:
    description: Directory of the dumps (created root-only when missing; an existing one is made V(0700)).
    type: path
    required: true
  update:
    description:
      - A pre-update dump (exclusive with O(databases) and O(globals)).
    type: dict
    suboptions:
      database:
        description: The database to dump.
        type: str
        required: true
      name:
        description: The service the dump is named after (C(<name>-<UTC time>.dump)).
        type: str
        required: true
      keep:
        description: How many pre-update dumps of O(update.name) are kept in O(dir) (the oldest are deleted).
        type: int
        default: 3
  restore:
    description:
      - A dump put back (exclusive with O(update), O(databases) and O(globals)).
    type: dict
    suboptions:
      database:
        description: The database the dump replaces (dropped and recreated from the dump).
        type: str
        required: true
      path:
        description: The dump (C(pg_dump -Fc)), on the target host.
        type: path
        required: true
notes:
  - Needs the Docker CLI on the target host.
"""

EXAMPLES = r"""
- name: Dump the roles and two databases before a major upgrade
  borgstack.stack.postgresql_dump:
    container: borgstack-postgresql
    globals: true
    databases: [n8n, directus]
    dir: /var/backups/borgstack/upgrades/pg15-to-pg17-20261206T120000Z

- name: Dump n8n's database before its swarm services get a new image, on the node running PostgreSQL
  borgstack.stack.postgresql_dump:
    container: borgstack_postgresql.1.abcdefghijklmnopqrstuvwxy
    dir: /var/backups/borgstack/updates
    update: {database: n8n, name: n8n, keep: 3}
  delegate_to: data-node
- name: Put n8n's database back from that dump after the swarm rolled n8n's update back
  borgstack.stack.postgresql_dump:
    container: borgstack_postgresql.1.abcdefghijklmnopqrstuvwxy
    dir: /var/backups/borgstack/updates
    restore: {database: n8n, path: /var/backups/borgstack/updates/n8n-20261207T080000Z.dump}
  delegate_to: data-node
"""

RETURN = r"""
files:
  description: The dumps written (or that would be, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [/var/backups/borgstack/upgrades/x/globals.sql, /var/backups/borgstack/upgrades/x/n8n.dump]
restored:
  description: With O(restore), the dump put back.
  returned: success with O(restore), outside check mode
  type: str
  sample: /var/backups/borgstack/updates/n8n-20261207T080000Z.dump
dump:
  description: With O(update), the pre-update dump written.
  returned: success with O(update), outside check mode
  type: str
  sample: /var/backups/borgstack/updates/n8n-20261207T080000Z.dump
commands:
  description: The docker commands run, abbreviated.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.borgstack.stack.plugins.module_utils._pg_dump import PgDump, PgDumpError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "databases": {"type": "list", "elements": "str", "default": []},
            "globals": {"type": "bool", "default": False},
            "dir": {"type": "path", "required": True},
            "update": {"type": "dict", "options": {
                "database": {"type": "str", "required": True},
                "name": {"type": "str", "required": True},
                "keep": {"type": "int", "default": 3},
            }},
            "restore": {"type": "dict", "options": {
                "database": {"type": "str", "required": True},
                "path": {"type": "path", "required": True},
            }},
        },
        mutually_exclusive=[("update", "databases"), ("update", "globals"), ("update", "restore"),
                            ("restore", "databases"), ("restore", "globals")],
        supports_check_mode=True,
    )
    params = module.params
    directory = params["dir"]
    if params["update"]:
        _update_dump(module, params)
    if params["restore"]:
        _restore(module, params)
    # (database, file); None stands for the roles and tablespaces (pg_dumpall --globals-only)
    wanted = ([(None, os.path.join(directory, "globals.sql"))] if params["globals"] else []) + [
        (database, os.path.join(directory, f"{database}.dump")) for database in params["databases"]]
    commands: list[str] = []
    if module.check_mode:
        module.exit_json(changed=bool(wanted), files=[path for _what, path in wanted], commands=commands)
    docker = module.get_bin_path("docker", required=True)
    dumper = PgDump(module, docker, params["container"], commands, run_docker=None)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    written: list[str] = []
    for database, path in wanted:
        try:
            if database is None:
                dumper.dump_globals(path)
            else:
                dumper.dump(database, path)
        except PgDumpError as exc:
            what = "the roles" if database is None else f"the database {database}"
            module.fail_json(msg=f"{params['container']}: the dump of {what} into {path} failed: {exc}",
                             files=written, commands=commands)
        written.append(path)
    module.exit_json(changed=bool(written), files=written, commands=commands)


def _update_dump(module: AnsibleModule, params: dict) -> None:
    """The pre-update dump (PgDump.dump_rotated, as compose_deploy's); exits the module."""
    update = params["update"]
    commands: list[str] = []
    if module.check_mode:
        module.exit_json(changed=True, files=[], commands=commands,
                         msg=f"the database {update['database']} would be dumped into {params['dir']}")
    docker = module.get_bin_path("docker", required=True)
    dumper = PgDump(module, docker, params["container"], commands, run_docker=None)
    try:
        path = dumper.dump_rotated(update["database"], params["dir"], update["name"], update["keep"])
    except PgDumpError as exc:
        module.fail_json(msg=f"{params['container']}: the pre-update dump of the database {update['database']} into "
                             f"{params['dir']} failed, so nothing was updated: {exc}", files=[], commands=commands)
    module.exit_json(changed=True, files=[path], dump=path, commands=commands)


def _restore(module: AnsibleModule, params: dict) -> None:
    """A dump put back (PgDump.restore, as compose_deploy's rollback, refusing new sessions first); exits the
    module."""
    restore = params["restore"]
    commands: list[str] = []
    if not os.path.isfile(restore["path"]):
        module.fail_json(msg=f"{params['container']}: the dump {restore['path']} to restore the database "
                             f"{restore['database']} from does not exist: nothing was restored.", commands=commands)
    if module.check_mode:
        module.exit_json(changed=True, files=[], commands=commands,
                         msg=f"the database {restore['database']} would be restored from {restore['path']}")
    docker = module.get_bin_path("docker", required=True)

    def run_docker(*args: str, check: bool = True, data: str | None = None) -> tuple[int, str, str]:
        commands.append(" ".join(["docker", *args[:3]]))
        rc, out, err = module.run_command([docker, *args], data=data)
        if check and rc != 0:
            raise PgDumpError(f"docker {' '.join(args[:4])} failed: {err.strip() or out.strip()}")
        return rc, out, err

    dumper = PgDump(module, docker, params["container"], commands, run_docker=run_docker)
    try:
        dumper.restore(restore["database"], restore["path"], refuse_sessions=True)
    except PgDumpError as exc:
        module.fail_json(msg=f"{params['container']}: the restore of the database {restore['database']} from "
                             f"{restore['path']} failed: {exc}", files=[], commands=commands)
    module.exit_json(changed=True, files=[], restored=restore["path"], commands=commands)


if __name__ == "__main__":
    main()
