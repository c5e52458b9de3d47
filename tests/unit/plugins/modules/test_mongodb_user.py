# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the borgstack.stack.mongodb_user module.

What is exercised: the decision logic (read -> compare -> apply) of ``MongoUserManager`` against a fake
client that keeps users in memory, stores SCRAM verifiers the way MongoDB does (random salt, keys derived
with module_utils/_scram.py) and records every call; ``main()`` end to end with that fake injected;
the command documents ``MongoAdminClient`` hands to a mocked pymongo ``MongoClient``.

What is NOT exercised against a real MongoDB server (none can be obtained on these machines):

* that MongoDB 7 accepts the exact ``usersInfo``/``createUser``/``updateUser``/``dropUser`` documents built
  by ``MongoAdminClient``, and returns ``usersInfo`` with ``showCredentials`` in the shape assumed here
  (``credentials`` -> ``SCRAM-SHA-256``/``SCRAM-SHA-1`` -> ``iterationCount``/``salt``/``storedKey``/
  ``serverKey``, plus ``roles`` and ``mechanisms``), as the MongoDB manual documents it;
* that ``can_authenticate`` really logs in through pymongo and that a wrong password surfaces as error
  code 18;
* that the server derives SCRAM-SHA-256 keys from the SASLprep'd password and SCRAM-SHA-1 keys from
  md5("<user>:mongo:<password>"). That part is checked only against published exchanges (RFC 7677 and the
  MongoDB driver authentication specification) in tests/unit/plugins/module_utils/test_scram.py.
"""
from __future__ import annotations

import base64
import copy
import json
import os
from typing import Any
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.borgstack.stack.plugins.module_utils import _mongodb
from ansible_collections.borgstack.stack.plugins.module_utils._mongodb import (
    MongoAdminClient,
    MongoCommandError,
    connection_kwargs,
)
from ansible_collections.borgstack.stack.plugins.module_utils._scram import derive_mongodb_keys
from ansible_collections.borgstack.stack.plugins.modules import mongodb_user
from ansible_collections.borgstack.stack.plugins.modules.mongodb_user import (
    MongoUserError,
    MongoUserManager,
    normalize_roles,
)

SECRET = "s3cret-Lowcoder-pw"
OTHER_SECRET = "another-password-42"
WRITE_CALLS = {"create_user", "update_user", "drop_user"}


def scram_credentials(user: str, password: str, mechanisms: list[str], iterations: int = 4096) -> dict:
    """What MongoDB stores: a fresh random salt per mechanism and the derived keys (base64)."""
    credentials = {}
    for mechanism in mechanisms:
        salt = os.urandom(16 if mechanism == "SCRAM-SHA-1" else 28)
        keys = derive_mongodb_keys(mechanism, user, password, salt, iterations)
        credentials[mechanism] = {
            "iterationCount": iterations,
            "salt": base64.b64encode(salt).decode(),
            "storedKey": base64.b64encode(keys.stored_key).decode(),
            "serverKey": base64.b64encode(keys.server_key).decode(),
        }
    return credentials


class FakeClient:
    """Stands in for MongoAdminClient: users in memory, every call recorded.

    ``hide_credentials``: usersInfo answers without ``credentials`` (verifiers not readable).
    ``deny_credentials``: usersInfo with showCredentials fails with Unauthorized (code 13).
    """

    def __init__(self, hide_credentials: bool = False, deny_credentials: bool = False) -> None:
        self.users: dict[tuple[str, str], dict[str, Any]] = {}
        self.passwords: dict[tuple[str, str], str] = {}
        self.calls: list[tuple] = []
        self.hide_credentials = hide_credentials
        self.deny_credentials = deny_credentials

    def add_user(self, db: str, name: str, password: str, roles: list[dict[str, str]],
                 mechanisms: list[str] | None = None) -> None:
        mechanisms = list(mechanisms or ["SCRAM-SHA-256"])
        self.users[(db, name)] = {
            "_id": f"{db}.{name}",
            "user": name,
            "db": db,
            "roles": copy.deepcopy(roles),
            "mechanisms": mechanisms,
            "credentials": scram_credentials(name, password, mechanisms),
        }
        self.passwords[(db, name)] = password

    def users_info(self, db: str, name: str, show_credentials: bool = True) -> dict[str, Any] | None:
        self.calls.append(("users_info", db, name, show_credentials))
        if show_credentials and self.deny_credentials:
            raise MongoCommandError("not authorized on admin to execute command", code=13)
        user = self.users.get((db, name))
        if user is None:
            return None
        user = copy.deepcopy(user)
        if not show_credentials or self.hide_credentials:
            user.pop("credentials")
        return user

    def create_user(self, db, name, password, roles, mechanisms) -> None:
        self.calls.append(("create_user", db, name, roles, mechanisms))
        self.add_user(db, name, password, roles, mechanisms)

    def update_user(self, db, name, password=None, roles=None, mechanisms=None) -> None:
        self.calls.append(("update_user", db, name, sorted(k for k, v in
                                                           (("password", password), ("roles", roles),
                                                            ("mechanisms", mechanisms)) if v is not None)))
        user = self.users[(db, name)]
        if roles is not None:
            user["roles"] = copy.deepcopy(roles)
        if mechanisms is not None:
            user["mechanisms"] = list(mechanisms)
        if password is not None:
            self.passwords[(db, name)] = password
            user["credentials"] = scram_credentials(name, password, user["mechanisms"])

    def drop_user(self, db, name) -> None:
        self.calls.append(("drop_user", db, name))
        del self.users[(db, name)]
        del self.passwords[(db, name)]

    def can_authenticate(self, db, user, password, mechanism=None) -> bool:
        self.calls.append(("can_authenticate", db, user, mechanism))
        return self.passwords.get((db, user)) == password

    def close(self) -> None:
        self.calls.append(("close",))

    def call_names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def writes(self) -> list[tuple]:
        return [call for call in self.calls if call[0] in WRITE_CALLS]


def params(**overrides: Any) -> dict[str, Any]:
    values = {
        "name": "lowcoder_user",
        "database": "lowcoder",
        "password": SECRET,
        "roles": ["readWrite"],
        "state": "present",
        "update_password": "always",
        "mechanisms": ["SCRAM-SHA-256"],
    }
    values.update(overrides)
    return values


def run(client: FakeClient, check_mode: bool = False, **overrides: Any) -> dict[str, Any]:
    return MongoUserManager(client, params(**overrides), check_mode=check_mode).run()


READ_WRITE = [{"role": "readWrite", "db": "lowcoder"}]


@pytest.fixture
def existing() -> FakeClient:
    client = FakeClient()
    client.add_user("lowcoder", "lowcoder_user", SECRET, READ_WRITE)
    return client


# --------------------------------------------------------------------------------------------------------------
# Decision table
# --------------------------------------------------------------------------------------------------------------


def test_absent_user_is_created():
    client = FakeClient()
    result = run(client)
    assert result["changed"] is True
    assert result["actions"] == ["createUser lowcoder_user on lowcoder"]
    assert client.writes() == [("create_user", "lowcoder", "lowcoder_user", READ_WRITE, ["SCRAM-SHA-256"])]
    assert client.passwords[("lowcoder", "lowcoder_user")] == SECRET
    assert result["roles"] == READ_WRITE
    assert result["diff"]["before"]["state"] == "absent"
    assert result["diff"]["after"]["password"] == "<changed>"


def test_second_run_after_create_is_not_changed():
    client = FakeClient()
    run(client)
    client.calls.clear()
    result = run(client)
    assert result["changed"] is False
    assert client.writes() == []
    assert result["password_check"] == "stored_credentials"


def test_same_password_and_roles_is_not_changed(existing):
    result = run(existing)
    assert result["changed"] is False
    assert result["actions"] == []
    assert existing.writes() == []
    assert "can_authenticate" not in existing.call_names()
    assert result["password_check"] == "stored_credentials"
    assert result["diff"]["before"] == result["diff"]["after"]


def test_different_password_is_updated(existing):
    result = run(existing, password=OTHER_SECRET)
    assert result["changed"] is True
    assert result["actions"] == ["updateUser lowcoder_user on lowcoder (password)"]
    assert existing.writes() == [("update_user", "lowcoder", "lowcoder_user", ["password"])]
    assert existing.passwords[("lowcoder", "lowcoder_user")] == OTHER_SECRET
    assert result["diff"]["before"]["password"] == "<unchanged>"
    assert result["diff"]["after"]["password"] == "<changed>"
    # And now it is settled.
    assert run(existing, password=OTHER_SECRET)["changed"] is False


def test_roles_in_another_order_are_not_changed():
    client = FakeClient()
    client.add_user("lowcoder", "lowcoder_user", SECRET,
                    [{"role": "dbAdmin", "db": "lowcoder"}, {"role": "read", "db": "reporting"},
                     {"role": "readWrite", "db": "lowcoder"}])
    result = run(client, roles=[{"role": "read", "db": "reporting"}, "readWrite",
                                {"role": "dbAdmin", "db": "lowcoder"}, "readWrite"])
    assert result["changed"] is False
    assert client.writes() == []


def test_different_roles_are_updated_without_touching_the_password(existing):
    result = run(existing, roles=["readWrite", {"role": "read", "db": "reporting"}])
    assert result["changed"] is True
    assert result["actions"] == ["updateUser lowcoder_user on lowcoder (roles)"]
    assert existing.writes() == [("update_user", "lowcoder", "lowcoder_user", ["roles"])]
    assert existing.users[("lowcoder", "lowcoder_user")]["roles"] == [
        {"role": "readWrite", "db": "lowcoder"}, {"role": "read", "db": "reporting"}]
    assert result["diff"]["after"]["password"] == "<unchanged>"


def test_same_role_on_another_database_is_updated(existing):
    """A role is a (role, database) pair: readWrite on reporting is not readWrite on lowcoder."""
    result = run(existing, roles=[{"role": "readWrite", "db": "reporting"}])
    assert result["changed"] is True
    assert existing.writes() == [("update_user", "lowcoder", "lowcoder_user", ["roles"])]
    assert existing.users[("lowcoder", "lowcoder_user")]["roles"] == [{"role": "readWrite", "db": "reporting"}]
    assert run(existing, roles=[{"role": "readWrite", "db": "reporting"}])["changed"] is False


def test_role_removed_is_updated(existing):
    result = run(existing, roles=[])
    assert result["changed"] is True
    assert existing.users[("lowcoder", "lowcoder_user")]["roles"] == []


@pytest.mark.parametrize("password", [SECRET, OTHER_SECRET])
def test_omitted_roles_keep_the_current_ones(existing, password):
    result = run(existing, roles=None, password=password)
    assert result["roles"] == READ_WRITE
    assert existing.users[("lowcoder", "lowcoder_user")]["roles"] == READ_WRITE
    assert all("roles" not in call[3] for call in existing.writes())


def test_omitted_roles_create_a_user_without_roles():
    client = FakeClient()
    run(client, roles=None)
    assert client.writes() == [("create_user", "lowcoder", "lowcoder_user", [], ["SCRAM-SHA-256"])]


def test_password_and_roles_together(existing):
    result = run(existing, password=OTHER_SECRET, roles=["read"])
    assert result["actions"] == ["updateUser lowcoder_user on lowcoder (password, roles)"]
    assert existing.writes() == [("update_user", "lowcoder", "lowcoder_user", ["password", "roles"])]


@pytest.mark.parametrize("client_kind", ["hide_credentials", "deny_credentials"])
@pytest.mark.parametrize(("password", "changed"), [(SECRET, False), (OTHER_SECRET, True)])
def test_unreadable_credentials_fall_back_to_authentication(client_kind, password, changed):
    client = FakeClient(**{client_kind: True})
    client.add_user("lowcoder", "lowcoder_user", SECRET, READ_WRITE)
    result = run(client, password=password)
    assert result["changed"] is changed
    assert result["password_check"] == "authentication"
    assert ("can_authenticate", "lowcoder", "lowcoder_user", "SCRAM-SHA-256") in client.calls
    expected_writes = [("update_user", "lowcoder", "lowcoder_user", ["password"])] if changed else []
    assert client.writes() == expected_writes
    if client_kind == "deny_credentials":
        assert [c for c in client.calls if c[0] == "users_info"] == [
            ("users_info", "lowcoder", "lowcoder_user", True),
            ("users_info", "lowcoder", "lowcoder_user", False)]


def test_malformed_stored_credentials_fall_back_to_authentication(existing):
    existing.users[("lowcoder", "lowcoder_user")]["credentials"]["SCRAM-SHA-256"]["salt"] = "%%%"
    result = run(existing)
    assert result["changed"] is False
    assert result["password_check"] == "authentication"


def test_other_read_errors_are_not_swallowed(existing):
    def broken(*_args, **_kwargs):
        raise MongoCommandError("connection refused")

    existing.users_info = broken
    with pytest.raises(MongoCommandError):
        run(existing)


def test_legacy_sha1_user_is_verified_with_sha1():
    client = FakeClient()
    client.add_user("lowcoder", "lowcoder_user", SECRET, READ_WRITE, mechanisms=["SCRAM-SHA-1"])
    assert run(client, mechanisms=["SCRAM-SHA-1"])["changed"] is False
    result = run(client, mechanisms=["SCRAM-SHA-1"], password=OTHER_SECRET)
    assert result["changed"] is True
    assert result["password_check"] == "stored_credentials"


def test_both_mechanisms_must_match():
    client = FakeClient()
    client.add_user("lowcoder", "lowcoder_user", SECRET, READ_WRITE, mechanisms=["SCRAM-SHA-1", "SCRAM-SHA-256"])
    # Make the SHA-1 verifier belong to another password: the user is not in the desired state.
    client.users[("lowcoder", "lowcoder_user")]["credentials"]["SCRAM-SHA-1"] = scram_credentials(
        "lowcoder_user", OTHER_SECRET, ["SCRAM-SHA-1"])["SCRAM-SHA-1"]
    result = run(client, mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1"])
    assert result["changed"] is True
    assert result["actions"] == ["updateUser lowcoder_user on lowcoder (password)"]


def test_adding_a_mechanism_resends_the_password(existing):
    result = run(existing, mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1"])
    assert result["changed"] is True
    assert result["actions"] == ["updateUser lowcoder_user on lowcoder (mechanisms)"]
    assert existing.writes() == [("update_user", "lowcoder", "lowcoder_user", ["mechanisms", "password"])]
    assert result["diff"]["after"]["password"] == "<unchanged>"
    assert result["diff"]["after"]["mechanisms"] == ["SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert run(existing, mechanisms=["SCRAM-SHA-1", "SCRAM-SHA-256"])["changed"] is False


def test_on_create_cannot_add_a_mechanism(existing):
    with pytest.raises(MongoUserError, match="SCRAM-SHA-1"):
        run(existing, update_password="on_create", password=None, mechanisms=["SCRAM-SHA-256", "SCRAM-SHA-1"])


def test_on_create_may_remove_a_mechanism():
    client = FakeClient()
    client.add_user("lowcoder", "lowcoder_user", SECRET, READ_WRITE, mechanisms=["SCRAM-SHA-1", "SCRAM-SHA-256"])
    result = run(client, update_password="on_create", password=None)
    assert client.writes() == [("update_user", "lowcoder", "lowcoder_user", ["mechanisms"])]
    assert result["changed"] is True


def test_on_create_does_not_check_an_existing_password(existing):
    result = run(existing, update_password="on_create", password=OTHER_SECRET)
    assert result["changed"] is False
    assert result["password_check"] == "skipped"
    assert existing.passwords[("lowcoder", "lowcoder_user")] == SECRET
    assert "can_authenticate" not in existing.call_names()


def test_on_create_still_sets_the_password_of_a_new_user():
    client = FakeClient()
    assert run(client, update_password="on_create")["changed"] is True
    assert client.passwords[("lowcoder", "lowcoder_user")] == SECRET


# --------------------------------------------------------------------------------------------------------------
# Check mode and diff
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "overrides", "action"),
    [
        ("none", {}, "createUser lowcoder_user on lowcoder"),
        ("existing", {"password": OTHER_SECRET}, "updateUser lowcoder_user on lowcoder (password)"),
        ("existing", {"roles": ["read"]}, "updateUser lowcoder_user on lowcoder (roles)"),
        ("existing", {"state": "absent"}, "dropUser lowcoder_user on lowcoder"),
    ],
)
def test_check_mode_reports_without_writing(setup, overrides, action):
    client = FakeClient()
    if setup == "existing":
        client.add_user("lowcoder", "lowcoder_user", SECRET, READ_WRITE)
    users_before = copy.deepcopy(client.users)
    result = run(client, check_mode=True, **overrides)
    assert result["changed"] is True
    assert result["actions"] == [action]
    assert client.writes() == []
    assert client.users == users_before


def test_check_mode_matches_the_real_run(existing):
    checked = run(existing, check_mode=True, password=OTHER_SECRET, roles=["read"])
    applied = run(existing, password=OTHER_SECRET, roles=["read"])
    assert checked == applied


@pytest.mark.parametrize(
    ("setup", "overrides"),
    [("none", {}), ("existing", {"password": OTHER_SECRET}), ("existing", {}), ("existing", {"state": "absent"})],
)
def test_result_never_contains_a_password(setup, overrides):
    client = FakeClient()
    if setup == "existing":
        client.add_user("lowcoder", "lowcoder_user", SECRET, READ_WRITE)
    result = run(client, **overrides)
    text = json.dumps(result)
    assert SECRET not in text
    assert OTHER_SECRET not in text
    for side in ("before", "after"):
        if result["diff"][side]["state"] == "present":
            assert result["diff"][side]["password"] in ("<changed>", "<unchanged>")
            assert "credentials" not in result["diff"][side]


def test_diff_shows_roles_before_and_after(existing):
    result = run(existing, roles=["read"])
    assert result["diff"]["before"]["roles"] == READ_WRITE
    assert result["diff"]["after"]["roles"] == [{"role": "read", "db": "lowcoder"}]


# --------------------------------------------------------------------------------------------------------------
# state=absent
# --------------------------------------------------------------------------------------------------------------


def test_absent_drops_an_existing_user(existing):
    result = run(existing, state="absent", password=None)
    assert result["changed"] is True
    assert result["actions"] == ["dropUser lowcoder_user on lowcoder"]
    assert existing.writes() == [("drop_user", "lowcoder", "lowcoder_user")]
    assert result["diff"]["after"]["state"] == "absent"
    assert result["roles"] == []


def test_absent_for_a_missing_user_is_not_changed():
    client = FakeClient()
    result = run(client, state="absent", password=None)
    assert result["changed"] is False
    assert result["actions"] == []
    assert client.writes() == []


# --------------------------------------------------------------------------------------------------------------
# Input errors
# --------------------------------------------------------------------------------------------------------------


def test_missing_password_for_a_new_user_is_an_error():
    client = FakeClient()
    with pytest.raises(MongoUserError, match="password is required to create the user"):
        run(client, password=None)
    assert client.writes() == []


def test_missing_password_with_update_always_is_an_error(existing):
    with pytest.raises(MongoUserError, match="update_password=on_create"):
        run(existing, password=None)


def test_missing_password_is_fine_for_on_create_and_an_existing_user(existing):
    assert run(existing, password=None, update_password="on_create")["changed"] is False


def test_empty_password_is_an_error():
    with pytest.raises(MongoUserError, match="must not be empty"):
        run(FakeClient(), password="")


def test_password_that_fails_saslprep_is_an_error_without_echo():
    with pytest.raises(MongoUserError, match="SCRAM-SHA-256") as caught:
        run(FakeClient(), password="bad\x07pw")
    assert "bad\x07pw" not in str(caught.value)


def test_password_with_control_character_is_fine_for_sha1_only():
    client = FakeClient()
    assert run(client, password="bad\x07pw", mechanisms=["SCRAM-SHA-1"])["changed"] is True


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["readWrite", "readWrite"], [{"role": "readWrite", "db": "app"}]),
        ([{"role": "read"}], [{"role": "read", "db": "app"}]),
        ([{"role": "read", "db": "other"}, "dbAdmin"],
         [{"role": "dbAdmin", "db": "app"}, {"role": "read", "db": "other"}]),
        (None, []),
    ],
)
def test_normalize_roles(roles, expected):
    assert normalize_roles(roles, "app") == expected


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ([42], "roles\\[0\\] must be a role name"),
        ([{"db": "x"}], "non-empty string 'role'"),
        ([{"role": "read", "database": "x"}], "unknown keys database"),
    ],
)
def test_normalize_roles_rejects_bad_items(roles, message):
    with pytest.raises(MongoUserError, match=message):
        normalize_roles(roles, "app")


# --------------------------------------------------------------------------------------------------------------
# main(): argument spec, exit_json, fail_json
# --------------------------------------------------------------------------------------------------------------


def run_main(monkeypatch, capsys, client: FakeClient, args: dict[str, Any]) -> dict[str, Any]:
    monkeypatch.setattr(mongodb_user, "MongoAdminClient", lambda _params: client)
    with patch_module_args(args), pytest.raises(SystemExit):
        mongodb_user.main()
    return json.loads(capsys.readouterr().out)


MAIN_ARGS = {"name": "lowcoder_user", "database": "lowcoder", "password": SECRET, "roles": ["readWrite"],
             "login_user": "admin", "login_password": "admin-pw"}


def test_main_creates_then_is_idempotent(monkeypatch, capsys):
    client = FakeClient()
    first = run_main(monkeypatch, capsys, client, MAIN_ARGS)
    second = run_main(monkeypatch, capsys, client, MAIN_ARGS)
    assert first["changed"] is True
    assert second["changed"] is False
    assert client.call_names().count("close") == 2
    assert SECRET not in json.dumps(first)


def test_main_check_mode(monkeypatch, capsys):
    client = FakeClient()
    result = run_main(monkeypatch, capsys, client, dict(MAIN_ARGS, _ansible_check_mode=True))
    assert result["changed"] is True
    assert client.writes() == []


def test_main_fails_with_a_clear_message(monkeypatch, capsys):
    args = {k: v for k, v in MAIN_ARGS.items() if k != "password"}
    result = run_main(monkeypatch, capsys, FakeClient(), args)
    assert result["failed"] is True
    assert "lowcoder_user on lowcoder: password is required" in result["msg"]


def test_main_login_user_needs_login_password(monkeypatch, capsys):
    args = {k: v for k, v in MAIN_ARGS.items() if k != "login_password"}
    result = run_main(monkeypatch, capsys, FakeClient(), args)
    assert result["failed"] is True
    assert "login_password" in result["msg"]


def test_main_without_pymongo(monkeypatch, capsys):
    monkeypatch.setattr(mongodb_user, "HAS_PYMONGO", False)
    result = run_main(monkeypatch, capsys, FakeClient(), MAIN_ARGS)
    assert result["failed"] is True
    assert "pymongo" in result["msg"]


def test_argument_spec_marks_secrets_no_log():
    spec = mongodb_user.argument_spec()
    assert spec["password"]["no_log"] is True
    assert spec["login_password"]["no_log"] is True


# --------------------------------------------------------------------------------------------------------------
# MongoAdminClient against a mocked pymongo (command shapes only; no server)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def mocked_pymongo(monkeypatch):
    pymongo_client = mock.MagicMock(name="MongoClient")
    monkeypatch.setattr(_mongodb, "MongoClient", pymongo_client)
    return pymongo_client


def database_command(pymongo_client: mock.MagicMock) -> mock.MagicMock:
    """The ``command`` method of any database of the mocked client."""
    return pymongo_client.return_value.__getitem__.return_value.command


LOGIN = {"login_host": "mongo", "login_port": 27018, "login_user": "admin", "login_password": "pw",
         "login_database": "admin", "auth_mechanism": None, "tls": False, "tls_ca_file": None,
         "tls_certificate_key_file": None, "tls_allow_invalid_certificates": False, "connect_timeout": 5}


def test_admin_client_command_documents(mocked_pymongo):
    command = database_command(mocked_pymongo)
    command.return_value = {"users": [{"user": "u", "db": "lowcoder"}], "ok": 1}
    client = MongoAdminClient(LOGIN)

    assert client.users_info("lowcoder", "u") == {"user": "u", "db": "lowcoder"}
    client.create_user("lowcoder", "u", "pw1", READ_WRITE, ["SCRAM-SHA-256"])
    client.update_user("lowcoder", "u", roles=[])
    client.drop_user("lowcoder", "u")

    assert [c.args[0] for c in command.call_args_list] == [
        {"usersInfo": {"user": "u", "db": "lowcoder"}, "showCredentials": True},
        {"createUser": "u", "pwd": "pw1", "roles": READ_WRITE, "mechanisms": ["SCRAM-SHA-256"]},
        {"updateUser": "u", "roles": []},
        {"dropUser": "u"},
    ]
    mocked_pymongo.return_value.__getitem__.assert_called_with("lowcoder")
    assert mocked_pymongo.call_count == 1  # one connection for all commands
    kwargs = mocked_pymongo.call_args.kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["username"], kwargs["authSource"]) == (
        "mongo", 27018, "admin", "admin")
    client.close()
    mocked_pymongo.return_value.close.assert_called_once()


def test_admin_client_missing_user_is_none(mocked_pymongo):
    database_command(mocked_pymongo).return_value = {"users": [], "ok": 1}
    assert MongoAdminClient(LOGIN).users_info("lowcoder", "nobody") is None


def test_admin_client_translates_operation_failure(mocked_pymongo):
    from pymongo.errors import OperationFailure

    database_command(mocked_pymongo).side_effect = OperationFailure(
        "not authorized", code=13, details={"errmsg": "not authorized on lowcoder", "code": 13})
    with pytest.raises(MongoCommandError, match="usersInfo on lowcoder failed: not authorized") as caught:
        MongoAdminClient(LOGIN).users_info("lowcoder", "u")
    assert caught.value.code == 13


@pytest.mark.parametrize(("code", "expected"), [(None, True), (18, False)])
def test_can_authenticate_uses_a_fresh_connection(mocked_pymongo, code, expected):
    from pymongo.errors import OperationFailure

    if code is not None:
        database_command(mocked_pymongo).side_effect = OperationFailure("Authentication failed.", code=code)
    client = MongoAdminClient(LOGIN)
    assert client.can_authenticate("lowcoder", "u", "pw1", "SCRAM-SHA-256") is expected
    kwargs = mocked_pymongo.call_args.kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["authSource"], kwargs["authMechanism"]) == (
        "u", "pw1", "lowcoder", "SCRAM-SHA-256")
    mocked_pymongo.return_value.close.assert_called_once()


def test_can_authenticate_raises_on_other_errors(mocked_pymongo):
    from pymongo.errors import ServerSelectionTimeoutError

    database_command(mocked_pymongo).side_effect = ServerSelectionTimeoutError(
        "mongo:27018: [Errno 111] Connection refused, Timeout: 5.0s, Topology Description: <long>")
    with pytest.raises(MongoCommandError) as caught:
        MongoAdminClient(LOGIN).can_authenticate("lowcoder", "u", "pw1")
    assert str(caught.value) == (
        "authentication check for u on lowcoder failed: cannot reach MongoDB at mongo:27018 "
        "(mongo:27018: [Errno 111] Connection refused); check login_host, login_port and the tls options")


def test_connection_kwargs_without_login_user_has_no_credentials():
    kwargs = connection_kwargs(dict(LOGIN, login_user=None, login_password=None))
    assert "username" not in kwargs and "password" not in kwargs
    assert kwargs["serverSelectionTimeoutMS"] == 5000
    assert "tls" not in kwargs


def test_connection_kwargs_tls_file_implies_tls():
    kwargs = connection_kwargs(dict(LOGIN, tls_ca_file="/etc/ssl/ca.pem", auth_mechanism="SCRAM-SHA-256"))
    assert kwargs["tls"] is True
    assert kwargs["tlsCAFile"] == "/etc/ssl/ca.pem"
    assert kwargs["authMechanism"] == "SCRAM-SHA-256"
    assert "tlsAllowInvalidCertificates" not in kwargs


# --------------------------------------------------------------------------------------------------------------
# login_container: on a swarm, from inside the MongoDB task's network namespace (module_utils/_netns.py)
# --------------------------------------------------------------------------------------------------------------


def test_main_enters_the_containers_namespace_before_it_connects(monkeypatch, capsys):
    """The docker CLI answers with a process (this test's own, so that its namespace file exists) and setns is a
    fake: the namespace is entered once, before the client exists."""
    from ansible_collections.borgstack.stack.plugins.module_utils import _netns
    events: list[Any] = []
    monkeypatch.setattr(_netns, "setns", lambda fd: events.append(("setns", os.fstat(fd).st_ino)))
    monkeypatch.setattr(mongodb_user.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/bin/docker")
    monkeypatch.setattr(mongodb_user.AnsibleModule, "run_command",
                        lambda self, argv, **kw: (events.append(("docker", argv)) or (0, f"{os.getpid()}\n", "")))
    client = FakeClient()
    monkeypatch.setattr(mongodb_user, "MongoAdminClient",
                        lambda params: (events.append(("client", params["login_host"])) or client))
    args = dict(MAIN_ARGS, login_container="borgstack_mongodb.1.abc", login_host="127.0.0.1")
    with patch_module_args(args), pytest.raises(SystemExit):
        mongodb_user.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] is True
    assert events == [
        ("docker", ["/bin/docker", "container", "inspect", "--format", "{{.State.Pid}}", "borgstack_mongodb.1.abc"]),
        ("setns", os.stat(f"/proc/{os.getpid()}/ns/net").st_ino),
        ("client", "127.0.0.1")]


def test_main_without_the_container_changes_nothing_and_names_it(monkeypatch, capsys):
    from ansible_collections.borgstack.stack.plugins.module_utils import _netns
    monkeypatch.setattr(_netns, "setns", lambda fd: pytest.fail("no namespace to enter"))
    monkeypatch.setattr(mongodb_user.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/bin/docker")
    monkeypatch.setattr(mongodb_user.AnsibleModule, "run_command",
                        lambda self, argv, **kw: (1, "", "Error: No such container: borgstack_mongodb.1.gone"))
    client = FakeClient()
    result = run_main(monkeypatch, capsys, client, dict(MAIN_ARGS, login_container="borgstack_mongodb.1.gone"))
    assert result["failed"] is True
    assert result["msg"] == ("login_container borgstack_mongodb.1.gone: docker container inspect "
                             "borgstack_mongodb.1.gone failed: Error: No such container: borgstack_mongodb.1.gone. "
                             "Nothing was changed.")
    assert client.call_names() == []


def test_main_without_login_container_never_enters_a_namespace(monkeypatch, capsys):
    from ansible_collections.borgstack.stack.plugins.module_utils import _netns
    monkeypatch.setattr(_netns, "setns", lambda fd: pytest.fail("one host: the module connects from the host"))
    assert run_main(monkeypatch, capsys, FakeClient(), MAIN_ARGS)["changed"] is True
