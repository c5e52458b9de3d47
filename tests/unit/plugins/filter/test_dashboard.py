# SPDX-License-Identifier: GPL-3.0-or-later
"""The dashboard filters: sections derived from the watched targets (a service added to the registry gets its card),
the console template quoted and escaped, every query accepted by the real promtool and the page rendered by the
real Prometheus 2.42 of the lab image borgstack-lab/monitoring (no image here is a failure, not a skip)."""
from __future__ import annotations

import copy
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import dashboard
from ansible_collections.borgstack.stack.plugins.filter.dashboard import dashboard_console, dashboard_panels
from ansible_collections.borgstack.stack.plugins.filter.monitoring import monitoring_targets
from ansible_collections.borgstack.stack.plugins.filter.registry import service_endpoints, service_registry

from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text(encoding="utf-8"))[
    "borgstack_service_defaults"]
IMAGE = "borgstack-lab/monitoring:bookworm-1"
# The molecule test reads the queries from the page the same way.
QUERY_RE = re.compile(r"\{\{ with query `([^`]*)` \}\}")


def watch(defaults=None, **changes):
    reg = service_registry(defaults or DEFAULTS, changes)
    return monitoring_targets(reg, service_endpoints(reg, "borgstack", "borgstack_internal"), "example.com.br")


def cards(sections):
    return {card["title"]: card for section in sections for card in section["cards"]}


def queries(sections):
    return [item["query"] for section in sections for card in section["cards"] for item in card["items"]]


def test_a_card_per_watched_service_in_registry_order():
    sections = dashboard_panels(watch(), {"whatsapp": False})
    assert [s["title"] for s in sections] == ["Servidor", "Serviços", "Certificados", "Atendimento e backups"]
    services = [c["title"] for c in sections[1]["cards"]]
    assert services[:2] == ["postgresql", "redis"] and "n8n" in services and "monitoring" in services
    assert len(services) == len(set(services))
    n8n = cards(sections)["n8n"]["items"]
    assert [i["query"] for i in n8n] == ['probe_success{job="health",service="n8n"}',
                                         'borgstack_container_memory_bytes{service="n8n"}',
                                         'borgstack_container_restarts_total{service="n8n"}']
    assert [i["label"] for i in n8n] == ["container", "name", "name"]


def test_a_service_added_to_the_registry_gets_its_card_and_a_disabled_one_loses_it():
    defaults = copy.deepcopy(DEFAULTS)
    defaults["relatorios"] = {"enabled": True, "layer": "apps", "image": "example/relatorios:1.0", "requires": [],
                              "containers": {"relatorios": {"kind": "web", "port": 8080, "health": "/saude",
                                                            "memory": {"weight": 1, "min_mb": 64}}},
                              "volumes": {}}
    found = cards(dashboard_panels(watch(defaults), {}))
    assert found["relatorios"]["items"][0]["query"] == 'probe_success{job="health",service="relatorios"}'
    assert "directus" in found
    assert "directus" not in cards(dashboard_panels(watch(directus={"enabled": False}), {}))


def test_the_whatsapp_session_only_when_it_is_probed_and_certificates_only_with_sites():
    with_session = queries(dashboard_panels(watch(), {"whatsapp": True}))
    assert 'probe_success{job="whatsapp"}' in with_session
    assert 'probe_success{job="whatsapp"}' not in queries(dashboard_panels(watch(), {"whatsapp": False}))
    no_sites = dict(watch(), sites=[])
    assert "Certificados" not in [s["title"] for s in dashboard_panels(no_sites, {})]
    # Messages in, replies out, errors and backups are always there.
    for metric in ('borgstack_cs_messages_handled{direction="in",period="24h"}',
                   'borgstack_cs_messages_handled{direction="out",period="24h"}',
                   "borgstack_cs_errors_pending", "borgstack_backup_last_status",
                   "borgstack_restore_drill_last_status"):
        assert metric in queries(dashboard_panels(no_sites, {}))


@pytest.mark.parametrize("value, message", [
    ([], "must be a dict"),
    ({"probes": []}, "lack 'probes' or 'sites'"),
    ({"probes": [{"container": "x"}], "sites": []}, "a probe without its service"),
])
def test_bad_targets_are_refused(value, message):
    with pytest.raises(AnsibleFilterError, match=message):
        dashboard_panels(value, {})


def _one(item):
    return [{"title": "S", "cards": [{"title": "C", "items": [item]}]}]


@pytest.mark.parametrize("item, message", [
    ({"title": "x", "query": "up", "unit": "furlongs", "label": ""}, "unknown unit"),
    ({"title": "x", "query": "label_replace(up, `a`)", "unit": "number", "label": ""}, "backquote"),
    ({"title": "x", "query": "up{a=\"{{ x }}\"}", "unit": "number", "label": ""}, "template brace"),
    ({"title": "x", "query": "up", "unit": "number", "label": "a }}{{ b"}, "label name"),
    ({"title": "x", "query": "up"}, "needs title, query, unit and label"),
])
def test_bad_items_are_refused(item, message):
    with pytest.raises(AnsibleFilterError, match=message):
        dashboard_console(_one(item))
    with pytest.raises(AnsibleFilterError, match="non-empty list"):
        dashboard_console([])


def test_the_console_quotes_queries_and_escapes_titles():
    page = dashboard_console(_one({"title": "<b>&", "query": 'up{job="x"}', "unit": "ok", "label": "job"}))
    assert "<h3>C</h3>" in page and "<b>&" not in page and "&lt;b&gt;&amp;" in page
    assert QUERY_RE.findall(page) == ['up{job="x"}']
    assert '{{ range sortByLabel "job" . }}' in page
    sections = dashboard_panels(watch(), {"whatsapp": True})
    assert QUERY_RE.findall(dashboard_console(sections)) == queries(sections)


@pytest.mark.parametrize("name", ["dashboard_panels", "dashboard_console"])
def test_sidecar_docs(name):
    check_sidecar_doc(getattr(dashboard, name), Path(dashboard.__file__).parent / f"{name}.yml")


def test_promtool_accepts_every_query(tmp_path):
    """Each query as a recording rule: promtool (Prometheus 2.42) parses it."""
    sections = dashboard_panels(watch(), {"whatsapp": True})
    rules = [{"record": f"borgstack:dashboard:{n}", "expr": q} for n, q in enumerate(queries(sections))]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}),
                                        encoding="utf-8")
    tmp_path.chmod(0o755)
    (tmp_path / "rules.yml").chmod(0o644)
    result = subprocess.run(["docker", "run", "--rm", "--network=none", "-v", f"{tmp_path}:/w:ro", "--entrypoint",
                             "promtool", IMAGE, "check", "rules", "/w/rules.yml"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_prometheus_renders_the_page(tmp_path):
    """The real Prometheus 2.42 serves the generated page from --web.console.templates; with no data yet every
    item renders its "sem dados" row (one per query: each ran)."""
    sections = dashboard_panels(watch(), {"whatsapp": True})
    (tmp_path / "index.html").write_text(dashboard_console(sections), encoding="utf-8")
    tmp_path.chmod(0o755)
    (tmp_path / "index.html").chmod(0o644)
    name = f"borgstack-dashboard-test-{time.monotonic_ns()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network=none", "-v",
                    f"{tmp_path}:/etc/borgstack/consoles:ro", "--entrypoint", "/bin/prometheus", IMAGE,
                    "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/tmp/tsdb",
                    "--web.console.templates=/etc/borgstack/consoles",
                    "--web.console.libraries=/etc/borgstack/consoles"], check=True, capture_output=True, timeout=60)
    try:
        page = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = subprocess.run(["docker", "exec", name, "wget", "-qO-", "http://127.0.0.1:9090/consoles/index.html"],
                                 capture_output=True, text=True, timeout=30, check=False)
            if run.returncode == 0:
                page = run.stdout
                break
            time.sleep(0.5)
        assert "BorgStack: painel" in page, run.stderr
        assert page.count('<tr class="vazio">') == len(queries(sections))
        assert "{{" not in page
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
