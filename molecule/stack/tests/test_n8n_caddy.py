# SPDX-License-Identifier: GPL-3.0-or-later
"""n8n behind Caddy over HTTPS, checked from outside the lab host (testinfra).

HTTP requests run on the controller with ``curl --resolve`` to the lab host's public address, the way the internet
reaches the server, trusting only the internal CA root the caddy role copied to the host. The tests that rerun the
playbook (hand-edited Caddyfile, encryption-key guard) go through conftest.run_site (skipped without
MOLECULE_INVENTORY_FILE).

Environment: MOLECULE_INVENTORY_FILE (inventory of the converged host), BORGSTACK_PUBLIC_IP (else the host's
``lab_public_ip`` inventory variable, else 198.51.100.31), BORGSTACK_DOMAIN (else lab.borgstack.test).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import ROOT_CERT, public_ip, run_site

DOMAIN = os.environ.get("BORGSTACK_DOMAIN", "lab.borgstack.test")
N8N_HOST = f"n8n.{DOMAIN}"
CADDY = "borgstack-caddy"
N8N = "borgstack-n8n"
CADDYFILE = "/opt/borgstack/services/caddy/config/Caddyfile"
# borgstack_admin_email of the lab (its caddy_acme_email, inventories/lab).
OWNER_EMAIL = "admin@example.com"


# --- helpers --------------------------------------------------------------------------------------------------------
def _curl(host, root_cert: Path, path: str, *extra: str, port: int = 443,
          scheme: str = "https") -> Tuple[int, Dict[str, str], str]:
    """Request <scheme>://n8n.<domain><path> from the controller; returns (status, headers, body)."""
    workdir = root_cert.parent
    head, body = workdir / "headers.txt", workdir / "body.txt"
    cmd: List[str] = [
        "curl", "--silent", "--show-error", "--max-time", "20",
        "--resolve", f"{N8N_HOST}:{port}:{public_ip(host)}", "--cacert", str(root_cert),
        "--dump-header", str(head), "--output", str(body), "--write-out", "%{http_code}",
        *extra, f"{scheme}://{N8N_HOST}{path}",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, f"{' '.join(cmd)} failed: {run.stderr}"
    # Keep the last header block (after interim 1xx responses).
    block = [b for b in head.read_text().replace("\r\n", "\n").split("\n\n") if b.startswith("HTTP/")][-1]
    headers: Dict[str, str] = {}
    for line in block.split("\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(run.stdout.strip()), headers, body.read_text(errors="replace")


def _container(host, name: str) -> dict:
    return json.loads(host.check_output(f"docker container inspect {name}"))[0]


# --- containers -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [N8N, CADDY])
def test_container_running_and_healthy(host, name):
    state = _container(host, name)["State"]
    assert state["Running"] is True, state
    assert state.get("Health", {}).get("Status") == "healthy", state.get("Health")


def test_only_caddy_publishes_ports(host):
    published: Dict[str, str] = {}
    for line in host.check_output("docker ps --format '{{.Names}}\t{{.Ports}}'").splitlines():
        name, _sep, ports = line.partition("\t")
        if "->" in ports:
            published[name] = ports
    assert set(published) == {CADDY}, f"containers publishing ports: {published}"
    for port in ("80->80/tcp", "443->443/tcp", "443->443/udp"):
        assert port in published[CADDY], published[CADDY]


def test_n8n_data_volume_owned_by_node(host):
    out = host.check_output(f"docker exec {N8N} stat -c '%u:%g %a' /home/node/.n8n /home/node/.n8n/config")
    folder, config = out.splitlines()
    assert folder.split()[0] == "1000:1000", folder
    assert config == "1000:1000 600", config


def test_n8n_environment(host):
    env = dict(item.split("=", 1) for item in _container(host, N8N)["Config"]["Env"])
    assert env["DB_TYPE"] == "postgresdb"
    assert env["DB_POSTGRESDB_HOST"] == "borgstack-postgresql"
    assert env["WEBHOOK_URL"] == f"https://{N8N_HOST}/"
    assert env["N8N_PROTOCOL"] == "https"
    assert env["N8N_PROXY_HOPS"] == "1"
    assert env["N8N_DIAGNOSTICS_ENABLED"] == "false"
    assert env["N8N_RUNNERS_ENABLED"] == "true"
    assert "N8N_ENCRYPTION_KEY_FILE" not in env
    assert len(env.get("N8N_ENCRYPTION_KEY", "")) >= 16
    # The database password comes from a mounted file, never from the environment.
    assert env["DB_POSTGRESDB_PASSWORD_FILE"] == "/run/secrets/n8n-db-password"
    assert "DB_POSTGRESDB_PASSWORD" not in env


# --- Caddy configuration --------------------------------------------------------------------------------------------
def test_running_config_is_the_caddyfile(host):
    adapted = json.loads(host.check_output(
        f"docker exec {CADDY} caddy adapt --config /etc/caddy/Caddyfile --adapter caddyfile"))
    live = json.loads(host.check_output(f"docker exec {CADDY} wget -q -O - http://127.0.0.1:2019/config/"))
    assert live == adapted
    assert "rate_limit" not in host.file(CADDYFILE).content_string


def test_root_cert_on_host_is_caddys(host):
    on_host = host.file(ROOT_CERT)
    assert on_host.mode == 0o644 and on_host.user == "root"
    inside = host.check_output(f"docker exec {CADDY} cat /data/caddy/pki/authorities/local/root.crt")
    assert on_host.content_string.strip() == inside.strip()


# --- HTTPS from outside ---------------------------------------------------------------------------------------------
def test_readiness_over_https(host, root_cert):
    status, _headers, body = _curl(host, root_cert, "/healthz/readiness")
    assert status == 200, body
    assert json.loads(body) == {"status": "ok"}


def test_certificate_is_checked(host, tmp_path):
    """Without the internal CA root the certificate must be refused (TLS is really verified)."""
    run = subprocess.run(
        ["curl", "--silent", "--max-time", "20", "--resolve", f"{N8N_HOST}:443:{public_ip(host)}",
         "--cacert", "/etc/ssl/certs/ca-certificates.crt", f"https://{N8N_HOST}/healthz"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.returncode == 60, f"curl exit {run.returncode}: expected 60 (certificate not trusted)"


def test_security_headers(host, root_cert):
    _status, headers, _body = _curl(host, root_cert, "/healthz/readiness")
    hsts = headers.get("strict-transport-security", "")
    assert "max-age=31536000" in hsts and "includeSubDomains" in hsts, hsts
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("x-frame-options") == "SAMEORIGIN"
    assert headers.get("referrer-policy") == "strict-origin-when-cross-origin"
    assert "server" not in headers, headers.get("server")
    csp = {d.split()[0]: d.split()[1:] for d in headers.get("content-security-policy", "").split(";") if d.strip()}
    # Caddy's strict default policy ...
    assert csp.get("default-src") == ["'self'"], csp
    assert csp.get("object-src") == ["'none'"] and csp.get("base-uri") == ["'self'"], csp
    assert csp.get("frame-ancestors") == ["'self'"] and csp.get("form-action") == ["'self'"], csp
    # ... loosened only by what n8n's registry entry adds (site.csp, websockets: true).
    assert set(csp.get("script-src", [])) == {"'self'", "'unsafe-inline'", "'unsafe-eval'"}, csp
    assert csp.get("connect-src") == ["'self'", f"wss://{N8N_HOST}"], csp
    assert set(csp.get("worker-src", [])) == {"'self'", "blob:"}, csp


def test_request_body_limit_is_the_sites_own(host, root_cert, tmp_path):
    """n8n's site.max_body_mb (16 MiB) is enforced by Caddy. A 15 MiB body is read whole by n8n, which answers it
    for itself (an error page of its own: the body is no login); a 17 MiB body is refused by Caddy - 413 with an
    empty body (n8n's own 413 would be its HTML page), or the connection closed mid-upload."""
    def post(size_mib: int) -> Tuple[str, int, int]:
        payload = tmp_path / f"{size_mib}.bin"
        payload.write_bytes(b"0" * (size_mib * 1024 * 1024))
        answer = tmp_path / f"{size_mib}.out"
        run = subprocess.run(
            ["curl", "--silent", "--http1.1", "--max-time", "60", "--output", str(answer),
             "--write-out", "%{http_code}", "--resolve", f"{N8N_HOST}:443:{public_ip(host)}",
             "--cacert", str(root_cert), "-X", "POST", "-H", "Content-Type: application/json",
             "--data-binary", f"@{payload}", f"https://{N8N_HOST}/rest/login"],
            capture_output=True, text=True, timeout=120, check=False)
        return run.stdout.strip(), answer.stat().st_size if answer.exists() else 0, run.returncode

    status, body_size, rc = post(15)
    assert rc == 0 and status in ("400", "500") and body_size > 0, (status, body_size, rc)
    status, body_size, rc = post(17)
    refused = status == "413" and body_size == 0
    # Or Caddy closed the connection while curl was still sending (send/receive failure; at most the interim
    # "100 Continue" was received, never a final answer).
    cut = rc in (55, 56) and status in ("000", "100") and body_size == 0
    assert refused or cut, (status, body_size, rc)


def test_editor_loads_within_the_csp(host, root_cert):
    """Every script the editor page loads is same-origin (allowed by 'self')."""
    status, _headers, body = _curl(host, root_cert, "/")
    assert status == 200
    assert '<div id="app">' in body
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', body)
    assert scripts, body[:500]
    for src in scripts:
        assert src.startswith("/") and not src.startswith("//"), f"cross-origin script {src}"
    status, _headers, _body = _curl(host, root_cert, scripts[-1])
    assert status == 200


def test_caddy_compresses_with_zstd(host, root_cert):
    """n8n compresses on its own (gzip, br) but not with zstd: a zstd body comes from Caddy's encode."""
    status, headers, _body = _curl(host, root_cert, "/rest/settings", "-H", "Accept-Encoding: zstd")
    assert status == 200
    assert headers.get("content-encoding") == "zstd", headers


def test_websocket_upgrade_passes_through(host, root_cert):
    # curl keeps an upgraded connection open: read only the status line.
    run = subprocess.run(
        ["curl", "--silent", "--http1.1", "--max-time", "3", "--output", "/dev/null", "--write-out", "%{http_code}",
         "--resolve", f"{N8N_HOST}:443:{public_ip(host)}", "--cacert", str(root_cert),
         "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
         "-H", "Sec-WebSocket-Key: dGVzdGluZnJhLXdzLWtleQ==", f"https://{N8N_HOST}/rest/push?pushRef=testinfra"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert run.stdout.strip() in ("101", "401"), f"websocket handshake answered {run.stdout!r}"


def test_http_redirects_to_https(host, root_cert):
    status, headers, _body = _curl(host, root_cert, "/", port=80, scheme="http")
    assert status in (301, 308)
    assert headers.get("location") == f"https://{N8N_HOST}/"


def test_no_owner_setup_window_and_the_owner_logs_in(host, root_cert, tmp_path):
    """The play created the owner before Caddy published n8n: no setup page, and the owner's login works."""
    status, _headers, body = _curl(host, root_cert, "/rest/settings")
    assert status == 200
    data = json.loads(body)["data"]
    assert data["userManagement"]["showSetupOnFirstLoad"] is False, data["userManagement"]
    assert data["urlBaseWebhook"] == f"https://{N8N_HOST}/"
    takeover = json.dumps({"email": "attacker@example.com", "firstName": "A", "lastName": "B",
                           "password": "Attacker-Passw0rd"})
    status, _headers, body = _curl(host, root_cert, "/rest/owner/setup", "-X", "POST",
                                   "-H", "Content-Type: application/json", "--data", takeover)
    assert status == 400 and "already" in body.lower(), f"POST /rest/owner/setup: {status} {body[:300]}"

    password_file = host.file("/opt/borgstack/services/n8n/owner-password")
    assert password_file.user == "root" and password_file.mode == 0o600
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"emailOrLdapLoginId": OWNER_EMAIL,
                                 "password": password_file.content_string.strip()}))
    login.chmod(0o600)
    for password_ok, expected in ((True, 200), (False, 401)):
        if not password_ok:
            login.write_text(json.dumps({"emailOrLdapLoginId": OWNER_EMAIL, "password": "Wrong-Passw0rd-123"}))
        status, _headers, body = _curl(host, root_cert, "/rest/login", "-X", "POST",
                                       "-H", "Content-Type: application/json", "--data", f"@{login}")
        assert status == expected, f"login with the {'right' if password_ok else 'wrong'} password: {status}"
        if password_ok:
            assert json.loads(body)["data"]["email"] == OWNER_EMAIL
            assert json.loads(body)["data"]["role"] == "global:owner"


# --- reruns of the playbook ---------------------------------------------------------------------------------------
def test_hand_edited_caddyfile_restored_by_reload(host, root_cert):
    started = _container(host, CADDY)["State"]["StartedAt"]
    host.run_expect([0], f"sed -i 's/X-Frame-Options \"SAMEORIGIN\"/X-Frame-Options \"DENY\"/' {CADDYFILE}")
    host.run_expect([0], f"docker exec {CADDY} caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile")
    assert _curl(host, root_cert, "/healthz")[1].get("x-frame-options") == "DENY"

    run = run_site("--tags", "caddy")
    rc, output = run.rc, run.output
    assert rc == 0, output[-3000:]
    assert re.search(r"Write the Caddyfile[^\n]*\]\s*\**\s*\nchanged:", output), "the Caddyfile was not restored"
    assert re.search(r"Reload caddy gracefully[^\n]*\]\s*\**\s*\nchanged:", output), "no reload after restoring it"
    assert 'X-Frame-Options "SAMEORIGIN"' in host.file(CADDYFILE).content_string
    assert _curl(host, root_cert, "/healthz")[1].get("x-frame-options") == "SAMEORIGIN"
    assert _container(host, CADDY)["State"]["StartedAt"] == started, "caddy was restarted instead of reloaded"


def test_changed_encryption_key_refused_before_any_change(host):
    wrong = "testinfra-wrong-n8n-key-0123456789"
    started = _container(host, N8N)["State"]["StartedAt"]
    run = run_site("-e", json.dumps({"borgstack_secret_overrides": {"n8n_encryption_key": wrong}}), json_output=True)
    rc, output = run.rc, run.output
    assert rc != 0, f"the run did not fail\n{output[-3000:]}"
    assert any("n8n_encryption_key differs" in f.message and "borgstack_secret_overrides" in f.message
               for f in run.failures), run.failures
    assert run.changed == 0 and run.failed > 0, output[-3000:]
    assert wrong not in output, "the wanted key was printed"
    saved = json.loads(host.check_output(f"docker exec {N8N} cat /home/node/.n8n/config"))["encryptionKey"]
    assert saved not in output, "the saved key was printed"
    assert _container(host, N8N)["State"]["StartedAt"] == started
