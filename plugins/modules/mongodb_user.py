#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mongodb_user
short_description: Manage a MongoDB user, its roles and its password without false changes
version_added: 0.1.0
description:
  - Creates, updates or drops a user in a MongoDB database (SCRAM authentication).
  - The current user is read with C(usersInfo) and C(showCredentials). Roles are compared as a set of
    (role, database) pairs, so their order does not matter.
  - The password is B(verified), not assumed changed. The desired password is hashed with the stored salt and
    iteration count and compared with the stored SCRAM-SHA-256 (or SCRAM-SHA-1) keys. When the stored keys
    cannot be read, the module tries to log in as the user with a new connection. The user is updated only
    when one of these checks fails, so a second run with the same input reports no change.
  - Needs the Python library C(pymongo) on the host that runs the module.
author:
  - BorgStack engineers (@borgstack)
requirements:
  - pymongo
options:
  name:
    description:
      - Name of the user.
    type: str
    required: true
    aliases: [user]
  database:
    description:
      - The user's authentication database (where the user is created).
      - Roles given as plain strings are granted on this database.
    type: str
    required: true
    aliases: [db]
  password:
    description:
      - The user's password.
      - Required with O(state=present), except for an existing user with O(update_password=on_create).
      - Never logged or returned. With O(mechanisms) containing C(SCRAM-SHA-256) it must pass SASLprep
        (RFC 4013), as the server requires.
    type: str
  roles:
    description:
      - The complete list of roles the user must have. Roles not listed are revoked; V([]) revokes all.
      - Each item is a role name (granted on O(database)) or a dictionary with the keys C(role) and C(db)
        (C(db) defaults to O(database)).
      - Compared as a set, so order and duplicates do not matter.
      - When omitted, an existing user keeps its roles and a new user gets none.
    type: list
    elements: raw
  state:
    description:
      - V(present) creates or updates the user; V(absent) drops it.
    type: str
    choices: [present, absent]
    default: present
  update_password:
    description:
      - V(always) makes sure the existing user's password is O(password). The stored credentials are
        checked first and the password is set only when it differs.
      - V(on_create) sets the password only when the user is created and never checks or changes it
        afterwards.
    type: str
    choices: [always, on_create]
    default: always
  mechanisms:
    description:
      - SCRAM mechanisms the user's credentials are created for.
      - Changing the set of mechanisms of an existing user needs O(password), unless mechanisms are only
        removed.
    type: list
    elements: str
    choices: [SCRAM-SHA-256, SCRAM-SHA-1]
    default: [SCRAM-SHA-256]
  login_host:
    description:
      - Host of the MongoDB server to connect to.
      - With O(login_container), as seen from inside that container (V(127.0.0.1) for MongoDB's own).
    type: str
    default: localhost
  login_container:
    description:
      - A running container on this host whose network namespace the module enters (C(setns), as root, which needs
        C(CAP_SYS_ADMIN)) before it connects - on a Docker Swarm, the MongoDB task's own container, whose address on
        the overlay the host cannot reach. Found with C(docker container inspect) (the C(docker) CLI is needed).
      - Without it the module connects from the host's network.
    type: str
  login_port:
    description:
      - Port of the MongoDB server.
    type: int
    default: 27017
  login_user:
    description:
      - User to connect as. It needs the C(createUser), C(dropUser), C(grantRole), C(revokeRole),
        C(changePassword) and C(viewUser) actions on O(database), for example the C(userAdminAnyDatabase)
        role.
      - Without it the module connects without authentication (for example to create the first user through
        the localhost exception).
    type: str
  login_password:
    description:
      - Password of O(login_user).
    type: str
  login_database:
    description:
      - Authentication database of O(login_user).
    type: str
    default: admin
  auth_mechanism:
    description:
      - Mechanism O(login_user) authenticates with. Without it the driver negotiates one with the server.
    type: str
    choices: [SCRAM-SHA-256, SCRAM-SHA-1]
  tls:
    description:
      - Connect with TLS. Setting O(tls_ca_file) or O(tls_certificate_key_file) turns TLS on as well.
    type: bool
    default: false
  tls_ca_file:
    description:
      - CA certificates file used to verify the server's certificate.
    type: path
  tls_certificate_key_file:
    description:
      - File with the client certificate and its private key, for servers that ask for one.
    type: path
  tls_allow_invalid_certificates:
    description:
      - Accept a server certificate that does not verify. Only for lab setups.
    type: bool
    default: false
  connect_timeout:
    description:
      - Seconds to wait for the server when connecting and when selecting it.
    type: int
    default: 10
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Reads the user and checks the password exactly as a normal run does, then reports the change without
        sending C(createUser), C(updateUser) or C(dropUser).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff shows roles and mechanisms. The password appears only as the marker V(<changed>) or
        V(<unchanged>), never as its value.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - The password is verified against the stored SCRAM keys (or by logging in when they cannot be read),
        not assumed to have changed.
  action_group:
    description: Use C(group/borgstack.stack.stack) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - borgstack.stack.stack
notes:
  - With O(update_password=always) each run computes PBKDF2 over the stored iteration count (15000 by default
    for SCRAM-SHA-256), which takes a few milliseconds per user.
  - MongoDB does not store the order of roles; the returned O(roles) are sorted by database, then role.
seealso:
  - name: usersInfo command
    description: How MongoDB reports users and their credentials.
    link: https://www.mongodb.com/docs/manual/reference/command/usersInfo/
  - name: SCRAM in MongoDB
    description: The SCRAM mechanisms MongoDB supports.
    link: https://www.mongodb.com/docs/manual/core/security-scram/
"""

EXAMPLES = r"""
- name: Create the Lowcoder database user
  borgstack.stack.mongodb_user:
    login_user: admin
    login_password: "{{ mongodb_service.secrets.mongodb_root_password }}"
    name: lowcoder_user
    database: lowcoder
    password: "{{ lowcoder_service.mongodb.password }}"
    roles:
      - readWrite
      - role: dbAdmin
        db: lowcoder
  no_log: true

- name: Grant read access to another database, keeping whatever password the user has
  borgstack.stack.mongodb_user:
    login_user: admin
    login_password: "{{ mongodb_service.secrets.mongodb_root_password }}"
    name: reporting
    database: admin
    update_password: on_create
    password: "{{ reporting_initial_password }}"
    roles:
      - role: read
        db: lowcoder
  no_log: true

- name: Remove a user
  borgstack.stack.mongodb_user:
    login_user: admin
    login_password: "{{ mongodb_service.secrets.mongodb_root_password }}"
    name: old_app
    database: old_app
    state: absent
"""

RETURN = r"""
user:
  description: Name of the user.
  returned: always
  type: str
  sample: lowcoder_user
database:
  description: Authentication database of the user.
  returned: always
  type: str
  sample: lowcoder
roles:
  description: Roles the user has after the run (empty when the user is absent), sorted by database, then role.
  returned: always
  type: list
  elements: dict
  sample: [{"role": "readWrite", "db": "lowcoder"}]
mechanisms:
  description: SCRAM mechanisms of the user after the run (empty when the user is absent).
  returned: always
  type: list
  elements: str
  sample: [SCRAM-SHA-256]
password_check:
  description:
    - How the password was compared with the existing user's.
    - V(stored_credentials) hashed it with the stored salt; V(authentication) logged in as the user because the
      stored keys could not be read; V(skipped) means it was not compared (O(update_password=on_create),
      O(state=absent) or a new user).
  returned: always
  type: str
  sample: stored_credentials
actions:
  description: Commands the module ran (or would run in check mode), without secrets.
  returned: always
  type: list
  elements: str
  sample: ["updateUser lowcoder_user on lowcoder (password, roles)"]
diff:
  description: State before and after. The password appears only as V(<changed>) or V(<unchanged>).
  returned: always
  type: dict
  sample:
    before: {"user": "lowcoder_user", "database": "lowcoder", "state": "present",
             "roles": [{"role": "read", "db": "lowcoder"}], "mechanisms": ["SCRAM-SHA-256"],
             "password": "<unchanged>"}
    after: {"user": "lowcoder_user", "database": "lowcoder", "state": "present",
            "roles": [{"role": "readWrite", "db": "lowcoder"}], "mechanisms": ["SCRAM-SHA-256"],
            "password": "<changed>"}
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.borgstack.stack.plugins.module_utils._mongodb import (
    ERROR_UNAUTHORIZED,
    HAS_PYMONGO,
    MONGODB_REQUIRED_TOGETHER,
    PYMONGO_IMPORT_ERROR,
    MongoAdminClient,
    MongoCommandError,
    mongodb_common_argument_spec,
)
from ansible_collections.borgstack.stack.plugins.module_utils._netns import enter_module_netns
from ansible_collections.borgstack.stack.plugins.module_utils._scram import (
    SCRAM_MECHANISMS,
    SCRAM_SHA_256,
    SaslPrepError,
    saslprep,
    verify_scram_credentials,
)

PASSWORD_CHANGED = "<changed>"
PASSWORD_UNCHANGED = "<unchanged>"


class MongoUserError(Exception):
    """Invalid input or an impossible request; the message says what to change."""


def argument_spec() -> dict[str, dict[str, Any]]:
    spec = mongodb_common_argument_spec()
    spec.update(
        name=dict(type="str", required=True, aliases=["user"]),
        database=dict(type="str", required=True, aliases=["db"]),
        password=dict(type="str", no_log=True),
        roles=dict(type="list", elements="raw"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        update_password=dict(type="str", choices=["always", "on_create"], default="always"),
        mechanisms=dict(type="list", elements="str", choices=["SCRAM-SHA-256", "SCRAM-SHA-1"],
                        default=[SCRAM_SHA_256]),
    )
    return spec


def normalize_roles(roles: list[Any] | None, database: str, strict: bool = True) -> list[dict[str, str]]:
    """Roles as a sorted, duplicate-free list of {"role", "db"}; strings mean a role on ``database``.

    ``strict`` rejects keys other than role and db (user input); server documents are read leniently.
    """
    pairs = set()
    for index, item in enumerate(roles or []):
        if isinstance(item, str):
            pairs.add((item, database))
            continue
        if not isinstance(item, dict):
            raise MongoUserError(
                f"roles[{index}] must be a role name or a dictionary with 'role' and 'db', "
                f"got {type(item).__name__}"
            )
        unknown = sorted(set(item) - {"role", "db"})
        if strict and unknown:
            raise MongoUserError(f"roles[{index}] has unknown keys {', '.join(unknown)}; use 'role' and 'db'")
        role = item.get("role")
        db = item.get("db") or database
        if not isinstance(role, str) or not role or not isinstance(db, str):
            raise MongoUserError(f"roles[{index}] needs a non-empty string 'role' (and optionally 'db')")
        pairs.add((role, db))
    return [{"role": role, "db": db} for db, role in sorted((db, role) for role, db in pairs)]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class MongoUserManager:
    """Reads the user, compares it with the parameters and applies only what differs."""

    def __init__(self, client: Any, params: dict[str, Any], check_mode: bool = False) -> None:
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.name: str = params["name"]
        self.database: str = params["database"]
        self.actions: list[str] = []
        self.password_check = "skipped"

    # -- read -------------------------------------------------------------------------------------------------

    def read(self) -> dict[str, Any] | None:
        """The user's usersInfo document, with credentials when the login user may see them."""
        try:
            return self.client.users_info(self.database, self.name, show_credentials=True)
        except MongoCommandError as exc:
            if exc.code != ERROR_UNAUTHORIZED:
                raise
        # Not allowed to see credentials: read the user without them and verify by logging in.
        return self.client.users_info(self.database, self.name, show_credentials=False)

    # -- compare ----------------------------------------------------------------------------------------------

    def password_matches(self, current: dict[str, Any], password: str, mechanisms: list[str]) -> bool:
        """Whether the existing user's password is ``password``.

        Checked against every stored SCRAM verifier of the desired mechanisms (or, if the user has none of
        those, every stored one). Without readable verifiers, by logging in as the user.
        """
        credentials = current.get("credentials")
        stored = {}
        if isinstance(credentials, dict):
            stored = {m: credentials[m] for m in SCRAM_MECHANISMS if isinstance(credentials.get(m), dict)}
        if stored:
            to_check = [m for m in mechanisms if m in stored] or list(stored)
            try:
                result = all(verify_scram_credentials(password, stored, m, self.name) for m in to_check)
            except SaslPrepError:
                raise  # the password itself is unusable; _check_password_input reports it first
            except ValueError:
                pass  # malformed stored document: fall back to logging in
            else:
                self.password_check = "stored_credentials"
                return result

        self.password_check = "authentication"
        current_mechanisms = current.get("mechanisms") or []
        mechanism = next((m for m in mechanisms if m in current_mechanisms), None)
        return bool(self.client.can_authenticate(self.database, self.name, password, mechanism))

    def _check_password_input(self, password: str | None, mechanisms: list[str], why: str) -> str:
        if password is None:
            raise MongoUserError(
                f"password is required {why}; set it, or use update_password=on_create for an existing user"
            )
        if password == "":
            raise MongoUserError("password must not be empty")
        if SCRAM_SHA_256 in mechanisms:
            try:
                saslprep(password)
            except SaslPrepError as exc:
                raise MongoUserError(f"password cannot be used with SCRAM-SHA-256: {exc}") from None
        return password

    @staticmethod
    def _current_mechanisms(current: dict[str, Any], default: list[str]) -> list[str]:
        """The user's mechanisms; from its credentials if the server did not list them, else ``default``."""
        listed = current.get("mechanisms")
        if isinstance(listed, list) and listed:
            return sorted(listed)
        credentials = current.get("credentials")
        if isinstance(credentials, dict):
            from_credentials = [m for m in SCRAM_MECHANISMS if m in credentials]
            if from_credentials:
                return sorted(from_credentials)
        return sorted(default)

    # -- apply ------------------------------------------------------------------------------------------------

    def _absent(self) -> dict[str, Any]:
        return {"user": self.name, "database": self.database, "state": "absent"}

    def _present(self, roles: list[dict[str, str]], mechanisms: list[str], password: str) -> dict[str, Any]:
        return {
            "user": self.name,
            "database": self.database,
            "state": "present",
            "roles": roles,
            "mechanisms": mechanisms,
            "password": password,
        }

    def _result(self, changed: bool, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        return {
            "changed": changed,
            "user": self.name,
            "database": self.database,
            "roles": after.get("roles") or [],
            "mechanisms": after.get("mechanisms") or [],
            "password_check": self.password_check,
            "actions": list(self.actions),
            "diff": {"before": before, "after": after},
        }

    def ensure_absent(self, current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            return self._result(False, self._absent(), self._absent())
        before = self._present(
            normalize_roles(current.get("roles"), self.database, strict=False),
            self._current_mechanisms(current, []),
            PASSWORD_UNCHANGED,
        )
        self.actions.append(f"dropUser {self.name} on {self.database}")
        if not self.check_mode:
            self.client.drop_user(self.database, self.name)
        return self._result(True, before, self._absent())

    def ensure_present(self, current: dict[str, Any] | None) -> dict[str, Any]:
        wanted_roles = self.params.get("roles")
        roles = normalize_roles(wanted_roles, self.database)
        mechanisms = _unique(self.params.get("mechanisms") or [SCRAM_SHA_256])
        password = self.params.get("password")

        if current is None:
            password = self._check_password_input(password, mechanisms, "to create the user")
            self.actions.append(f"createUser {self.name} on {self.database}")
            if not self.check_mode:
                self.client.create_user(self.database, self.name, password, roles, mechanisms)
            after = self._present(roles, sorted(mechanisms), PASSWORD_CHANGED)
            return self._result(True, self._absent(), after)

        current_roles = normalize_roles(current.get("roles"), self.database, strict=False)
        if wanted_roles is None:
            roles = current_roles
        current_mechanisms = self._current_mechanisms(current, mechanisms)
        before = self._present(current_roles, current_mechanisms, PASSWORD_UNCHANGED)

        password_differs = False
        if self.params.get("update_password") == "always":
            password = self._check_password_input(password, mechanisms, "with update_password=always")
            password_differs = not self.password_matches(current, password, mechanisms)
        roles_differ = {(r["role"], r["db"]) for r in roles} != {(r["role"], r["db"]) for r in current_roles}
        mechanisms_differ = set(mechanisms) != set(current_mechanisms)

        update: dict[str, Any] = {}
        if password_differs:
            update["password"] = password
        if roles_differ:
            update["roles"] = roles
        if mechanisms_differ:
            update["mechanisms"] = mechanisms
            if self.params.get("update_password") == "always":
                # New verifiers are computed from the password; sending it with the same value is harmless.
                update["password"] = password
            elif not set(mechanisms) <= set(current_mechanisms):
                raise MongoUserError(
                    f"adding mechanisms {', '.join(sorted(set(mechanisms) - set(current_mechanisms)))} to "
                    f"{self.name} needs the password: set password and update_password=always"
                )

        after = self._present(
            roles,
            sorted(mechanisms),
            PASSWORD_CHANGED if password_differs else PASSWORD_UNCHANGED,
        )
        if not update:
            return self._result(False, before, after)

        # The password may be sent only to rebuild the verifiers for new mechanisms: not a password change.
        fields = [label for label, differs in (("password", password_differs), ("roles", roles_differ),
                                               ("mechanisms", mechanisms_differ)) if differs]
        self.actions.append(f"updateUser {self.name} on {self.database} ({', '.join(fields)})")
        if not self.check_mode:
            self.client.update_user(self.database, self.name, **update)
        return self._result(True, before, after)

    def run(self) -> dict[str, Any]:
        current = self.read()
        if self.params.get("state") == "absent":
            return self.ensure_absent(current)
        return self.ensure_present(current)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_together=MONGODB_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    if not HAS_PYMONGO:
        module.fail_json(msg=missing_required_lib("pymongo"), exception=PYMONGO_IMPORT_ERROR)

    container = module.params.get("login_container")
    if container:
        # For the rest of the module: pymongo's monitor threads inherit the namespace of the thread creating them.
        enter_module_netns(module, container, "login_container")

    client = MongoAdminClient(module.params)
    try:
        result = MongoUserManager(client, module.params, module.check_mode).run()
    except (MongoUserError, MongoCommandError) as exc:
        module.fail_json(msg=f"{module.params['name']} on {module.params['database']}: {exc}")
    finally:
        client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
