# SPDX-License-Identifier: GPL-3.0-or-later
"""The chatwoot role, validated WITHOUT a Chatwoot container.

No image ``chatwoot/chatwoot:v4.6.0-ce`` can be obtained here (no container registry; the image is built from the
Rails app, its gems and a Node build). So NOTHING here starts Chatwoot, and these are NOT exercised:

- the web, Sidekiq and ``rails db:chatwoot_prepare`` really starting with the rendered environment, the schema being
  loaded into the tenant with its four extensions, the BusyBox ``wget`` health check reading ``/api``;
- files/setup.rb against real models: it is only syntax-checked (``ruby -c``) and its settings keys compared with
  what the role sends; the class and method names it uses (AccountBuilder, AccountUser, AccessToken, Channel::Api,
  Inbox, Webhook, Redis::Alfred CHATWOOT_INSTALLATION_ONBOARDING) were read in upstream's source, not run;
- attachments streamed through Chatwoot (files/storage_proxy.rb sets Rails' proxy routes) and the CSP of the
  registry entry against the real dashboard;
- the job's run-once behaviour is proven with a real engine by tests/integration/targets/compose_deploy (a tiny job
  with the same marker pattern), not with this image.

What IS checked, through Ansible itself (``ansible-playbook -c local``) with the stack's real wiring
(playbooks/group_vars/all linked into a throwaway inventory):

- the Compose file and the secret environment the role would write, rendered from its templates;
  ``docker compose config`` accepts them; every variable of the merged environment is one the image reads
  (chatwoot-4.6.0-env.yml, with its sources) and every variable with a public or unsafe default is set; secrets
  unique, alphanumeric where Chatwoot asks, only in secrets.env; PostgreSQL, Redis (index 4, password) and S3 wired
  to the stack's services; the job wiring (web and workers depend on the job completing successfully; the job is
  labelled one-off, never restarted, and keyed on the image);
- the role's ``validate`` entry point refuses issue 9's bad input naming the variable (a SECRET_KEY_BASE override
  with non-alphanumeric characters, a webhook URL neither https-public nor internal, a weak admin password override)
  and the registry refuses Chatwoot without PostgreSQL or Redis.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from role_harness import (REPO_ROOT, app_inventory, assert_outcome, assert_public_defaults_overridden,
                          assert_reads_only, assert_secrets_hidden, render_app, run_validation, swarm_stack_config,
                          unique_secrets)
import yaml

HERE = Path(__file__).resolve().parent
ROLE = REPO_ROOT / "roles" / "chatwoot"
FACTS = yaml.safe_load((HERE / "chatwoot-4.6.0-env.yml").read_text())
MASTER = "m" * 24 + "Chatwoot-Test-Master-0123456789"
SERVICES = ("chatwoot", "chatwoot-sidekiq-1", "chatwoot-migrate")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Render compose.yaml and secrets.env as the role would (its validate entry point first), then
    ``docker compose config``."""
    tmp = tmp_path_factory.mktemp("chatwoot")
    mounted = {"name": "Write the files the Compose file mounts",
               "ansible.builtin.copy": {"dest": str(tmp / "project" / "services" / "chatwoot" / "{{ item }}"),
                                        "mode": "0644", "content": "# x\n"},
               "loop": ["storage-proxy.rb", "setup.rb"]}
    # What the other side holds (the tenant PostgreSQL creates, Redis' and SeaweedFS' own secrets, the token n8n
    # sends), read from their contracts, not from chatwoot_service: the rendered files must agree with it.
    return render_app(tmp, "chatwoot", app_inventory(tmp, MASTER), more_tasks=[mounted], wiring={
        "logins": "(borgstack_registry"
                  " | borgstack.stack.postgres_tenants(borgstack_master_secret, borgstack_secret_overrides,"
                  " true, versions=borgstack_secret_versions)"
                  " | selectattr('name', 'eq', 'chatwoot') | first)",
        "redis_password": "borgstack_contracts.redis.secrets.redis_password",
        "plan": "borgstack_ram_plan.services",
        "admin_password": "borgstack_contracts.chatwoot.secrets.chatwoot_admin_password",
        "api_token": "borgstack_contracts.n8n.secrets.chatwoot_api_token", "webhook_url": "chatwoot_webhook_url",
        "account_id": "chatwoot_account_id", "inbox_id": "chatwoot_inbox_id",
        "s3": "[borgstack_contracts.seaweedfs.peers.seaweedfs.url,"
              " borgstack_contracts.seaweedfs.secrets.seaweedfs_s3_access_key,"
              " borgstack_contracts.seaweedfs.secrets.seaweedfs_s3_secret_key]",
        "endpoints": "borgstack_endpoints", "tenants": "borgstack_contracts.postgresql.tenants",
        "health": "borgstack_registry | borgstack.stack.health_checks(borgstack_domain, borgstack_endpoints,"
                  " borgstack_contracts.postgresql.tenants, borgstack_contracts.redis.secrets.redis_password)"})


def _env(rendered: dict[str, Any], service: str = "chatwoot") -> dict[str, str]:
    return rendered["config"]["services"][service]["environment"]


def test_every_variable_we_set_is_read_by_the_image(rendered):
    for service in SERVICES:
        assert_reads_only(_env(rendered, service), FACTS["reads"], f"chatwoot v4.6.0 ({service})")


def test_every_variable_with_a_public_or_unsafe_default_is_set(rendered):
    env = _env(rendered)
    assert_public_defaults_overridden(env, FACTS)
    # The three containers run with the same environment.
    assert _env(rendered, "chatwoot-sidekiq-1") == env == _env(rendered, "chatwoot-migrate")


def test_settings(rendered):
    env = _env(rendered)
    observed = {k: env[k] for k in ("RAILS_ENV", "NODE_ENV", "INSTALLATION_ENV", "RAILS_LOG_TO_STDOUT", "FRONTEND_URL",
                                    "FORCE_SSL", "ENABLE_ACCOUNT_SIGNUP", "DEFAULT_LOCALE", "DISABLE_TELEMETRY",
                                    "ACTIVE_STORAGE_SERVICE", "STORAGE_FORCE_PATH_STYLE")}
    assert observed == {
        "RAILS_ENV": "production", "NODE_ENV": "production", "INSTALLATION_ENV": "docker",
        "RAILS_LOG_TO_STDOUT": "true", "FRONTEND_URL": "https://chatwoot.example.com.br", "FORCE_SSL": "true",
        "ENABLE_ACCOUNT_SIGNUP": "false", "DEFAULT_LOCALE": "pt_BR", "DISABLE_TELEMETRY": "true",
        "ACTIVE_STORAGE_SERVICE": "s3_compatible", "STORAGE_FORCE_PATH_STYLE": "true",
    }
    assert not any(k.startswith("SMTP_") or k == "MAILER_SENDER_EMAIL" for k in env), "SMTP is off by default"


def test_secrets_are_derived_unique_and_only_in_the_root_only_env_file(rendered):
    env = _env(rendered)
    secrets = unique_secrets(env, FACTS["secrets"])
    assert re.fullmatch(r"[A-Za-z0-9]{128}", env["SECRET_KEY_BASE"])
    assert all(len(env[k]) >= 32 for k in FACTS["secrets"] if k.startswith("ACTIVE_RECORD"))
    wiring = rendered["wiring"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", wiring["api_token"])
    password = wiring["admin_password"]
    assert all(re.search(p, password) for p in ("[A-Z]", "[a-z]", "[0-9]", "[-!@#$%^&*()_+=]")), "Chatwoot's rules"
    assert_secrets_hidden(rendered, {**secrets, "api_token": wiring["api_token"], "admin_password": password})
    env_file = (rendered["out"] / "secrets.env").read_text()
    assert sorted(line.split("=", 1)[0] for line in env_file.splitlines()) == sorted(FACTS["secrets"])


def test_database_redis_and_storage_use_the_stacks_services(rendered):
    env, wiring = _env(rendered), rendered["wiring"]
    redis = urlsplit(env["REDIS_URL"])
    s3_endpoint, s3_key, s3_secret = wiring["s3"]
    observed = {
        "postgres": (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DATABASE"], env["POSTGRES_USERNAME"],
                     env["POSTGRES_PASSWORD"]),
        "redis": (redis.scheme, redis.hostname, redis.port, redis.path, redis.password, env["REDIS_PASSWORD"]),
        "s3": (env["STORAGE_ENDPOINT"], env["STORAGE_BUCKET_NAME"], env["STORAGE_ACCESS_KEY_ID"],
               env["STORAGE_SECRET_ACCESS_KEY"]),
    }
    logins = wiring["logins"]
    assert observed == {
        "postgres": (wiring["endpoints"]["postgresql"]["host"], "5432", "chatwoot", logins["name"],
                     logins["password"]),
        "redis": ("redis", wiring["endpoints"]["redis"]["host"], 6379, "/4", None, wiring["redis_password"]),
        "s3": (s3_endpoint, "chatwoot", s3_key, s3_secret),
    }
    tenant = next(t for t in wiring["tenants"] if t["name"] == "chatwoot")
    assert sorted(tenant["extensions"]) == ["pg_stat_statements", "pg_trgm", "pgcrypto", "vector"]


def test_containers_job_wiring_limits_and_health(rendered):
    services = rendered["config"]["services"]
    plan = rendered["wiring"]["plan"]
    assert sorted(services) == sorted(SERVICES)
    web, worker, job = (services[s] for s in SERVICES)
    observed = {
        "names": [s["container_name"] for s in (web, worker, job)],
        "commands": [web["entrypoint"] + web["command"], worker["command"], job["entrypoint"] + job["command"][:2]],
        "depends_on": [web["depends_on"], worker["depends_on"]],
        "job": (job.get("restart"), job["labels"], job.get("depends_on")),
        "restart": (web["restart"], worker["restart"]),
        "ports": [s.get("ports", []) for s in (web, worker, job)],
        "networks": sorted(web["networks"]),
        "mem MiB": [int(s["mem_limit"]) // 1024 ** 2 for s in (web, worker, job)],
    }
    done = {"condition": "service_completed_successfully", "required": True}
    assert observed == {
        "names": ["borgstack-chatwoot", "borgstack-chatwoot-sidekiq-1", "borgstack-chatwoot-migrate"],
        "commands": [["docker/entrypoints/rails.sh", "bundle", "exec", "rails", "s", "-p", "3000", "-b", "0.0.0.0"],
                     ["bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"],
                     ["docker/entrypoints/rails.sh", "sh", "-c"]],
        "depends_on": [{"chatwoot-migrate": done}, {"chatwoot-migrate": done}],
        "job": ("no", {"org.borgstack.job": "true"}, None),
        "restart": ("unless-stopped", "unless-stopped"),
        "ports": [[], [], []],
        "networks": ["borgstack_external", "borgstack_internal"],
        "mem MiB": [plan["chatwoot"]["limit_mb"], plan["chatwoot-sidekiq"]["limit_mb"],
                    plan["chatwoot-migrate"]["limit_mb"]],
    }
    script = job["command"][2]
    assert "bundle exec rails db:chatwoot_prepare" in script
    # Keyed on the image only: the marker changes with the version (Compose's $$ is a literal $).
    assert script.count("chatwoot/chatwoot:v4.6.0-ce") == 3 and "$(cat /borgstack-migrations/prepared" in script
    assert {m["target"]: m["source"] for m in job["volumes"]}["/borgstack-migrations"] == \
        "borgstack_chatwoot_migrations"
    assert {m["target"] for m in web["volumes"]} == {"/borgstack/setup.rb",
                                                     "/app/config/initializers/zz_borgstack_storage_proxy.rb"}
    health = " ".join(web["healthcheck"]["test"])
    assert "wget -qO- http://127.0.0.1:3000/api" in health and '"queue_services":"ok","data_services":"ok"' in health
    check = next(c for c in rendered["wiring"]["health"] if c["name"] == "chatwoot")
    assert check["containers"] == ["borgstack-chatwoot", "borgstack-chatwoot-sidekiq-1"]  # not the job
    assert check["internal_check"]["expect_body"] in health


def test_n8n_reads_the_token_the_ids_and_gets_the_webhook(rendered):
    wiring = rendered["wiring"]
    n8n = wiring["endpoints"]["n8n"]
    assert wiring["webhook_url"] == f"http://{n8n['host']}:{n8n['port']}/webhook/borgstack/chatwoot"
    assert (wiring["account_id"], wiring["inbox_id"]) == (1, 1)


def test_the_setup_script_parses_and_reads_what_the_role_sends():
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.fail("ruby not found (apt install ruby): the first-account script is syntax-checked here")
    for name in ("setup.rb", "storage_proxy.rb"):
        proc = subprocess.run([ruby, "-c", str(ROLE / "files" / name)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0 and "Syntax OK" in proc.stdout, proc.stderr
    script = (ROLE / "files" / "setup.rb").read_text()
    read = set(re.findall(r"@s\['(\w+)'\]", script)) | set(re.findall(r"settings\['(\w+)'\]", script))
    task = yaml.safe_load((ROLE / "tasks" / "setup.yml").read_text())
    stdin = next(t for t in task[1]["block"] if "ansible.builtin.command" in t)["ansible.builtin.command"]["stdin"]
    sent = set(re.findall(r"'(\w+)':", stdin))
    assert read == sent, f"read but not sent: {sorted(read - sent)}; sent but not read: {sorted(sent - read)}"
    # The names checked against upstream's source (see the module docstring).
    for name in ("AccountBuilder.new", "AccessToken", "Channel::Api.create!", "Webhook.create!",
                 "Redis::Alfred::CHATWOOT_INSTALLATION_ONBOARDING", "AccountUser.roles['administrator']",
                 "Team.create!"):
        assert name in script


# --- Bad input: the validate entry point and the registry ---------------------------------------------------------

BAD_KEY = "A" * 70 + "/+="
SHORT_TOKEN = "abc123abc123abc"
VALIDATION_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "wiring": ({}, None),
    # Several WhatsApp numbers (issue 21 item 3): an inbox per number, the teams listed.
    "numbers_two_inboxes": ({"borgstack_customer_service": {
        "instance": "principal", "chatwoot_account_id": 1, "chatwoot_inbox_id": 1, "teams": ["Vendas"],
        "numbers": [{"instance": "principal", "inbox": "WhatsApp"},
                    {"instance": "vendas", "inbox": "Vendas", "team": "Vendas"}]}}, None),
    "numbers_same_inbox": ({"borgstack_customer_service": {
        "instance": "principal", "chatwoot_account_id": 1, "chatwoot_inbox_id": 1,
        "numbers": [{"instance": "principal", "inbox": "WhatsApp"}, {"instance": "vendas", "inbox": "WhatsApp"}]}},
        "borgstack_customer_service.numbers[1].inbox: 'WhatsApp' is already numbers[0]'s inbox"),
    "numbers_unknown_team": ({"borgstack_customer_service": {
        "instance": "principal", "chatwoot_account_id": 1, "chatwoot_inbox_id": 1,
        "numbers": [{"instance": "principal", "inbox": "WhatsApp", "team": "Suporte"}]}},
        "borgstack_customer_service.numbers[0].team: 'Suporte' is not one of borgstack_customer_service.teams"),
    "secret_key_base_not_alphanumeric": (
        {"borgstack_secret_overrides": {"chatwoot_secret_key_base": BAD_KEY}},
        "borgstack_secret_overrides.chatwoot_secret_key_base when overridden) must be at least 64 letters and digits"),
    "webhook_plain_http_public": ({"chatwoot_webhook_url": "http://hooks.example.com.br/chatwoot"},
                                  "chatwoot_webhook_url must be https:// to a public host name"),
    "webhook_https_internal": ({"chatwoot_webhook_url": "https://borgstack-n8n:5678/webhook/borgstack/chatwoot"},
                               "chatwoot_webhook_url must be https://"),
    "webhook_http_unknown_internal": ({"chatwoot_webhook_url": "http://n8n:5678/webhook/x"},
                                      "chatwoot_webhook_url must be"),
    "webhook_https_public": ({"chatwoot_webhook_url": "https://n8n.example.com.br/webhook/borgstack/chatwoot"}, None),
    "admin_password_without_special": ({"borgstack_secret_overrides": {"chatwoot_admin_password": "Abcdefgh12345"}},
                                       "borgstack_secret_overrides.chatwoot_admin_password when overridden) needs"),
    # 15 characters: stack_secret takes an override of 12 or more, the role wants 24 letters and digits.
    "api_token_short": ({"borgstack_secret_overrides": {"chatwoot_api_token": SHORT_TOKEN}},
                        "borgstack_secret_overrides.chatwoot_api_token at least 24"),
    "encryption_key_short": ({"borgstack_secret_overrides": {"chatwoot_encryption_primary_key": "k" * 20}},
                             "borgstack_secret_overrides.chatwoot_encryption_primary_key"),
    # The RAM plan gives the web what borgstack_services says it may have: below Chatwoot's floor is refused.
    "web_memory_too_small": ({"borgstack_services": {"chatwoot": {"containers": {"chatwoot": {
        "memory": {"weight": 8, "min_mb": 256, "max_mb": 256}}}}}}, "Chatwoot's web 0 or at least 512 MiB"),
    "signup_choice": ({"chatwoot_account_signup": "yes"}, "chatwoot_account_signup"),
    "unknown_webhook_event": ({"chatwoot_webhook_events": ["message_sent"]}, "chatwoot_webhook_events"),
    "bad_locale": ({"chatwoot_default_locale": "portuguese"}, "chatwoot_default_locale like pt_BR"),
    "disabled_ignores_bad_values": ({"borgstack_services": {"chatwoot": {"enabled": False}},
                                     "borgstack_secret_overrides": {"chatwoot_secret_key_base": BAD_KEY}}, None),
}


@pytest.fixture(scope="module")
def validation_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("chatwoot-validate")

    def registry_plays(results: Path) -> list[dict[str, Any]]:
        """The registry (the site play's first check) with PostgreSQL or Redis off."""
        return [{"name": f"Registry without {dep}", "hosts": "borgstack", "gather_facts": False,
                 "vars": {"borgstack_services": {dep: {"enabled": False}}},
                 "tasks": [{"name": "Record the registry's errors", "ansible.builtin.copy": {
                     "dest": str(results / f"registry_without_{dep}.json"), "mode": "0600",
                     "content": "{{ {'errors': borgstack_registry"
                                " | borgstack.stack.registry_errors(borgstack_domain)} | to_json }}"}}]}
                for dep in ("postgresql", "redis")]

    return run_validation(tmp, "chatwoot", VALIDATION_CASES, app_inventory(tmp, MASTER), more_plays=registry_plays)


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation(validation_outcomes, case):
    assert_outcome(validation_outcomes["outcomes"][case], VALIDATION_CASES[case][1])


def test_the_override_is_named_never_printed(validation_outcomes):
    assert BAD_KEY not in validation_outcomes["output"] + json.dumps(validation_outcomes["outcomes"])
    for value in ("Abcdefgh12345", SHORT_TOKEN):
        assert value not in validation_outcomes["output"] + json.dumps(validation_outcomes["outcomes"])


@pytest.mark.parametrize("dep", ["postgresql", "redis"])
def test_chatwoot_without_its_database_or_redis_is_refused(validation_outcomes, dep):
    errors = validation_outcomes["outcomes"][f"registry_without_{dep}"]["errors"]
    assert any(e.startswith(f"chatwoot needs {dep}: enable borgstack_services.{dep}") for e in errors), errors


def test_the_cluster_would_place_it_on_the_swarm(rendered):
    """Issue 24: on a cluster this service is not deployed yet (the validation refuses it there), but the stack file
    its Compose file becomes is rendered and accepted by ``docker stack config``; nothing runs on a swarm here."""
    config = swarm_stack_config(rendered["out"] / "compose.yaml", "chatwoot")
    jobs = {key for key, spec in config["services"].items() if spec["deploy"].get("mode") == "replicated-job"}
    # The migration is the one job: one task, on a node holding data (where its marker volume stays).
    assert jobs == {"chatwoot-migrate"}, jobs
    assert config["services"]["chatwoot-migrate"]["deploy"]["placement"]["constraints"] == [
        "node.labels.borgstack.data == true"]
    # The web and the Sidekiq workers spread over any node.
    for key, spec in config["services"].items():
        if key not in jobs:
            assert spec["deploy"]["replicas"] >= 1 and "placement" not in spec["deploy"], key
