# SPDX-License-Identifier: GPL-3.0-or-later
"""Caddy's Caddyfile, rendered by Ansible on localhost from the stack's real wiring (playbooks/group_vars/all
linked into a throwaway inventory, the caddy role's defaults, its template).

- One host: byte for byte the Caddyfile this repository rendered before n8n's webhook processors came to the
  cluster (fixtures/caddyfile/, rendered from main at 284ae36): the defaults and n8n's opt-in queue mode with two
  workers - every request to n8n goes to its one container.
- Three hosts (a cluster): n8n's production webhooks (``/webhook/*``) go to the webhook processors by the name
  every processor task answers to on the overlay (``borgstack-n8n-webhook``, dnsrr: one address per task), with
  the same hold-and-retry as the main; everything else (the editor, ``/rest``, ``/webhook-test/*``, forms) to the
  main, whose readiness path Caddy still checks.

What does not run here: Caddy itself (the role's ``caddy validate`` runs on every host that writes the file, and
molecule/cluster sends a production webhook through Caddy and finds it in a processor's log).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import role_plays  # noqa: E402  pylint: disable=import-error,wrong-import-position

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caddyfile"
TEMPLATE = ROOT / "roles" / "caddy" / "templates" / "Caddyfile.j2"
DEFAULTS = ROOT / "roles" / "caddy" / "defaults" / "main.yml"
SETTINGS = {"borgstack_master_secret": "render-test-master-secret-0123456789abcdef",
            "borgstack_admin_email": "ti@example.com.br", "caddy_acme_email": "ti@example.com.br",
            "borgstack_domain": "example.com.br", "borgstack_ram_mb": 16384}
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
CLUSTER = {
    "n1": {**LOCAL, "borgstack_node_address": "10.0.0.1", "borgstack_node_data": ["postgresql", "redis", "seaweedfs"]},
    "n2": {**LOCAL, "borgstack_node_address": "10.0.0.2", "borgstack_node_edge": True},
    "n3": {**LOCAL, "borgstack_node_address": "10.0.0.3"},
}
# The services a cluster runs today (the validation refuses the others there).
CLUSTER_SERVICES = {name: {"enabled": False} for name in
                    ("mongodb", "lowcoder", "fileflows", "evolution_api", "chatwoot", "duplicati", "monitoring")}


def _inventory(tmp: Path, hosts: Mapping[str, Any], settings: Mapping[str, Any]) -> Path:
    return role_plays.inventory(tmp, hosts, {**SETTINGS, **settings})


def _render_play(name: str, host: str, out: Path, play_vars: Mapping[str, Any] | None = None) -> Dict[str, Any]:
    """A play that writes <out>/<name>.Caddyfile from Caddy's template and defaults."""
    return {"name": f"Render {name}", "hosts": host, "gather_facts": False, "vars": dict(play_vars or {}), "tasks": [
        {"name": "Load the caddy role's defaults", "ansible.builtin.include_vars": str(DEFAULTS)},
        {"name": "Write the Caddyfile", "ansible.builtin.copy": {
            "dest": str(out / f"{name}.Caddyfile"), "mode": "0600",
            "content": "{{ lookup('ansible.builtin.template', '%s') }}" % TEMPLATE}},
    ]}


def _run(tmp: Path, inventory: Path, plays: List[Dict[str, Any]]) -> None:
    role_plays.run_plays(tmp, inventory, plays)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("caddy-single")
    _run(out, _inventory(out, {"localhost": LOCAL}, {}), [
        _render_play("default", "localhost", out),
        _render_play("n8n-queue-two-workers", "localhost", out,
                     {"borgstack_services": {"n8n": {"containers": {"n8n-worker": {"replicas": 2}}}}}),
    ])
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("caddy-cluster")
    _run(out, _inventory(out, CLUSTER, {"borgstack_services": CLUSTER_SERVICES}), [
        _render_play("cluster", "n2", out),
    ])
    return out


@pytest.mark.parametrize("name", ["default", "n8n-queue-two-workers"])
def test_the_single_host_caddyfile_is_unchanged(single, name):
    rendered = (single / f"{name}.Caddyfile").read_text()
    assert rendered == (FIXTURES / f"{name}.Caddyfile").read_text(), (
        f"Caddy's single-host Caddyfile ({name}) changed: one host must stay exactly as before")
    assert "n8n-webhook" not in rendered


def _site(caddyfile: str, hostname: str) -> str:
    match = re.search(r"^%s \{\n(.*?)^\}\n" % re.escape(hostname), caddyfile, re.S | re.M)
    assert match, f"no site {hostname} in the Caddyfile"
    return match.group(1)


def test_a_cluster_sends_production_webhooks_to_the_processors(cluster):
    site = _site((cluster / "cluster.Caddyfile").read_text(), "n8n.example.com.br")
    proxies = re.findall(r"^\treverse_proxy (.*?) \{\n(.*?)^\t\}\n", site, re.S | re.M)
    assert [head for head, _body in proxies] == ["@n8n_webhook borgstack-n8n-webhook:5678", "borgstack-n8n:5678"]
    assert re.search(r"^\t@n8n_webhook path /webhook/\*$", site, re.M), site
    processors, main = proxies[0][1], proxies[1][1]
    # Held and retried as the main is, one connection per request; the main keeps its readiness check, the
    # processors have none in Caddy (a processor task enters the name only once its own health check passes).
    for body in (processors, main):
        assert "lb_try_duration 90s" in body and "keepalive off" in body and "request_buffers 1MiB" in body
    assert "health_uri /rest/settings" in main and "health_uri" not in processors
    # Nothing else is sent to the processors: the editor, /rest, test webhooks and forms stay on the main.
    assert site.count("n8n-webhook") == 1 and "webhook-test" not in site and "/form" not in site
    # Directus has no processors: one proxy.
    directus = _site((cluster / "cluster.Caddyfile").read_text(), "directus.example.com.br")
    assert re.findall(r"^\treverse_proxy (.*?) \{$", directus, re.M) == ["borgstack-directus:8055"]
