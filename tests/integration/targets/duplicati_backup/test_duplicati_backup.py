# SPDX-License-Identifier: GPL-3.0-or-later
"""The duplicati_backup module and the trigger script, against a contract server - NOT against Duplicati.

No Duplicati image can be had here. lab/contract/duplicati_contract.py stands in for Duplicati 2.1.1.102's REST API:
it accepts only the requests upstream's source at the tag defines for these calls (login, list, read, create,
update, delete, run, isactive), checks the Host header and the bodies as upstream does, refuses what
Connection.ValidateBackup refuses with its messages, masks secrets in its answers, and simulates a run (it copies
nothing; a bad --retention-policy fails the run as Duplicati's parser would). What this does NOT prove: that the real
server accepts these requests, that a backup reaches a destination, that it restores.

Checked here, each through the ansible CLI (``ansible localhost -m borgstack.stack.duplicati_backup``):

- read -> plan -> apply: the first run creates the job (encrypted with AES-256 and the passphrase, the retention
  policy, no schedule), a second run changes nothing and makes no write; check mode only reads and reports what it
  would do; a changed secret (destination password, passphrase) is noticed although the server masks it; a source or
  schedule changed in the UI is put back, keeping the job's run history; state=absent deletes;
- failures name the cause: a wrong UI password, a Host Duplicati refuses;
- no secret in the output, even at -vvv with --diff;
- the trigger (roles/duplicati/files/borgstack-duplicati-run.py) starts the job, waits and exits 0 on success, 1
  with the reason on a failed run or a missing job;
- the contract server itself refuses what upstream refuses (so a test passing against it means something);
- issue 21 item 6, the play never depends on the password the operator may change: Duplicati starts without
  --webservice-password (so it generates one) and with the play's pre-authenticated token; duplicati_first_password
  sets the first password once, the operator changes it as the UI does (PUT /api/v1/serversetting/server-passphrase)
  and restarts the server; then the play's modules and the trigger still work with the token (changed=0), the
  operator's password is the one that logs in and the first one no longer does. What did not run: Duplicati itself
  (no image here) - the token option, the generated password and the settings endpoints are those of the contract
  server, written from the upstream source named in lab/contract/duplicati_contract.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ansible_module_runner import REPO_ROOT, run_module

sys.path.insert(0, str(REPO_ROOT / "lab" / "contract"))
import duplicati_contract  # noqa: E402  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.integration

PASSWORD = "Web-UI-password-0123456789"
PASSPHRASE = "Backup-passphrase-abcdefghij-0123456789"
S3_SECRET = "S3-secret-key-ZYXWVUT-0123456789"
HOST = "duplicati.example.com.br"
TRIGGER = REPO_ROOT / "roles" / "duplicati" / "files" / "borgstack-duplicati-run.py"


@pytest.fixture()
def server():
    srv = duplicati_contract.start(PASSWORD, HOST, run_seconds=0.3)
    yield srv
    srv.shutdown()
    srv.server_close()


def _args(server: Any, **over: Any) -> dict[str, Any]:
    args = {
        "url": f"http://127.0.0.1:{server.server_address[1]}",
        "host": HOST,
        "password": PASSWORD,
        "name": "BorgStack",
        "description": "Mantido pelo Ansible",
        "sources": ["/source/dumps/", "/source/volumes/borgstack_n8n_data/"],
        "target_url": f"s3://bucket/borgstack?s3-server-name=s3.example.com&auth-username=AK&auth-password={S3_SECRET}",
        "passphrase": PASSPHRASE,
        "options": {"retention-policy": "7D:1D,4W:1W,12M:1M,5Y:1Y", "dblock-size": "50mb"},
    }
    args.update(over)
    return args


def _writes(server: Any, since: int = 0) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in server.calls[since:] if c["method"] != "GET"
            and c["path"] != "/api/v1/auth/login"]


def test_create_then_nothing_to_do_check_mode_only_reads(server):
    check = run_module("borgstack.stack.duplicati_backup", _args(server), check=True, diff=True)
    assert (check.failed, check.changed, check.result["operation"]) == (False, True, "create")
    assert _writes(server) == [] and server.backups == {}

    first = run_module("borgstack.stack.duplicati_backup", _args(server))
    assert (first.failed, first.changed, first.result["operation"]) == (False, True, "create"), first.output
    assert _writes(server) == ["POST /api/v1/backups"]
    (job_id, job), = server.backups.items()
    settings = {s["Name"]: s["Value"] for s in job["Settings"]}
    assert settings == {"encryption-module": "aes", "compression-module": "zip", "passphrase": PASSPHRASE,
                        "dblock-size": "50mb", "--retention-policy": "7D:1D,4W:1W,12M:1M,5Y:1Y"}
    assert job["Sources"] == ["/source/dumps/", "/source/volumes/borgstack_n8n_data/"]
    assert S3_SECRET in job["TargetURL"] and job_id not in server.schedules
    assert first.result["id"] == job_id

    calls = len(server.calls)
    second = run_module("borgstack.stack.duplicati_backup", _args(server))
    assert (second.failed, second.changed, second.result["operation"], second.result["changes"]) == (
        False, False, "none", [])
    assert _writes(server, calls) == []
    again = run_module("borgstack.stack.duplicati_backup", _args(server), check=True)
    assert (again.changed, again.result["operation"]) == (False, "none")


def test_a_changed_secret_is_noticed_although_the_server_masks_it(server):
    run_module("borgstack.stack.duplicati_backup", _args(server))
    # The server never answers the secrets.
    listing = json.dumps(server.masked("1"))
    assert S3_SECRET not in listing and PASSPHRASE not in listing
    new_url = _args(server)["target_url"].replace(S3_SECRET, "New-S3-secret-0123456789")
    calls = len(server.calls)
    check = run_module("borgstack.stack.duplicati_backup", _args(server, target_url=new_url), check=True, diff=True)
    observed = (check.changed, check.result["operation"], check.result["changes"])
    assert observed == (True, "update", ["description or secrets"])
    assert check.result["diff"]["after"]["target_url"] == "<changed>" and _writes(server, calls) == []
    apply = run_module("borgstack.stack.duplicati_backup", _args(server, target_url=new_url))
    assert apply.changed and _writes(server, calls) == ["PUT /api/v1/backup/1"]
    assert "New-S3-secret-0123456789" in server.backups["1"]["TargetURL"]
    new_pass = run_module("borgstack.stack.duplicati_backup",
                          _args(server, target_url=new_url, passphrase="Another-passphrase-0123456789"))
    assert new_pass.changed
    assert {s["Name"]: s["Value"] for s in server.backups["1"]["Settings"]}["passphrase"] == \
        "Another-passphrase-0123456789"
    steady = run_module("borgstack.stack.duplicati_backup",
                        _args(server, target_url=new_url, passphrase="Another-passphrase-0123456789"))
    assert not steady.changed


def test_changes_made_in_the_ui_are_put_back_keeping_the_run_history(server):
    run_module("borgstack.stack.duplicati_backup", _args(server))
    job = server.backups["1"]
    job["Sources"] = ["/source/dumps/"]
    job["Metadata"]["LastBackupFinished"] = "20261126T050000Z"
    server.schedules["1"] = {"ID": 1, "Repeat": "1D", "Time": "2026-11-27T02:00:00Z", "Tags": ["ID=1"]}
    fix = run_module("borgstack.stack.duplicati_backup", _args(server))
    assert fix.changed and fix.result["changes"] == ["sources", "schedule"]
    assert server.backups["1"]["Sources"] == _args(server)["sources"] and "1" not in server.schedules
    assert server.backups["1"]["Metadata"]["LastBackupFinished"] == "20261126T050000Z"
    assert not run_module("borgstack.stack.duplicati_backup", _args(server)).changed


def test_absent_deletes_the_job(server):
    run_module("borgstack.stack.duplicati_backup", _args(server))
    check = run_module("borgstack.stack.duplicati_backup", {**_args(server), "state": "absent"}, check=True)
    assert (check.changed, check.result["operation"]) == (True, "delete") and "1" in server.backups
    gone = run_module("borgstack.stack.duplicati_backup", {**_args(server), "state": "absent"})
    assert gone.changed and server.backups == {}
    assert not run_module("borgstack.stack.duplicati_backup", {**_args(server), "state": "absent"}).changed


def test_failures_name_the_cause(server):
    wrong = run_module("borgstack.stack.duplicati_backup", _args(server, password="not-the-password-000"))
    assert wrong.failed and "Duplicati refused the web password (the operator may have changed it" in \
        wrong.result["msg"]
    host = run_module("borgstack.stack.duplicati_backup", _args(server, host="evil.example.net"))
    assert host.failed and "answered 403: Invalid hostname: evil.example.net" in host.result["msg"]
    assert server.backups == {}


def test_no_secret_in_the_output_even_verbose_with_diff(server):
    out = subprocess.run(
        ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-vvv", "--diff",
         "-e", f"ansible_python_interpreter={sys.executable}", "-m", "borgstack.stack.duplicati_backup",
         "-a", json.dumps(_args(server))], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert "CHANGED" in text
    assert [s for s in (PASSWORD, PASSPHRASE, S3_SECRET) if s in text] == []


def _trigger(server: Any, tmp_path: Path, **over: Any) -> subprocess.CompletedProcess:
    cfg = {"url": f"http://127.0.0.1:{server.server_address[1]}", "host": HOST, "password": PASSWORD,
           "job_name": "BorgStack", "timeout": 30, **over}
    path = tmp_path / "duplicati.json"
    path.write_text(json.dumps(cfg))
    return subprocess.run([sys.executable, str(TRIGGER), "--config", str(path), "--poll", "0.2"],
                          capture_output=True, text=True, check=False, timeout=60)


def test_the_trigger_runs_the_job_and_reports_its_result(server, tmp_path):
    missing = _trigger(server, tmp_path)
    assert missing.returncode == 1 and "no Duplicati job named BorgStack" in missing.stderr
    run_module("borgstack.stack.duplicati_backup", _args(server))
    ok = _trigger(server, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "Duplicati job BorgStack finished" in ok.stdout
    assert "LastBackupFinished" in server.backups["1"]["Metadata"]
    server.fail_runs = "The remote server returned an error: (403) Forbidden."
    failed = _trigger(server, tmp_path)
    assert failed.returncode == 1 and "the Duplicati job failed: The remote server returned an error" in failed.stderr
    assert PASSWORD not in failed.stdout + failed.stderr + ok.stdout + ok.stderr


def test_a_run_with_a_retention_duplicati_cannot_parse_fails(server, tmp_path):
    """What the role's validation prevents: Duplicati reads --retention-policy only when the backup runs."""
    run_module("borgstack.stack.duplicati_backup", _args(server, options={"retention-policy": "7d:1d"}))
    failed = _trigger(server, tmp_path)
    assert failed.returncode == 1 and "the Duplicati job failed" in failed.stderr


# --- The contract server refuses what upstream refuses -----------------------------------------------------------

def _http(server: Any, method: str, path: str, body: Any = None, token: str | None = None,  # noqa: PLR0913
          host: str = HOST, authorization: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.server_address[1]}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Host", host)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, (json.loads(text) if text and text[0] in "[{" else text or None)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode())


def test_the_contract_server_refuses_what_upstream_refuses(server):
    assert _http(server, "GET", "/health", host="anything.example") == (200, "Healthy")
    assert _http(server, "POST", "/api/v1/auth/login", {"Password": PASSWORD}, host="evil.example")[0] == 403
    assert _http(server, "POST", "/api/v1/auth/login", {"Password": PASSWORD}, host="10.1.2.3:8200")[0] == 200
    assert _http(server, "POST", "/api/v1/auth/login", {"Password": "nope"}) == (
        401, {"Error": "Failed to log in", "Code": 401})
    assert _http(server, "GET", "/api/v1/backups")[0] == 401
    token = _http(server, "POST", "/api/v1/auth/login", {"Password": PASSWORD, "RememberMe": False})[1]["AccessToken"]
    job = {"Name": "X", "TargetURL": "file:///mnt/b", "Sources": ["/source/dumps/"],
           "Settings": [{"Name": "encryption-module", "Value": "aes"}]}
    refusals = {
        "no passphrase": (job, "Missing passphrase"),
        "no target": ({**job, "TargetURL": ""}, "Missing a target"),
        "no sources": ({**job, "Sources": []}, "Invalid source list"),
        "placeholder": ({**job, "Settings": [{"Name": "passphrase", "Value": duplicati_contract.PLACEHOLDER}]},
                        "Settings contains password placeholder value"),
    }
    for case, (body, message) in refusals.items():
        assert _http(server, "POST", "/api/v1/backups", {"Backup": body}, token) == (
            400, {"Error": message, "Code": 400}), case
    good = {**job, "Settings": [{"Name": "passphrase", "Value": "p" * 20}]}
    assert _http(server, "POST", "/api/v1/backups", {"Backup": good, "Schedule": {"Repeat": "1m"}}, token) == (
        400, {"Error": "Schedule repetition time must be more than 5 minutes", "Code": 400})
    assert _http(server, "POST", "/api/v1/backups", {"Backup": good}, token) == (200, {"ID": "1", "Temporary": False})
    assert _http(server, "POST", "/api/v1/backups", {"Backup": {**good, "Name": "x"}}, token)[0] == 409
    assert _http(server, "POST", "/api/v1/backups", {"Backup": {**good, "Sources": "/x"}}, token)[0] == 400
    assert _http(server, "GET", "/api/v1/backup/9", token=token) == (404, {"Error": "Backup not found", "Code": 404})
    assert _http(server, "GET", "/api/v1/backup/1", token=token)[1]["Backup"]["Settings"][0]["Value"] == \
        duplicati_contract.PLACEHOLDER
    assert _http(server, "POST", "/api/v1/import", {}, token)[0] == 404


# --- Issue 21 item 6: the play's own token; the web password is the operator's ------------------------------------

API_TOKEN = "Play-owned-token_0123456789abcdefghij"
OPERATOR_PASSWORD = "Operator-chose-this-9876543210"


@pytest.fixture()
def fresh_server():
    """Started as the role starts it now: no --webservice-password (a generated one), the play's token."""
    srv = duplicati_contract.start(None, HOST, run_seconds=0.3, pre_auth_tokens=f"short;bad.token.0123;{API_TOKEN}")
    yield srv
    srv.shutdown()
    srv.server_close()


def _first(server: Any, **over: Any) -> dict[str, Any]:
    return {"url": f"http://127.0.0.1:{server.server_address[1]}", "host": HOST, "token": API_TOKEN,
            "password": PASSWORD, **over}


def _with_token(server: Any, token: str = API_TOKEN) -> dict[str, Any]:
    """The job module's arguments with the play's token in place of the password."""
    args = {key: value for key, value in _args(server).items() if key != "password"}
    return {**args, "token": token}


def _login(server: Any, password: str) -> int:
    return _http(server, "POST", "/api/v1/auth/login", {"Password": password, "RememberMe": False})[0]


def test_an_operator_s_new_password_survives_reruns_and_restarts(fresh_server, tmp_path):
    server = fresh_server
    assert server.autogenerated and _login(server, PASSWORD) == 401
    check = run_module("borgstack.stack.duplicati_first_password", _first(server), check=True, diff=True)
    assert (check.failed, check.changed, check.result["operation"]) == (False, True, "set"), check.output
    assert server.autogenerated and _writes(server) == []
    first = run_module("borgstack.stack.duplicati_first_password", _first(server))
    assert (first.changed, _writes(server)) == (True, ["PUT /api/v1/serversetting/server-passphrase"])
    assert _login(server, PASSWORD) == 200
    job = run_module("borgstack.stack.duplicati_backup", _with_token(server))
    assert job.changed and job.result["operation"] == "create", job.output

    # The operator changes the password as the UI's settings page does, then the server restarts.
    bearer = _http(server, "POST", "/api/v1/auth/login", {"Password": PASSWORD})[1]["AccessToken"]
    assert _http(server, "PUT", "/api/v1/serversetting/server-passphrase", OPERATOR_PASSWORD, bearer) == (200, None)
    server.restart()

    calls = len(server.calls)
    again = run_module("borgstack.stack.duplicati_first_password", _first(server))
    steady = run_module("borgstack.stack.duplicati_backup", _with_token(server))
    assert (again.changed, again.result["operation"], steady.changed, steady.result["operation"]) == (
        False, "none", False, "none"), again.output + steady.output
    assert _writes(server, calls) == []
    # Every call of the play used its token, none the password.
    assert [c["path"] for c in server.calls[calls:] if c["path"] == "/api/v1/auth/login"] == []
    ran = _trigger(server, tmp_path, password=None, token=API_TOKEN)
    assert ran.returncode == 0, ran.stderr
    assert (_login(server, OPERATOR_PASSWORD), _login(server, PASSWORD)) == (200, 401)


def test_a_password_at_start_up_would_undo_the_operator_s(server):
    """Why the role no longer sets DUPLICATI__WEBSERVICE_PASSWORD: every start sets it again (Server/Program.cs)."""
    bearer = _http(server, "POST", "/api/v1/auth/login", {"Password": PASSWORD})[1]["AccessToken"]
    _http(server, "PUT", "/api/v1/serversetting/server-passphrase", OPERATOR_PASSWORD, bearer)
    server.restart()
    assert (_login(server, OPERATOR_PASSWORD), _login(server, PASSWORD)) == (401, 200)


def test_a_wrong_token_names_the_play_s_secret(fresh_server):
    wrong = run_module("borgstack.stack.duplicati_first_password", _first(fresh_server, token="Not-the-token-0123456"))
    assert wrong.failed and "answered 401" in wrong.result["msg"] and "duplicati_api_token" in wrong.result["msg"]
    short = run_module("borgstack.stack.duplicati_backup", _with_token(fresh_server, "short"))
    assert short.failed and "at least 10 characters" in short.result["msg"]
    assert fresh_server.autogenerated and _writes(fresh_server) == []


def test_the_contract_server_takes_tokens_and_passwords_as_upstream_does(fresh_server):
    server = fresh_server
    preauth = f"PreAuth {API_TOKEN}"
    assert _http(server, "GET", "/api/v1/serversettings", authorization=preauth)[1]["autogenerated-passphrase"] == \
        "True"
    # Dropped at start-up (too short, a '.'), the wrong scheme case, an unknown token: all 401.
    for authorization in ("PreAuth short", "PreAuth bad.token.0123", f"preauth {API_TOKEN}", "PreAuth x" * 3):
        assert _http(server, "GET", "/api/v1/serversettings", authorization=authorization)[0] == 401, authorization
    put = "/api/v1/serversetting/server-passphrase"
    assert _http(server, "PUT", put, {"Password": "x"}, authorization=preauth)[0] == 400
    assert _http(server, "PUT", put, "  ", authorization=preauth)[0] == 500
    assert _http(server, "PUT", "/api/v1/serversetting/disable-signin-tokens", "false", authorization=preauth) == (
        400, {"Error": "Cannot update disable-signin-tokens setting", "Code": 400})
    assert server.autogenerated
    assert _http(server, "PUT", put, OPERATOR_PASSWORD, authorization=preauth) == (200, None)
    settings = _http(server, "GET", "/api/v1/serversettings", authorization=preauth)[1]
    assert settings["autogenerated-passphrase"] == "False" and OPERATOR_PASSWORD not in json.dumps(settings)
