# SPDX-License-Identifier: GPL-3.0-or-later
"""Contract servers standing in for Evolution API v2.2.3 and Chatwoot v4.6.0 in the lab (Python 3 stdlib only).

No image of either application can be built on the lab machine, so the lab's n8n talks to these instead. They are
NOT the applications: they accept only the paths, methods, auth headers and request bodies written down in
``evolution.json`` and ``chatwoot.json`` (facts read from the upstream source and API documentation, with the
reference next to each entry), answer with the documented response shapes and error bodies, keep just enough state
(Chatwoot contacts, conversations, messages; messages "sent" by Evolution), record every call, and can be told to
fail. Anything not in the schema answers 404 and is recorded as rejected.

Listeners (one process): 8080 Evolution API, 3000 Chatwoot, 9000 control API (JSON, no auth, never published):

- ``GET /_calls`` every call received: ``{seq, at, service, method, path, query, body, status, rejected_reason,
  fault}``; ``GET /_state``; ``POST /_reset`` (calls, state, faults, webhooks sent);
- ``POST /_fault`` ``{service, method, path_regex, status, times, retry_after}`` (``times`` -1: always),
  ``DELETE /_fault`` (all), ``GET /_fault``;
- ``POST /_chatwoot/agent_message`` ``{conversation_id, content, private, message_type}``: an agent writes in the
  Chatwoot UI: the message is stored and Chatwoot's ``message_created`` webhook is sent (needs
  CHATWOOT_WEBHOOK_URL);
- ``GET /_webhooks`` the webhooks the fake Chatwoot sent (url, payload, status, error);
- ``POST /_chatwoot/agent_message`` also takes ``attachments: [{file_name, content_type, base64, size}]`` (files the
  agent attaches; ``size`` pads the file with zero bytes); ``POST /_evolution/media`` ``{id, base64}``: the file
  WhatsApp holds for received media message ``id``
  (what getBase64FromMediaMessage returns); ``GET /_blob/{key}``: a stored attachment's bytes (base64);
- ``POST /_evolution/session`` ``{state}``: the WhatsApp session's state that ``connectionState`` reports (``open``,
  the default, ``connecting`` or ``close``: the phone unpaired or the session lost);
  (what getBase64FromMediaMessage returns); ``POST /_evolution/received`` a messages.upsert body: the message
  WhatsApp delivered, saved in Evolution's database (what findMessages answers), whether or not n8n got its webhook;
  ``GET /_blob/{key}``: a stored attachment's bytes (base64);
- ``POST /_http`` ``{method, url, headers, body}``: make an HTTP request from this container (tests use it to reach
  n8n on the internal network) and answer ``{status, headers, body}``;
- ``GET /_health``.

Environment: EVOLUTION_API_KEY, CHATWOOT_API_TOKEN (required; or EVOLUTION_API_KEY_FILE, CHATWOOT_API_TOKEN_FILE: a
file holding it, so the secret stays out of ``docker inspect``), CHATWOOT_ACCOUNT_ID (1), CHATWOOT_INBOX_ID (1),
EVOLUTION_INSTANCE (principal), CHATWOOT_WEBHOOK_URL (optional: where message_created goes), CONTRACT_SCHEMA_DIR
(default: this file's directory), EVOLUTION_PORT/CHATWOOT_PORT/CONTROL_PORT (8080/3000/9000), CONTRACT_BIND
(0.0.0.0).

The module also holds builders of the webhook payloads the real applications send (``evolution_messages_upsert``,
``evolution_messages_update``, ``evolution_connection_update``, ``chatwoot_message_created``), from the same
facts, for tests to drive n8n with.
"""
from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(os.environ.get("CONTRACT_SCHEMA_DIR") or Path(__file__).resolve().parent)
JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# class-validator's isBase64 (validator.js, default options: the standard alphabet, padded, length a multiple of 4)
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
# validator.js isURL with its defaults: http/https/ftp, and a host with a top-level domain (require_tld) - a bare
# container name such as http://borgstack-chatwoot:3000/... is NOT a URL to Evolution API (it then decodes the
# string as base64).
_URL = re.compile(r"^(?:https?|ftp)://(?:[^\s/@]+@)?(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}\.?(?::\d{1,5})?(?:[/?#]\S*)?$")


def is_base64(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and len(value) % 4 == 0 and bool(_BASE64.match(value))


def is_url(value: Any) -> bool:
    return isinstance(value, str) and bool(_URL.match(value))


# mime-types' extension() (the first extension mime-db lists), for the types WhatsApp media carry.
MIME_EXTENSIONS = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "image/gif": "gif",
                   "audio/ogg": "oga", "audio/mpeg": "mpga", "audio/mp4": "m4a", "audio/aac": "aac",
                   "video/mp4": "mp4", "video/3gpp": "3gp", "application/pdf": "pdf", "text/plain": "txt"}
# Baileys' message keys that carry a downloadable file (Evolution API's TypeMediaMessage, src/api/types/wa.types.ts)
MEDIA_MESSAGE_TYPES = ("imageMessage", "documentMessage", "audioMessage", "videoMessage", "stickerMessage",
                       "ptvMessage")
MESSAGE_SUBTYPES = ("ephemeralMessage", "documentWithCaptionMessage", "viewOnceMessage", "viewOnceMessageV2")


def chatwoot_file_type(content_type: str) -> str:
    """Chatwoot's attachment file_type from the upload's content type (app/helpers/file_type_helper.rb)."""
    major = (content_type or "").split("/")[0]
    return {"image": "image", "video": "video", "audio": "audio"}.get(major, "file")


def parse_multipart(content_type: str, raw: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """multipart/form-data as Rack parses it: (fields, files). Field names with brackets become nested dicts
    (``a[b]``) or lists (``a[]``), as Rails' params do; a file part is {name, filename, content_type, data}."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + raw)
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields: dict[str, Any] = {}
    files: list[dict[str, Any]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise ValueError("a part without a name")
        filename = part.get_param("filename", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if filename is not None:
            files.append({"name": name, "filename": filename, "content_type": part.get_content_type()
                          if part.get("content-type") else "application/octet-stream", "data": data})
            continue
        value = data.decode("utf-8")
        match = re.fullmatch(r"([^\[\]]+)\[([^\[\]]*)\]", name)
        if match and match.group(2) == "":
            fields.setdefault(match.group(1), []).append(value)
        elif match:
            fields.setdefault(match.group(1), {})[match.group(2)] = value
        else:
            fields[name] = value
    return fields, files


def rails_boolean(value: Any) -> Any:
    """ActiveModel::Type::Boolean: "false", "0", "f", "off" (any case) are false, other non-empty strings true."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "f", "off", "")
    return value


def load_schema(service: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / f"{service}.json", encoding="utf-8") as handle:
        schema = json.load(handle)
    for op in schema["operations"]:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", op["path"])
        op["_regex"] = re.compile(f"^{pattern}$")
    return schema


def type_ok(value: Any, types: str | list[str]) -> bool:
    names = [types] if isinstance(types, str) else types
    for name in names:
        if name in ("integer", "number") and isinstance(value, bool):
            continue
        if isinstance(value, JSON_TYPES[name]):
            return True
    return False


def body_errors(spec: dict[str, Any], body: Any) -> list[tuple[str, str]]:
    """(property, problem) for each way ``body`` breaks the operation's documented body ``spec``."""
    if not isinstance(body, dict):
        return [("", "the body is not a JSON object")]
    problems = []
    props = spec.get("properties", {})
    for name in spec.get("required", []):
        if name not in body or body[name] is None:
            problems.append((name, "required"))
    alternatives = spec.get("required_any")
    if alternatives and not any(all(body.get(n) is not None for n in names) for names in alternatives):
        problems.append(("/".join(" + ".join(names) for names in alternatives), "required (one of)"))
    for name, value in body.items():
        prop = props.get(name)
        if prop is None:
            if spec.get("additional_properties") is False:
                problems.append((name, "unknown property"))
            continue
        if value is None and prop.get("nullable"):
            continue
        if not type_ok(value, prop["type"]):
            problems.append((name, f"type: expected {prop['type']}"))
        elif "enum" in prop and value not in prop["enum"]:
            problems.append((name, f"enum: one of {prop['enum']}"))
        elif "pattern" in prop and isinstance(value, str) and not re.search(prop["pattern"], value):
            problems.append((name, f"pattern {prop['pattern']}"))
        elif prop.get("min_length") and isinstance(value, str) and len(value.strip()) < prop["min_length"]:
            problems.append((name, "empty"))
    return problems


# ---- Payload builders (webhooks the real applications send) ------------------------------------------------

# Evolution's envelope names `<global url>/<event-name>` as destination even when WEBHOOK_BY_EVENTS is false (the
# POST itself then goes to the global URL): webhook.controller.ts.
N8N_EVOLUTION_WEBHOOK = "http://borgstack-n8n:5678/webhook/borgstack/evolution"


def evolution_messages_upsert(number: str, text: str, *, instance: str = "principal", push_name: str = "João Silva",
                              message_id: str | None = None, from_me: bool = False, timestamp: int | None = None,
                              server_url: str = "http://borgstack-evolution-api:8080", apikey: str = "",
                              sender: str = "5511999887766@s.whatsapp.net",
                              message: dict[str, Any] | None = None, message_type: str = "conversation",
                              instance_id: str = "00000000-0000-4000-8000-000000000001",
                              destination: str = f"{N8N_EVOLUTION_WEBHOOK}/messages-upsert") -> dict[str, Any]:
    """The body Evolution API 2.2.3 POSTs to its global webhook for an incoming (or own) text message.

    Shape: webhook.controller.ts ``webhookData`` around ``prepareMessage`` of whatsapp.baileys.service.ts (see
    evolution.json ``webhooks.messages.upsert``). ``message`` replaces ``{"conversation": text}`` (media etc.).
    """
    return {
        "event": "messages.upsert",
        "instance": instance,
        "data": {
            "key": {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": from_me,
                    "id": message_id or uuid.uuid4().hex[:20].upper()},
            "pushName": push_name,
            "status": "SERVER_ACK" if from_me else "DELIVERY_ACK",
            "message": message if message is not None else {"conversation": text},
            "messageType": message_type,
            "messageTimestamp": timestamp if timestamp is not None else int(time.time()),
            "instanceId": instance_id,
            "source": "android",
        },
        "destination": destination,
        "date_time": iso_now(),
        "sender": sender,
        "server_url": server_url,
        "apikey": apikey,
    }


def evolution_messages_update(number: str, message_id: str, status: str = "READ", *, instance: str = "principal",
                              from_me: bool = True, server_url: str = "http://borgstack-evolution-api:8080",
                              apikey: str = "", sender: str = "5511999887766@s.whatsapp.net",
                              instance_id: str = "00000000-0000-4000-8000-000000000001",
                              destination: str = f"{N8N_EVOLUTION_WEBHOOK}/messages-update") -> dict[str, Any]:
    """The body Evolution API 2.2.3 POSTs for a delivery/read receipt (``messages.update``): NOT a ``key`` object
    (as the architecture document shows) but flat ``keyId``/``remoteJid``/``fromMe``/``status``."""
    if status not in ("ERROR", "PENDING", "SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED", "DELETED"):
        raise ValueError(f"status {status!r} is not one Evolution API sends")
    return {
        "event": "messages.update",
        "instance": instance,
        "data": {
            "messageId": uuid.uuid4().hex[:25],
            "keyId": message_id,
            "remoteJid": f"{number}@s.whatsapp.net",
            "fromMe": from_me,
            "participant": f"{number}@s.whatsapp.net",
            "status": status,
            "instanceId": instance_id,
        },
        "destination": destination,
        "date_time": iso_now(),
        "sender": sender,
        "server_url": server_url,
        "apikey": apikey,
    }


def evolution_connection_update(state: str, status_reason: int | None = None, *, instance: str = "principal",
                                server_url: str = "http://borgstack-evolution-api:8080", apikey: str = "",
                                sender: str = "5511999887766@s.whatsapp.net",
                                destination: str = f"{N8N_EVOLUTION_WEBHOOK}/connection-update") -> dict[str, Any]:
    """The body Evolution API 2.2.3 POSTs when an instance's WhatsApp connection changes (``connection.update``).

    whatsapp.baileys.service.ts connectionUpdate: ``open`` (with wuid, profileName, profilePictureUrl) and
    ``connecting`` carry {instance, state, statusReason}; ``close`` is sent only when Evolution does not reconnect
    (statusReason 401 loggedOut, 403 forbidden, 402, 406); ``refused`` (statusReason 428) when the QR code limit is
    reached. statusReason defaults to 200 when Baileys gave no error (see evolution.json ``connection.update``)."""
    if state not in ("open", "connecting", "close", "refused"):
        raise ValueError(f"state {state!r} is not one Evolution API sends")
    if state == "close" and status_reason not in (401, 402, 403, 406):
        raise ValueError("Evolution 2.2.3 reconnects (and sends no close) unless statusReason is 401, 402, 403 or 406")
    data: dict[str, Any] = {"instance": instance, "state": state,
                            "statusReason": status_reason if status_reason is not None else
                            (428 if state == "refused" else 200)}
    if state in ("open", "refused"):
        data.update({"wuid": sender, "profileName": "BorgStack", "profilePictureUrl": None})
    return {"event": "connection.update", "instance": instance, "data": data, "destination": destination,
            "date_time": iso_now(), "sender": sender, "server_url": server_url, "apikey": apikey}


def _contact_push(contact: dict[str, Any]) -> dict[str, Any]:
    return {
        "additional_attributes": contact.get("additional_attributes", {}),
        "custom_attributes": contact.get("custom_attributes", {}),
        "email": contact.get("email"),
        "id": contact["id"],
        "identifier": contact.get("identifier"),
        "name": contact.get("name"),
        "phone_number": contact.get("phone_number"),
        "thumbnail": "",
        "blocked": False,
        "type": "contact",
    }


def _contact_webhook(contact: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    data = _contact_push(contact)
    data.pop("blocked")
    data["avatar"] = ""
    data["account"] = account
    return data


AGENT = {"id": 1, "name": "Administrador BorgStack", "email": "admin@example.com.br"}


def _user_webhook(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "name": user["name"], "avatar_url": "", "type": "user",
            "availability_status": "online", "email": user["email"]}


def _conversation_webhook(conv: dict[str, Any], contact: dict[str, Any], messages: list[dict[str, Any]],
                          account: dict[str, Any]) -> dict[str, Any]:
    return {
        "additional_attributes": conv.get("additional_attributes", {}),
        "can_reply": True,
        "channel": "Channel::Api",
        "contact_inbox": {"id": conv["contact_inbox_id"], "contact_id": contact["id"], "inbox_id": conv["inbox_id"],
                          "source_id": conv["source_id"], "created_at": conv["created_at_iso"],
                          "updated_at": conv["created_at_iso"], "hmac_verified": False, "pubsub_token": None},
        "id": conv["display_id"],
        "inbox_id": conv["inbox_id"],
        "messages": [_message_push(m, contact, account) for m in messages[-1:]],
        "labels": [],
        "meta": {"sender": _contact_push(contact), "assignee": None, "team": None, "hmac_verified": False},
        "status": conv["status"],
        "custom_attributes": conv.get("custom_attributes", {}),
        "snoozed_until": None,
        "unread_count": 0,
        "first_reply_created_at": None,
        "priority": None,
        "waiting_since": conv["created_at"],
        "agent_last_seen_at": 0,
        "contact_last_seen_at": 0,
        "last_activity_at": conv["created_at"],
        "timestamp": conv["created_at"],
        "created_at": conv["created_at"],
        "updated_at": float(conv["created_at"]),
    }


MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}


def _message_push(msg: dict[str, Any], contact: dict[str, Any], account: dict[str, Any]) -> dict[str, Any]:
    sender = _contact_push(contact) if msg["message_type"] == "incoming" else {
        "id": AGENT["id"], "name": AGENT["name"], "available_name": AGENT["name"], "avatar_url": "",
        "type": "user", "availability_status": "online", "thumbnail": ""}
    return {
        "id": msg["id"], "content": msg["content"], "account_id": account["id"], "inbox_id": msg["inbox_id"],
        "conversation_id": msg["conversation_display_id"], "message_type": MESSAGE_TYPES[msg["message_type"]],
        "created_at": msg["created_at"], "updated_at": msg["created_at_iso"], "private": msg["private"],
        "status": "sent", "source_id": msg.get("source_id"), "content_type": msg["content_type"],
        "content_attributes": msg.get("content_attributes", {}), "sender_type": "Contact"
        if msg["message_type"] == "incoming" else "User", "sender_id": sender["id"], "external_source_ids": {},
        "additional_attributes": {}, "processed_message_content": msg["content"], "sentiment": {},
        "conversation": {"assignee_id": None, "unread_count": 0, "last_activity_at": msg["created_at"],
                         "contact_inbox": {"source_id": msg.get("conversation_source_id")}},
        "sender": sender,
        **({"attachments": msg["attachments_push"]} if msg.get("attachments_push") else {}),
    }


def chatwoot_message_created(content: str, *, message_type: str = "outgoing", private: bool = False,
                             message_id: int = 1, conversation_id: int = 1, inbox_id: int = 1, account_id: int = 1,
                             account_name: str = "BorgStack", contact: dict[str, Any] | None = None,
                             conversation_status: str = "open", source_id: str | None = None,
                             sender: dict[str, Any] | None = None,
                             attachments: list[dict[str, Any]] | None = None,
                             inbox_name: str = "WhatsApp") -> dict[str, Any]:
    """The body Chatwoot 4.6 POSTs to an account webhook subscribed to ``message_created``.

    Message#webhook_data merged with ``event`` (WebhookListener#message_created); see chatwoot.json
    ``webhooks.message_created``. ``contact`` (id, name, phone_number, identifier) is the conversation's contact: it
    appears under ``conversation.meta.sender`` (there is no top-level ``contact`` key, unlike the architecture
    document's example); ``sender`` is the agent (type ``user``) for outgoing messages, the contact for incoming.
    """
    contact = {"id": 1, "name": "João Silva", "phone_number": "+5511987654321",
               "identifier": "whatsapp:5511987654321", **(contact or {})}
    account = {"id": account_id, "name": account_name}
    created = int(time.time())
    conv = {"display_id": conversation_id, "inbox_id": inbox_id, "contact_inbox_id": 1,
            "source_id": f"{uuid.uuid4()}", "created_at_iso": iso_now(), "status": conversation_status,
            "created_at": created}
    msg = {"id": message_id, "content": content, "inbox_id": inbox_id, "conversation_display_id": conversation_id,
           "message_type": message_type, "created_at": created, "created_at_iso": iso_now(), "private": private,
           "content_type": "text", "content_attributes": {}, "source_id": source_id,
           "conversation_source_id": conv["source_id"]}
    if sender is None:
        sender = _contact_webhook(contact, account) if message_type == "incoming" else _user_webhook(AGENT)
    return {
        "account": account,
        "additional_attributes": {},
        "content_attributes": {},
        "content_type": "text",
        "content": content,
        "conversation": _conversation_webhook(conv, contact, [msg], account),
        "created_at": iso_now(),
        "id": message_id,
        "inbox": {"id": inbox_id, "name": inbox_name},  # Inbox#webhook_data
        "message_type": message_type,
        "private": private,
        "sender": sender,
        "source_id": source_id,
        "event": "message_created",
        # Message#webhook_data adds attachments (Attachment#push_event_data each) only when the message has some.
        **({"attachments": attachments} if attachments else {}),
    }


# ---- State --------------------------------------------------------------------------------------------------


def _id_names(spec: str) -> list[tuple[int, str]]:
    """'1:WhatsApp,2:Vendas' -> [(1, 'WhatsApp'), (2, 'Vendas')]."""
    pairs = [item.split(":", 1) for item in spec.split(",") if item]
    return [(int(key), name) for key, name in pairs]


class Contract:
    """All state, behind one lock (the HTTP servers are threaded)."""

    def __init__(self, env: dict[str, str]) -> None:
        env = dict(env)
        for name in ("EVOLUTION_API_KEY", "CHATWOOT_API_TOKEN"):
            if env.get(f"{name}_FILE") and not env.get(name):
                with open(env[f"{name}_FILE"], encoding="utf-8") as handle:
                    env[name] = handle.read().strip()
        missing = [name for name in ("EVOLUTION_API_KEY", "CHATWOOT_API_TOKEN") if not env.get(name)]
        if missing:
            raise SystemExit(f"contract_server: set {', '.join(missing)}")
        self.evolution_key = env["EVOLUTION_API_KEY"]
        self.chatwoot_token = env["CHATWOOT_API_TOKEN"]
        self.account_id = int(env.get("CHATWOOT_ACCOUNT_ID") or 1)
        self.inbox_id = int(env.get("CHATWOOT_INBOX_ID") or 1)
        self.instance = env.get("EVOLUTION_INSTANCE") or "principal"
        # Several WhatsApp numbers: EVOLUTION_INSTANCES "principal,vendas" (the first is self.instance),
        # CHATWOOT_INBOXES "1:WhatsApp,2:Vendas" (the first is self.inbox_id), CHATWOOT_TEAMS "1:vendas".
        self.instances = [n for n in (env.get("EVOLUTION_INSTANCES") or self.instance).split(",") if n]
        self.instance = self.instances[0]
        self.inbox_names = dict(_id_names(env.get("CHATWOOT_INBOXES") or f"{self.inbox_id}:WhatsApp"))
        self.inbox_id = next(iter(self.inbox_names))
        self.teams = dict(_id_names(env.get("CHATWOOT_TEAMS") or ""))
        self.webhook_url = env.get("CHATWOOT_WEBHOOK_URL") or ""
        # Chatwoot builds an attachment's data_url from FRONTEND_URL (its public address), not the internal one.
        self.frontend_url = (env.get("CHATWOOT_FRONTEND_URL") or "https://chatwoot.lab.borgstack.test").rstrip("/")
        self.schemas = {"evolution": load_schema("evolution"), "chatwoot": load_schema("chatwoot")}
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.calls: list[dict[str, Any]] = []
            self.faults: list[dict[str, Any]] = []
            self.webhooks: list[dict[str, Any]] = []
            self.contacts: list[dict[str, Any]] = []
            self.conversations: list[dict[str, Any]] = []
            self.messages: list[dict[str, Any]] = []
            self.sent: list[dict[str, Any]] = []
            # Bytes of Chatwoot's stored attachments (ActiveStorage blobs) by key, and of the files WhatsApp holds for
            # received media messages by message id (what getBase64FromMediaMessage downloads).
            self.blobs: dict[str, dict[str, Any]] = {}
            self.whatsapp_media: dict[str, bytes] = {}
            # The WhatsApp session's connection state (Baileys' connection: open, connecting, close).
            self.session_state = "open"
            # Messages Evolution API saved in its database (DATABASE_SAVE_DATA_NEW_MESSAGE), what findMessages reads.
            self.received: list[dict[str, Any]] = []
            self.next_id = {"contact": 1, "contact_inbox": 1, "conversation": 1, "message": 1, "attachment": 1}

    def new_id(self, kind: str) -> int:
        value = self.next_id[kind]
        self.next_id[kind] += 1
        return value

    @property
    def account(self) -> dict[str, Any]:
        return {"id": self.account_id, "name": "BorgStack"}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"chatwoot": {"contacts": self.contacts, "conversations": self.conversations,
                                 "messages": self.messages},
                    "evolution": {"sent": self.sent, "received": self.received}}

    def blob(self, key: str) -> dict[str, Any] | None:
        """A stored file as base64 (tests compare it with what they sent): {filename, content_type, base64}."""
        with self.lock:
            found = self.blobs.get(key)
            return None if found is None else {"filename": found["filename"], "content_type": found["content_type"],
                                               "base64": base64.b64encode(found["data"]).decode()}

    def add_whatsapp_media(self, spec: Any) -> dict[str, Any]:
        """The file WhatsApp holds for a received media message (``{id, base64}``)."""
        if not isinstance(spec, dict) or not isinstance(spec.get("id"), str) or not is_base64(spec.get("base64")):
            raise ValueError("give id (the message's key.id) and base64")
        data = base64.b64decode(spec["base64"])
        with self.lock:
            self.whatsapp_media[spec["id"]] = data
        return {"id": spec["id"], "size": len(data), "sha256": sha256(data)}

    def set_session_state(self, spec: Any) -> dict[str, Any]:
        """The WhatsApp session's state as connectionState reports it (``{state: open|connecting|close}``)."""
        state = spec.get("state") if isinstance(spec, dict) else None
        if state not in ("open", "connecting", "close"):
            raise ValueError("state must be open, connecting or close")
        with self.lock:
            self.session_state = state
        return {"state": state}

    def add_received(self, spec: Any) -> dict[str, Any]:
        """A message WhatsApp delivered to Evolution API (a messages.upsert webhook body, or its ``data``): saved
        as Evolution's Message row, whether or not its webhook reached n8n."""
        data = spec.get("data", spec) if isinstance(spec, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("key"), dict) or not data["key"].get("id"):
            raise ValueError("give a messages.upsert body (or its data) with key.id")
        if not isinstance(data.get("messageTimestamp"), int):
            raise ValueError("messageTimestamp (seconds) is required")
        row = {"id": uuid.uuid4().hex[:25], "key": data["key"], "pushName": data.get("pushName"),
               "messageType": data.get("messageType", "conversation"), "message": data.get("message") or {},
               "messageTimestamp": data["messageTimestamp"], "instanceId": data.get("instanceId"),
               "source": data.get("source", "android"), "contextInfo": None, "MessageUpdate": []}
        # The instance that saved it (fetchMessages reads the instance's own rows: where.instanceId).
        instance = spec.get("instance", self.instance) if isinstance(spec, dict) and "data" in spec else self.instance
        if instance not in self.instances:
            raise ValueError(f"unknown instance {instance!r}")
        row["_instance"] = instance
        with self.lock:
            self.received.append(row)
        return {"id": row["id"], "key": row["key"]}

    def store_attachment(self, msg: dict[str, Any], upload: dict[str, Any]) -> dict[str, Any]:
        """One attachments[] file of a message: an ActiveStorage blob plus the Attachment row (push_event_data)."""
        key = secrets.token_hex(14)
        signed_id = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=") + "--" + secrets.token_hex(20)
        filename = upload["filename"] or "file"
        self.blobs[key] = {"data": upload["data"], "content_type": upload["content_type"], "filename": filename,
                           "signed_id": signed_id}
        extension = filename.rsplit(".", 1)[1] if "." in filename else None
        quoted = urllib.parse.quote(filename)
        attachment = {"id": self.new_id("attachment"), "message_id": msg["id"],
                      "file_type": chatwoot_file_type(upload["content_type"]), "account_id": self.account_id,
                      "extension": extension,
                      "data_url": f"{self.frontend_url}/rails/active_storage/blobs/redirect/{signed_id}/{quoted}",
                      "thumb_url": "", "file_size": len(upload["data"]), "width": None, "height": None}
        msg.setdefault("attachments", []).append({"blob_key": key, "filename": filename,
                                                  "content_type": upload["content_type"],
                                                  "size": len(upload["data"]), "sha256": sha256(upload["data"]),
                                                  "file_type": attachment["file_type"]})
        msg.setdefault("attachments_push", []).append(attachment)
        return attachment

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = len(self.calls) + 1
            self.calls.append(entry)

    def take_fault(self, service: str, method: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            for fault in self.faults:
                if fault["service"] != service or fault["method"] not in (method, "*"):
                    continue
                if not re.search(fault["path_regex"], path) or fault["times"] == 0:
                    continue
                if fault["times"] > 0:
                    fault["times"] -= 1
                fault["hits"] += 1
                return dict(fault)
        return None

    def add_fault(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(spec) - {"service", "method", "path_regex", "status", "times", "retry_after", "body"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        if spec.get("service") not in ("evolution", "chatwoot"):
            raise ValueError("service must be evolution or chatwoot")
        if spec.get("status") not in (500, 422, 429, 502, 503, 400, 404):
            raise ValueError("status must be 500, 422 or 429 (or 400, 404, 502, 503)")
        times = spec.get("times", -1)
        if not isinstance(times, int) or times == 0 or times < -1:
            raise ValueError("times must be a positive integer or -1 (always)")
        re.compile(spec.get("path_regex", ".*"))
        fault = {"service": spec["service"], "method": (spec.get("method") or "*").upper(),
                 "path_regex": spec.get("path_regex", ".*"), "status": spec["status"], "times": times,
                 "retry_after": spec.get("retry_after"), "body": spec.get("body"), "hits": 0}
        with self.lock:
            self.faults.append(fault)
        return fault

    # ---- Chatwoot resources ----

    def find_contact(self, contact_id: int) -> dict[str, Any] | None:
        return next((c for c in self.contacts if c["id"] == contact_id), None)

    def find_conversation(self, display_id: int) -> dict[str, Any] | None:
        return next((c for c in self.conversations if c["display_id"] == display_id), None)

    def inbox(self, inbox_id: int | None = None) -> dict[str, Any]:
        inbox_id = self.inbox_id if inbox_id is None else inbox_id
        return {"id": inbox_id, "avatar_url": "", "channel_id": inbox_id, "name": self.inbox_names[inbox_id],
                "channel_type": "Channel::Api", "greeting_enabled": False, "greeting_message": None,
                "working_hours_enabled": False, "enable_email_collect": True, "csat_survey_enabled": False,
                "enable_auto_assignment": True, "out_of_office_message": None, "working_hours": [],
                "timezone": "UTC", "callback_webhook_url": None, "allow_messages_after_resolved": True,
                "lock_to_single_conversation": False, "sender_name_type": "friendly", "business_name": None,
                "webhook_url": "", "inbox_identifier": f"borgstack-lab-inbox-{inbox_id}", "additional_attributes": {},
                "provider": None}

    def contact_view(self, contact: dict[str, Any]) -> dict[str, Any]:
        """api/v1/models/_contact.json.jbuilder with contact inboxes (the /contacts endpoints)."""
        inboxes = [{"source_id": ci["source_id"], "inbox": self.inbox(ci["inbox_id"])} for ci in contact["contact_inboxes"]]
        return {
            "additional_attributes": contact.get("additional_attributes", {}),
            "availability_status": "offline",
            "email": contact.get("email"),
            "id": contact["id"],
            "name": contact.get("name"),
            "phone_number": contact.get("phone_number"),
            "blocked": contact.get("blocked", False),
            "identifier": contact.get("identifier"),
            "thumbnail": "",
            "custom_attributes": contact.get("custom_attributes", {}),
            "last_activity_at": contact["last_activity_at"],
            "created_at": contact["created_at"],
            "contact_inboxes": inboxes,
        }

    def conversation_view(self, conv: dict[str, Any]) -> dict[str, Any]:
        """api/v1/conversations/partials/_conversation.json.jbuilder (meta, id = display_id, messages...)."""
        contact = self.find_contact(conv["contact_id"])
        msgs = [m for m in self.messages if m["conversation_display_id"] == conv["display_id"]]
        view = _conversation_webhook(conv, contact, msgs, self.account)
        view.pop("contact_inbox")
        view.pop("channel")
        view["meta"]["channel"] = "Channel::Api"
        view["account_id"] = self.account_id
        view["uuid"] = conv["uuid"]
        view["last_non_activity_message"] = view["messages"][0] if view["messages"] else None
        return view

    def message_view(self, msg: dict[str, Any]) -> dict[str, Any]:
        """api/v1/accounts/conversations/messages/create.json.jbuilder."""
        conv = self.find_conversation(msg["conversation_display_id"])
        contact = self.find_contact(conv["contact_id"])
        push = _message_push(msg, contact, self.account)
        return {"id": msg["id"], "content": msg["content"], "inbox_id": msg["inbox_id"], "echo_id": None,
                "conversation_id": msg["conversation_display_id"], "message_type": msg["message_type_raw"],
                "content_type": msg["content_type"], "content_attributes": msg.get("content_attributes", {}),
                "created_at": msg["created_at"], "private": msg["private"], "sender": push["sender"],
                **({"attachments": msg["attachments_push"]} if msg.get("attachments_push") else {})}

    def create_message(self, conv: dict[str, Any], body: dict[str, Any], *, from_ui: bool = False
                       ) -> dict[str, Any]:
        now = time.time()
        raw_type = body.get("message_type", "outgoing")
        msg = {"id": self.new_id("message"), "content": body.get("content"), "inbox_id": conv["inbox_id"],
               "conversation_display_id": conv["display_id"], "message_type": raw_type,
               "message_type_raw": raw_type, "private": bool(body.get("private", False)),
               "content_type": body.get("content_type", "text"),
               "content_attributes": body.get("content_attributes") or {}, "source_id": body.get("source_id"),
               "created_at": int(now), "created_at_iso": iso_now(), "conversation_source_id": conv["source_id"],
               "created_by": "ui" if from_ui else "api"}
        for upload in body.get("_files") or []:
            self.store_attachment(msg, upload)
        self.messages.append(msg)
        self.emit_message_created(conv, msg)
        return msg

    def emit_message_created(self, conv: dict[str, Any], msg: dict[str, Any]) -> None:
        """Chatwoot fires message_created for every message (incoming ones created by the API included)."""
        if not self.webhook_url:
            return
        contact = self.find_contact(conv["contact_id"])
        payload = chatwoot_message_created(
            msg["content"], message_type=msg["message_type"], private=msg["private"], message_id=msg["id"],
            conversation_id=conv["display_id"], inbox_id=conv["inbox_id"], account_id=self.account_id,
            contact=contact, conversation_status=conv["status"], source_id=msg.get("source_id"),
            sender=_contact_webhook(contact, self.account) if msg["message_type"] == "incoming"
            else _user_webhook(AGENT), attachments=msg.get("attachments_push"),
            inbox_name=self.inbox_names.get(conv["inbox_id"], "WhatsApp"))
        payload["conversation"] = _conversation_webhook(
            conv, contact, [m for m in self.messages if m["conversation_display_id"] == conv["display_id"]],
            self.account)
        entry = {"at": time.time(), "url": self.webhook_url, "event": "message_created", "payload": payload,
                 "status": None, "error": None}
        self.webhooks.append(entry)
        threading.Thread(target=self._deliver, args=(entry,), daemon=True).start()

    def _deliver(self, entry: dict[str, Any]) -> None:
        # Chatwoot's WebhookJob posts JSON once (no retry on a non-2xx answer in 4.x's Webhooks::Trigger).
        request = urllib.request.Request(entry["url"], data=json.dumps(entry["payload"]).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                entry["status"] = response.status
        except urllib.error.HTTPError as exc:
            entry["status"] = exc.code
        except (urllib.error.URLError, OSError) as exc:
            entry["error"] = str(exc)


# ---- Request handling ---------------------------------------------------------------------------------------


class Reply(Exception):
    """An HTTP answer, raised from anywhere in a handler."""

    def __init__(self, status: int, body: Any, reason: str | None = None, headers: dict[str, str] | None = None,
                 content_type: str = "application/json; charset=utf-8", rejected: bool = True) -> None:
        super().__init__(reason or str(status))
        self.status, self.body, self.reason, self.headers = status, body, reason, headers or {}
        self.content_type = content_type
        # rejected: the request broke the documented contract (path, auth, body). An answer the application gives
        # to a valid request (duplicate contact, unknown record, injected fault) is not a rejection.
        self.rejected = rejected


def shorten(value: Any) -> Any:
    """The call log keeps long strings (base64 media) as their length and digest, not the megabytes."""
    if isinstance(value, str) and len(value) > 512:
        return f"<{len(value)} characters, sha256 {sha256(value.encode())}>"
    if isinstance(value, dict):
        return {k: shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shorten(v) for v in value]
    return value


def parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    return json.loads(raw.decode("utf-8"))


class Evolution:
    """Evolution API 2.2.3 (src/api/routes/index.router.ts: guards instanceExists, instanceLogged, apikey)."""

    name = "evolution"

    def __init__(self, contract: Contract) -> None:
        self.c = contract
        self.schema = contract.schemas["evolution"]

    def not_found(self, method: str, path: str) -> Reply:
        return Reply(404, {"status": 404, "error": "Not Found", "response": {"message": [f"Cannot {method} {path}"]}},
                     "unknown path")

    def error(self, status: int, error: str, message: Any, reason: str) -> Reply:
        return Reply(status, {"status": status, "error": error, "response": {"message": message}}, reason)

    def handle(self, op: dict[str, Any], params: dict[str, str], headers: Any, body: Any, query: dict[str, Any]
               ) -> tuple[int, Any]:
        if "instance" in params and params["instance"] not in self.c.instances:
            raise self.error(404, "Not Found", [f'The "{params["instance"]}" instance does not exist'],
                             "unknown instance")
        if op.get("auth", True):
            key = headers.get("apikey")
            if not key or not secrets.compare_digest(key, self.c.evolution_key):
                raise self.error(401, "Unauthorized", "Unauthorized", "auth: apikey missing or wrong")
        if "body" in op:
            problems = body_errors(op["body"], body if body is not None else {})
            if problems:
                # jsonschema's error text, or the property's description when it has one (abstract.router.ts)
                messages = []
                for prop, problem in problems:
                    desc = op["body"].get("properties", {}).get(prop, {}).get("description")
                    if problem == "required":
                        messages.append(f'instance requires property "{prop}"')
                    elif desc:
                        messages.append(desc)
                    else:
                        messages.append(f"{prop} {problem}")
                raise self.error(400, "Bad Request", messages, "validation: " + "; ".join(
                    f"{p}: {q}" for p, q in problems))
        fault = self.c.take_fault(self.name, op["method"], op["_path"])
        if fault:
            raise fault_reply(self.name, fault)
        return getattr(self, op["id"])(params, body, query)

    def root(self, params, body, query):
        return 200, {"status": 200, "message": "Welcome to the Evolution API, it is working!", "version": "2.2.3",
                     "clientName": "evolution_exchange", "manager": "http://borgstack-evolution-api:8080/manager",
                     "documentation": "https://doc.evolution-api.com"}

    def connection_state(self, params, body, query):
        # A closed session still answers 200: instance.controller.ts connectionState reports the state, it does not fail.
        return 200, {"instance": {"instanceName": params["instance"], "state": self.c.session_state}}

    def send_text(self, params, body, query):
        if not body["text"].strip():
            raise self.error(400, "Bad Request", ["Text is required"], "validation: text is empty")
        number = body["number"]
        digits = re.sub(r"\D", "", number.split("@")[0])
        if not digits:
            # whatsappNumber() answers exists=false; sendMessageWithTyping throws BadRequest(isWA)
            raise self.error(400, "Bad Request", [{"exists": False, "jid": number, "number": number}],
                             "number is not on WhatsApp")
        now = int(time.time())
        sent = {
            "key": {"remoteJid": f"{digits}@s.whatsapp.net", "fromMe": True, "id": uuid.uuid4().hex[:16].upper()},
            "pushName": "",
            "status": "PENDING",
            "message": {"conversation": body["text"]},
            "contextInfo": None,
            "messageType": "conversation",
            "messageTimestamp": now,
            "instanceId": "00000000-0000-4000-8000-000000000001",
            "source": "unknown",
        }
        with self.c.lock:
            self.c.sent.append({"instance": params["instance"], "number": number, "text": body["text"], "delay": body.get("delay"),
                                "at": time.time(), "response": sent})
        return 201, sent

    def _sent_message(self, number: str, message: dict[str, Any], message_type: str) -> dict[str, Any]:
        digits = re.sub(r"\D", "", number.split("@")[0])
        if not digits:
            raise self.error(400, "Bad Request", [{"exists": False, "jid": number, "number": number}],
                             "number is not on WhatsApp")
        return {"key": {"remoteJid": f"{digits}@s.whatsapp.net", "fromMe": True, "id": uuid.uuid4().hex[:16].upper()},
                "pushName": "", "status": "PENDING", "message": message, "contextInfo": None,
                "messageType": message_type, "messageTimestamp": int(time.time()),
                "instanceId": "00000000-0000-4000-8000-000000000001", "source": "unknown"}

    def _media_bytes(self, media: Any, what: str) -> bytes:
        """The file of a send: base64 (decoded here); a URL is not fetched by the contract (it would be by
        Evolution API), and anything else is refused - upstream decodes it as base64 into a broken file."""
        if is_url(media):
            raise self.error(400, "Bad Request", [f"{what}: the contract does not fetch URLs"],
                             f"validation: {what} is a URL (the lab has no internet to fetch it from)")
        if not is_base64(media):
            raise self.error(400, "Bad Request", ["Owned media must be a url or base64"],
                             f"validation: {what} is neither a URL nor base64")
        return base64.b64decode(media)

    def send_media(self, params, body, query):
        data = self._media_bytes(body.get("media"), "media")
        mediatype = body["mediatype"]
        file_name = body.get("fileName")
        if mediatype == "document" and not file_name:
            # prepareMediaMessage takes a document's name from the media URL; for base64 there is none -> error
            raise self.error(400, "Bad Request", ["TypeError: Cannot read properties of null (reading '1')"],
                             "validation: a base64 document needs fileName")
        file_name = file_name or {"image": "image.png", "video": "video.mp4"}.get(mediatype, "")
        mimetype = body.get("mimetype") or {"png": "image/png", "mp4": "video/mp4", "jpg": "image/jpeg",
                                            "jpeg": "image/jpeg", "pdf": "application/pdf"}.get(
            file_name.rsplit(".", 1)[-1].lower(), "")
        if not mimetype:
            raise self.error(400, "Bad Request", ["mimetype could not be determined"],
                             "validation: no mimetype and none from fileName")
        content = {"url": "https://mmg.whatsapp.net/lab", "mimetype": mimetype, "fileLength": str(len(data)),
                   "fileName": file_name}
        if body.get("caption") is not None:
            content["caption"] = body["caption"]
        sent = self._sent_message(body["number"], {f"{mediatype}Message": content}, f"{mediatype}Message")
        with self.c.lock:
            self.c.sent.append({"instance": params["instance"], "number": body["number"], "kind": "media", "mediatype": mediatype,
                                "mimetype": mimetype, "fileName": file_name, "caption": body.get("caption"),
                                "size": len(data), "sha256": sha256(data), "at": time.time(), "response": sent})
        return 201, sent

    def send_audio(self, params, body, query):
        audio = body.get("audio")
        if not (is_url(audio) or is_base64(audio)):
            raise self.error(400, "Bad Request", ["File buffer, URL, or base64 audio is required"],
                             "validation: audio is neither a URL nor base64")
        data = self._media_bytes(audio, "audio")
        sent = self._sent_message(body["number"], {"audioMessage": {
            "url": "https://mmg.whatsapp.net/lab", "mimetype": "audio/ogg; codecs=opus", "ptt": True,
            "fileLength": str(len(data))}}, "audioMessage")
        with self.c.lock:
            self.c.sent.append({"instance": params["instance"], "number": body["number"], "kind": "audio", "mediatype": "audio",
                                "mimetype": "audio/ogg; codecs=opus", "encoding": body.get("encoding", True),
                                "size": len(data), "sha256": sha256(data), "at": time.time(), "response": sent})
        return 201, sent

    def find_messages(self, params, body, query):
        """channel.service.ts fetchMessages: the instance's saved messages, newest first, a page at a time."""
        where = body.get("where") or {}
        if not isinstance(where, dict):
            raise self.error(400, "Bad Request", ["where is not of a type(s) object"], "validation: where")
        key = where.get("key") or {}
        stamp = where.get("messageTimestamp") or {}

        def seconds(value: Any) -> int:
            # new Date(x).getTime() / 1000: an ISO date or milliseconds; anything else is NaN (Prisma then fails)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return int(value // 1000)
            try:
                return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
            except ValueError as exc:
                raise self.error(400, "Bad Request", ["Invalid date"], "findMessages: messageTimestamp not a date"
                                 ) from exc
        with self.c.lock:
            # The instance's own messages only (fetchMessages: where instanceId = this instance's id).
            rows = [{k: v for k, v in r.items() if k != "_instance"} for r in self.c.received
                    if r["_instance"] == params["instance"]]
        if isinstance(stamp, dict) and stamp.get("gte") and stamp.get("lte"):
            low, high = seconds(stamp["gte"]), seconds(stamp["lte"])
            rows = [r for r in rows if low <= r["messageTimestamp"] <= high]
        for field in ("id", "remoteJid", "participants"):
            if key.get(field):
                rows = [r for r in rows if r["key"].get(field) == key[field]]
        if key.get("fromMe"):  # a false fromMe filters nothing upstream
            rows = [r for r in rows if r["key"].get("fromMe") == key["fromMe"]]
        rows.sort(key=lambda r: r["messageTimestamp"], reverse=True)
        size = body.get("offset") or 50
        page = body.get("page") or 1
        start = size * (0 if page == 1 else page - 1)
        return 200, {"messages": {"total": len(rows), "pages": -(-len(rows) // size), "currentPage": page,
                                  "records": rows[start:start + size]}}

    def get_base64(self, params, body, query):
        """chat.controller getBase64FromMediaMessage -> whatsapp.baileys.service.ts getBase64FromMediaMessage."""
        def refuse(message: str) -> Reply:
            return self.error(400, "Bad Request", [message], f"getBase64FromMediaMessage: {message}")
        msg = body.get("message")
        if not isinstance(msg, dict) or not isinstance(msg.get("key"), dict) or not msg["key"].get("id"):
            raise refuse("TypeError: Cannot read properties of undefined (reading 'key')")
        content = msg.get("message")
        if not isinstance(content, dict):
            # without the message itself Evolution reads it from its database (DATABASE_SAVE_DATA_NEW_MESSAGE)
            raise refuse("Message not found")
        for subtype in MESSAGE_SUBTYPES:
            if isinstance(content.get(subtype), dict) and isinstance(content[subtype].get("message"), dict):
                content = content[subtype]["message"]
        media_type = next((t for t in MEDIA_MESSAGE_TYPES if isinstance(content.get(t), dict)), None)
        if media_type is None:
            raise refuse("The message is not of the media type")
        media = content[media_type]
        with self.c.lock:
            data = self.c.whatsapp_media.get(msg["key"]["id"])
        if data is None or not media.get("mediaKey") or not (media.get("directPath") or media.get("url")):
            # downloadMediaMessage needs the media key and path WhatsApp sent; an expired file answers 404/410
            raise refuse("Error: Failed to fetch stream from https://mmg.whatsapp.net: 404")
        mimetype = media.get("mimetype") or ""
        ext = MIME_EXTENSIONS.get(mimetype.split(";")[0].strip(), "bin")
        file_name = media.get("fileName") or f"{msg['key']['id']}.{ext}"
        return 201, {"mediaType": media_type, "fileName": file_name, "caption": media.get("caption"),
                     "size": {"fileLength": media.get("fileLength"), "height": media.get("height"),
                              "width": media.get("width")},
                     "mimetype": media.get("mimetype"), "base64": base64.b64encode(data).decode(), "buffer": None}


class Chatwoot:
    """Chatwoot 4.6 application API (api/v1), authenticated by the ``api_access_token`` header."""

    name = "chatwoot"

    def __init__(self, contract: Contract) -> None:
        self.c = contract
        self.schema = contract.schemas["chatwoot"]
        self.local = threading.local()  # the Host of the request this thread serves

    def not_found(self, method: str, path: str) -> Reply:
        # Rails in production renders public/404.html for a route that does not exist.
        return Reply(404, "<html><body><h1>The page you were looking for doesn't exist.</h1></body></html>",
                     "unknown path", content_type="text/html; charset=utf-8")

    def handle(self, op, params, headers, body, query):
        self.local.host = headers.get("Host")
        if op.get("auth", True):
            token = headers.get("api_access_token")
            if not token:
                raise Reply(401, {"errors": ["You need to sign in or sign up before continuing."]},
                            "auth: api_access_token missing")
            if not secrets.compare_digest(token, self.c.chatwoot_token):
                raise Reply(401, {"error": "Invalid Access Token"}, "auth: api_access_token wrong")
        if "account_id" in params and params["account_id"] != str(self.c.account_id):
            raise Reply(401, {"error": "You are not authorized to access this account"}, "auth: foreign account")
        spec = op.get("body")
        if isinstance(body, dict) and "_files" in body:
            body, spec = self.multipart_body(op, body)
        if spec:
            problems = body_errors(spec, body if body is not None else {})
            if problems:
                raise Reply(422, {"message": ", ".join(f"{p.replace('_', ' ').capitalize()} {q}"
                                                       for p, q in problems),
                                  "attributes": [problem[0] for problem in problems]},
                            "validation: " + "; ".join(f"{p}: {q}" for p, q in problems))
        fault = self.c.take_fault(self.name, op["method"], op["_path"])
        if fault:
            raise fault_reply(self.name, fault)
        with self.c.lock:
            return getattr(self, op["id"])(params, body, query)

    @staticmethod
    def multipart_body(op: dict[str, Any], body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A multipart message (the dashboard's and the API's way to send files): Rails' params from the form, the
        files under ``attachments[]`` only (MessageBuilder#process_attachments iterates params[:attachments] and
        attaches each uploaded file; anything else there is not a file ActiveStorage can attach). With files the
        content may be empty (a message of attachments only)."""
        rules = op["multipart"]
        files = body.pop("_files")
        wrong = [f["name"] for f in files if f["name"] != rules["files_field"]]
        if wrong or rules["files_param"] in body:
            raise Reply(422, {"message": f"attachments must be files sent as {rules['files_field']}",
                              "attributes": ["attachments"]}, f"multipart: files under {wrong or 'a text field'}")
        empty = [f["filename"] for f in files if not f["data"]]
        if empty:
            raise Reply(422, {"message": "File is empty", "attributes": ["attachments"]},
                        f"multipart: empty file {empty}")
        for name in rules.get("booleans", []):
            if name in body:
                body[name] = rails_boolean(body[name])
        spec = dict(op["body"])
        if files:
            spec["required"] = [r for r in spec.get("required", []) if r != "content"]
        body["_files"] = files
        return body, spec

    def record_invalid(self, errors: list[tuple[str, str]]) -> Reply:
        # RequestExceptionHandler#render_record_invalid
        return Reply(422, {"message": ", ".join(f"{a.replace('_', ' ').capitalize()} {m}" for a, m in errors),
                           "attributes": [error[0] for error in errors]},
                     "record invalid: " + ", ".join(error[0] for error in errors), rejected=False)

    @staticmethod
    def resource_not_found() -> Reply:
        return Reply(404, {"error": "Resource could not be found"}, "record not found", rejected=False)

    def profile(self, params, body, query):
        return 200, {"id": AGENT["id"], "provider": "email", "uid": AGENT["email"], "name": AGENT["name"],
                     "display_name": None, "email": AGENT["email"], "account_id": self.c.account_id,
                     "pubsub_token": "lab", "custom_attributes": {}, "role": "administrator",
                     "ui_settings": {}, "message_signature": None, "type": "SuperAdmin",
                     "access_token": self.c.chatwoot_token, "avatar_url": "", "availability_status": "online",
                     "accounts": [{"id": self.c.account_id, "name": "BorgStack", "status": "active",
                                   "active_at": None, "role": "administrator", "permissions": ["administrator"],
                                   "availability": "online", "availability_status": "online",
                                   "auto_offline": True, "custom_role_id": None, "custom_role": None}]}

    def inboxes(self, params, body, query):
        return 200, {"payload": [self.c.inbox(inbox_id) for inbox_id in self.c.inbox_names]}

    def teams(self, params, body, query):
        return 200, [{"id": team_id, "name": name, "description": "", "allow_auto_assign": True,
                      "account_id": self.c.account_id, "is_member": False} for team_id, name in self.c.teams.items()]

    def contact_create(self, params, body, query):
        errors = []
        phone = body.get("phone_number")
        if phone and not re.fullmatch(r"\+[1-9]\d{1,14}", phone):
            errors.append(("phone_number", "should be in e164 format"))
        email = body.get("email")
        for attr in ("email", "phone_number", "identifier"):
            value = body.get(attr)
            if value and any(c.get(attr) and (c[attr].lower() == value.lower() if attr == "email"
                                              else c[attr] == value) for c in self.c.contacts):
                errors.append((attr, "has already been taken"))
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            errors.append(("email", "is invalid"))
        if errors:
            raise self.record_invalid(errors)
        if int(body["inbox_id"]) not in self.c.inbox_names:
            raise self.resource_not_found()
        now = int(time.time())
        contact = {"id": self.c.new_id("contact"), "name": body.get("name") or "", "email": email,
                   "phone_number": phone, "identifier": body.get("identifier"),
                   "additional_attributes": body.get("additional_attributes") or {},
                   "custom_attributes": body.get("custom_attributes") or {}, "blocked": bool(body.get("blocked")),
                   "created_at": now, "last_activity_at": None, "contact_inboxes": []}
        contact_inbox = {"id": self.c.new_id("contact_inbox"), "inbox_id": int(body["inbox_id"]),
                         "source_id": body.get("source_id") or str(uuid.uuid4())}
        contact["contact_inboxes"].append(contact_inbox)
        self.c.contacts.append(contact)
        return 200, {"payload": {"contact": self.c.contact_view(contact),
                                 "contact_inbox": {"inbox": self.c.inbox(contact_inbox["inbox_id"]),
                                                   "source_id": contact_inbox["source_id"]}}}

    def contact_search(self, params, body, query):
        q = (query.get("q") or [""])[0].strip()
        if not q:
            raise Reply(422, {"error": "Specify search string with parameter q"}, "search without q")
        needle = q.lower()
        found = []
        for contact in self.c.contacts:
            fields = [contact.get("name"), contact.get("email"), contact.get("phone_number")]
            hit = any(f and needle in f.lower() for f in fields)
            hit = hit or bool(contact.get("identifier") and q in contact["identifier"])  # LIKE: case-sensitive
            hit = hit or (q.isdigit() and contact["id"] == int(q))
            if hit:
                found.append(self.c.contact_view(contact))
        page = int((query.get("page") or ["1"])[0])
        items = found[(page - 1) * 15: page * 15]
        return 200, {"meta": {"count": len(items), "current_page": page}, "payload": items}

    def contact_show(self, params, body, query):
        contact = self.c.find_contact(int(params["id"])) if params["id"].isdigit() else None
        if not contact:
            raise self.resource_not_found()
        return 200, {"payload": self.c.contact_view(contact)}

    def contact_conversations(self, params, body, query):
        contact = self.c.find_contact(int(params["id"])) if params["id"].isdigit() else None
        if not contact:
            raise self.resource_not_found()
        convs = [self.c.conversation_view(c) for c in self.c.conversations if c["contact_id"] == contact["id"]]
        convs.sort(key=lambda c: c["last_activity_at"], reverse=True)
        return 200, {"payload": convs}

    def conversation_list(self, params, body, query):
        """ConversationFinder: the inbox's (or every) conversation in one status, newest activity first, 25 a page.
        Query values outside the swagger's enums, and the filters the contract does not keep (q, labels), are
        refused (a test must not pass on a filter the server ignored)."""
        one = {k: v[0] for k, v in query.items()}
        status = one.get("status", "open")
        assignee = one.get("assignee_type", "all")
        problems = [name for name in ("q", "labels", "labels[]") if name in one]
        if status not in ("all", "open", "resolved", "pending", "snoozed"):
            problems.append("status")
        if assignee not in ("me", "unassigned", "all", "assigned"):
            problems.append("assignee_type")
        for name in ("inbox_id", "team_id", "page"):
            if name in one and not str(one[name]).isdigit():
                problems.append(name)
        if problems:
            raise Reply(400, {"error": f"query parameters the contract does not take: {', '.join(problems)}"},
                        "conversation list query: " + ", ".join(problems))
        convs = [c for c in self.c.conversations if status == "all" or c["status"] == status]
        if "inbox_id" in one:
            convs = [c for c in convs if c["inbox_id"] == int(one["inbox_id"])]
        if "team_id" in one:
            convs = [c for c in convs if c.get("team_id") == int(one["team_id"])]
        # The lab's agent is assigned nothing: every conversation is unassigned.
        counts = {"mine_count": 0, "assigned_count": 0, "unassigned_count": len(convs), "all_count": len(convs)}
        if assignee in ("me", "assigned"):
            convs = []
        views = sorted((self.c.conversation_view(c) for c in convs), key=lambda v: v["last_activity_at"], reverse=True)
        page = max(int(one.get("page") or 1), 1)
        return 200, {"data": {"meta": counts, "payload": views[(page - 1) * 25: page * 25]}}

    def conversation_create(self, params, body, query):
        contact_id, inbox_id = body.get("contact_id"), body.get("inbox_id")
        if contact_id is not None and inbox_id is not None:
            contact = self.c.find_contact(int(contact_id))
            if not contact or int(inbox_id) not in self.c.inbox_names:
                raise self.resource_not_found()
            source_id = body.get("source_id")
            # ContactInboxBuilder: the contact's link to this inbox (another inbox's link is not reused).
            contact_inbox = next((ci for ci in contact["contact_inboxes"] if ci["inbox_id"] == int(inbox_id)
                                  and (source_id is None or ci["source_id"] == source_id)), None)
            if contact_inbox is None:
                if any(ci["source_id"] == source_id for c in self.c.contacts for ci in c["contact_inboxes"]):
                    raise Reply(422, {"error": "source_id should be unique"}, "source_id taken", rejected=False)
                contact_inbox = {"id": self.c.new_id("contact_inbox"), "inbox_id": int(inbox_id),
                                 "source_id": source_id or str(uuid.uuid4())}
                contact["contact_inboxes"].append(contact_inbox)
        else:
            found = [(c, ci) for c in self.c.contacts for ci in c["contact_inboxes"]
                     if ci["source_id"] == body.get("source_id")]
            if not found:
                raise self.resource_not_found()
            contact, contact_inbox = found[0]
        now = int(time.time())
        display_id = self.c.new_id("conversation")
        conv = {"id": display_id, "display_id": display_id, "uuid": str(uuid.uuid4()),
                "account_id": self.c.account_id, "inbox_id": contact_inbox["inbox_id"], "contact_id": contact["id"],
                "team_id": body.get("team_id"),
                "contact_inbox_id": contact_inbox["id"], "source_id": contact_inbox["source_id"],
                "status": body.get("status") or "open",
                "custom_attributes": body.get("custom_attributes") or {},
                "additional_attributes": body.get("additional_attributes") or {}, "created_at": now,
                "created_at_iso": iso_now()}
        self.c.conversations.append(conv)
        contact["last_activity_at"] = now
        if isinstance(body.get("message"), dict) and body["message"].get("content"):
            self.c.create_message(conv, {"content": body["message"]["content"], "message_type": "outgoing"})
        return 200, self.c.conversation_view(conv)

    def _conversation(self, params) -> dict[str, Any]:
        conv = self.c.find_conversation(int(params["id"])) if params["id"].isdigit() else None
        if not conv:
            raise self.resource_not_found()
        return conv

    def conversation_show(self, params, body, query):
        return 200, self.c.conversation_view(self._conversation(params))

    def message_create(self, params, body, query):
        conv = self._conversation(params)
        msg = self.c.create_message(conv, body)
        return 200, self.c.message_view(msg)

    def blob_redirect(self, params, body, query):
        """ActiveStorage's blob redirect (the attachment's data_url): 302 to the file on the service, signed, no
        login. The Location is on the host the request came to (ActiveStorage::Current.url_options)."""
        found = next(((key, b) for key, b in self.c.blobs.items() if b["signed_id"] == params["signed_id"]), None)
        if found is None:
            raise self.resource_not_found()
        key, blob = found
        host = getattr(self.local, "host", None) or "borgstack-chatwoot:3000"
        location = f"http://{host}/rails/active_storage/disk/{key}/{urllib.parse.quote(blob['filename'])}"
        raise Reply(302, "", "blob redirect", {"Location": location}, content_type="text/html; charset=utf-8",
                    rejected=False)

    def disk_file(self, params, body, query):
        blob = self.c.blobs.get(params["key"])
        if blob is None:
            raise self.resource_not_found()
        raise Reply(200, blob["data"], "file", {
            "Content-Disposition": f"inline; filename*=UTF-8''{urllib.parse.quote(blob['filename'])}"},
            content_type=blob["content_type"], rejected=False)

    def message_index(self, params, body, query):
        conv = self._conversation(params)
        contact = self.c.find_contact(conv["contact_id"])
        # MessageFinder (app/finders/message_finder.rb): the last 20 messages, oldest first; ?before=<id> the 20
        # before that message.
        before = (query.get("before") or [""])[0]
        found = [m for m in self.c.messages if m["conversation_display_id"] == conv["display_id"]
                 and (not before.isdigit() or m["id"] < int(before))]
        msgs = [_message_push(m, contact, self.c.account) for m in found[-20:]]
        return 200, {"meta": {"labels": [], "additional_attributes": {}, "contact": _contact_push(contact),
                              "assignee": None, "agent_last_seen_at": 0, "assignee_last_seen_at": 0},
                     "payload": msgs}

    def message_destroy(self, params, body, query):
        conv = self._conversation(params)
        wanted = int(params["message_id"]) if params["message_id"].isdigit() else None
        msg = next((m for m in self.c.messages if m["id"] == wanted
                    and m["conversation_display_id"] == conv["display_id"]), None)
        if msg is None:
            raise self.resource_not_found()
        # The row stays, emptied and marked (messages_controller#destroy), its files gone.
        msg.update(content="This message was deleted", content_type="text", content_attributes={"deleted": True})
        msg.pop("attachments_push", None)
        return 200, self.c.message_view(msg)

    def toggle_status(self, params, body, query):
        conv = self._conversation(params)
        conv["status"] = body.get("status") or ("resolved" if conv["status"] == "open" else "open")
        return 200, {"meta": {}, "payload": {"success": True, "conversation_id": conv["display_id"],
                                             "current_status": conv["status"], "snoozed_until": None}}


def fault_reply(service: str, fault: dict[str, Any]) -> Reply:
    status = fault["status"]
    headers = {}
    if status == 429 and fault.get("retry_after") is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    body = fault.get("body")
    if body is None:
        text = {500: "Internal Server Error", 422: "Unprocessable Entity", 429: "Too Many Requests",
                502: "Bad Gateway", 503: "Service Unavailable", 400: "Bad Request", 404: "Not Found"}[status]
        if service == "evolution":
            body = {"status": status, "error": text, "response": {"message": text}}
        elif status == 422:
            body = {"message": "Phone number has already been taken", "attributes": ["phone_number"]}
        elif status == 429:
            body = {"error": "Rate limit exceeded"}  # Rack::Attack's throttled response in Chatwoot
        else:
            body = {"status": status, "error": text}
    return Reply(status, body, f"fault {status}", headers, rejected=False)


def make_handler(contract: Contract, service: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "borgstack-contract/1"

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per call on stderr
            sys.stderr.write(f"{service.name} {self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

        def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None,
                    content_type: str = "application/json; charset=utf-8") -> None:
            if isinstance(body, bytes):
                raw = body
            else:
                raw = body.encode() if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)

        def _dispatch(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path, query = url.path, urllib.parse.parse_qs(url.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            entry = {"at": time.time(), "service": service.name, "method": self.command, "path": path,
                     "query": {k: v[0] if len(v) == 1 else v for k, v in query.items()}, "body": None,
                     "status": None, "rejected_reason": None, "note": None, "fault": False}
            status, body, headers, ctype = 500, {"error": "contract server bug"}, {}, "application/json"
            try:
                ctype_full = self.headers.get("Content-Type") or ""
                ctype_in = ctype_full.split(";")[0].strip().lower()
                op, params = None, {}
                for candidate in service.schema["operations"]:
                    match = candidate["_regex"].match(path)
                    if match and candidate["method"] == self.command:
                        op, params = candidate, match.groupdict()
                        break
                if raw and ctype_in == "multipart/form-data" and op is not None and op.get("multipart"):
                    try:
                        fields, files = parse_multipart(ctype_full, raw)
                    except (ValueError, UnicodeDecodeError) as exc:
                        raise Reply(400, {"error": f"the multipart body could not be parsed: {exc}"},
                                    "multipart body not parsable") from exc
                    body_in = {**fields, "_files": files}
                    entry["body"] = {**fields, "_files": [
                        {k: v for k, v in f.items() if k != "data"} | {"size": len(f["data"]), "sha256": sha256(f["data"])}
                        for f in files]}
                else:
                    try:
                        body_in = parse_json(raw)
                    except (ValueError, UnicodeDecodeError):
                        entry["body"] = raw[:2000].decode("utf-8", "replace")
                        raise Reply(400, {"error": "the body is not JSON"} if service.name == "chatwoot" else
                                    {"status": 400, "error": "Bad Request", "response": {"message": ["invalid JSON"]}},
                                    "body is not JSON")
                    entry["body"] = shorten(body_in)
                    if raw and ctype_in != "application/json":
                        raise Reply(415 if service.name == "chatwoot" else 400,
                                    {"error": f"Content-Type {ctype_in or 'missing'}: the contract takes JSON"
                                              + (" or multipart/form-data" if op and op.get("multipart") else
                                                 " only")}, "content type")
                if op is None:
                    raise service.not_found(self.command, path)
                op = dict(op, _path=path)
                status, body = service.handle(op, params, self.headers, body_in, query)
            except Reply as reply:
                status, body, headers, ctype = reply.status, reply.body, reply.headers, reply.content_type
                entry["rejected_reason"] = reply.reason if reply.rejected else None
                entry["note"] = None if reply.rejected else reply.reason
                entry["fault"] = (reply.reason or "").startswith("fault")
            except Exception as exc:  # noqa: BLE001 - a bug here must show in the call log, not kill the thread
                status, body = 500, {"error": f"contract server error: {exc!r}"}
                entry["rejected_reason"] = f"contract server error: {exc!r}"
            entry["status"] = status
            contract.record(entry)
            self._answer(status, body, headers, ctype)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815

    return Handler


def make_control(contract: Contract) -> type[BaseHTTPRequestHandler]:
    class Control(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any) -> None:
            raw = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return parse_json(self.rfile.read(length)) if length else None

        def do_GET(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            with contract.lock:
                if path == "/_calls":
                    return self._answer(200, contract.calls)
                if path == "/_state":
                    return self._answer(200, contract.state())
                if path == "/_fault":
                    return self._answer(200, contract.faults)
                if path == "/_webhooks":
                    return self._answer(200, contract.webhooks)
                if path.startswith("/_blob/"):
                    found = contract.blob(path[len("/_blob/"):])
                    return self._answer(200 if found else 404, found or {"error": "no such blob"})
                if path == "/_health":
                    return self._answer(200, {"ok": True, "instance": contract.instance,
                                              "account_id": contract.account_id, "inbox_id": contract.inbox_id})
            return self._answer(404, {"error": f"no control path {path}"})

        def do_DELETE(self) -> None:  # noqa: N802
            if urllib.parse.urlsplit(self.path).path == "/_fault":
                with contract.lock:
                    contract.faults.clear()
                return self._answer(200, {"faults": []})
            return self._answer(404, {"error": "no such control path"})

        def do_POST(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            try:
                body = self._body()
                if path == "/_reset":
                    contract.reset()
                    return self._answer(200, {"reset": True})
                if path == "/_fault":
                    return self._answer(200, contract.add_fault(body))
                if path == "/_chatwoot/agent_message":
                    return self._answer(200, self._agent_message(body))
                if path == "/_http":
                    return self._answer(200, http_request(body))
                if path == "/_evolution/media":
                    return self._answer(200, contract.add_whatsapp_media(body))
                if path == "/_evolution/session":
                    return self._answer(200, contract.set_session_state(body))
                if path == "/_evolution/received":
                    return self._answer(200, contract.add_received(body))
            except (ValueError, KeyError, TypeError, re.error) as exc:
                return self._answer(400, {"error": str(exc)})
            return self._answer(404, {"error": f"no control path {path}"})

        @staticmethod
        def _agent_message(body: Any) -> dict[str, Any]:
            if not isinstance(body, dict) or not isinstance(body.get("conversation_id"), int):
                raise ValueError("give conversation_id (integer) and content")
            with contract.lock:
                conv = contract.find_conversation(body["conversation_id"])
                if conv is None:
                    raise ValueError(f"no conversation {body['conversation_id']}")
                files = []
                for item in body.get("attachments") or []:
                    # the agent attaches a file in the dashboard (which refuses files over 40 MB by itself)
                    if not isinstance(item, dict) or not is_base64(item.get("base64")) or not item.get("file_name"):
                        raise ValueError("attachments: [{file_name, content_type, base64}]")
                    data = base64.b64decode(item["base64"])
                    # size: the file padded with zero bytes to that length (a big file without megabytes of JSON)
                    data += bytes(max(0, int(item.get("size") or 0) - len(data)))
                    files.append({"name": "attachments[]", "filename": item["file_name"],
                                  "content_type": item.get("content_type") or "application/octet-stream",
                                  "data": data})
                msg = contract.create_message(conv, {"content": body.get("content", ""),
                                                     "message_type": body.get("message_type", "outgoing"),
                                                     "private": bool(body.get("private", False)),
                                                     "_files": files}, from_ui=True)
                return {"message": msg, "webhook": contract.webhooks[-1] if contract.webhook_url else None}

    return Control


def http_request(spec: Any) -> dict[str, Any]:
    """Make one HTTP request from this container (``{method, url, headers, body}``; a non-string body is JSON)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("url"), str):
        raise ValueError("give url (and method, headers, body)")
    body = spec.get("body")
    headers = dict(spec.get("headers") or {})
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(spec["url"], data=data, headers=headers, method=spec.get("method", "POST"))
    try:
        with urllib.request.urlopen(request, timeout=float(spec.get("timeout", 30))) as response:
            status, resp_headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, resp_headers, raw = exc.code, dict(exc.headers), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return {"status": None, "headers": {}, "body": None, "error": str(exc)}
    text = raw.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return {"status": status, "headers": resp_headers, "body": parsed, "error": None}


def serve(env: dict[str, str] | None = None) -> list[ThreadingHTTPServer]:
    """Start the three listeners in daemon threads; return the servers (tests call ``shutdown()`` on them)."""
    env = dict(os.environ if env is None else env)
    contract = Contract(env)
    bind = env.get("CONTRACT_BIND", "0.0.0.0")
    servers = []
    for port_var, default, handler in (
            ("EVOLUTION_PORT", 8080, make_handler(contract, Evolution(contract))),
            ("CHATWOOT_PORT", 3000, make_handler(contract, Chatwoot(contract))),
            ("CONTROL_PORT", 9000, make_control(contract))):
        server = ThreadingHTTPServer((bind, int(env.get(port_var) or default)), handler)
        server.daemon_threads = True
        server.contract = contract  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    return servers


def main() -> None:
    servers = serve()
    ports = ", ".join(str(s.server_address[1]) for s in servers)
    sys.stderr.write(f"contract server listening on {ports} (evolution, chatwoot, control)\n")
    sys.stderr.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
