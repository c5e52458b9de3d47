# SPDX-License-Identifier: GPL-3.0-or-later
"""The duplicati role, validated WITHOUT a Duplicati container.

No image ``duplicati/duplicati:2.1.1.102`` can be obtained here (no container registry; the image is a .NET
self-contained build published only as a binary image). So NOTHING here starts Duplicati, and these are NOT
exercised:

- the server reading DUPLICATI__WEBSERVICE_PASSWORD and SETTINGS_ENCRYPTION_KEY as ``$name`` references resolved by
  its file secret provider (read in Server/Program.cs and Library/Main/SecretProviderHelper.cs at the tag, not run);
- the allowed host name letting Caddy's requests through, the bash /dev/tcp health check, the UI behind Caddy
  (its CSP is UNVERIFIED);
- a real backup reaching a real destination, and a restore from it;
- the systemd drop-in running the trigger after a real dump set (the unit is rendered and read here only).

The job itself is created through the REST API by the duplicati_backup module, tested against a contract server
in tests/integration/targets/duplicati_backup.

What IS checked, through Ansible itself (``ansible-playbook -c local`` from the repository root) with the stack's
real wiring (playbooks/group_vars/all linked into a throwaway inventory) and Duplicati switched on there:

- the Compose file, the secrets file, the recovery keys file, the trigger's settings and the unit drop-in the role
  would write, rendered from its templates; ``docker compose config`` accepts the Compose file; the environment
  holds only variables the image reads (duplicati-2.1.1.102-env.yml, from upstream's source at the tag) and sets
  the ones without which it is unusable behind Caddy; the secrets are only in the root-only secrets file (as the
  keys the environment references), never in the Compose file or the output;
- what is backed up: the dump directory and the enabled apps' volumes, all read-only, no database volume, and
  every source path of the job is a mount of the container;
- the Caddyfile the caddy role renders: a real Caddy (the lab image) answers 403 to the play's pre-authenticated
  scheme (``Authorization: PreAuth``) from outside and passes other requests on;
- the role's ``validate`` entry point refuses issue 10's bad input - an unknown destination scheme, a retention
  string Duplicati would refuse (checked against a parser written from upstream's, in the contract server), a
  missing destination - and other bad settings, naming the variable, never printing a secret.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from role_harness import (DOMAIN, REPO_ROOT, app_inventory, assert_outcome, assert_reads_only, container_facts,
                          expose_role, real_caddy, render_app, render_task, run_validation, swarm_stack_config)

sys.path.insert(0, str(REPO_ROOT / "lab" / "contract"))
from duplicati_contract import parse_retention_policy  # noqa: E402  # pylint: disable=wrong-import-position

HERE = Path(__file__).resolve().parent
FACTS = yaml.safe_load((HERE / "duplicati-2.1.1.102-env.yml").read_text())
MASTER = "d" * 24 + "Duplicati-Test-Master-0123456789"
S3_SECRET = "S3-secret-Access-Key-0123456789"
DESTINATION = f"s3://borgstack-backups/prod?s3-server-name=s3.example.com&auth-username=AKIA1&auth-password={S3_SECRET}"
ON = {"borgstack_services": {"duplicati": {"enabled": True}}, "duplicati_destination_url": DESTINATION,
      "caddy_acme_email": "ti@example.com.br", "caddy_tls_internal": True}
HOST = f"duplicati.{DOMAIN}"
DATABASE_VOLUMES = {"borgstack_postgresql_data", "borgstack_mongodb_data", "borgstack_mongodb_config",
                    "borgstack_redis_data"}

pytestmark = pytest.mark.integration


def _derived(purpose: str, length: int) -> str:
    """The Jinja expression deriving a secret from the master secret (or its override) by purpose."""
    return (f"'{purpose}' | borgstack.stack.stack_secret(borgstack_master_secret, borgstack_secret_overrides, "
            f"{length}, versions=borgstack_secret_versions)")


def contract(**changes: Any) -> str:
    """duplicati_service as the registry gives it, with ``changes`` merged in (lists replaced): a contract a registry
    override could produce, to prove the role's own check."""
    return "{{ borgstack_contracts.duplicati | combine(%s, recursive=True) }}" % json.dumps(changes)


def _render(tmp: Path, settings: dict[str, Any]) -> dict[str, Any]:
    role = REPO_ROOT / "roles" / "duplicati"
    out = tmp / "project" / "services" / "duplicati"
    more = [
        render_task("Render the secrets file", role / "templates" / "secrets.json.j2", out / "secrets.json", "0600"),
        render_task("Render the recovery keys", role / "templates" / "recovery-keys.txt.j2",
                    out / "RECOVERY-KEYS.txt", "0600"),
        render_task("Render the unit drop-in", role / "templates" / "duplicati.conf.j2", tmp / "duplicati.conf"),
        expose_role("caddy"),
        render_task("Render the Caddyfile", REPO_ROOT / "roles" / "caddy" / "templates" / "Caddyfile.j2",
                    tmp / "Caddyfile"),
        {"name": "Render the trigger's settings", "no_log": True,
         "ansible.builtin.copy": {"dest": str(tmp / "trigger.json"), "mode": "0600",
                                  "content": "{{ duplicati_trigger_config | to_json }}"}},
    ]
    rendered = render_app(tmp, "duplicati", app_inventory(tmp, MASTER, settings), secrets_env=False, more_tasks=more,
                          # The secrets derived here from the master secret as the wiring derived them before the
                          # contract; the host name from the registry.
                          wiring={"password": _derived("duplicati_web_password", 40),
                                  "token": _derived("duplicati_api_token", 40),
                                  "key": _derived("duplicati_settings_encryption_key", 48),
                                  "passphrase": _derived("duplicati_backup_passphrase", 48),
                                  "sources": "duplicati_sources", "options": "duplicati_options",
                                  "volumes": "duplicati_service.sources",
                                  "plan": "borgstack_ram_plan.services.duplicati.limit_mb",
                                  "enabled": "borgstack_enabled", "hostname": "borgstack_hostnames.duplicati"})
    rendered["secrets"] = json.loads((out / "secrets.json").read_text())
    rendered["recovery"] = (out / "RECOVERY-KEYS.txt").read_text()
    rendered["dropin"] = (tmp / "duplicati.conf").read_text()
    rendered["caddyfile"] = tmp / "Caddyfile"
    rendered["trigger"] = json.loads((tmp / "trigger.json").read_text())
    return rendered


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _render(tmp_path_factory.mktemp("duplicati"), ON)


@pytest.fixture(scope="module")
def rendered_local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A local destination (file://) and an extra source."""
    return _render(tmp_path_factory.mktemp("duplicati-local"),
                   {**ON, "duplicati_destination_url": "file:///mnt/backup/borgstack",
                    "duplicati_extra_sources": ["/var/lib/borgstack/media"]})


def _svc(rendered: dict[str, Any]) -> dict[str, Any]:
    return rendered["config"]["services"]["duplicati"]


def test_every_variable_we_set_is_read_by_the_image(rendered):
    assert_reads_only(_svc(rendered)["environment"], FACTS["reads"], "duplicati/duplicati:2.1.1.102")


def test_the_variables_duplicati_needs_behind_caddy_are_set(rendered):
    env = _svc(rendered)["environment"]
    assert [name for name in FACTS["must_set"] if not env.get(name)] == []
    observed = {k: env[k] for k in ("DUPLICATI__WEBSERVICE_ALLOWED_HOSTNAMES", "DUPLICATI__SECRET_PROVIDER",
                                    "DUPLICATI__WEBSERVICE_PRE_AUTH_TOKENS", "SETTINGS_ENCRYPTION_KEY",
                                    "DUPLICATI__REQUIRE_DB_ENCRYPTION_KEY",
                                    "DUPLICATI__WEBSERVICE_DISABLE_SIGNIN_TOKENS")}
    assert observed == {
        "DUPLICATI__WEBSERVICE_ALLOWED_HOSTNAMES": "duplicati.example.com.br",
        "DUPLICATI__SECRET_PROVIDER": "file-secret:///run/secrets/duplicati-secrets.json",
        # `docker compose config` keeps Compose's escape "$$": the container receives one "$" (a reference to the
        # secrets file's key), as `docker compose run` of any image with such a variable shows.
        # The play's own credential; no DUPLICATI__WEBSERVICE_PASSWORD, which would undo the operator's password at
        # every start (issue 21 item 6).
        "DUPLICATI__WEBSERVICE_PRE_AUTH_TOKENS": "$$webservice_pre_auth_token",
        "SETTINGS_ENCRYPTION_KEY": "$$settings_encryption_key",
        "DUPLICATI__REQUIRE_DB_ENCRYPTION_KEY": "true",
        "DUPLICATI__WEBSERVICE_DISABLE_SIGNIN_TOKENS": "true",
    }
    assert "DUPLICATI__WEBSERVICE_PASSWORD" not in env
    assert rendered["wiring"]["hostname"] == "duplicati.example.com.br"


def test_secrets_are_only_in_the_root_only_secrets_file(rendered):
    wiring, env = rendered["wiring"], _svc(rendered)["environment"]
    # Every reference resolves to a key of the file (SecretProviderHelper: "$" then word characters).
    references = {v[2:] for v in env.values() if isinstance(v, str) and v.startswith("$$")}
    assert references == set(rendered["secrets"])
    assert rendered["secrets"] == {"webservice_pre_auth_token": wiring["token"],
                                   "settings_encryption_key": wiring["key"]}
    # A token Duplicati keeps (Server/WebServerLoader.cs: 10+ characters of [A-Za-z0-9_-]).
    assert re.fullmatch(r"[A-Za-z0-9_-]{10,}", wiring["token"])
    secrets = {"password": wiring["password"], "key": wiring["key"], "passphrase": wiring["passphrase"],
               "s3": S3_SECRET, "token": wiring["token"]}
    assert len(set(secrets.values())) == 5 and min(len(v) for v in secrets.values()) >= 20
    compose_text = (rendered["out"] / "compose.yaml").read_text()
    assert [n for n, v in secrets.items() if v in compose_text or v in rendered["output"]] == []
    # The secrets file is bound read-only where the provider reads it.
    mounts = {m["target"]: m for m in _svc(rendered)["volumes"]}
    assert mounts["/run/secrets/duplicati-secrets.json"]["source"] == str(rendered["out"] / "secrets.json")
    assert mounts["/run/secrets/duplicati-secrets.json"].get("read_only") is True


def test_sources_are_the_dumps_and_the_enabled_apps_volumes_read_only_never_a_database(rendered):
    svc, wiring = _svc(rendered), rendered["wiring"]
    mounts = {m["target"]: m for m in svc["volumes"]}
    sources = {t: (m["type"], m["source"]) for t, m in mounts.items() if t.startswith("/source/")}
    expected_volumes = {"n8n": "borgstack_n8n_data", "directus": "borgstack_directus_extensions",
                        "lowcoder": "borgstack_lowcoder_assets", "fileflows": "borgstack_fileflows_data",
                        "evolution_api": "borgstack_evolution_api_instances", "seaweedfs": "borgstack_seaweedfs_data"}
    # In the order the job has always listed them (the module compares the list in order: another order would
    # rewrite the job of every existing install).
    volumes = [v for s, v in expected_volumes.items() if s in wiring["enabled"]]
    assert volumes, "no app enabled in the wiring: the test would prove nothing"
    assert wiring["volumes"] == volumes
    assert sources == {"/source/dumps": ("bind", "/var/backups/borgstack"),
                       **{f"/source/volumes/{v}": ("volume", v) for v in volumes}}
    assert all(mounts[t].get("read_only") is True for t in sources)
    assert not DATABASE_VOLUMES & {m["source"] for m in svc["volumes"]}
    # The job backs up exactly what is mounted, as directories.
    assert wiring["sources"][0] == "/source/dumps/"
    assert wiring["sources"][1:] == [f"/source/volumes/{v}/" for v in volumes]
    assert {s.rstrip("/") for s in wiring["sources"]} == set(sources)
    config_volumes = rendered["config"]["volumes"]
    assert all(config_volumes[v].get("external") is True for v in volumes)


def test_the_volume_names_are_the_app_roles_own():
    """Duplicati mounts the volumes the registry names (borgstack_<service>_<key>, plugins/filter/contract.py): each
    must be the one its own service's role mounts, or Duplicati would back up an empty volume. A role mounts it
    through its contract (<service>_service.volumes.<key>) or, until it reads the contract, names it in its
    defaults."""
    from ansible_collections.borgstack.stack.plugins.filter.contract import backup_sources, volume_name
    from ansible_collections.borgstack.stack.plugins.filter.registry import service_registry

    entries = yaml.safe_load((REPO_ROOT / "playbooks" / "group_vars" / "all" / "services.yml").read_text())[
        "borgstack_service_defaults"]
    registry = service_registry(entries, {name: {"enabled": True} for name in entries})
    views = backup_sources(registry)
    unmounted = []
    for name, entry in registry.items():
        role = REPO_ROOT / "roles" / name
        text = "\n".join(p.read_text() for p in sorted(role.glob("*/*")) if p.suffix in (".yml", ".j2"))
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        for key, spec in (entry.get("volumes") or {}).items():
            if spec["backup"] != "none" and f"{name}_service.volumes.{key}" not in text \
                    and volume_name(name, key) not in defaults.values():
                unmounted.append(volume_name(name, key))
    assert unmounted == []
    assert len(views["sources"]) == 6 and not set(views["sources"]) & DATABASE_VOLUMES
    assert set(views["database_volumes"]) == DATABASE_VOLUMES


def test_container_networks_limit_no_published_port_and_healthcheck(rendered):
    svc = _svc(rendered)
    facts = container_facts(svc)
    observed = {k: facts[k] for k in ("image", "container_name", "ports", "networks", "mem_limit MiB")}
    assert observed == {"image": "duplicati/duplicati:2.1.1.102", "container_name": "borgstack-duplicati",
                        "ports": [], "networks": ["borgstack_external", "borgstack_internal"],
                        "mem_limit MiB": rendered["wiring"]["plan"]}
    assert facts["mounts"]["/data"] == ("volume", "borgstack_duplicati_data")
    assert "user" not in svc  # root: the dump sets are root-only
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"] and "/dev/tcp/127.0.0.1/8200" in test[3] and "GET /health" in test[3]


def test_caddy_refuses_the_play_token_from_outside(rendered):
    """The play's pre-authenticated token is for calls from the host to the container: a real Caddy with the rendered
    Caddyfile answers 403 to ``Authorization: PreAuth ...`` (any case; the token's value does not matter) and passes
    everything else on to the (absent) upstream, where it holds the request or answers 502. No Duplicati runs here:
    whether it would accept that token is the duplicati_backup contract test's part."""
    token = "x" * 40
    with real_caddy(rendered["caddyfile"], HOST, "held") as status:
        observed = {"preauth": status("-H", f"Authorization: PreAuth {token}"),
                    "lower case": status("-H", f"Authorization: preauth {token}"),
                    "scheme alone": status("-H", "Authorization: PreAuth"),
                    "bearer": status("-H", f"Authorization: Bearer {token}"),
                    "a scheme that starts alike": status("-H", f"Authorization: PreAuthX {token}")}
    assert observed == {"preauth": "403", "lower case": "403", "scheme alone": "403", "bearer": "held",
                        "a scheme that starts alike": "held"}, observed


def test_job_options_recovery_keys_trigger_and_dropin(rendered):
    wiring = rendered["wiring"]
    assert wiring["options"] == {"retention-policy": "7D:1D,4W:1W,12M:1M,5Y:1Y", "dblock-size": "50mb"}
    recovery = rendered["recovery"]
    assert wiring["passphrase"] in recovery and wiring["key"] in recovery and DESTINATION in recovery
    assert "FORA deste servidor" in recovery and "OFF this server" in recovery
    assert rendered["trigger"] == {"container": "borgstack-duplicati", "network": "borgstack_internal", "port": 8200,
                                   "host": "duplicati.example.com.br", "token": wiring["token"],
                                   "job_name": "BorgStack", "timeout": 21600}
    lines = [x for x in rendered["dropin"].splitlines() if x and not x.startswith("#")]
    assert lines == ["[Service]",
                     "ExecStartPost=/usr/local/sbin/borgstack-duplicati-run --config /etc/borgstack/duplicati.json"]


def test_a_local_destination_is_mounted_writable_and_extra_sources_read_only(rendered_local):
    mounts = {m["target"]: m for m in _svc(rendered_local)["volumes"]}
    assert mounts["/mnt/backup/borgstack"]["source"] == "/mnt/backup/borgstack"
    assert not mounts["/mnt/backup/borgstack"].get("read_only")
    assert mounts["/source/extra/1"]["source"] == "/var/lib/borgstack/media"
    assert mounts["/source/extra/1"].get("read_only") is True
    assert rendered_local["wiring"]["sources"][-1] == "/source/extra/1/"


# --- The validate entry point with bad input ---------------------------------------------------------------------

# Retention strings: (value, accepted by the role). Each is also given to a parser written from upstream's
# (Options.RetentionPolicy): every string the role accepts must parse there (the role refuses a few Duplicati would
# silently accept: an empty policy, empty items, a third ':' part).
RETENTION = {
    "architecture": ("7D:1D,4W:1W,12M:1M,5Y:1Y", True),
    "unlimited": ("U:1M,1Y:U", True),
    "compound": ("1D12h:1h,3600:60", True),
    "lower_case_day": ("7d:1d", False),
    "no_interval": ("7D", False),
    "negative": ("-7D:1D", False),
    "unit_first": ("D7:1D", False),
    "spaces": ("7D: 1D", False),
    "empty": ("", False),
    "third_part": ("7D:1D:1D", False),
}

VALIDATION_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    # case: (play vars over the wiring, None when accepted or a fragment of the failure message)
    "wiring": ({}, None),
    "default_registry_is_off": ({"borgstack_services": {}, "duplicati_destination_url": ""}, None),
    "missing_destination": ({"duplicati_destination_url": ""}, "duplicati_destination_url must say where"),
    "unknown_scheme": ({"duplicati_destination_url": "ftp://host/backups"}, "scheme 'ftp://'"),
    "no_scheme": ({"duplicati_destination_url": "/mnt/backup"}, "scheme '(none)://'"),
    "dollar_in_url": ({"duplicati_destination_url": "s3://b/p?auth-password=$x"}, "No '$' in it"),
    "local_ok": ({"duplicati_destination_url": "file:///mnt/backup/borgstack"}, None),
    "local_inside_dumps": ({"duplicati_destination_url": "file:///var/backups/borgstack/off"},
                           "an absolute path outside"),
    "local_root": ({"duplicati_destination_url": "file:///"}, "an absolute path outside"),
    "database_volume": ({"duplicati_service": contract(sources=["borgstack_n8n_data", "borgstack_postgresql_data"])},
                        "found borgstack_postgresql_data, a `backup: dump` volume"),
    "small_memory": ({"duplicati_service": contract(memory_limit_mb=256)},
                     "Duplicati's memory limit 0 or at least 512 MiB (found 256"),
    "passphrase_option": ({"duplicati_job_options": {"--passphrase": "x"}}, "duplicati_job_options may not set"),
    "no_encryption_option": ({"duplicati_job_options": {"no-encryption": True}}, "may not set no-encryption"),
    "short_passphrase": ({"borgstack_secret_overrides": {"duplicati_backup_passphrase": "short-but-12+"}},
                         "duplicati_backup_passphrase too short"),
    "star_hostname": ({"duplicati_extra_allowed_hostnames": ["*"]}, "without '*'"),
    "relative_extra_source": ({"duplicati_extra_sources": ["media"]}, "duplicati_extra_sources must be absolute"),
    "disabled_ignores_bad_values": ({"borgstack_services": {"duplicati": {"enabled": False}},
                                     "duplicati_destination_url": "ftp://x",
                                     "duplicati_retention_policy": "7d"}, None),
    **{f"retention_{name}": ({"duplicati_retention_policy": value},
                             None if ok else "duplicati_retention_policy")
       for name, (value, ok) in RETENTION.items()},
}


@pytest.fixture(scope="module")
def validation_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case in one ansible-playbook run: a play per case running the role's validate entry point (argument
    specs, then tasks/validate.yml) with the wiring and Duplicati switched on, its failure rescued and recorded."""
    tmp = tmp_path_factory.mktemp("duplicati-validate")
    return run_validation(tmp, "duplicati", VALIDATION_CASES, app_inventory(tmp, MASTER, ON))


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation(validation_outcomes, case):
    assert_outcome(validation_outcomes["outcomes"][case], VALIDATION_CASES[case][1])


@pytest.mark.parametrize("name", list(RETENTION))
def test_what_the_role_accepts_duplicati_parses(name):
    value, accepted = RETENTION[name]
    try:
        parse_retention_policy(value)
        upstream = True
    except ValueError:
        upstream = False
    assert not accepted or upstream, f"the role accepts {value!r}, which Duplicati's parser refuses"
    if not upstream:
        assert not accepted


def test_the_messages_never_show_the_destination_or_a_secret(validation_outcomes):
    text = validation_outcomes["output"] + json.dumps(validation_outcomes["outcomes"])
    assert S3_SECRET not in text
    assert "short-but-12+" not in text


def test_the_cluster_would_place_it_on_the_swarm(rendered):
    """Issue 24: on a cluster this service is not deployed yet (the validation refuses it there), but the stack file
    its Compose file becomes is rendered and accepted by ``docker stack config``; nothing runs on a swarm here."""
    config = swarm_stack_config(rendered["out"] / "compose.yaml", "duplicati")
    for spec in config["services"].values():
        assert spec["deploy"]["replicas"] >= 1 and "placement" not in spec["deploy"]
