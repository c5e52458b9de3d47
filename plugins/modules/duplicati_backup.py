#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: duplicati_backup
short_description: One Duplicati 2.1 backup job, kept through the server's REST API (read, plan, apply)
version_added: 0.1.0
description:
  - Logs in to a Duplicati 2.1 server (C(POST /api/v1/auth/login) with the web password), reads the job named
    O(name) (C(GET /api/v1/backups), C(GET /api/v1/backup/{id})), compares it with the wanted definition and
    creates it (C(POST /api/v1/backups)), updates it (C(PUT /api/v1/backup/{id})) or deletes it
    (C(DELETE /api/v1/backup/{id}), the remote files kept) only when they differ.
  - The server masks secrets when it answers (the passphrase, passwords in the destination URL). To notice a
    changed secret, the job's description ends with a fingerprint - an HMAC-SHA256, keyed with the passphrase, of
    the whole wanted definition - so a second run with the same arguments changes nothing and a new destination
    password or passphrase is a change.
  - The job is encrypted (C(encryption-module=aes), AES-256) with O(passphrase) and has no schedule of its own (a
    schedule found on it is removed); something else starts it (BorgStack's host backup unit, after the dumps).
extends_documentation_fragment:
  - borgstack.stack.attributes
  - borgstack.stack.duplicati
attributes:
  check_mode:
    details:
      - Check mode logs in and reads; it never creates, updates or deletes.
  diff_mode:
    details:
      - The diff shows the name, sources, options and schedule; secrets appear as V(<unchanged>) or V(<changed>).
options:
  token:
    description:
      - A pre-authenticated token of the server (one of its C(--webservice-pre-auth-tokens)), sent in the
        C(Authorization) header with the C(PreAuth) scheme. The play's own credential - the web password stays the
        operator's.
      - One of O(token) or O(password) is required.
    type: str
  password:
    description: The web UI password (logs in with C(POST /api/v1/auth/login)); when O(token) is not given.
    type: str
  name:
    description: Name of the job (unique, case-insensitive, on the server).
    type: str
    required: true
  state:
    description: V(present) creates or updates the job; V(absent) deletes it (its remote files stay).
    type: str
    choices: [present, absent]
    default: present
  description:
    description: Description shown in the UI (the fingerprint is appended).
    type: str
    default: ""
  sources:
    description: Paths inside the container to back up (directories end with C(/)). Required when O(state=present).
    type: list
    elements: str
  target_url:
    description: Destination URL (C(s3://), C(b2://), C(ssh://), C(webdav://), C(file://)...). Required when present.
    type: str
  passphrase:
    description: Passphrase of the AES-256 encryption. Required when O(state=present).
    type: str
  options:
    description:
      - More options of the job, {name - value} without leading dashes (e.g. C(retention-policy), C(dblock-size)).
      - V(dblock-size), V(encryption-module) and V(compression-module) are stored as the UI stores them (without
        dashes), the others as advanced options (C(--name)).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Keep the BorgStack backup job
  borgstack.stack.duplicati_backup:
    url: "http://{{ duplicati_ip }}:8200"
    password: "{{ duplicati_service.secrets.duplicati_web_password }}"
    name: BorgStack
    sources: [/source/dumps/, /source/volumes/borgstack_n8n_data/]
    target_url: "{{ duplicati_destination_url }}"
    passphrase: "{{ duplicati_service.secrets.duplicati_backup_passphrase }}"
    options:
      retention-policy: "7D:1D,4W:1W,12M:1M,5Y:1Y"
      dblock-size: 50mb
  no_log: true
"""

RETURN = r"""
id:
  description: The job's ID on the server (none when absent).
  returned: always
  type: str
  sample: "1"
operation:
  description: What was done (or would be, in check mode) - V(none), V(create), V(update) or V(delete).
  returned: always
  type: str
changes:
  description: What differed (names of fields, never values of secrets).
  returned: always
  type: list
  elements: str
diff:
  description: State before and after (secrets as V(<unchanged>)/V(<changed>)).
  returned: always
  type: dict
"""

import hashlib
import hmac
import json
import urllib.parse

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.borgstack.stack.plugins.module_utils._duplicati import (
    AUTH_ARGUMENT_SPEC,
    Client,
    DuplicatiError,
    run_module,
)

# The options the UI stores without dashes (Duplicati's ngax UI; Runner.ApplyOptions applies both forms).
PLAIN_OPTIONS = ("encryption-module", "compression-module", "dblock-size", "passphrase")
SECRET_SETTINGS = ("passphrase",)
FINGERPRINT_MARK = "borgstack-fingerprint:"
# What the server answers in place of a secret (Library/RestAPI/Database/Connection.cs PASSWORD_PLACEHOLDER).
PASSWORD_PLACEHOLDER = "***************"


def wanted_settings(params: dict) -> list[dict]:
    options = {"encryption-module": "aes", "compression-module": "zip", **(params["options"] or {})}
    options["passphrase"] = params["passphrase"]
    settings = []
    for name in sorted(options):
        value = options[name]
        value = str(value).lower() if isinstance(value, bool) else str(value)
        settings.append({"Filter": "", "Name": name if name in PLAIN_OPTIONS else f"--{name}", "Value": value})
    return settings


def fingerprint(params: dict, settings: list[dict]) -> str:
    canonical = json.dumps({"name": params["name"], "target": params["target_url"], "sources": params["sources"],
                            "settings": settings}, sort_keys=True).encode()
    return hmac.new(params["passphrase"].encode(), canonical, hashlib.sha256).hexdigest()[:32]


def visible(settings: list[dict] | None, secrets_as: str, masked: set | frozenset = frozenset()) -> dict:
    """{name: value} of settings, secrets (and the names in ``masked``) as ``secrets_as``."""
    return {s["Name"]: (secrets_as if s["Name"] in SECRET_SETTINGS or s["Name"] in masked
                        or s.get("Value") == PASSWORD_PLACEHOLDER else s.get("Value"))
            for s in (settings or [])}


def run(module: AnsibleModule) -> dict:
    params = module.params
    client = Client(params["url"], params["host"], params["timeout"])
    client.authenticate(params)
    try:
        current = read_job(client, params["name"])
    except DuplicatiError as exc:
        raise client.explain_401(exc) from exc
    before = {"name": params["name"], "exists": current is not None}
    if current is not None:
        backup = current["Backup"]
        before.update({"sources": backup.get("Sources") or [], "options": visible(backup.get("Settings"), "<set>"),
                       "filters": backup.get("Filters") or [], "schedule": current.get("Schedule") is not None,
                       "target_url": "<set>", "passphrase": "<set>"})
    if params["state"] == "absent":
        return remove_job(module, client, current, before)
    return keep_job(module, client, current, before)


def read_job(client: Client, name: str) -> dict | None:
    """The job named ``name`` (case-insensitive) as the server gives it, or None."""
    listing = client.request("GET", "backups") or []
    found = [entry["Backup"] for entry in listing if entry.get("Backup", {}).get("Name", "").lower() == name.lower()]
    if not found:
        return None
    return client.request("GET", f"backup/{urllib.parse.quote(str(found[0]['ID']))}")


def remove_job(module: AnsibleModule, client: Client, current: dict | None, before: dict) -> dict:
    after = {"name": module.params["name"], "exists": False}
    if current is None:
        return {"changed": False, "id": None, "operation": "none", "changes": [],
                "diff": {"before": before, "after": after}}
    job_id = str(current["Backup"]["ID"])
    if not module.check_mode:
        client.request("DELETE", f"backup/{urllib.parse.quote(job_id)}")
    return {"changed": True, "id": job_id, "operation": "delete", "changes": ["job"],
            "diff": {"before": before, "after": after}}


def job_changes(current: dict | None, params: dict, settings: list[dict], mark: str) -> list[str]:
    """What differs between the job on the server and the wanted one (["job"] when there is none)."""
    if current is None:
        return ["job"]
    changes = []
    backup = current["Backup"]
    if backup.get("Name") != params["name"]:
        changes.append("name")
    if list(backup.get("Sources") or []) != list(params["sources"]):
        changes.append("sources")
    # Any option the server masked is a secret: its change shows in the fingerprint, not here.
    masked = {x["Name"] for x in backup.get("Settings") or [] if x.get("Value") == PASSWORD_PLACEHOLDER}
    if visible(backup.get("Settings"), "<secret>") != visible(settings, "<secret>", masked):
        changes.append("options")
    if backup.get("Filters"):
        changes.append("filters")
    if current.get("Schedule") is not None:
        changes.append("schedule")
    if f"{FINGERPRINT_MARK}{mark}" not in (backup.get("Description") or ""):
        # Same visible fields but another fingerprint: a secret (destination credentials, passphrase) changed.
        changes.append("description or secrets")
    return changes


def keep_job(module: AnsibleModule, client: Client, current: dict | None, before: dict) -> dict:
    params = module.params
    missing = [name for name in ("sources", "target_url", "passphrase") if not params[name]]
    if missing:
        raise DuplicatiError(f"state=present needs {', '.join(missing)}")
    settings = wanted_settings(params)
    mark = fingerprint(params, settings)
    description = f"{params['description']} [{FINGERPRINT_MARK}{mark}]".strip()
    body = {"Backup": {"Name": params["name"], "Description": description, "Tags": [], "TargetURL": params["target_url"],
                       "Sources": list(params["sources"]), "Settings": settings, "Filters": []},
            "Schedule": None}
    changes = job_changes(current, params, settings, mark)
    old_mark = "" if current is None else (current["Backup"].get("Description") or "")
    secret_state = "<changed>" if f"{FINGERPRINT_MARK}{mark}" not in old_mark else "<unchanged>"
    after = {"name": params["name"], "exists": True, "sources": list(params["sources"]),
             "options": visible(settings, "<set>"), "filters": [], "schedule": False,
             "target_url": secret_state, "passphrase": secret_state}
    result = {"changed": bool(changes), "changes": changes, "diff": {"before": before, "after": after}}
    if current is None:
        result["operation"] = "create"
        result["id"] = None
        if not module.check_mode:
            created = client.request("POST", "backups", body)
            result["id"] = str((created or {}).get("ID"))
    elif changes:
        job_id = str(current["Backup"]["ID"])
        result.update(operation="update", id=job_id)
        if not module.check_mode:
            # Keep what the server records about past runs (last backup time, sizes).
            body["Backup"]["Metadata"] = current["Backup"].get("Metadata") or {}
            client.request("PUT", f"backup/{urllib.parse.quote(job_id)}", body)
    else:
        result.update(operation="none", id=str(current["Backup"]["ID"]))
    return result


# The options holding secrets are no_log: Ansible masks them in the task's arguments, result and diff.
ARGUMENT_SPEC = {
    **AUTH_ARGUMENT_SPEC,
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "description": {"type": "str", "default": ""},
    "sources": {"type": "list", "elements": "str"},
    "target_url": {"type": "str", "no_log": True},
    "passphrase": {"type": "str", "no_log": True},
    "options": {"type": "dict", "default": {}},
}
SECRET_OPTIONS = frozenset(name for name, spec in ARGUMENT_SPEC.items() if spec.get("no_log"))


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_one_of=[("token", "password")], mutually_exclusive=[("token", "password")])
    run_module(module, run)


if __name__ == "__main__":
    main()
