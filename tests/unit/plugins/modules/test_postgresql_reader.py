# SPDX-License-Identifier: GPL-3.0-or-later
"""The reader roles of postgresql_tenant (module_utils/_postgresql_reader.py): the plan from a state, without a
server (the integration test runs them against a real PostgreSQL)."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from ansible_collections.borgstack.stack.plugins.module_utils._postgresql import TenantError, scram_sha256_verifier
from ansible_collections.borgstack.stack.plugins.module_utils._postgresql_reader import (
    ReaderManager,
    pending_tables,
    plan_reader,
    reader_diff,
    trigger_body,
    trigger_name,
)

PASSWORD = "reader-password-0123456789"
GRANTS = {"n8n": ["execution_entity", "borgstack_cs_errors"]}
PARAMS = {"password": PASSWORD, "connection_limit": 3, "state": "present"}


def done_state() -> dict[str, Any]:
    """What a real run leaves: role, pg_monitor, CONNECT, USAGE, SELECT on the existing table, the trigger."""
    return {
        "role": {"rolcanlogin": True, "rolsuper": False, "rolcreatedb": False, "rolcreaterole": False,
                 "rolreplication": False, "rolbypassrls": False, "rolconnlimit": 3,
                 "rolpassword": scram_sha256_verifier(PASSWORD), "member_of": ["pg_monitor"]},
        "password_ok": True,
        "databases": {"n8n": {"connect": True, "usage": True,
                              "tables": {"execution_entity": {"exists": True, "select": True},
                                         "borgstack_cs_errors": {"exists": False, "select": False}},
                              "trigger": {"enabled": "O", "body": trigger_body("r", GRANTS["n8n"])}}},
    }


def plan(current: dict[str, Any], **params: Any) -> list[str]:
    steps = plan_reader("r", {**PARAMS, **params}, ["pg_monitor"], GRANTS, current)
    return [str(step.display) for step in steps]


def test_nothing_to_do_when_the_state_is_what_is_asked():
    assert plan(done_state()) == []


def test_a_fresh_reader_gets_role_membership_connect_usage_and_the_trigger():
    state = done_state()
    state["role"] = None
    state["password_ok"] = False
    state["databases"]["n8n"].update(connect=False, usage=False, trigger={"enabled": None, "body": None})
    state["databases"]["n8n"]["tables"]["execution_entity"]["select"] = False
    steps = plan_reader("r", PARAMS, ["pg_monitor"], GRANTS, state)
    shown = [str(step.display) for step in steps]
    assert [s.target for s in steps] == ["cluster", "cluster", "cluster", "n8n", "n8n", "n8n", "n8n"]
    for word, text in zip(["CREATE ROLE", "GRANT", "GRANT CONNECT", "GRANT USAGE", "GRANT SELECT",
                           "CREATE OR REPLACE FUNCTION", "CREATE EVENT TRIGGER"], shown):
        assert word in text, (word, text)
    # The new role is invisible to the database's own session in check mode: those grants are not tried there.
    runnable = {step.target: [] for step in steps}
    for step in steps:
        runnable[step.target].append(step.check_runnable)
    assert runnable == {"cluster": [True, True, True], "n8n": [False, False, True, True]}
    # The verifier never appears in what is shown.
    assert all(PASSWORD not in repr(step.display) for step in steps)
    assert steps[0].secret and steps[0].secret.startswith("SCRAM-SHA-256$")


@pytest.mark.parametrize("drift, expected", [
    (lambda s: s["role"].update(member_of=["pg_monitor", "pg_write_all_data"]), ["REVOKE"]),
    (lambda s: s["role"].update(member_of=[]), ["GRANT"]),
    (lambda s: s["role"].update(rolcreatedb=True), ["ALTER ROLE"]),
    (lambda s: s.update(password_ok=False), ["ALTER ROLE"]),
    (lambda s: s["databases"]["n8n"].update(connect=False), ["GRANT CONNECT"]),
    (lambda s: s["databases"]["n8n"]["tables"]["execution_entity"].update(select=False), ["GRANT SELECT"]),
    (lambda s: s["databases"]["n8n"]["trigger"].update(body="old"), ["CREATE OR REPLACE FUNCTION"]),
    (lambda s: s["databases"]["n8n"]["trigger"].update(enabled="D"), ["ALTER EVENT TRIGGER"]),
    (lambda s: s["databases"]["n8n"]["trigger"].update(enabled=None), ["CREATE EVENT TRIGGER"]),
])
def test_each_drift_is_one_statement(drift, expected):
    state = done_state()
    drift(state)
    shown = plan(state)
    assert len(shown) == 1 and expected[0] in shown[0], shown


def test_a_table_that_does_not_exist_is_pending_not_granted_and_a_missing_database_is_skipped():
    state = done_state()
    assert pending_tables(GRANTS, state) == ["n8n.borgstack_cs_errors"]
    assert not any("borgstack_cs_errors" in s and "GRANT" in s for s in plan(state))
    state["databases"]["n8n"] = None
    assert plan(state) == []
    assert pending_tables(GRANTS, state) == ["n8n.execution_entity", "n8n.borgstack_cs_errors"]


def test_the_trigger_grants_exactly_the_named_tables_and_never_fails_the_apps_create_table():
    body = trigger_body("monitoring_reader", ["execution_entity", "borgstack_cs_errors"])
    assert "object_identity IN ('public.borgstack_cs_errors', 'public.execution_entity')" in body
    assert "GRANT SELECT ON %s TO %I" in body and "'monitoring_reader'" in body
    assert "EXCEPTION WHEN OTHERS THEN" in body and "RAISE WARNING" in body
    assert trigger_body("r", ["b", "a"]) == trigger_body("r", ["a", "b"])   # stable: a rerun compares equal
    assert trigger_name("monitoring_reader") == "borgstack_grant_monitoring_reader"


def test_absent_drops_trigger_function_grants_and_role_and_nothing_when_gone():
    shown = plan(done_state(), state="absent")
    expected = ["DROP EVENT TRIGGER", "DROP FUNCTION", "DROP OWNED BY", "DROP OWNED BY", "DROP ROLE"]
    assert len(shown) == len(expected) and all(word in text for word, text in zip(expected, shown)), shown
    state = done_state()
    state["role"] = None
    assert plan(state, state="absent") == []


def test_diff_shows_password_only_as_a_marker():
    before, after = reader_diff("r", ["pg_monitor"], GRANTS, done_state(), "present", 3)
    assert before == after
    state = done_state()
    state["password_ok"] = False
    before, after = reader_diff("r", ["pg_monitor"], GRANTS, state, "present", 3)
    assert (before["password"], after["password"]) == ("<old>", "<changed>")
    assert PASSWORD not in repr((before, after))


class _Module:
    check_mode = False

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params


@pytest.mark.parametrize("change, message", [
    ({"name": "pg_reader"}, "not a valid reader name"),
    ({"name": "postgres"}, "is the login_user"),
    ({"roles": ["pg_write_all_data"]}, "roles: pg_write_all_data not allowed"),
    ({"grants": [{"database": "n8n", "tables": ["Bad"]}]}, "is not a plain SQL name"),
    ({"password": ""}, "password: required"),
    ({"connection_limit": -2}, "connection_limit"),
])
def test_bad_reader_options_are_refused_before_any_connection(change, message):
    params = {"name": "r", "password": PASSWORD, "roles": ["pg_monitor"], "grants": [{"database": "n8n",
              "tables": ["t"]}], "connection_limit": 3, "state": "present", "login_user": "postgres",
              "login_db": "postgres", "tenants": None, "readers": None}
    params.update(copy.deepcopy(change))
    manager = ReaderManager(_Module(params), params)
    with pytest.raises(TenantError, match=message):
        manager.validate()
