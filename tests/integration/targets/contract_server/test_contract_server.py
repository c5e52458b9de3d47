# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's contract servers (lab/contract/contract_server.py), which stand in for Evolution API 2.2.3 and Chatwoot
4.6.0 in the lab: they must refuse what upstream refuses and fail when told to, or a workflow test through them
proves nothing.

What runs: the server as a local process (``python3 lab/contract/contract_server.py`` on free local ports) for the
contract itself, and the image ``borgstack-lab/contract:3`` on a throwaway Docker network under the stack's host
names (``borgstack-evolution-api``, ``borgstack-chatwoot``), called from a second container by those names, with
its secrets given as files (not in ``docker inspect``).

What does NOT run: Evolution API and Chatwoot themselves (no image of either can be built here). The schema files
(lab/contract/evolution.json, chatwoot.json) are facts read from upstream source and docs; these tests check that the
server follows those files, not that the files match a running upstream.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from lab_prerequisites import require_docker_images

REPO_ROOT = Path(__file__).resolve().parents[4]
CONTRACT_DIR = REPO_ROOT / "lab" / "contract"
sys.path.insert(0, str(CONTRACT_DIR))
# pylint: disable=wrong-import-position,import-error
import contract_server  # noqa: E402

IMAGE = os.environ.get("BORGSTACK_CONTRACT_IMAGE", "borgstack-lab/contract:3")
API_KEY = secrets.token_hex(24)
TOKEN = secrets.token_hex(12)
PHONE = "+5511987654321"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
          raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload, hdrs = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, payload, hdrs = exc.code, exc.read(), dict(exc.headers)
    try:
        return status, json.loads(payload), hdrs
    except ValueError:
        return status, payload.decode(errors="replace"), hdrs


class Receiver:
    """A local HTTP endpoint standing for n8n's Chatwoot webhook: records every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook/borgstack/chatwoot"

    def wait(self, count: int, timeout: float = 10) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.bodies


class Local:
    """The server as a local process, on free ports."""

    def __init__(self, receiver: Receiver) -> None:
        self.ports = {name: _free_port() for name in ("evolution", "chatwoot", "control")}
        env = {**os.environ, "EVOLUTION_API_KEY": API_KEY, "CHATWOOT_API_TOKEN": TOKEN, "CONTRACT_BIND": "127.0.0.1",
               "EVOLUTION_PORT": str(self.ports["evolution"]), "CHATWOOT_PORT": str(self.ports["chatwoot"]),
               "CONTROL_PORT": str(self.ports["control"]), "CHATWOOT_WEBHOOK_URL": receiver.url,
               "PYTHONDONTWRITEBYTECODE": "1", "EVOLUTION_INSTANCES": "principal,vendas"}
        self.proc = subprocess.Popen([sys.executable, str(CONTRACT_DIR / "contract_server.py")], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.control("GET", "/_health")[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.proc.kill()
        pytest.fail(f"the contract server did not start: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")

    def evolution(self, method: str, path: str, body: Any = None, key: str | None = API_KEY,
                  headers: dict[str, str] | None = None, raw: bytes | None = None):
        headers = {**({"apikey": key} if key is not None else {}), **(headers or {})}
        return _http(f"http://127.0.0.1:{self.ports['evolution']}{path}", method, body, headers, raw)

    def chatwoot(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
                 headers: dict[str, str] | None = None, raw: bytes | None = None):
        headers = {**({"api_access_token": token} if token is not None else {}), **(headers or {})}
        return _http(f"http://127.0.0.1:{self.ports['chatwoot']}{path}", method, body, headers, raw)

    def control(self, method: str, path: str, body: Any = None):
        return _http(f"http://127.0.0.1:{self.ports['control']}{path}", method, body)

    def calls(self) -> list[dict[str, Any]]:
        return self.control("GET", "/_calls")[1]

    def last_call(self) -> dict[str, Any]:
        return self.calls()[-1]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.server.shutdown()


@pytest.fixture(scope="module")
def local_server(receiver: Receiver) -> Iterator[Local]:
    server = Local(receiver)
    yield server
    server.proc.terminate()
    server.proc.wait(timeout=10)


@pytest.fixture
def srv(local_server: Local, receiver: Receiver) -> Local:
    assert local_server.control("POST", "/_reset", {})[0] == 200
    receiver.bodies.clear()
    return local_server


ACCOUNT = "/api/v1/accounts/1"
SEND = "/message/sendText/principal"


def _new_contact(srv: Local, phone: str = PHONE, **extra: Any) -> tuple[int, Any]:
    number = phone.lstrip("+")
    status, body, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/contacts", {
        "inbox_id": 1, "name": "João Silva", "phone_number": phone, "identifier": f"whatsapp:{number}", **extra})
    return status, body


def _conversation(srv: Local) -> int:
    status, body = _new_contact(srv)
    assert status == 200, body
    status, conv, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations",
                                       {"inbox_id": 1, "contact_id": body["payload"]["contact"]["id"], "status": "open"})
    assert status == 200, conv
    return conv["id"]


# ---- Evolution API -------------------------------------------------------------------------------------------


def test_send_text_answers_the_documented_message(srv):
    status, body, _hdrs = srv.evolution("POST", SEND, {"number": "5511987654321", "text": "Olá", "delay": 1000})
    assert status == 201, body
    assert body["key"] == {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": True, "id": body["key"]["id"]}
    assert body["message"] == {"conversation": "Olá"} and body["status"] == "PENDING"
    assert isinstance(body["messageTimestamp"], int) and body["messageType"] == "conversation"
    sent = srv.control("GET", "/_state")[1]["evolution"]["sent"]
    assert [(s["number"], s["text"], s["delay"]) for s in sent] == [("5511987654321", "Olá", 1000)]
    assert srv.last_call()["rejected_reason"] is None


@pytest.mark.parametrize("key", [None, "wrong-key", API_KEY[:-1]])
def test_send_text_refuses_a_missing_or_wrong_apikey(srv, key):
    status, body, _hdrs = srv.evolution("POST", SEND, {"number": "5511987654321", "text": "x"}, key=key)
    assert (status, body) == (401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}})
    assert srv.last_call()["rejected_reason"].startswith("auth")
    assert srv.control("GET", "/_state")[1]["evolution"]["sent"] == []


@pytest.mark.parametrize("body, message", [
    ({"text": "x"}, 'instance requires property "number"'),
    ({"number": "5511987654321"}, 'instance requires property "text"'),
    ({"number": 5511987654321, "text": "x"}, "Invalid format"),
    ({"number": "5511987654321", "text": "x", "delay": "1000"}, "Enter a value in milliseconds"),
    ({"number": "5511987654321", "text": "   "}, "Text is required"),
])
def test_send_text_refuses_a_body_the_schema_refuses(srv, body, message):
    status, answer, _hdrs = srv.evolution("POST", SEND, body)
    assert status == 400, answer
    assert answer["error"] == "Bad Request" and message in answer["response"]["message"], answer
    assert srv.last_call()["rejected_reason"], srv.last_call()


def test_send_text_accepts_unknown_fields_as_upstream_does(srv):
    """textMessageSchema has no additionalProperties: false (jsonschema then accepts extra fields)."""
    status, body, _hdrs = srv.evolution("POST", SEND, {"number": "5511987654321", "text": "x", "options": {"a": 1}})
    assert status == 201, body


def test_connection_state_reports_the_session_state_the_control_sets(srv):
    """connectionState answers 200 with the session's state (open by default; close when the phone is unpaired):
    the monitoring's WhatsApp probe must tell them apart by the body, not the status."""
    path = "/instance/connectionState/principal"
    assert srv.evolution("GET", path)[:2] == (200, {"instance": {"instanceName": "principal", "state": "open"}})
    assert srv.control("POST", "/_evolution/session", {"state": "close"})[:2] == (200, {"state": "close"})
    assert srv.evolution("GET", path)[:2] == (200, {"instance": {"instanceName": "principal", "state": "close"}})
    assert srv.control("POST", "/_evolution/session", {"state": "lost"})[0] == 400
    assert srv.evolution("GET", path)[1]["instance"]["state"] == "close"
    assert srv.control("POST", "/_reset", {})[0] == 200
    assert srv.evolution("GET", path)[1]["instance"]["state"] == "open"


def test_unknown_instance_is_404_before_the_key_is_checked(srv):
    status, body, _hdrs = srv.evolution("POST", "/message/sendText/outra", {"number": "1", "text": "x"}, key="wrong")
    assert status == 404 and body["response"]["message"] == ['The "outra" instance does not exist'], body


@pytest.mark.parametrize("method, path", [("POST", "/message/sendTextt/principal"), ("GET", SEND),
                                          ("POST", "/message/sendSticker/principal"), ("POST", "/chat/whatsappNumbers")])
def test_evolution_unknown_path_is_404_and_recorded_as_rejected(srv, method, path):
    status, body, _hdrs = srv.evolution(method, path, {"number": "1", "text": "x"} if method == "POST" else None)
    assert status == 404 and body["response"]["message"] == [f"Cannot {method} {path}"], body
    call = srv.last_call()
    assert (call["service"], call["method"], call["path"], call["status"]) == ("evolution", method, path, 404)
    assert call["rejected_reason"] == "unknown path"


def test_evolution_root_needs_no_key(srv):
    status, body, _hdrs = srv.evolution("GET", "/", key=None)
    assert status == 200 and body["version"] == "2.2.3", body


# ---- Chatwoot ----------------------------------------------------------------------------------------------


def test_chatwoot_auth(srv):
    assert srv.chatwoot("GET", "/api/v1/profile")[0] == 200
    status, body, _hdrs = srv.chatwoot("GET", "/api/v1/profile", token=None)
    assert (status, body) == (401, {"errors": ["You need to sign in or sign up before continuing."]})
    status, body, _hdrs = srv.chatwoot("GET", "/api/v1/profile", token="wrong")
    assert (status, body) == (401, {"error": "Invalid Access Token"})
    assert srv.chatwoot("POST", "/api/v1/accounts/1/contacts", {"inbox_id": 1}, token=None)[0] == 401
    # Authorization: Bearer (the architecture document's example) is not what Chatwoot reads.
    status, body, _hdrs = _http(f"http://127.0.0.1:{srv.ports['chatwoot']}/api/v1/profile",
                                headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 401
    status, body, _hdrs = srv.chatwoot("GET", "/api/v1/accounts/2/contacts/search?q=x")
    assert (status, body) == (401, {"error": "You are not authorized to access this account"})
    assert srv.control("GET", "/_state")[1]["chatwoot"]["contacts"] == []


def test_contact_create_and_duplicate_is_422_like_chatwoot(srv):
    status, body = _new_contact(srv, custom_attributes={"whatsapp_id": "5511987654321@s.whatsapp.net"})
    assert status == 200, body
    contact = body["payload"]["contact"]
    assert contact["phone_number"] == PHONE and contact["identifier"] == "whatsapp:5511987654321"
    assert contact["custom_attributes"] == {"whatsapp_id": "5511987654321@s.whatsapp.net"}
    assert body["payload"]["contact_inbox"]["inbox"]["id"] == 1 and body["payload"]["contact_inbox"]["source_id"]
    status, body = _new_contact(srv)
    assert status == 422, body
    assert body == {"message": "Phone number has already been taken, Identifier has already been taken",
                    "attributes": ["phone_number", "identifier"]}
    call = srv.last_call()
    assert call["rejected_reason"] is None and call["note"].startswith("record invalid"), call
    assert len(srv.control("GET", "/_state")[1]["chatwoot"]["contacts"]) == 1


def test_two_simultaneous_creates_make_one_contact(srv):
    results: list[int] = []
    barrier = threading.Barrier(2)

    def create() -> None:
        barrier.wait()
        results.append(_new_contact(srv)[0])

    threads = [threading.Thread(target=create) for _thread in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 422]
    assert len(srv.control("GET", "/_state")[1]["chatwoot"]["contacts"]) == 1


@pytest.mark.parametrize("body, attributes", [
    ({"inbox_id": 1, "phone_number": "5511987654321"}, ["phone_number"]),   # no '+': not E.164
    ({"name": "x"}, ["inbox_id"]),                                          # swagger: inbox_id required
    ({"inbox_id": "1"}, ["inbox_id"]),
    ({"inbox_id": 1, "custom_attributes": "x"}, ["custom_attributes"]),
])
def test_contact_create_refuses_invalid_bodies(srv, body, attributes):
    status, answer, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/contacts", body)
    assert status == 422 and answer["attributes"] == attributes, answer
    assert srv.control("GET", "/_state")[1]["chatwoot"]["contacts"] == []


def test_contact_search(srv):
    _new_contact(srv)
    _new_contact(srv, "+5521999998888")
    status, body, _hdrs = srv.chatwoot("GET", f"{ACCOUNT}/contacts/search?q=%2B5511987654321")
    assert status == 200 and body["meta"] == {"count": 1, "current_page": 1}, body
    assert [c["phone_number"] for c in body["payload"]] == [PHONE]
    status, body, _hdrs = srv.chatwoot("GET", f"{ACCOUNT}/contacts/search?q=whatsapp%3A5521999998888")
    assert [c["phone_number"] for c in body["payload"]] == ["+5521999998888"]
    assert srv.chatwoot("GET", f"{ACCOUNT}/contacts/search?q=nobody")[1]["payload"] == []
    status, body, _hdrs = srv.chatwoot("GET", f"{ACCOUNT}/contacts/search")
    assert (status, body) == (422, {"error": "Specify search string with parameter q"})


def test_conversation_and_messages(srv, receiver):
    conv_id = _conversation(srv)
    status, convs, _hdrs = srv.chatwoot("GET", f"{ACCOUNT}/contacts/1/conversations")
    assert status == 200 and [c["id"] for c in convs["payload"]] == [conv_id]
    assert convs["payload"][0]["status"] == "open" and convs["payload"][0]["inbox_id"] == 1
    assert convs["payload"][0]["meta"]["sender"]["phone_number"] == PHONE
    status, msg, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations/{conv_id}/messages",
                                      {"content": "Olá, preciso de ajuda", "message_type": "incoming", "private": False,
                                       "source_id": "3EB0C8F3E7E3A7D8C0F1"})
    assert status == 200, msg
    assert (msg["content"], msg["conversation_id"], msg["message_type"]) == ("Olá, preciso de ajuda", conv_id,
                                                                             "incoming")
    assert msg["sender"]["type"] == "contact"
    # Chatwoot sends message_created for every message, those n8n creates included.
    hooks = receiver.wait(1)
    assert len(hooks) == 1 and hooks[0]["body"]["event"] == "message_created"
    assert hooks[0]["body"]["message_type"] == "incoming"
    assert srv.chatwoot("GET", f"{ACCOUNT}/conversations/{conv_id}/messages")[1]["payload"][0]["message_type"] == 0
    assert srv.chatwoot("GET", f"{ACCOUNT}/conversations/999/messages")[0] == 404
    status, body, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations/999/messages", {"content": "x"})
    assert (status, body) == (404, {"error": "Resource could not be found"})


@pytest.mark.parametrize("body", [{"message_type": "incoming"}, {"content": "x", "message_type": "received"},
                                  {"content": "x", "private": "false"}, {"content": 1}])
def test_message_create_refuses_invalid_bodies(srv, body):
    conv_id = _conversation(srv)
    status, answer, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations/{conv_id}/messages", body)
    assert status == 422 and srv.last_call()["rejected_reason"], answer
    assert srv.control("GET", "/_state")[1]["chatwoot"]["messages"] == []


def test_conversation_create_needs_source_id_or_contact_and_inbox(srv):
    _new_contact(srv)
    status, body, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations", {"inbox_id": 1, "status": "open"})
    assert status == 422 and srv.last_call()["rejected_reason"], body
    status, body, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations", {"source_id": "not-a-contact-inbox"})
    assert (status, body) == (404, {"error": "Resource could not be found"})
    status, body, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations",
                                       {"inbox_id": 1, "contact_id": 1, "status": "closed"})
    assert status == 422, body   # status enum: open, resolved, pending
    source_id = srv.control("GET", "/_state")[1]["chatwoot"]["contacts"][0]["contact_inboxes"][0]["source_id"]
    status, body, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations", {"source_id": source_id})
    assert status == 200 and body["meta"]["sender"]["id"] == 1, body


@pytest.mark.parametrize("method, path", [("POST", f"{ACCOUNT}/contact"), ("DELETE", f"{ACCOUNT}/contacts/1"),
                                          ("POST", "/api/v2/accounts/1/contacts"), ("GET", "/")])
def test_chatwoot_unknown_path_is_404_and_recorded_as_rejected(srv, method, path):
    status, _body, _hdrs = srv.chatwoot(method, path, {"inbox_id": 1} if method == "POST" else None)
    assert status == 404
    call = srv.last_call()
    assert (call["service"], call["path"], call["rejected_reason"]) == ("chatwoot", path, "unknown path")


def test_non_json_body_is_refused(srv):
    """A lab restriction, not upstream's (Rails would also parse a form body): the workflows must send JSON."""
    status, _body, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/contacts", raw=b"inbox_id=1",
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status in (400, 415) and srv.last_call()["rejected_reason"]


# ---- Faults, agent replies, control API --------------------------------------------------------------------


def test_fault_500_three_times_then_success(srv):
    srv.control("POST", "/_fault", {"service": "chatwoot", "method": "POST", "path_regex": r"/contacts$",
                                    "status": 500, "times": 3})
    statuses = [_new_contact(srv)[0] for _attempt in range(4)]
    assert statuses == [500, 500, 500, 200]
    calls = [c for c in srv.calls() if c["path"].endswith("/contacts")]
    assert [c["fault"] for c in calls] == [True, True, True, False]
    assert all(c["rejected_reason"] is None for c in calls)
    assert len(srv.control("GET", "/_state")[1]["chatwoot"]["contacts"]) == 1
    assert srv.control("GET", "/_fault")[1][0]["hits"] == 3


def test_fault_always_until_cleared_and_auth_comes_first(srv):
    srv.control("POST", "/_fault", {"service": "evolution", "method": "POST", "path_regex": "sendText",
                                    "status": 500})
    assert [srv.evolution("POST", SEND, {"number": "1", "text": "x"})[0] for _attempt in range(5)] == [500] * 5
    assert srv.evolution("POST", SEND, {"number": "1", "text": "x"}, key="wrong")[0] == 401
    assert srv.control("DELETE", "/_fault")[0] == 200
    assert srv.evolution("POST", SEND, {"number": "1", "text": "x"})[0] == 201


def test_fault_429_carries_retry_after(srv):
    srv.control("POST", "/_fault", {"service": "evolution", "method": "POST", "path_regex": "sendText",
                                    "status": 429, "times": 1, "retry_after": 3})
    status, _body, headers = srv.evolution("POST", SEND, {"number": "5511987654321", "text": "x"})
    assert status == 429 and headers.get("Retry-After") == "3"
    assert srv.evolution("POST", SEND, {"number": "5511987654321", "text": "x"})[0] == 201


def test_fault_422_on_contact_create_has_chatwoot_shape(srv):
    srv.control("POST", "/_fault", {"service": "chatwoot", "method": "POST", "path_regex": "/contacts$",
                                    "status": 422, "times": 1})
    status, body = _new_contact(srv)
    assert status == 422 and set(body) == {"message", "attributes"}


@pytest.mark.parametrize("spec", [{"service": "x", "status": 500}, {"service": "chatwoot", "status": 418},
                                  {"service": "chatwoot", "status": 500, "times": 0},
                                  {"service": "chatwoot", "status": 500, "path_regex": "("},
                                  {"service": "chatwoot", "status": 500, "bogus": 1}])
def test_fault_specs_are_validated(srv, spec):
    assert srv.control("POST", "/_fault", spec)[0] == 400


def test_agent_message_sends_message_created(srv, receiver):
    conv_id = _conversation(srv)
    reply = srv.control("POST", "/_chatwoot/agent_message",
                        {"conversation_id": conv_id, "content": "Olá João!", "private": False})[1]
    note = srv.control("POST", "/_chatwoot/agent_message",
                       {"conversation_id": conv_id, "content": "nota interna", "private": True})[1]
    assert reply["message"]["message_type"] == "outgoing" and note["message"]["private"] is True
    hooks = [h["body"] for h in receiver.wait(2)]
    assert [(h["content"], h["private"], h["message_type"]) for h in hooks] == [
        ("Olá João!", False, "outgoing"), ("nota interna", True, "outgoing")]
    payload = hooks[0]
    assert payload["event"] == "message_created" and payload["sender"]["type"] == "user"
    assert payload["conversation"]["id"] == conv_id
    assert payload["conversation"]["meta"]["sender"]["phone_number"] == PHONE
    assert payload["conversation"]["meta"]["sender"]["identifier"] == "whatsapp:5511987654321"
    # The server records a delivery's status once the receiver has answered, a moment after the body arrived here.
    deadline = time.monotonic() + 10
    while True:
        webhooks = srv.control("GET", "/_webhooks")[1]
        if all(w["status"] is not None for w in webhooks) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [w["status"] for w in webhooks] == [200, 200]


def test_reset_forgets_everything(srv):
    _conversation(srv)
    srv.control("POST", "/_fault", {"service": "chatwoot", "status": 500})
    srv.control("POST", "/_reset", {})
    assert srv.calls() == [] and srv.control("GET", "/_fault")[1] == []
    assert srv.control("GET", "/_state")[1] == {"chatwoot": {"contacts": [], "conversations": [], "messages": []},
                                                "evolution": {"sent": [], "received": []}}
    assert _new_contact(srv)[0] == 200   # no fault left, ids restart
    assert srv.control("GET", "/_state")[1]["chatwoot"]["contacts"][0]["id"] == 1


def test_find_messages_answers_saved_messages_newest_first_in_pages(srv):
    """findMessages (channel.service.ts fetchMessages): the window needs gte and lte, key.fromMe false filters
    nothing (upstream tests it for truthiness), offset is the page size."""
    for number, ts, mid in (("5511900000001", 1000, "A"), ("5511900000002", 1010, "B"),
                            ("5511900000001", 1020, "C")):
        srv.control("POST", "/_evolution/received", contract_server.evolution_messages_upsert(
            number, mid, message_id=mid, timestamp=ts))
    find = "/chat/findMessages/principal"
    status, body, _headers = srv.evolution("POST", find, {})
    assert status == 200 and [r["key"]["id"] for r in body["messages"]["records"]] == ["C", "B", "A"]
    page = {k: body["messages"][k] for k in ("total", "pages", "currentPage")}
    assert page == {"total": 3, "pages": 1, "currentPage": 1}
    window = {"where": {"messageTimestamp": {"gte": "1970-01-01T00:16:45Z", "lte": "1970-01-01T00:17:00Z"},
                        "key": {"fromMe": False}}, "page": 2, "offset": 1}
    status, body, _headers = srv.evolution("POST", find, window)
    assert status == 200 and [r["key"]["id"] for r in body["messages"]["records"]] == ["B"], body
    assert body["messages"]["total"] == 2 and body["messages"]["pages"] == 2
    only_gte = {"where": {"messageTimestamp": {"gte": "1970-01-01T00:16:45Z"}}}
    assert srv.evolution("POST", find, only_gte)[1]["messages"]["total"] == 3   # one bound: no filter upstream
    assert srv.evolution("POST", find, {"where": []})[0] == 400
    assert srv.evolution("POST", find, {}, key="wrong")[0] == 401


def test_find_messages_answers_the_instance_s_own_messages(srv):
    """fetchMessages reads the messages of the instance asked for (where instanceId): a second number's saved
    messages are not the first one's; an instance the server does not know is refused when saving."""
    for instance, mid in (("principal", "P1"), ("vendas", "V1"), ("vendas", "V2")):
        srv.control("POST", "/_evolution/received", contract_server.evolution_messages_upsert(
            "5511900000001", mid, message_id=mid, timestamp=1000, instance=instance))
    ids = {name: [r["key"]["id"] for r in srv.evolution("POST", f"/chat/findMessages/{name}", {})[1]["messages"][
        "records"]] for name in ("principal", "vendas")}
    assert ids == {"principal": ["P1"], "vendas": ["V1", "V2"]}, ids
    assert "_instance" not in srv.evolution("POST", "/chat/findMessages/vendas", {})[1]["messages"]["records"][0]
    assert srv.control("POST", "/_evolution/received", contract_server.evolution_messages_upsert(
        "5511900000001", "X", message_id="X", timestamp=1000, instance="outra"))[0] == 400


def test_deleting_a_message_keeps_it_marked_deleted(srv):
    """messages_controller#destroy: the row stays, its content replaced and content_attributes {deleted: true}; a
    message of another conversation, or none, is 404."""
    conv = _conversation(srv)
    status, note, _hdrs = srv.chatwoot("POST", f"{ACCOUNT}/conversations/{conv}/messages",
                                       {"content": "Resposta na fila", "private": True, "message_type": "outgoing"})
    assert status == 200, note
    status, body, _hdrs = srv.chatwoot("DELETE", f"{ACCOUNT}/conversations/{conv}/messages/{note['id']}")
    assert status == 200 and body["content_attributes"] == {"deleted": True}, body
    stored = [m for m in srv.control("GET", "/_state")[1]["chatwoot"]["messages"] if m["id"] == note["id"]]
    assert stored[0]["content"] == "This message was deleted" and stored[0]["content_attributes"] == {"deleted": True}
    assert srv.chatwoot("DELETE", f"{ACCOUNT}/conversations/{conv}/messages/999")[0] == 404
    assert srv.chatwoot("DELETE", f"{ACCOUNT}/conversations/{conv}/messages/{note['id']}", token="wrong")[0] == 401


def test_calls_record_every_field(srv):
    srv.evolution("POST", SEND + "?x=1", {"number": "5511987654321", "text": "Olá"})
    call = srv.last_call()
    assert set(call) >= {"seq", "at", "service", "method", "path", "query", "body", "status", "rejected_reason"}
    assert call["body"] == {"number": "5511987654321", "text": "Olá"} and call["query"] == {"x": "1"}
    assert call["seq"] == 1 and abs(call["at"] - time.time()) < 30


# ---- Schema files and payload builders ---------------------------------------------------------------------


@pytest.mark.parametrize("service, handler", [("evolution", contract_server.Evolution),
                                              ("chatwoot", contract_server.Chatwoot)])
def test_every_schema_operation_has_a_handler_and_a_source(service, handler):
    schema = json.loads((CONTRACT_DIR / f"{service}.json").read_text(encoding="utf-8"))
    for op in schema["operations"]:
        assert callable(getattr(handler, op["id"], None)), op["id"]
        assert op.get("source"), f"{op['id']} names no upstream source"
        assert op["method"] in ("GET", "POST", "PUT", "PATCH", "DELETE")


def test_payload_builders_follow_the_schema_facts():
    evolution = json.loads((CONTRACT_DIR / "evolution.json").read_text(encoding="utf-8"))["webhooks"]
    upsert = contract_server.evolution_messages_upsert("5511987654321", "Olá")
    assert set(upsert) == set(evolution["envelope"]["shape"])
    assert set(upsert["data"]) == set(evolution["messages.upsert"]["data"]) - {"contextInfo"}
    assert upsert["data"]["key"]["remoteJid"] == "5511987654321@s.whatsapp.net"
    update = contract_server.evolution_messages_update("5511987654321", "BAE5", "READ")
    assert set(update["data"]) == set(evolution["messages.update"]["data"])
    with pytest.raises(ValueError):
        contract_server.evolution_messages_update("5511987654321", "BAE5", "SEEN")
    chatwoot = json.loads((CONTRACT_DIR / "chatwoot.json").read_text(encoding="utf-8"))["webhooks"]
    created = contract_server.chatwoot_message_created("Olá João!")
    assert set(created) == set(chatwoot["message_created"]["shape"])
    assert created["conversation"]["meta"]["sender"]["phone_number"] == PHONE
    assert "contact" not in created


def test_connection_update_builder_follows_evolution_2_2_3():
    """close only with a reason Evolution does not reconnect from; the envelope as every other event's."""
    evolution = json.loads((CONTRACT_DIR / "evolution.json").read_text(encoding="utf-8"))["webhooks"]
    closed = contract_server.evolution_connection_update("close", 401, instance="vendas")
    assert set(closed) == set(evolution["envelope"]["shape"])
    assert closed["event"] == "connection.update" and closed["instance"] == "vendas"
    assert closed["data"] == {"instance": "vendas", "state": "close", "statusReason": 401}
    assert set(contract_server.evolution_connection_update("open")["data"]) == {
        "instance", "state", "statusReason", "wuid", "profileName", "profilePictureUrl"}
    assert contract_server.evolution_connection_update("refused")["data"]["statusReason"] == 428
    for state, reason in (("close", 428), ("close", None), ("closed", 401)):
        with pytest.raises(ValueError):
            contract_server.evolution_connection_update(state, reason)


def test_conversation_list_filters_by_inbox_and_status_and_pages_by_25(srv):
    """ConversationFinder: status open by default, inbox_id, newest first, 25 a page, counts in data.meta."""
    first = _conversation(srv)
    for n in range(25):
        status, body = _new_contact(srv, f"+55219999{n:05d}")
        assert status == 200, body
        contact = body["payload"]["contact"]["id"]
        assert srv.chatwoot("POST", f"{ACCOUNT}/conversations",
                            {"inbox_id": 1, "contact_id": contact, "status": "open"})[0] == 200
    srv.chatwoot("POST", f"{ACCOUNT}/conversations/{first}/toggle_status", {"status": "resolved"})
    status, body, _hdrs = srv.chatwoot("GET", f"{ACCOUNT}/conversations?inbox_id=1&status=open")
    assert status == 200 and body["data"]["meta"]["all_count"] == 25, body["data"]["meta"]
    assert len(body["data"]["payload"]) == 25 and first not in [c["id"] for c in body["data"]["payload"]]
    assert all(c["status"] == "open" and c["inbox_id"] == 1 for c in body["data"]["payload"])
    assert srv.chatwoot("GET", f"{ACCOUNT}/conversations?inbox_id=1&page=2")[1]["data"]["payload"] == []
    pages = [srv.chatwoot("GET", f"{ACCOUNT}/conversations?inbox_id=1&status=all&page={n}")[1]["data"]["payload"]
             for n in (1, 2)]
    assert [len(page) for page in pages] == [25, 1]
    assert sorted(c["id"] for page in pages for c in page) == list(range(1, 27))
    assert srv.chatwoot("GET", f"{ACCOUNT}/conversations?inbox_id=7")[1]["data"]["payload"] == []
    for query in ("status=closed", "inbox_id=um", "q=pedido", "assignee_type=everyone"):
        status, body, _hdrs = srv.chatwoot("GET", f"{ACCOUNT}/conversations?{query}")
        assert status == 400 and srv.last_call()["rejected_reason"], (query, body)


# ---- Media ---------------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
B64 = __import__("base64").b64encode(PNG).decode()
MEDIA_MSG = {"key": {"id": "IMG1", "remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False},
             "message": {"imageMessage": {"mimetype": "image/png", "mediaKey": "a2V5", "directPath": "/v/t62/x",
                                          "fileLength": str(len(PNG))}}}


def _multipart(fields: list[tuple[str, str]], files: list[tuple[str, str, str, bytes]]) -> tuple[bytes, str]:
    boundary = secrets.token_hex(8)
    out = b""
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, filename, ctype, data in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_get_base64_returns_the_file_whatsapp_holds(srv):
    assert srv.control("POST", "/_evolution/media", {"id": "IMG1", "base64": B64})[0] == 200
    status, body, _h = srv.evolution("POST", "/chat/getBase64FromMediaMessage/principal", {"message": MEDIA_MSG})
    assert status == 201 and body["base64"] == B64 and body["mimetype"] == "image/png", body
    assert body["fileName"] == "IMG1.png" and body["mediaType"] == "imageMessage", body
    wrapped = {"key": MEDIA_MSG["key"], "message": {"documentWithCaptionMessage": {"message": {"documentMessage": {
        **MEDIA_MSG["message"]["imageMessage"], "mimetype": "application/pdf", "fileName": "nota.pdf"}}}}}
    status, body, _h = srv.evolution("POST", "/chat/getBase64FromMediaMessage/principal", {"message": wrapped})
    assert status == 201 and body["fileName"] == "nota.pdf", body


@pytest.mark.parametrize("message, error", [
    ({"key": MEDIA_MSG["key"], "message": {"conversation": "oi"}}, "The message is not of the media type"),
    ({"key": MEDIA_MSG["key"]}, "Message not found"),
    ({"key": {**MEDIA_MSG["key"], "id": "UNKNOWN"}, "message": MEDIA_MSG["message"]}, "Failed to fetch stream"),
])
def test_get_base64_refuses_what_evolution_cannot_download(srv, message, error):
    srv.control("POST", "/_evolution/media", {"id": "IMG1", "base64": B64})
    status, body, _h = srv.evolution("POST", "/chat/getBase64FromMediaMessage/principal", {"message": message})
    assert status == 400 and error in body["response"]["message"][0], body


def test_send_media_and_audio_store_the_bytes(srv):
    status, body, _h = srv.evolution("POST", "/message/sendMedia/principal", {
        "number": "5511987654321", "mediatype": "image", "mimetype": "image/png", "fileName": "a.png",
        "media": B64, "caption": "foto"})
    assert status == 201 and body["messageType"] == "imageMessage", body
    status, body, _h = srv.evolution("POST", "/message/sendWhatsAppAudio/principal",
                                     {"number": "5511987654321", "audio": B64})
    assert status == 201 and body["message"]["audioMessage"]["ptt"] is True, body
    sent = srv.control("GET", "/_state")[1]["evolution"]["sent"]
    digest = __import__("hashlib").sha256(PNG).hexdigest()
    wanted = [("media", digest, len(PNG)), ("audio", digest, len(PNG))]
    assert [(s["kind"], s["sha256"], s["size"]) for s in sent] == wanted
    assert "sha256" in srv.last_call()["body"]["audio"], "the call log must not keep the file"


@pytest.mark.parametrize("path, body, reason", [
    ("/message/sendMedia/principal", {"number": "5511987654321", "media": B64}, "mediatype"),
    ("/message/sendMedia/principal", {"number": "5511987654321", "mediatype": "sticker", "media": B64}, "mediatype"),
    ("/message/sendMedia/principal", {"number": "5511987654321", "mediatype": "document", "media": B64}, "fileName"),
    ("/message/sendMedia/principal", {"number": "5511987654321", "mediatype": "image", "mimetype": "image/png",
                                      "media": "http://borgstack-chatwoot:3000/rails/x.png"}, "neither"),
    ("/message/sendWhatsAppAudio/principal", {"number": "5511987654321", "audio": "not a file"}, "neither"),
])
def test_media_sends_evolution_refuses(srv, path, body, reason):
    status, answer, _h = srv.evolution("POST", path, body)
    assert status == 400, answer
    assert reason in srv.last_call()["rejected_reason"], srv.last_call()


def test_chatwoot_multipart_attachment_is_stored_served_and_sent_in_the_webhook(srv, receiver):
    conv = _conversation(srv)
    raw, ctype = _multipart([("content", "foto"), ("message_type", "incoming"), ("private", "false"),
                             ("content_attributes[whatsapp_message_id]", "IMG1")],
                            [("attachments[]", "foto.png", "image/png", PNG)])
    status, msg, _h = srv.chatwoot("POST", f"{ACCOUNT}/conversations/{conv}/messages", raw=raw,
                                   headers={"Content-Type": ctype})
    assert status == 200 and msg["private"] is False and msg["content_attributes"] == {"whatsapp_message_id": "IMG1"}
    attachment = msg["attachments"][0]
    assert attachment["file_type"] == "image" and attachment["file_size"] == len(PNG), attachment
    assert attachment["data_url"].startswith("https://chatwoot.lab.borgstack.test/rails/active_storage/blobs/redirect/")
    path = attachment["data_url"].split(".test", 1)[1]
    status, _b, headers = srv.chatwoot("GET", path, token=None)   # urllib follows the 302 to the disk service
    assert status == 200 and headers["Content-Type"] == "image/png", headers
    stored = srv.control("GET", "/_state")[1]["chatwoot"]["messages"][0]["attachments"][0]
    assert stored["sha256"] == __import__("hashlib").sha256(PNG).hexdigest() and stored["filename"] == "foto.png"
    hook = receiver.wait(1)[-1]["body"]
    assert hook["attachments"][0]["data_url"] == attachment["data_url"], hook


@pytest.mark.parametrize("fields, files, reason", [
    ([("content", "x"), ("attachments[]", "not a file")], [], "multipart"),
    ([("content", "x")], [("attachments", "a.png", "image/png", PNG)], "multipart"),
    ([("content", "x")], [("attachments[]", "vazio.png", "image/png", b"")], "empty"),
    ([("message_type", "sideways")], [("attachments[]", "a.png", "image/png", PNG)], "message_type"),
    ([("message_type", "incoming")], [], "content"),
])
def test_chatwoot_multipart_refuses_what_chatwoot_would(srv, fields, files, reason):
    conv = _conversation(srv)
    raw, ctype = _multipart(fields, files)
    status, _b, _h = srv.chatwoot("POST", f"{ACCOUNT}/conversations/{conv}/messages", raw=raw,
                                  headers={"Content-Type": ctype})
    assert status == 422 and reason in srv.last_call()["rejected_reason"], srv.last_call()


def test_multipart_is_refused_where_upstream_takes_json_only(srv):
    raw, ctype = _multipart([("inbox_id", "1"), ("name", "x")], [])
    status, _b, _h = srv.chatwoot("POST", f"{ACCOUNT}/contacts", raw=raw, headers={"Content-Type": ctype})
    assert status in (400, 415) and srv.last_call()["rejected_reason"], _b


def test_unknown_blob_is_404(srv):
    status, _b, _h = srv.chatwoot("GET", "/rails/active_storage/blobs/redirect/nope--x/a.png", token=None)
    assert status == 404


# ---- The image, under the stack's host names ------------------------------------------------------------------


def _docker(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120, input=stdin)


@pytest.fixture(scope="module")
def image_on_network(tmp_path_factory) -> Iterator[str]:
    require_docker_images(IMAGE)
    tag = secrets.token_hex(4)
    network, name = f"borgstack-contract-test-{tag}", f"borgstack-contract-test-{tag}"
    secrets_dir = tmp_path_factory.mktemp("contract-secrets")
    (secrets_dir / "key").write_text(API_KEY)
    (secrets_dir / "token").write_text(TOKEN)
    for path in secrets_dir.iterdir():
        path.chmod(0o444)   # the container's uid 10001 reads it; a throwaway file in the test's temp dir
    _docker("network", "create", "--internal", network)
    try:
        _docker("run", "-d", "--name", name, "--network", network, "--network-alias", "borgstack-evolution-api",
                "--network-alias", "borgstack-chatwoot",
                "--mount", f"type=bind,source={secrets_dir / 'key'},target=/run/secrets/key,readonly",
                "--mount", f"type=bind,source={secrets_dir / 'token'},target=/run/secrets/token,readonly",
                "-e", "EVOLUTION_API_KEY_FILE=/run/secrets/key", "-e", "CHATWOOT_API_TOKEN_FILE=/run/secrets/token",
                IMAGE)
        deadline = time.monotonic() + 60
        while (state := _docker("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}",
                                name).stdout.strip()) != "running healthy":
            if time.monotonic() > deadline or not state.startswith(("created", "running")):
                pytest.fail(f"the contract container is not healthy: {_docker('logs', name, check=False).stderr}")
            time.sleep(0.5)
        yield network
    finally:
        _docker("rm", "-f", name, check=False)
        _docker("network", "rm", network, check=False)


CLIENT = r"""
import json, sys, urllib.error, urllib.request
out = []
for port, host, path, headers, body in json.load(sys.stdin):
    req = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers,
                                 data=json.dumps(body).encode() if body else None, method="POST" if body else "GET")
    req.add_header("Content-Type", "application/json")
    try:
        out.append(urllib.request.urlopen(req, timeout=5).status)
    except urllib.error.HTTPError as exc:
        out.append(exc.code)
print(json.dumps(out))
"""


def test_image_holds_the_checkout_sources(image_on_network):
    """A stale image (built before a change of lab/contract/) would test old behaviour: rebuild it."""
    for source in ("contract_server.py", "evolution.json", "chatwoot.json"):
        inside = subprocess.run(["docker", "run", "--rm", "--entrypoint", "cat", IMAGE, f"/opt/contract/{source}"],
                                capture_output=True, check=True, timeout=60).stdout
        assert inside == (CONTRACT_DIR / source).read_bytes(), f"{IMAGE} holds another {source}: lab/build-images.sh contract"


def test_image_serves_the_stack_host_names_to_another_container(image_on_network):
    evo, cw = "borgstack-evolution-api", "borgstack-chatwoot"
    requests = [
        [8080, evo, SEND, {"apikey": API_KEY}, {"number": "5511987654321", "text": "Olá"}],
        [8080, evo, SEND, {"apikey": "wrong"}, {"number": "5511987654321", "text": "Olá"}],
        [8080, evo, SEND, {"apikey": API_KEY}, {"text": "Olá"}],
        [3000, cw, "/api/v1/profile", {"api_access_token": TOKEN}, None],
        [3000, cw, f"{ACCOUNT}/contacts", {"api_access_token": TOKEN}, {"inbox_id": 1, "phone_number": PHONE}],
        [3000, cw, f"{ACCOUNT}/contacts", {"api_access_token": TOKEN}, {"inbox_id": 1, "phone_number": PHONE}],
        [3000, cw, "/api/v1/nope", {"api_access_token": TOKEN}, None],
    ]
    proc = _docker("run", "--rm", "-i", "--network", image_on_network, "--entrypoint", "python3", IMAGE, "-c",
                   CLIENT, stdin=json.dumps(requests))
    assert json.loads(proc.stdout) == [201, 401, 400, 200, 200, 422, 404]
    name = image_on_network   # container and network share the name
    env = json.loads(_docker("inspect", "--format", "{{json .Config.Env}}", name).stdout)
    assert not any(API_KEY in item or TOKEN in item for item in env), env
    assert _docker("exec", name, "id", "-u").stdout.strip() == "10001"
