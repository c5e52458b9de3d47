# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by the borgstack.stack.duplicati role: do not edit here (Ansible overwrites it).
"""BorgStack: run the Duplicati backup job now and wait for its result.

Started by systemd after the host backup job's dumps succeeded (ExecStartPost of borgstack-backup.service, a
drop-in the duplicati role installs), so the job always sends a complete dump set. Reads its settings (the
container, the play's pre-authenticated token, the job's name) from a root-only JSON file - never from its command
line - finds the container's address on the stack's network (docker inspect), calls Duplicati's REST API with
"Authorization: PreAuth <token>" (the server's --webservice-pre-auth-tokens: the play's own credential, so the
operator's web password can change freely; a configuration with a "password" instead logs in with
POST /api/v1/auth/login), starts the job (POST /api/v1/backup/{id}/run), waits until it is no longer active
(GET /api/v1/backup/{id}/isactive) and reads the job's Metadata: success when LastBackupFinished is from this run,
failure (exit 1, the reason on stderr, so in the journal and in the unit's state) when LastErrorDate is, or when
the run does not end within the timeout.

Usage: borgstack-duplicati-run [--config PATH]
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional


class RunError(Exception):
    """The job could not be started or did not succeed: the message says why."""


def container_url(cfg: Dict[str, Any]) -> str:
    if cfg.get("url"):
        return str(cfg["url"]).rstrip("/")
    proc = subprocess.run(["docker", "inspect", cfg["container"]], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RunError(f"the Duplicati container {cfg['container']} is not there: {proc.stderr.strip()}")
    networks = json.loads(proc.stdout)[0]["NetworkSettings"]["Networks"]
    address = (networks.get(cfg["network"]) or {}).get("IPAddress")
    if not address:
        raise RunError(f"the Duplicati container is not on the network {cfg['network']} (is it running?)")
    return f"http://{address}:{cfg['port']}"


class Api:
    def __init__(self, base: str, host: Optional[str], timeout: int = 30) -> None:
        self.base, self.host, self.timeout = base + "/api/v1/", host, timeout
        self.authorization: Optional[str] = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if self.host:
            request.add_header("Host", self.host)
        if self.authorization:
            request.add_header("Authorization", self.authorization)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - our container
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise RunError(f"{method} /api/v1/{path} answered {exc.code}: "
                           f"{exc.read().decode(errors='replace')[:300]}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RunError(f"Duplicati does not answer at {self.base}: {exc}") from exc
        return json.loads(text) if text.strip() else None


def parse_date(text: Optional[str]) -> Optional[datetime.datetime]:
    """Duplicati's serialized dates (yyyyMMdd'T'HHmmssZ, Library/Utility/Utility.cs)."""
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def run_job(cfg: Dict[str, Any], poll: float = 5.0) -> str:
    api = Api(container_url(cfg), cfg.get("host"))
    if cfg.get("token"):
        api.authorization = f"PreAuth {cfg['token']}"
    else:
        answer = api.call("POST", "auth/login", {"Password": cfg["password"], "RememberMe": False})
        token = (answer or {}).get("AccessToken")
        if not token:
            raise RunError("Duplicati's login answer has no AccessToken")
        api.authorization = f"Bearer {token}"
    jobs = [e["Backup"] for e in api.call("GET", "backups") or []
            if e["Backup"]["Name"].lower() == cfg["job_name"].lower()]
    if not jobs:
        raise RunError(f"no Duplicati job named {cfg['job_name']} (run the play: ansible-playbook site.yml "
                       f"--tags duplicati)")
    job_id = urllib.parse.quote(str(jobs[0]["ID"]))
    # Whole seconds, as Duplicati records them.
    started = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    api.call("POST", f"backup/{job_id}/run")
    print(f"Duplicati job {cfg['job_name']} (ID {job_id}) started", flush=True)
    deadline = time.monotonic() + int(cfg.get("timeout", 21600))
    while True:
        time.sleep(poll)
        active = (api.call("GET", f"backup/{job_id}/isactive") or {}).get("Active")
        metadata = (api.call("GET", f"backup/{job_id}") or {}).get("Backup", {}).get("Metadata") or {}
        finished = parse_date(metadata.get("LastBackupFinished"))
        failed = parse_date(metadata.get("LastErrorDate"))
        if not active and failed is not None and failed >= started:
            raise RunError(f"the Duplicati job failed: {metadata.get('LastErrorMessage', '(no message)')}")
        if not active and finished is not None and finished >= started:
            return (f"Duplicati job {cfg['job_name']} finished: {metadata.get('SourceSizeString', '?')} examined, "
                    f"finished {metadata['LastBackupFinished']}")
        if time.monotonic() > deadline:
            raise RunError(f"the Duplicati job did not finish within {cfg.get('timeout', 21600)} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--config", default="/etc/borgstack/duplicati.json")
    parser.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        cfg = json.loads(Path(args.config).read_text())
        print(run_job(cfg, args.poll), flush=True)
    except (RunError, OSError, KeyError, ValueError) as exc:
        print(f"borgstack-duplicati-run: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
