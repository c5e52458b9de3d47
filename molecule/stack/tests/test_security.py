# SPDX-License-Identifier: GPL-3.0-or-later
"""Security gaps closed, checked on the live stack (testinfra): what another container, the internet and
`docker inspect` can see.

- SeaweedFS: from a throwaway container on the internal network, only the S3 port answers; master, volume and
  filer (HTTP and gRPC) refuse the connection, and the S3 gateway's gRPC port (it shares the S3 listener's address)
  refuses every client without a certificate of the host's private CA. Positive controls first: S3 answers, and the
  gRPC port accepts weed's own certificate.
- Caddy: no Server and no Via header in any response, HTTPS and the HTTP -> HTTPS redirect alike; requests for
  unknown host names get no HTTP answer at all.
- Secrets: no container's environment holds a derived secret, except the documented exceptions below.

Environment: BORGSTACK_PUBLIC_IP (else the host's ``lab_public_ip`` inventory variable, else 198.51.100.31),
BORGSTACK_DOMAIN (else lab.borgstack.test).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import DERIVED, PROJECT, lab_master, public_ip, secret_versions

sys.path.insert(0, str(PROJECT / "collections"))
from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret  # noqa: E402

DOMAIN = os.environ.get("BORGSTACK_DOMAIN", "lab.borgstack.test")
N8N_HOST = f"n8n.{DOMAIN}"
NETWORK = "borgstack_internal"
SEAWEEDFS = "borgstack-seaweedfs"
SEAWEEDFS_TLS = "/opt/borgstack/services/seaweedfs/tls"

# Ports of `weed server` that must not answer on the internal network: master, volume server and filer, HTTP and gRPC.
CLOSED_PORTS = {9333: "master HTTP", 19333: "master gRPC", 8080: "volume HTTP", 18080: "volume gRPC",
                8888: "filer HTTP", 18888: "filer gRPC"}
S3_PORT, S3_GRPC_PORT = 8333, 18333

# Secrets a container may still hold in its environment, and why.
ENV_EXCEPTIONS = {
    # n8n workers do not read N8N_ENCRYPTION_KEY_FILE in this release line (n8n issue #20175): main and workers
    # must get the key as a variable. docs/seguranca.md.
    "n8n_encryption_key": ("borgstack-n8n",),
}


# --- helpers --------------------------------------------------------------------------------------------------------
def _secrets() -> Dict[str, str]:
    master = lab_master()
    versions = secret_versions()
    found = {purpose: stack_secret(purpose, master, {}, length, versions=versions)
             for purpose, length in DERIVED.items()}
    found["master"] = master
    return found


def _prober(host, script: str, *mounts: str) -> str:
    """Run a bash script in a throwaway container on the internal network (SeaweedFS's image: bash, openssl, wget)."""
    image = host.check_output(f"docker inspect --format '{{{{.Config.Image}}}}' {SEAWEEDFS}")
    volumes = " ".join(f"--volume {shlex.quote(m)}" for m in mounts)
    run = host.run(f"docker run --rm --network {NETWORK} {volumes} --entrypoint bash {image} -c {shlex.quote(script)}")
    assert run.rc == 0, run.stderr
    return run.stdout


def _tcp_states(host, ports: List[int]) -> Dict[int, str]:
    script = " ".join(
        f'(exec 3<>/dev/tcp/{SEAWEEDFS}/{p}) 2>/dev/null && echo "{p} open" || echo "{p} closed";' for p in ports)
    return {int(p): state for p, state in (line.split() for line in _prober(host, script).splitlines())}


def _curl(host, root_cert: Path, url: str, port: int, *extra: str) -> Tuple[int, Dict[str, str]]:
    """(curl exit code, response headers) of one request from the controller to the host's public address."""
    head = root_cert.parent / f"headers-{port}.txt"
    head.unlink(missing_ok=True)
    cmd = ["curl", "--silent", "--max-time", "20", "--resolve", f"{N8N_HOST}:{port}:{public_ip(host)}",
           "--cacert", str(root_cert), "--dump-header", str(head), "--output", "/dev/null", *extra, url]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    headers: Dict[str, str] = {}
    if head.exists():
        for line in head.read_text().replace("\r\n", "\n").splitlines()[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
    return run.returncode, headers


# --- SeaweedFS: only S3 on the internal network, gRPC only with the host's certificate ------------------------------
def test_seaweedfs_s3_answers_on_the_internal_network(host):
    """Positive control: the prober reaches the S3 gateway (an unsigned request is refused, but answered)."""
    out = _prober(host, f"wget -q -O - http://{SEAWEEDFS}:{S3_PORT}/status && echo S3-OK")
    assert "S3-OK" in out, out


def test_seaweedfs_listens_on_loopback_except_s3(host):
    """Every listening socket in the container is on loopback, except the S3 port and the S3 gateway's gRPC port."""
    pid = host.check_output(f"docker inspect --format '{{{{.State.Pid}}}}' {SEAWEEDFS}")
    exposed = set()
    for table in ("tcp", "tcp6"):
        for line in host.file(f"/proc/{pid}/net/{table}").content_string.splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            address, port = fields[1].split(":")
            loopback = address in ("0100007F", "00000000000000000000000001000000") or address.endswith("7F")
            if not loopback:
                exposed.add(int(port, 16))
    assert exposed == {S3_PORT, S3_GRPC_PORT}, f"ports open beyond loopback: {sorted(exposed)}"


def test_seaweedfs_internal_ports_refuse_other_containers(host):
    states = _tcp_states(host, [S3_PORT, *CLOSED_PORTS])
    assert states[S3_PORT] == "open", "positive control failed: the prober cannot reach S3 at all"
    reachable = {f"{p} ({CLOSED_PORTS[p]})" for p in CLOSED_PORTS if states[p] != "closed"}
    assert not reachable, f"reachable from another container: {sorted(reachable)}"


def test_seaweedfs_s3_grpc_accepts_the_hosts_certificate(host):
    """Positive control: with weed's own certificate the TLS handshake on the S3 gRPC port completes."""
    command = (f"sleep 1 | openssl s_client -connect {SEAWEEDFS}:{S3_GRPC_PORT} -alpn h2 -CAfile /tls/ca.crt "
               "-cert /tls/weed.crt -key /tls/weed.key 2>&1 | tr -c '[:print:]\\n' '?'")
    out = _prober(host, command, f"{SEAWEEDFS_TLS}:/tls:ro")
    assert "Verify return code: 0 (ok)" in out and "ALPN protocol: h2" in out, out
    assert "alert" not in out.lower(), out


def test_seaweedfs_s3_grpc_refuses_clients_without_certificate(host):
    """Another container cannot call the S3 gateway's gRPC service (Configure replaces the S3 identities)."""
    out = _prober(host, f"sleep 1 | openssl s_client -connect {SEAWEEDFS}:{S3_GRPC_PORT} -alpn h2 "
                        "2>&1 | tr -c '[:print:]\\n' '?'")
    assert "alert certificate required" in out, out
    # Plaintext gRPC (HTTP/2 with prior knowledge): the server never answers with HTTP/2 frames.
    preface = r"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    out = _prober(host, f"exec 3<>/dev/tcp/{SEAWEEDFS}/{S3_GRPC_PORT}; printf '{preface}' >&3; "
                        "timeout 3 head -c 9 <&3 | od -An -tx1 || true")
    # A plaintext gRPC server answers with a SETTINGS frame (type 0x04 in the 4th byte); a TLS server does not.
    frame = out.split()
    assert not (len(frame) >= 4 and frame[3] == "04"), f"plaintext HTTP/2 answered: {out!r}"


# --- Caddy: no product banner ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme,port", [("https", 443), ("http", 80)])
def test_caddy_sends_no_server_or_via_header(host, root_cert, scheme, port):
    for path in ("/", "/healthz/readiness", "/no-such-page"):
        rc, headers = _curl(host, root_cert, f"{scheme}://{N8N_HOST}{path}", port)
        assert rc == 0 and headers, f"{scheme}://{N8N_HOST}{path}: curl exit {rc}"
        assert "server" not in headers, f"{scheme} {path}: Server: {headers['server']}"
        assert "via" not in headers, f"{scheme} {path}: Via: {headers['via']}"
    if scheme == "http":
        assert headers.get("location", "").startswith(f"https://{N8N_HOST}/"), headers


def test_caddy_gives_unknown_hosts_no_answer(host, root_cert):
    """A request for a host name Caddy does not serve gets no HTTP response (so no banner either)."""
    ip = public_ip(host)
    rc, headers = _curl(host, root_cert, f"http://{ip}/", 80)
    assert rc != 0 and not headers, headers
    rc, headers = _curl(host, root_cert, f"https://{N8N_HOST}/", 443, "--header", "Host: other.example")
    assert rc != 0 and not headers, headers


# --- Secrets: files, not environment ------------------------------------------------------------------------------
def test_no_secret_in_container_environment(host):
    secrets = _secrets()
    names = host.check_output("docker ps --all --format '{{.Names}}'").split()
    containers = [n for n in names if n.startswith("borgstack-")]
    assert "borgstack-postgresql" in containers and "borgstack-n8n" in containers, names
    leaks = []
    for name in containers:
        env = json.loads(host.check_output(f"docker inspect --format '{{{{json .Config.Env}}}}' {name}"))
        values = [item.split("=", 1)[1] for item in env if "=" in item]
        for purpose, secret in secrets.items():
            allowed = any(name == c or name.startswith(c + "-worker-") for c in ENV_EXCEPTIONS.get(purpose, ()))
            if not allowed and any(secret in value for value in values):
                leaks.append(f"{name}: {purpose}")
    assert not leaks, f"secrets in `docker inspect` (Config.Env): {leaks}"


def test_secret_files_belong_to_the_container_user(host):
    """The password files the containers read: owned by the container's uid, mode 0400, in a root-only directory."""
    expected = {"postgresql/superuser-password": "999", "n8n/db-password": "1000", "redis/auth.conf": "999"}
    for path, uid in expected.items():
        f = host.file(f"/opt/borgstack/services/{path}")
        assert f.exists, path
        assert str(f.uid) == uid and f.mode == 0o400, f"{path}: uid {f.uid} mode {oct(f.mode)}"
        parent = host.file(str(Path(f.path).parent))
        assert parent.user == "root" and parent.mode & 0o007 == 0, f"{parent.path}: {parent.user} {oct(parent.mode)}"
