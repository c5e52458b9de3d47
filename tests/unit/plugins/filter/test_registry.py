"""Table-driven tests of the service registry filters."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.registry import (
    caddy_sites,
    health_checks,
    memory_specs,
    mongodb_users,
    pinned_services,
    postgres_tenants,
    registry_errors,
    s3_buckets,
    service_endpoints,
    service_hostnames,
    service_registry,
)
from ansible_collections.borgstack.stack.plugins.filter import registry as registry_module
from ansible_collections.borgstack.stack.plugins.filter.sizing import ram_budget

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text())["borgstack_service_defaults"]
DOMAIN = "example.com.br"
MASTER = "m" * 16 + "A1b2C3d4E5f6G7h8I9j0"


# Most tests below look at a registry whose only app is n8n: the other apps are switched off unless a test names them.
ONLY_N8N = {name: {"enabled": False} for name, svc in DEFAULTS.items() if svc["layer"] == "apps" and name != "n8n"}


def merged(**changes):
    return service_registry(DEFAULTS, {**ONLY_N8N, **changes})


def test_shipped_defaults_are_sound():
    assert registry_errors(merged(), DOMAIN) == []
    assert registry_errors(service_registry(DEFAULTS, {}), DOMAIN) == []


def test_unknown_service_is_refused_naming_the_variable():
    with pytest.raises(AnsibleFilterError, match=r"borgstack_services: unknown service\(s\) wordpress"):
        service_registry(DEFAULTS, {"wordpress": {"enabled": True}})


def test_merge_is_recursive_for_dicts_and_replaces_lists():
    reg = merged(n8n={"site": {"hostname": "fluxos.example.com.br"}, "postgres": {"extensions": []},
                      "containers": {"n8n-worker": {"replicas": 2}}})
    assert reg["n8n"]["image"] == DEFAULTS["n8n"]["image"]
    assert reg["n8n"]["postgres"] == {"database": "n8n", "extensions": []}
    assert reg["n8n"]["site"]["hostname"] == "fluxos.example.com.br"
    assert reg["n8n"]["site"]["csp"] == DEFAULTS["n8n"]["site"]["csp"]
    assert reg["n8n"]["containers"]["n8n-worker"] == {**DEFAULTS["n8n"]["containers"]["n8n-worker"], "replicas": 2}
    assert DEFAULTS["n8n"]["postgres"]["extensions"] == ["vector"], "defaults must not be mutated"
    assert DEFAULTS["n8n"]["containers"]["n8n-worker"]["replicas"] == 0, "defaults must not be mutated"


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({"n8n": {"site": {"hostname": "https://n8n.example.com.br"}}}, "borgstack_services.n8n.site.hostname"),
        ({"n8n": {"site": {"hostname": "N8N.Example.com"}}}, "borgstack_services.n8n.site.hostname"),
        ({"n8n": {"site": {"hostnmae": "x.example.com.br"}}}, "borgstack_services.n8n.site: unknown key(s) hostnmae"),
        ({"n8n": {"site": {"ready": "rest/settings"}}}, "borgstack_services.n8n.site.ready must be a URL path"),
        ({"n8n": {"site": {"ready": "/x?y=1"}}}, "borgstack_services.n8n.site.ready must be a URL path"),
        ({"n8n": {"site": {"csp": {"script-src": ["'unsafe-eval'"]}}}},
         "borgstack_services.n8n.site.csp.script-src must be a string"),
        ({"n8n": {"site": {"csp": "script-src 'self'"}}}, "borgstack_services.n8n.site.csp must be a dict"),
        ({"n8n": {"site": {"csp": {"script-src": "'self'; object-src *"}}}},
         "borgstack_services.n8n.site.csp.script-src must be a string"),
        ({"n8n": {"site": {"csp": {"scirpt-src": "'self'"}}}}, "borgstack_services.n8n.site.csp.scirpt-src: not a"),
        ({"n8n": {"site": {"max_body_mb": 0}}}, "borgstack_services.n8n.site.max_body_mb"),
        ({"n8n": {"site": {"refuse_auth": "PreAuth"}}}, "borgstack_services.n8n.site.refuse_auth must be a list"),
        ({"n8n": {"site": {"refuse_auth": ["Pre Auth"]}}}, "borgstack_services.n8n.site.refuse_auth must be a list"),
        ({"n8n": {"site": {"refuse_auth": ["PreAuth)|(.*"]}}}, "borgstack_services.n8n.site.refuse_auth must be a"),
        ({"n8n": {"site": {"container": "n8n-worker"}}}, "borgstack_services.n8n.site.container 'n8n-worker'"),
        ({"n8n": {"site": {"websockets": "yes"}}}, "borgstack_services.n8n.site.websockets"),
        ({"n8n": {"containers": {"n8n-worker": {"port": 5678}}}},
         "borgstack_services.n8n.containers.n8n.port and borgstack_services.n8n.containers.n8n-worker.port are both"),
        ({"n8n": {"containers": {"n8n": {"port": 70000}}}}, "borgstack_services.n8n.containers.n8n.port must be"),
        ({"n8n": {"containers": {"n8n": {"port": "5678"}}}}, "borgstack_services.n8n.containers.n8n.port must be"),
        ({"n8n": {"containers": {"n8n": {"kind": "daemon"}}}}, "borgstack_services.n8n.containers.n8n.kind"),
        ({"n8n": {"containers": {"n8n": {"replicas": 2}}}}, "borgstack_services.n8n.containers.n8n.replicas"),
        ({"n8n": {"containers": {"n8n-worker": {"replicas": -1}}}},
         "borgstack_services.n8n.containers.n8n-worker.replicas"),
        ({"n8n": {"containers": {"redis-cache": {"kind": "web", "memory": {"weight": 1, "min_mb": 64}}}}},
         "borgstack_services.n8n.containers.redis-cache: a container's name is 'n8n'"),
        ({"n8n": {"containers": {"n8n": {"memory": {"weight": 0}}}}},
         "borgstack_services.n8n.containers.n8n.memory.weight"),
        ({"n8n": {"containers": {"n8n": {"memory": {"min_mb": "1g"}}}}},
         "borgstack_services.n8n.containers.n8n.memory.min_mb"),
        ({"n8n": {"containers": {"n8n": {"memory": {"max_mb": 512}}}}},
         "borgstack_services.n8n.containers.n8n.memory.max_mb"),
        ({"n8n": {"containers": {"n8n": {"memroy": {}}}}}, "borgstack_services.n8n.containers.n8n: unknown key(s)"),
        ({"n8n": {"containers": {"n8n": {"health": "healthz"}}}}, "borgstack_services.n8n.containers.n8n.health"),
        ({"n8n": {"containers": {"n8n": {"health_body": "(ok"}}}},
         "borgstack_services.n8n.containers.n8n.health_body must be a regular expression"),
        ({"n8n": {"containers": {"n8n-worker": {"health_body": "ok"}}}},
         "borgstack_services.n8n.containers.n8n-worker.health_body must be"),
        ({"n8n": {"containers": None}}, "borgstack_services.n8n.containers must be"),
        ({"n8n": {"containers": ["n8n"]}}, "borgstack_services.n8n.containers must be"),
        ({"postgresql": {"enabled": False}}, "n8n needs postgresql"),
        ({"n8n": {"image": "n8nio/n8n"}}, "borgstack_services.n8n.image"),
        ({"n8n": {"image": "n8nio/n8n:latest"}}, "borgstack_services.n8n.image 'n8nio/n8n:latest': the tag"),
        ({"n8n": {"enabled": "yes"}}, "borgstack_services.n8n.enabled must be true, false or auto"),
        ({"n8n": {"s3_bucket": "N8N_Bucket"}}, "borgstack_services.n8n.s3_bucket"),
        ({"n8n": {"redis_db": 16}}, "borgstack_services.n8n.redis_db"),
        ({"n8n": {"postgres": {"database": "n8n-db"}}}, "borgstack_services.n8n.postgres.database"),
        ({"n8n": {"mongodb": {"database": "n8n"}}, "mongodb": {"enabled": False}},
         "n8n needs a MongoDB user: enable borgstack_services.mongodb"),
        ({"n8n": {"mongodb": {"db": "n8n"}}}, "borgstack_services.n8n.mongodb must be"),
        ({"n8n": {"hostnmae": "x.example.com.br"}}, "borgstack_services.n8n: unknown key(s) hostnmae"),
        ({"n8n": {"layer": "frontend"}}, "borgstack_services.n8n.layer"),
    ],
)
def test_bad_registry_changes_are_reported(changes, expected):
    errors = registry_errors(merged(**changes), DOMAIN)
    assert any(expected in e for e in errors), errors


def test_ports_are_unique_per_service_not_across_the_stack():
    # Chatwoot and Lowcoder both listen on 3000: two services may share a port number, one service may not.
    assert registry_errors(merged(n8n={"containers": {"n8n": {"port": 5432}}}), DOMAIN) == []


def _second_app(reg, **site):
    reg["app"] = copy.deepcopy(reg["n8n"])
    reg["app"].update(redis_db=7, s3_bucket="app", postgres={"database": "app", "extensions": []},
                      containers={"app": {"kind": "web", "port": 3000, "memory": {"weight": 1, "min_mb": 64}}},
                      site={"hostname": "", **site}, secrets={})  # n8n's secrets stay n8n's (one owner each)
    return reg


def test_two_public_services_on_one_hostname():
    reg = _second_app(merged(), hostname="n8n.example.com.br")
    errors = registry_errors(reg, DOMAIN)
    assert any("both 'n8n.example.com.br'" in e and "cannot share one host name" in e for e in errors), errors
    assert registry_errors(_second_app(merged()), DOMAIN) == []


@pytest.mark.parametrize(
    "key,change,pair,value,what",
    [
        ("redis_db", {"directus": {"redis_db": 0}}, ("n8n", "directus"), 0,
         "each service needs its own Redis database"),
        # n8n has no bucket of its own: given Directus' one, the two would share it.
        ("s3_bucket", {"n8n": {"s3_bucket": "directus"}}, ("n8n", "directus"), "directus",
         "each service needs its own bucket"),
        ("postgres.database", {"directus": {"postgres": {"database": "n8n"}}}, ("n8n", "directus"), "n8n",
         "each service needs its own database"),
        ("mongodb.database", {"directus": {"mongodb": {"database": "lowcoder"}}}, ("directus", "lowcoder"), "lowcoder",
         "each service needs its own MongoDB database"),
    ],
)
def test_two_services_on_one_store_are_refused(key, change, pair, value, what):
    """Two enabled services on one Redis index, bucket or database would read and overwrite each other's data."""
    apps = {"directus": {"enabled": True}, "lowcoder": {"enabled": True}}
    assert registry_errors(merged(**apps), DOMAIN) == []
    changed = {**apps, **{name: {**apps.get(name, {}), **entry} for name, entry in change.items()}}
    errors = registry_errors(merged(**changed), DOMAIN)
    first, second = pair  # in registry order
    assert f"borgstack_services.{first}.{key} and borgstack_services.{second}.{key} are both {value!r}: {what}" \
        in errors, errors


def test_disabled_services_do_not_collide():
    reg = _second_app(merged(n8n={"enabled": False}), hostname="n8n.example.com.br")
    assert registry_errors(reg, DOMAIN) == []


def test_hostnames_default_to_service_dot_domain():
    with_directus = merged(directus={"enabled": True})
    assert service_hostnames(with_directus, DOMAIN) == {"n8n": "n8n.example.com.br",
                                                        "directus": "directus.example.com.br"}
    renamed = merged(directus={"enabled": True}, n8n={"site": {"hostname": "fluxos.example.com.br"}})
    assert service_hostnames(renamed, DOMAIN)["n8n"] == "fluxos.example.com.br"
    assert "n8n" not in service_hostnames(merged(directus={"enabled": True}, n8n={"enabled": False}), DOMAIN)


def test_postgres_tenants_with_stable_distinct_passwords():
    tenants = postgres_tenants(merged(directus={"enabled": True}), MASTER, {})
    assert [t["name"] for t in tenants] == ["n8n", "directus"]
    assert tenants[0]["password"] != tenants[1]["password"]
    assert tenants[0]["database"] == "n8n" and tenants[0]["extensions"] == ["vector"]
    again = postgres_tenants(merged(directus={"enabled": True}), MASTER, None)
    assert tenants[0]["password"] == again[0]["password"] and len(tenants[0]["password"]) == 40
    override = postgres_tenants(merged(directus={"enabled": True}), MASTER, {"postgresql_n8n": "a-long-enough-override"})
    assert override[0]["password"] == "a-long-enough-override"
    assert [t["name"] for t in postgres_tenants(merged(directus={"enabled": True}, n8n={"enabled": False}), MASTER, {})] == ["directus"]


def test_endpoints_name_every_container_once():
    ends = service_endpoints(merged(n8n={"containers": {"n8n-worker": {"replicas": 2}}}), "bs", "bs_int")
    assert ends["postgresql"] == {"host": "bs-postgresql", "container": "bs-postgresql", "port": 5432,
                                  "network": "bs_int", "containers": {"postgresql": ["bs-postgresql"]}}
    assert ends["n8n"]["containers"] == {"n8n": ["bs-n8n"], "n8n-worker": ["bs-n8n-worker-1", "bs-n8n-worker-2"],
                                         "n8n-webhook": []}
    assert ends["n8n"]["host"] == "bs-n8n" and ends["n8n"]["port"] == 5678
    assert service_endpoints(merged(), "bs", "x")["n8n"]["containers"]["n8n-worker"] == []


def test_mongodb_users_and_buckets_come_from_the_registry():
    assert mongodb_users(merged(directus={"enabled": True}), MASTER) == []
    reg = merged(directus={"enabled": True}, mongodb={"enabled": True}, n8n={"mongodb": {"database": "flows"}})
    users = mongodb_users(reg, MASTER, {})
    assert [(u["name"], u["database"], u["roles"]) for u in users] == [("n8n", "flows", ["readWrite"])]
    assert users[0]["password"] == mongodb_users(reg, MASTER, None)[0]["password"]
    both = merged(directus={"enabled": True}, chatwoot={"enabled": True})
    assert s3_buckets(both, ["borgstack"]) == ["borgstack", "directus", "chatwoot"]
    assert s3_buckets(merged(chatwoot={"enabled": True}), ["borgstack"]) == ["borgstack", "chatwoot"]
    # n8n declares no bucket (it never used one).
    assert s3_buckets(merged(), []) == []


def test_caddy_sites_carry_what_each_app_loosens():
    reg = merged(directus={"enabled": True})
    sites = caddy_sites(reg, DOMAIN, service_endpoints(reg, "borgstack", "i"))
    assert [s["hostname"] for s in sites] == ["directus.example.com.br", "n8n.example.com.br"]  # sorted
    site = sites[1]
    assert site["hostname"] == "n8n.example.com.br" and site["upstream"] == "borgstack-n8n:5678"
    assert site["max_body_mb"] == 16
    assert "'unsafe-eval'" in site["csp_extra"]["script-src"]
    assert site["csp_extra"]["connect-src"] == "wss://n8n.example.com.br"  # websockets: true
    # n8n listens before it serves webhooks: Caddy checks its ready path; Directus has none.
    assert site["health_uri"] == "/rest/settings" and "health_uri" not in sites[0]
    reg = merged(directus={"enabled": True}, n8n={"site": {"websockets": False, "csp": {}}})
    assert caddy_sites(reg, DOMAIN, service_endpoints(reg, "b", "i"))[1]["csp_extra"] == dict(
        DEFAULTS["n8n"]["site"]["csp"])
    without_n8n = merged(directus={"enabled": True}, n8n={"enabled": False})
    ends = service_endpoints(merged(directus={"enabled": True}), "b", "i")
    assert [s["hostname"] for s in caddy_sites(without_n8n, DOMAIN, ends)] == ["directus.example.com.br"]


def test_a_site_route_goes_to_its_worker_only_while_it_runs():
    """n8n's /webhook/* goes to its webhook processors (site.routes) only when they have replicas (a cluster): by the
    one name their tasks answer to, on the site's port. Without replicas the site is exactly as before."""
    def n8n_site(**n8n):
        reg = merged(n8n=n8n)
        return caddy_sites(reg, DOMAIN, service_endpoints(reg, "borgstack", "i"))[0]
    assert "routes" not in n8n_site()
    assert n8n_site() == n8n_site(containers={"n8n-worker": {"replicas": 2}})
    site = n8n_site(containers={"n8n-webhook": {"replicas": 2}})
    assert site["routes"] == [{"matcher": "n8n_webhook", "path": "/webhook/*", "upstream": "borgstack-n8n-webhook:5678"}]
    assert site["upstream"] == "borgstack-n8n:5678" and site["health_uri"] == "/rest/settings"


@pytest.mark.parametrize("routes, message", [
    ({"/webhook/*": "n8n"}, "site.routes./webhook/*: 'n8n' must name one of the service's worker containers"),
    ({"/webhook/*": "nope"}, "site.routes./webhook/*: 'nope' must name one of the service's worker containers"),
    ({"webhook/*": "n8n-webhook"}, "site.routes: 'webhook/*' is not a URL path such as /webhook/*"),
    ({"/web hook/*": "n8n-webhook"}, "site.routes: '/web hook/*' is not a URL path"),
    (["/webhook/*"], "site.routes must be a dict {<path>: <worker container>}"),
])
def test_bad_site_routes_are_refused_naming_the_variable(routes, message):
    errors = registry_errors(merged(n8n={"site": {"routes": routes}}), DOMAIN)
    assert any(e.startswith("borgstack_services.n8n.") and message in e for e in errors), errors


def test_every_container_and_worker_fits_85_percent_of_16_gb():
    """Every service and worker of the registry enabled (MongoDB too, n8n with 4 workers): the sum of the limits,
    workers counted per replica, stays within 85 % of a 16 GB host."""
    reg = service_registry(DEFAULTS, {"mongodb": {"enabled": True}, "duplicati": {"enabled": True},
                                      "n8n": {"containers": {"n8n-worker": {"replicas": 4}}}})
    assert all(svc["enabled"] for svc in reg.values())
    specs = memory_specs(reg)
    assert specs["n8n-worker"]["count"] == 4
    # n8n's webhook processors run on a cluster only (the n8n role refuses them on one host).
    assert set(specs) == {c for s in reg.values() for c in s["containers"]} - {"n8n-webhook"}
    plan = ram_budget(16384, specs)
    total = sum(e["limit_mb"] * e["count"] for e in plan["services"].values())
    assert total == plan["allocated_mb"] <= 0.85 * 16384
    assert plan["services"]["n8n-worker"]["limit_mb"] < plan["services"]["n8n"]["limit_mb"]
    assert "n8n-worker" not in memory_specs(merged())  # no replicas, no limit
    assert "n8n-webhook" not in memory_specs(merged())


def test_health_checks_follow_the_registry():
    reg = merged(directus={"enabled": True}, n8n={"containers": {"n8n-worker": {"replicas": 2}}})
    ends = service_endpoints(reg, "borgstack", "borgstack_internal")
    tenants = postgres_tenants(reg, MASTER, {})
    checks = {c["name"]: c for c in health_checks(reg, DOMAIN, ends, tenants, "redis-secret")}
    assert set(checks) == {"postgresql", "redis", "seaweedfs", "n8n", "directus", "caddy"}
    n8n = checks["n8n"]
    assert n8n["containers"] == ["borgstack-n8n", "borgstack-n8n-worker-1", "borgstack-n8n-worker-2"]
    assert n8n["internal_check"] == {"type": "http", "port": 5678, "path": "/healthz/readiness"}
    assert n8n["public_url"] == "https://n8n.example.com.br/healthz/readiness"
    assert n8n["database"]["password"] == tenants[0]["password"] and n8n["database"]["dbname"] == "n8n"
    assert n8n["database"]["container"] == "borgstack-postgresql"
    assert checks["postgresql"]["container"] == "borgstack-postgresql"
    assert checks["postgresql"]["internal_check"] == {"type": "tcp", "port": 5432}
    assert checks["redis"]["database"] == {"type": "redis", "container": "borgstack-redis", "port": 6379,
                                           "password": "redis-secret"}
    assert "public_url" not in checks["redis"]
    reg = merged(directus={"enabled": True}, n8n={"enabled": False})
    disabled = {c["name"] for c in health_checks(reg, DOMAIN, service_endpoints(reg, "b", "i"), [], "")}
    assert "n8n" not in disabled
    assert all("swarm_services" not in c for c in checks.values())  # one host: no swarm


def test_health_checks_on_a_cluster_name_the_swarm_services():
    """The stack file's keys are the registry's container keys: the workers are one swarm service, a worker asked
    0 times is none, the main container is <stack>_<service>."""
    reg = merged(directus={"enabled": True}, n8n={"containers": {"n8n-worker": {"replicas": 2}}})
    ends = service_endpoints(reg, "borgstack", "borgstack_internal")
    checks = {c["name"]: c for c in health_checks(reg, DOMAIN, ends, [], "", "borgstack")}
    assert checks["n8n"]["swarm_services"] == ["borgstack_n8n", "borgstack_n8n-worker"]
    assert checks["postgresql"]["swarm_services"] == ["borgstack_postgresql"]
    assert checks["directus"]["swarm_services"] == ["borgstack_directus"]
    reg = merged(n8n={"containers": {"n8n-worker": {"replicas": 0}}})
    checks = {c["name"]: c for c in health_checks(reg, DOMAIN, service_endpoints(reg, "b", "i"), [], "", "b")}
    assert checks["n8n"]["swarm_services"] == ["b_n8n"]


def test_login_report_names_the_page_the_user_and_the_command_never_a_password():
    from ansible_collections.borgstack.stack.plugins.filter.registry import login_report

    lines = login_report(merged(directus={"enabled": True}), DOMAIN, "/opt/borgstack", "ti@example.com.br")
    assert lines == ["n8n: https://n8n.example.com.br/signin - user ti@example.com.br; first password: "
                     "sudo cat /opt/borgstack/services/n8n/owner-password",
                     "directus: https://directus.example.com.br/admin/login - user ti@example.com.br; first "
                     "password: sudo cat /opt/borgstack/services/directus/admin-password"]
    assert login_report(merged(n8n={"enabled": False}, directus={"enabled": False}), DOMAIN, "/opt/borgstack",
                        "x@y.zz") == []


@pytest.mark.parametrize("login", [
    "/signin", {"path": "signin", "password_file": "p"}, {"path": "/signin", "password_file": "../etc/shadow"},
    {"path": "/signin", "password_file": "p", "user": "root"},
])
def test_a_malformed_login_entry_is_refused_naming_it(login):
    errors = registry_errors(merged(n8n={"login": login}), DOMAIN)
    assert any(e.startswith("borgstack_services.n8n.login must be") for e in errors), errors


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("image", [
    "n8nio/n8n:1.112.6",
    "pgvector/pgvector:pg18",
    "redis:8.2-alpine",
    "borgstack-lab/n8n:1.113.3",                        # the lab's local images
    "borgstack-lab/postgresql:17",
    "ghcr.io/n8n-io/n8n:1.112.6",
    "registry.example.com:5000/team/app_x:2024.06.01",
    "localhost:5000/app:1.0",
    f"n8nio/n8n@{DIGEST}",                              # a digest is the strongest pin
    f"n8nio/n8n:1.112.6@{DIGEST}",
    f"n8nio/n8n:latest@{DIGEST}",                       # the digest wins over a moving tag
    f"ghcr.io/n8n-io/n8n@sha512:{'ab' * 64}",
])
def test_pinned_images_are_accepted(image):
    assert registry_errors(merged(n8n={"image": image}), DOMAIN) == []


@pytest.mark.parametrize("image, problem", [
    ("n8nio/n8n:latest", "moves"),
    ("n8nio/n8n:LATEST", "moves"),
    ("n8nio/n8n:Latest", "moves"),
    ("n8nio/n8n:stable", "moves"),
    ("n8nio/n8n:edge", "moves"),
    ("n8nio/n8n:nightly", "moves"),
    ("n8nio/n8n:main", "moves"),
    ("n8nio/n8n:master", "moves"),
    ("n8nio/n8n:dev", "moves"),
    ("n8nio/n8n:next", "moves"),
    ("n8nio/n8n:beta", "moves"),
    ("n8nio/n8n:lts", "moves"),
    ("n8nio/n8n:LTS", "moves"),
    ("node:lts-alpine", "moves"),                       # no version in it
    ("caddy:alpine", "moves"),
    ("nginx:stable-alpine3.22", "moves"),               # starts with a moving word
    ("n8nio/n8n", "has no tag"),
    ("n8nio/n8n:", "must be an image reference"),
    ("N8NIO/n8n:1.112.6", "must be an image reference"),
    ("n8nio/n8n@sha256:abc", "must be an image reference"),           # digest too short
    (f"n8nio/n8n@{DIGEST.upper()}", "must be an image reference"),    # digests are lower-case hex
    (f"n8nio/n8n@md5:{'0' * 32}", "must be an image reference"),
    ("https://n8nio/n8n:1.0", "must be an image reference"),
    ("n8nio/n8n:1.0 ", "must be an image reference"),
    ("", "must be an image reference"),
    (None, "must be an image reference"),
    (["n8nio/n8n:1.0"], "must be an image reference"),
])
def test_unpinned_or_malformed_images_are_refused(image, problem):
    errors = registry_errors(merged(n8n={"image": image}), DOMAIN)
    assert len(errors) == 1, errors
    assert errors[0].startswith("borgstack_services.n8n.image"), errors
    assert problem in errors[0], errors
    assert "repo@sha256:<64 hex>" in errors[0], errors              # the fix


def test_auto_enables_a_data_service_only_when_an_app_requires_it():
    assert merged()["mongodb"]["enabled"] is False  # nothing needs MongoDB
    needs = merged(n8n={"requires": ["postgresql", "redis", "mongodb"]})
    assert needs["mongodb"]["enabled"] is True
    off = merged(n8n={"requires": ["postgresql", "redis", "mongodb"]}, mongodb={"enabled": False})
    assert off["mongodb"]["enabled"] is False
    assert "n8n needs mongodb: enable borgstack_services.mongodb or disable borgstack_services.n8n" in \
        registry_errors(off, DOMAIN)
    assert merged(mongodb={"enabled": True})["mongodb"]["enabled"] is True  # asked for by name
    assert merged(n8n={"enabled": False, "requires": ["mongodb"]})["mongodb"]["enabled"] is False


def test_every_tenant_and_user_is_derived_for_the_wiring_even_when_disabled():
    """A disabled app's role still renders its settings (to remove its containers): its tenant must be found."""
    reg = merged(n8n={"enabled": False}, lowcoder={"enabled": False}, directus={"mongodb": {"database": "dx"}})
    every = {t["name"]: t for t in postgres_tenants(reg, MASTER, {}, True)}
    assert set(every) == {"n8n", "directus", "evolution_api", "chatwoot"}
    assert every["n8n"] == postgres_tenants(merged(), MASTER, {})[0]  # the same derivation, same password
    assert [u["name"] for u in mongodb_users(reg, MASTER, {}, True)] == ["directus", "lowcoder"]
    # MongoDB itself stays off (auto: nothing requires it), which the validation refuses for an app that has a user.
    assert any(e.startswith("directus needs a MongoDB user") for e in registry_errors(reg, DOMAIN))


def test_lowcoder_with_mongodb_switched_off_is_refused_naming_both():
    """Issue 8's bad input: Lowcoder enabled, MongoDB explicitly disabled (auto would have turned it on)."""
    assert service_registry(DEFAULTS, {})["mongodb"]["enabled"] is True  # Lowcoder is on by default: auto -> on
    reg = service_registry(DEFAULTS, {"mongodb": {"enabled": False}})
    errors = registry_errors(reg, DOMAIN)
    assert "lowcoder needs mongodb: enable borgstack_services.mongodb or disable borgstack_services.lowcoder" in errors
    assert any(e.startswith("lowcoder needs a MongoDB user: enable borgstack_services.mongodb") for e in errors)
    # Lowcoder off too: nothing to refuse.
    assert registry_errors(service_registry(DEFAULTS, {"mongodb": {"enabled": False},
                                                       "lowcoder": {"enabled": False}}), DOMAIN) == []


def test_lowcoder_gets_its_mongodb_user_and_its_own_redis_index():
    reg = service_registry(DEFAULTS, {})
    users = mongodb_users(reg, MASTER, {})
    assert [(u["name"], u["database"], u["roles"]) for u in users] == [("lowcoder", "lowcoder", ["readWrite"])]
    indexes = [svc["redis_db"] for svc in reg.values() if svc.get("enabled") and "redis_db" in svc]
    assert len(indexes) == len(set(indexes))


@pytest.mark.parametrize("value", ["yes", 1, {"user": "x"}])
def test_basic_auth_must_be_a_boolean(value):
    errors = registry_errors(merged(n8n={"site": {"basic_auth": value}}), DOMAIN)
    assert errors == [f"borgstack_services.n8n.site.basic_auth must be true or false (Caddy asks for a password "
                      f"before the app), found {value!r}"]


def test_basic_auth_users_are_derived_and_hashed_for_caddy():
    import bcrypt

    from ansible_collections.borgstack.stack.plugins.filter.registry import basic_auth_users

    reg = service_registry(DEFAULTS, {})
    creds = basic_auth_users(reg, MASTER, {}, "ti@example.com.br")
    # The apps without a login of their own: FileFlows and Prometheus (monitoring).
    assert list(creds) == ["fileflows", "monitoring"]
    cred = creds["fileflows"]
    assert cred["user"] == "ti@example.com.br" and len(cred["password"]) == 40
    assert cred["hash"].startswith("$2b$12$") and len(cred["hash"]) == 60
    assert bcrypt.checkpw(cred["password"].encode(), cred["hash"].encode())
    assert not bcrypt.checkpw(b"wrong-password", cred["hash"].encode())
    # Same input, same hash (the Caddyfile must not change on every run); another password, another salt.
    assert basic_auth_users(reg, MASTER, None, "ti@example.com.br") == creds
    other = basic_auth_users(reg, MASTER, {"basic_auth_fileflows": "another-long-password"}, "ti@example.com.br")
    assert other["fileflows"]["hash"][:29] != cred["hash"][:29]
    assert basic_auth_users(merged(), MASTER, {}, "ti@example.com.br") == {}  # FileFlows off
    with pytest.raises(AnsibleFilterError, match="borgstack_admin_email"):
        basic_auth_users(reg, MASTER, {}, "two words")
    # No site asks for it (FileFlows off): no user needed, none checked.
    assert basic_auth_users(merged(), MASTER, {}, "") == {}


def test_caddy_sites_and_health_checks_of_a_basic_auth_site():
    from ansible_collections.borgstack.stack.plugins.filter.registry import basic_auth_users

    reg = service_registry(DEFAULTS, {})
    ends = service_endpoints(reg, "borgstack", "i")
    creds = basic_auth_users(reg, MASTER, {}, "ti@example.com.br")
    sites = {s["hostname"]: s for s in caddy_sites(reg, DOMAIN, ends, creds)}
    fileflows = sites["fileflows.example.com.br"]
    assert fileflows["basic_auth"] == {"user": "ti@example.com.br", "hash": creds["fileflows"]["hash"]}
    assert creds["fileflows"]["password"] not in str(sites)
    assert fileflows["upstream"] == "borgstack-fileflows:5000"
    assert fileflows["csp_extra"]["connect-src"] == "wss://fileflows.example.com.br"
    assert "basic_auth" not in sites["lowcoder.example.com.br"]
    assert sites["lowcoder.example.com.br"]["max_body_mb"] == 50
    # Duplicati's pre-authenticated token is for the play on the host: its site refuses that scheme; no other does.
    on = service_registry(DEFAULTS, {"duplicati": {"enabled": True}})
    on_sites = {s["hostname"]: s for s in caddy_sites(on, DOMAIN, service_endpoints(on, "borgstack", "i"), creds)}
    assert on_sites["duplicati.example.com.br"]["refuse_auth"] == ["PreAuth"]
    assert [h for h, s in on_sites.items() if "refuse_auth" in s] == ["duplicati.example.com.br"]
    with pytest.raises(AnsibleFilterError, match=r"borgstack_services.fileflows.site.basic_auth is true"):
        caddy_sites(reg, DOMAIN, ends)
    checks = {c["name"]: c for c in health_checks(reg, DOMAIN, ends, [], "")}
    assert checks["fileflows"]["public_url"] == "https://fileflows.example.com.br/"
    assert checks["fileflows"]["public_expect_status"] == [401]
    assert checks["fileflows"]["internal_check"] == {"type": "tcp", "port": 5000}
    assert checks["lowcoder"]["internal_check"] == {"type": "http", "port": 3000, "path": "/api/status/health"}
    assert "public_expect_status" not in checks["lowcoder"]


def test_chatwoot_one_off_job_and_health_body():
    """Chatwoot's migration job: checked by nobody (it is not running), named in the endpoints, and given its own
    share of the RAM plan - on a version change Compose runs it while the old web still runs. Its web's health reads
    the body: /api answers 200 even when Redis or PostgreSQL is failing."""
    reg = merged(chatwoot={"enabled": True})
    assert registry_errors(reg, DOMAIN) == []
    ends = service_endpoints(reg, "borgstack", "borgstack_internal")
    assert ends["chatwoot"]["containers"] == {"chatwoot": ["borgstack-chatwoot"],
                                              "chatwoot-sidekiq": ["borgstack-chatwoot-sidekiq-1"],
                                              "chatwoot-migrate": ["borgstack-chatwoot-migrate"]}
    checks = {c["name"]: c for c in health_checks(reg, DOMAIN, ends, postgres_tenants(reg, MASTER, {}), "r")}
    chatwoot = checks["chatwoot"]
    assert chatwoot["containers"] == ["borgstack-chatwoot", "borgstack-chatwoot-sidekiq-1"]
    assert chatwoot["internal_check"] == {"type": "http", "port": 3000, "path": "/api",
                                          "expect_body": '"queue_services":"ok","data_services":"ok"'}
    specs = memory_specs(reg)
    assert {k: specs[k]["count"] for k in specs if k.startswith("chatwoot")} == {
        "chatwoot": 1, "chatwoot-sidekiq": 1, "chatwoot-migrate": 1}
    plan = ram_budget(16384, specs)
    assert {"chatwoot", "chatwoot-sidekiq"} <= set(plan["services"])
    # Its tenant gets the four extensions Chatwoot 4's schema creates (made by the superuser).
    tenant = next(t for t in postgres_tenants(reg, MASTER, {}) if t["name"] == "chatwoot")
    assert tenant["database"] == "chatwoot"
    assert sorted(tenant["extensions"]) == ["pg_stat_statements", "pg_trgm", "pgcrypto", "vector"]
    # A healthy and a failing /api body against the registry's pattern.
    import re
    pattern = chatwoot["internal_check"]["expect_body"]
    assert re.search(pattern, '{"version":"4.6.0","timestamp":"2026-01-01 00:00:00","queue_services":"ok",'
                              '"data_services":"ok"}')
    assert not re.search(pattern, '{"version":"4.6.0","timestamp":"x","queue_services":"failing",'
                                  '"data_services":"ok"}')
    assert not re.search(pattern, '{"version":"4.6.0","timestamp":"x","queue_services":"ok",'
                                  '"data_services":"failing"}')


# --- Placement on a cluster ---------------------------------------------------------------------------------------
def test_the_pinned_services_are_the_data_services_and_the_apps_placed_on_their_node():
    """The apps whose volumes keep what must not be shared or lost run on the one node holding them on a cluster:
    Evolution API (WhatsApp session keys), FileFlows (its SQLite database), Lowcoder (uploaded assets) and
    Duplicati (it reads the volumes it backs up); Chatwoot (attachments on S3), n8n and Directus spread."""
    assert pinned_services(merged()) == ["postgresql", "redis", "mongodb", "seaweedfs", "lowcoder", "fileflows",
                                         "evolution_api", "duplicati"]
    assert "chatwoot" not in pinned_services(merged(chatwoot={"enabled": True}))
    assert "n8n" in pinned_services(merged(n8n={"placement": "node"}))


@pytest.mark.parametrize(("changes", "message"), [
    ({"n8n": {"placement": "here"}},
     "borgstack_services.n8n.placement must be node (on a cluster, pinned to the node holding its volumes) or any, "
     "found 'here'"),
    ({"redis": {"placement": "any"}},
     "borgstack_services.redis.placement: a data service always runs on the node holding its data; remove it"),
])
def test_a_bad_placement_is_refused_naming_it(changes, message):
    assert message in registry_errors(merged(**changes), DOMAIN)
    assert registry_errors(merged(n8n={"placement": "any"}, redis={"placement": "node"}), DOMAIN) == []


def test_pinned_services_sidecar_doc():
    import sys  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, str(Path(__file__).parent))
    from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error,import-outside-toplevel
    check_sidecar_doc(registry_module.pinned_services, ROOT / "plugins" / "filter" / "pinned_services.yml")
