"""Table-driven tests of the service registry filters."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.registry import (
    postgres_tenants,
    registry_errors,
    service_hostnames,
    service_registry,
)

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text())["borgstack_service_defaults"]
DOMAIN = "example.com.br"
MASTER = "m" * 16 + "A1b2C3d4E5f6G7h8I9j0"


def merged(**changes):
    return service_registry(DEFAULTS, changes)


def test_shipped_defaults_are_sound():
    assert registry_errors(merged(), DOMAIN) == []


def test_unknown_service_is_refused_naming_the_variable():
    with pytest.raises(AnsibleFilterError, match=r"borgstack_services: unknown service\(s\) wordpress"):
        service_registry(DEFAULTS, {"wordpress": {"enabled": True}})


def test_merge_keeps_defaults_and_merges_postgres_dict():
    reg = merged(n8n={"hostname": "fluxos.example.com.br", "postgres": {"extensions": []}})
    assert reg["n8n"]["image"] == DEFAULTS["n8n"]["image"]
    assert reg["n8n"]["postgres"] == {"database": "n8n", "extensions": []}
    assert DEFAULTS["n8n"]["postgres"]["extensions"] == ["vector"], "defaults must not be mutated"


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({"n8n": {"hostname": "https://n8n.example.com.br"}}, "borgstack_services.n8n.hostname"),
        ({"n8n": {"hostname": "N8N.Example.com"}}, "borgstack_services.n8n.hostname"),
        ({"caddy": {"hostname": "x.example.com.br"}, "n8n": {"hostname": "x.example.com.br"}}, None),
        ({"n8n": {"port": 5432}}, "borgstack_services.postgresql.port and borgstack_services.n8n.port"),
        ({"n8n": {"port": 70000}}, "borgstack_services.n8n.port must be an integer"),
        ({"n8n": {"port": "5678"}}, "borgstack_services.n8n.port must be an integer"),
        ({"postgresql": {"enabled": False}}, "n8n needs postgresql"),
        ({"n8n": {"image": "n8nio/n8n"}}, "borgstack_services.n8n.image"),
        ({"n8n": {"image": "n8nio/n8n:latest"}}, "borgstack_services.n8n.image 'n8nio/n8n:latest': the tag"),
        ({"n8n": {"enabled": "yes"}}, "borgstack_services.n8n.enabled must be true or false"),
        ({"n8n": {"s3_bucket": "N8N_Bucket"}}, "borgstack_services.n8n.s3_bucket"),
        ({"n8n": {"redis_db": 16}}, "borgstack_services.n8n.redis_db"),
        ({"n8n": {"postgres": {"database": "n8n-db"}}}, "borgstack_services.n8n.postgres.database"),
        ({"n8n": {"colour": "blue"}}, "borgstack_services.n8n: unknown key(s) colour"),
        ({"n8n": {"layer": "frontend"}}, "borgstack_services.n8n.layer"),
    ],
)
def test_bad_registry_changes_are_reported(changes, expected):
    errors = registry_errors(merged(**changes), DOMAIN)
    if expected is None:  # a caddy hostname is ignored (not public), so no clash
        assert errors == []
    else:
        assert any(expected in e for e in errors), errors


def test_two_public_services_on_one_hostname():
    reg = merged()
    reg["fake"] = copy.deepcopy(reg["n8n"])
    reg["fake"].update(port=9999, redis_db=1, s3_bucket="fake", postgres={"database": "fake", "extensions": []},
                       hostname="n8n.example.com.br")
    errors = registry_errors(reg, DOMAIN)
    assert any("both 'n8n.example.com.br'" in e and "cannot share one host name" in e for e in errors), errors


def test_disabled_services_do_not_collide():
    reg = merged(n8n={"enabled": False, "port": 5432})
    assert registry_errors(reg, DOMAIN) == []


def test_hostnames_default_to_service_dot_domain():
    assert service_hostnames(merged(), DOMAIN) == {"n8n": "n8n.example.com.br"}
    assert service_hostnames(merged(n8n={"hostname": "fluxos.example.com.br"}), DOMAIN) == {
        "n8n": "fluxos.example.com.br"}
    assert service_hostnames(merged(n8n={"enabled": False}), DOMAIN) == {}


def test_postgres_tenants_with_stable_distinct_passwords():
    tenants = postgres_tenants(merged(), MASTER, {})
    assert [t["name"] for t in tenants] == ["n8n"]
    assert tenants[0]["database"] == "n8n" and tenants[0]["extensions"] == ["vector"]
    again = postgres_tenants(merged(), MASTER, None)
    assert tenants[0]["password"] == again[0]["password"] and len(tenants[0]["password"]) == 40
    override = postgres_tenants(merged(), MASTER, {"postgresql_n8n": "a-long-enough-override"})
    assert override[0]["password"] == "a-long-enough-override"
    assert postgres_tenants(merged(n8n={"enabled": False}), MASTER, {}) == []


def test_health_checks_follow_the_registry():
    from ansible_collections.borgstack.stack.plugins.filter.registry import health_checks

    checks = {c["name"]: c for c in health_checks(merged(), DOMAIN, "borgstack", MASTER, {})}
    assert set(checks) == {"postgresql", "redis", "seaweedfs", "n8n", "caddy"}
    n8n = checks["n8n"]
    assert n8n["container"] == "borgstack-n8n"
    assert n8n["internal_check"] == {"type": "http", "port": 5678, "path": "/healthz/readiness"}
    assert n8n["public_url"] == "https://n8n.example.com.br/healthz/readiness"
    tenant = postgres_tenants(merged(), MASTER, {})[0]
    assert n8n["database"]["password"] == tenant["password"] and n8n["database"]["dbname"] == "n8n"
    assert checks["postgresql"]["internal_check"] == {"type": "tcp", "port": 5432}
    assert checks["redis"]["database"]["type"] == "redis"
    assert "public_url" not in checks["redis"]
    disabled = {c["name"] for c in health_checks(merged(n8n={"enabled": False}), DOMAIN, "borgstack", MASTER)}
    assert "n8n" not in disabled


def test_login_report_names_the_page_the_user_and_the_command_never_a_password():
    from ansible_collections.borgstack.stack.plugins.filter.registry import login_report

    lines = login_report(merged(), DOMAIN, "/opt/borgstack", "ti@example.com.br")
    assert lines == ["n8n: https://n8n.example.com.br/signin - user ti@example.com.br; first password: "
                     "sudo cat /opt/borgstack/services/n8n/owner-password"]
    assert login_report(merged(n8n={"enabled": False}), DOMAIN, "/opt/borgstack", "x@y.zz") == []


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
