# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of the registry-to-role contract (plugins/filter/contract.py): service_contracts on the shipped registry and
on small ones, backup_sources, secret_policies and contract_errors."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import contract
from ansible_collections.borgstack.stack.plugins.filter.contract import (
    FilterModule,
    backup_sources,
    contract_errors,
    secret_policies,
    service_contracts,
)
from ansible_collections.borgstack.stack.plugins.filter.registry import (
    memory_specs,
    mongodb_users,
    postgres_tenants,
    registry_errors,
    service_registry,
)
from ansible_collections.borgstack.stack.plugins.filter.secrets import derive_secret, stack_secret
from ansible_collections.borgstack.stack.plugins.filter.sizing import ram_budget

from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text(encoding="utf-8"))[
    "borgstack_service_defaults"]
DOMAIN = "example.com.br"
MASTER = "contract-tests-master-secret-0123456789-abcdef"
BASE_KEYS = {"name", "enabled", "image", "pull", "project", "project_dir", "data_dir", "networks", "container",
             "port", "containers", "memory_limit_mb", "ram", "hostname", "url", "site", "admin_email", "volumes",
             "secrets", "peers", "customer_service"}


def registry(**changes):
    return service_registry(DEFAULTS, changes)


def stack(reg, **changes):
    """The stack settings the play gives service_contracts (group_vars/all/services.yml), for ``reg``."""
    settings = {"domain": DOMAIN, "project": "borgstack", "project_dir": "/opt/borgstack",
                "internal_network": "borgstack_internal", "external_network": "borgstack_external",
                "pull": "missing", "admin_email": "ti@example.com.br",
                "ram_plan": ram_budget(16384, memory_specs(reg)), "master": MASTER, "overrides": {},
                "versions": {}, "data_dir": "/srv/borgstack"}
    settings.update(changes)
    return settings


def contracts(reg=None, **changes):
    reg = registry() if reg is None else reg
    return service_contracts(reg, stack(reg, **changes))


@pytest.fixture(scope="module")
def shipped():
    return contracts()


def small(**services):
    """A registry of made-up services (only what the contract reads), merged like the play merges it."""
    base = {"enabled": True, "layer": "apps", "image": "example/app:1.0", "requires": [],
            "containers": {}, "volumes": {}, "secrets": {}}
    defaults = {}
    for name, entry in services.items():
        defaults[name] = {**copy.deepcopy(base), "containers": {name.replace("_", "-"): {"kind": "web", "port": 8000}},
                          **entry}
    return service_registry(defaults, {})


# ---------------------------------------------------------------------------------------------------------------
# service_contracts: keys, containers, logins
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, extra", [
    ("postgresql", {"tenants", "readers"}),
    ("redis", {"key_spaces"}),
    ("mongodb", {"users"}),
    ("seaweedfs", {"buckets"}),
    ("n8n", {"postgres", "redis"}),
    ("directus", {"postgres", "redis", "s3"}),
    ("lowcoder", {"mongodb", "redis"}),
    ("fileflows", {"basic_auth"}),
    ("evolution_api", {"postgres", "redis", "s3"}),
    ("chatwoot", {"postgres", "redis", "s3"}),
    ("duplicati", {"sources", "database_volumes"}),
    ("caddy", {"sites"}),
])
def test_keys_of_a_contract(shipped, name, extra):
    assert set(shipped[name]) == BASE_KEYS | extra
    assert shipped[name]["name"] == name


def test_every_service_has_a_contract_enabled_or_not(shipped):
    assert list(shipped) == list(DEFAULTS)
    assert shipped["duplicati"]["enabled"] is False and shipped["n8n"]["enabled"] is True
    # enabled: auto is resolved by the merge (Lowcoder requires MongoDB).
    assert shipped["mongodb"]["enabled"] is True
    assert contracts(registry(lowcoder={"enabled": False}))["mongodb"]["enabled"] is False


def test_stack_settings_reach_every_contract(shipped):
    for svc in shipped.values():
        assert svc["project"] == "borgstack" and svc["project_dir"] == "/opt/borgstack"
        assert svc["networks"] == {"internal": "borgstack_internal", "external": "borgstack_external"}
        assert svc["pull"] == "missing" and svc["data_dir"] == "/srv/borgstack"
        assert svc["admin_email"] == "ti@example.com.br"
    assert shipped["n8n"]["image"] == DEFAULTS["n8n"]["image"]
    assert shipped["n8n"]["hostname"] == "n8n.example.com.br"
    assert shipped["n8n"]["url"] == "https://n8n.example.com.br/"
    assert shipped["evolution_api"]["hostname"] == "evolution-api.example.com.br"
    assert shipped["redis"]["hostname"] == "" and shipped["redis"]["url"] == ""
    assert shipped["n8n"]["site"]["websockets"] is True


def test_container_names_replicas_and_memory_limits_from_the_plan():
    reg = registry(n8n={"containers": {"n8n-worker": {"replicas": 2}}})
    settings = stack(reg)
    plan = settings["ram_plan"]["services"]
    n8n = service_contracts(reg, settings)["n8n"]
    assert n8n["container"] == "borgstack-n8n" and n8n["port"] == 5678
    worker = n8n["containers"]["n8n-worker"]
    assert worker["names"] == ["borgstack-n8n-worker-1", "borgstack-n8n-worker-2"]
    assert worker["replicas"] == 2 and worker["kind"] == "worker" and worker["port"] is None
    assert worker["memory_limit_mb"] == plan["n8n-worker"]["limit_mb"] > 0
    assert n8n["containers"]["n8n"] == {"names": ["borgstack-n8n"], "port": 5678, "replicas": 1, "kind": "web",
                                        "image": "n8nio/n8n:1.112.6", "memory_limit_mb": plan["n8n"]["limit_mb"]}
    assert n8n["memory_limit_mb"] == plan["n8n"]["limit_mb"] != worker["memory_limit_mb"]
    # No workers: no names, and no limit (the plan has none for them).
    idle = contracts()["n8n"]["containers"]["n8n-worker"]
    assert idle["names"] == [] and idle["replicas"] == 0 and idle["memory_limit_mb"] == 0
    # The project names the containers.
    acme = contracts(reg, project="acme")["n8n"]
    assert acme["containers"]["n8n-worker"]["names"] == ["acme-n8n-worker-1", "acme-n8n-worker-2"]
    assert acme["container"] == "acme-n8n"


def test_ram_entry_and_a_contract_without_a_plan(shipped):
    reg = registry()
    assert shipped["redis"]["ram"] == stack(reg)["ram_plan"]["redis"]
    assert shipped["postgresql"]["ram"]["ram_mb"] > 0
    no_plan = contracts(reg, ram_plan="")
    assert no_plan["n8n"]["memory_limit_mb"] == 0 and no_plan["redis"]["ram"] == {}


def test_peers_say_where_every_service_is(shipped):
    peers = shipped["n8n"]["peers"]
    assert set(peers) == set(DEFAULTS)
    assert peers["chatwoot"] == {"enabled": True, "host": "borgstack-chatwoot", "container": "borgstack-chatwoot",
                                 "port": 3000, "url": "http://borgstack-chatwoot:3000",
                                 "hostname": "chatwoot.example.com.br"}
    assert peers["duplicati"]["enabled"] is False and peers["duplicati"]["hostname"] == ""


def test_logins_only_when_declared(shipped):
    for name, svc in shipped.items():
        entry = DEFAULTS[name]
        assert ("postgres" in svc) is ("postgres" in entry), name
        assert ("redis" in svc) is (entry.get("redis_db") is not None), name
        assert ("s3" in svc) is (entry.get("s3_bucket") is not None), name
        assert ("mongodb" in svc) is ("mongodb" in entry), name
    assert not {"postgres", "redis", "s3", "mongodb"} & set(shipped["fileflows"])


def test_postgres_login_is_the_tenant_postgresql_creates(shipped):
    tenants = {t["name"]: t for t in postgres_tenants(registry(), MASTER, {}, True)}
    served = {t["name"]: t for t in shipped["postgresql"]["tenants"]}
    for name in ("n8n", "directus", "evolution_api", "chatwoot"):
        login = shipped[name]["postgres"]
        assert login == {"host": "borgstack-postgresql", "port": 5432, "database": DEFAULTS[name]["postgres"]["database"],
                         "user": name, "password": tenants[name]["password"],
                         "extensions": DEFAULTS[name]["postgres"]["extensions"]}
        assert login["password"] == stack_secret(f"postgresql_{name}", MASTER, {}) == served[name]["password"]


def test_redis_s3_and_mongodb_logins(shipped):
    redis_password = stack_secret("redis_password", MASTER, {})
    assert shipped["redis"]["secrets"] == {"redis_password": redis_password}
    for name in ("n8n", "directus", "lowcoder", "evolution_api", "chatwoot"):
        assert shipped[name]["redis"] == {"host": "borgstack-redis", "port": 6379, "db": DEFAULTS[name]["redis_db"],
                                          "password": redis_password}
    s3 = shipped["directus"]["s3"]
    assert s3 == {"endpoint": "http://borgstack-seaweedfs:8333", "region": "us-east-1", "bucket": "directus",
                  "access_key": stack_secret("seaweedfs_s3_access_key", MASTER, {}, 20),
                  "secret_key": stack_secret("seaweedfs_s3_secret_key", MASTER, {}, 40)}
    assert len(s3["access_key"]) == 20
    assert shipped["chatwoot"]["s3"]["bucket"] == "chatwoot"
    users = {u["name"]: u for u in mongodb_users(registry(), MASTER, {}, True)}
    assert shipped["lowcoder"]["mongodb"] == {"host": "borgstack-mongodb", "port": 27017, "database": "lowcoder",
                                              "user": "lowcoder", "password": users["lowcoder"]["password"],
                                              "auth_source": "lowcoder"}
    assert users["lowcoder"]["password"] == stack_secret("mongodb_lowcoder", MASTER, {})
    assert shipped["fileflows"]["basic_auth"]["user"] == "ti@example.com.br"
    assert shipped["fileflows"]["basic_auth"]["password"] == stack_secret("basic_auth_fileflows", MASTER, {})


def test_logins_follow_overrides_and_versions():
    reg = registry()
    overrides = {"postgresql_n8n": "operator-chosen-pg-password", "redis_password": "operator-chosen-redis-pw"}
    versions = {"mongodb_lowcoder": 2, "seaweedfs_s3_secret_key": 3}
    got = contracts(reg, overrides=overrides, versions=versions)
    assert got["n8n"]["postgres"]["password"] == "operator-chosen-pg-password"
    assert got["n8n"]["redis"]["password"] == "operator-chosen-redis-pw" == got["redis"]["secrets"]["redis_password"]
    assert got["lowcoder"]["mongodb"]["password"] == derive_secret(MASTER, "mongodb_lowcoder", 40, "alnum", 2)
    assert got["directus"]["s3"]["secret_key"] == derive_secret(MASTER, "seaweedfs_s3_secret_key", 40, "alnum", 3)
    assert got["directus"]["s3"]["secret_key"] == got["seaweedfs"]["secrets"]["seaweedfs_s3_secret_key"]


def test_served_lists(shipped):
    assert [t["name"] for t in shipped["postgresql"]["tenants"]] == ["n8n", "directus", "evolution_api", "chatwoot"]
    assert [u["name"] for u in shipped["mongodb"]["users"]] == ["lowcoder"]
    assert shipped["seaweedfs"]["buckets"] == ["directus", "evolution", "chatwoot"]
    assert "n8n.example.com.br" in [site["hostname"] for site in shipped["caddy"]["sites"]]
    assert shipped["duplicati"]["sources"] == backup_sources(registry())["sources"]


# ---------------------------------------------------------------------------------------------------------------
# service_contracts: secrets
# ---------------------------------------------------------------------------------------------------------------

def test_each_service_gets_its_own_secrets_derived_with_the_registry_length(shipped):
    chatwoot = shipped["chatwoot"]["secrets"]
    assert chatwoot["chatwoot_secret_key_base"] == stack_secret("chatwoot_secret_key_base", MASTER, {}, 128)
    assert len(chatwoot["chatwoot_secret_key_base"]) == 128
    assert len(chatwoot["chatwoot_encryption_primary_key"]) == 32
    assert shipped["lowcoder"]["secrets"]["lowcoder_api_key_secret"] == stack_secret(
        "lowcoder_api_key_secret", MASTER, {}, 64)
    # A service has no secret of another unless shared with it.
    assert "n8n_encryption_key" not in shipped["directus"]["secrets"]
    assert not set(shipped["caddy"]["secrets"])


def test_suffix_is_appended_to_derived_secrets_only():
    derived = contracts()
    assert derived["n8n"]["secrets"]["n8n_owner_password"] == stack_secret("n8n_owner_password", MASTER, {}, 36) + "-Aa1"
    assert len(derived["chatwoot"]["secrets"]["chatwoot_admin_password"]) == 28 + len("-Aa1")
    overrides = {"n8n_owner_password": "my-Own-password-1", "chatwoot_admin_password": ""}
    got = contracts(overrides=overrides)
    assert got["n8n"]["secrets"]["n8n_owner_password"] == "my-Own-password-1"
    # An empty override counts as not set: derived, with the suffix.
    assert got["chatwoot"]["secrets"]["chatwoot_admin_password"] == derived["chatwoot"]["secrets"]["chatwoot_admin_password"]
    # No suffix in the entry: nothing appended.
    assert derived["redis"]["secrets"]["redis_password"] == stack_secret("redis_password", MASTER, {})


def test_shared_with_puts_a_secret_in_the_other_services_contract(shipped):
    assert shipped["n8n"]["secrets"]["evolution_api_key"] == shipped["evolution_api"]["secrets"]["evolution_api_key"]
    assert shipped["n8n"]["secrets"]["chatwoot_api_token"] == shipped["chatwoot"]["secrets"]["chatwoot_api_token"]
    assert "evolution_api_key" not in shipped["chatwoot"]["secrets"]
    assert "evolution_api_wa_business_token" not in shipped["n8n"]["secrets"]
    reg = small(alpha={"secrets": {"alpha_token": {"length": 24, "rotation": "allowed", "shared_with": ["beta"]}}},
                beta={}, gamma={})
    got = service_contracts(reg, stack(reg, ram_plan={}))
    assert got["beta"]["secrets"] == {"alpha_token": got["alpha"]["secrets"]["alpha_token"]}
    assert len(got["alpha"]["secrets"]["alpha_token"]) == 24
    assert got["gamma"]["secrets"] == {}


REFUSED = sorted(p for p, policy in secret_policies(registry()).items() if policy["rotation"] != "allowed")


@pytest.mark.parametrize("purpose", REFUSED)
def test_a_version_of_a_secret_that_may_not_rotate_is_refused(purpose):
    reg = registry(duplicati={"enabled": True})
    assert contracts(reg, versions={purpose: 1})  # version 1 is today's secret: fine
    with pytest.raises(AnsibleFilterError, match=rf"service_contracts: borgstack_secret_versions\.{purpose} is refused"):
        contracts(reg, versions={purpose: 2})


def test_the_refusal_says_why():
    with pytest.raises(AnsibleFilterError, match="undecryptable. It never rotates"):
        contracts(versions={"n8n_encryption_key": 2})
    with pytest.raises(AnsibleFilterError) as err:
        contracts(versions={"n8n_owner_password": 3})
    assert "only when n8n is first set up" in str(err.value)
    assert "borgstack_secret_overrides.n8n_owner_password" in str(err.value)
    assert MASTER not in str(err.value)
    # The refusal holds for a disabled service too (its contract is still rendered).
    with pytest.raises(AnsibleFilterError, match="duplicati_backup_passphrase is refused"):
        contracts(versions={"duplicati_backup_passphrase": 2})


def test_an_allowed_secret_rotates_everywhere_it_is_used():
    got = contracts(versions={"redis_password": 2, "evolution_api_key": 2})
    rotated = derive_secret(MASTER, "redis_password", 40, "alnum", 2)
    assert got["redis"]["secrets"]["redis_password"] == rotated == got["chatwoot"]["redis"]["password"]
    key = derive_secret(MASTER, "evolution_api_key", 48, "alnum", 2)
    assert got["evolution_api"]["secrets"]["evolution_api_key"] == key == got["n8n"]["secrets"]["evolution_api_key"]


# ---------------------------------------------------------------------------------------------------------------
# service_contracts: bad input
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", contract._STACK_KEYS)  # pylint: disable=protected-access
def test_missing_stack_keys_raise_naming_them(key):
    reg = registry()
    settings = stack(reg)
    del settings[key]
    with pytest.raises(AnsibleFilterError, match=rf"service_contracts: the stack settings lack {key}$"):
        service_contracts(reg, settings)


def test_every_stack_key_is_documented_and_given_by_the_play():
    services_yml = (ROOT / "playbooks/group_vars/all/services.yml").read_text(encoding="utf-8")
    doc = (Path(contract.__file__).parent / "service_contracts.yml").read_text(encoding="utf-8")
    for key in contract._STACK_KEYS:  # pylint: disable=protected-access
        assert f"'{key}':" in services_yml, f"borgstack_contracts does not give {key}"
        assert f"C({key})" in doc, f"service_contracts.yml does not document {key}"


@pytest.mark.parametrize("reg, settings, words", [
    (["n8n"], {}, "service_contracts: the registry must be a dict"),
    ({}, ["domain"], "service_contracts: the stack settings must be a dict"),
    ({}, {"domain": DOMAIN}, "the stack settings lack project, project_dir"),
])
def test_bad_arguments_raise(reg, settings, words):
    with pytest.raises(AnsibleFilterError, match=words):
        service_contracts(reg, settings)


# ---------------------------------------------------------------------------------------------------------------
# Volumes and backup_sources
# ---------------------------------------------------------------------------------------------------------------

def test_volumes_are_named_after_the_service_whatever_the_project(shipped):
    assert shipped["n8n"]["volumes"] == {"data": "borgstack_n8n_data"}
    assert shipped["mongodb"]["volumes"] == {"data": "borgstack_mongodb_data", "config": "borgstack_mongodb_config"}
    assert shipped["evolution_api"]["volumes"] == {"instances": "borgstack_evolution_api_instances"}
    acme = contracts(project="acme")
    assert acme["n8n"]["volumes"] == {"data": "borgstack_n8n_data"}
    assert acme["n8n"]["container"] == "acme-n8n"


def test_backup_sources_of_the_shipped_registry():
    assert backup_sources(registry()) == {
        # The apps' volumes first, then the others', each in registry order: the order every install's job has.
        "sources": ["borgstack_n8n_data", "borgstack_directus_extensions", "borgstack_lowcoder_assets",
                    "borgstack_fileflows_data", "borgstack_evolution_api_instances", "borgstack_seaweedfs_data"],
        "database_volumes": ["borgstack_postgresql_data", "borgstack_redis_data", "borgstack_mongodb_data",
                             "borgstack_mongodb_config"],
    }


def test_backup_sources_copy_files_of_enabled_services_only_and_dump_every_database():
    reg = small(
        alpha={"volumes": {"files": {"backup": "files"}, "cache": {"backup": "none"}, "db": {"backup": "dump"}}},
        beta={"enabled": False, "volumes": {"files": {"backup": "files"}, "db": {"backup": "dump"}}},
        gamma={"volumes": {"tmp": None}},
    )
    assert backup_sources(reg) == {"sources": ["borgstack_alpha_files"],
                                   "database_volumes": ["borgstack_alpha_db", "borgstack_beta_db"]}
    # The shipped registry with Directus off: its files are not copied any more; MongoDB off still dumped.
    off = backup_sources(registry(directus={"enabled": False}, lowcoder={"enabled": False}))
    assert "borgstack_directus_extensions" not in off["sources"]
    assert "borgstack_lowcoder_assets" not in off["sources"]
    assert {"borgstack_mongodb_data", "borgstack_mongodb_config"} <= set(off["database_volumes"])
    assert backup_sources(None) == {"sources": [], "database_volumes": []}
    with pytest.raises(AnsibleFilterError, match="backup_sources: the registry must be a dict"):
        backup_sources(["n8n"])


# ---------------------------------------------------------------------------------------------------------------
# secret_policies
# ---------------------------------------------------------------------------------------------------------------

def test_secret_policies_add_the_per_service_logins():
    reg = small(
        app={"postgres": {"database": "app"}, "mongodb": {"database": "app"}, "site": {"basic_auth": True},
             "secrets": {"app_key": {"rotation": "never", "why": "it encrypts the uploads"},
                         "app_admin": {"rotation": "first_setup", "change": "in the app's profile page"},
                         "app_token": {"rotation": "allowed"}}},
        web={"site": {"basic_auth": False}},
    )
    policies = secret_policies(reg)
    assert set(policies) == {"postgresql_app", "mongodb_app", "basic_auth_app", "app_key", "app_admin", "app_token"}
    for purpose in ("postgresql_app", "mongodb_app", "basic_auth_app", "app_token"):
        assert policies[purpose] == {"rotation": "allowed", "why": ""}
    assert policies["app_key"] == {"rotation": "never",
                                   "why": "rotating it would destroy data: it encrypts the uploads. It never rotates"}
    assert policies["app_admin"]["rotation"] == "first_setup"
    assert "only when app is first set up" in policies["app_admin"]["why"]
    assert "change it in the app's profile page" in policies["app_admin"]["why"]
    assert policies["app_admin"]["why"].endswith("borgstack_secret_overrides.app_admin")


def test_secret_policies_of_the_shipped_registry():
    policies = secret_policies(registry())
    for name in ("n8n", "directus", "evolution_api", "chatwoot"):
        assert policies[f"postgresql_{name}"]["rotation"] == "allowed"
    assert policies["mongodb_lowcoder"]["rotation"] == "allowed"
    assert policies["basic_auth_fileflows"]["rotation"] == "allowed"
    assert "basic_auth_n8n" not in policies and "postgresql_redis" not in policies
    assert policies["n8n_encryption_key"]["rotation"] == "never"
    assert policies["postgresql_superuser"]["rotation"] == "first_setup"
    assert "ALTER ROLE postgres PASSWORD" in policies["postgresql_superuser"]["why"]
    with pytest.raises(AnsibleFilterError, match="secret_policies: the registry must be a dict"):
        secret_policies("n8n")


# ---------------------------------------------------------------------------------------------------------------
# contract_errors
# ---------------------------------------------------------------------------------------------------------------

def test_the_shipped_registry_has_no_contract_errors():
    assert contract_errors(registry()) == []
    assert contract_errors(registry(duplicati={"enabled": True})) == []


N8N = "borgstack_services.n8n"
EVO = "borgstack_services.evolution_api"


@pytest.mark.parametrize("changes, message", [
    ({"n8n": {"secrets": {"n8n_encryption_key": {"lenght": 40}}}},
     f"{N8N}.secrets.n8n_encryption_key: unknown key(s) lenght (known: change, length, rotation, shared_with, suffix, "
     "why)"),
    ({"n8n": {"secrets": {"n8n_api_key": {"length": 40}}}},
     f"{N8N}.secrets.n8n_api_key.rotation is missing: say whether it may rotate (allowed, never, first_setup)"),
    ({"n8n": {"secrets": {"n8n_api_key": None}}}, f"{N8N}.secrets.n8n_api_key.rotation is missing"),
    ({"n8n": {"secrets": {"n8n_api_key": {"rotation": "sometimes"}}}},
     f"{N8N}.secrets.n8n_api_key.rotation must be one of allowed, never, first_setup, found 'sometimes'"),
    ({"n8n": {"secrets": {"n8n_api_key": {"rotation": "never"}}}},
     f"{N8N}.secrets.n8n_api_key.why must say what a new value would destroy (rotation: never)"),
    ({"n8n": {"secrets": {"n8n_encryption_key": {"why": ""}}}},
     f"{N8N}.secrets.n8n_encryption_key.why must say what a new value would destroy"),
    ({"n8n": {"secrets": {"n8n_api_key": {"rotation": "allowed", "length": 8}}}},
     f"{N8N}.secrets.n8n_api_key.length must be an integer from 16 to 512, found 8"),
    ({"n8n": {"secrets": {"n8n_api_key": {"rotation": "allowed", "length": 513}}}},
     f"{N8N}.secrets.n8n_api_key.length must be an integer from 16 to 512, found 513"),
    ({"n8n": {"secrets": {"n8n_api_key": {"rotation": "allowed", "length": "40"}}}},
     f"{N8N}.secrets.n8n_api_key.length must be an integer from 16 to 512, found '40'"),
    ({"n8n": {"secrets": {"n8n_api_key": {"rotation": "allowed", "length": True}}}},
     f"{N8N}.secrets.n8n_api_key.length must be an integer from 16 to 512, found True"),
    ({"n8n": {"secrets": {"n8n_api_key": {"rotation": "allowed", "shared_with": ["wordpress"]}}}},
     f"{N8N}.secrets.n8n_api_key.shared_with names an unknown service 'wordpress'"),
    ({"directus": {"secrets": {"redis_password": {"rotation": "allowed"}}}},
     "borgstack_services.directus.secrets.redis_password: redis_password is also a secret of "
     "borgstack_services.redis"),
    ({"n8n": {"secrets": ["n8n_encryption_key"]}},
     f"{N8N}.secrets must be a dict <purpose>: {{length, rotation, ...}}"),
    ({"n8n": {"secrets": {"n8n_api_key": "allowed"}}},
     f"{N8N}.secrets.n8n_api_key must be a dict (length, suffix, rotation, why, change, shared_with)"),
    ({"n8n": {"volumes": {"data": {"backup": "copy"}}}},
     f"{N8N}.volumes.data.backup must be one of files, dump, none (files: Duplicati copies it; dump: the host job "
     "dumps it; none: not backed up), found 'copy'"),
    ({"n8n": {"volumes": {"cache": None}}}, f"{N8N}.volumes.cache.backup must be one of files, dump, none"),
    ({"n8n": {"volumes": {"data": {"backup": "files", "size": 10}}}},
     f"{N8N}.volumes.data must be {{backup: files|dump|none}}, found {{'backup': 'files', 'size': 10}}"),
    ({"n8n": {"volumes": {"data": "files"}}}, f"{N8N}.volumes.data must be {{backup: files|dump|none}}, found 'files'"),
    ({"n8n": {"volumes": ["data"]}}, f"{N8N}.volumes must be a dict <key>: {{backup: files|dump|none}}"),
    # A database's live directory copied by Duplicati would not restore: the host job dumps it.
    ({"postgresql": {"volumes": {"data": {"backup": "files"}}}},
     "borgstack_services.postgresql.volumes.data.backup cannot be files: postgresql is a database"),
    ({"mongodb": {"volumes": {"config": {"backup": "files"}}}},
     "borgstack_services.mongodb.volumes.config.backup cannot be files: mongodb is a database"),
    ({"redis": {"volumes": {"data": {"backup": "files"}}}},
     "borgstack_services.redis.volumes.data.backup cannot be files: redis is a database"),
    # What lives only in Redis is decided per key space (docs/backup.md): a malformed entry names the variable.
    ({"n8n": {"redis_keys": None}},
     f"{N8N}.redis_keys is missing: the service has a Redis database (redis_db), so say for each of its key spaces "
     "whether a restore brings it back"),
    ({"evolution_api": {"redis_keys": ["session"]}},
     f"{EVO}.redis_keys must be a dict <space>: {{match: [<glob>, ...], restore: true|false, why: <text>}}"),
    ({"evolution_api": {"redis_keys": {"session": "restore"}}},
     f"{EVO}.redis_keys.session must be {{match: [<glob>, ...], restore: true|false, why: <text>}}, found 'restore'"),
    ({"evolution_api": {"redis_keys": {"session": {"restore": "yes"}}}},
     f"{EVO}.redis_keys.session.restore must be true (backed up with the service's database and restored with it) "
     "or false (not backed up apart, never restored), found 'yes'"),
    ({"evolution_api": {"redis_keys": {"session": {"match": "*:instance:*"}}}},
     f"{EVO}.redis_keys.session.match must be a non-empty list of Redis glob patterns (SCAN MATCH, no spaces) of "
     "the keys in its redis_db, found '*:instance:*'"),
    ({"evolution_api": {"redis_keys": {"session": {"match": ["*:instance :*"]}}}},
     f"{EVO}.redis_keys.session.match must be a non-empty list of Redis glob patterns"),
    ({"evolution_api": {"redis_keys": {"session": {"match": []}}}},
     f"{EVO}.redis_keys.session.match must be a non-empty list of Redis glob patterns"),
    ({"evolution_api": {"redis_keys": {"session": {"why": " "}}}},
     f"{EVO}.redis_keys.session.why must say why this key space does or does not survive a restore"),
    ({"evolution_api": {"redis_keys": {"session": {"ttl": 0}}}},
     f"{EVO}.redis_keys.session: unknown key(s) ttl (known: match, restore, why)"),
    ({"fileflows": {"redis_keys": {"x": {"match": ["*"], "restore": False, "why": "w"}}}},
     "borgstack_services.fileflows.redis_keys: the service has no redis_db, so no Redis keys of its own"),
])
def test_contract_errors_name_the_variable(changes, message):
    errors = contract_errors(registry(**changes))
    assert len(errors) == 1, errors
    assert errors[0].startswith(message), errors[0]
    # The registry's own check shows them too (one validation task lists every problem).
    assert message in " | ".join(registry_errors(registry(**changes), DOMAIN))


def test_contract_errors_skip_entries_that_are_not_dicts_and_refuse_a_registry_that_is_not_one():
    assert contract_errors({"n8n": "oops"}) == []
    with pytest.raises(AnsibleFilterError, match="contract_errors: the registry must be a dict"):
        contract_errors(["n8n"])


# ---------------------------------------------------------------------------------------------------------------
# Plugin wiring and sidecar docs
# ---------------------------------------------------------------------------------------------------------------

FILTERS = ["service_contracts", "secret_policies", "contract_errors", "backup_sources", "peer_url", "peer_hosts"]


def test_filter_module_exports():
    assert FilterModule().filters() == {name: getattr(contract, name) for name in FILTERS}


@pytest.mark.parametrize("name", FILTERS)
def test_sidecar_doc_matches_signature(name):
    check_sidecar_doc(getattr(contract, name), Path(contract.__file__).parent / f"{name}.yml")


# ---------------------------------------------------------------------------------------------------------------
# redis_key_spaces (the redis contract's key_spaces): what the backup takes with a service's database
# ---------------------------------------------------------------------------------------------------------------

def test_only_evolution_api_sessions_survive_a_restore_in_the_shipped_registry():
    """Every service with a Redis database decides its key spaces; only Evolution API's session hashes come back."""
    reg = registry()
    assert contracts(reg)["redis"]["key_spaces"] == [
        {"service": "evolution_api", "db": 3, "spaces": {"session": ["*:instance:*"]}}]
    assert all(svc.get("redis_keys") for svc in reg.values() if svc.get("redis_db") is not None)


def test_key_spaces_of_enabled_services_with_restore_true_in_registry_order():
    extra = {"match": ["a:*", "b"], "restore": True, "why": "w"}
    reg = registry(n8n={"redis_keys": {"queue": {"restore": True}, "extra": extra}})
    assert contract.redis_key_spaces(reg) == [
        {"service": "n8n", "db": 0, "spaces": {"queue": ["bull:*"], "extra": ["a:*", "b"]}},
        {"service": "evolution_api", "db": 3, "spaces": {"session": ["*:instance:*"]}}]
    assert contract.redis_key_spaces(registry(evolution_api={"enabled": False})) == []
    # A space that is not exactly true is not taken (the validation refuses it first).
    assert contract.redis_key_spaces(registry(evolution_api={"redis_keys": {"session": {"restore": "yes"}}})) == []


# ---------------------------------------------------------------------------------------------------------------
# postgres_reader: the monitoring exporter's own PostgreSQL login
# ---------------------------------------------------------------------------------------------------------------

def test_the_exporter_reads_with_its_own_login_not_the_superuser_or_an_app(shipped):
    readers = shipped["postgresql"]["readers"]
    assert [(r["name"], r["state"], r["roles"]) for r in readers] == [("monitoring_reader", "present", ["pg_monitor"])]
    assert readers[0]["grants"] == [{"database": "n8n",
                                     "tables": ["execution_entity", "execution_data", "borgstack_cs_errors"]}]
    login = shipped["monitoring"]["postgres_reader"]
    assert login["user"] == "monitoring_reader" and login["password"] == readers[0]["password"]
    assert login["password"] == stack_secret("postgresql_monitoring", MASTER, {})
    others = {shipped["postgresql"]["secrets"]["postgresql_superuser"], shipped["n8n"]["postgres"]["password"]}
    assert login["password"] not in others
    # The superuser's password no longer reaches the monitoring service.
    assert "postgresql_superuser" not in shipped["monitoring"]["secrets"]
    assert (login["host"], login["port"]) == (shipped["postgresql"]["container"], shipped["postgresql"]["port"])


def test_the_readers_are_in_the_tenant_modules_own_shape(shipped):
    """The role, the restore and the major upgrade pass the list to postgresql_tenant's ``readers`` as it is: every
    key is one of the module's reader options, none it requires is missing."""
    from ansible_collections.borgstack.stack.plugins.module_utils._postgresql_reader import (  # pylint: disable=C0415
        READER_OPTIONS)
    required = {key for key, option in READER_OPTIONS.items() if option.get("required")}
    for reader in shipped["postgresql"]["readers"]:
        assert required <= set(reader) <= set(READER_OPTIONS), (sorted(reader), sorted(READER_OPTIONS))


def test_the_readers_secret_follows_the_registry_policy_and_rotates():
    assert secret_policies(registry())["postgresql_monitoring"] == {"rotation": "allowed", "why": ""}
    first = contracts()["monitoring"]["postgres_reader"]["password"]
    rotated = contracts(versions={"postgresql_monitoring": 2})
    assert rotated["monitoring"]["postgres_reader"]["password"] not in (first, "")
    assert rotated["postgresql"]["readers"][0]["password"] == rotated["monitoring"]["postgres_reader"]["password"]
    overridden = contracts(overrides={"postgresql_monitoring": "chosen-by-the-operator-1234"})
    assert overridden["postgresql"]["readers"][0]["password"] == "chosen-by-the-operator-1234"


def test_a_disabled_reader_is_removed_and_grants_skip_disabled_services():
    off = contracts(registry(monitoring={"enabled": False}))
    assert [(r["name"], r["state"]) for r in off["postgresql"]["readers"]] == [("monitoring_reader", "absent")]
    assert "postgres_reader" not in off["monitoring"]
    no_n8n = contracts(registry(n8n={"enabled": False}))
    assert no_n8n["postgresql"]["readers"][0]["grants"] == []


@pytest.mark.parametrize("entry, message", [
    ({"secret": "nope", "roles": ["pg_monitor"]}, "postgres_reader.secret must name one of"),
    ({"secret": "mon_pw", "roles": ["pg_write_all_data"]}, "postgres_reader.roles must be a list of"),
    ({"secret": "mon_pw", "read": {"web": ["t"]}}, "postgres_reader.read.web: not a service with a PostgreSQL tenant"),
    ({"secret": "mon_pw", "read": {"app": ["Bad-Name"]}}, "postgres_reader.read.app must be a list of table names"),
    ({"secret": "mon_pw", "grant": {}}, "postgres_reader: unknown key(s) grant"),
    ("pg_monitor", "postgres_reader must be a dict"),
])
def test_reader_entry_errors_name_the_variable(entry, message):
    reg = small(app={"postgres": {"database": "app"}}, web={},
                mon={"secrets": {"mon_pw": {"rotation": "allowed"}}, "postgres_reader": entry})
    errors = contract_errors(reg)
    assert any(e.startswith("borgstack_services.mon.") and message in e for e in errors), errors


# ---------------------------------------------------------------------------------------------------------------
# peer_url / peer_hosts: where a webhook to another service goes (n8n's webhook processors on a cluster)
# ---------------------------------------------------------------------------------------------------------------
def _cluster_n8n():
    """The registry a cluster gets (group_vars/all/services.yml's borgstack_cluster_service_defaults)."""
    return registry(n8n={"containers": {"n8n-worker": {"replicas": 2}, "n8n-webhook": {"replicas": 2}}},
                    chatwoot={"enabled": True}, evolution_api={"enabled": True})


def test_one_host_peers_have_no_routes_and_the_urls_are_the_containers(shipped):
    n8n = shipped["chatwoot"]["peers"]["n8n"]
    assert "routes" not in n8n, "one host: n8n's webhook processors have no replicas"
    assert contract.peer_url(n8n, "/webhook/borgstack/chatwoot") == "http://borgstack-n8n:5678/webhook/borgstack/chatwoot"
    assert (contract.peer_url(n8n, "/webhook/borgstack/evolution", ".internal")
            == "http://borgstack-n8n.internal:5678/webhook/borgstack/evolution")
    assert contract.peer_hosts(shipped["chatwoot"]["peers"]) == [
        peer["host"] for peer in shipped["chatwoot"]["peers"].values()]


def test_on_a_cluster_n8n_webhooks_go_to_the_webhook_processors_as_caddy_sends_them():
    reg = _cluster_n8n()
    peers = contracts(reg)["chatwoot"]["peers"]
    assert peers["n8n"]["routes"] == {"/webhook/*": "borgstack-n8n-webhook"}
    # The same name Caddy's site routes /webhook/* to (caddy_sites).
    site = next(s for s in contracts(reg)["caddy"]["sites"] if s["hostname"].startswith("n8n."))
    assert site["routes"][0]["upstream"] == "borgstack-n8n-webhook:5678"
    assert (contract.peer_url(peers["n8n"], "/webhook/borgstack/chatwoot")
            == "http://borgstack-n8n-webhook:5678/webhook/borgstack/chatwoot")
    assert (contract.peer_url(peers["n8n"], "/webhook/borgstack/evolution", ".internal")
            == "http://borgstack-n8n-webhook.internal:5678/webhook/borgstack/evolution")
    # Paths the route does not cover stay on the main (test webhooks, the REST API).
    assert contract.peer_url(peers["n8n"], "/webhook-test/x") == "http://borgstack-n8n:5678/webhook-test/x"
    assert contract.peer_url(peers["n8n"], "/rest/settings") == "http://borgstack-n8n:5678/rest/settings"
    hosts = contract.peer_hosts(peers)
    assert hosts.index("borgstack-n8n-webhook") == hosts.index("borgstack-n8n") + 1
    assert len(hosts) == len(set(hosts)) == len(peers) + 1
    # No replicas, no route: a worker that does not run is never a webhook's host.
    assert "routes" not in contracts(registry(n8n={"containers": {"n8n-webhook": {"replicas": 0}}}))["chatwoot"][
        "peers"]["n8n"]


@pytest.mark.parametrize(("peer", "path", "message"), [
    ({"host": "borgstack-n8n"}, "/x", "peer_url expects a contract's peer"),
    ({"host": "borgstack-n8n", "port": 5678}, "webhook", "the path must start with /"),
])
def test_peer_url_refuses_bad_input(peer, path, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        contract.peer_url(peer, path)


def test_peer_hosts_refuses_bad_input():
    with pytest.raises(AnsibleFilterError, match="peer_hosts expects"):
        contract.peer_hosts([])
    with pytest.raises(AnsibleFilterError, match="the peer n8n has no host"):
        contract.peer_hosts({"n8n": {"port": 5678}})
