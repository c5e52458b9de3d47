# SPDX-License-Identifier: GPL-3.0-or-later
"""A restore keeps the WhatsApp session: Evolution API's state is one unit (its PostgreSQL tenant and the Redis keys
of its registry's ``redis_keys`` with ``restore: true``), backed up together and restored together, and the other
apps' Redis key spaces are handled as the registry decides (never restored).

What runs: the real PostgreSQL and Redis of the lab stack, the installed /usr/local/sbin/borgstack-backup,
playbooks/restore.yml and playbooks/restore-drill.yml. What does not: Evolution API itself (no image can be built
here; it is disabled in the lab inventory). So its state is seeded in Evolution API 2.2.3's exact layout, read from
its source at the 2.2.3 tag:
- PostgreSQL: the "Instance" and "Session" tables as prisma/postgresql-migrations/20240609181238_init creates them
  (plus the later Instance columns of prisma/postgresql-schema.prisma), in the tenant database ``evolution`` owned
  by ``evolution_api``; Session.creds holds the Baileys creds as src/utils/use-multi-file-auth-state-prisma.ts
  writes them (JSON.stringify of JSON.stringify(creds, BufferJSON.replacer));
- Redis: database 3 (the registry's redis_db), one hash per instance at
  ``<CACHE_REDIS_PREFIX_KEY>:instance:<instance id>`` (src/cache/rediscache.ts buildKey, module "instance" of
  src/api/server.module.ts) whose fields are Baileys' ``<type>-<id>`` keys, each value JSON.stringify'd twice
  (CacheService.hSet then RedisCache.hSet), no expiry.
The backup runs with the installed settings plus what the backup role would render with Evolution API enabled (its
tenant, and its key unit computed by the same filter from the lab registry); restore.yml and the drill get the lab
registry with Evolution API enabled (-e borgstack_services=...). Evolution API has no container here, so restore.yml
has none to stop, start or check ("not running before the restore").

Cost: one backup run (a few seconds), one restore.yml run and one drill run.
"""
from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml
from conftest import run_site

# pylint: disable=import-error
from ansible_collections.borgstack.stack.plugins.filter.contract import redis_key_spaces
from ansible_collections.borgstack.stack.plugins.filter.registry import service_registry

ROOT = Path(__file__).resolve().parents[3]
BACKUP_DIR = "/var/backups/borgstack"
PG, REDIS = "borgstack-postgresql", "borgstack-redis"
PREFIX = "borgstack-evolution"     # evolution_api_redis_prefix (CACHE_REDIS_PREFIX_KEY)
TAG = uuid.uuid4().hex[:8]
WORK = "/root/backup-whatsapp-test"

DDL = """
CREATE TYPE "InstanceConnectionStatus" AS ENUM ('open', 'close', 'connecting');
CREATE TABLE "Instance" (
    "id" TEXT NOT NULL, "name" VARCHAR(255) NOT NULL,
    "connectionStatus" "InstanceConnectionStatus" NOT NULL DEFAULT 'open',
    "ownerJid" VARCHAR(100), "profileName" VARCHAR(100), "profilePicUrl" VARCHAR(500), "integration" VARCHAR(100),
    "number" VARCHAR(100), "businessId" VARCHAR(100), "token" VARCHAR(255), "clientName" VARCHAR(100),
    "disconnectionReasonCode" INTEGER, "disconnectionObject" JSONB, "disconnectionAt" TIMESTAMP,
    "createdAt" TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "updatedAt" TIMESTAMP,
    CONSTRAINT "Instance_pkey" PRIMARY KEY ("id"));
CREATE TABLE "Session" (
    "id" TEXT NOT NULL, "sessionId" TEXT NOT NULL, "creds" TEXT,
    "createdAt" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Session_pkey" PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "Instance_name_key" ON "Instance"("name");
CREATE UNIQUE INDEX "Instance_token_key" ON "Instance"("token");
CREATE UNIQUE INDEX "Session_sessionId_key" ON "Session"("sessionId");
ALTER TABLE "Session" ADD CONSTRAINT "Session_sessionId_fkey" FOREIGN KEY ("sessionId") REFERENCES "Instance"("id")
    ON DELETE CASCADE ON UPDATE CASCADE;
"""


def _buffer(seed: str) -> Dict[str, str]:
    """A Buffer as BufferJSON.replacer writes it."""
    return {"type": "Buffer", "data": base64.b64encode(f"{seed}-{TAG}".encode() * 2).decode()}


def _js(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _twice(value) -> str:
    """JSON.stringify(JSON.stringify(value, BufferJSON.replacer)): how Evolution writes a key (and the creds)."""
    return _js(_js(value))


def _instance(number: int) -> Dict[str, object]:
    iid = f"cm{TAG}{number:04d}evo"
    fields = {
        "pre-key-1": {"private": _buffer(f"pk1p{number}"), "public": _buffer(f"pk1u{number}")},
        "pre-key-2": {"private": _buffer(f"pk2p{number}"), "public": _buffer(f"pk2u{number}")},
        f"session-55119876{number:04d}.0": {
            "_sessions": {_buffer(f"s{number}")["data"]: {"registrationId": 4711}}, "version": "v1"},
        f"sender-key-120363{number:06d}@g.us::55119876{number:04d}::0": [{"senderKeyId": 1, "senderChainKey": {
            "iteration": 3, "seed": _buffer(f"ck{number}")["data"]}}],
        "app-state-sync-key-AAAAAJ0y": {"keyData": _buffer(f"as{number}"), "timestamp": "1733400000000"},
        "app-state-sync-version-regular_high": {"version": 12, "hash": _buffer(f"h{number}")},
    }
    creds = {"noiseKey": {"private": _buffer(f"nk{number}"), "public": _buffer(f"nu{number}")},
             "registrationId": 1000 + number, "advSecretKey": _buffer(f"adv{number}")["data"],
             "nextPreKeyId": 3, "firstUnuploadedPreKeyId": 3,
             "me": {"id": f"55119876{number:04d}:7@s.whatsapp.net", "name": f"loja {number}"}}
    return {"id": iid, "name": f"whatsapp-{TAG}-{number}", "key": f"{PREFIX}:instance:{iid}",
            "fields": {name: _twice(value) for name, value in fields.items()}, "creds": _twice(creds)}


INSTANCES = [_instance(1), _instance(2)]
LATE = _instance(3)   # written after the backup: a restore replaces the session keys, it does not merge them
# The other apps' key spaces the registry marks restore: false ({db: {key: (type, members)}}), seeded before the
# backup and deleted after it (they must not come back), and one written after the backup (it must stay untouched).
OTHERS = {
    0: {"bull:jobs:wait": ("list", ["7", "8"]), "bull:jobs:7": ("hash", {"name": "7", "data": '{"executionId":"7"}'})},
    3: {f"{PREFIX}:groups:120363{TAG}@g.us": ("string", '{"subject":"grupo"}')},
    4: {"schedule": ("zset", {'{"class":"Campaigns::TriggerOneoffCampaignJob","jid":"a1"}': "1765000000"}),
        "retry": ("zset", {'{"class":"Webhooks::DeliveryJob","jid":"b2"}': "1765000001"}),
        "queue:default": ("list", ['{"class":"SendReplyJob","jid":"c3"}'])},
}
LATE_OTHER = (3, f"{PREFIX}:groups:late-{TAG}@g.us", "string", '{"subject":"depois"}')


def _resp(*args: str) -> bytes:
    parts = [a.encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _redis_auth() -> str:
    return ("REDISCLI_AUTH=\"$(python3 -c 'import json; print(json.load(open(\"/etc/borgstack/backup.json\"))"
            "[\"redis_password\"])')\" docker exec -i -e REDISCLI_AUTH " + REDIS + " redis-cli --no-auth-warning")


def _redis_pipe(host, db: int, commands: List[Tuple[str, ...]]) -> None:
    """Write binary-safe (RESP through redis-cli --pipe): the values hold quotes and backslashes."""
    payload = base64.b64encode(_resp("SELECT", str(db)) + b"".join(_resp(*c) for c in commands)).decode()
    host.run_test(f"echo {payload} | base64 -d > {WORK}/cmds.resp")
    out = host.check_output(f"{_redis_auth()} --pipe < {WORK}/cmds.resp")
    assert "errors: 0" in out, out


def _redis(host, db: int, *args: str) -> List[str]:
    """One read command's raw reply lines (the seeded values hold no newline)."""
    cmd = " ".join(f"'{a}'" for a in args)
    return host.check_output(f"{_redis_auth()} -n {db} {cmd}").splitlines()


def _state(host, db: int, pattern: str) -> Dict[str, Tuple[str, object, bool]]:
    """{key: (type, value, has an expiry)} of the keys of ``db`` matching ``pattern``, read back from Redis."""
    out: Dict[str, Tuple[str, object, bool]] = {}
    for key in _redis(host, db, "--scan", "--pattern", pattern):
        kind = _redis(host, db, "TYPE", key)[0]
        if kind == "hash":
            flat = _redis(host, db, "HGETALL", key)
            value: object = dict(zip(flat[0::2], flat[1::2]))
        elif kind == "zset":
            flat = _redis(host, db, "ZRANGE", key, "0", "-1", "WITHSCORES")
            value = dict(zip(flat[0::2], flat[1::2]))
        elif kind == "list":
            value = _redis(host, db, "LRANGE", key, "0", "-1")
        else:
            value = "\n".join(_redis(host, db, "GET", key))
        out[key] = (kind, value, int(_redis(host, db, "PTTL", key)[0]) > 0)
    return out


def _write(key: str, kind: str, value) -> Tuple[str, ...]:
    if kind == "hash":
        return ("HSET", key, *[x for pair in value.items() for x in pair])
    if kind == "zset":
        return ("ZADD", key, *[x for member, score in value.items() for x in (score, member)])
    if kind == "list":
        return ("RPUSH", key, *value)
    return ("SET", key, value)


def _sql(host, query: str, database: str = "evolution") -> str:
    return host.check_output(f"docker exec -i {PG} psql -U postgres -X -At -v ON_ERROR_STOP=1 -d {database} "
                             f"<<'EOF'\n{query}\nEOF")


def _rows(host) -> str:
    return _sql(host, 'SELECT i.id, i.name, i."connectionStatus", i."ownerJid", s.creds FROM "Instance" i '
                      'JOIN "Session" s ON s."sessionId" = i.id ORDER BY i.id')


def _session_keys(host) -> Dict[str, Tuple[str, object, bool]]:
    return _state(host, 3, f"{PREFIX}:instance:*")


def _lab_services_with_evolution() -> dict:
    services = yaml.safe_load((ROOT / "inventories/lab/group_vars/borgstack/main.yml").read_text())[
        "borgstack_services"]
    services = copy.deepcopy(services)
    services["evolution_api"] = {**services.get("evolution_api", {}), "enabled": True}
    return services


@pytest.fixture(scope="module")
def whatsapp(host):
    """Evolution API's session seeded in its exact layout, the other apps' keys beside it, then a dump set taken by
    the installed backup script with the settings the backup role renders when Evolution API is enabled."""
    services = _lab_services_with_evolution()
    defaults = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text())[
        "borgstack_service_defaults"]
    units = redis_key_spaces(service_registry(defaults, services))
    assert [u["service"] for u in units] == ["evolution_api"], units
    host.run_test(f"install -m 0700 -d {WORK}")
    host.run_test(f"docker exec {PG} dropdb -U postgres --if-exists --force evolution")
    host.run_test(f"docker exec {PG} psql -U postgres -X -q -v ON_ERROR_STOP=1 -c 'DROP ROLE IF EXISTS evolution_api'"
                  f" -c 'CREATE ROLE evolution_api LOGIN'"
                  f" -c 'CREATE DATABASE evolution OWNER evolution_api'")
    inserts = "".join(
        f"INSERT INTO \"Instance\" (id, name, \"ownerJid\", integration, token, \"clientName\") VALUES "
        f"('{i['id']}', '{i['name']}', '55119876000{n}@s.whatsapp.net', 'WHATSAPP-BAILEYS', 'tok-{TAG}-{n}', "
        f"'borgstack');\nINSERT INTO \"Session\" (id, \"sessionId\", creds) VALUES ('se{i['id']}', '{i['id']}', "
        f"$creds${i['creds']}$creds$);\n" for n, i in enumerate(INSTANCES))
    _sql(host, "SET ROLE evolution_api;\n" + DDL + inserts)
    _redis_pipe(host, 3, [_write(i["key"], "hash", i["fields"]) for i in INSTANCES])
    for db, keys in OTHERS.items():
        _redis_pipe(host, db, [_write(key, kind, value) for key, (kind, value) in keys.items()])
    seeded = {"rows": _rows(host), "keys": _session_keys(host)}

    config = json.loads(host.file("/etc/borgstack/backup.json").content_string)
    config.update(keep=1000, redis_key_units=units,
                  postgres_tenants=config["postgres_tenants"] + [{"name": "evolution_api", "database": "evolution"}])
    host.run_test(f"cat > {WORK}/backup.json <<'EOF'\n{json.dumps(config)}\nEOF")
    run = host.run(f"/usr/local/sbin/borgstack-backup --config {WORK}/backup.json")
    assert run.rc == 0, (run.stdout, run.stderr)
    found = re.search(rf"dump set {re.escape(BACKUP_DIR)}/(\d{{8}}T\d{{6}}Z) complete", run.stdout)
    assert found, run.stdout
    extra = Path(f"/tmp/whatsapp-extra-{TAG}.json")
    extra.write_text(json.dumps({"borgstack_services": services}))
    yield {**seeded, "set": found.group(1), "log": run.stdout, "extra": str(extra)}
    extra.unlink()
    host.run(f"rm -rf {WORK} {BACKUP_DIR}/{found.group(1)}")
    host.run(f"docker exec {PG} dropdb -U postgres --if-exists --force evolution")
    host.run(f"docker exec {PG} psql -U postgres -X -q -c 'DROP ROLE IF EXISTS evolution_api'")
    for db, keys in {**OTHERS, 3: {**OTHERS[3], LATE["key"]: None, LATE_OTHER[1]: None,
                                   **{i["key"]: None for i in INSTANCES}}}.items():
        host.run(f"{_redis_auth()} -n {db} DEL {' '.join(repr(k) for k in keys)}")


def test_the_dump_set_holds_the_session_as_one_unit(host, whatsapp):
    assert len(whatsapp["keys"]) == 2 and all(not key[2] for key in whatsapp["keys"].values()), whatsapp["keys"]
    newest = f"{BACKUP_DIR}/{whatsapp['set']}"
    manifest = json.loads(host.file(f"{newest}/manifest.json").content_string)
    assert manifest["postgresql"]["tenants"]["evolution_api"] == {"database": "evolution",
                                                                  "file": "postgresql-evolution_api.dump",
                                                                  "tables": "postgresql-evolution_api.tables"}
    assert manifest["redis_keys"] == {"evolution_api": {"db": 3, "file": "redis-evolution_api.keys.json",
                                                        "spaces": {"session": ["*:instance:*"]}, "keys": 2}}
    # Taken together: the keys right after the service's own dump (the log's order), both in SHA256SUMS, root-only.
    log = whatsapp["log"]
    assert log.index("(evolution_api) -> postgresql-evolution_api.dump") < log.index("keys of evolution_api") \
        < log.index("redis: snapshot"), log
    assert host.run(f"cd {newest} && sha256sum --check --strict SHA256SUMS").rc == 0
    assert "redis-evolution_api.keys.json" in host.file(f"{newest}/SHA256SUMS").content_string
    keys = host.file(f"{newest}/redis-evolution_api.keys.json")
    assert keys.user == "root" and keys.mode == 0o600
    # Only the restore: true space: not the other apps' keys, not Evolution's own caches.
    names = sorted(k["name"] for k in json.loads(keys.content_string)["keys"])
    assert names == sorted(i["key"] for i in INSTANCES), names


def test_backup_wipe_restore_brings_the_session_back_key_by_key(host, whatsapp):
    # Wipe: the rows and every key; then, after the backup, a new instance's keys appear and a cache key is written.
    _sql(host, 'DELETE FROM "Session"; DELETE FROM "Instance";')
    for db, keys in OTHERS.items():
        host.run_test(f"{_redis_auth()} -n {db} DEL {' '.join(repr(k) for k in keys)}")
    host.run_test(f"{_redis_auth()} -n 3 DEL {' '.join(repr(i['key']) for i in INSTANCES)}")
    _redis_pipe(host, 3, [_write(LATE["key"], "hash", LATE["fields"]),
                          _write(LATE_OTHER[1], LATE_OTHER[2], LATE_OTHER[3])])
    assert _rows(host) == "" and list(_session_keys(host)) == [LATE["key"]]

    run = run_site("-e", f"@{whatsapp['extra']}", "-e", "restore_service=evolution_api", "-e",
                   "restore_confirm=evolution_api", "-e", f"restore_set={whatsapp['set']}",
                   playbook="playbooks/restore.yml", timeout=1200)
    assert run.rc == 0, run.output[-4000:]
    assert "redis keys of evolution_api (db 3): 2/2 restored and equal to the set" in run.output, run.output[-3000:]
    assert "1 live keys replaced" in run.output
    assert "not running before the restore (not started, not checked): evolution_api" in run.output

    # Key by key: the same keys, types, fields and values, still without expiry; the later instance's keys are gone
    # (replaced, not merged); the rows with their creds are back.
    assert _session_keys(host) == whatsapp["keys"]
    assert _rows(host) == whatsapp["rows"]
    # The other apps' spaces are not restored (restore: false): what was deleted stays deleted, what was written
    # after the backup stays as it is.
    for db, keys in OTHERS.items():
        for key in keys:
            assert _redis(host, db, "EXISTS", key) == ["0"], (db, key)
    assert _redis(host, LATE_OTHER[0], "GET", LATE_OTHER[1]) == [LATE_OTHER[3]]


def test_the_drill_loads_the_session_keys_and_compares_them(host, whatsapp):
    run = run_site("-e", f"restore_set={whatsapp['set']}", playbook="playbooks/restore-drill.yml", timeout=1200)
    assert run.rc == 0, run.output[-4000:]
    assert "redis keys of evolution_api (db 3): 2/2 load and match the set (12 elements)" in run.output, \
        run.output[-3000:]
    assert "postgresql evolution_api: 2 tables, 4 rows restored" in run.output, run.output[-3000:]
    assert "differences: none" in run.output
    assert host.run("docker ps -a --filter label=org.borgstack.restore-drill=1 -q").stdout.strip() == ""
