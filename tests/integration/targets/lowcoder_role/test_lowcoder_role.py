# SPDX-License-Identifier: GPL-3.0-or-later
"""The lowcoder role, validated WITHOUT a Lowcoder container.

No image ``lowcoderorg/lowcoder-ce:2.7.4`` can be obtained here (no container registry, and the all-in-one image
bundles Java, Node, nginx and MongoDB's apt repository: no local build from Debian packages). So NOTHING here starts
Lowcoder, and these are NOT exercised:

- the entrypoint really leaving the embedded MongoDB and Redis off, and the API service connecting to the stack's
  MongoDB with the rendered URL (user ``lowcoder``, ``authSource=lowcoder``) and to Redis with the password and index;
- the superuser being created from LOWCODER_SUPERUSER_USERNAME/_PASSWORD at start-up (read in upstream's
  AddSuperAdminUserImpl at tag 2.7.4, not run), the login page, the curl health check answering;
- issue 21 item 6 end to end: the read-only mongosh query (tasks/admin_lookup.yml, vars/main.yml) against a real
  MongoDB, Lowcoder creating the administrator on its first start, the play's second deploy with its own superuser,
  an operator's password change in the UI surviving a restart and a rerun. No MongoDB or Lowcoder image here: what
  is checked is the rendered environment in both states (before the administrator exists: the administrators' e-mail
  with the first password; after: the play's own account, so Lowcoder's reset at every start never touches the
  administrator's password; nothing else differs) and the lookup's command (Lowcoder's own query, no secret on a
  command line);
- the CSP of the registry entry against the real UI (only read from upstream's index.html and client source);
- the mongodb role creating the user against a real server (tests/integration/targets/mongodb_role says why).

What IS checked, through Ansible itself (``ansible-playbook -c local`` from the repository root) with the stack's
real wiring (playbooks/group_vars/all linked into a throwaway inventory):

- the Compose file and the secret environment the role would write, rendered from the role's templates;
  ``docker compose config`` accepts them; the merged environment (env_file + environment) holds only variables the
  image reads (lowcoder-2.7.4-env.yml, taken from upstream's source at the tag) and sets every variable whose upstream
  default is public or wrong, each secret unique and never upstream's value; the MongoDB URL carries the user and
  password of the MongoDB role's user list (borgstack_contracts.mongodb.users) with the right authSource, the Redis URL
  the Redis role's password and Lowcoder's index from the registry; no secret is in the Compose file; memory limit
  from the RAM plan;
- the role's ``validate`` entry point (argument specs + tasks/validate.yml) refuses issue 8's bad input - an API key
  secret override shorter than 32 characters - and other bad settings, naming the variable, never printing a secret.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from role_harness import (ADMIN, app_inventory, assert_outcome, assert_public_defaults_overridden, assert_reads_only,
                          assert_secrets_hidden, container_facts, render_app, run_validation, swarm_stack_config,
                          unique_secrets)
import yaml

HERE = Path(__file__).resolve().parent
FACTS = yaml.safe_load((HERE / "lowcoder-2.7.4-env.yml").read_text())
MASTER = "m" * 24 + "Lowcoder-Test-Master-0123456789"

pytestmark = pytest.mark.integration


def _derived(purpose: str) -> str:
    return (f"'{purpose}' | borgstack.stack.stack_secret(borgstack_master_secret, borgstack_secret_overrides, "
            f"versions=borgstack_secret_versions)")


@pytest.fixture(scope="module")
def handed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Rendered once MongoDB holds the administrator (tasks/admin_lookup.yml sets __lowcoder_admin_exists from
    MongoDB's answer); the ``rendered`` fixture is the first start (the fact not set yet)."""
    tmp = tmp_path_factory.mktemp("lowcoder-handed")
    return render_app(tmp, "lowcoder", app_inventory(tmp, MASTER), play={"vars": {"__lowcoder_admin_exists": True}},
                      wiring={
                          "superuser_password": _derived("lowcoder_superuser_password"),
                          "play_password": _derived("lowcoder_play_password"),
                          "lookup_argv": "__lowcoder_admin_lookup_argv", "lookup_url": "__lowcoder_admin_lookup_url",
                          "mongodb_users": "borgstack_contracts.mongodb.users",
                          "mongodb_endpoint": "borgstack_endpoints.mongodb"})


def test_the_administrator_s_password_is_never_reset_once_the_account_exists(handed, rendered):
    """Lowcoder sets the password of LOWCODER_SUPERUSER_USERNAME at every start (AddSuperAdminUserImpl.
    addOrUpdateSuperAdmin, from AddSuperAdminRunner's @PostConstruct): once the administrator exists, that variable
    names the play's own account, so the operator's password survives restarts and reruns; on the first start it
    names the administrator with the first password."""
    env, first, wiring = _env(handed), _env(rendered), handed["wiring"]
    assert (env["LOWCODER_SUPERUSER_USERNAME"], env["LOWCODER_SUPERUSER_PASSWORD"]) == (
        f"borgstack-play@{ADMIN.split('@')[1]}", wiring["play_password"])
    assert (first["LOWCODER_SUPERUSER_USERNAME"], first["LOWCODER_SUPERUSER_PASSWORD"]) == (
        ADMIN, wiring["superuser_password"])
    assert wiring["play_password"] != wiring["superuser_password"] and len(wiring["play_password"]) >= 20
    # Nothing else differs between the two states.
    assert {k: v for k, v in env.items() if not k.startswith("LOWCODER_SUPERUSER_")} == \
        {k: v for k, v in first.items() if not k.startswith("LOWCODER_SUPERUSER_")}
    assert_secrets_hidden(handed, {"play": wiring["play_password"], "first": wiring["superuser_password"]})


def test_the_lookup_asks_mongodb_what_lowcoder_asks_without_a_secret_on_a_command_line(handed):
    """tasks/admin_lookup.yml: Lowcoder's own query (UserRepository.findByConnections_SourceAndConnections_RawId:
    connections.source EMAIL, connections.rawId the e-mail; User is @Document, collection "user"), inside the
    MongoDB container, with Lowcoder's own login passed through docker's environment (``--env NAME``)."""
    wiring = handed["wiring"]
    argv, url = wiring["lookup_argv"], urlsplit(wiring["lookup_url"])
    user = next(u for u in wiring["mongodb_users"] if u["name"] == "lowcoder")
    assert argv[:5] == ["docker", "exec", "--env", "BORGSTACK_LOWCODER_MONGODB_URL",
                        wiring["mongodb_endpoint"]["container"]]
    assert argv[5:10] == ["mongosh", "--quiet", "--norc", "--nodb", "--eval"] and len(argv) == 11
    script = argv[10]
    assert "connect(process.env.BORGSTACK_LOWCODER_MONGODB_URL).getCollection('user').countDocuments(" in script
    assert f"{{'connections.source': 'EMAIL', 'connections.rawId': {json.dumps(ADMIN)}}}" in script
    assert user["password"] not in " ".join(argv)
    assert (unquote(url.username), unquote(url.password), url.hostname, url.path, parse_qs(url.query)) == (
        "lowcoder", user["password"], "127.0.0.1", "/lowcoder", {"authSource": ["lowcoder"]})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Render compose.yaml and secrets.env as the role would (its validate entry point first), then
    ``docker compose config``."""
    tmp = tmp_path_factory.mktemp("lowcoder")
    # What the other roles and the registry hold, read independently of Lowcoder's contract: the MongoDB role's users,
    # the Redis role's password, the RAM plan, the endpoints and the registry's index.
    return render_app(tmp, "lowcoder", app_inventory(tmp, MASTER), wiring={
        "mongodb_users": "borgstack_contracts.mongodb.users",
        "redis_password": "borgstack_contracts.redis.secrets.redis_password",
        "plan": "borgstack_ram_plan.services.lowcoder.limit_mb",
        # Derived here from the master secret as the wiring derived it before the contract.
        "superuser_password": "'lowcoder_superuser_password' | borgstack.stack.stack_secret(borgstack_master_secret,"
                              " borgstack_secret_overrides, versions=borgstack_secret_versions)",
        "mongodb_endpoint": "borgstack_endpoints.mongodb", "redis_endpoint": "borgstack_endpoints.redis",
        "redis_db": "borgstack_registry.lowcoder.redis_db"})


def _env(rendered: dict[str, Any]) -> dict[str, str]:
    return rendered["config"]["services"]["lowcoder"]["environment"]


def test_every_variable_we_set_is_read_by_the_image(rendered):
    assert_reads_only(_env(rendered), FACTS["reads"], "lowcoder-ce:2.7.4")


def test_every_variable_with_a_public_default_is_set_by_us(rendered):
    assert_public_defaults_overridden(_env(rendered), FACTS, keep=("LOWCODER_PGID", "LOWCODER_PUID"))


def test_secrets_are_unique_long_and_only_in_the_root_only_env_file(rendered):
    env = _env(rendered)
    secrets = unique_secrets(env, FACTS["secrets"])
    assert all(len(v) >= 12 for v in secrets.values())
    assert len(env["LOWCODER_API_KEY_SECRET"]) >= 32
    assert_secrets_hidden(rendered, {**secrets, "redis_password": rendered["wiring"]["redis_password"]})


def test_mongodb_and_redis_urls_use_the_stacks_services_and_credentials(rendered):
    env, wiring = _env(rendered), rendered["wiring"]
    user = next(u for u in wiring["mongodb_users"] if u["name"] == "lowcoder")
    mongo = urlsplit(env["LOWCODER_MONGODB_URL"])
    redis = urlsplit(env["LOWCODER_REDIS_URL"])
    observed = {
        "mongo": (mongo.scheme, unquote(mongo.username), unquote(mongo.password), mongo.hostname, mongo.port,
                  mongo.path, parse_qs(mongo.query)),
        "redis": (redis.scheme, unquote(redis.password), redis.hostname, redis.port, redis.path),
        "SPRING_DATA_REDIS_DATABASE": env["SPRING_DATA_REDIS_DATABASE"],
        "embedded": (env["LOWCODER_MONGODB_ENABLED"], env["LOWCODER_REDIS_ENABLED"]),
    }
    assert observed == {
        "mongo": ("mongodb", "lowcoder", user["password"], wiring["mongodb_endpoint"]["host"], 27017, "/lowcoder",
                  {"authSource": [user["database"]]}),
        "redis": ("redis", wiring["redis_password"], wiring["redis_endpoint"]["host"], 6379,
                  f"/{wiring['redis_db']}"),
        "SPRING_DATA_REDIS_DATABASE": str(wiring["redis_db"]),
        "embedded": ("false", "false"),
    }
    assert wiring["redis_db"] != 0  # n8n's index


def test_public_address_sign_up_and_superuser(rendered):
    env = _env(rendered)
    observed = {k: env[k] for k in ("LOWCODER_PUBLIC_URL", "LOWCODER_CORS_DOMAINS", "LOWCODER_EMAIL_SIGNUP_ENABLED",
                                    "LOWCODER_WORKSPACE_MODE", "LOWCODER_SUPERUSER_USERNAME", "LOWCODER_PUID",
                                    "LOWCODER_PGID", "LOWCODER_MAX_REQUEST_SIZE")}
    assert observed == {
        "LOWCODER_PUBLIC_URL": "https://lowcoder.example.com.br/",
        "LOWCODER_CORS_DOMAINS": "https://lowcoder.example.com.br",
        "LOWCODER_EMAIL_SIGNUP_ENABLED": "false",
        "LOWCODER_WORKSPACE_MODE": "ENTERPRISE",
        "LOWCODER_SUPERUSER_USERNAME": ADMIN,
        "LOWCODER_PUID": "9001",
        "LOWCODER_PGID": "9001",
        "LOWCODER_MAX_REQUEST_SIZE": "50m",  # the registry's site.max_body_mb, Caddy's limit
    }
    assert env["LOWCODER_SUPERUSER_PASSWORD"] == rendered["wiring"]["superuser_password"]


def test_container_volumes_networks_limit_and_healthcheck(rendered):
    config = rendered["config"]
    svc = config["services"]["lowcoder"]
    observed = {
        **container_facts(svc),
        "healthcheck": svc["healthcheck"]["test"][:2] + svc["healthcheck"]["test"][-1:],
        "env_file": yaml.safe_load((rendered["out"] / "compose.yaml").read_text())["services"]["lowcoder"]["env_file"],
    }
    assert observed == {
        "image": "lowcoderorg/lowcoder-ce:2.7.4",
        "container_name": "borgstack-lowcoder",
        "ports": [],
        "networks": ["borgstack_external", "borgstack_internal"],
        "mounts": {"/lowcoder-stacks": ("volume", "borgstack_lowcoder_stacks"),
                   "/lowcoder/assets": ("volume", "borgstack_lowcoder_assets")},
        "mem_limit MiB": rendered["wiring"]["plan"],
        "healthcheck": ["CMD", "curl", "http://127.0.0.1:3000/api/status/health"],
        "env_file": [str(rendered["out"] / "secrets.env")],
    }


# --- The validate entry point with bad input ---------------------------------------------------------------------

SHORT_KEY = "short-api-key-0123456789"  # 24 characters: accepted by stack_secret (>= 12), refused by the role


def contract(**changes: Any) -> str:
    """lowcoder_service as the registry gives it, with ``changes`` merged in: a value the registry's own checks or
    stack_secret would refuse first, to prove the role's check too."""
    return "{{ borgstack_contracts.lowcoder | combine(%s, recursive=True) }}" % json.dumps(changes)


VALIDATION_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    # case: (play vars over the wiring, None when accepted or a fragment of the failure message)
    "wiring": ({}, None),
    "api_key_override_too_short": ({"borgstack_secret_overrides": {"lowcoder_api_key_secret": SHORT_KEY}},
                                   "lowcoder_api_key_secret: too short"),
    "superuser_password_too_short": ({"lowcoder_service": contract(secrets={"lowcoder_superuser_password": "tiny"})},
                                     "lowcoder_superuser_password: too short"),
    "mongodb_password_too_short": ({"lowcoder_service": contract(mongodb={"password": "tiny"})},
                                   "mongodb_lowcoder: too short"),
    "cors_star": ({"lowcoder_cors_domains": ["*"]}, "lowcoder_cors_domains a list of origins without '*'"),
    "workspace_mode": ({"lowcoder_workspace_mode": "TEAM"}, "lowcoder_workspace_mode"),
    "root_puid": ({"lowcoder_puid": 0}, "lowcoder_puid / lowcoder_pgid not 0"),
    "bad_email": ({"borgstack_admin_email": "admin"},
                  "borgstack_admin_email must be the e-mail Lowcoder's administrator"),
    "small_memory": ({"lowcoder_service": contract(memory_limit_mb=512)},
                     "Lowcoder's memory limit must be 0 or at least 1024 MiB (found 512"),
    "disabled_ignores_bad_values": ({"borgstack_services": {"lowcoder": {"enabled": False}},
                                     "lowcoder_service": contract(enabled=False,
                                                                  secrets={"lowcoder_api_key_secret": "x"})}, None),
}


@pytest.fixture(scope="module")
def validation_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case in one ansible-playbook run: a play per case running the role's validate entry point (argument
    specs, then tasks/validate.yml) with the wiring, its failure rescued and recorded."""
    tmp = tmp_path_factory.mktemp("lowcoder-validate")
    return run_validation(tmp, "lowcoder", VALIDATION_CASES, app_inventory(tmp, MASTER))


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation(validation_outcomes, case):
    assert_outcome(validation_outcomes["outcomes"][case], VALIDATION_CASES[case][1])


def test_validation_names_the_override_and_never_prints_it(validation_outcomes):
    msg = validation_outcomes["outcomes"]["api_key_override_too_short"]["msg"]
    assert "borgstack_secret_overrides.lowcoder_api_key_secret" in msg and "at least 32" in msg
    assert SHORT_KEY not in validation_outcomes["output"] + json.dumps(validation_outcomes["outcomes"])


def test_the_cluster_would_place_it_on_the_swarm(rendered):
    """Issue 24: on a cluster this service is not deployed yet (the validation refuses it there), but the stack file
    its Compose file becomes is rendered and accepted by ``docker stack config``; nothing runs on a swarm here."""
    config = swarm_stack_config(rendered["out"] / "compose.yaml", "lowcoder")
    for spec in config["services"].values():
        assert spec["deploy"]["replicas"] >= 1 and "placement" not in spec["deploy"]
