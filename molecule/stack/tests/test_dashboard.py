"""The monitoring dashboard in the converged lab stack: the page Prometheus serves from the console template the play
generated (plugins/filter/dashboard.py) answers only through Caddy with the login the play created, has a card per
watched service, and every query on it returns data from the real Prometheus (bookworm's 2.42 in the lab image).

The queries are read from the page the play wrote on the host (the filter's own output), not from a list here. The
backup and restore-drill items need a backup and a drill on this host: test_backup (run before this file, as
molecule runs the files in name order) produces both; run alone, this file fails naming those queries. What did not
run here: Evolution API (no image), so there is no WhatsApp session item on the lab's page (the filter adds it when
the session is probed: unit test), and the customer-service counters are 0 unless test_customer_service ran first
(a 0 is still data: the exporter's query ran).
"""
from __future__ import annotations

import json
import re
import subprocess
import urllib.parse

import pytest

from conftest import PUBLIC_IP, public_ip, wait_for  # pylint: disable=import-error
from test_monitoring import ADMIN, HOSTNAME, PROJECT_DIR  # pylint: disable=import-error

PAGE = f"{PROJECT_DIR}/services/monitoring/dashboard.html"
# Each item of the page: {{ with query `<PromQL>` }} (dashboard_console quotes every query as a Go raw string).
QUERY_RE = re.compile(r"\{\{ with query `([^`]*)` \}\}")


def _get(host, path: str, *auth: str) -> tuple[str, str]:
    """GET https://<monitoring site><path> through Caddy from this machine: (body, HTTP status)."""
    ip = public_ip(host) or PUBLIC_IP
    run = subprocess.run(["curl", "-sk", "--max-time", "20", "-w", "\n%{http_code}", "--resolve",
                          f"{HOSTNAME}:443:{ip}", *auth, f"https://{HOSTNAME}{path}"], capture_output=True,
                         text=True, timeout=30, check=False)
    body, _sep, status = run.stdout.rpartition("\n")
    return body, status


@pytest.fixture(scope="module")
def login(host) -> list[str]:
    password = host.run(f"cat {PROJECT_DIR}/services/monitoring/admin-password").stdout.strip()
    assert len(password) >= 12
    return ["-u", f"{ADMIN}:{password}"]


def _query(host, login, promql: str) -> list:
    """An instant query through Caddy with the login (one local curl: no round trip through the lab host)."""
    body, status = _get(host, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}), *login)
    assert status == "200", f"{promql}: HTTP {status} {body[:300]}"
    answer = json.loads(body)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_the_dashboard_is_served_only_behind_the_login_with_a_card_per_service(host, login):
    assert _get(host, "/consoles/index.html")[1] == "401"
    assert _get(host, "/consoles/index.html", "-u", f"{ADMIN}:wrong-password")[1] == "401"
    page, status = _get(host, "/consoles/index.html", *login)
    assert status == "200", page[-500:]
    assert "BorgStack: painel" in page
    # A card per service Prometheus probes (both come from the registry through monitoring_targets).
    services = {s["metric"]["service"] for s in _query(host, login, 'probe_success{job="health"}')}
    assert {"postgresql", "n8n", "directus", "monitoring"} <= services
    cards = set(re.findall(r'<div class="card"><h3>([^<]+)</h3>', page))
    assert services <= cards, services - cards
    for section in ("Servidor", "Serviços", "Certificados", "Atendimento e backups"):
        assert f"<h2>{section}</h2>" in page


def test_every_query_on_the_page_returns_data(host, login):
    queries = QUERY_RE.findall(host.file(PAGE).content_string)
    # 5 host items, 3 per service, certificates, 5 customer-service items, 4 backup items.
    assert len(queries) >= 5 + 3 * 4 + 1 + 5 + 4, queries
    missing = list(queries)

    def all_answer() -> bool:
        missing[:] = [q for q in queries if not _query(host, login, q)]
        return not missing

    try:
        wait_for("every dashboard query answering", all_answer, 60, every=3)
    except pytest.fail.Exception:
        pytest.fail(f"dashboard queries with no data after 60 s: {missing}")
    # The page as the owner sees it: no item says "sem dados" (Prometheus ran the same queries to render it).
    page = _get(host, "/consoles/index.html", *login)[0]
    assert 'class="vazio"' not in page, re.findall(r'<tr class="vazio"><td>([^<]+)', page)
