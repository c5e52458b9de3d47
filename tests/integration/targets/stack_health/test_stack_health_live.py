# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.stack_health against real Redis, PostgreSQL and Caddy containers (see conftest.py).

Named ``test_stack_health_live.py`` so that it does not clash with the unit test module of the same topic.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import pytest

pytestmark = pytest.mark.integration

EVENT_TIMEOUT = 120.0


def _statuses(run) -> dict[str, tuple[str, dict[str, str]]]:
    return {entry["name"]: (entry["status"], entry["checks"]) for entry in run.result.get("report", [])}


def test_all_green_in_check_mode(stack, health_module):
    run = health_module(stack.module_args(), check=True)

    assert (run.failed, run.result.get("changed"), run.result.get("failing")) == (False, False, []), run.output
    every_check_ok = {"container": "ok", "health": "ok", "internal": "skipped", "public": "skipped", "database": "ok"}
    assert _statuses(run) == {
        "redis": ("ok", every_check_ok),
        "postgresql": ("ok", every_check_ok),
        "app": ("ok", {"container": "ok", "health": "ok", "internal": "ok", "public": "ok", "database": "ok"}),
    }
    app = run.result["report"][2]
    assert app["url"] == "https://app.test/"
    assert app["docker_health"] == {stack.caddy: "healthy"}
    assert [line.split("|")[0].strip() for line in run.result["table"][2:]] == ["redis", "postgresql", "app"]
    assert all(line.rstrip().endswith("| ok") for line in run.result["table"][2:])


def test_public_url_is_verified_against_the_given_ca(stack, health_module):
    """Without Caddy's root CA the certificate is not trusted: the public check fails with a TLS reason."""
    args = stack.module_args(timeout=0)
    del args["ca_path"]
    run = health_module(args)

    assert run.failed and run.result["failing"] == ["app"], run.output
    assert run.result["report"][2]["checks"]["public"].startswith("failing: TLS error: "), run.result["report"][2]
    assert "certificate" in run.result["report"][2]["checks"]["public"]


def test_wrong_database_password_names_the_service_and_hides_the_password(stack, health_module):
    wrong = "Wrong-DB-Passw0rd-" + stack.postgresql_password[:6]
    run = health_module(stack.module_args(timeout=3, app_db_password=wrong))

    assert run.failed and run.returncode != 0
    assert run.result["failing"] == ["app"], run.output
    database = run.result["report"][2]["checks"]["database"]
    assert database.startswith(f"failing: postgresql at {stack.ip(stack.postgresql)}:5432: "), database
    assert 'password authentication failed for user "postgres"' in database
    assert '[app] database: failing: postgresql at' in run.result["msg"]
    assert wrong not in run.output
    assert stack.postgresql_password not in run.output
    assert stack.redis_password not in run.output


def _wait_for(condition: Callable[[], bool], what: str, seen: Callable[[], object],
              timeout: float = EVENT_TIMEOUT) -> None:
    """Poll ``condition`` until it holds; after ``timeout`` seconds fail naming ``what`` and showing ``seen()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f}s for {what}; seen: {seen()}")
        time.sleep(0.2)


def test_stopped_redis_is_named_with_its_log_lines_then_recovers(
        stack, health_module, docker_shim, tmp_path, request):
    def release_hold() -> None:
        stack.docker("exec", "--user", "0", stack.redis, "rm", "-f", stack.redis_hold_file, check=False)

    request.addfinalizer(release_hold)  # a failing assertion below must not leave Redis held for later tests
    stack.docker("stop", "--time", "5", stack.redis)
    try:
        run = health_module(stack.module_args(timeout=4, log_lines=5))
        redis_log = stack.docker("logs", "--tail", "5", stack.redis)
        # Hold Redis in "starting" once it runs again: the healthcheck fails while the hold file exists.
        hold = tmp_path / "hold"
        hold.write_text("held by the test\n")
        stack.docker("cp", str(hold), f"{stack.redis}:{stack.redis_hold_file}")
    finally:
        stack.docker("start", stack.redis)

    assert run.failed and run.result["failing"] == ["redis"], run.output
    redis = run.result["report"][0]
    assert redis["checks"]["container"].startswith(f"failing: container {stack.redis} is exited"), redis
    assert redis["checks"]["database"].startswith("failing: no address: "), redis
    lines = redis["logs"][stack.redis]
    assert len(lines) == 5
    assert lines[-1] in (redis_log.stdout + redis_log.stderr)
    assert "ready to exit, bye bye" in lines[-1].lower()
    message = run.result["msg"]
    assert message.startswith("1 of 3 services still failing after ")
    assert f"[redis] container: failing: container {stack.redis} is exited" in message
    assert f"[redis] last 5 log lines of {stack.redis}:" in message
    assert f"    {lines[-1]}" in message
    assert stack.redis_password not in run.output

    # Held: Docker says "starting" (the start period keeps it from "unhealthy") until the test lets go.
    assert stack.health_of(stack.redis) == "starting"
    background = health_module.start(stack.module_args(timeout=90), env=docker_shim.env)
    try:
        _wait_for(lambda: any(name == stack.redis for name, _status in docker_shim.inspected()) or not background.running(),
                  f"the module to inspect {stack.redis}", seen=docker_shim.inspected)
        seen = [status for name, status in docker_shim.inspected() if name == stack.redis]
        assert seen and seen[0] == "starting", (seen, background.running())
    except BaseException:
        background.stop()
        raise
    finally:
        release_hold()
    run = background.wait()

    assert (run.failed, run.result["failing"]) == (False, []), json.dumps(run.result.get("report"), indent=1)
    assert run.result["report"][0]["attempts"] >= 2, run.result["report"][0]
    assert [status for name, status in docker_shim.inspected() if name == stack.redis][-1] == "healthy"
    stack.wait_healthy(stack.redis)
