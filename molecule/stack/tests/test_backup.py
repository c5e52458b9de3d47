# SPDX-License-Identifier: GPL-3.0-or-later
"""Backups that restore, proven on the lab stack: real n8n workflows and credentials and real Directus items are
created through the apps' own APIs (through Caddy, from the public side), playbooks/backup.yml takes a dump set
(checked: files, SHA256SUMS, root-only), the restore drill restores it into a scratch PostgreSQL beside the stack and
reports equality (the credentials decrypted with the stack's key in n8n's image), the data is destroyed (n8n's
database dropped, Directus' items deleted), playbooks/restore.yml brings it back with restore_confirm: 0 rows lost,
n8n itself decrypts the restored credentials, the apps are healthy. Bad input is refused before any change.

Not run here: MongoDB's dump and restore (no MongoDB image can be built in the lab; MongoDB is off there) and the
failure webhook/e-mail (no receiver in the lab). The tests run in file order; what several need (the data they
back up, the dump set) comes from module fixtures, so one failure does not cascade into KeyErrors in the next. The
last test leaves the stack restored, as the later tests of the scenario expect it.

Time of day: nothing here depends on it. The nightly timer (backup_on_calendar, 02:00 in São Paulo by default) is
checked armed, then held (stopped) while this module runs and started again after it: a run of its own would add
a dump set beside the one a test takes, and "nothing was written" would no longer be provable. The tests identify
their set by what playbooks/backup.yml reports, never by "the newest one".
"""
from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import public_ip, run_site

DOMAIN = "lab.borgstack.test"
N8N_HOST, DIRECTUS_HOST = f"n8n.{DOMAIN}", f"directus.{DOMAIN}"
ADMIN = "admin@example.com"
BACKUP_DIR = "/var/backups/borgstack"
PG = "borgstack-postgresql"
COLLECTION = "backup_drill_notes"
TAG = uuid.uuid4().hex[:8]
_TOKENS: Dict[str, str] = {}   # Directus access token, fetched once per module run


def _curl(host, root_cert: Path, hostname: str, path: str, *extra: str) -> Tuple[int, str]:
    out = root_cert.parent / f"body-{uuid.uuid4().hex}"
    cmd: List[str] = ["curl", "--silent", "--show-error", "--max-time", "60", "--output", str(out),
                      "--write-out", "%{http_code}", "--resolve", f"{hostname}:443:{public_ip(host)}",
                      "--cacert", str(root_cert), *extra, f"https://{hostname}{path}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"{path}: curl failed: {run.stderr}"
    body = out.read_text(errors="replace")
    out.unlink()
    return int(run.stdout), body


def _n8n(host, root_cert: Path, method: str, path: str, data=None) -> Tuple[int, dict]:
    jar = root_cert.parent / "n8n-cookies"
    extra = ["-X", method, "-b", str(jar), "-c", str(jar), "-H", "Content-Type: application/json"]
    if data is not None:
        extra += ["--data", json.dumps(data)]
    status, body = _curl(host, root_cert, N8N_HOST, path, *extra)
    return status, json.loads(body or "{}")


def _n8n_login(host, root_cert: Path) -> None:
    password = host.file("/opt/borgstack/services/n8n/owner-password").content_string.strip()
    status, body = _n8n(host, root_cert, "POST", "/rest/login", {"emailOrLdapLoginId": ADMIN, "password": password})
    assert status == 200, body


def _directus(host, root_cert: Path, method: str, path: str, data=None) -> Tuple[int, dict]:
    if "directus_token" not in _TOKENS:
        password = host.file("/opt/borgstack/services/directus/admin-password").content_string.strip()
        status, body = _curl(host, root_cert, DIRECTUS_HOST, "/auth/login", "-X", "POST", "-H",
                             "Content-Type: application/json", "--data",
                             json.dumps({"email": ADMIN, "password": password}))
        assert status == 200, body
        _TOKENS["directus_token"] = json.loads(body)["data"]["access_token"]
    extra = ["-X", method, "-H", f"Authorization: Bearer {_TOKENS['directus_token']}", "-H",
             "Content-Type: application/json"]
    if data is not None:
        extra += ["--data", json.dumps(data)]
    status, body = _curl(host, root_cert, DIRECTUS_HOST, path, *extra)
    return status, json.loads(body or "{}")


def _sql(host, database: str, query: str) -> str:
    return host.check_output(f"docker exec {PG} psql -U postgres -X -At -d {database} -c \"{query}\"")


def _counts(host) -> Dict[str, int]:
    return {
        "n8n.workflow_entity": int(_sql(host, "n8n", "SELECT count(*) FROM workflow_entity")),
        "n8n.credentials_entity": int(_sql(host, "n8n", "SELECT count(*) FROM credentials_entity")),
        f"directus.{COLLECTION}": int(_sql(host, "directus", f"SELECT count(*) FROM {COLLECTION}")),
    }


def _sets(host) -> List[str]:
    """The dump sets (named by their UTC time); the directory also holds compose_deploy's pre-update dumps (updates/)."""
    return sorted(name for name in host.check_output(f"ls {BACKUP_DIR}").split()
                  if re.fullmatch(r"\d{8}T\d{6}Z", name))


def _playbook(name: str, *args: str):
    return run_site(*args, playbook=f"playbooks/{name}", timeout=1200)


def _started_at(host, name: str) -> str:
    return host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {name}")


@pytest.fixture(scope="module", autouse=True)
def held_timer(host):
    """The timer's state as the stack left it, then the timer held for the module (see the module's docstring); a
    run it had already started is waited for, as systemctl start would join it."""
    state = host.run("systemctl show borgstack-backup.timer --property=TimersCalendar,ActiveState").stdout
    host.run_test("systemctl stop borgstack-backup.timer")
    host.run_test("timeout 900 sh -c 'while [ \"$(systemctl show --property=ActiveState --value "
                  "borgstack-backup.service)\" = activating ]; do sleep 1; done'")
    yield state
    host.run_test("systemctl start borgstack-backup.timer")


def _taken_set(output: str) -> str:
    """The dump set a playbooks/backup.yml run reports it made."""
    found = re.search(rf"Dump set {re.escape(BACKUP_DIR)}/(\d{{8}}T\d{{6}}Z) \(", output)
    assert found, f"backup.yml named no dump set: {output[-2000:]}"
    return found.group(1)


@pytest.fixture(scope="module")
def backed_up(host, root_cert) -> Dict[str, object]:
    """Real n8n credentials and workflows and Directus items, then a dump set of them taken by playbooks/backup.yml:
    the row counts, the credentials (id -> header name), the sets before the run and the set the run reports."""
    data: Dict[str, object] = {"credentials": {}}
    _n8n_login(host, root_cert)
    for number in range(2):
        status, body = _n8n(host, root_cert, "POST", "/rest/credentials", {
            "name": f"backup-{TAG}-{number}", "type": "httpHeaderAuth",
            "data": {"name": f"X-Api-Key-{TAG}-{number}", "value": f"secret-{TAG}-{number}"}})
        assert status == 200, body
        data["credentials"][body["data"]["id"]] = f"X-Api-Key-{TAG}-{number}"
        status, body = _n8n(host, root_cert, "POST", "/rest/workflows", {
            "name": f"backup-{TAG}-{number}", "active": False, "connections": {}, "settings": {},
            "nodes": [{"id": str(uuid.uuid4()), "name": "Start", "type": "n8n-nodes-base.manualTrigger",
                       "typeVersion": 1, "position": [0, 0], "parameters": {}}]})
        assert status == 200, body
    status, body = _directus(host, root_cert, "GET", f"/collections/{COLLECTION}")
    if status != 200:
        status, body = _directus(host, root_cert, "POST", "/collections", {
            "collection": COLLECTION, "schema": {}, "meta": {},
            "fields": [{"field": "id", "type": "integer", "schema": {"is_primary_key": True,
                                                                     "has_auto_increment": True}},
                       {"field": "note", "type": "string", "schema": {}}]})
        assert status == 200, body
    status, body = _directus(host, root_cert, "POST", f"/items/{COLLECTION}",
                             [{"note": f"nota {TAG} {n}"} for n in range(5)])
    assert status == 200, body
    data["counts"] = _counts(host)
    data["before"] = _sets(host)
    run = _playbook("backup.yml")
    assert run.rc == 0, run.output[-3000:]
    data["set"] = _taken_set(run.output)
    return data


def test_backup_takes_a_checked_root_only_dump_set(host, held_timer, backed_up):
    assert "ActiveState=active" in held_timer and "America/Sao_Paulo" in held_timer, held_timer
    assert min(backed_up["counts"].values()) >= 2, backed_up["counts"]
    # The set the run reports is new, and it is the only new one: the held timer made none beside it.
    assert backed_up["set"] not in backed_up["before"]
    assert _sets(host) == sorted(backed_up["before"] + [backed_up["set"]])
    newest = f"{BACKUP_DIR}/{backed_up['set']}"
    files = set(host.check_output(f"ls {newest}").split())
    assert {"postgresql-globals.sql", "postgresql-n8n.dump", "postgresql-directus.dump", "redis-dump.rdb",
            "postgresql-n8n.tables", "postgresql-directus.tables", "manifest.json", "SHA256SUMS"} <= files, files
    # The figures of each dump's own snapshot: the rows the test wrote before the backup, counted as the apps left them.
    figures = dict(line.split("|")[:2] for line in host.file(f"{newest}/postgresql-directus.tables").content_string
                   .splitlines())
    assert int(figures[f"public.{COLLECTION}"]) == backed_up["counts"][f"directus.{COLLECTION}"], figures
    assert host.file(BACKUP_DIR).mode == 0o700 and host.file(newest).mode == 0o700
    for name in files:
        info = host.file(f"{newest}/{name}")
        assert info.user == "root" and info.mode == 0o600, (name, info.user, oct(info.mode))
    assert host.run(f"cd {newest} && sha256sum --check --strict SHA256SUMS").rc == 0
    listed = {line.split()[1] for line in host.file(f"{newest}/SHA256SUMS").content_string.splitlines()}
    assert listed == files - {"SHA256SUMS"}
    settings = host.file("/etc/borgstack/backup.json")
    assert settings.user == "root" and settings.mode == 0o600
    unit = host.file("/etc/systemd/system/borgstack-backup.service").content_string
    assert "password" not in unit.lower()
    # A custom-format dump really holds the credentials table.
    listing = host.check_output(f"docker exec -i {PG} pg_restore --list < {newest}/postgresql-n8n.dump")
    assert "TABLE DATA public credentials_entity" in listing


@pytest.mark.parametrize("args, variable", [
    ((), "restore_confirm"),
    (("-e", "restore_service=n8n", "-e", "restore_confirm=directus"), "restore_confirm"),
    (("-e", "restore_confirm=all", "-e", "restore_set=19990101T000000Z"), "restore_set"),
    (("-e", "restore_service=redis", "-e", "restore_confirm=redis"), "restore_service"),
])
def test_bad_restore_input_is_refused_before_any_change(host, args, variable):
    started = _started_at(host, "borgstack-n8n")
    run = _playbook("restore.yml", *args)
    assert run.rc != 0 and variable in run.output, run.output[-2000:]
    assert "Nothing was changed" in run.output
    assert _started_at(host, "borgstack-n8n") == started


def test_a_damaged_dump_set_is_refused(host, backed_up):
    damaged = "19990101T000001Z"
    source = f"{BACKUP_DIR}/{backed_up['set']}"
    host.run_test(f"cp -a {source} {BACKUP_DIR}/{damaged}")
    try:
        host.run_test(f"printf x >> {BACKUP_DIR}/{damaged}/postgresql-n8n.dump")
        started = _started_at(host, "borgstack-n8n")
        run = _playbook("restore.yml", "-e", f"restore_set={damaged}", "-e", "restore_service=n8n",
                        "-e", "restore_confirm=n8n")
        assert run.rc != 0 and "is damaged" in run.output and "postgresql-n8n.dump" in run.output, run.output[-2000:]
        assert _started_at(host, "borgstack-n8n") == started
    finally:
        host.run(f"rm -rf {BACKUP_DIR}/{damaged}")


def test_the_drill_fails_on_a_difference(host, backed_up):
    """The drill can fail: a copy of the set whose dump holds one row less than its figures say (the figures edited,
    SHA256SUMS made to match: what a dump that silently lost a row would look like) fails naming the table."""
    lost = "19990101T000002Z"
    host.run_test(f"cp -a {BACKUP_DIR}/{backed_up['set']} {BACKUP_DIR}/{lost}")
    try:
        count = backed_up["counts"][f"directus.{COLLECTION}"]
        host.run_test(f"sed -i 's/^public[.]{COLLECTION}|{count}|/public.{COLLECTION}|{count + 1}|/' "
                      f"{BACKUP_DIR}/{lost}/postgresql-directus.tables")
        host.run_test(f"cd {BACKUP_DIR}/{lost} && sha256sum $(cut -d' ' -f3 SHA256SUMS) > SHA256SUMS.new "
                      "&& mv SHA256SUMS.new SHA256SUMS")
        run = _playbook("restore-drill.yml", "-e", f"restore_set={lost}")
        assert run.rc != 0 and f"directus: public.{COLLECTION} rows dumped {count + 1} restored {count}" in run.output, \
            run.output[-3000:]
    finally:
        host.run(f"rm -rf {BACKUP_DIR}/{lost}")


def test_the_drill_restores_beside_the_stack_and_finds_no_difference(host, backed_up):
    """Also when the apps wrote since the dump (a Directus row here; n8n's schedules all along): the drill compares
    the restored databases with the figures the backup took in each dump's own snapshot, not with live ones."""
    started = {name: _started_at(host, name) for name in (PG, "borgstack-n8n", "borgstack-directus")}
    _sql(host, "directus", f"INSERT INTO {COLLECTION} (note) VALUES ('after the dump')")
    try:
        run = _playbook("restore-drill.yml")
    finally:
        _sql(host, "directus", f"DELETE FROM {COLLECTION} WHERE note = 'after the dump'")
    assert run.rc == 0, run.output[-4000:]
    assert "differences: none" in run.output
    assert "rows restored, compared with the figures taken in the dump" in " ".join(run.output.split())
    total = backed_up["counts"]["n8n.credentials_entity"]
    assert f"n8n credentials: {total}/{total} decrypt with the stack key" in run.output
    assert "redis snapshot: OK" in run.output
    assert host.run("docker ps -a --filter label=org.borgstack.restore-drill=1 -q").stdout.strip() == ""
    assert host.run("docker network ls --filter label=org.borgstack.restore-drill=1 -q").stdout.strip() == ""
    assert {name: _started_at(host, name) for name in started} == started, "the drill touched a live container"


def test_destroyed_data_comes_back_with_restore(host, root_cert, backed_up):
    host.run_test("docker stop borgstack-n8n")
    host.run_test(f"docker exec {PG} dropdb -U postgres --force n8n")
    host.run_test(f"docker exec {PG} createdb -U postgres -O n8n n8n")
    host.run_test("docker start borgstack-n8n")
    _sql(host, "directus", f"DELETE FROM {COLLECTION}")
    assert _sql(host, "directus", f"SELECT count(*) FROM {COLLECTION}") == "0"
    assert _sql(host, "n8n", "SELECT count(*) FROM pg_tables WHERE tablename = 'credentials_entity'") in ("0", "1")

    run = _playbook("restore.yml", "-e", "restore_confirm=all")
    assert run.rc == 0, run.output[-4000:]
    assert _counts(host) == backed_up["counts"], "rows lost in the restore"

    # n8n itself decrypts the restored credentials with the stack's key (the data is one encrypted JSON document:
    # its plain field comes back only if it decrypts; n8n blanks the password field in API answers), and both apps
    # answer through Caddy.
    _n8n_login(host, root_cert)
    for credential_id, header in backed_up["credentials"].items():
        status, body = _n8n(host, root_cert, "GET", f"/rest/credentials/{credential_id}?includeData=true")
        assert status == 200 and body["data"]["data"]["name"] == header, (status, body)
        assert body["data"]["data"]["value"], body
    assert _curl(host, root_cert, N8N_HOST, "/healthz/readiness")[0] == 200
    assert _curl(host, root_cert, DIRECTUS_HOST, "/server/health")[0] == 200
    # The tenant is as the postgresql role provisions it: owner n8n, CONNECT not granted to PUBLIC.
    assert _sql(host, "n8n", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'n8n'") == "n8n"
    assert _sql(host, "n8n", "SELECT has_database_privilege('public', 'n8n', 'CONNECT')") == "f"


@pytest.mark.parametrize("setting, variable", [
    ({"backup_on_calendar": "*-*-* 25:00:00"}, "backup_on_calendar"),
    ({"backup_timezone": "America/Sao_Paul"}, "backup_timezone"),
    ({"backup_keep": 0}, "backup_keep"),
])
def test_bad_backup_settings_are_refused_before_a_run(host, setting, variable):
    before = _sets(host)
    run = _playbook("backup.yml", "-e", json.dumps(setting))
    assert run.rc != 0 and variable in run.output, run.output[-2000:]
    assert _sets(host) == before


def test_a_failed_run_is_loud_and_leaves_no_partial_set(host):
    """Exit status 1, the reason on stderr (the journal under systemd), the webhook called with a JSON POST, no set
    and no half-written directory left. The webhook receiver is Python's http.server on the lab host (it answers
    501 to POST, which is enough to see that the request came)."""
    config = json.loads(host.file("/etc/borgstack/backup.json").content_string)
    config.update(postgresql_container="borgstack-no-such-container",
                  notify_webhook_url="http://127.0.0.1:8765/backup-failed")
    host.run_test("install -m 0700 -d /root/backup-test")
    host.run_test(f"cat > /root/backup-test/backup.json <<'EOF'\n{json.dumps(config)}\nEOF")
    host.run_test("cd /root/backup-test && (python3 -m http.server 8765 --bind 127.0.0.1 > server.log 2>&1 & "
                  "echo $! > server.pid) && sleep 1")
    try:
        before = _sets(host)
        run = host.run("/usr/local/sbin/borgstack-backup --config /root/backup-test/backup.json")
        assert run.rc == 1, (run.rc, run.stdout, run.stderr)
        assert "FAILED" in run.stderr and "borgstack-no-such-container" in run.stderr, run.stderr
        assert _sets(host) == before
        assert host.run(f"ls -a {BACKUP_DIR} | grep -c partial").stdout.strip() == "0"
        assert '"POST /backup-failed HTTP/1.1"' in host.file("/root/backup-test/server.log").content_string
    finally:
        host.run("kill $(cat /root/backup-test/server.pid); rm -rf /root/backup-test")
