"""Secrets never leak: not in Ansible's output even at -vvv, not in files anyone but root can read."""
from __future__ import annotations

import subprocess
import sys

from conftest import PROJECT, run_site

sys.path.insert(0, str(PROJECT / "collections"))
from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret  # noqa: E402

PURPOSES = ["postgresql_superuser", "postgresql_n8n", "redis_password", "n8n_encryption_key",
            "seaweedfs_s3_secret_key"]


def _secrets() -> dict[str, str]:
    master = subprocess.run([str(PROJECT / "lab" / "lab.sh"), "secret"], capture_output=True, text=True,
                            check=True).stdout.strip()
    found = {p: stack_secret(p, master, {}) for p in PURPOSES}
    found["master"] = master
    return found


def test_no_secret_in_verbose_output():
    run = run_site("-vvv")
    assert run.rc == 0, run.output[-3000:]
    leaks = [name for name, value in _secrets().items() if value in run.output]
    assert not leaks, f"secrets printed at -vvv: {leaks}"


def test_no_secret_in_files_others_can_read(host):
    secrets = _secrets()
    readable = host.check_output(
        "find /opt/borgstack /etc/docker /etc/sysctl.d /etc/ufw -xdev -type f -perm -o=r 2>/dev/null || true"
    ).split()
    assert readable, "expected some world-readable config files to inspect"
    for path in readable:
        content = host.file(path).content_string if host.file(path).size < 1_000_000 else ""
        leaks = [name for name, value in secrets.items() if value in content]
        assert not leaks, f"{path} is world-readable and holds {leaks}"


def test_secret_env_files_are_root_only(host):
    files = host.check_output("find /opt/borgstack/services -name secrets.env").split()
    assert files
    for path in files:
        f = host.file(path)
        assert f.user == "root" and f.mode == 0o600, f"{path}: {f.user} {oct(f.mode)}"
