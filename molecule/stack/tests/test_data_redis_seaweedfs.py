# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify Redis and SeaweedFS on a lab host against real state (testinfra, ``host`` = the lab host).

Secrets are read on the lab host from the root-only files the roles write (services/<svc>/secrets.env) and never
leave it: the S3 client below runs on the lab host and reads the keys there itself. The containers sit on the
internal Docker network, which the lab host reaches at their addresses (nothing is published).
"""
from __future__ import annotations

import json
import re
import shlex
from typing import Any, Dict, List, Set

import pytest
from conftest import env_file, inspect

PROJECT_DIR = "/opt/borgstack"
REDIS = "borgstack-redis"
SEAWEEDFS = "borgstack-seaweedfs"
INTERNAL_NETWORK = "borgstack_internal"
REDIS_UID = 999
SHARED_BUCKET = "borgstack"
# Ports of master, volume server and filer (HTTP and gRPC): no authentication, so never on the network.
SEAWEEDFS_PRIVATE_PORTS = (9333, 19333, 8080, 18080, 8888, 18888)
# What SeaweedFS may listen on beyond the container's loopback: S3 (HTTP) and its gRPC port.
SEAWEEDFS_PUBLIC_PORTS = {8333, 18333}
REDIS_POLICIES = {"noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
                  "volatile-random", "volatile-ttl"}

# A small S3 client run on the lab host with its own python3 (stdlib only, AWS Signature V4, path-style requests).
# It reads the stack identity's keys from the root-only secrets.env itself and takes a JSON list of steps on stdin:
# {"name", "method", "path", "body"?, "auth": "stack" | "none" | "wrong-secret" | "unknown-key"}; it prints one JSON
# object per step with the HTTP status, the S3 error code (if any) and the start of the body.
S3_CLIENT = r'''
import datetime, hashlib, hmac, json, re, sys, urllib.error, urllib.parse, urllib.request

env = {}
for line in open(sys.argv[2]):
    m = re.match(r'^([A-Z0-9_]+)=(.*)$', line.strip())
    if m:
        env[m.group(1)] = json.loads(m.group(2))
endpoint = sys.argv[1]
keys = {
    "stack": (env["S3_ACCESS_KEY"], env["S3_SECRET_KEY"]),
    "wrong-secret": (env["S3_ACCESS_KEY"], "x" * 40),
    "unknown-key": ("BORGSTACKUNKNOWNKEY0", env["S3_SECRET_KEY"]),
    "none": None,
}


def call(method, path, body, creds):
    body = body.encode()
    host = urllib.parse.urlsplit(endpoint).netloc
    headers = {"host": host, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    if creds:
        access, secret = creds
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers["x-amz-date"] = stamp
        names = sorted(headers)
        canonical = "\n".join([method, urllib.parse.quote(path), "",
                               "".join(k + ":" + headers[k] + "\n" for k in names),
                               ";".join(names), headers["x-amz-content-sha256"]])
        scope = day + "/us-east-1/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + secret).encode()
        for part in (day, "us-east-1", "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = ("AWS4-HMAC-SHA256 Credential=" + access + "/" + scope + ", SignedHeaders="
                                    + ";".join(names) + ", Signature=" + sig)
    req = urllib.request.Request(endpoint + path, data=body if method == "PUT" else None, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


for step in json.load(sys.stdin):
    status, text = call(step["method"], step["path"], step.get("body", ""), keys[step["auth"]])
    code = re.search(r"<Code>([^<]+)</Code>", text)
    print(json.dumps({"name": step["name"], "status": status, "code": code.group(1) if code else None,
                      "body": text[:2000]}))
'''


def _redis_cli(host, *args: str, password: str | None = None):
    """redis-cli in the container; the password goes through the environment of `docker exec`, never argv."""
    auth = "-e REDISCLI_AUTH " if password is not None else ""
    cmd = f"docker exec {auth}{REDIS} redis-cli --no-auth-warning " + " ".join(shlex.quote(a) for a in args)
    if password is not None:
        return host.run(f"REDISCLI_AUTH={shlex.quote(password)} {cmd}")
    return host.run(cmd)


def _listening_ports(host, container: str) -> Dict[str, Set[int]]:
    """TCP ports in LISTEN state inside a container's network namespace, split into loopback and others."""
    text = host.check_output(f"docker exec {container} cat /proc/net/tcp /proc/net/tcp6")
    ports: Dict[str, Set[int]] = {"loopback": set(), "network": set()}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A" or ":" not in fields[1]:
            continue
        address, port = fields[1].rsplit(":", 1)
        loopback = address in ("0100007F", "00000000000000000000000001000000") or address.endswith("0100007F")
        if address.startswith("0B00007F"):  # 127.0.0.11: Docker's embedded DNS
            continue
        ports["loopback" if loopback else "network"].add(int(port, 16))
    return ports


def _tcp_open(host, ip: str, port: int) -> bool:
    script = (f"import socket; s = socket.socket(); s.settimeout(3); "
              f"print(s.connect_ex(({ip!r}, {port})))")
    return host.check_output(f"python3 -c {shlex.quote(script)}").strip() == "0"


def _internal_ip(info: Dict[str, Any]) -> str:
    return info["NetworkSettings"]["Networks"][INTERNAL_NETWORK]["IPAddress"]


# --- Redis ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_password(host) -> str:
    env = env_file(host, f"{PROJECT_DIR}/services/redis/secrets.env")
    assert len(env["REDIS_PASSWORD"]) >= 12
    return env["REDIS_PASSWORD"]


@pytest.fixture(scope="module")
def redis_conf(host) -> Dict[str, str]:
    conf = {}
    for line in host.file(f"{PROJECT_DIR}/services/redis/redis.conf").content_string.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _sep, value = line.strip().partition(" ")
            conf[key.lower()] = value.strip()
    return conf


def test_redis_healthy_on_internal_network_only(host):
    info = inspect(host, REDIS)
    assert info["State"]["Health"]["Status"] == "healthy"
    assert set(info["NetworkSettings"]["Networks"]) == {INTERNAL_NETWORK}
    assert not info["HostConfig"]["PortBindings"]
    assert not any(info["NetworkSettings"]["Ports"].get(p) for p in info["NetworkSettings"]["Ports"] or {})
    network = json.loads(host.check_output(f"docker network inspect {INTERNAL_NETWORK}"))[0]
    assert network["Internal"] is True


def test_redis_runs_as_redis_user(host):
    # The entrypoint execs redis-server, so it is PID 1 of the container.
    status = host.check_output(f"docker exec {REDIS} cat /proc/1/status")
    assert re.search(r"^Name:\s+redis-server", status, re.M), status
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
    assert uids and uids.groups() == (str(REDIS_UID), str(REDIS_UID)), status


def test_redis_refuses_clients_without_the_password(host):
    result = _redis_cli(host, "ping")
    assert "NOAUTH" in result.stdout + result.stderr
    result = _redis_cli(host, "ping", password="not-the-password-at-all")
    assert re.search(r"WRONGPASS|invalid password", result.stdout + result.stderr), result.stdout
    assert "PONG" not in result.stdout


def test_redis_answers_with_the_password(host, redis_password):
    assert _redis_cli(host, "ping", password=redis_password).stdout.strip() == "PONG"
    assert _redis_cli(host, "set", "borgstack:verify", "ok", password=redis_password).stdout.strip() == "OK"
    assert _redis_cli(host, "get", "borgstack:verify", password=redis_password).stdout.strip() == "ok"


def test_redis_password_kept_out_of_readable_places(host, redis_password):
    auth = host.file(f"{PROJECT_DIR}/services/redis/auth.conf")
    assert auth.uid == REDIS_UID and auth.mode == 0o400
    secrets = host.file(f"{PROJECT_DIR}/services/redis/secrets.env")
    assert secrets.user == "root" and secrets.mode == 0o600
    assert redis_password not in host.file(f"{PROJECT_DIR}/services/redis/redis.conf").content_string
    assert redis_password not in host.file(f"{PROJECT_DIR}/services/redis/compose.yaml").content_string
    assert redis_password not in host.check_output(f"docker inspect {REDIS}")


def test_redis_memory_cap(host, redis_password, redis_conf):
    live = _redis_cli(host, "config", "get", "maxmemory", password=redis_password).stdout.split()
    maxmemory = int(live[1])
    assert redis_conf["maxmemory"].endswith("mb")
    assert maxmemory == int(redis_conf["maxmemory"][:-2]) * 1024 * 1024 > 0
    limit = inspect(host, REDIS)["HostConfig"]["Memory"]
    if limit:
        assert maxmemory < limit, "maxmemory must stay below the container's memory limit"
    policy = _redis_cli(host, "config", "get", "maxmemory-policy", password=redis_password).stdout.split()[1]
    assert policy == redis_conf["maxmemory-policy"] and policy in REDIS_POLICIES


def test_redis_append_only_file(host, redis_password):
    info = _redis_cli(host, "info", "persistence", password=redis_password).stdout
    assert re.search(r"^aof_enabled:1\s*$", info, re.M), info
    fsync = _redis_cli(host, "config", "get", "appendfsync", password=redis_password).stdout.split()
    assert fsync[1] == "everysec"
    files = host.check_output(f"docker exec {REDIS} ls /data/appendonlydir")
    assert re.search(r"\.incr\.aof", files), files


def test_redis_somaxconn_inside_container(host, redis_conf):
    somaxconn = int(host.check_output(f"docker exec {REDIS} cat /proc/sys/net/core/somaxconn"))
    sysctls = inspect(host, REDIS)["HostConfig"]["Sysctls"] or {}
    assert int(sysctls["net.core.somaxconn"]) == somaxconn
    assert somaxconn >= int(redis_conf["tcp-backlog"])


def test_redis_keeps_data_across_restart(host, redis_password):
    assert _redis_cli(host, "set", "borgstack:persist", "kept", password=redis_password).stdout.strip() == "OK"
    host.check_output(f"docker restart {REDIS}")
    waited = host.run(
        f"for i in $(seq 1 60); do [ \"$(docker inspect -f '{{{{.State.Health.Status}}}}' {REDIS})\" = healthy ] "
        f"&& exit 0; sleep 1; done; exit 1")
    assert waited.rc == 0, "Redis did not come back healthy within 60 s"
    assert _redis_cli(host, "get", "borgstack:persist", password=redis_password).stdout.strip() == "kept"


# --- SeaweedFS ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3(host):
    """Run S3 steps on the lab host against the S3 gateway's internal address; returns {step name: result}."""
    endpoint = f"http://{_internal_ip(inspect(host, SEAWEEDFS))}:8333"
    secrets = f"{PROJECT_DIR}/services/seaweedfs/secrets.env"

    def run(steps: List[Dict[str, str]]) -> Dict[str, Dict[str, Any]]:
        cmd = (f"python3 -c {shlex.quote(S3_CLIENT)} {shlex.quote(endpoint)} {shlex.quote(secrets)} "
               f"<<'BORGSTACK_EOF'\n{json.dumps(steps)}\nBORGSTACK_EOF")
        result = host.run(cmd)
        assert result.rc == 0, result.stderr
        return {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}

    return run


def test_seaweedfs_healthy_on_internal_network_only(host):
    info = inspect(host, SEAWEEDFS)
    assert info["State"]["Health"]["Status"] == "healthy"
    assert set(info["NetworkSettings"]["Networks"]) == {INTERNAL_NETWORK}
    assert not info["HostConfig"]["PortBindings"]


def test_seaweedfs_keys_kept_out_of_readable_places(host):
    env = env_file(host, f"{PROJECT_DIR}/services/seaweedfs/secrets.env")
    assert len(env["S3_ACCESS_KEY"]) >= 16 and len(env["S3_SECRET_KEY"]) >= 32
    config = host.file(f"{PROJECT_DIR}/services/seaweedfs/s3.json")
    assert config.user == "root" and config.mode == 0o600
    identities = json.loads(config.content_string)["identities"]
    assert [i["credentials"][0]["accessKey"] for i in identities] == [env["S3_ACCESS_KEY"]]
    assert all(i["name"] != "anonymous" for i in identities)
    inspected = host.check_output(f"docker inspect {SEAWEEDFS}")
    assert env["S3_SECRET_KEY"] not in inspected and env["S3_ACCESS_KEY"] not in inspected


def test_seaweedfs_only_s3_listens_on_the_network(host):
    ports = _listening_ports(host, SEAWEEDFS)
    assert 8333 in ports["network"]
    assert ports["network"] <= SEAWEEDFS_PUBLIC_PORTS, f"unexpected listeners: {ports['network']}"
    assert {9333, 8080, 8888} <= ports["loopback"]
    ip = _internal_ip(inspect(host, SEAWEEDFS))
    assert _tcp_open(host, ip, 8333)
    for port in SEAWEEDFS_PRIVATE_PORTS:
        assert not _tcp_open(host, ip, port), f"port {port} answers on the internal network"


def test_seaweedfs_identity_writes_and_reads(s3):
    body = "borgstack verify object"
    results = s3([
        {"name": "put", "method": "PUT", "path": f"/{SHARED_BUCKET}/verify/object.txt", "body": body,
         "auth": "stack"},
        {"name": "get", "method": "GET", "path": f"/{SHARED_BUCKET}/verify/object.txt", "auth": "stack"},
        {"name": "list", "method": "GET", "path": "/", "auth": "stack"},
    ])
    assert results["put"]["status"] == 200, results["put"]
    assert results["get"]["status"] == 200 and results["get"]["body"] == body
    assert results["list"]["status"] == 200
    assert f"<Name>{SHARED_BUCKET}</Name>" in results["list"]["body"]


def test_seaweedfs_buckets_match_weed_shell(host, s3):
    shell = host.run(f"echo s3.bucket.list | docker exec -i {SEAWEEDFS} /usr/bin/weed shell "
                     f"-master=127.0.0.1:9333 -filer=127.0.0.1:8888")
    assert shell.rc == 0, shell.stderr
    listed = set(re.findall(r"^\s+(\S+)\s+size:", shell.stdout, re.M))
    names = set(re.findall(r"<Name>([^<]+)</Name>", s3([{"name": "list", "method": "GET", "path": "/",
                                                         "auth": "stack"}])["list"]["body"]))
    assert SHARED_BUCKET in listed
    assert listed == names


@pytest.mark.parametrize("step", [
    {"name": "anonymous GET", "method": "GET", "path": f"/{SHARED_BUCKET}/verify/object.txt", "auth": "none"},
    {"name": "anonymous PUT", "method": "PUT", "path": f"/{SHARED_BUCKET}/verify/anon.txt", "body": "x",
     "auth": "none"},
    {"name": "anonymous list objects", "method": "GET", "path": f"/{SHARED_BUCKET}", "auth": "none"},
    {"name": "anonymous list buckets", "method": "GET", "path": "/", "auth": "none"},
], ids=lambda s: s["name"])
def test_seaweedfs_refuses_anonymous(s3, step):
    result = s3([step])[step["name"]]
    assert result["status"] == 403 and result["code"] == "AccessDenied", result


@pytest.mark.parametrize("auth, code", [("wrong-secret", "SignatureDoesNotMatch"),
                                        ("unknown-key", "InvalidAccessKeyId")])
def test_seaweedfs_refuses_wrong_keys(s3, auth, code):
    result = s3([{"name": auth, "method": "GET", "path": f"/{SHARED_BUCKET}/verify/object.txt", "auth": auth}])[auth]
    assert result["status"] == 403 and result["code"] == code, result
