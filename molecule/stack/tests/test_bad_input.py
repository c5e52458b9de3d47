"""Bad input is refused by the validation play before any change, naming the variable (the converged host is left
as it is)."""
from __future__ import annotations

import json

import pytest

from conftest import VALIDATION_PLAY, run_site

LAB_IMAGES = {
    "postgresql": {"image": "borgstack-lab/postgresql:17"},
    "redis": {"image": "borgstack-lab/redis:8.0"},
    "seaweedfs": {"image": "borgstack-lab/seaweedfs:4.30"},
    "n8n": {"image": "borgstack-lab/n8n:1.113.3"},
    "directus": {"image": "borgstack-lab/directus:11.17.4"},
    "caddy": {"image": "borgstack-lab/caddy:2.11.7"},
}


def _services(**changes):
    merged = {k: dict(v) for k, v in LAB_IMAGES.items()}
    for name, change in changes.items():
        merged.setdefault(name, {}).update(change)
    return {"borgstack_services": merged}


CASES = [
    ("unknown service", _services(wordpress={"enabled": True}), "borgstack_services: unknown service"),
    ("two services on one hostname", _services(n8n={"site": {"hostname": "x.lab.borgstack.test"}},
                                               seaweedfs={"site": {"hostname": "x.lab.borgstack.test"}}),
     "borgstack_services.seaweedfs.site.hostname and borgstack_services.n8n.site.hostname are both"),
    ("hostname that is not a DNS name", _services(n8n={"site": {"hostname": "https://n8n.example"}}),
     "borgstack_services.n8n.site.hostname"),
    ("typo in a registry key", _services(n8n={"site": {"hostnmae": "x.lab.borgstack.test"}}),
     "borgstack_services.n8n.site: unknown key(s) hostnmae"),
    ("CSP override that is not a string", _services(n8n={"site": {"csp": {"script-src": ["'unsafe-eval'"]}}}),
     "borgstack_services.n8n.site.csp.script-src must be a string"),
    ("memory weight that cannot fit the host", _services(n8n={"containers": {"n8n": {"memory": {"min_mb": 999999}}}}),
     "n8n=999999"),
    ("ACME email that is not an email", {"caddy_acme_email": "not-an-email", **_services()}, "caddy_acme_email"),
    ("port reused inside one service",
     _services(n8n={"containers": {"n8n-worker": {"replicas": 1, "port": 5678}}}),
     "borgstack_services.n8n.containers.n8n.port and borgstack_services.n8n.containers.n8n-worker.port"),
    ("Directus bucket name that S3 refuses", _services(directus={"s3_bucket": "Directus_Files"}),
     "borgstack_services.directus.s3_bucket 'Directus_Files' is not a valid S3 bucket name"),
    ("admin e-mail that is not an e-mail", {"borgstack_admin_email": "admin-at-example", **_services()},
     "borgstack_admin_email must be the e-mail address"),
    # The address itself is valid (the stack-wide check passes): Directus refuses the reserved top-level domain.
    ("Directus admin e-mail under a reserved domain", {"borgstack_admin_email": "admin@lab.borgstack.test",
                                                       **_services()},
     "borgstack_admin_email must be the e-mail address of Directus' first administrator"),
    ("n8n without PostgreSQL", _services(postgresql={"enabled": False}),
     "n8n needs postgresql: enable borgstack_services.postgresql"),
    # A role's argument spec, run by the validation play (entry point 'validate'), not first in the n8n play.
    ("list where a dict is wanted", {"n8n_env_extra": ["a"], **_services()},
     "argument 'n8n_env_extra' is of type list"),
    ("word where an int is wanted", {"redis_timeout": "never", **_services()}, "argument 'redis_timeout'"),
    # The play manages the customer-service workflows through n8n's public API (never with the owner's password).
    ("n8n's public API turned off", {"n8n_env_extra": {"N8N_PUBLIC_API_DISABLED": "TRUE"}, **_services()},
     "n8n_env_extra sets N8N_PUBLIC_API_DISABLED"),
    # A zone with the right shape that the zone database does not have.
    ("time zone that does not exist", {"n8n_timezone": "America/Sao_Paul", **_services()},
     "n8n_timezone: 'America/Sao_Paul' is not a time zone"),
    # WhatsApp cannot report its own outage (a closed session): never the only alert channel.
    ("WhatsApp as the only alert channel", {"monitoring_alerting": {"whatsapp": {"number": "+5511987654321"}},
                                            **_services()},
     "monitoring_alerting: WhatsApp is the only alert channel"),
    # Prometheus' intervals: checked by the validation play, not first by promtool inside the monitoring role (the
    # other interval rules: tests/unit/plugins/filter/test_monitoring_intervals.py).
    ("scrape interval Prometheus cannot parse", {"monitoring_scrape_interval": "10x", **_services()},
     "monitoring_scrape_interval must be a Prometheus duration of one unit"),
    # Moving tags, in any case.
    ("moving image tag", _services(n8n={"image": "borgstack-lab/n8n:stable"}), "borgstack_services.n8n.image"),
    ("moving image tag in upper case", _services(caddy={"image": "caddy:LATEST"}), "borgstack_services.caddy.image"),
    ("image without a version", _services(redis={"image": "redis:alpine"}), "borgstack_services.redis.image"),
    ("image with a malformed digest", _services(n8n={"image": "borgstack-lab/n8n@sha256:abc"}),
     "borgstack_services.n8n.image"),
    # Secret rotation (docs/rotacao-segredos.md): keys whose new value would destroy data, versions that are not
    # 1, 2, 3 ..., and a purpose the stack does not derive.
    ("rotating n8n's encryption key", {"borgstack_secret_versions": {"n8n_encryption_key": 2}, **_services()},
     "borgstack_secret_versions.n8n_encryption_key is refused: rotating it would destroy data"),
    ("rotating Chatwoot's SECRET_KEY_BASE",
     {"borgstack_secret_versions": {"chatwoot_secret_key_base": 2}, **_services()},
     "borgstack_secret_versions.chatwoot_secret_key_base is refused: rotating it would destroy data"),
    ("secret version below 1", {"borgstack_secret_versions": {"redis_password": 0}, **_services()},
     "borgstack_secret_versions.redis_password must be 1 or more"),
    ("secret version that is not an integer", {"borgstack_secret_versions": {"postgresql_n8n": "two"}, **_services()},
     "borgstack_secret_versions.postgresql_n8n must be an integer"),
    # The media pipeline: the result folder must not be the watched one; FileFlows off and no address given.
    ("media pipeline writing into its own folder",
     {"borgstack_media_pipeline": {"enabled": True, "folder": "Mídia", "processed_folder": "mídia",
                                   "fileflows_url": "http://borgstack-fileflows:5000"}, **_services()},
     "borgstack_media_pipeline is on: its folder (found 'Mídia') and processed_folder"),
    ("media pipeline without FileFlows",
     {"borgstack_media_pipeline": {"enabled": True, "folder": "Mídia", "processed_folder": "Saída"},
      **_services(fileflows={"enabled": False})}, "it needs FileFlows"),
    # The reply limiter and the schedules of the reconciliation and the queue (docs/whatsapp-chatwoot.md).
    ("reply limiter of 0", {"n8n_reply_rate_limit": 0, **_services()}, "n8n_reply_rate_limit (found 0)"),
    ("reconciliation interval n8n cannot schedule", {"n8n_reconcile_interval": 90, **_services()},
     "n8n_reconcile_interval (found 90): set 1 to 59 seconds, or a whole number of minutes"),
    ("secret version of an unknown secret", {"borgstack_secret_versions": {"postgresql_n8m": 2}, **_services()},
     "borgstack_secret_versions.postgresql_n8m: unknown secret"),
]


@pytest.mark.parametrize("label,extra,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_refused_before_any_change(label, extra, expected):
    run = run_site("-e", json.dumps(extra), json_output=True)
    assert run.rc != 0, f"{label}: the run did not fail"
    assert any(expected in f.message for f in run.failures), f"{label}: no failure message names {expected!r}: " \
        f"{run.failures}"
    assert run.changed == 0, f"{label}: changed={run.changed} before the failure"
    assert {f.play for f in run.failures} == {VALIDATION_PLAY}, f"{label}: failed in {run.failures}"


TAG_CASES = [
    ("tag typo", ["--tags", "n8m"], "--tags n8m"),
    ("tag typo among good tags", ["--tags", "n8n,cady"], "--tags cady"),
    ("skip-tags typo", ["--skip-tags", "helth"], "--skip-tags helth"),
]


@pytest.mark.parametrize("label,args,expected", TAG_CASES, ids=[c[0] for c in TAG_CASES])
def test_unknown_tags_are_refused_before_any_change(label, args, expected):
    """A typo in --tags used to select nothing and exit 0."""
    run = run_site(*args, json_output=True)
    assert run.rc != 0, f"{label}: the run did not fail"
    assert any(expected in f.message and "Known tags: " in f.message and "n8n" in f.message for f in run.failures), \
        f"{label}: no failure message names {expected!r} and the known tags: {run.failures}"
    assert run.changed == 0
    assert {f.play for f in run.failures} == {VALIDATION_PLAY}, run.failures


def test_a_digest_pin_passes_validation():
    """repo:tag@sha256:<64 hex> is the strongest pin; --tags validate checks it without deploying it."""
    digest = "sha256:" + "0" * 64
    pinned = _services(n8n={"image": f"borgstack-lab/n8n:1.113.3@{digest}"})
    run = run_site("--tags", "validate", "-e", json.dumps(pinned), json_output=True)
    assert run.rc == 0, run.failures
    assert run.changed == 0


def test_services_that_do_not_fit_the_ram_are_refused():
    run = run_site("-e", json.dumps({"borgstack_ram_mb": 2048}), json_output=True)
    assert run.rc != 0
    assert any("do not fit the budget" in f.message and f.message.startswith("borgstack_ram_mb (2048 MiB)")
               for f in run.failures), run.failures
    assert run.changed == 0 and {f.play for f in run.failures} == {VALIDATION_PLAY}, run.failures
