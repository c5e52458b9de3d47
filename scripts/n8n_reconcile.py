# SPDX-License-Identifier: GPL-3.0-or-later
"""The reconciliation workflow (architecture, customer service, scenario 3), kept apart from the delivery workflows
in n8n-workflows.py (which imports this module and writes the file): messages Evolution API saved that never reached
Chatwoot - n8n was down, restarting, or lost the webhook - are found and delivered again, once and in order.

How, per run (every n8n_reconcile_interval seconds, or on demand: POST /webhook/borgstack/reconcile from inside the
stack, answered when the run ends):
  1. a lease row in n8n's database (borgstack_cs_leases) is the run's lock: taken only when free or expired, by one
     statement, and never prolonged by a run that finds it taken (a Redis INCR with EXPIRE was: every refused run
     reset the expiry, so a run that died - n8n stopped mid-run - held the lock for ever); released at the end;
  2. the window: from the Redis cursor (the end of the last complete run, less n8n_reconcile_grace of overlap) - or,
     the first time, n8n_reconcile_lookback seconds ago - to now less n8n_reconcile_grace (messages still being
     delivered live are left to the next run);
  3. for every WhatsApp number (instance) of borgstack_customer_service.numbers, Evolution API's
     POST /chat/findMessages/{instance} (where.messageTimestamp {gte, lte}), page after page;
  4. customers' messages in private chats (not fromMe, @s.whatsapp.net), oldest first, each POSTed in turn to the
     WhatsApp -> Chatwoot workflow's recovery webhook (borgstack/evolution-recovered, answered at the end of that
     execution: one after the other, in order) with borgstack_recovered: true. That workflow, inside its per-number
     lock, reads the conversation's messages and skips one Chatwoot already has (content_attributes
     whatsapp_message_id or source_id = the WhatsApp id): never a duplicate; a recovered one is marked
     content_attributes.borgstack_recovered;
  5. the cursor moves to the window's end only when every call succeeded (findMessages answered, the recovery
     webhook answered 200 for each message; otherwise the next run checks the same window again), the lease is
     released.
"""

WF = "BorgStackCsRec01"

LEASE_TABLE = """
DO $$ BEGIN
PERFORM pg_advisory_xact_lock(hashtext('borgstack_cs_leases'));
CREATE TABLE IF NOT EXISTS borgstack_cs_leases (
  name text PRIMARY KEY,
  holder text NOT NULL,
  until timestamptz NOT NULL
);
END $$;
"""
# Taken when missing or expired, in one statement: a run that finds it held changes nothing (answers no row).
TAKE_LEASE = """
WITH input AS (SELECT $1::jsonb AS r)
INSERT INTO borgstack_cs_leases AS l (name, holder, until)
SELECT r->>'name', r->>'holder', now() + make_interval(secs => (r->>'ttl')::double precision) FROM input
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until WHERE l.until < now()
RETURNING l.holder;
"""
RELEASE_LEASE = """
DELETE FROM borgstack_cs_leases AS l USING (SELECT $1::jsonb AS r) AS input
WHERE l.name = input.r->>'name' AND l.holder = input.r->>'holder'
RETURNING l.name;
"""
LEASE_TAKEN = r"""
// The lease is this execution's when the statement answered its holder; another run holds it otherwise: stop.
return String($json.holder ?? '') === String($execution.id) ? [{ json: { locked: true } }] : [];
"""


def lease_row(name, ttl):
    """The Postgres nodes' parameter: the lease's name, this execution as holder, its length in seconds."""
    return f"JSON.stringify({{ name: '{name}', holder: String($execution.id), ttl: {ttl} }})"


def lease_nodes(b, wf, name, ttl, pos):
    """Ensure table -> take -> taken? (three nodes from ``pos``) and the release node (placed by the caller)."""
    x, y = pos
    ensure = b.pg(wf, "Ensure lease table", LEASE_TABLE, None, (x, y))
    take = b.pg(wf, "Take lease", TAKE_LEASE, lease_row(name, ttl), (x + 220, y))
    # No row (the lease is held) must still reach "Lease taken", which then stops the run.
    take["alwaysOutputData"] = True
    return [ensure, take, b.code(wf, "Lease taken", LEASE_TAKEN, (x + 440, y))]


def release_node(b, wf, name, ttl, pos):
    release = b.pg(wf, "Release lease", RELEASE_LEASE, lease_row(name, ttl), pos)
    release["alwaysOutputData"] = True
    return release


REQUEST = r"""
// POST /webhook/borgstack/reconcile from inside the stack only (X-Forwarded-For: it came through Caddy).
// Body {} - from the cursor; {"since": <unix seconds>} - check again everything since then (the operator's choice).
if ($json.headers?.['x-forwarded-for']) return [];
const since = Number($json.body?.since ?? 0);
return [{ json: { since: Number.isInteger(since) && since > 0 ? since : null } }];
"""
WINDOW = r"""
// The window to check: [from, to] in unix seconds (see scripts/n8n_reconcile.py).
const now = Math.floor(Date.now() / 1000);
const grace = Number('@@reconcile_grace@@');
const lookback = Number('@@reconcile_lookback@@');
const asked = $('Reconcile request').isExecuted ? $('Reconcile request').first().json.since : null;
const cursor = Number($json.cursor ?? 0) || 0;
const from = asked ?? (cursor > 0 ? cursor - grace : now - lookback);
const to = now - grace;
// Every WhatsApp number of the stack, one after the other (borgstack_customer_service.numbers).
const instances = (@@numbers@@).map((n) => n.instance);
return [{ json: { from, to, instances, at: 0, page: 1, records: [], failed: null } }];
"""
PAGE = r"""
// One page of one instance's saved messages in the window (newest first, 100 a page).
const s = $json;
const path = `/chat/findMessages/${encodeURIComponent(s.instances[s.at])}`;
return [{ json: { ...s, request: { method: 'POST', path, url: '@@evolution_url@@' + path, body: {
  where: { messageTimestamp: { gte: new Date(s.from * 1000).toISOString(), lte: new Date(s.to * 1000).toISOString() } },
  page: s.page, offset: 100,
} } } }];
"""
COLLECT = r"""
// Keep the page's records (with their instance); the next page, then the next instance, until the last. A failed
// call ends the search: nothing is delivered and the cursor stays (the next run checks the same window).
const s = $('Page').last().json;
const { request, ...rest } = s;
const status = Number($json.statusCode ?? 0);
if (status !== 200) {
  const failed = `POST ${request.path} answered ${status || 'nothing'}: ${JSON.stringify($json.body ?? $json.error ?? '').slice(0, 300)}`;
  return [{ json: { ...rest, records: [], failed, next: 'done' } }];
}
const found = $json.body?.messages ?? {};
const page = (Array.isArray(found.records) ? found.records : []).map((r) => ({ ...r, borgstack_instance: s.instances[s.at] }));
const records = [...s.records, ...page];
if (Number(found.pages ?? 1) > s.page && page.length > 0) return [{ json: { ...rest, records, page: s.page + 1, next: 'more' } }];
if (s.at + 1 < s.instances.length) return [{ json: { ...rest, records, at: s.at + 1, page: 1, next: 'more' } }];
return [{ json: { ...rest, records, next: 'done' } }];
"""
CANDIDATES = r"""
// The customers' messages (private chats, not sent by us), each once, oldest first, as the webhook body Evolution API
// would have sent; none: one item that only moves the cursor.
const { records } = $json;
if ($json.failed) return [{ json: { empty: true } }];
const seen = new Set();
const picked = [];
for (const r of records) {
  const key = r.key ?? {};
  const id = String(key.id ?? '');
  if (!id || seen.has(`${r.borgstack_instance}/${id}`) || key.fromMe === true || !String(key.remoteJid ?? '').endsWith('@s.whatsapp.net')) continue;
  seen.add(`${r.borgstack_instance}/${id}`);
  picked.push(r);
}
picked.sort((a, b) => Number(a.messageTimestamp) - Number(b.messageTimestamp));
if (!picked.length) return [{ json: { empty: true } }];
return picked.map((r) => ({ json: { empty: false, body: {
  event: 'messages.upsert', instance: r.borgstack_instance, borgstack_recovered: true,
  data: { key: r.key, pushName: r.pushName, message: r.message, messageType: r.messageType,
    messageTimestamp: Number(r.messageTimestamp), instanceId: r.instanceId, source: r.source },
} } }));
"""
CURSOR = r"""
// Every candidate went through the delivery workflow (its recovery webhook answered 200 once it ended): the
// window's end is the next run's start. A failed search or delivery keeps the cursor where it was.
const w = $('Collect').last().json;
const candidates = $('Candidates').all().filter((item) => !item.json.empty).length;
// From the loop's "done" output: every answer of Recover (from "Any", when there was nothing: one empty item).
const answers = candidates ? $input.all() : [];
const refused = answers.filter((item) => Number(item.json.statusCode ?? 0) !== 200).length;
const failed = w.failed ?? (refused ? `${refused} of ${candidates} recovered messages not delivered` : null);
const before = Number($('Read cursor').first().json.cursor ?? 0) || 0;
return [{ json: { cursor: String(failed ? before : w.to), checked: candidates, failed, from: w.from, to: w.to } }];
"""
CURSOR_KEY = "'borgstack:cs:reconcile:cursor'"
# A run that dies (n8n stopped mid-run) holds its lease this long at most; a live run ends well before.
RECONCILE_LEASE = 300
QUEUE_LEASE = 300


def one_at_a_time(b, wf, name, pos):
    """n8n's Loop Over Items (SplitInBatches v3, outputs done/loop) with one item a batch: the call after it runs
    for the next item only once the previous call answered. (The HTTP Request node's batching option does not do
    that: it only spaces the sends - HttpRequestV3 starts every request and awaits them together - so recovered
    messages and queued replies went out at the same time, in any order.)"""
    return b.node(wf, name, "n8n-nodes-base.splitInBatches", 3, {"batchSize": 1, "options": {}}, pos)


def schedule_node(b, wf, cron):
    """The schedule trigger with a cron rule the role computes from the interval in seconds (roles/n8n/tasks/
    workflows.yml): n8n 1.113's ScheduleTrigger turns a seconds/minutes rule into the same cron expression
    (GenericFunctions.js toCronExpression), but its secondsInterval/minutesInterval are number parameters, and the
    role's @@name@@ settings are filled in as strings; an expression of type string has no such mismatch."""
    return b.node(wf, "Every interval", "n8n-nodes-base.scheduleTrigger", 1.2, {
        "rule": {"interval": [{"field": "cronExpression", "expression": cron}]}}, (0, 0))


def workflows(b):
    """{file name: workflow JSON}; ``b`` is n8n-workflows.py (its node builders)."""
    recover = b.node(WF, "Recover", "n8n-nodes-base.httpRequest", 4.2, {
        "method": "POST", "url": "=http://127.0.0.1:@@n8n_port@@/webhook/borgstack/evolution-recovered",
        "sendBody": True, "specifyBody": "json", "jsonBody": "={{ JSON.stringify($json.body) }}",
        "options": {"response": {"response": {"fullResponse": True, "neverError": True}}, "timeout": 120000}},
        (2200, 200))
    schedule = schedule_node(b, WF, "@@reconcile_cron@@")
    hook = b.webhook(WF, "Reconcile webhook", "borgstack/reconcile", (0, 200))
    hook["parameters"]["responseMode"] = "lastNode"
    release = release_node(b, WF, "reconcile", RECONCILE_LEASE, (2640, 0))
    save = b.node(WF, "Save cursor", "n8n-nodes-base.redis", 1, {
        "operation": "set", "key": "={{ " + CURSOR_KEY + " }}", "value": "={{ $json.cursor }}", "keyType": "string"},
        (2420, 0), credentials={"redis": b.CRED["redis"]})
    read = b.node(WF, "Read cursor", "n8n-nodes-base.redis", 1, {
        "operation": "get", "propertyName": "cursor", "key": "={{ " + CURSOR_KEY + " }}", "keyType": "automatic",
        "options": {}}, (660, 0), credentials={"redis": b.CRED["redis"]})
    nodes = [
        schedule, hook,
        b.code(WF, "Reconcile request", REQUEST, (220, 200)),
        *lease_nodes(b, WF, "reconcile", RECONCILE_LEASE, (220, -200)),
        read,
        b.code(WF, "Window", WINDOW, (880, 0)),
        b.code(WF, "Page", PAGE, (1100, 0)),
        b.http(WF, "Find messages", "evolution", (1320, 0)),
        b.code(WF, "Collect", COLLECT, (1540, 0)),
        b.switch(WF, "More pages", 2, "$json.next === 'more' ? 1 : 0", (1760, 0)),
        b.code(WF, "Candidates", CANDIDATES, (1760, 200)),
        b.switch(WF, "Any", 2, "$json.empty ? 1 : 0", (1980, 200)),
        one_at_a_time(b, WF, "Recover loop", (1980, 0)),
        recover,
        b.code(WF, "Cursor", CURSOR, (2200, 0)),
        save, release,
        # The webhook's answer (the last node's output): what this run checked.
        b.code(WF, "Done", "return [{ json: { reconciled: true, ...$('Cursor').first().json } }];", (2860, 0)),
    ]
    conns = {
        "Every interval": [["Ensure lease table"]],
        "Reconcile webhook": [["Reconcile request"]],
        "Reconcile request": [["Ensure lease table"]],
        "Ensure lease table": [["Take lease"]],
        "Take lease": [["Lease taken"]],
        "Lease taken": [["Read cursor"]],
        "Read cursor": [["Window"]],
        "Window": [["Page"]],
        "Page": [["Find messages"]],
        "Find messages": [["Collect"]],
        "Collect": [["More pages"]],
        "More pages": [["Candidates"], ["Page"]],
        "Candidates": [["Any"]],
        "Any": [["Recover loop"], ["Cursor"]],
        "Recover loop": [["Cursor"], ["Recover"]],
        "Recover": [["Recover loop"]],
        "Cursor": [["Save cursor"]],
        "Save cursor": [["Release lease"]],
        "Release lease": [["Done"]],
    }
    doc = b.workflow(WF, "BorgStack: reconcile WhatsApp -> Chatwoot", nodes, conns,
                     "Every interval (or POST /webhook/borgstack/reconcile): messages Evolution API saved that "
                     "Chatwoot lacks are delivered again through the WhatsApp -> Chatwoot workflow, once, in order, "
                     "marked borgstack_recovered.")
    return {"reconcile": quiet(doc), "reply-queue": queue_workflow(b)}


# ------------------------------------------------------------------ the per-number limiter and the rate-limit queue
# (architecture, customer service, scenario 4). In the Chatwoot -> WhatsApp workflow, before anything is sent:
#   - a reply for a number that has replies waiting in the queue waits behind them (order);
#   - else a Redis counter per number and window (borgstack:cs:rate:<number>:<window start>, INCR) counts the reply:
#     above n8n_reply_rate_limit replies in n8n_reply_rate_window seconds it is queued until the next window;
#   - a 429 from Evolution API (WhatsApp's rate limit) queues the rest of the reply, from the item refused, until
#     Retry-After (else n8n_reply_queue_retry seconds) - unless it is the first 429 of the reply and Retry-After is
#     at most INLINE_429_MAX seconds: that short wait happens in the execution, as before.
# A reply queued for the first time gets a private note in its Chatwoot conversation ("na fila"), its id kept in the
# row; once the queue delivered the reply, the note is cleared (deleted in Chatwoot). The queue is the table borgstack_cs_reply_queue in n8n's database; the
# "reply queue" workflow sends its due rows again, oldest first, one after the other, through the same workflow (the
# limiter counts them too), every n8n_reply_queue_interval seconds or on demand (POST /webhook/borgstack/reply-queue).
QUEUE = "BorgStackCsQue01"
INLINE_429_MAX = 5  # seconds of Retry-After still waited for in the execution, the first time
# Created by whichever execution comes first; the advisory lock (held to the end of the block's transaction) keeps
# two concurrent CREATE TABLE IF NOT EXISTS from colliding in the catalog. One statement: the node answers one item.
QUEUE_TABLE = """
DO $$ BEGIN
PERFORM pg_advisory_xact_lock(hashtext('borgstack_cs_reply_queue'));
CREATE TABLE IF NOT EXISTS borgstack_cs_reply_queue (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now(),
  number text NOT NULL,
  conversation_id bigint,
  account_id bigint,
  payload jsonb NOT NULL,
  start_index integer NOT NULL DEFAULT 0,
  reason text NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL,
  delivered_at timestamptz,
  failed_at timestamptz,
  note_id bigint
);
END $$;
"""
AHEAD = """
SELECT count(q.id)::integer AS ahead
FROM (SELECT $1::jsonb AS r) AS input
LEFT JOIN borgstack_cs_reply_queue AS q
  ON q.number = input.r->>'number' AND q.delivered_at IS NULL AND q.failed_at IS NULL
 AND q.id < coalesce((input.r->>'queue_id')::bigint, 9223372036854775807);
"""
STORE_QUEUED = """
WITH input AS (SELECT $1::jsonb AS r),
again AS (
  UPDATE borgstack_cs_reply_queue AS q
  SET next_attempt_at = to_timestamp((input.r->>'retry_at')::double precision),
      start_index = (input.r->>'start_index')::integer, reason = input.r->>'reason', attempts = q.attempts + 1
  FROM input WHERE q.id = (input.r->>'queue_id')::bigint
  RETURNING q.id, false AS created),
first AS (
  INSERT INTO borgstack_cs_reply_queue (number, conversation_id, account_id, payload, start_index, reason,
                                        next_attempt_at)
  SELECT r->>'number', (r->>'conversation_id')::bigint, (r->>'account_id')::bigint, r->'payload',
         (r->>'start_index')::integer, r->>'reason', to_timestamp((r->>'retry_at')::double precision)
  FROM input WHERE r->>'queue_id' IS NULL
  RETURNING id, true AS created)
SELECT * FROM again UNION ALL SELECT * FROM first;
"""
MARK_QUEUE = """
UPDATE borgstack_cs_reply_queue AS q
SET delivered_at = CASE WHEN input.r->>'outcome' = 'delivered' THEN now() END,
    failed_at = CASE WHEN input.r->>'outcome' = 'failed' THEN now() END
FROM (SELECT $1::jsonb AS r) AS input
WHERE q.id = (input.r->>'id')::bigint
RETURNING q.id, q.conversation_id, q.account_id, q.created_at, q.note_id;
"""
# The id of the private note that tells the agents a reply waits (cleared once the reply went out).
KEEP_NOTE = """
UPDATE borgstack_cs_reply_queue AS q SET note_id = (input.r->>'note_id')::bigint
FROM (SELECT $1::jsonb AS r) AS input
WHERE q.id = (input.r->>'id')::bigint AND input.r->>'note_id' IS NOT NULL
RETURNING q.id, q.note_id;
"""
DUE = """
SELECT id, start_index, payload::text AS payload
FROM borgstack_cs_reply_queue
WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
ORDER BY id
LIMIT 100;
"""
BEFORE_SEND = r"""
// Replies of this number already waiting in the queue go first: this one waits behind them.
const reply = $('Route reply').first().json.reply;
const ahead = Number($json.ahead ?? 0) || 0;
return [{ json: { next: ahead > 0 ? 'queue' : 'count', reason: 'behind' } }];
"""
WITHIN_LIMIT = r"""
// The Redis node answers {<key>: <count in this window, this reply included>}.
const count = Number(Object.values($json)[0]);
return [{ json: { next: count <= Number('@@rate_limit@@') ? 'send' : 'queue', reason: 'limiter', count } }];
"""
RATE_KEY = ("'borgstack:cs:rate:' + $('Route reply').first().json.reply.instance + ':' "
            "+ Math.floor(Date.now() / 1000 / Number('@@rate_window@@')) * Number('@@rate_window@@')")
QUEUE_ROW = r"""
// What waits in the queue: the original Chatwoot event and the item of the reply to start from, until when.
const reply = $('Route reply').first().json.reply;
const fromCall = $json.last !== undefined && $json.state !== undefined;
const now = Date.now() / 1000;
const window = Number('@@rate_window@@');
let retryAt;
let reason;
let index;
if (fromCall) {
  // Evolution API answered 429: WhatsApp's rate limit. Again after Retry-After (seconds or a date), else the default.
  reason = '429';
  index = $json.state.index;
  const header = $json.last.headers?.['retry-after'];
  const seconds = Number(header);
  retryAt = now + Number('@@queue_retry@@');
  if (header !== undefined && Number.isFinite(seconds)) retryAt = now + Math.max(seconds, 1);
  else if (header && Number.isFinite(Date.parse(header))) retryAt = Math.max(Date.parse(header) / 1000, now + 1);
} else {
  reason = $json.reason;
  index = Number(reply.queue?.index ?? 0) || 0;
  // The limiter's window ends: the next one starts then (behind others: the queue keeps them in order anyway).
  retryAt = reason === 'limiter' ? (Math.floor(now / window) + 1) * window : now + 1;
}
const payload = { ...$('Route reply').first().json.payload };
delete payload.borgstack_queue;
return [{ json: { row: JSON.stringify({
  queue_id: reply.queue?.id ?? null, number: reply.number, conversation_id: reply.conversationId,
  account_id: reply.accountId, payload, start_index: index, reason, retry_at: retryAt,
}), reason } }];
"""
NOTE_QUEUED = r"""
// First time in the queue: a private note for the agents in the conversation (none when queued again).
const reply = $('Route reply').first().json.reply;
if (!$json.created || !reply.conversationId) return [];
const why = $('Queue row').first().json.reason === '429'
  ? 'o WhatsApp recusou o envio por excesso de mensagens (limite de taxa)'
  : `o limite de @@rate_limit@@ respostas a cada @@rate_window@@ s para este número foi atingido`;
const path = `/api/v1/accounts/${reply.accountId ?? '@@chatwoot_account_id@@'}/conversations/${reply.conversationId}/messages`;
return [{ json: { request: { method: 'POST', path, url: '@@chatwoot_url@@' + path, body: {
  content: `Resposta na fila (fila ${$json.id}): ${why}. Ela será enviada ao cliente automaticamente, na ordem; `
    + 'não é preciso reenviar.',
  message_type: 'outgoing', private: true,
} } } }];
"""
QUEUE_OUTCOME = r"""
// A reply the queue sent again: delivered (the rest of the workflow succeeded) or failed (stored in the error table).
const reply = $('Route reply').first().json.reply;
if (!reply.queue) return [];
const outcome = $json.next === 'done' ? 'delivered' : 'failed';
return [{ json: { row: JSON.stringify({ id: reply.queue.id, outcome }), outcome } }];
"""
NOTE_DELIVERED = r"""
// Delivered from the queue: the agents' "waiting" note is cleared (Chatwoot's DELETE of a message: it stays in the
// conversation as "deleted"). A failed reply keeps its note: the error table and its replay take over.
if ($('Queue outcome').first().json.outcome !== 'delivered' || !$json.conversation_id || !$json.note_id) return [];
const path = `/api/v1/accounts/${$json.account_id ?? '@@chatwoot_account_id@@'}/conversations/${$json.conversation_id}`
  + `/messages/${$json.note_id}`;
return [{ json: { request: { method: 'DELETE', path, url: '@@chatwoot_url@@' + path } } }];
"""


def extend_replies(b, wf, nodes, conns):
    """Add the limiter and the queue to the Chatwoot -> WhatsApp workflow (``nodes``/``conns`` of n8n-workflows.py,
    changed in place): Route reply -> queue ahead? -> limiter -> Start; 429 and "over" -> the queue."""
    nodes += [
        b.pg(wf, "Ensure queue table", QUEUE_TABLE, None, (440, 200)),
        b.code(wf, "Queue key", "return [{ json: { row: JSON.stringify({ number: $('Route reply').first().json.reply.number, "
               "queue_id: $('Route reply').first().json.reply.queue?.id ?? null }) } }];", (440, 400)),
        b.pg(wf, "Replies ahead", AHEAD, "$('Queue key').first().json.row", (660, 400)),
        b.code(wf, "Before send", BEFORE_SEND, (880, 400)),
        b.switch(wf, "Ahead", 2, "$json.next === 'queue' ? 1 : 0", (1100, 400)),
        b.redis(wf, "Count reply", "incr", RATE_KEY, (1320, 400), ttl=3600),
        b.code(wf, "Within limit", WITHIN_LIMIT, (1540, 400)),
        b.switch(wf, "Limiter", 2, "$json.next === 'queue' ? 1 : 0", (1760, 400)),
        # A first 429 with a short Retry-After is waited for in the execution (Judge); a longer one or a second 429
        # goes to the queue.
        b.switch(wf, "Retry or queue", 2, "Number($json.last?.status) === 429 && ($json.attempt >= 2 || "
                 f"$json.waitSeconds > {INLINE_429_MAX}) ? 1 : 0", (1540, 200)),
        b.code(wf, "Queue row", QUEUE_ROW, (1980, 600)),
        b.pg(wf, "Store queued", STORE_QUEUED, "$('Queue row').first().json.row", (2200, 600)),
        b.code(wf, "Note queued", NOTE_QUEUED, (2420, 600)),
        b.http(wf, "Post queued note", "chatwoot", (2640, 600)),
        b.pg(wf, "Keep note id", KEEP_NOTE, "JSON.stringify({ id: $('Store queued').first().json.id, "
             "note_id: Number.isInteger($json.body?.id) ? $json.body.id : null })", (2860, 600)),
        b.code(wf, "Queue outcome", QUEUE_OUTCOME, (2200, -400)),
        b.pg(wf, "Mark queue row", MARK_QUEUE, "$('Queue outcome').first().json.row", (2420, -400)),
        b.code(wf, "Note delivered", NOTE_DELIVERED, (2640, -400)),
        b.http(wf, "Clear queued note", "chatwoot", (2860, -400)),
    ]
    conns["Route reply"] = [["Ensure queue table"]]
    conns.update({
        "Ensure queue table": [["Queue key"]],
        "Queue key": [["Replies ahead"]],
        "Replies ahead": [["Before send"]],
        "Before send": [["Ahead"]],
        "Ahead": [["Count reply"], ["Queue row"]],
        "Count reply": [["Within limit"]],
        "Within limit": [["Limiter"]],
        "Limiter": [["Start"], ["Queue row"]],
        "Retry or queue": [["Back off"], ["Queue row"]],
        "Queue row": [["Store queued"]],
        "Store queued": [["Note queued"]],
        "Note queued": [["Post queued note"]],
        "Post queued note": [["Keep note id"]],
        "Queue outcome": [["Mark queue row"]],
        "Mark queue row": [["Note delivered"]],
        "Note delivered": [["Clear queued note"]],
        "Store error": [["Queue outcome"]],
    })
    conns["Outcome"] = [["Advance"], ["Retry or queue"], ["Error row"]]
    nxt = conns["Next"]
    conns["Next"] = [nxt[0], ["Queue outcome"], nxt[2]]
    hook = b.webhook(wf, "Queue webhook", "borgstack/chatwoot-queued", (0, 200))
    # Answered when the reply's execution ends: the queue sends its rows one after the other, in order.
    hook["parameters"]["responseMode"] = "lastNode"
    nodes.append(hook)
    conns["Queue webhook"] = [["Route reply"]]


def queue_workflow(b):
    wf = QUEUE
    schedule = schedule_node(b, wf, "@@queue_cron@@")
    hook = b.webhook(wf, "Queue run webhook", "borgstack/reply-queue", (0, 200))
    hook["parameters"]["responseMode"] = "lastNode"
    resend = b.node(wf, "Send again", "n8n-nodes-base.httpRequest", 4.2, {
        "method": "POST", "url": "=http://127.0.0.1:@@n8n_port@@/webhook/borgstack/chatwoot-queued",
        "sendBody": True, "specifyBody": "json",
        "jsonBody": ("={{ JSON.stringify({ ...JSON.parse($json.payload), borgstack_queue: { id: Number($json.id), "
                     "index: Number($json.start_index) } }) }}"),
        "options": {"response": {"response": {"fullResponse": True, "neverError": True}}, "timeout": 120000}
    }, (1320, 200))
    nodes = [
        schedule, hook,
        b.code(wf, "Queue request", "if ($json.headers?.['x-forwarded-for']) return [];\nreturn [{ json: {} }];",
               (220, 200)),
        *lease_nodes(b, wf, "reply-queue", QUEUE_LEASE, (220, -200)),
        b.pg(wf, "Ensure queue table", QUEUE_TABLE, None, (660, 0)),
        b.pg(wf, "Due replies", DUE, None, (880, 0)),
        b.switch(wf, "Any", 2, "$json.id ? 0 : 1", (1100, 0)),
        one_at_a_time(b, wf, "Send loop", (1320, 0)),
        resend,
        b.code(wf, "Count", "return [{ json: { sent: $('Due replies').all().filter((i) => i.json.id).length } }];",
               (1540, 0)),
        release_node(b, wf, "reply-queue", QUEUE_LEASE, (1760, 0)),
        b.code(wf, "Done", "return [{ json: { queue: true, ...$('Count').first().json } }];", (1980, 0)),
    ]
    # Due replies answers one empty item when nothing is due (alwaysOutputData): straight to the end.
    nodes[7]["alwaysOutputData"] = True
    conns = {
        "Every interval": [["Ensure lease table"]],
        "Queue run webhook": [["Queue request"]],
        "Queue request": [["Ensure lease table"]],
        "Ensure lease table": [["Take lease"]],
        "Take lease": [["Lease taken"]],
        "Lease taken": [["Ensure queue table"]],
        "Ensure queue table": [["Due replies"]],
        "Due replies": [["Any"]],
        "Any": [["Send loop"], ["Count"]],
        "Send loop": [["Count"], ["Send again"]],
        "Send again": [["Send loop"]],
        "Count": [["Release lease"]],
        "Release lease": [["Done"]],
    }
    description = ("Every interval (or POST /webhook/borgstack/reply-queue): replies held back by the per-number "
                   "limiter or refused with 429 are sent again, oldest first, through the Chatwoot -> WhatsApp "
                   "workflow.")
    return quiet(b.workflow(wf, "BorgStack: rate-limit queue of replies", nodes, conns, description))


def quiet(doc):
    """A scheduled workflow keeps its failed executions only (not one saved run every interval)."""
    doc["settings"]["saveDataSuccessExecution"] = "none"
    return doc
