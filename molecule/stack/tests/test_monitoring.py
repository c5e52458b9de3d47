"""The monitoring service in the converged lab stack: every scrape target up, a query per metric family answers,
Prometheus' page only through Caddy behind the login the play created, and one alert end to end - a stopped
container, its e-mail received by a real SMTP server (aiosmtpd, on this machine at the default bridge's gateway,
where molecule/stack/inventory/hosts.yml points Alertmanager), then the resolved e-mail after the repair.

Lab-only short delays (hosts.yml: down_for 20s, scrape and evaluation every 10s, group_wait 5s, group_interval 10s)
keep the cycle near 2 minutes. Runs on bookworm's Prometheus 2.42, Alertmanager 0.25 and exporters (one image,
borgstack-lab/monitoring); production pins the official images. What did not run here: Evolution API (no image) -
no WhatsApp session probe in the lab (the probe's config and rule are unit-tested with promtool); n8n runs in regular
mode, so its Bull queue keys do not exist (the redis exporter exports them only when they do); the restore drill's
metrics are not produced here (the drill runs in test_backup's scenario, not in this test); the other alerts are
proven by promtool (tests/unit/plugins/filter/test_monitoring.py), not by injected faults.
"""
from __future__ import annotations

import email
import email.policy
import json
import shlex
import subprocess
import threading
import urllib.parse

import pytest
from conftest import PUBLIC_IP, public_ip, wait_for  # pylint: disable=import-error

PROJECT_DIR = "/opt/borgstack"
PROMETHEUS = "borgstack-monitoring"
HOSTNAME = "monitoring.lab.borgstack.test"
ADMIN = "admin@example.com"
VICTIM = "borgstack-directus"
SMTP_PORT = 2525


def container_ip(host, name: str) -> str:
    result = host.run(f"docker inspect {shlex.quote(name)}")
    assert result.rc == 0, result.stderr
    networks = json.loads(result.stdout)[0]["NetworkSettings"]["Networks"]
    return next(n["IPAddress"] for key, n in networks.items() if key.endswith("_internal"))


def query(host, ip: str, promql: str) -> list:
    """An instant query against the real Prometheus, from the lab host (it reaches the internal network)."""
    url = f"http://{ip}:9090/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    result = host.run(f"curl -sf --max-time 10 {shlex.quote(url)}")
    assert result.rc == 0, f"Prometheus did not answer {promql}: {result.stderr}"
    answer = json.loads(result.stdout)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.fixture(scope="module")
def prometheus(host):
    return container_ip(host, PROMETHEUS)


def test_every_scrape_target_is_up(host, prometheus):
    def all_up():
        url = f"http://{prometheus}:9090/api/v1/targets?state=active"
        targets = json.loads(host.run(f"curl -sf --max-time 10 {shlex.quote(url)}").stdout)["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
        return (len(targets), down) if targets and not down else None

    count = wait_for("every scrape target up", all_up, 90, every=3)[0]
    # prometheus, alertmanager, blackbox, node, postgres, redis + a probe per container + a TLS probe per site.
    assert count >= 15

    # Every enabled container answers its probe (derived from the registry, not listed here) and every site's TLS.
    def all_succeed():
        found = query(host, prometheus, 'probe_success{job=~"health|tls"}')
        return found if found and all(s["value"][1] == "1" for s in found) else None

    health = wait_for("every health probe succeeding", all_succeed, 60, every=3)
    containers = {s["metric"].get("container") for s in health}
    assert {"borgstack-n8n", "borgstack-postgresql", "borgstack-directus", "borgstack-monitoring"} <= containers
    assert {s["metric"].get("hostname") for s in health} >= {"n8n.lab.borgstack.test", HOSTNAME}


@pytest.mark.parametrize("promql", [
    "node_memory_MemAvailable_bytes",                                     # host memory
    'rate(node_cpu_seconds_total{mode="idle"}[1m])',                      # host CPU
    # Disks (and their fill rate). The lab host's / is an overlay (a container: excluded like Docker's own
    # layers); its Docker data volume is a real ext4 file system.
    'node_filesystem_avail_bytes{mountpoint="/var/lib/docker",fstype="ext4"}',
    'borgstack_container_memory_bytes{name="borgstack-postgresql"} > 0',  # container memory ...
    'borgstack_container_memory_limit_bytes{name="borgstack-postgresql"} > 0',  # ... against its limit
    "borgstack_container_restarts_total",
    "borgstack_container_oom_killed",
    'borgstack_container_running{name="borgstack-caddy"} == 1',
    "pg_up == 1",                                                         # PostgreSQL
    "pg_stat_database_xact_commit",
    "borgstack_cs_errors_total",                                          # customer-service error table
    "borgstack_n8n_executions_failed_last_hour",                          # n8n's failed executions
    "redis_up == 1",                                                      # Redis
    "redis_memory_used_bytes",
    'probe_ssl_earliest_cert_expiry{job="tls"} > time()',                 # certificates through Caddy
    'probe_http_status_code{job="health",container="borgstack-n8n"} == 200',
    'alertmanager_config_last_reload_successful == 1',
])
def test_each_metric_family_returns_data(host, prometheus, promql):
    wait_for(promql, lambda: query(host, prometheus, promql), 45, every=3)


def test_backup_results_reach_prometheus(host, prometheus):
    """A real backup run writes its textfile metrics; the node exporter serves them."""
    # An earlier test's backup may have left its own (older) success time in Prometheus: wait for this run's.
    started = int(host.check_output("date +%s"))
    assert host.run("systemctl start borgstack-backup.service").rc == 0
    result = wait_for("this backup's success time", lambda: query(
        host, prometheus, f"borgstack_backup_last_success_timestamp_seconds >= {started}"), 45, every=3)
    assert float(result[0]["value"][1]) >= started
    assert query(host, prometheus, f"borgstack_backup_last_run_timestamp_seconds >= {started}"
                                   " and on() borgstack_backup_last_status == 1")


def test_prometheus_is_published_only_behind_the_login(host):
    ip = public_ip(host) or PUBLIC_IP
    password = host.run(f"cat {PROJECT_DIR}/services/monitoring/admin-password").stdout.strip()
    assert len(password) >= 12
    url = f"https://{HOSTNAME}/api/v1/status/buildinfo"
    base = ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--resolve", f"{HOSTNAME}:443:{ip}", url]
    assert subprocess.run(base, capture_output=True, text=True, timeout=30, check=False).stdout == "401"
    assert subprocess.run(base + ["-u", f"{ADMIN}:wrong-password"], capture_output=True, text=True,
                          timeout=30, check=False).stdout == "401"
    assert subprocess.run(base + ["-u", f"{ADMIN}:{password}"], capture_output=True, text=True,
                          timeout=30, check=False).stdout == "200"
    # No exporter port answers from outside (the full scan is test_security's).
    for port in (9090, 9093, 9100, 9115, 9121, 9187):
        probe = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "3", f"http://{ip}:{port}/"],
                               capture_output=True, text=True, timeout=30, check=False)
        assert probe.returncode != 0, f"port {port} answers on the public address"


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        with self.lock:
            self.messages.append({"subject": str(message["Subject"]), "to": list(envelope.rcpt_tos),
                                  "body": body.get_content() if body else ""})
        return "250 OK"

    def find(self, *words):
        with self.lock:
            return [m for m in self.messages if all(w in m["subject"] + m["body"] for w in words)]


@pytest.fixture
def smtp():
    # requirements.txt pins aiosmtpd: a missing module is an error, not a skip.
    from aiosmtpd.controller import Controller  # pylint: disable=import-outside-toplevel
    gateway = json.loads(subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True, text=True,
                                        check=True).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    inbox = Inbox()
    controller = Controller(inbox, hostname=gateway, port=SMTP_PORT)
    controller.start()
    yield inbox
    controller.stop()


def test_a_stopped_container_is_mailed_then_resolved(host, prometheus, smtp):
    """Fault -> e-mail -> repair -> resolved e-mail, through the real Alertmanager and a real SMTP server."""
    assert not smtp.find(VICTIM), "an alert about the victim before the fault"
    assert host.run(f"docker stop {VICTIM}").rc == 0
    try:
        fired = wait_for("the alert e-mail", lambda: smtp.find("PROBLEMA", "ServicoFora", VICTIM), 150, every=3)
    finally:
        assert host.run(f"docker start {VICTIM}").rc == 0
    mail = fired[0]
    assert mail["to"] == ["dono@example.com"]
    # The pt-BR text: what happened, what it affects, what to do.
    assert f"{VICTIM} (directus) não responde à verificação de saúde" in mail["body"]
    assert "Quem usa directus não consegue trabalhar" in mail["body"]
    assert f"docker logs --tail 50 {VICTIM}" in mail["body"]
    wait_for("the resolved e-mail", lambda: smtp.find("RESOLVIDO", "ServicoFora", VICTIM), 150, every=3)
    assert query(host, prometheus, f'probe_success{{container="{VICTIM}"}} == 1')
