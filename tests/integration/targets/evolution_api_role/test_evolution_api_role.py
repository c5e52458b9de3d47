# SPDX-License-Identifier: GPL-3.0-or-later
"""The evolution_api role, validated WITHOUT an Evolution API container.

No image ``evoapicloud/evolution-api:v2.2.3`` can be obtained here (no container registry; building it needs npm
and GitHub, which this machine cannot reach). So NOTHING here starts Evolution, and these are NOT exercised:

- the entrypoint running ``prisma migrate deploy`` against the tenant (the tenant owning its database is what lets
  it create tables - the postgresql role's own tests prove the ownership, not this one), the server answering
  ``GET /`` and the BusyBox ``wget`` health check;
- Prisma and node-redis decoding the percent-encoded passwords of the rendered URLs (both document that they do;
  here only the encoding is checked, by decoding it back);
- a phone being paired, a real WhatsApp message reaching n8n through the global webhook, media reaching SeaweedFS;
- the manager UI under the registry entry's CSP (only read from the bundle at the tag: no eval, no external fonts).

What IS checked, through Ansible itself (``ansible-playbook -c local`` from the repository root) with the stack's
real wiring (playbooks/group_vars/all linked into a throwaway inventory):

- the Compose file and the secret environment the role would write, rendered from the role's templates;
  ``docker compose config`` accepts them; the merged environment (env_file + environment) holds only variables the
  image reads (evolution-api-2.2.3-env.yml, taken from upstream's source at the tag), sets every security-relevant one
  of the image's bundled .env.example and leaves to that file only the variables of features switched off
  explicitly; each secret is ours (never upstream's value), only in the root-only env file, never printed;
- the database URL carries the tenant postgres_tenants derives for it, the Redis URL the Redis password and index 3, with
  passwords percent-encoded (an override full of URL delimiters decodes back to itself);
- the global webhook: n8n's internal address with the exact path the shipped workflow listens on, the events chosen
  (every other one false); that address passes the URL check Evolution 2.2.3 applies to its global webhook
  (validator's ``isURL`` with default options - run with the validator package inside the n8n lab image) while a bare
  container name fails it; and the Compose ``external_links`` mechanism that gives n8n that name really resolves on a
  Docker network (a stand-in HTTP server, Caddy's lab image, answers through the link; without the link it does not);
- the role's ``validate`` entry point refuses issue 9's bad input naming the variable: an API key override shorter
  than 32 characters, a webhook URL that is neither https nor on the internal network, an instance name with spaces -
  and other bad settings.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from role_harness import (app_inventory, assert_outcome, assert_reads_only, assert_secrets_hidden, container_facts,
                          render_app, run_validation, swarm_stack_config, unique_secrets)
import yaml

HERE = Path(__file__).resolve().parent
FACTS = yaml.safe_load((HERE / "evolution-api-2.2.3-env.yml").read_text())
MASTER = "m" * 24 + "Evolution-Test-Master-0123456789"
WEBHOOK = "http://borgstack-n8n.internal:5678/webhook/borgstack/evolution"
CHOSEN_EVENTS = {"MESSAGES_UPSERT", "MESSAGES_UPDATE", "CONNECTION_UPDATE", "QRCODE_UPDATED"}
# Passwords an operator may put in borgstack_secret_overrides: every URL delimiter.
ODD_DB_PASSWORD = "p@ss:w/rd?#%[x]-0123456789"
ODD_REDIS_PASSWORD = "r3d!s@:/?#%&=+ 0123456789"

pytestmark = pytest.mark.integration


def _render(tmp: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Render compose.yaml and secrets.env as the role would (its validate entry point first), then
    ``docker compose config``."""
    # What the other side holds (the tenant PostgreSQL creates, Redis' and SeaweedFS' own secrets, the key n8n sends
    # with), read from their contracts, not from evolution_api_service: the rendered files must agree with it.
    return render_app(tmp, "evolution_api", app_inventory(tmp, MASTER, settings), wiring={
        "login": "(borgstack_registry"
                 " | borgstack.stack.postgres_tenants(borgstack_master_secret, borgstack_secret_overrides,"
                 " true, versions=borgstack_secret_versions)"
                 " | selectattr('name', 'eq', 'evolution_api') | first)",
        "redis_password": "borgstack_contracts.redis.secrets.redis_password",
        "plan": "borgstack_ram_plan.services['evolution-api'].limit_mb",
        "evolution_api_key": "borgstack_contracts.n8n.secrets.evolution_api_key",
        "evolution_api_instance": "evolution_api_instance",
        "postgresql": "borgstack_endpoints.postgresql", "redis": "borgstack_endpoints.redis",
        "n8n": "borgstack_endpoints.n8n", "redis_db": "borgstack_registry.evolution_api.redis_db",
        "hostname": "borgstack_hostnames.evolution_api",
        "s3_keys": "[borgstack_contracts.seaweedfs.secrets.seaweedfs_s3_access_key,"
                   " borgstack_contracts.seaweedfs.secrets.seaweedfs_s3_secret_key]"})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _render(tmp_path_factory.mktemp("evolution"), {})


@pytest.fixture(scope="module")
def rendered_odd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same with database and Redis passwords full of URL delimiters (operator overrides) and media on S3."""
    return _render(tmp_path_factory.mktemp("evolution-odd"), {"evolution_api_s3_enabled": True,
                                                              "borgstack_secret_overrides": {
                                                                  "postgresql_evolution_api": ODD_DB_PASSWORD,
                                                                  "redis_password": ODD_REDIS_PASSWORD}})


def _env(rendered: dict[str, Any]) -> dict[str, str]:
    return rendered["config"]["services"]["evolution-api"]["environment"]


def test_every_variable_we_set_is_read_by_the_image(rendered):
    assert_reads_only(_env(rendered), FACTS["reads"], "evolution-api:v2.2.3")


def test_nothing_security_relevant_is_left_to_the_bundled_example(rendered):
    env = _env(rendered)
    missing = sorted(set(FACTS["must_set"]) - set(env))
    assert missing == [], f"left to /evolution/.env (upstream's .env.example): {missing}"
    secrets_kept = sorted(k for k in FACTS["secrets"] if env[k] in ("", FACTS["example"].get(k)))
    assert secrets_kept == [], f"secrets empty or upstream's public value: {secrets_kept}"
    assert env["AUTHENTICATION_API_KEY"] != "BQYHJGJHJ"  # env.config.ts' own fallback


def test_only_switched_off_features_fall_back_to_the_example(rendered):
    env = _env(rendered)
    for switch in FACTS["inert"]:
        assert env[switch] == "false", f"{switch} must be switched off for its variables to be left to the example"
    prefixes = tuple(FACTS["inert"].values())
    fallback = sorted(k for k in FACTS["example"] if k in FACTS["reads"] and k not in env and not k.startswith(prefixes))
    assert fallback == [], f"read by the image, taken from the bundled example because we do not set them: {fallback}"


def test_secrets_only_in_the_root_only_env_file_and_never_printed(rendered):
    env, wiring = _env(rendered), rendered["wiring"]
    secrets = unique_secrets(env, FACTS["secrets"])
    assert_secrets_hidden(rendered, {**secrets, "database password": wiring["login"]["password"],
                                     "redis_password": wiring["redis_password"],
                                     "evolution_api_key": wiring["evolution_api_key"]})
    compose_text = (rendered["out"] / "compose.yaml").read_text()
    env_file = yaml.safe_load(compose_text)["services"]["evolution-api"]["env_file"]
    assert env_file == [str(rendered["out"] / "secrets.env")]
    assert env["AUTHENTICATION_API_KEY"] == wiring["evolution_api_key"] and len(wiring["evolution_api_key"]) == 48


def _urls(env: dict[str, str]) -> dict[str, Any]:
    db, redis = urlsplit(env["DATABASE_CONNECTION_URI"]), urlsplit(env["CACHE_REDIS_URI"])
    return {
        "db": (db.scheme, unquote(db.username), unquote(db.password), db.hostname, db.port, db.path,
               parse_qs(db.query)),
        "redis": (redis.scheme, redis.username, unquote(redis.password), redis.hostname, redis.port, redis.path),
    }


def test_database_and_redis_urls_use_the_tenant_and_the_stacks_redis(rendered):
    env, wiring = _env(rendered), rendered["wiring"]
    keys = ("DATABASE_PROVIDER", "CACHE_REDIS_ENABLED", "CACHE_REDIS_PREFIX_KEY", "CACHE_LOCAL_ENABLED",
            "CACHE_REDIS_SAVE_INSTANCES", "DATABASE_SAVE_DATA_INSTANCE")
    observed = {**_urls(env), **{k: env[k] for k in keys}}
    assert observed == {
        "db": ("postgresql", "evolution_api", wiring["login"]["password"], wiring["postgresql"]["host"], 5432,
               "/evolution", {"schema": ["public"]}),
        "redis": ("redis", "", wiring["redis_password"], wiring["redis"]["host"], 6379, "/3"),
        "DATABASE_PROVIDER": "postgresql",
        "CACHE_REDIS_ENABLED": "true",
        "CACHE_REDIS_PREFIX_KEY": "borgstack-evolution",
        "CACHE_LOCAL_ENABLED": "false",
        "CACHE_REDIS_SAVE_INSTANCES": "false",
        "DATABASE_SAVE_DATA_INSTANCE": "true",
    }
    assert wiring["login"]["database"] == "evolution" and wiring["redis_db"] == 3


def test_passwords_with_url_delimiters_are_percent_encoded(rendered_odd):
    urls = _urls(_env(rendered_odd))
    assert urls["db"][2] == ODD_DB_PASSWORD and urls["db"][3:5] == ("borgstack-postgresql", 5432)
    assert urls["redis"][2] == ODD_REDIS_PASSWORD and urls["redis"][3:] == ("borgstack-redis", 6379, "/3")


def test_media_on_seaweedfs_when_switched_on(rendered_odd):
    env, keys = _env(rendered_odd), rendered_odd["wiring"]["s3_keys"]
    observed = {k: env[k] for k in ("S3_ENABLED", "S3_ENDPOINT", "S3_PORT", "S3_USE_SSL", "S3_BUCKET", "S3_REGION",
                                    "S3_ACCESS_KEY", "S3_SECRET_KEY")}
    assert observed == {"S3_ENABLED": "true", "S3_ENDPOINT": "borgstack-seaweedfs", "S3_PORT": "8333",
                        "S3_USE_SSL": "false", "S3_BUCKET": "evolution", "S3_REGION": "us-east-1",
                        "S3_ACCESS_KEY": keys[0], "S3_SECRET_KEY": keys[1]}
    compose_text = (rendered_odd["out"] / "compose.yaml").read_text()
    assert keys[0] not in compose_text and keys[1] not in compose_text and keys[1] not in rendered_odd["output"]


def test_global_webhook_to_n8n_over_the_internal_network(rendered):
    env = _env(rendered)
    svc = rendered["config"]["services"]["evolution-api"]
    events = {k.removeprefix("WEBHOOK_EVENTS_"): v for k, v in env.items()
              if k.startswith("WEBHOOK_EVENTS_") and k not in ("WEBHOOK_EVENTS_ERRORS", "WEBHOOK_EVENTS_ERRORS_WEBHOOK")}
    every_event = {k.removeprefix("WEBHOOK_EVENTS_") for k in FACTS["reads"] if k.startswith("WEBHOOK_EVENTS_")
                   and k not in ("WEBHOOK_EVENTS_ERRORS", "WEBHOOK_EVENTS_ERRORS_WEBHOOK")}
    observed = {
        "enabled": env["WEBHOOK_GLOBAL_ENABLED"], "url": env["WEBHOOK_GLOBAL_URL"],
        "by_events": env["WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS"], "errors": env["WEBHOOK_EVENTS_ERRORS"],
        "events set": set(events), "true": {k for k, v in events.items() if v == "true"},
        "others": {v for k, v in events.items() if k not in CHOSEN_EVENTS},
        "external_links": svc.get("external_links"),
    }
    assert observed == {
        "enabled": "true", "url": WEBHOOK, "by_events": "false", "errors": "false",
        "events set": every_event, "true": CHOSEN_EVENTS, "others": {"false"},
        "external_links": ["borgstack-n8n:borgstack-n8n.internal"],
    }
    n8n = rendered["wiring"]["n8n"]
    assert WEBHOOK == f"http://{n8n['container']}.internal:{n8n['port']}/webhook/borgstack/evolution"


def _lab_image(repo: str) -> str:
    tags = subprocess.run(["docker", "images", repo, "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                          text=True, check=True).stdout.split()
    if not tags:
        pytest.fail(f"lab image {repo} missing: run lab/build-images.sh")
    return tags[0]


def test_the_webhook_url_passes_evolutions_own_url_check(rendered):
    """webhook.controller.ts (2.2.3) sends the global webhook only when class-validator's isURL(url) - validator's
    defaults, require_tld: true - accepts it. The validator package of the n8n lab image (13.x; Evolution pins 13.12.0)
    answers for the rendered URL and for the bare container name Evolution would drop."""
    url = _env(rendered)["WEBHOOK_GLOBAL_URL"]
    bare = url.replace(".internal", "")
    script = ("const v=require('/usr/local/lib/n8n/node_modules/validator');"
              "console.log(JSON.stringify(process.argv.slice(1).map(u=>v.isURL(u))))")
    run = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "node",
                          _lab_image("borgstack-lab/n8n"), "-e", script, url, bare],
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [True, False]


def test_the_internal_name_resolves_through_the_compose_link(rendered, tmp_path):
    """The rendered external_links mechanism on a real Docker network: a stand-in for n8n (Caddy's lab image
    answering on n8n's port) is reached as <container>.internal from a container linked the way the role links
    Evolution, and not from one without the link."""
    caddy = _lab_image("borgstack-lab/caddy")
    svc = rendered["config"]["services"]["evolution-api"]
    target, alias = svc["external_links"][0].split(":")
    url = urlsplit(_env(rendered)["WEBHOOK_GLOBAL_URL"])
    assert url.hostname == alias
    tag = uuid.uuid4().hex[:8]
    network, stand_in = f"evoprobe-{tag}", f"evoprobe-{tag}-{target}"
    probe = {"services": {"probe": {
        "image": caddy, "networks": [network],
        "external_links": [f"{stand_in}:{stand_in}.internal"],
        "command": ["wget", "-qO-", "-T", "10", f"http://{stand_in}.internal:{url.port}{url.path}"]}},
        "networks": {network: {"external": True}}}
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(probe))
    subprocess.run(["docker", "network", "create", network], check=True, capture_output=True)
    try:
        subprocess.run(["docker", "run", "-d", "--name", stand_in, "--network", network, caddy, "caddy", "respond",
                        "--listen", f":{url.port}", "n8n stand-in"], check=True, capture_output=True)
        linked = subprocess.run(["docker", "compose", "-p", network, "-f", str(tmp_path / "compose.yaml"), "run",
                                 "--rm", "probe"], capture_output=True, text=True, check=False, timeout=120)
        unlinked = subprocess.run(["docker", "run", "--rm", "--network", network, caddy, "wget", "-qO-", "-T", "5",
                                   f"http://{stand_in}.internal:{url.port}{url.path}"],
                                  capture_output=True, text=True, check=False, timeout=60)
    finally:
        subprocess.run(["docker", "compose", "-p", network, "-f", str(tmp_path / "compose.yaml"), "down"],
                       capture_output=True, check=False)
        subprocess.run(["docker", "rm", "-f", stand_in], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)
    assert (linked.returncode, linked.stdout.strip()) == (0, "n8n stand-in"), linked.stderr
    assert unlinked.returncode != 0 and "n8n stand-in" not in unlinked.stdout


def test_public_address_language_telemetry_and_switches(rendered):
    env = _env(rendered)
    keys = ("SERVER_URL", "SERVER_PORT", "SERVER_TYPE", "SERVER_DISABLE_MANAGER", "SERVER_DISABLE_DOCS", "CORS_ORIGIN",
            "CORS_CREDENTIALS", "AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES", "DEL_INSTANCE", "LANGUAGE",
            "TELEMETRY_ENABLED", "SENTRY_DSN", "CONFIG_SESSION_PHONE_VERSION", "S3_ENABLED", "S3_ENDPOINT", "S3_PORT",
            "S3_USE_SSL", "S3_BUCKET", "CHATWOOT_ENABLED", "DATABASE_CONNECTION_CLIENT_NAME")
    assert {k: env[k] for k in keys} == {
        "SERVER_URL": "https://evolution-api.example.com.br",
        "SERVER_PORT": "8080",
        "SERVER_TYPE": "http",
        "SERVER_DISABLE_MANAGER": "false",
        "SERVER_DISABLE_DOCS": "true",
        # '*' is the only value that keeps requests without an Origin header (n8n, the health check) working in 2.2.3.
        "CORS_ORIGIN": "*",
        "CORS_CREDENTIALS": "false",
        "AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES": "false",
        "DEL_INSTANCE": "false",
        "LANGUAGE": "pt-BR",
        "TELEMETRY_ENABLED": "false",
        "SENTRY_DSN": "",
        "CONFIG_SESSION_PHONE_VERSION": "",
        "S3_ENABLED": "false",
        "S3_ENDPOINT": "borgstack-seaweedfs",
        "S3_PORT": "8333",
        "S3_USE_SSL": "false",
        "S3_BUCKET": "evolution",
        "CHATWOOT_ENABLED": "false",
        "DATABASE_CONNECTION_CLIENT_NAME": "borgstack",
    }
    assert rendered["wiring"]["evolution_api_instance"] == "principal"
    assert rendered["wiring"]["hostname"] == "evolution-api.example.com.br"


def test_container_volume_networks_limit_and_healthcheck(rendered):
    svc = rendered["config"]["services"]["evolution-api"]
    observed = {
        **container_facts(svc),
        "healthcheck": svc["healthcheck"]["test"],
    }
    assert observed == {
        "image": "evoapicloud/evolution-api:v2.2.3",
        "container_name": "borgstack-evolution-api",
        "ports": [],
        "networks": ["borgstack_external", "borgstack_internal"],
        "mounts": {"/evolution/instances": ("volume", "borgstack_evolution_api_instances")},
        "mem_limit MiB": rendered["wiring"]["plan"],
        "healthcheck": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
    }


# --- The validate entry point with bad input ---------------------------------------------------------------------

CS_BASE = {"instance": "principal", "chatwoot_account_id": 1, "chatwoot_inbox_id": 1}
CS_TWO = {**CS_BASE, "teams": ["Vendas"], "numbers": [{"instance": "principal", "inbox": "WhatsApp"},
                                                      {"instance": "vendas", "inbox": "Vendas", "team": "Vendas"}]}


def cs_numbers(*numbers: dict[str, Any]) -> dict[str, Any]:
    return {**CS_BASE, "teams": ["Vendas"], "numbers": list(numbers)}


SHORT_KEY = "short-evolution-key-0123"  # 24 characters: accepted by stack_secret (>= 12), refused by the role
VALIDATION_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    # case: (play vars over the wiring, None when accepted or a fragment of the failure message)
    "wiring": ({}, None),
    "api_key_override_too_short": ({"borgstack_secret_overrides": {"evolution_api_key": SHORT_KEY}},
                                   "borgstack_secret_overrides.evolution_api_key"),
    "webhook_plain_http_public": ({"evolution_api_webhook_url": "http://n8n.example.com.br/webhook/borgstack/evolution"},
                                  "evolution_api_webhook_url must be https://<public host>"),
    "webhook_bare_container": ({"evolution_api_webhook_url": "http://borgstack-n8n:5678/webhook/borgstack/evolution"},
                               "evolution_api_webhook_url must be"),
    "webhook_unlinked_container": (
        {"evolution_api_webhook_url": "http://borgstack-chatwoot.internal:3000/x"}, "evolution_api_webhook_url must be"),
    "webhook_not_a_url": ({"evolution_api_webhook_url": "n8n/webhook"}, "evolution_api_webhook_url must be"),
    "webhook_https_public": ({"evolution_api_webhook_url": "https://n8n.example.com.br/webhook/borgstack/evolution"},
                             None),
    "webhook_off_ignores_url": ({"evolution_api_webhook_enabled": False, "evolution_api_webhook_url": "x"}, None),
    "instance_with_spaces": ({"evolution_api_instance": "minha loja"}, "evolution_api_instance must be"),
    "phone_version": ({"evolution_api_phone_version": "latest"}, "evolution_api_phone_version must be"),
    "phone_version_set": ({"evolution_api_phone_version": "2.3000.1028457684"}, None),
    "unknown_event": ({"evolution_api_webhook_events": ["MESSAGES_UPSERT", "MESSAGE_UPSERT"]},
                      "evolution_api_webhook_events"),
    "instance_not_saved": ({"evolution_api_db_save": {"instance": False, "new_message": True, "message_update": True,
                                                      "contacts": True, "chats": True, "labels": True,
                                                      "historic": False, "is_on_whatsapp": True}},
                           "evolution_api_db_save.instance must stay true"),
    # The RAM plan gives Evolution what borgstack_services says it may have: below its floor is refused.
    "small_memory": ({"borgstack_services": {"evolution_api": {"containers": {"evolution-api": {
        "memory": {"weight": 6, "min_mb": 256, "max_mb": 256}}}}}},
        "memory limit of Evolution API 0 or at least 512 MiB (found 256"),
    "wa_token_override_too_short": ({"borgstack_secret_overrides": {"evolution_api_wa_business_token": "t" * 13}},
                                    "borgstack_secret_overrides.evolution_api_wa_business_token"),
    "s3_secret_override_too_short": ({"evolution_api_s3_enabled": True,
                                      "borgstack_secret_overrides": {"seaweedfs_s3_secret_key": "s" * 13}},
                                     "borgstack_secret_overrides.seaweedfs_s3_secret_key"),
    # Several WhatsApp numbers (borgstack_customer_service.numbers, issue 21 item 3): refused before any change.
    "two_numbers": ({"borgstack_customer_service": CS_TWO}, None),
    "numbers_same_instance": ({"borgstack_customer_service": cs_numbers({"instance": "principal", "inbox": "WhatsApp"},
                                                                        {"instance": "principal", "inbox": "Vendas"})},
                              "borgstack_customer_service.numbers[1].instance: 'principal' is already numbers[0]'s"),
    "numbers_same_inbox": ({"borgstack_customer_service": cs_numbers({"instance": "principal", "inbox": "WhatsApp"},
                                                                     {"instance": "vendas", "inbox": "whatsapp"})},
                           "borgstack_customer_service.numbers[1].inbox: 'whatsapp' is already numbers[0]'s inbox"),
    "numbers_bad_instance": ({"borgstack_customer_service": cs_numbers({"instance": "principal", "inbox": "WhatsApp"},
                                                                       {"instance": "loja sp", "inbox": "Vendas"})},
                             "borgstack_customer_service.numbers[1].instance: 'loja sp' is not an Evolution API"),
    "numbers_unknown_team": ({"borgstack_customer_service": cs_numbers({"instance": "principal", "inbox": "WhatsApp"},
                                                                       {"instance": "vendas", "inbox": "Vendas",
                                                                        "team": "Compras"})},
                             "borgstack_customer_service.numbers[1].team: 'Compras' is not one of"),
    "disabled_ignores_bad_values": ({"borgstack_services": {"evolution_api": {"enabled": False}},
                                     "evolution_api_instance": "a b"}, None),
}


@pytest.fixture(scope="module")
def validation_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case in one ansible-playbook run: a play per case running the role's validate entry point (argument
    specs, then tasks/validate.yml) with the wiring, its failure rescued and recorded."""
    tmp = tmp_path_factory.mktemp("evolution-validate")
    return run_validation(tmp, "evolution_api", VALIDATION_CASES, app_inventory(tmp, MASTER))


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation(validation_outcomes, case):
    assert_outcome(validation_outcomes["outcomes"][case], VALIDATION_CASES[case][1])


def test_validation_names_the_override_and_never_prints_it(validation_outcomes):
    msg = validation_outcomes["outcomes"]["api_key_override_too_short"]["msg"]
    assert "at least 32" in msg and "borgstack_secret_overrides.evolution_api_key" in msg
    assert SHORT_KEY not in validation_outcomes["output"] + json.dumps(validation_outcomes["outcomes"])


def test_the_cluster_would_place_it_on_the_swarm(rendered):
    """Issue 24: on a cluster this service is not deployed yet (the validation refuses it there), but the stack file
    its Compose file becomes is rendered and accepted by ``docker stack config``; nothing runs on a swarm here."""
    config = swarm_stack_config(rendered["out"] / "compose.yaml", "evolution_api")
    for spec in config["services"].values():
        assert spec["deploy"]["replicas"] == 1 and spec["deploy"]["update_config"]["order"] == "stop-first"
