# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the shipped customer-service workflows (roles/n8n/files/workflows/*.json, n8n 1.113 format) from the
readable JavaScript and wiring below: edit here, run this script, commit both. `--check` fails when the files are
out of date (tests/unit/roles/test_n8n_workflows.py runs it). Bump VERSION when a workflow changes: the n8n role
replaces the installed copy whenever the content differs, the version is the marker operators see.
WF_DEBUG=1 adds saveExecutionProgress (every node's output kept while an execution runs) for debugging only.
"""
import json
import os
import pathlib
import sys
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import n8n_reconcile  # noqa: E402  (the reconciliation and the reply queue: scripts/n8n_reconcile.py)

# N8N_WORKFLOWS_OUT: write elsewhere (tests/unit/roles/test_n8n_reconcile_code.py builds the workflows from this
# script into a temporary directory, so that a change here is what its tests run).
OUT = pathlib.Path(os.environ.get("N8N_WORKFLOWS_OUT")
                   or pathlib.Path(__file__).resolve().parents[1] / "roles" / "n8n" / "files" / "workflows")
VERSION = 4
DEBUG = bool(os.environ.get("WF_DEBUG"))
NS = uuid.UUID("6f1d3c1e-5b7a-4c1e-9a43-b0a6b0a6b0a6")
CRED = {
    "evolution": {"id": "BorgStackCrEvo01", "name": "BorgStack Evolution API"},
    "chatwoot": {"id": "BorgStackCrCwt01", "name": "BorgStack Chatwoot API"},
    "postgres": {"id": "BorgStackCrPg001", "name": "BorgStack n8n database"},
    "redis": {"id": "BorgStackCrRed01", "name": "BorgStack Redis"},
}


def node(wf, name, type_, version, params, pos, **extra):
    n = {"id": str(uuid.uuid5(NS, wf + "/" + name)), "name": name, "type": type_, "typeVersion": version,
         "position": list(pos), "parameters": params}
    n.update(extra)
    return n


# ---------------------------------------------------------------- Several WhatsApp numbers
# @@numbers@@ (filled in by roles/n8n/files/workflows_sync.js) is the list of numbers, the default one first:
# [{instance, inbox, inbox_id, team}] (plugins/filter/whatsapp_numbers.py). A number's inbox_id is null when Chatwoot
# gave its inbox the id (every number after the first): the workflows find it by name. Messages and replies never
# cross: an event of an instance that is not listed is dropped, a reply leaves through the instance of its inbox.
ROUTE_NUMBER = r"""((instance) => (@@numbers@@).find((n) => n.instance === instance) ?? null)"""
REPLY_NUMBER = r"""((body) => {
  const numbers = @@numbers@@;
  const id = body.conversation?.inbox_id ?? body.inbox?.id;
  if (id === undefined || id === null) return numbers[0];
  return numbers.find((n) => (n.inbox_id !== null && n.inbox_id !== undefined
    ? Number(n.inbox_id) === Number(id) : body.inbox?.name !== undefined && n.inbox === body.inbox.name)) ?? null;
})"""
# After GET /inboxes (payload: [{id, name, ...}]) or GET /teams ([{id, name, ...}], names kept in lower case by
# Chatwoot): the number's inbox id / team id, or why the message cannot be delivered.
NUMBER_FOUND = r"""((step, body, number) => {
  if (step === 'inbox') {
    const list = Array.isArray(body.payload) ? body.payload : [];
    const found = list.find((i) => i.name === number.inbox);
    if (!found) {
      return { error: `Chatwoot has no inbox named "${number.inbox}" (borgstack_customer_service.numbers, `
        + `instance ${number.instance}): run the play, which creates it` };
    }
    return { state: { inboxId: Number(found.id) }, next: number.team ? 'team' : 'search' };
  }
  const list = Array.isArray(body) ? body : (Array.isArray(body.payload) ? body.payload : []);
  const found = list.find((t) => String(t.name).toLowerCase() === String(number.team).toLowerCase());
  if (!found) {
    return { error: `Chatwoot has no team named "${number.team}" (borgstack_customer_service.numbers, `
      + `instance ${number.instance}): run the play, which creates it` };
  }
  return { state: { teamId: Number(found.id) }, next: 'search' };
})"""
NUMBER_SNIPPETS = {"@@route_number@@": ROUTE_NUMBER, "@@reply_number@@": REPLY_NUMBER, "@@number_found@@": NUMBER_FOUND}
START_NUMBER = r"""
// The first step for the event's number: its inbox by name (when Chatwoot gave it its id), its team, the contact.
const number = $('Route event').first().json.number;
const known = number.inbox_id !== null && number.inbox_id !== undefined;
const state = known ? { inboxId: Number(number.inbox_id) } : {};
return [{ json: { state, step: known ? (number.team ? 'team' : 'search') : 'inbox', attempt: 0 } }];
"""

# Media limits. Incoming (WhatsApp -> Chatwoot): Chatwoot's attachment limit, 40 MB (app/models/attachment.rb
# validate_file_size; the dashboard's MAXIMUM_FILE_UPLOAD_SIZE): a bigger file is not downloaded, the agents get a
# note. Outgoing (Chatwoot -> WhatsApp): WhatsApp's documented limits per media type (WhatsApp Business Platform,
# "Supported media types": image 5 MB, audio 16 MB, video 16 MB, document 100 MB).
MB = 1024 * 1024
MEDIA_LIMIT_IN = 40 * MB
WHATSAPP_LIMITS = {"image": 5 * MB, "audio": 16 * MB, "video": 16 * MB, "document": 100 * MB}
MEDIA_NOUNS = {"imageMessage": "imagem", "videoMessage": "vídeo", "audioMessage": "áudio",
               "documentMessage": "documento", "stickerMessage": "figurinha", "ptvMessage": "vídeo"}
MEDIA_ARTICLES = {"imageMessage": "uma imagem", "videoMessage": "um vídeo", "audioMessage": "um áudio",
                  "documentMessage": "um documento", "stickerMessage": "uma figurinha", "ptvMessage": "um vídeo",
                  "image": "a imagem", "video": "o vídeo", "audio": "o áudio", "document": "o documento"}
CONSTANTS = {**NUMBER_SNIPPETS, "@@media_limit_in@@": str(MEDIA_LIMIT_IN), "@@whatsapp_limits@@": json.dumps(WHATSAPP_LIMITS),
             "@@media_nouns@@": json.dumps(MEDIA_NOUNS, ensure_ascii=False),
             "@@media_articles@@": json.dumps(MEDIA_ARTICLES, ensure_ascii=False)}
# The reconciliation's duplicate test (scripts/n8n_reconcile.py): used by the WhatsApp -> Chatwoot workflow on a
# recovered message, inside the per-number lock.
RECOVERED_ALREADY = r"""
// A conversation's messages (GET .../messages: {payload: [...]}) already hold WhatsApp message `id`: by the id the
// workflow stores in content_attributes, or a source_id Chatwoot or another integration gave it.
const recoveredAlready = (answer, id) => (Array.isArray(answer?.payload) ? answer.payload : []).some((msg) =>
  String(msg?.content_attributes?.whatsapp_message_id ?? '') === String(id) || String(msg?.source_id ?? '') === String(id));
"""
CONSTANTS["@@recovered_already@@"] = RECOVERED_ALREADY.strip()


def code(wf, name, js, pos):
    js = js.replace("$json", "$input.first().json")
    for placeholder, value in CONSTANTS.items():
        js = js.replace(placeholder, value)
    return node(wf, name, "n8n-nodes-base.code", 2, {"jsCode": js.strip() + "\n"}, pos)


def webhook(wf, name, path, pos):
    return node(wf, name, "n8n-nodes-base.webhook", 2, {"httpMethod": "POST", "path": path,
                "responseMode": "onReceived", "options": {}}, pos,
                webhookId=str(uuid.uuid5(NS, wf + "/webhook/" + path)))


def recovery_webhook(wf, pos):
    """The reconciliation's way in (scripts/n8n_reconcile.py): the same event, answered when the workflow ends, so
    that recovered messages go to Chatwoot one after the other, in order."""
    hook = webhook(wf, "Recovery webhook", "borgstack/evolution-recovered", pos)
    hook["parameters"]["responseMode"] = "lastNode"
    return hook


def switch(wf, name, n, expr, pos):
    return node(wf, name, "n8n-nodes-base.switch", 3.2, {"mode": "expression", "numberOutputs": n,
                "output": "={{ " + expr + " }}"}, pos)


def wait(wf, name, expr, pos):
    return node(wf, name, "n8n-nodes-base.wait", 1.1, {"amount": "={{ " + expr + " }}", "unit": "seconds"},
                pos, webhookId=str(uuid.uuid5(NS, wf + "/wait/" + name)))


def http(wf, name, cred, pos):
    return node(wf, name, "n8n-nodes-base.httpRequest", 4.2, {
        "method": "={{ $json.request.method }}", "url": "={{ $json.request.url }}",
        "authentication": "genericCredentialType", "genericAuthType": "httpHeaderAuth",
        "sendBody": "={{ $json.request.body !== undefined }}",
        "specifyBody": "json", "jsonBody": "={{ JSON.stringify($json.request.body ?? {}) }}",
        "options": {"response": {"response": {"fullResponse": True, "neverError": True}}, "timeout": 15000}},
        pos, credentials={"httpHeaderAuth": CRED[cred]}, onError="continueRegularOutput")


def fetch_file(wf, name, pos):
    """GET a file (Chatwoot's attachment, signed URL: no credential) as binary, full response, never an error."""
    return node(wf, name, "n8n-nodes-base.httpRequest", 4.2, {
        "url": "={{ $json.request.url }}",
        "options": {"response": {"response": {"fullResponse": True, "neverError": True, "responseFormat": "file"}},
                    "timeout": 60000}}, pos, onError="continueRegularOutput")


def file_to_base64(wf, name, pos):
    """The downloaded file into json.body as base64 (Judge reads the answer's body), headers and status kept."""
    return node(wf, name, "n8n-nodes-base.extractFromFile", 1, {
        "operation": "binaryToPropery", "binaryPropertyName": "data", "destinationKey": "body",
        "options": {"keepSource": "json"}},
        pos, onError="continueRegularOutput", alwaysOutputData=True)


def base64_to_file(wf, name, pos):
    """The file to upload (state.file: base64, mimetype, fileName) as binary property data."""
    return node(wf, name, "n8n-nodes-base.convertToFile", 1.1, {
        "operation": "toBinary", "sourceProperty": "state.file.base64", "binaryPropertyName": "data",
        "options": {"fileName": "={{ $json.state.file.fileName }}", "mimeType": "={{ $json.state.file.mimetype }}"}},
        pos)


def upload(wf, name, cred, pos):
    """multipart/form-data POST: the binary property data as attachments[] plus Plan's request.form fields (Convert
    to File leaves no json behind)."""
    return node(wf, name, "n8n-nodes-base.httpRequest", 4.2, {
        "method": "POST", "url": "={{ $('Plan').last().json.request.url }}",
        "authentication": "genericCredentialType", "genericAuthType": "httpHeaderAuth",
        "sendBody": True, "contentType": "multipart-form-data",
        "bodyParameters": {"parameters": [
            {"parameterType": "formBinaryData", "name": "attachments[]", "inputDataFieldName": "data"},
            *[{"parameterType": "formData", "name": field, "value": "={{ $('Plan').last().json.request.form['" + field + "'] }}"}
              for field in ("content", "message_type", "private", "content_attributes[whatsapp_message_id]",
                            "content_attributes[whatsapp_message_type]", "content_attributes[received_at]")]]},
        "options": {"response": {"response": {"fullResponse": True, "neverError": True}}, "timeout": 60000}},
        pos, credentials={"httpHeaderAuth": CRED[cred]}, onError="continueRegularOutput")


def pg(wf, name, sql, param_expr, pos):
    params = {"operation": "executeQuery", "query": sql.strip()}
    if param_expr:
        params["options"] = {"queryReplacement": "={{ " + param_expr + " }}"}
    else:
        params["options"] = {}
    return node(wf, name, "n8n-nodes-base.postgres", 2.6, params, pos, credentials={"postgres": CRED["postgres"]})


def redis(wf, name, op, key_expr, pos, ttl=None):
    params = {"operation": op, "key": "={{ " + key_expr + " }}"}
    if ttl:
        params.update({"expire": True, "ttl": ttl})
    return node(wf, name, "n8n-nodes-base.redis", 1, params, pos, credentials={"redis": CRED["redis"]})


ERROR_TABLE = """
CREATE TABLE IF NOT EXISTS borgstack_cs_errors (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  workflow text NOT NULL,
  webhook_path text NOT NULL,
  step text NOT NULL,
  status integer,
  error text NOT NULL,
  payload jsonb NOT NULL,
  replayed_at timestamptz
);
"""
STATUS_TABLE = """
CREATE TABLE IF NOT EXISTS borgstack_cs_message_status (
  id bigserial PRIMARY KEY,
  received_at timestamptz NOT NULL DEFAULT now(),
  instance text,
  message_id text NOT NULL,
  remote_jid text,
  from_me boolean,
  status text NOT NULL
);
"""
INSERT_ERROR = """
INSERT INTO borgstack_cs_errors (workflow, webhook_path, step, status, error, payload)
SELECT r->>'workflow', r->>'webhook_path', r->>'step', (r->>'status')::integer, r->>'error', r->'payload'
FROM (SELECT $1::jsonb AS r) AS input
RETURNING id;
"""
INSERT_STATUS = """
INSERT INTO borgstack_cs_message_status (instance, message_id, remote_jid, from_me, status)
SELECT r->>'instance', r->>'message_id', r->>'remote_jid', (r->>'from_me')::boolean, r->>'status'
FROM (SELECT $1::jsonb AS r) AS input
RETURNING id;
"""

# Shared by both delivery loops: judge the answer of the last call (the "Plan" node's request) and decide.
JUDGE = r"""
// Judges the answer to the request the Plan node sent: success goes on to the next step (advance(), defined per
// workflow in Plan's output as `step`), 429 waits Retry-After, 5xx / no answer is retried after 1, 2 and 4 s
// (three retries), anything else - or a fourth failure - is stored in the error table.
const sent = $('Plan').last().json;
const answer = $json;
const status = Number(answer.statusCode ?? answer.error?.httpCode ?? 0) || 0;
const body = answer.body ?? null;
const out = { ...sent, last: { status, body, headers: answer.headers ?? {} } };
if (status >= 200 && status < 300) return [{ json: { ...out, next: 'ok', attempt: 0 } }];
if (sent.request.acceptStatus && sent.request.acceptStatus.includes(status)) {
  return [{ json: { ...out, next: 'ok', attempt: 0 } }];
}
const retriable = status === 0 || status === 429 || status >= 500;
if (retriable && sent.attempt < 3) {
  let seconds = 2 ** sent.attempt;                       // 1, 2, 4
  if (status === 429) {
    const header = answer.headers?.['retry-after'];
    const asNumber = Number(header);
    if (header !== undefined && Number.isFinite(asNumber)) seconds = asNumber;
    else if (header) seconds = Math.max(0, (Date.parse(header) - Date.now()) / 1000);
    seconds = Math.min(Math.max(seconds, 0), 60);
  }
  return [{ json: { ...out, next: 'retry', attempt: sent.attempt + 1, waitSeconds: seconds } }];
}
const detail = answer.error?.message ?? (typeof body === 'string' ? body : JSON.stringify(body));
const error = `${sent.request.method} ${sent.request.path} answered ${status || 'nothing'}: ${String(detail).slice(0, 500)}`;
return [{ json: { ...out, next: 'failed', error } }];
"""

# ---------------------------------------------------------------- WhatsApp (Evolution API) -> Chatwoot
WF1 = "BorgStackCsEvo01"
ROUTE_EVOLUTION = r"""
// Evolution API's global webhook (every event of every instance). Only calls from inside the stack are taken:
// Caddy adds X-Forwarded-For to whatever comes from the internet.
const input = $json;
if (input.headers?.['x-forwarded-for']) return [];
const body = input.body ?? {};
const event = String(body.event ?? '').toLowerCase().replace(/_/g, '.');
const data = Array.isArray(body.data) ? body.data[0] : (body.data ?? {});
const base = { instance: body.instance ?? null, payload: body };
if (event === 'messages.update') {
  const messageId = data.keyId ?? data.key?.id ?? data.messageId;
  if (!messageId || !data.status) return [];
  return [{ json: { ...base, kind: 'status', status: {
    instance: body.instance ?? null, message_id: String(messageId), remote_jid: data.remoteJid ?? data.key?.remoteJid ?? null,
    from_me: Boolean(data.fromMe ?? data.key?.fromMe), status: String(data.status) } } }];
}
// connection.update: the WhatsApp session workflow (borgstack/evolution-session) takes it.
if (event === 'connection.update') return [{ json: { ...base, kind: 'connection' } }];
if (event !== 'messages.upsert') return [];
// Several numbers: an instance that is not one of them is no customer number of this stack (Route number).
const routed = (@@route_number@@)(body.instance);
if (!routed) return [];
base.number = routed;
const key = data.key ?? {};
if (key.fromMe === true) return [];
const jid = String(key.remoteJid ?? '');
// Private chats only: groups (@g.us), broadcast lists and status updates are not customer conversations.
if (!jid.endsWith('@s.whatsapp.net')) return [];
const number = jid.split('@')[0].replace(/\D/g, '');
if (!number) return [];
const message = data.message ?? {};
// Media (Evolution API 2.2.3 prepareMessage: documentWithCaptionMessage already folded into documentMessage; the
// other wrappers getBase64FromMediaMessage unwraps are unwrapped here too, to read the type and size).
let inner = message;
for (const wrapper of ['ephemeralMessage', 'documentWithCaptionMessage', 'viewOnceMessage', 'viewOnceMessageV2']) {
  if (inner[wrapper]?.message) inner = inner[wrapper].message;
}
const mediaType = ['imageMessage', 'videoMessage', 'audioMessage', 'documentMessage', 'stickerMessage', 'ptvMessage']
  .find((type) => inner[type]);
let text = message.conversation ?? message.extendedTextMessage?.text ?? '';
let media = null;
if (mediaType) {
  const found = inner[mediaType];
  // fileLength is a protobuf uint64: a decimal string, a number or a Long {low, high}.
  const length = found.fileLength;
  const size = typeof length === 'object' && length !== null
    ? (Number(length.high) || 0) * 4294967296 + ((Number(length.low) || 0) >>> 0) : Number(length) || 0;
  media = { type: mediaType, mimetype: found.mimetype ?? '', fileName: found.fileName ?? null, size,
    tooBig: size > @@media_limit_in@@ };
  text = found.caption ?? '';
}
if (!text && !media) text = `[${data.messageType ?? 'mensagem'}]`;
return [{ json: { ...base, kind: 'message', message: {
  number, name: data.pushName || number, text, id: String(key.id ?? ''), type: data.messageType ?? 'conversation',
  receivedAt: data.messageTimestamp ? new Date(Number(data.messageTimestamp) * 1000).toISOString() : new Date().toISOString(),
  media, key, content: media ? data.message : null,
} } }];
"""
LOCK_TAKEN = r"""
// The Redis node answers {<key>: <value after INCR>}: 1 = this execution holds the lock (INCR + EXPIRE 5 s stands in
// for SET NX EX 5, which n8n's Redis node does not offer). Others wait 0.5 s and try again, at most 20 times.
const value = Number(Object.values($json)[0]);
const tries = $runIndex + 1;
return [{ json: { locked: value === 1, next: value === 1 ? 'go' : (tries >= 20 ? 'go' : 'wait') } }];
"""
PLAN_CHATWOOT = r"""
// One step of the delivery to Chatwoot, built from the event (Route event) and what earlier steps found.
const event = $('Route event').first().json;
const m = event.message;
const prev = $json.state ? $json : { state: {}, step: 'search', attempt: 0 };
const state = { ...prev.state };
const cfg = { account: '@@chatwoot_account_id@@', inbox: Number(state.inboxId ?? '@@chatwoot_inbox_id@@'), url: '@@chatwoot_url@@' };
let step = prev.step;
const attempt = $json.next === 'retry' ? $json.attempt : 0;
const identifier = `whatsapp:${m.number}`;
const api = `/api/v1/accounts/${cfg.account}`;
let request;
if (step === 'inbox' || step === 'team') {
  request = { method: 'GET', path: `${api}/${step === 'inbox' ? 'inboxes' : 'teams'}` };
} else if (step === 'search' || step === 'search_again') {
  request = { method: 'GET', path: `${api}/contacts/search?q=${encodeURIComponent(m.number)}` };
} else if (step === 'create_contact') {
  request = { method: 'POST', path: `${api}/contacts`, acceptStatus: [422], body: {
    inbox_id: cfg.inbox, name: m.name, phone_number: `+${m.number}`, identifier,
    custom_attributes: { whatsapp_id: `${m.number}@s.whatsapp.net`, evolution_instance: event.instance, source: 'whatsapp_evolution_api' },
  } };
} else if (step === 'conversations') {
  request = { method: 'GET', path: `${api}/contacts/${state.contactId}/conversations` };
} else if (step === 'create_conversation') {
  request = { method: 'POST', path: `${api}/conversations`, body: {
    inbox_id: cfg.inbox, contact_id: state.contactId, status: 'open',
  } };
  // The contact's link to the inbox, when Chatwoot told us (else Chatwoot makes one from contact_id + inbox_id).
  if (state.sourceId) request.body.source_id = state.sourceId;
  if (state.teamId) request.body.team_id = state.teamId;
} else if (step === 'download') {
  // The file of a WhatsApp media message, through Evolution API (it downloads and decrypts it from WhatsApp).
  const path = `/chat/getBase64FromMediaMessage/${encodeURIComponent(event.instance ?? '@@evolution_instance@@')}`;
  request = { transport: 'evolution', method: 'POST', path, url: '@@evolution_url@@' + path,
    body: { message: { key: m.key, message: m.content } } };
} else if (step === 'message' && state.file) {
  // The customer's file as an attachment of the incoming message (multipart attachments[]).
  request = { transport: 'upload', method: 'POST', path: `${api}/conversations/${state.conversationId}/messages`, form: {
    content: m.text, message_type: 'incoming', private: 'false', 'content_attributes[whatsapp_message_id]': m.id,
    'content_attributes[whatsapp_message_type]': m.type, 'content_attributes[received_at]': m.receivedAt,
  } };
} else if (step === 'message') {
  const noun = m.media ? (@@media_nouns@@)[m.media.type] ?? 'arquivo' : '';
  request = { method: 'POST', path: `${api}/conversations/${state.conversationId}/messages`, body: {
    content: m.text || `[${noun}]`, message_type: 'incoming', private: false,
    content_attributes: { whatsapp_message_id: m.id, whatsapp_message_type: m.type, received_at: m.receivedAt,
      ...(event.payload?.borgstack_recovered === true ? { borgstack_recovered: true } : {}) },
  } };
} else if (step === 'check_recovered') {
  // A message the reconciliation recovered: is it in the conversation already? (Chatwoot's last 20 messages)
  request = { method: 'GET', path: `${api}/conversations/${state.conversationId}/messages` };
} else if (step === 'note') {
  // A private note for the agents: the file was not attached, and why.
  request = { method: 'POST', path: `${api}/conversations/${state.conversationId}/messages`, body: {
    content: state.note, message_type: 'outgoing', private: true,
  } };
} else {
  throw new Error(`unknown step ${step}`);
}
if (!request.url) request.url = cfg.url + request.path;
return [{ json: { step, state, attempt, request } }];
"""
ADVANCE_CHATWOOT = r"""
// After a successful answer: take what it says and pick the next step (or finish).
const event = $('Route event').first().json;
const m = event.message;
const { step, last } = $json;
const state = { ...$json.state };
const inbox = Number(state.inboxId ?? '@@chatwoot_inbox_id@@');
const body = last.body ?? {};
const identifier = `whatsapp:${m.number}`;
const unwrap = (value) => value?.payload?.contact ?? value?.payload ?? value?.contact ?? value;
const megabytes = (bytes) => String(Math.round(bytes / 104857.6) / 10).replace('.', ',');
@@recovered_already@@
const tooBigNote = (size) => {
  const what = (@@media_articles@@)[m.media.type] ?? 'um arquivo';
  return `O cliente enviou pelo WhatsApp ${what} de ${megabytes(size)} MB, `
    + `acima do limite de ${megabytes(@@media_limit_in@@)} MB de anexos do Chatwoot: o arquivo não foi anexado a esta conversa. `
    + 'Peça ao cliente que envie um arquivo menor ou um link.';
};
let next;
if (step === 'inbox' || step === 'team') {
  const found = (@@number_found@@)(step, body, event.number);
  if (found.error) return [{ json: { ...$json, next: 'failed', error: found.error } }];
  Object.assign(state, found.state);
  next = found.next;
} else if (step === 'search' || step === 'search_again') {
  const list = Array.isArray(body.payload) ? body.payload : [];
  const found = list.find((c) => c.identifier === identifier) ?? list.find((c) => c.phone_number === `+${m.number}`);
  if (found) {
    state.contactId = found.id;
    const inboxLink = (found.contact_inboxes ?? []).find((ci) => Number(ci.inbox?.id) === inbox);
    if (inboxLink?.source_id) state.sourceId = inboxLink.source_id;
    next = 'conversations';
  } else if (step === 'search') {
    next = 'create_contact';
  } else {
    return [{ json: { ...$json, next: 'failed', error: `Chatwoot refused ${identifier} as a duplicate but no contact has it` } }];
  }
} else if (step === 'create_contact') {
  if (last.status === 422) {
    next = 'search_again';      // created meanwhile by another execution: read it back
  } else {
    state.contactId = unwrap(body).id;
    const sourceId = body.payload?.contact_inbox?.source_id;
    if (sourceId) state.sourceId = sourceId;
    next = 'conversations';
  }
} else if (step === 'conversations') {
  const list = Array.isArray(body.payload) ? body.payload : (Array.isArray(body) ? body : []);
  const open = list.find((c) => c.status === 'open' && (c.inbox_id === undefined || Number(c.inbox_id) === inbox));
  if (open) { state.conversationId = open.id; next = 'message'; } else { next = 'create_conversation'; }
} else if (step === 'create_conversation') {
  state.conversationId = body.id ?? body.payload?.id;
  next = 'message';
} else if (step === 'download') {
  const base64 = String(body.base64 ?? '');
  const size = Math.floor(base64.length * 3 / 4) - (base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0);
  if (size > @@media_limit_in@@) {
    state.note = tooBigNote(size);
  } else {
    state.file = { base64, mimetype: body.mimetype || m.media.mimetype || 'application/octet-stream',
      fileName: body.fileName || m.media.fileName || `${m.id}` };
  }
  next = 'message';
} else if (step === 'message') {
  if (state.note && !state.noted) { next = 'note'; } else { return [{ json: { ...$json, state: { ...state, file: null }, next: 'done' } }]; }
} else if (step === 'note') {
  state.noted = true;
  return [{ json: { ...$json, state, next: 'done' } }];
} else if (step === 'check_recovered') {
  state.checked = true;
  if (recoveredAlready(body, m.id)) return [{ json: { ...$json, state, next: 'done' } }];
  next = 'message';
}
if (next === 'message' && event.payload?.borgstack_recovered === true && !state.checked) next = 'check_recovered';
if (next === 'message' && m.media && !state.file && !state.note) {
  // A media message: its file first (or, above the limit, no download and a note after the message).
  if (m.media.tooBig) state.note = tooBigNote(m.media.size); else next = 'download';
}
return [{ json: { step: next, state, next: 'call', attempt: 0 } }];
"""
ERROR_ROW = r"""
// What still failed after the retries: one row in borgstack_cs_errors with the original webhook payload, so that
// POST /webhook/borgstack/replay can deliver it again.
const event = $('@@route@@').first().json;
return [{ json: { row: JSON.stringify({
  workflow: $workflow.name, webhook_path: '@@path@@', step: $json.step ?? $json.request?.path ?? 'unknown',
  status: $json.last?.status || null, error: $json.error ?? 'unknown error', payload: event.payload,
}) } }];
"""


def delivery_loop(wf, x, y, http_cred, route_node, path, plan_js):
    """Plan (plan_js) -> Transport -> HTTP -> Judge -> Switch(ok/retry/failed) ; retry -> Wait -> Plan. Returns
    nodes and connections. Plan's request.transport picks the HTTP node: json (default: the workflow's API, JSON),
    evolution / chatwoot (JSON to that API), fetch (download a file as base64), upload (multipart to Chatwoot)."""
    nodes = [
        switch(wf, "Transport", 5, "({json: 0, evolution: 1, chatwoot: 2, fetch: 3, upload: 4})"
               "[$json.request.transport ?? 'json']", (x + 110, y + 600)),
        http(wf, "Call Evolution API", "evolution", (x + 330, y + 600)),
        http(wf, "Call Chatwoot", "chatwoot", (x + 330, y + 800)),
        fetch_file(wf, "Fetch file", (x + 330, y + 1000)),
        file_to_base64(wf, "File to base64", (x + 550, y + 1000)),
        base64_to_file(wf, "Build file", (x + 330, y + 1200)),
        upload(wf, "Upload to Chatwoot", "chatwoot", (x + 550, y + 1200)),
        code(wf, "Judge", JUDGE, (x + 440, y)),
        switch(wf, "Outcome", 3, "({ok: 0, retry: 1, failed: 2})[$json.next]", (x + 660, y)),
        wait(wf, "Back off", "$json.waitSeconds", (x + 880, y + 200)),
        code(wf, "Error row", ERROR_ROW.replace("@@route@@", route_node).replace("@@path@@", path), (x + 880, y + 400)),
        pg(wf, "Ensure error table", ERROR_TABLE, None, (x + 1100, y + 400)),
        pg(wf, "Store error", INSERT_ERROR, "$('Error row').first().json.row", (x + 1320, y + 400)),
    ]
    nodes.append(http(wf, "Call", http_cred, (x + 220, y)))
    nodes.append(code(wf, "Plan", plan_js, (x, y)))
    conns = {
        "Plan": [["Transport"]],
        "Transport": [["Call"], ["Call Evolution API"], ["Call Chatwoot"], ["Fetch file"], ["Build file"]],
        "Call": [["Judge"]],
        "Call Evolution API": [["Judge"]],
        "Call Chatwoot": [["Judge"]],
        "Fetch file": [["File to base64"]],
        "File to base64": [["Judge"]],
        "Build file": [["Upload to Chatwoot"]],
        "Upload to Chatwoot": [["Judge"]],
        "Judge": [["Outcome"]],
        "Outcome": [[], ["Back off"], ["Error row"]],
        "Back off": [["Plan"]],
        "Error row": [["Ensure error table"]],
        "Ensure error table": [["Store error"]],
    }
    return nodes, conns


def connections(simple):
    out = {}
    for src, outputs in simple.items():
        out[src] = {"main": [[{"node": dst, "type": "main", "index": 0} for dst in branch] for branch in outputs]}
    return out


def workflow(wf, name, nodes, conns, description):
    return {
        "id": wf, "name": name, "active": False,
        "nodes": nodes, "connections": connections(conns),
        "settings": {"executionOrder": "v1", "saveDataErrorExecution": "all", "saveDataSuccessExecution": "all",
                     "callerPolicy": "workflowsFromSameOwner", **({"saveExecutionProgress": True} if DEBUG else {})},
        "meta": {"borgstack": {"version": VERSION, "managed": True, "description": description}},
        "pinData": {},
        "tags": [],
    }


# ---------------------------------------------------------------- WhatsApp session (connection.update)
# Evolution API 2.2.3 (whatsapp.baileys.service.ts connectionUpdate) sends connection.update {instance, state,
# statusReason, ...} to the global webhook. A `close` reaches the webhook only when Evolution gives the session up
# (statusReason 401 loggedOut, 403 forbidden, 402, 406: the phone must be paired again); a drop it reconnects by
# itself sends `connecting` and then `open`, never `close`. `refused` (statusReason 428) = the QR code limit was reached
# without a scan. Workflow 1 owns the only webhook Evolution calls and hands these events on to this workflow, which
# posts a private note in every open Chatwoot conversation of that number's inbox - and, when the same instance is
# `open` again, a second note saying replies go out again (Chatwoot 4.6.0 cannot take a message back: its
# DELETE .../messages/{id} leaves "This message was deleted" in place, and the agent needs to know which replies of
# the gap did not reach the customer). A Redis counter per instance makes each change post once: the first `close`
# counts 1 and posts, repeated ones count on and post nothing; `open` posts only when a `close` was counted, then
# clears the counter (Evolution also sends `open` at every start).
WFS = "BorgStackCsSes01"
SESSION_PATH = "borgstack/evolution-session"
SESSION_KEY = "'borgstack:cs:session:' + $('Route session').first().json.number.instance"
# Chatwoot 4.6.0 GET /api/v1/accounts/{a}/conversations (ConversationFinder, Kaminari's 25 a page); at most
# SESSION_MAX_PAGES pages are read (1000 open conversations of one inbox).
SESSION_PAGE, SESSION_MAX_PAGES = 25, 40
SESSION_NOTE = r"""((route) => {
  const n = route.number;
  const where = `do número da caixa "${n.inbox}" (instância ${n.instance} da Evolution API)`;
  if (route.kind === 'up') {
    return `WhatsApp reconectado: a sessão ${where} está aberta de novo e as respostas voltam a chegar ao cliente. `
      + 'O que foi respondido aqui enquanto ela estava fechada não foi entregue: ficou na tabela de erros, que o '
      + 'administrador pode reenviar (docs/whatsapp-chatwoot.md, "Falhas, novas tentativas e replay"), ou reescreva.';
  }
  const why = ({ 401: 'o aparelho saiu da sessão (desconectado no celular)', 403: 'o WhatsApp recusou o número',
    428: 'o QR code não foi lido a tempo' })[route.reason] ?? `código ${route.reason ?? 'desconhecido'}`;
  return `WhatsApp desconectado: a sessão ${where} foi fechada (${why}). As respostas escritas aqui NÃO chegam ao `
    + 'cliente até o número ser pareado de novo: o administrador lê o QR code no gerenciador da Evolution API '
    + '(docs/evolution-api.md). Outra nota avisa quando a sessão voltar.';
})"""
ROUTE_SESSION = r"""
// connection.update of one WhatsApp instance, handed on by workflow 1 (or replayed) from inside the stack only.
if ($json.headers?.['x-forwarded-for']) return [];
const body = $json.body ?? {};
if (String(body.event ?? '').toLowerCase().replace(/_/g, '.') !== 'connection.update') return [];
const number = (@@route_number@@)(body.instance);
if (!number) return [];
const data = Array.isArray(body.data) ? body.data[0] : (body.data ?? {});
const state = String(data.state ?? '');
// close / refused: replies cannot be delivered; open: they can again; connecting: Evolution is still trying.
const kind = state === 'close' || state === 'refused' ? 'down' : (state === 'open' ? 'up' : null);
if (!kind) return [];
return [{ json: { payload: body, number, kind, state, reason: Number(data.statusReason) || null } }];
"""
SESSION_CHANGED = r"""
// The Redis node answers {<key>: <count after INCR>}. down: only the first close since the last open posts.
// up: a count of 2 or more means a close was counted before this open: post, then the counter is cleared either way.
const route = $('Route session').first().json;
const count = Number(Object.values($json)[0]);
if (route.kind === 'down') return [{ json: { next: count === 1 ? 'post' : 'none', post: count === 1 } }];
return [{ json: { next: 'clear', post: count >= 2 } }];
"""
SESSION_START = r"""
// The number's inbox: its id when known, else found by name first.
const number = $('Route session').first().json.number;
const known = number.inbox_id !== null && number.inbox_id !== undefined;
return [{ json: { state: { inboxId: known ? Number(number.inbox_id) : null, page: 1, conversations: [], index: 0 },
  step: known ? 'list' : 'inbox', attempt: 0 } }];
"""
PLAN_SESSION = r"""
// One request: the inbox list (by name), a page of the inbox's open conversations, or the note in one of them.
const route = $('Route session').first().json;
const state = { ...$json.state };
const step = $json.step;
const attempt = $json.next === 'retry' ? $json.attempt : 0;
const api = '/api/v1/accounts/@@chatwoot_account_id@@';
let request;
if (step === 'inbox') {
  request = { method: 'GET', path: `${api}/inboxes` };
} else if (step === 'list') {
  request = { method: 'GET', path: `${api}/conversations?inbox_id=${state.inboxId}&status=open&page=${state.page}` };
} else if (step === 'note') {
  request = { method: 'POST', path: `${api}/conversations/${state.conversations[state.index]}/messages`, body: {
    content: (@@session_note@@)(route), message_type: 'outgoing', private: true } };
} else {
  throw new Error(`unknown step ${step}`);
}
request.url = '@@chatwoot_url@@' + request.path;
return [{ json: { step, state, attempt, request } }];
"""
ADVANCE_SESSION = r"""
// After a successful answer: the inbox id, the next page, the next conversation, or the end.
const route = $('Route session').first().json;
const { step, last } = $json;
const state = { ...$json.state, conversations: [...($json.state.conversations ?? [])] };
const body = last.body ?? {};
const again = (next) => [{ json: { step: next, state, next: 'call', attempt: 0 } }];
if (step === 'inbox') {
  const found = (@@number_found@@)('inbox', body, route.number);
  if (found.error) return [{ json: { ...$json, next: 'failed', error: found.error } }];
  state.inboxId = found.state.inboxId;
  return again('list');
}
if (step === 'list') {
  const list = Array.isArray(body.data?.payload) ? body.data.payload : [];
  for (const c of list) {
    if (c.status === 'open' && Number(c.inbox_id) === Number(state.inboxId) && !state.conversations.includes(c.id)) {
      state.conversations.push(c.id);
    }
  }
  if (list.length >= @@session_page@@ && state.page < @@session_max_pages@@) { state.page += 1; return again('list'); }
  if (!state.conversations.length) return [{ json: { ...$json, state, next: 'done' } }];
  state.index = 0;
  return again('note');
}
state.index += 1;
if (state.index < state.conversations.length) return again('note');
return [{ json: { ...$json, state, next: 'done' } }];
"""


def session_js(js):
    """The session workflow's own constants filled in (before code() fills in the shared ones)."""
    for key, value in {"@@session_note@@": SESSION_NOTE, "@@session_page@@": str(SESSION_PAGE),
                       "@@session_max_pages@@": str(SESSION_MAX_PAGES)}.items():
        js = js.replace(key, value)
    return js


def session_code(wf, name, js, pos):
    """A Code node of the session workflow."""
    return code(wf, name, session_js(js), pos)


def forward_session(wf, pos):
    """Workflow 1's hand-over of connection.update to the session workflow (the event as Evolution sent it)."""
    return node(wf, "Forward session event", "n8n-nodes-base.httpRequest", 4.2, {
        "method": "POST", "url": f"=http://127.0.0.1:@@n8n_port@@/webhook/{SESSION_PATH}",
        "sendBody": True, "specifyBody": "json", "jsonBody": "={{ JSON.stringify($('Route event').first().json.payload) }}",
        "options": {"timeout": 15000}}, pos)


def session_workflow():
    """The WhatsApp session workflow document (fixed id WFS)."""
    nodes, conns = delivery_loop(WFS, 1540, 0, "chatwoot", "Route session", SESSION_PATH, session_js(PLAN_SESSION))
    nodes += [
        webhook(WFS, "Session webhook", SESSION_PATH, (0, 0)),
        session_code(WFS, "Route session", ROUTE_SESSION, (220, 0)),
        redis(WFS, "Count session change", "incr", SESSION_KEY, (440, 0)),
        session_code(WFS, "Session changed", SESSION_CHANGED, (660, 0)),
        switch(WFS, "Change", 3, "({post: 0, clear: 1})[$json.next] ?? 2", (880, 0)),
        redis(WFS, "Clear session change", "delete", SESSION_KEY, (880, 200)),
        switch(WFS, "Was closed", 2, "$('Session changed').first().json.post ? 0 : 1", (1100, 200)),
        session_code(WFS, "Start", SESSION_START, (1320, 0)),
        session_code(WFS, "Advance", ADVANCE_SESSION, (2420, -200)),
        switch(WFS, "Next", 3, "({call: 0, done: 1, failed: 2})[$json.next]", (2640, -200)),
    ]
    conns.update({
        "Session webhook": [["Route session"]],
        "Route session": [["Count session change"]],
        "Count session change": [["Session changed"]],
        "Session changed": [["Change"]],
        "Change": [["Start"], ["Clear session change"], []],
        "Clear session change": [["Was closed"]],
        "Was closed": [["Start"], []],
        "Start": [["Plan"]],
        "Advance": [["Next"]],
        "Next": [["Plan"], [], ["Error row"]],
    })
    conns["Outcome"] = [["Advance"], ["Back off"], ["Error row"]]
    return workflow(WFS, "BorgStack: WhatsApp session -> Chatwoot notes", nodes, conns,
                    "Evolution API connection.update (handed on by the WhatsApp -> Chatwoot workflow): a closed "
                    "session posts a private note in each open conversation of its inbox, the reopened one a second.")


WFS_JSON = session_workflow()


# ---- workflow 1

nodes, conns = delivery_loop(WF1, 1560, 0, "chatwoot", "Route event", "borgstack/evolution", PLAN_CHATWOOT)
nodes += [
    webhook(WF1, "Evolution webhook", "borgstack/evolution", (0, 0)),
    recovery_webhook(WF1, (0, 200)),
    code(WF1, "Route event", ROUTE_EVOLUTION, (220, 0)),
    switch(WF1, "Event kind", 3, "({status: 1, connection: 2})[$json.kind] ?? 0", (440, 0)),
    forward_session(WF1, (660, 600)),
    redis(WF1, "Take lock", "incr", "'borgstack:cs:lock:' + $('Route event').first().json.message.number", (660, 0), ttl=5),
    code(WF1, "Lock taken", LOCK_TAKEN, (880, 0)),
    switch(WF1, "Lock", 2, "$json.next === 'go' ? 0 : 1", (1100, 0)),
    wait(WF1, "Lock wait", "0.5", (1100, 200)),
    code(WF1, "Start", START_NUMBER, (1320, 0)),
    code(WF1, "Advance", ADVANCE_CHATWOOT, (2440, -200)),
    switch(WF1, "Next", 3, "({call: 0, done: 1, failed: 2})[$json.next]", (2660, -200)),
    redis(WF1, "Release lock", "delete", "'borgstack:cs:lock:' + $('Route event').first().json.message.number", (2880, -200)),
    redis(WF1, "Release lock after error", "delete", "'borgstack:cs:lock:' + $('Route event').first().json.message.number", (3100, 400)),
    code(WF1, "Status row", "return [{ json: { row: JSON.stringify($json.status) } }];", (660, 300)),
    pg(WF1, "Ensure status table", STATUS_TABLE, None, (880, 300)),
    pg(WF1, "Store status", INSERT_STATUS, "$('Status row').first().json.row", (1100, 300)),
]
conns.update({
    "Evolution webhook": [["Route event"]],
    "Recovery webhook": [["Route event"]],
    "Route event": [["Event kind"]],
    "Event kind": [["Take lock"], ["Status row"], ["Forward session event"]],
    "Take lock": [["Lock taken"]],
    "Lock taken": [["Lock"]],
    "Lock": [["Start"], ["Lock wait"]],
    "Lock wait": [["Take lock"]],
    "Start": [["Plan"]],
    "Advance": [["Next"]],
    "Next": [["Plan"], ["Release lock"], ["Error row"]],
    "Store error": [["Release lock after error"]],
    "Status row": [["Ensure status table"]],
    "Ensure status table": [["Store status"]],
})
conns["Outcome"] = [["Advance"], ["Back off"], ["Error row"]]
# "Next: failed" (a duplicate that cannot be read back) goes to the error row as well.
WF1_JSON = workflow(WF1, "BorgStack: WhatsApp -> Chatwoot", nodes, conns,
                    "Evolution API events: messages.upsert to Chatwoot (contact, conversation, message); "
                    "messages.update into borgstack_cs_message_status; connection.update to the WhatsApp "
                    "session workflow.")

# ---------------------------------------------------------------- Chatwoot -> WhatsApp
WF2 = "BorgStackCsCwt01"
ROUTE_CHATWOOT = r"""
// Chatwoot's account webhook (message_created). Only an agent's public reply in the WhatsApp inbox goes out;
// private notes, incoming messages and calls from the internet (X-Forwarded-For, added by Caddy) are dropped.
const input = $json;
if (input.headers?.['x-forwarded-for']) return [];
const body = input.body ?? {};
if (body.event !== 'message_created') return [];
const type = body.message_type;
if (!(type === 'outgoing' || type === 1)) return [];
if (body.private === true || body.private === 'true') return [];
const routed = (@@reply_number@@)(body);
if (!routed) return [];
const contact = body.contact ?? body.conversation?.meta?.sender ?? {};
let number = String(contact.phone_number ?? '').replace(/\D/g, '');
if (!number && String(contact.identifier ?? '').startsWith('whatsapp:')) number = contact.identifier.slice(9).replace(/\D/g, '');
const text = String(body.content ?? '');
// The agent's attachments (Attachment#push_event_data): no name or type of their own - the name is the last segment
// of data_url, which is on Chatwoot's public address: the file is fetched from its internal one.
const internal = '@@chatwoot_url@@';
const files = (Array.isArray(body.attachments) ? body.attachments : [])
  .filter((a) => a && a.data_url && ['image', 'video', 'audio', 'file'].includes(a.file_type))
  .map((a) => {
    const [, path = '/', query = ''] = String(a.data_url).match(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]+([^?#]*)(\?[^#]*)?/i) ?? [];
    let name = path.split('/').pop() || '';
    try { name = decodeURIComponent(name); } catch (error) { /* keep it as it is */ }
    return { kind: ({ image: 'image', video: 'video', audio: 'audio', file: 'document' })[a.file_type],
      url: internal + path + query, path, fileName: name || `anexo-${a.id}`, size: Number(a.file_size) || 0 };
  });
if (!number || (!text && !files.length)) return [];
// What goes to WhatsApp, in order: the text as the caption of the first image/video/document (WhatsApp has no
// caption on a voice note), else as a text message first; then each file.
const sends = files.map((f) => ({ ...f }));
const captioned = sends.find((f) => f.kind !== 'audio');
if (text && captioned) captioned.caption = text;
if (text && !captioned) sends.unshift({ kind: 'text', text });
const conversationId = body.conversation?.id ?? null;
// A reply the queue sends again (scripts/n8n_reconcile.py): its row, and the item of the reply to start from.
const queue = Number.isInteger(body.borgstack_queue?.id) ? body.borgstack_queue : null;
return [{ json: { payload: body, reply: { number, text, sends, conversationId, accountId: body.account?.id ?? null,
  instance: routed.instance, queue } } }];
"""
PLAN_EVOLUTION = r"""
// One request of the agent's reply (the same again on a retry): sendText, or per file: fetch it from Chatwoot, then
// sendMedia / sendWhatsAppAudio with it as base64 - or, above WhatsApp's limit, a private note in the conversation.
const reply = $('Route reply').first().json.reply;
const prev = $json.state ? $json : { state: { index: 0, phase: 'send' }, step: 'send', attempt: 0 };
const state = { ...prev.state };
const attempt = $json.next === 'retry' ? $json.attempt : 0;
const item = reply.sends[state.index];
const instance = encodeURIComponent(reply.instance ?? '@@evolution_instance@@');
let request;
let step = `${state.phase}:${item.kind}`;
if (item.kind === 'text') {
  const path = `/message/sendText/${instance}`;
  request = { method: 'POST', path, body: { number: reply.number, text: item.text } };
} else if (state.phase === 'fetch') {
  request = { transport: 'fetch', method: 'GET', path: item.path, url: item.url };
} else if (state.phase === 'note') {
  const path = `/api/v1/accounts/${reply.accountId ?? '@@chatwoot_account_id@@'}/conversations/${reply.conversationId}/messages`;
  request = { transport: 'chatwoot', method: 'POST', path, url: '@@chatwoot_url@@' + path,
    body: { content: state.note, message_type: 'outgoing', private: true } };
} else if (item.kind === 'audio') {
  // A voice note: Evolution API converts it (ffmpeg) to ogg/opus and sends it as a recorded audio (ptt).
  const path = `/message/sendWhatsAppAudio/${instance}`;
  request = { method: 'POST', path, body: { number: reply.number, audio: state.file.base64 } };
} else {
  const path = `/message/sendMedia/${instance}`;
  request = { method: 'POST', path, body: { number: reply.number, mediatype: item.kind, mimetype: state.file.mimetype,
    fileName: item.fileName, media: state.file.base64, ...(item.caption ? { caption: item.caption } : {}) } };
}
if (!request.url) request.url = '@@evolution_url@@' + request.path;
return [{ json: { step, state, attempt, request } }];
"""
ADVANCE_EVOLUTION = r"""
// After a successful answer: the next phase or the next item of the reply (or the end).
const reply = $('Route reply').first().json.reply;
const { last } = $json;
const state = { ...$json.state };
const item = reply.sends[state.index];
const limits = @@whatsapp_limits@@;
const megabytes = (bytes) => String(Math.round(bytes / 104857.6) / 10).replace('.', ',');
if (item.kind !== 'text' && state.phase === 'fetch') {
  const base64 = String(last.body ?? '');
  const size = Math.floor(base64.length * 3 / 4) - (base64.endsWith('==') ? 2 : base64.endsWith('=') ? 1 : 0);
  const mimetype = String(last.headers?.['content-type'] ?? '').split(';')[0].trim() || 'application/octet-stream';
  if (size > limits[item.kind]) {
    state.note = `Não enviado ao cliente: ${(@@media_articles@@)[item.kind]} "${item.fileName}" tem ${megabytes(size)} MB, `
      + `acima do limite de ${megabytes(limits[item.kind])} MB do WhatsApp para este tipo de arquivo. `
      + 'Envie um arquivo menor ou um link.';
    state.phase = 'note';
  } else {
    state.file = { base64, mimetype };
    state.phase = 'send';
  }
  return [{ json: { state, step: state.phase, next: 'call', attempt: 0 } }];
}
const next = { index: state.index + 1, phase: 'send' };
if (next.index >= reply.sends.length) return [{ json: { ...$json, state: { ...state, file: null }, next: 'done' } }];
if (reply.sends[next.index].kind !== 'text') next.phase = 'fetch';
return [{ json: { state: next, step: next.phase, next: 'call', attempt: 0 } }];
"""
nodes2, conns2 = delivery_loop(WF2, 880, 0, "evolution", "Route reply", "borgstack/chatwoot", PLAN_EVOLUTION)
FIRST_SEND = r"""
// The first item of the reply: a text is sent at once, a file is fetched from Chatwoot first.
const reply = $('Route reply').first().json.reply;
const index = Math.min(Number(reply.queue?.index ?? 0) || 0, reply.sends.length - 1);
return [{ json: { state: { index, phase: reply.sends[index].kind === 'text' ? 'send' : 'fetch' }, step: 'start', attempt: 0 } }];
"""
nodes2 += [
    webhook(WF2, "Chatwoot webhook", "borgstack/chatwoot", (0, 0)),
    code(WF2, "Route reply", ROUTE_CHATWOOT, (220, 0)),
    code(WF2, "Start", FIRST_SEND, (440, 0)),
    code(WF2, "Advance", ADVANCE_EVOLUTION, (1760, -200)),
    switch(WF2, "Next", 3, "({call: 0, done: 1, failed: 2})[$json.next]", (1980, -200)),
]
conns2.update({"Chatwoot webhook": [["Route reply"]], "Route reply": [["Start"]], "Start": [["Plan"]],
               "Advance": [["Next"]], "Next": [["Plan"], [], ["Error row"]]})
conns2["Outcome"] = [["Advance"], ["Back off"], ["Error row"]]
# The per-number limiter and the rate-limit queue (scripts/n8n_reconcile.py) rewire Route reply, Outcome and Next.
n8n_reconcile.extend_replies(sys.modules[__name__], WF2, nodes2, conns2)
WF2_JSON = workflow(WF2, "BorgStack: Chatwoot -> WhatsApp", nodes2, conns2,
                    "Chatwoot message_created (agent's public reply) to Evolution API: sendText, and each attachment "
                    "fetched from Chatwoot and sent with sendMedia / sendWhatsAppAudio (above WhatsApp's limit: a "
                    "private note instead).")

# ---------------------------------------------------------------- Replay
WF3 = "BorgStackCsRpl01"
ROUTE_REPLAY = r"""
// POST /webhook/borgstack/replay from inside the stack only (X-Forwarded-For = came through Caddy).
// Body: {} replays every error not replayed yet; {"id": N} one row.
if ($json.headers?.['x-forwarded-for']) return [];
const id = Number($json.body?.id ?? 0);
return [{ json: { filter: JSON.stringify({ id: Number.isInteger(id) && id > 0 ? id : null }) } }];
"""
SELECT_ERRORS = """
SELECT e.id, e.webhook_path, e.payload::text AS payload
FROM borgstack_cs_errors AS e, (SELECT ($1::jsonb->>'id')::bigint AS id) AS f
WHERE e.replayed_at IS NULL AND (f.id IS NULL OR e.id = f.id)
ORDER BY e.id;
"""
MARK_REPLAYED = """
UPDATE borgstack_cs_errors SET replayed_at = now() WHERE id = ($1::jsonb->>'id')::bigint RETURNING id;
"""
nodes3 = [
    webhook(WF3, "Replay webhook", "borgstack/replay", (0, 0)),
    code(WF3, "Route replay", ROUTE_REPLAY, (220, 0)),
    pg(WF3, "Ensure error table", ERROR_TABLE, None, (440, 0)),
    pg(WF3, "Failed events", SELECT_ERRORS, "$('Route replay').first().json.filter", (660, 0)),
    node(WF3, "Deliver again", "n8n-nodes-base.httpRequest", 4.2, {
        "method": "POST", "url": "=http://127.0.0.1:@@n8n_port@@/webhook/{{ $json.webhook_path }}",
        "sendBody": True, "specifyBody": "json", "jsonBody": "={{ $json.payload }}",
        "options": {"timeout": 15000}}, (880, 0)),
    code(WF3, "Replayed row", "return $('Failed events').all().map((item) => ({ json: { row: JSON.stringify({ id: item.json.id }) } }));", (1100, 0)),
    pg(WF3, "Mark replayed", MARK_REPLAYED, "$json.row", (1320, 0)),
]
conns3 = {
    "Replay webhook": [["Route replay"]],
    "Route replay": [["Ensure error table"]],
    "Ensure error table": [["Failed events"]],
    "Failed events": [["Deliver again"]],
    "Deliver again": [["Replayed row"]],
    "Replayed row": [["Mark replayed"]],
}
WF3_JSON = workflow(WF3, "BorgStack: replay failed customer-service events", nodes3, conns3,
                    "Delivers the events stored in borgstack_cs_errors again through their original webhook.")

# ---------------------------------------------------------------- Media pipeline (docs/directus-fileflows.md)
# Directus upload in the chosen folder -> (Directus flow) -> this webhook -> FileFlows (upload + process-file, status
# polled with search) -> the result uploaded to Directus' processed folder (Directus keeps it in its SeaweedFS bucket)
# -> the original file tagged and linked to it. A failure: a row in borgstack_cs_errors (the monitoring's error
# counter and the replay webhook see it) and the original tagged "erro-processamento" with the reason.
WFM = "BorgStackMedia01"
MEDIA_OUT = OUT.parent / "media"
MEDIA_CRED = {"id": "BorgStackCrDir01", "name": "BorgStack Directus"}
MEDIA_TAG_DONE, MEDIA_TAG_FAILED = "processado", "erro-processamento"


def media_http(name, method, url, pos, cred=True, response=None, **params):
    """An HTTP Request node of the media pipeline: errors go to its second output (the error branch)."""
    options = {"timeout": 120000}
    if response:
        options["response"] = {"response": {"responseFormat": response}}
    body = {"method": method, "url": url, "options": options, **params}
    extra = {"onError": "continueErrorOutput"}
    if cred:
        body.update({"authentication": "genericCredentialType", "genericAuthType": "httpHeaderAuth"})
        extra["credentials"] = {"httpHeaderAuth": MEDIA_CRED}
    return node(WFM, name, "n8n-nodes-base.httpRequest", 4.2, body, pos, **extra)


MEDIA_ROUTE = r"""
// Directus' flow "BorgStack: mídia" (event files.upload in the chosen folder) posts {file, processed_folder}.
// Only calls from inside the stack are taken (X-Forwarded-For: the call came through Caddy).
if ($json.headers?.['x-forwarded-for']) return [];
const body = $json.body ?? {};
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
if (!uuid.test(String(body.file ?? '')) || !uuid.test(String(body.processed_folder ?? ''))) return [];
return [{ json: { payload: body, file: body.file, processedFolder: body.processed_folder } }];
"""
MEDIA_JUDGE = r"""
// FileFlows' answer to search {Path, Limit: 1}: Processed (1) goes on, FlowNotFound (3) / ProcessingFailed (4) is an
// error with FileFlows' reason, Unprocessed (0) / Processing (2) waits again - until the time limit.
let files = [];
try { files = JSON.parse($json.data || '[]'); } catch (error) { files = []; }
const file = Array.isArray(files) ? files[0] : undefined;
const limit = Math.max(1, Math.ceil(Number('@@media_timeout_seconds@@') / Number('@@media_poll_seconds@@')));
const name = $('Send to FileFlows').first().json.data;
if (file && file.Status === 1) return [{ json: { next: 'done', uid: file.Uid } }];
if (file && (file.Status === 3 || file.Status === 4)) {
  const reason = file.FailureReason || (file.Status === 3 ? 'fluxo não encontrado' : 'falha no processamento');
  return [{ json: { next: 'failed', step: 'fileflows', error: `FileFlows não processou ${name}: ${reason}` } }];
}
if ($runIndex + 1 >= limit) {
  const status = file ? file.Status : 'desconhecido';
  const error = `FileFlows não terminou ${name} em @@media_timeout_seconds@@ s (status ${status})`;
  return [{ json: { next: 'failed', step: 'fileflows', error } }];
}
return [{ json: { next: 'wait' } }];
"""
MEDIA_ERROR = r"""
// Any failed step: one row in borgstack_cs_errors (counted by the monitoring, delivered again by the replay webhook)
// and what the Directus file gets: the tag and the reason in its metadata.
const route = $('Route upload').first().json;
const failure = $json.error ?? $json;
const step = $json.step ?? $prevNode.name;
const status = Number(failure.httpCode ?? failure.status ?? 0) || null;
const error = String($json.step ? $json.error : (failure.message ?? JSON.stringify(failure))).slice(0, 1000);
let info = {};
try { info = $('Read file info').first().json.data ?? {}; } catch (e) { info = {}; }
const tags = [...new Set([...(info.tags ?? []).filter((t) => t !== '@@tag_done@@'), '@@tag_failed@@'])];
return [{ json: {
  row: JSON.stringify({ workflow: $workflow.name, webhook_path: 'borgstack/media', step, status, error, payload: route.payload }),
  mark: { tags, metadata: { ...(info.metadata ?? {}), borgstack_media: { status: 'failed', step, error, at: new Date().toISOString() } } },
} }];
"""
MEDIA_DONE = r"""
// The processed file is in Directus (and so in its SeaweedFS bucket): tag the original and point it at the result.
const info = $('Read file info').first().json.data ?? {};
const stored = $json.data ?? {};
const tags = [...new Set([...(info.tags ?? []).filter((t) => t !== '@@tag_failed@@'), '@@tag_done@@'])];
return [{ json: { mark: { tags, metadata: { ...(info.metadata ?? {}), borgstack_media: {
  status: 'processed', processed_file: stored.id, at: new Date().toISOString() } } } } }];
"""


def media_pipeline_workflow():
    """The media pipeline's workflow document (fixed id WFM)."""
    directus, fileflows = "@@directus_url@@", "@@fileflows_url@@"
    route = "$('Route upload').first().json"
    consts = {"@@tag_done@@": MEDIA_TAG_DONE, "@@tag_failed@@": MEDIA_TAG_FAILED}

    def js(text):
        for key, value in consts.items():
            text = text.replace(key, value)
        return text

    nodes = [
        webhook(WFM, "Directus upload", "borgstack/media", (0, 0)),
        code(WFM, "Route upload", MEDIA_ROUTE, (220, 0)),
        media_http("Read file info", "GET", f"={directus}/files/{{{{ {route}.file }}}}", (440, 0)),
        media_http("Download original", "GET", f"={directus}/assets/{{{{ {route}.file }}}}", (660, 0), response="file"),
        media_http("Send to FileFlows", "POST", f"={fileflows}/api/library-file/upload", (880, 0), cred=False,
                   response="text", sendBody=True, contentType="multipart-form-data", bodyParameters={"parameters": [
                       {"parameterType": "formData", "name": "chunkNumber", "value": "0"},
                       {"parameterType": "formData", "name": "totalChunks", "value": "1"},
                       {"parameterType": "formData", "name": "fileName",
                        "value": f"={{{{ {route}.file + '-' + $('Read file info').first().json.data.filename_download }}}}"},
                       {"parameterType": "formBinaryData", "name": "file", "inputDataFieldName": "data"}]}),
        media_http("Queue in FileFlows", "POST", f"={fileflows}/api/library-file/process-file", (1100, 0), cred=False,
                   response="text", sendQuery=True, queryParameters={"parameters": [
                       {"name": "filename", "value": "={{ $('Send to FileFlows').first().json.data }}"}]}),
        wait(WFM, "Poll wait", "@@media_poll_seconds@@", (1320, 0)),
        media_http("Read FileFlows status", "POST", f"={fileflows}/api/library-file/search", (1540, 0), cred=False,
                   response="text", sendBody=True, specifyBody="json",
                   jsonBody="={{ JSON.stringify({ Path: $('Send to FileFlows').first().json.data, Limit: 1 }) }}"),
        code(WFM, "Judge processing", MEDIA_JUDGE, (1760, 0)),
        switch(WFM, "Processing", 3, "({done: 0, wait: 1, failed: 2})[$json.next]", (1980, 0)),
        media_http("Download result", "GET", f"={fileflows}/api/library-file/download/{{{{ $json.uid }}}}", (2200, 0),
                   cred=False, response="file"),
        media_http("Store in Directus", "POST", f"={directus}/files", (2420, 0), sendBody=True,
                   contentType="multipart-form-data", bodyParameters={"parameters": [
                       {"parameterType": "formData", "name": "folder", "value": f"={{{{ {route}.processedFolder }}}}"},
                       {"parameterType": "formBinaryData", "name": "file", "inputDataFieldName": "data"}]}),
        code(WFM, "Processed", js(MEDIA_DONE), (2640, 0)),
        media_http("Mark processed", "PATCH", f"={directus}/files/{{{{ {route}.file }}}}", (2860, 0), sendBody=True,
                   specifyBody="json", jsonBody="={{ JSON.stringify($json.mark) }}"),
        code(WFM, "Error row", js(MEDIA_ERROR), (1320, 400)),
        pg(WFM, "Ensure error table", ERROR_TABLE, None, (1540, 400)),
        pg(WFM, "Store error", INSERT_ERROR, "$('Error row').first().json.row", (1760, 400)),
        media_http("Mark failed", "PATCH", f"={directus}/files/{{{{ {route}.file }}}}", (1980, 400), sendBody=True,
                   specifyBody="json", jsonBody="={{ JSON.stringify($('Error row').first().json.mark) }}"),
    ]
    conns = {
        "Directus upload": [["Route upload"]],
        "Route upload": [["Read file info"]],
        "Read file info": [["Download original"], ["Error row"]],
        "Download original": [["Send to FileFlows"], ["Error row"]],
        "Send to FileFlows": [["Queue in FileFlows"], ["Error row"]],
        "Queue in FileFlows": [["Poll wait"], ["Error row"]],
        "Poll wait": [["Read FileFlows status"]],
        "Read FileFlows status": [["Judge processing"], ["Error row"]],
        "Judge processing": [["Processing"]],
        "Processing": [["Download result"], ["Poll wait"], ["Error row"]],
        "Download result": [["Store in Directus"], ["Error row"]],
        "Store in Directus": [["Processed"], ["Error row"]],
        "Processed": [["Mark processed"]],
        "Mark processed": [[], ["Error row"]],
        "Error row": [["Ensure error table"]],
        "Ensure error table": [["Store error"]],
        "Store error": [["Mark failed"]],
    }
    doc = workflow(WFM, "BorgStack: Directus -> FileFlows (mídia)", nodes, conns,
                   "Uploads to Directus' media folder go through FileFlows; the result comes back to Directus' "
                   "processed folder and the original is tagged (processado / erro-processamento).")
    # "Mark failed" is best effort: a Directus that is down must not hide the error row already stored.
    for item in doc["nodes"]:
        if item["name"] == "Mark failed":
            item["onError"] = "continueRegularOutput"
    return doc


# The media workflow alone on stdout, nothing written (tests/unit/roles/test_media_pipeline_workflow.py reads it).
if "--print-media" in sys.argv[1:]:
    print(json.dumps(media_pipeline_workflow(), ensure_ascii=False))
    sys.exit(0)

STALE = []
FILES = {"whatsapp-to-chatwoot": WF1_JSON, "chatwoot-to-whatsapp": WF2_JSON, "replay-failed": WF3_JSON,
         "whatsapp-session": WFS_JSON}
FILES.update(n8n_reconcile.workflows(sys.modules[__name__]))
for name, doc in FILES.items():
    target, text = OUT / f"{name}.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            STALE.append(target.name)
    else:
        target.write_text(text, encoding="utf-8")
MEDIA_OUT.mkdir(exist_ok=True)
for target, doc in ((MEDIA_OUT / "media-pipeline.json", media_pipeline_workflow()),):
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            STALE.append(target.name)
    else:
        target.write_text(text, encoding="utf-8")
if STALE:
    sys.exit(f"out of date: {', '.join(STALE)} - run scripts/n8n-workflows.py")
