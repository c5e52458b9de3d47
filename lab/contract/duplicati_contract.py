# SPDX-License-Identifier: GPL-3.0-or-later
"""Contract server standing in for Duplicati 2.1.1.102's REST API v1 (Python 3 stdlib only).

No Duplicati image can be had on the lab machine. This is NOT Duplicati: it accepts only the requests the upstream
source at tag v2.1.1.102_canary_2025-09-23 defines for the calls BorgStack makes, and answers as that source does
(facts, with the file each comes from):

- Host header (WebserverCore/Middlewares/HostnameFilter.cs, Services/HostnameValidator.cs): a name in the allowed
  list (DUPLICATI__WEBSERVICE_ALLOWED_HOSTNAMES, ';'-separated) or localhost, 127.0.0.1, [::1],
  localhost.localdomain, or any IP address; else 403 ``{"Error": "Invalid hostname: <host>", "Code": 403}``.
- Errors (WebserverCore/DuplicatiWebserver.cs exception handler): ``{"Error": <message>, "Code": <status>}``.
- ``POST /api/v1/auth/login`` ``{Password, RememberMe?}`` (Endpoints/V1/Auth.cs, Dto/LoginInputDto.cs) ->
  ``{AccessToken, RefreshNonce}``; a wrong password 401 "Failed to log in". Every other call needs
  ``Authorization: Bearer <AccessToken>`` (RequireAuthorization) or answers 401.
- ``GET /api/v1/backups`` -> ``[{Backup, Schedule}]`` (Endpoints/V1/Backups.cs, Services/BackupListService.cs).
- ``POST /api/v1/backups`` ``{Backup: {Name, Description, Tags, TargetURL, Sources, Settings[{Filter, Name,
  Value}], Filters[{Order, Include, Expression}], Metadata}, Schedule}`` (Dto/BackupAndScheduleInputDto.cs) ->
  ``{ID, Temporary}``; a name already used (case-insensitive) 409; Connection.ValidateBackup's refusals 400 with its
  messages (Library/RestAPI/Database/Connection.cs).
- ``GET /api/v1/backup/{id}`` -> ``{Schedule, Backup, DisplayNames}`` with secrets masked as ``***************``
  (Backup.MaskSensitiveInformation: settings and URL query values named as a password option); 404
  "Backup not found".
- ``PUT /api/v1/backup/{id}`` (Endpoints/V1/Backup/BackupPutDelete.cs): masked values are taken from the stored
  job (UnmaskSensitiveInformation), then the same checks as POST.
- ``DELETE /api/v1/backup/{id}`` -> ``{Status, Reason, ID}``.
- ``POST /api/v1/backup/{id}/run`` -> ``{Status: "OK", ID: <task>}`` (Endpoints/V1/Backup/BackupPost.cs); the run
  is simulated: it parses the job's options as the backup would (``--retention-policy`` by
  Options.RetentionPolicy/RetentionPolicyValue.CreateFromString and Timeparser.ParseTimeSpan), then records
  ``LastBackupStarted``/``LastBackupFinished`` in the job's Metadata, or ``LastErrorDate``/``LastErrorMessage``
  on a failure (Library/RestAPI/Runner.cs), dates as ``yyyyMMdd'T'HHmmssZ``.
- ``GET /api/v1/backup/{id}/isactive`` -> ``{Status: "OK", Active}``.
- ``GET /health`` -> ``Healthy`` (App.MapHealthChecks, no login, no host filter).

Anything else answers 404 and is recorded as rejected. Every call is recorded in ``server.calls``. What is
knowingly simplified: the token never expires; the run copies nothing (it only checks the options and records the
result); only the password options of the five destinations BorgStack accepts are masked (auth-password,
aws-secret-access-key, b2-accountkey, ssh-key) plus ``passphrase``.

Run alone: ``python3 duplicati_contract.py --port 8200 --password-file F --allowed-hostnames duplicati.example``.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import re
import secrets
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PLACEHOLDER = "***************"
PASSWORD_OPTIONS = {"passphrase", "auth-password", "aws-secret-access-key", "b2-accountkey", "ssh-key"}
DEFAULT_HOSTNAMES = {"localhost", "127.0.0.1", "[::1]", "localhost.localdomain"}
TIMESPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "D": 86400, "W": 7 * 86400, "M": 30 * 86400, "Y": 365 * 86400}


def serialize_date(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def parse_timespan(text: str) -> int:
    """Seconds of a Duplicati time span, as Library/Utility/Timeparser.ParseTimeSpan reads it."""
    if not text:
        return 0
    if re.fullmatch(r"\s*[+-]?\d+\s*", text):
        return int(text)
    total, previous = 0, 0
    for match in re.finditer(r"[smhDWMY]", text):
        if match.start() == 0:
            break
        partial = text[previous:match.start()].strip()
        if not re.fullmatch(r"[+-]?\d+", partial):
            raise ValueError(f"Invalid integer: {partial}")
        total += int(partial) * TIMESPAN_UNITS[match.group()]
        previous = match.start() + 1
    if text[previous:].strip():
        raise ValueError(f"Unparsed data: {text[previous:]}")
    return total


def parse_retention_policy(text: str) -> list[tuple[float, float]]:
    """Options.RetentionPolicy: ',' separated 'timeframe:interval' pairs, U = unlimited, no negative values."""
    policy = []
    for item in [x for x in text.split(",") if x]:
        parts = item.split(":")
        if len(parts) < 2:
            raise ValueError(f"Index was outside the bounds of the array ('{item}')")
        frame = float("inf") if parts[0].upper() == "U" else parse_timespan(parts[0])
        interval = 0 if parts[1].upper() == "U" else parse_timespan(parts[1])
        if frame < 0 or interval < 0:
            raise ValueError(f"The timeframe and interval cannot be negative: '{item}'")
        policy.append((frame, interval))
    return policy


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _mask_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, PLACEHOLDER if k in PASSWORD_OPTIONS else v)
             for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="*")))


def _unmask_url(url: str, previous: str) -> str:
    old = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(previous).query, keep_blank_values=True))
    parts = urllib.parse.urlsplit(url)
    query = [(k, old.get(k, v) if v == PLACEHOLDER else v)
             for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _check_type(where: str, value: Any, kinds: tuple, nullable: bool = True) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) and bool not in kinds:
        raise HttpError(400, f"The JSON value could not be converted: {where}")
    if not isinstance(value, kinds):
        raise HttpError(400, f"The JSON value could not be converted: {where}")


def read_backup_input(body: Any) -> tuple[dict, dict | None]:
    """BackupAndScheduleInputDto as System.Text.Json binds it (unknown properties ignored, wrong types 400)."""
    if not isinstance(body, dict) or not isinstance(body.get("Backup"), dict):
        raise HttpError(400, "JSON deserialization: missing required property 'Backup'")
    raw = body["Backup"]
    for key, kinds in (("Name", (str,)), ("Description", (str,)), ("DBPath", (str,)), ("TargetURL", (str,)),
                       ("Tags", (list,)), ("Sources", (list,)), ("Settings", (list,)), ("Filters", (list,)),
                       ("Metadata", (dict,))):
        _check_type(f"$.Backup.{key}", raw.get(key), kinds)
    settings = []
    for index, item in enumerate(raw.get("Settings") or []):
        _check_type(f"$.Backup.Settings[{index}]", item, (dict,), nullable=False)
        if not isinstance(item.get("Name"), str):
            raise HttpError(400, f"JSON deserialization: missing required property 'Name' ($.Backup.Settings[{index}])")
        _check_type(f"$.Backup.Settings[{index}].Value", item.get("Value"), (str,))
        _check_type(f"$.Backup.Settings[{index}].Filter", item.get("Filter"), (str,))
        settings.append({"Filter": item.get("Filter"), "Name": item["Name"], "Value": item.get("Value")})
    filters = []
    for index, item in enumerate(raw.get("Filters") or []):
        _check_type(f"$.Backup.Filters[{index}]", item, (dict,), nullable=False)
        _check_type(f"$.Backup.Filters[{index}].Order", item.get("Order", 0), (int,), nullable=False)
        _check_type(f"$.Backup.Filters[{index}].Include", item.get("Include", False), (bool,), nullable=False)
        filters.append({"Order": item.get("Order", 0), "Include": item.get("Include", False),
                        "Expression": item.get("Expression")})
    backup = {"Name": raw.get("Name") or "", "Description": raw.get("Description") or "", "Tags": raw.get("Tags") or [],
              "TargetURL": raw.get("TargetURL") or "", "Sources": raw.get("Sources") or [], "Settings": settings,
              "Filters": filters, "Metadata": raw.get("Metadata")}
    schedule = body.get("Schedule")
    _check_type("$.Schedule", schedule, (dict,))
    return backup, schedule


def validate_backup(backup: dict, schedule: dict | None) -> str | None:
    """Connection.ValidateBackup (the checks and messages of the upstream source)."""
    if not backup["Name"].strip():
        return "Missing a name"
    if not backup["TargetURL"].strip():
        return "Missing a target"
    if PLACEHOLDER in backup["TargetURL"]:
        return "TargetURL contains password placeholder value"
    if any(s["Value"] == PLACEHOLDER for s in backup["Settings"]):
        return "Settings contains password placeholder value"
    if not backup["Sources"] or any(not isinstance(x, str) or not x.strip() for x in backup["Sources"]):
        return "Invalid source list"
    disabled, passphrase, gpg = False, "", False
    for setting in backup["Settings"]:
        name, value = setting["Name"].lower(), setting["Value"] or ""
        if name == "--no-encryption":
            disabled = not value.strip() or value.strip().lower() in ("1", "on", "true", "yes")
        elif name == "passphrase":
            passphrase = value
        elif name == "keep-versions":
            if not re.fullmatch(r"\d+", value) or int(value) <= 0:
                return "Retention value must be a positive integer"
        elif name == "keep-time":
            try:
                if parse_timespan(value) <= 300:
                    return "Retention value must be more than 5 minutes"
            except ValueError:
                return "Retention value must be a valid timespan"
        elif name == "--prefix" and "-" in value:
            return "The prefix cannot contain hyphens (-)"
        elif name == "--gpg-encryption-command":
            gpg = value.lower() == "--encrypt"
    if not disabled and not gpg and not passphrase.strip():
        return "Missing passphrase"
    if schedule is not None:
        try:
            if parse_timespan(schedule.get("Repeat") or "") <= 300:
                return "Schedule repetition time must be more than 5 minutes"
        except ValueError:
            return "Schedule repetition value must be a valid timespan"
    return None


class DuplicatiContract(ThreadingHTTPServer):
    """The server: its state (jobs, schedules, tokens), the calls received and the run simulation."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], password: str, allowed_hostnames: str = "",
                 run_seconds: float = 0.3) -> None:
        super().__init__(address, Handler)
        self.password = password
        self.allowed = {h for h in allowed_hostnames.split(";") if h} | DEFAULT_HOSTNAMES
        self.run_seconds = run_seconds
        self.tokens: set[str] = set()
        self.backups: dict[str, dict] = {}
        self.schedules: dict[str, dict] = {}
        self.active: set[str] = set()
        self.calls: list[dict] = []
        self.fail_runs: str | None = None
        self.next_id = 1
        self.next_task = 1
        self.lock = threading.Lock()

    # --- what the endpoints do ----------------------------------------------------------------------------------
    def host_allowed(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if host.startswith("["):
            name = host.split("]")[0] + "]"
        if "*" in self.allowed or name.lower() in {h.lower() for h in self.allowed}:
            return True
        try:
            ipaddress.ip_address(name.strip("[]"))
            return True
        except ValueError:
            return False

    def masked(self, backup_id: str) -> dict:
        stored = self.backups[backup_id]
        return {"ID": backup_id, "ExternalID": None, "Name": stored["Name"], "Description": stored["Description"],
                "Tags": stored["Tags"], "TargetURL": _mask_url(stored["TargetURL"]),
                "DBPath": f"/data/{backup_id}.sqlite", "DBPathExists": False, "Sources": stored["Sources"],
                "Settings": [{**s, "Value": PLACEHOLDER if s["Name"].lstrip("-") in PASSWORD_OPTIONS else s["Value"],
                              "Argument": None} for s in stored["Settings"]],
                "Filters": stored["Filters"], "Metadata": dict(stored["Metadata"] or {}),
                "IsTemporary": False, "IsUnencryptedOrPassphraseStored": False}

    def save(self, backup_id: str | None, backup: dict, schedule: dict | None) -> str:
        with self.lock:
            if any(b["Name"].lower() == backup["Name"].lower() and i != backup_id for i, b in self.backups.items()):
                raise HttpError(409, f"There already exists a backup with the name: {backup['Name']}")
            if backup_id is not None:
                previous = self.backups[backup_id]
                backup["TargetURL"] = _unmask_url(backup["TargetURL"], previous["TargetURL"])
                old = {s["Name"].lower(): s["Value"] for s in previous["Settings"]}
                for setting in backup["Settings"]:
                    if setting["Value"] == PLACEHOLDER:
                        if setting["Name"].lower() not in old:
                            raise HttpError(500, f"Unable to save backup or schedule: Cannot unmask setting "
                                                 f"'{setting['Name']}' because it did not exist in the previous "
                                                 f"configuration.")
                        setting["Value"] = old[setting["Name"].lower()]
            error = validate_backup(backup, schedule)
            if error:
                raise HttpError(400, error)
            if backup_id is None:
                backup_id = str(self.next_id)
                self.next_id += 1
                backup["Metadata"] = backup["Metadata"] or {}
            self.backups[backup_id] = backup
            if schedule is None:
                self.schedules.pop(backup_id, None)
            else:
                self.schedules[backup_id] = {**schedule, "Tags": [f"ID={backup_id}"]}
            return backup_id

    def start_run(self, backup_id: str) -> int:
        with self.lock:
            task = self.next_task
            self.next_task += 1
            self.active.add(backup_id)
        threading.Thread(target=self._run, args=(backup_id,), daemon=True).start()
        return task

    def _run(self, backup_id: str) -> None:
        started = datetime.now(timezone.utc)
        time.sleep(self.run_seconds)
        backup = self.backups[backup_id]
        options = {s["Name"].lstrip("-").lower(): s["Value"] or "" for s in backup["Settings"]}
        error = self.fail_runs
        if error is None:
            try:
                parse_retention_policy(options.get("retention-policy", ""))
            except ValueError as exc:
                error = str(exc)
        with self.lock:
            metadata = backup["Metadata"]
            if error:
                metadata["LastErrorDate"] = serialize_date(datetime.now(timezone.utc))
                metadata["LastErrorMessage"] = error
            else:
                # Nothing is copied: the sizes say so.
                metadata.update(SourceFilesSize="0", SourceFilesCount="0", SourceSizeString="0 bytes")
                metadata["LastBackupStarted"] = serialize_date(started)
                metadata["LastBackupFinished"] = serialize_date(datetime.now(timezone.utc))
            self.active.discard(backup_id)


class Handler(BaseHTTPRequestHandler):
    server: DuplicatiContract
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload.encode() if isinstance(payload, str) and content_type != "application/json" else \
            json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        call = {"method": method, "path": path, "host": self.headers.get("Host"), "status": None, "rejected": None}
        self.server.calls.append(call)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<invalid json>"
        call["body_keys"] = sorted(body) if isinstance(body, dict) else None
        try:
            status, payload = self._route(method, path, body)
            call["status"] = status
            if status == 200 and path == "/health":
                self._send(status, payload, "text/plain")
            else:
                self._send(status, payload)
        except HttpError as exc:
            call["status"], call["rejected"] = exc.status, str(exc)
            self._send(exc.status, {"Error": str(exc), "Code": exc.status})

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        srv = self.server
        if method == "GET" and path == "/health":
            return 200, "Healthy"
        if not path.startswith("/api/v1/"):
            raise HttpError(404, f"Not found: {method} {path}")
        if not srv.host_allowed(self.headers.get("Host") or ""):
            raise HttpError(403, f"Invalid hostname: {(self.headers.get('Host') or '').rsplit(':', 1)[0]}")
        route = path[len("/api/v1/"):]
        if method == "POST" and route == "auth/login":
            if not isinstance(body, dict) or not isinstance(body.get("Password"), str):
                raise HttpError(400, "JSON deserialization: missing required property 'Password'")
            _check_type("$.RememberMe", body.get("RememberMe"), (bool,))
            if not secrets.compare_digest(body["Password"], srv.password):
                raise HttpError(401, "Failed to log in")
            token = secrets.token_urlsafe(24)
            srv.tokens.add(token)
            return 200, {"AccessToken": token, "RefreshNonce": None}
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in srv.tokens:
            raise HttpError(401, "Unauthorized")
        if method == "GET" and route == "backups":
            return 200, [{"Backup": srv.masked(i), "Schedule": srv.schedules.get(i)} for i in srv.backups]
        if method == "POST" and route == "backups":
            backup, schedule = read_backup_input(body)
            return 200, {"ID": srv.save(None, backup, schedule), "Temporary": False}
        match = re.fullmatch(r"backup/([^/]+)(/run|/isactive)?", route)
        if match is None:
            raise HttpError(404, f"Not found: {method} {path}")
        backup_id, action = urllib.parse.unquote(match.group(1)), match.group(2)
        if backup_id not in srv.backups:
            raise HttpError(404, "Backup not found")
        if action is None and method == "GET":
            return 200, {"Schedule": srv.schedules.get(backup_id), "Backup": srv.masked(backup_id),
                         "DisplayNames": {}}
        if action is None and method == "PUT":
            backup, schedule = read_backup_input(body)
            srv.save(backup_id, backup, schedule)
            return 200, None
        if action is None and method == "DELETE":
            with srv.lock:
                del srv.backups[backup_id]
                srv.schedules.pop(backup_id, None)
                srv.next_task += 1
                return 200, {"Status": "OK", "Reason": None, "ID": srv.next_task - 1}
        if action == "/run" and method == "POST":
            return 200, {"Status": "OK", "ID": srv.start_run(backup_id)}
        if action == "/isactive" and method == "GET":
            return 200, {"Status": "OK", "Active": backup_id in srv.active}
        raise HttpError(405, f"Method not allowed: {method} {path}")

    def do_GET(self) -> None:  # noqa: N802 - the base class's names
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


def start(password: str, allowed_hostnames: str = "", port: int = 0, bind: str = "127.0.0.1",
          run_seconds: float = 0.3) -> DuplicatiContract:
    """A contract server serving in a background thread (port 0: any free port, see ``server_address``)."""
    server = DuplicatiContract((bind, port), password, allowed_hostnames, run_seconds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--allowed-hostnames", default="")
    args = parser.parse_args()
    with open(args.password_file, encoding="utf-8") as handle:
        password = handle.read().strip()
    DuplicatiContract((args.bind, args.port), password, args.allowed_hostnames).serve_forever()


if __name__ == "__main__":
    main()
