"""Reruns converge drift, per-service tags touch only their service, and --check --diff reports nothing to change.

These tests change the converged lab host on purpose and rerun the real site playbook (see conftest.run_site).
They run in file order: heal first, then tags, then check mode.
"""
from __future__ import annotations

import re
import subprocess

from conftest import PUBLIC_IP, changed_tasks, run_site

HAND_PASSWORD = "changed-by-hand-0123456789"
PG_CONF = "/opt/borgstack/services/postgresql/postgresql.conf"
CADDYFILE = "/opt/borgstack/services/caddy/config/Caddyfile"
N8N_COMPOSE = "/opt/borgstack/services/n8n/compose.yaml"


def _running(host, name: str) -> bool:
    out = host.run(f"docker inspect --format '{{{{.State.Running}}}}' {name}")
    return out.rc == 0 and out.stdout.strip() == "true"


def _tenant_login(host, password: str) -> bool:
    cmd = (f"docker exec -e PGPASSWORD={password} borgstack-postgresql "
           "psql -h 127.0.0.1 -U n8n -d n8n -tAc 'select 1'")
    return host.run(cmd).rc == 0


def _https_status(host) -> str:
    host.check_output("cat /opt/borgstack/services/caddy/root.crt > /tmp/borgstack-root.crt")
    ca = host.file("/tmp/borgstack-root.crt").content_string
    with open("/tmp/borgstack-mol-stack-root.crt", "w", encoding="utf-8") as f:
        f.write(ca)
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
         "--resolve", f"n8n.lab.borgstack.test:443:{PUBLIC_IP}", "--cacert", "/tmp/borgstack-mol-stack-root.crt",
         "https://n8n.lab.borgstack.test/healthz/readiness"],
        capture_output=True, text=True, check=False)
    return out.stdout.strip()


def test_rerun_heals_drift(host):
    # n8n reads its database password from this root-only file (DB_POSTGRESDB_PASSWORD_FILE), not its environment.
    db_password = host.file("/opt/borgstack/services/n8n/db-password").content_string.strip()
    assert _tenant_login(host, db_password)
    # 1. a removed container, 2. a stopped container, 3. an edited config file,
    # 4. a database password changed by hand, 5. a deleted Caddy site (file and running config).
    host.check_output("docker rm -f borgstack-redis")
    host.check_output("docker stop borgstack-seaweedfs")
    host.check_output(f"echo \"work_mem = '1MB'\" >> {PG_CONF}")
    host.check_output(f"docker exec borgstack-postgresql psql -U postgres -c \"ALTER ROLE n8n PASSWORD '{HAND_PASSWORD}'\"")
    caddyfile = host.file(CADDYFILE).content_string
    assert "n8n.lab.borgstack.test" in caddyfile
    host.check_output(f"printf '{{\\n\\tadmin localhost:2019\\n}}\\n' > {CADDYFILE}")
    host.check_output("docker exec borgstack-caddy caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile")
    assert not _tenant_login(host, db_password)
    assert _https_status(host) != "200"

    heal = run_site()
    assert heal.rc == 0, heal.output[-5000:]
    assert heal.changed > 0

    assert _running(host, "borgstack-redis") and _running(host, "borgstack-seaweedfs")
    assert "work_mem = '1MB'" not in host.file(PG_CONF).content_string
    assert _tenant_login(host, db_password) and not _tenant_login(host, HAND_PASSWORD)
    assert host.file(CADDYFILE).content_string == caddyfile
    assert _https_status(host) == "200"

    again = run_site()
    assert again.rc == 0 and again.changed == 0, changed_tasks(again.output)


def test_tags_touch_only_their_service(host):
    host.check_output(f"echo '# drift' >> {N8N_COMPOSE}")
    host.check_output(f"echo '# drift' >> {CADDYFILE}")
    caddy_started = host.check_output("docker inspect --format '{{.State.StartedAt}}' borgstack-caddy")

    tagged = run_site("--tags", "n8n")
    assert tagged.rc == 0, tagged.output[-4000:]
    tasks = changed_tasks(tagged.output)
    assert tasks, "the n8n drift was not healed"
    assert all("n8n" in t or "compose_service" in t for t in tasks), tasks
    assert "# drift" not in host.file(N8N_COMPOSE).content_string
    assert host.file(CADDYFILE).content_string.endswith("# drift\n"), "--tags n8n touched Caddy's files"
    assert host.check_output("docker inspect --format '{{.State.StartedAt}}' borgstack-caddy") == caddy_started
    # Every role's argument-spec check runs under any tag (Ansible tags it 'always'); nothing else of theirs may.
    ran = {role for role, task in re.findall(r"^TASK \[borgstack\.stack\.([a-z_]+) : ([^\]]*)\]", tagged.output, re.M)
           if not task.startswith("Validating arguments against arg spec")}
    assert not ran & {"caddy", "postgresql", "redis", "seaweedfs", "docker", "firewall", "kernel"}, ran

    proxy = run_site("--tags", "caddy")
    assert proxy.rc == 0 and proxy.changed > 0
    assert not host.file(CADDYFILE).content_string.endswith("# drift\n")
    assert host.check_output("docker inspect --format '{{.State.StartedAt}}' borgstack-caddy") == caddy_started, \
        "a Caddyfile change must reload Caddy, not restart its container"


def test_check_diff_on_converged_host_reports_nothing():
    check = run_site("--check", "--diff")
    assert check.rc == 0, check.output[-4000:]
    assert check.changed == 0, changed_tasks(check.output)
