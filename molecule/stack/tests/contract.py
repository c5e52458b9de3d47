# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the lab's contract servers (Evolution API 2.2.3 and Chatwoot 4.6.0 stand-ins) inside a lab host, and talk to
them from a test.

The image ``borgstack-lab/contract:3`` (lab/build-images.sh) runs on the lab host's Docker engine, on the stack's
internal network, under the host names the stack uses for the real applications (``borgstack-evolution-api`` port
8080, ``borgstack-chatwoot`` port 3000), so n8n reaches it exactly as it would reach them. What the servers accept
and answer is written in lab/contract/evolution.json and chatwoot.json (facts from upstream); see
lab/contract/contract_server.py. They are not the applications: a test passing against them proves the workflows
speak the documented API, not that Evolution API or Chatwoot run.

Usage (``lab`` is the lab host's container name, e.g. the molecule inventory's ``ansible_host``)::

    import contract
    server = contract.start(lab, env={"EVOLUTION_API_KEY": key, "CHATWOOT_API_TOKEN": token,
                                      "CHATWOOT_WEBHOOK_URL": "http://borgstack-n8n:5678/webhook/borgstack/chatwoot"})
    status, body = server.post_to_n8n("/webhook/borgstack/evolution",
                                      contract.evolution_messages_upsert("5511987654321", "Olá"))
    server.wait_for(lambda s: s.state()["chatwoot"]["messages"], timeout=30)
    server.calls(service="chatwoot"); server.rejected(); server.fault("chatwoot", "POST", "/contacts$", 500)
    contract.stop(lab)

Nothing here needs curl on the lab host or in the container: every request to the control API (and to n8n) is made
by ``python3`` inside the contract container, through ``docker exec <lab> docker exec -i borgstack-contract``; the
request goes in on stdin, so no secret is on a command line. The secrets reach the server as files
(``*_FILE``), not as environment variables, so they are not in ``docker inspect`` either.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

_LAB_CONTRACT = Path(__file__).resolve().parents[3] / "lab" / "contract"
sys.path.insert(0, str(_LAB_CONTRACT))
# pylint: disable=wrong-import-position,import-error
from contract_server import (  # noqa: E402,F401  (re-exported for the tests)
    chatwoot_message_created,
    evolution_connection_update,
    evolution_messages_update,
    evolution_messages_upsert,
)

__all__ = ["ALIASES", "IMAGE", "NAME", "NETWORK", "Contract", "ContractError", "chatwoot_message_created",
           "evolution_connection_update", "evolution_messages_update", "evolution_messages_upsert", "load_image", "post_to_n8n", "stale_sources", "start",
           "stop"]
# BORGSTACK_CONTRACT_IMAGE: another tag of the same image (a developer testing a changed contract beside others).
IMAGE = os.environ.get("BORGSTACK_CONTRACT_IMAGE") or "borgstack-lab/contract:3"
NAME = "borgstack-contract"
NETWORK = "borgstack_internal"
ALIASES = ("borgstack-evolution-api", "borgstack-chatwoot")
N8N_URL = "http://borgstack-n8n:5678"
SECRETS_DIR = "/opt/borgstack-lab-contract"
SECRET_VARS = ("EVOLUTION_API_KEY", "CHATWOOT_API_TOKEN")
CONTAINER_UID = 10001

# Runs inside the contract container: one HTTP request described by the JSON on stdin, the answer as JSON on stdout.
_REQUEST_SCRIPT = r"""
import json, sys, urllib.error, urllib.request
spec = json.load(sys.stdin)
data = None
headers = dict(spec.get("headers") or {})
if spec.get("body") is not None:
    data = json.dumps(spec["body"]).encode()
    headers.setdefault("Content-Type", "application/json")
req = urllib.request.Request(spec["url"], data=data, headers=headers, method=spec.get("method", "GET"))
try:
    with urllib.request.urlopen(req, timeout=spec.get("timeout", 30)) as resp:
        status, hdrs, raw = resp.status, dict(resp.headers), resp.read()
except urllib.error.HTTPError as exc:
    status, hdrs, raw = exc.code, dict(exc.headers), exc.read()
except (urllib.error.URLError, OSError) as exc:
    print(json.dumps({"status": None, "headers": {}, "body": None, "error": str(exc)}))
    sys.exit(0)
text = raw.decode("utf-8", "replace")
try:
    body = json.loads(text)
except ValueError:
    body = text
print(json.dumps({"status": status, "headers": hdrs, "body": body, "error": None}))
"""


class ContractError(RuntimeError):
    """The contract container could not be started or reached."""


def _run(args: list[str], *, stdin: bytes | str | None = None, check: bool = True, timeout: int = 120
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, input=stdin.encode() if isinstance(stdin, str) else stdin, capture_output=True,
                          check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise ContractError(f"{shlex.join(args[:6])}... failed ({proc.returncode}): "
                            f"{proc.stderr.decode(errors='replace').strip()}")
    return proc


def _in_lab(lab: str, *args: str, stdin: bytes | str | None = None, check: bool = True, timeout: int = 120
            ) -> subprocess.CompletedProcess:
    interactive = ["-i"] if stdin is not None else []
    return _run(["docker", "exec", *interactive, lab, *args], stdin=stdin, check=check, timeout=timeout)


SOURCES = ("contract_server.py", "evolution.json", "chatwoot.json")


def stale_sources(image: str = IMAGE) -> list[str]:
    """The files of lab/contract/ whose copy in ``image`` differs from the checkout (empty: the image is current)."""
    stale = []
    for source in SOURCES:
        inside = _run(["docker", "run", "--rm", "--entrypoint", "cat", image, f"/opt/contract/{source}"], check=False)
        if inside.returncode != 0 or inside.stdout != (_LAB_CONTRACT / source).read_bytes():
            stale.append(source)
    return stale


def load_image(lab: str, image: str = IMAGE) -> bool:
    """Load ``image`` from this machine into the lab host's engine unless it has the same image ID; True if loaded.

    Refuses an image built from other sources than the checkout's lab/contract/ (rebuild it first)."""
    local = _run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False)
    if local.returncode != 0:
        raise ContractError(f"image {image} is missing on this machine: run lab/build-images.sh contract")
    stale = stale_sources(image)
    if stale:
        raise ContractError(f"image {image} holds other {', '.join(stale)} than lab/contract/: run "
                            "lab/build-images.sh contract")
    there = _in_lab(lab, "docker", "image", "inspect", "--format", "{{.Id}}", image, check=False)
    if there.returncode == 0 and there.stdout.strip() == local.stdout.strip():
        return False
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(["docker", "exec", "-i", lab, "docker", "load"], stdin=save.stdout, capture_output=True,
                              check=False, timeout=600)
    finally:
        if save.stdout:
            save.stdout.close()
        save.wait(timeout=600)
    if load.returncode != 0 or save.returncode != 0:
        raise ContractError(f"loading {image} into {lab} failed: {load.stderr.decode(errors='replace').strip()}")
    return True


def start(lab: str, network: str = NETWORK, aliases: Iterable[str] = ALIASES, env: dict[str, str] | None = None,
          *, name: str = NAME, image: str = IMAGE, timeout: float = 60.0) -> "Contract":
    """Start (or restart) the contract servers in lab host ``lab`` on ``network`` under ``aliases``.

    ``env``: EVOLUTION_API_KEY and CHATWOOT_API_TOKEN (required; written to root-owned 0400 files on the lab host
    and mounted read-only, never passed as environment), CHATWOOT_ACCOUNT_ID, CHATWOOT_INBOX_ID, EVOLUTION_INSTANCE,
    CHATWOOT_WEBHOOK_URL (where the fake Chatwoot sends message_created, e.g.
    ``http://borgstack-n8n:5678/webhook/borgstack/chatwoot``). A container of the same name is replaced.
    Returns a :class:`Contract` client once the control API answers.
    """
    env = dict(env or {})
    missing = [var for var in SECRET_VARS if not env.get(var)]
    if missing:
        raise ContractError(f"start() needs {', '.join(missing)} in env")
    load_image(lab, image)
    _in_lab(lab, "docker", "rm", "-f", name, check=False)
    _in_lab(lab, "install", "-d", "-m", "0700", "-o", "root", "-g", "root", SECRETS_DIR)
    args = ["docker", "run", "-d", "--name", name, "--network", network, "--restart", "no",
            "--label", "org.borgstack.lab=contract-server", "--memory", "128m"]
    for alias in aliases:
        args += ["--network-alias", alias]
    for var in SECRET_VARS:
        path = f"{SECRETS_DIR}/{var.lower()}"
        # The value goes in on stdin; the file belongs to the container's user, mode 0400, in a root-only directory.
        _in_lab(lab, "sh", "-c", f"umask 077 && cat > {path} && chown {CONTAINER_UID}:{CONTAINER_UID} {path} "
                f"&& chmod 0400 {path}", stdin=env.pop(var))
        args += ["--mount", f"type=bind,source={path},target=/run/secrets/{var.lower()},readonly",
                 "--env", f"{var}_FILE=/run/secrets/{var.lower()}"]
    for key, value in sorted(env.items()):
        args += ["--env", f"{key}={value}"]
    _in_lab(lab, *args, image)
    server = Contract(lab, name)
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = server.control("GET", "/_health", check=False)
        if last.get("status") == 200:
            return server
        time.sleep(0.5)
    logs = _in_lab(lab, "docker", "logs", "--tail", "30", name, check=False)
    raise ContractError(f"the contract server did not answer within {timeout:.0f}s: {last}; logs: "
                        f"{(logs.stdout + logs.stderr).decode(errors='replace')}")


def stop(lab: str, name: str = NAME) -> None:
    """Remove the contract container and its secret files from the lab host."""
    _in_lab(lab, "docker", "rm", "-f", name, check=False)
    _in_lab(lab, "rm", "-rf", SECRETS_DIR, check=False)


class Contract:
    """Client of a running contract server (its control API on port 9000, reached from inside its container)."""

    def __init__(self, lab: str, name: str = NAME) -> None:
        self.lab, self.name = lab, name

    # ---- raw requests ----

    def request(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> dict[str, Any]:
        """One HTTP request made from inside the contract container: ``{status, headers, body, error}``."""
        spec = {"method": method, "url": url, "body": body, "headers": headers or {}, "timeout": timeout}
        proc = _in_lab(self.lab, "docker", "exec", "-i", self.name, "python3", "-c", _REQUEST_SCRIPT,
                       stdin=json.dumps(spec), timeout=int(timeout) + 30, check=False)
        if proc.returncode != 0:
            return {"status": None, "headers": {}, "body": None,
                    "error": f"docker exec failed: {proc.stderr.decode(errors='replace').strip()}"}
        return json.loads(proc.stdout)

    def control(self, method: str, path: str, body: Any = None, *, check: bool = True) -> dict[str, Any]:
        answer = self.request(method, f"http://127.0.0.1:9000{path}", body)
        if check and answer.get("status") != 200:
            raise ContractError(f"control {method} {path}: {answer}")
        return answer

    # ---- control API ----

    def calls(self, service: str | None = None, method: str | None = None, path_regex: str | None = None
              ) -> list[dict[str, Any]]:
        """Every call received, oldest first: {seq, at, service, method, path, query, body, status,
        rejected_reason, note, fault}; optionally only one service's, one method's, paths matching a regex."""
        import re  # pylint: disable=import-outside-toplevel

        found = self.control("GET", "/_calls")["body"]
        return [c for c in found if (service is None or c["service"] == service)
                and (method is None or c["method"] == method)
                and (path_regex is None or re.search(path_regex, c["path"]))]

    def rejected(self) -> list[dict[str, Any]]:
        """Calls that broke the documented contract (unknown path, auth, body): a correct workflow makes none."""
        return [c for c in self.calls() if c["rejected_reason"]]

    def state(self) -> dict[str, Any]:
        """{chatwoot: {contacts, conversations, messages}, evolution: {sent}}."""
        return self.control("GET", "/_state")["body"]

    def webhooks(self) -> list[dict[str, Any]]:
        """The message_created webhooks the fake Chatwoot sent: {at, url, event, payload, status, error}."""
        return self.control("GET", "/_webhooks")["body"]

    def reset(self) -> None:
        """Forget calls, state, faults and webhooks."""
        self.control("POST", "/_reset", {})

    def fault(self, service: str, method: str, path_regex: str, status: int, times: int = -1,
              retry_after: int | None = None, body: Any = None) -> dict[str, Any]:
        """Answer ``status`` (500, 422, 429...) to the next ``times`` matching valid calls (-1: all), with
        Retry-After for a 429 when ``retry_after`` is given. Auth and body checks still come first."""
        spec = {"service": service, "method": method, "path_regex": path_regex, "status": status, "times": times}
        if retry_after is not None:
            spec["retry_after"] = retry_after
        if body is not None:
            spec["body"] = body
        return self.control("POST", "/_fault", spec)["body"]

    def clear_faults(self) -> None:
        self.control("DELETE", "/_fault")

    def agent_message(self, conversation_id: int, content: str, private: bool = False) -> dict[str, Any]:
        """An agent writes ``content`` in conversation ``conversation_id`` (the Chatwoot UI): stored, and
        message_created is sent to CHATWOOT_WEBHOOK_URL. Returns {message, webhook}."""
        return self.control("POST", "/_chatwoot/agent_message",
                            {"conversation_id": conversation_id, "content": content, "private": private})["body"]

    def whatsapp_media(self, message_id: str, data: bytes) -> dict[str, Any]:
        """The file WhatsApp holds for received media message ``message_id`` (what getBase64FromMediaMessage
        returns)."""
        import base64  # pylint: disable=import-outside-toplevel

        return self.control("POST", "/_evolution/media",
                            {"id": message_id, "base64": base64.b64encode(data).decode()})["body"]

    def received(self, payload: dict[str, Any]) -> dict[str, Any]:
        """WhatsApp delivered this message (a messages.upsert body) to Evolution API, which saved it: findMessages
        answers it from now on, whether or not its webhook reaches n8n."""
        return self.control("POST", "/_evolution/received", payload)["body"]

    def blob(self, key: str) -> bytes:
        """The bytes of a file Chatwoot stored (a message attachment's ``blob_key``)."""
        import base64  # pylint: disable=import-outside-toplevel

        return base64.b64decode(self.control("GET", f"/_blob/{key}")["body"]["base64"])

    def agent_attachments(self, conversation_id: int, content: str,
                          files: list[tuple[str, str, bytes]], pad_to: int = 0) -> dict[str, Any]:
        """An agent sends ``files`` ([(file name, content type, bytes)]) with ``content`` from the dashboard:
        stored as attachments, message_created (with attachments[]) sent to n8n. ``pad_to``: each file padded with
        zero bytes to that size by the server (a big file without megabytes through docker exec)."""
        import base64  # pylint: disable=import-outside-toplevel

        return self.control("POST", "/_chatwoot/agent_message", {
            "conversation_id": conversation_id, "content": content,
            "attachments": [{"file_name": n, "content_type": t, "base64": base64.b64encode(d).decode(),
                             "size": pad_to} for n, t, d in files]})["body"]

    def post_to_n8n(self, path: str, payload: Any, headers: dict[str, str] | None = None, timeout: float = 60,
                    base_url: str = N8N_URL) -> tuple[int | None, Any]:
        """POST ``payload`` as JSON to n8n (``path`` like ``/webhook/borgstack/evolution``) from the internal
        network; returns (status, body) - status None when n8n could not be reached (body then holds the error)."""
        answer = self.request("POST", f"{base_url}{path}", payload, headers, timeout)
        return answer["status"], answer["body"] if answer["status"] is not None else answer["error"]

    def wait_for(self, condition: Callable[["Contract"], Any], timeout: float = 30, interval: float = 0.5) -> Any:
        """Poll ``condition(self)`` until it returns something truthy (returned), or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition(self)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s; calls: {self.calls()[-10:]}")
            time.sleep(interval)


def post_to_n8n(lab: str, path: str, payload: Any, name: str = NAME, **kwargs: Any) -> tuple[int | None, Any]:
    """Module-level shortcut of :meth:`Contract.post_to_n8n` (the contract container must be running)."""
    return Contract(lab, name).post_to_n8n(path, payload, **kwargs)
