"""Reruns converge drift, per-service tags touch only their service, and --check reports drift without healing it.

These tests change the converged lab host on purpose and rerun the real site playbook (see conftest.run_site).
They run in file order: heal first (at -vvv --diff, scanned for secrets), then check mode on a drifted host, then
tags (which heal that drift one service at a time) and check mode on the converged host, then a container its
Compose file no longer declares. After a heal, the deep checks of the healed services run again (password required,
persistence, memory limits, networks), not only "running".
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess

from conftest import HOST, assert_no_leak, changed_tasks, inspect, public_ip, run_site
from test_data_redis_seaweedfs import (  # noqa: F401  pylint: disable=unused-import
    INTERNAL_NETWORK, S3_CLIENT, SEAWEEDFS, _redis_cli, redis_password)

SERVICES = ("postgresql", "redis", "seaweedfs", "n8n", "directus", "caddy")

HAND_PASSWORD = "changed-by-hand-0123456789"
PG_CONF = "/opt/borgstack/services/postgresql/postgresql.conf"
CADDYFILE = "/opt/borgstack/services/caddy/config/Caddyfile"
N8N_COMPOSE = "/opt/borgstack/services/n8n/compose.yaml"


def _running(host, name: str) -> bool:
    out = host.run(f"docker inspect --format '{{{{.State.Running}}}}' {name}")
    return out.rc == 0 and out.stdout.strip() == "true"


def _compose(service: str) -> str:
    return f"/opt/borgstack/services/{service}/compose.yaml"


def _drift_file(service: str) -> str:
    """The file a drift test edits for a service: Caddy's site config (reload, no restart), else its Compose file."""
    return CADDYFILE if service == "caddy" else _compose(service)


def _memory_limit_mb(host, name: str) -> int:
    return inspect(host, name)["HostConfig"]["Memory"] // (1024 * 1024)


def _compose_limit_mb(host, service: str) -> int:
    found = re.search(r"^\s+mem_limit: (\d+)m$", host.file(_compose(service)).content_string, re.M)
    assert found, f"{service} has no memory limit in its Compose file"
    return int(found.group(1))


def _assert_redis_deep(host, password: str) -> None:
    refused = _redis_cli(host, "ping")
    assert "NOAUTH" in refused.stdout + refused.stderr
    assert _redis_cli(host, "ping", password=password).stdout.strip() == "PONG"
    assert _redis_cli(host, "config", "get", "appendonly", password=password).stdout.split() == ["appendonly", "yes"]
    info = inspect(host, "borgstack-redis")
    assert info["State"]["Health"]["Status"] == "healthy"
    assert set(info["NetworkSettings"]["Networks"]) == {INTERNAL_NETWORK}
    assert 0 < _memory_limit_mb(host, "borgstack-redis") == _compose_limit_mb(host, "redis")


def _s3(host, steps: list) -> dict:
    """The S3 client of the data tests, against the gateway's address of now (a restart may change it)."""
    ip = inspect(host, SEAWEEDFS)["NetworkSettings"]["Networks"][INTERNAL_NETWORK]["IPAddress"]
    result = host.run(f"python3 -c {shlex.quote(S3_CLIENT)} http://{ip}:8333 "
                      f"/opt/borgstack/services/seaweedfs/secrets.env <<'BORGSTACK_EOF'\n{json.dumps(steps)}\n"
                      "BORGSTACK_EOF")
    assert result.rc == 0, result.stderr
    return {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}


def _assert_seaweedfs_deep(host) -> None:
    info = inspect(host, SEAWEEDFS)
    assert info["State"]["Health"]["Status"] == "healthy"
    assert set(info["NetworkSettings"]["Networks"]) == {INTERNAL_NETWORK}
    assert 0 < _memory_limit_mb(host, SEAWEEDFS) == _compose_limit_mb(host, "seaweedfs")
    results = _s3(host, [
        {"name": "anon", "method": "GET", "path": "/borgstack", "auth": "none"},
        {"name": "get", "method": "GET", "path": "/", "auth": "stack"},
    ])
    assert results["anon"]["status"] == 403 and results["get"]["status"] == 200, results


def _tenant_login(host, password: str) -> bool:
    cmd = (f"docker exec -e PGPASSWORD={password} borgstack-postgresql "
           "psql -h 127.0.0.1 -U n8n -d n8n -tAc 'select 1'")
    return host.run(cmd).rc == 0


def _https_status(host) -> str:
    host.check_output("cat /opt/borgstack/services/caddy/root.crt > /tmp/borgstack-root.crt")
    ca = host.file("/tmp/borgstack-root.crt").content_string
    with open(f"/tmp/{HOST}-root.crt", "w", encoding="utf-8") as f:
        f.write(ca)
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
         "--resolve", f"n8n.lab.borgstack.test:443:{public_ip(host)}", "--cacert", f"/tmp/{HOST}-root.crt",
         "https://n8n.lab.borgstack.test/healthz/readiness"],
        capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _volume_root(host, volume: str) -> str:
    path = host.check_output(f"docker volume inspect --format '{{{{.Mountpoint}}}}' {volume}")
    return host.check_output(f"stat --format '%u:%g %a' {path}")


def test_rerun_heals_drift(host, redis_password):
    """Drift in files, containers and passwords, and drift made on running containers with docker (which Compose
    does not see): one rerun names and heals each kind, deep checks pass on the healed services, then changed=0."""
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
    # 6. every secrets.env and n8n's password file deleted (the heal writes each secret again, at -vvv --diff, and
    # must print none).
    host.check_output("rm -f /opt/borgstack/services/*/secrets.env /opt/borgstack/services/n8n/db-password")
    # 7. runtime drift: a network connected, a memory limit, a restart policy, a data volume's owner and mode.
    host.check_output("docker network connect borgstack_external borgstack-postgresql")
    host.check_output("docker update --memory 300m --memory-swap 300m borgstack-caddy")
    host.check_output("docker update --restart no borgstack-n8n")
    n8n_root = host.check_output("docker volume inspect --format '{{.Mountpoint}}' borgstack_n8n_data")
    host.check_output(f"chown 0:0 {n8n_root} && chmod 0777 {n8n_root}")
    # Positive controls: each change is in place.
    assert not _tenant_login(host, db_password)
    assert _https_status(host) != "200"
    assert set(inspect(host, "borgstack-postgresql")["NetworkSettings"]["Networks"]) == {
        "borgstack_internal", "borgstack_external"}
    assert _memory_limit_mb(host, "borgstack-caddy") == 300
    assert inspect(host, "borgstack-n8n")["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert _volume_root(host, "borgstack_n8n_data") == "0:0 777"

    heal = run_site("-vvv", "--diff")
    assert heal.rc == 0, heal.output[-5000:]
    assert_no_leak(host, heal.output, "a drift heal at -vvv --diff")
    healed = "\n".join(changed_tasks(heal.output))
    for service in ("postgresql", "caddy", "n8n"):
        assert f"Deploy or remove the service {service}" in healed, healed
    # compose_deploy names each runtime difference in its result (drift), printed at -vvv.
    flat = " ".join(heal.output.split())
    for drift in ("networks ['borgstack_external', 'borgstack_internal'] instead of ['borgstack_internal']",
                  "memory limit 314572800 bytes instead of", "restart policy no instead of unless-stopped",
                  "mode 0777 instead of"):
        assert drift in flat, f"{drift!r} not reported"

    assert _running(host, "borgstack-redis") and _running(host, "borgstack-seaweedfs")
    _assert_redis_deep(host, redis_password)
    _assert_seaweedfs_deep(host)
    assert "work_mem = '1MB'" not in host.file(PG_CONF).content_string
    assert _tenant_login(host, db_password) and not _tenant_login(host, HAND_PASSWORD)
    assert host.file(CADDYFILE).content_string == caddyfile
    assert _https_status(host) == "200"
    assert set(inspect(host, "borgstack-postgresql")["NetworkSettings"]["Networks"]) == {"borgstack_internal"}
    assert 0 < _memory_limit_mb(host, "borgstack-caddy") == _compose_limit_mb(host, "caddy")
    assert inspect(host, "borgstack-n8n")["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert _volume_root(host, "borgstack_n8n_data") == "1000:1000 700"
    assert inspect(host, "borgstack-n8n")["State"]["Health"]["Status"] == "healthy"

    again = run_site("-vvv", "--diff")
    assert again.rc == 0 and again.changed == 0, changed_tasks(again.output)
    assert_no_leak(host, again.output, "a no-op run at -vvv --diff")


def test_check_mode_reports_drift_and_leaves_it(host):
    """Every service drifted and one stopped: --check --diff names each change and leaves the host as it was."""
    for service in SERVICES:
        host.check_output(f"echo '# drift' >> {_drift_file(service)}")
    host.check_output("docker stop borgstack-seaweedfs")

    check = run_site("--check", "--diff")
    assert check.rc == 0, check.output[-4000:]
    tasks = changed_tasks(check.output)
    for service in SERVICES:
        assert any(service in t for t in tasks), f"--check did not report the drift of {service}: {tasks}"
    for service in SERVICES:
        assert host.file(_drift_file(service)).content_string.endswith("# drift\n"), f"--check changed {service}"
    assert not _running(host, "borgstack-seaweedfs"), "--check started a stopped container"


def test_tags_touch_only_their_service(host, redis_password):
    """Each drifted service healed by its own tag, one at a time; the others stay drifted until their turn."""
    caddy_started = host.check_output("docker inspect --format '{{.State.StartedAt}}' borgstack-caddy")
    for done, service in enumerate(SERVICES):
        tagged = run_site("--tags", service)
        assert tagged.rc == 0, tagged.output[-4000:]
        tasks = changed_tasks(tagged.output)
        assert tasks, f"the {service} drift was not healed"
        assert all(service in t for t in tasks), (service, tasks)
        assert not host.file(_drift_file(service)).content_string.endswith("# drift\n"), service
        for other in SERVICES[done + 1:]:
            assert host.file(_drift_file(other)).content_string.endswith("# drift\n"), \
                f"--tags {service} touched {other}'s files"
        # Every role's argument-spec check runs under any tag (Ansible tags it 'always'); nothing else of theirs may.
        pattern = r"^TASK \[borgstack\.stack\.([a-z_]+) : ([^\]]*)\]"
        ran = {role for role, task in re.findall(pattern, tagged.output, re.M)
               if not task.startswith("Validating arguments against arg spec")}
        assert not ran & (set(SERVICES) | {"docker", "firewall", "kernel"}) - {service}, (service, ran)
        if service == "seaweedfs":
            _assert_seaweedfs_deep(host)
        if service == "redis":
            _assert_redis_deep(host, redis_password)
    assert host.check_output("docker inspect --format '{{.State.StartedAt}}' borgstack-caddy") == caddy_started, \
        "a Caddyfile change must reload Caddy, not restart its container"

    # Converged again: check mode finds nothing to change (the real no-op run is proven after the heal above).
    again = run_site("--check", "--diff")
    assert again.rc == 0 and again.changed == 0, changed_tasks(again.output)
    # The final report: where to log in and how to read the first password, never the password.
    # (the yaml callback folds long lines: compare with whitespace runs made single spaces)
    assert ("n8n: https://n8n.lab.borgstack.test/signin - user admin@example.com; first password: "
            "sudo cat /opt/borgstack/services/n8n/owner-password") in " ".join(again.output.split()), \
        again.output[-3000:]
    assert host.file("/opt/borgstack/services/n8n/owner-password").content_string.strip() not in again.output


def test_containers_no_longer_declared_are_removed(host):
    """A container made from a service's Compose file that the file no longer declares (a scaled-down worker) goes.

    The extra service is added to Redis's file and started by hand with Compose, the way an older configuration
    would have left it; the rerun restores the file and compose_service removes the container it no longer declares.
    """
    compose = _compose("redis")
    original = host.file(compose).content_string
    extra = ("  redis-extra:\n    image: borgstack-lab/redis:8.0\n    container_name: borgstack-redis-extra\n"
             "    command: [sleep, infinity]\n    networks: [borgstack_internal]\n")
    patched = original.replace("\nnetworks:", f"\n{extra}\nnetworks:", 1)
    assert patched != original, "the Compose file has no top-level networks key to insert before"
    host.check_output(f"cat > {compose} <<'BORGSTACK_EOF'\n{patched}BORGSTACK_EOF")
    host.check_output(f"cd /opt/borgstack && docker compose --project-name borgstack --file {compose} "
                      "up --detach --no-deps redis-extra")
    assert _running(host, "borgstack-redis-extra"), "positive control: the extra container runs"

    heal = run_site("-v", "--tags", "redis")
    assert heal.rc == 0, heal.output[-4000:]
    assert "Deploy or remove the service redis" in "\n".join(changed_tasks(heal.output))
    assert re.search(r"removed: *- borgstack-redis-extra|'removed': \['borgstack-redis-extra'\]|"
                     r'"removed": \["borgstack-redis-extra"\]', " ".join(heal.output.split())), heal.output[-4000:]
    assert host.run("docker inspect borgstack-redis-extra").rc != 0, "the undeclared container is still there"
    assert host.file(compose).content_string == original
    assert _running(host, "borgstack-redis")
    again = run_site("--tags", "redis")
    assert again.rc == 0 and again.changed == 0, changed_tasks(again.output)
