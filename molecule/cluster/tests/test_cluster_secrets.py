# SPDX-License-Identifier: GPL-3.0-or-later
"""Secrets, Caddy's configuration and certificates on the lab cluster (issue 24), against real state.

- The secret files a service mounts are Docker secrets with versioned names (name + 12 hex digits of a SHA-256 of the
  content), mounted at the same paths with the same owner and mode; no node keeps a copy on its disk (only the
  operator's first passwords, on the first manager); the apps still log in to PostgreSQL with them.
- A rotated secret (borgstack_secret_versions) is a new version: the service is updated to it, the old version is
  removed, nothing is printed at -vvv (molecule/shared/leak_scan.py), and going back and a rerun change nothing more.
- The Caddyfile is written on each edge node's disk and bind-mounted, as on one host: a change through the inventory
  is a `caddy reload` in the running task on each edge node (the same container; requests through the edge during
  the change all answer), a rerun is changed=0.
- A second edge node gets the first edge's certificates volume before Caddy starts there: it serves the very same
  certificate (same fingerprint: Caddy did not ask its CA again) under the same root.

What did not run, and why: the lab has no public DNS, so the certificates come from Caddy's internal CA, not from
ACME - the copied ACME account and the rate limits it avoids are not exercised (the volume copied is the same, the
account lives in it). The edge label *moving* (not added) is the same copy from a node that was an edge; only the
addition is run here. Each playbook run below is a targeted one (--tags); the full rerun is molecule's idempotence.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
# pylint: disable=wrong-import-position,import-error
from playbook_runner import PROJECT, inventory, playbook_env  # noqa: E402
from leak_scan import describe, find_leaks  # noqa: E402
from test_cluster import DATA, EDGE, APP, NODES, STACK, running_tasks, sh, wait_for  # noqa: E402

sys.path.insert(0, str(PROJECT / "collections"))
from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret  # noqa: E402

SERVICES_DIR = "/opt/borgstack/services"
ROOT_CERT = f"{SERVICES_DIR}/caddy/root.crt"
# The mounted secret files of each swarm service, as the roles declare them: {swarm service: {file: target}}.
MOUNTED = {
    "postgresql": {"superuser-password": "/run/secrets/postgres-superuser-password"},
    "redis": {"auth.conf": "/run/secrets/redis-auth.conf"},
    "seaweedfs": {"s3.json": "/etc/seaweedfs/s3.json"},
    "n8n": {"db-password": "/run/secrets/n8n-db-password", "redis-password": "/run/secrets/n8n-redis-password"},
    "n8n-worker": {"db-password": "/run/secrets/n8n-db-password",
                   "redis-password": "/run/secrets/n8n-redis-password"},
    "directus": {"secret": "/run/secrets/directus-secret", "admin-password": "/run/secrets/directus-admin-password",
                 "db-password": "/run/secrets/directus-db-password",
                 "redis-password": "/run/secrets/directus-redis-password",
                 "s3-access-key": "/run/secrets/directus-s3-access-key",
                 "s3-secret-key": "/run/secrets/directus-s3-secret-key"},
}
# Kept on the first manager for the operator (the final report's `sudo cat`): n8n's first password (mounted
# nowhere) and Directus' (mounted, and kept as a record).
RECORDS = {"n8n/owner-password", "directus/admin-password"}
FIRST_MANAGER = DATA


def registry_service(swarm_service: str) -> str:
    return "n8n" if swarm_service.startswith("n8n") else swarm_service


def spec(service: str) -> dict:
    return json.loads(sh(DATA, "docker", "service", "inspect", f"{STACK}_{service}").stdout)[0]["Spec"]


def secret_refs(service: str) -> dict[str, dict]:
    """{target path: reference} of a swarm service's secrets."""
    refs = spec(service)["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
    return {ref["File"]["Name"]: ref for ref in refs}


def lab_master() -> str:
    return subprocess.run([str(PROJECT / "lab" / "lab.sh"), "secret"], capture_output=True, text=True,
                          check=True).stdout.strip()


def play(*args: str, inventory_dir: str | None = None, timeout: int = 1800) -> tuple[int, str, list[int]]:
    """site.yml on the whole cluster: rc, output, changed= of each host."""
    env = playbook_env(*args)
    proc = subprocess.run(["ansible-playbook", str(PROJECT / "site.yml"), "-i", inventory_dir or inventory(), *args],
                          cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    output = proc.stdout + proc.stderr
    changed = [int(c) for name in NODES
               for c in re.findall(rf"^{re.escape(name)}\s*: ok=\d+\s+changed=(\d+)", output, re.M)]
    return proc.returncode, output, changed


def sha256_in_task(service: str, path: str) -> str:
    """The SHA-256 of a file inside a running task of ``service`` (the content itself is never read out)."""
    def containers() -> list[tuple[str, str]]:
        found = []
        for task in running_tasks(service):
            cid = sh(task["node"], "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_"
                     f"{service}").stdout.split()
            found += [(task["node"], c) for c in cid]
        return found
    node, cid = wait_for(f"a running task of {service}", containers, timeout=300, every=3)[0]
    return sh(node, "docker", "exec", cid, "sha256sum", path).stdout.split()[0]


def test_mounted_secret_files_are_versioned_docker_secrets_and_off_the_disks():
    """Each mounted secret file is a Docker secret named <stack>_<service>_<file>_<12 hex>, at the same path with
    the file's owner and mode; no node has the file any more (the operator's records only on the first manager);
    Directus' database password in its task is the derived one (compared by hash), and the apps are connected to
    PostgreSQL with them."""
    existing = set(sh(DATA, "docker", "secret", "ls", "--format", "{{.Name}}").stdout.split())
    for service, files in MOUNTED.items():
        refs = secret_refs(service)
        name = registry_service(service)
        assert set(refs) == set(files.values()), (service, sorted(refs))
        for file, target in files.items():
            assert re.fullmatch(rf"{STACK}_{name}_{re.escape(file)}_[0-9a-f]{{12}}", refs[target]["SecretName"]), \
                refs[target]
            assert refs[target]["SecretName"] in existing
        assert not any(m.get("Source", "").startswith(f"{SERVICES_DIR}/{name}/") and m["Source"].rsplit("/", 1)[1]
                       in files for m in spec(service)["TaskTemplate"]["ContainerSpec"].get("Mounts") or []), service
    db = secret_refs("directus")["/run/secrets/directus-db-password"]["File"]
    assert (db["UID"], db["GID"], db["Mode"]) == ("1000", "1000", 0o400), db
    for node in NODES:
        for service, files in MOUNTED.items():
            for file in files:
                rel = f"{registry_service(service)}/{file}"
                present = sh(node, "test", "-e", f"{SERVICES_DIR}/{rel}", check=False).returncode == 0
                assert present == (node == FIRST_MANAGER and rel in RECORDS), (node, rel)
        owner = sh(node, "test", "-e", f"{SERVICES_DIR}/n8n/owner-password", check=False).returncode == 0
        assert owner == (node == FIRST_MANAGER), node
    expected = hashlib.sha256(stack_secret("postgresql_directus", lab_master(), {}, 40).encode()).hexdigest()
    assert sha256_in_task("directus", "/run/secrets/directus-db-password") == expected
    pg = sh(DATA, "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_postgresql")
    users = sh(DATA, "docker", "exec", pg.stdout.strip(), "psql", "-U", "postgres", "-tAc",
               "SELECT DISTINCT usename FROM pg_stat_activity WHERE usename IN ('n8n', 'directus')").stdout.split()
    assert sorted(users) == ["directus", "n8n"], users


def _directus_secrets(versions: dict[str, int]) -> dict[str, str]:
    master = lab_master()
    found = {"master": master}
    for purpose, length in (("directus_secret", 48), ("postgresql_directus", 40), ("redis_password", 40),
                            ("seaweedfs_s3_access_key", 20), ("seaweedfs_s3_secret_key", 40),
                            ("directus_admin_password", 40)):
        found[purpose] = stack_secret(purpose, master, {}, length, versions=versions)
    found["directus_secret v1"] = stack_secret("directus_secret", master, {}, 48)
    return found


@pytest.mark.slow
def test_a_rotated_secret_is_a_new_version_the_service_follows_and_the_old_one_goes():
    """`--tags directus` with borgstack_secret_versions {directus_secret: 2} at -vvv: a new Docker secret, Directus
    updated to it (its file holds the new value, compared by hash), the old version removed, no secret in the output
    in any encoding. Back to version 1 (the record of applied versions is written only by the health play, skipped
    here): the first name again, version 2 removed. Then a rerun changes nothing."""
    target = "/run/secrets/directus-secret"
    first = secret_refs("directus")[target]["SecretName"]
    rotated = {"directus_secret": 2}
    rc, output, changed = play("--tags", "directus", "-vvv", "-e", json.dumps({"borgstack_secret_versions": rotated}))
    assert rc == 0, output[-4000:]
    leaks = find_leaks(output, _directus_secrets(rotated))
    assert not leaks, f"secrets printed by the rotation: {describe(leaks)}"
    second = secret_refs("directus")[target]["SecretName"]
    assert second != first and second.startswith(f"{STACK}_directus_secret_"), (first, second)
    names = set(sh(DATA, "docker", "secret", "ls", "--format", "{{.Name}}").stdout.split())
    assert first not in names and second in names
    value = stack_secret("directus_secret", lab_master(), {}, 48, versions=rotated)
    assert wait_for("Directus running the rotated secret",
                    lambda: sha256_in_task("directus", target) == hashlib.sha256(value.encode()).hexdigest(),
                    timeout=300, every=5)

    rc, output, changed = play("--tags", "directus", "-vvv")
    assert rc == 0, output[-4000:]
    assert not find_leaks(output, _directus_secrets(rotated)), "secrets printed going back"
    assert secret_refs("directus")[target]["SecretName"] == first
    assert second not in set(sh(DATA, "docker", "secret", "ls", "--format", "{{.Name}}").stdout.split())

    rc, output, changed = play("--tags", "directus")
    assert rc == 0 and changed == [0] * len(NODES), (changed, output[-4000:])


def caddy_mounts() -> tuple[list, list]:
    """(the Docker configs, the bind mounts) of Caddy's swarm service."""
    container = spec("caddy")["TaskTemplate"]["ContainerSpec"]
    binds = [(m["Source"], m["Target"], m.get("ReadOnly", False)) for m in container.get("Mounts") or []
             if m.get("Type") == "bind"]
    return container.get("Configs") or [], binds


def caddy_task(node: str) -> str:
    """The ID of the Caddy task's container on ``node`` ("" when none runs)."""
    return sh(node, "docker", "ps", "-q", "--no-trunc", "--filter",
              f"label=com.docker.swarm.service.name={STACK}_caddy").stdout.strip()


def https_code(node: str, name: str, address: str, path: str) -> str:
    """The HTTP status of https://name/path at ``address``, from ``node``, the chain checked against the root the
    play copied there ("000" when the connection or the verification fails)."""
    return sh(node, "curl", "--cacert", ROOT_CERT, "--silent", "--max-time", "10", "--output", "/dev/null",
              "--write-out", "%{http_code}", "--resolve", f"{name}:443:{address}", f"https://{name}{path}",
              check=False).stdout.strip()


def test_the_root_is_on_every_host_and_verifies_the_edge():
    """The internal CA's root, read from Caddy's task on the edge node, is on every host (the same file) and is the
    root Caddy runs; the edge's certificate verifies against it from every node."""
    cid = sh(EDGE, "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_caddy").stdout
    live = sh(EDGE, "docker", "exec", cid.strip(), "cat", "/data/caddy/pki/authorities/local/root.crt").stdout
    for node in NODES:
        assert sh(node, "cat", ROOT_CERT).stdout.strip() == live.strip(), node
        assert https_code(node, "n8n.lab.borgstack.test", NODES[EDGE], "/healthz") == "200", node


@pytest.mark.slow
def test_a_changed_caddyfile_is_reloaded_in_place_on_the_edge_and_loses_no_request():
    """The Caddyfile changed through the inventory (`--tags caddy` with another caddy_hsts, a header of every site):
    each edge node's Caddyfile is on its disk (root-owned, as on one host) and bind-mounted (no Docker config), and
    Caddy reloads it in place - the task's container is the same before and after, the new header is served - while
    requests sent through the edge during the whole run all answer (counted; 0 lost). The same run again changes
    nothing; going back reloads again (same container). A stop-and-start of the task (the Docker config it replaced)
    would lose the requests sent while no Caddy listens.
    What did not run: a site renamed (Directus' name, as before this change) - the request loop targets n8n, which
    every variant of the scenario runs; the header proves the new Caddyfile is the one Caddy serves."""
    configs, binds = caddy_mounts()
    assert not configs, configs
    assert (f"{SERVICES_DIR}/caddy/config", "/etc/caddy", True) in binds, binds
    for node in NODES:
        assert sh(node, "stat", "-c", "%U %a", f"{SERVICES_DIR}/caddy/config/Caddyfile").stdout.split() == \
            ["root", "644"], node
        assert sh(node, "stat", "-c", "%U %a", f"{SERVICES_DIR}/caddy/config").stdout.split() == ["root", "750"]
    before = caddy_task(EDGE)
    assert before, "no Caddy task on the edge"
    name = "n8n.lab.borgstack.test"
    hsts = "max-age=600"
    codes = "/tmp/borgstack-reload-codes"
    sh(DATA, "rm", "-f", codes, f"{codes}.stop")
    # Requests through the edge, one after the other, for as long as the play runs (each one on its own connection).
    subprocess.run(["docker", "exec", "-d", DATA, "sh", "-c",
                    f"while [ ! -e {codes}.stop ]; do curl --cacert {ROOT_CERT} --silent --max-time 10 --output "
                    f"/dev/null --write-out '%{{http_code}}\\n' --resolve {name}:443:{NODES[EDGE]} "
                    f"https://{name}/healthz >> {codes}; sleep 0.2; done"], check=True)
    try:
        rc, output, changed = play("--tags", "caddy", "-e", json.dumps({"caddy_hsts": hsts}))
        assert rc == 0, output[-4000:]
        reloaded = output.split("Reload caddy gracefully with the Caddyfile", 1)[-1].split("TASK [")[0]
        assert f"changed: [{EDGE}]" in reloaded, output[-4000:]

        def served() -> bool:
            head = sh(DATA, "curl", "--cacert", ROOT_CERT, "--silent", "--head", "--max-time", "10", "--resolve",
                      f"{name}:443:{NODES[EDGE]}", f"https://{name}/healthz", check=False).stdout
            return f"strict-transport-security: {hsts}" in head.lower()
        wait_for("the new header served", served, timeout=30, every=1)
        time.sleep(2)  # a few more requests after the reload
    finally:
        sh(DATA, "touch", f"{codes}.stop")
        time.sleep(1)
    seen = sh(DATA, "cat", codes).stdout.split()
    lost = [code for code in seen if code != "200"]
    print(f"requests through the edge during the reload: {len(seen)}, lost {len(lost)}")
    assert len(seen) >= 10 and not lost, (len(seen), lost[:20])
    assert caddy_task(EDGE) == before, "Caddy's task was replaced, not reloaded"
    assert not caddy_mounts()[0]

    rc, output, changed = play("--tags", "caddy", "-e", json.dumps({"caddy_hsts": hsts}))
    assert rc == 0 and changed == [0] * len(NODES), (changed, output[-4000:])

    rc, output, changed = play("--tags", "caddy")
    assert rc == 0, output[-4000:]
    assert caddy_task(EDGE) == before
    assert wait_for("n8n answering through Caddy", lambda: https_code(DATA, name, NODES[EDGE], "/healthz") == "200",
                    timeout=60, every=2)


def _fingerprint(node: str, name: str, address: str) -> str:
    out = sh(node, "sh", "-c", f"echo | openssl s_client -connect {address}:443 -servername {name} 2>/dev/null "
                               "| openssl x509 -noout -fingerprint -sha256", check=False).stdout.strip()
    return out.split("=", 1)[1] if "=" in out else ""


@pytest.mark.slow
def test_a_new_edge_node_serves_the_edges_certificates_without_asking_the_ca(tmp_path):
    """A second edge node (APP gets borgstack_node_edge in a copy of the inventory; `--tags swarm,caddy`): before
    Caddy runs there, its certificates volume receives the first edge's; it then serves the very same certificate
    (same SHA-256 fingerprint) that the first edge serves, under the same root; no archive is left anywhere. Back
    to one edge: the label and Caddy leave APP; a rerun changes nothing."""
    name = "n8n.lab.borgstack.test"
    served = _fingerprint(APP, name, NODES[EDGE])
    assert served, "the edge serves no certificate"
    copy = tmp_path / "inventory"
    subprocess.run(["cp", "-r", inventory(), str(copy)], check=True)
    marked = False
    for path in (p for p in copy.iterdir() if p.is_file()):
        data = yaml.safe_load(path.read_text()) or {}
        for root in (data, (data.get("all") or {}).get("children") or {}):
            group = root.get("borgstack") if isinstance(root, dict) else None
            if isinstance(group, dict) and APP in (group.get("hosts") or {}):
                group["hosts"][APP]["borgstack_node_edge"] = True
                path.write_text(yaml.safe_dump(data, sort_keys=False))
                marked = True
    assert marked, f"{APP} not found in the borgstack group of {inventory()}"
    rc, output, changed = play("--tags", "swarm,caddy", inventory_dir=str(copy))
    assert rc == 0, output[-4000:]
    unpacked = output.split("Unpack the edge's certificates into the new edge nodes' volume", 1)[-1].split("TASK [")[0]
    assert f"changed: [{APP}]" in unpacked, output[-4000:]
    labels = json.loads(sh(DATA, "docker", "node", "inspect", APP, "--format", "{{json .Spec.Labels}}").stdout)
    assert labels.get("borgstack.edge") == "true" and labels.get("borgstack.edge.ready") == "true", labels
    wait_for(f"Caddy answering on {APP}", lambda: https_code(DATA, name, NODES[APP], "/healthz") == "200",
             timeout=180, every=3)
    assert _fingerprint(DATA, name, NODES[APP]) == served
    for node in NODES:
        assert sh(node, "test", "-e", "/root/.borgstack-caddy-edge-seed.tar.gz", check=False).returncode != 0, node

    rc, output, changed = play("--tags", "swarm,caddy")
    assert rc == 0, output[-4000:]
    labels = json.loads(sh(DATA, "docker", "node", "inspect", APP, "--format", "{{json .Spec.Labels}}").stdout)
    assert labels.get("borgstack.edge") == "false" and "borgstack.edge.ready" not in labels, labels
    wait_for(f"Caddy gone from {APP}", lambda: https_code(DATA, name, NODES[APP], "/healthz") == "000",
             timeout=120, every=3)
    rc, output, changed = play("--tags", "swarm,caddy")
    assert rc == 0 and changed == [0] * len(NODES), (changed, output[-4000:])
