# SPDX-License-Identifier: GPL-3.0-or-later
"""Secrets never leak: not in Ansible's output at -vvv --diff (on the paths that write them, not only on a no-op
run), in any encoding; not in files anyone but root can read, on the host or in the Docker volumes.

The secrets looked for are every value of every secrets.env on the host (whatever services are deployed), every
secret the wiring derives from the master secret, the master secret itself and Caddy's internal CA keys. The scan
(molecule/shared/leak_scan.py) looks for each raw, JSON-escaped, URL-encoded and base64/base64url-encoded at any
offset. A positive control proves the scan finds a secret in real Ansible output before it is trusted to find none.

The drift heal and the no-op run after it are scanned at -vvv --diff in test_drift.py (one heal run serves both);
here, in file order: a first deployment from scratch (services, volumes and files wiped), then the checks of what
that deployment left on disk.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess

import yaml

from conftest import DERIVED, HOST, PROJECT, assert_no_leak, host_secrets, run_site

# pylint: disable=wrong-import-position,import-error
from ansible_collections.borgstack.stack.plugins.filter.contract import secret_policies  # noqa: E402
from leak_scan import describe, find_leaks  # noqa: E402
from playbook_runner import inventory  # noqa: E402

PROJECT_DIR = "/opt/borgstack"


def test_scan_finds_a_secret_in_real_output(host):
    """Positive control: Redis's auth.conf (holding its password) slurped at -vvv without no_log is caught."""
    proc = subprocess.run(
        ["ansible", HOST, "-i", inventory(), "-vvv", "-m", "ansible.builtin.slurp",
         "-a", "src=/opt/borgstack/services/redis/auth.conf"],
        cwd=PROJECT, capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / "collections")})
    assert proc.returncode == 0, proc.stdout[-2000:]
    leaks = find_leaks(proc.stdout + proc.stderr, host_secrets(host))
    assert ("redis_password", "base64") in leaks, describe(leaks)


def test_first_deployment_prints_no_secret(host):
    """Every service, volume and file of the stack removed, then deployed again from nothing at -vvv --diff.

    That deployment also uses a non-default internal network name: it must converge and pass the final health
    play end to end (the roles read the network from the wiring, none assumes borgstack_internal). A last run
    with the default name moves every service back and must pass health too.
    """
    other = {"stack_internal_network": "borgstack_int2"}
    host.check_output("docker ps -aq --filter label=com.docker.compose.project=borgstack | xargs -r docker rm -f")
    host.check_output("docker volume ls -q | grep '^borgstack_' | xargs -r docker volume rm")
    host.check_output(f"rm -rf {PROJECT_DIR}")
    first = run_site("-vvv", "--diff", "-e", json.dumps(other))
    assert first.rc == 0 and first.changed > 0, first.output[-4000:]
    assert_no_leak(host, first.output, "a first deployment at -vvv --diff")
    # rc 0 includes the final health play (stack_health fails the run when a service is not healthy).
    assert "TASK [Check every enabled service" in first.output
    networks = host.check_output("docker inspect --format '{{json .NetworkSettings.Networks}}' borgstack-postgresql")
    assert set(json.loads(networks)) == {"borgstack_int2"}, networks
    back = run_site()
    assert back.rc == 0 and back.changed > 0, back.output[-4000:]
    networks = host.check_output("docker inspect --format '{{json .NetworkSettings.Networks}}' borgstack-postgresql")
    assert set(json.loads(networks)) == {"borgstack_internal"}, networks


# Reads every file a find command prints, in one round trip: {path: text} (binary bytes replaced).
_READ_ALL = (
    "import json, sys\n"
    "out = {}\n"
    "for path in sys.stdin.read().split('\\0'):\n"
    "    try:\n"
    "        with open(path, 'rb') as handle:\n"
    "            out[path] = handle.read().decode('utf-8', 'replace')\n"
    "    except OSError:\n"
    "        pass  # gone since find listed it, or the empty tail\n"
    "print(json.dumps(out))\n"
)


def _files(host, find: str) -> dict[str, str]:
    """{path: content} of the regular files under 1 MiB that ``find`` (arguments of find, -print0 added) lists."""
    listing = host.check_output(f"{find} -type f -size -1024k -print0 2>/dev/null | python3 -c {shlex.quote(_READ_ALL)}")
    return json.loads(listing)


def test_no_secret_in_files_others_can_read(host):
    """World-readable files of the deployment tree, the host's config and the Docker volumes hold no secret."""
    secrets = host_secrets(host)
    readable = _files(host, f"find {PROJECT_DIR} /etc/docker /etc/sysctl.d /etc/ufw /var/lib/docker/volumes -xdev "
                            "-perm -o=r")
    assert any(p.startswith(PROJECT_DIR) for p in readable), "expected world-readable config files to inspect"
    assert any(p.startswith("/var/lib/docker/volumes/") for p in readable), "expected volume files to inspect"
    found = {path: describe(leaks) for path, text in readable.items() if (leaks := find_leaks(text, secrets))}
    assert not found, f"world-readable files holding secrets: {json.dumps(found, indent=1)}"


def test_nothing_secret_is_readable_by_an_unprivileged_user(host):
    """What the 'nobody' user can really open (permissions of every directory on the path included)."""
    assert host.run("runuser -u nobody -- cat /etc/hostname").rc == 0, "positive control: nobody can read a file"
    assert host.run(f"runuser -u nobody -- cat {PROJECT_DIR}/services/n8n/secrets.env").rc != 0
    readable = _files(host, f"runuser -u nobody -- find {PROJECT_DIR} /etc /var/lib/docker -xdev -readable")
    assert "/etc/hostname" in readable, "positive control: the listing sees what nobody can read"
    secrets = host_secrets(host)
    found = {path: describe(leaks) for path, text in readable.items() if (leaks := find_leaks(text, secrets))}
    assert not found, found


def test_secret_env_files_are_root_only(host):
    files = host.check_output(f"find {PROJECT_DIR}/services -name secrets.env").split()
    assert files
    for path in files:
        f = host.file(path)
        assert f.user == "root" and f.mode == 0o600, f"{path}: {f.user} {oct(f.mode)}"


def test_every_derived_secret_is_looked_for():
    """Every secret the stack derives - what the registry declares and the logins it derives per service, the
    validation play's own list (secret_policies) - is looked for, at its length (a secret missing from the scan
    would make every no-leak assertion silently weaker)."""
    registry = yaml.safe_load((PROJECT / "playbooks" / "group_vars" / "all" / "services.yml").read_text(
        encoding="utf-8"))["borgstack_service_defaults"]
    assert set(DERIVED) == set(secret_policies(registry)), DERIVED
    assert {"postgresql_superuser", "redis_password", "n8n_encryption_key", "postgresql_n8n"} <= set(DERIVED)
    assert DERIVED["seaweedfs_s3_access_key"] == 20 and DERIVED["chatwoot_secret_key_base"] == 128
