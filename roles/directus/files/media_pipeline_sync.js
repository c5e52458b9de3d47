// SPDX-License-Identifier: GPL-3.0-or-later
// Sets up Directus' side of the media pipeline (docs/directus-fileflows.md) from inside the Directus container, over
// its own REST API on 127.0.0.1 (nothing published, no secret on a command line). Read -> plan -> apply:
//   token    the play talks to Directus as its own account (play_email, no password, admin role) with a static
//            token the play owns (registry secret directus_play_token, shared with n8n). When that token does not
//            work yet (first run, or the token was rotated), the account is created or its token set with the
//            administrator's first password; after that the administrator's password is never used again - the
//            operator may change it.
//   folders  the source folder and the processed folder (top level, by name) exist: created when missing.
//   flow     the flow "BorgStack: mídia" (event trigger, action files.upload) with two operations: a condition (the
//            upload is in the source folder) resolving to a request (POST to n8n's webhook with the file's id and
//            the processed folder's id). Any difference from what is wanted (an edit in the app counts) and the
//            flow is deleted and created again; with "enabled" false it is deleted. Folders are never deleted.
// Check mode ("check": true) only reads. Reads one JSON object on stdin:
//   {port, check, wait, enabled, token, play_email, admin_email, admin_password, source_folder, processed_folder,
//    webhook_url}
// Prints one JSON line {"changed": bool, "actions": [...]}; exits 1 with a reason. No secret is ever printed.
'use strict';
const fs = require('fs');

const FLOW_NAME = 'BorgStack: mídia';
const ZERO = '00000000-0000-0000-0000-000000000000';
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const base = `http://127.0.0.1:${input.port}`;
const actions = [];

async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch (error) { json = null; }
  return { status: res.status, json, text };
}

function data(answer, what) {
  if (answer.status >= 300) throw new Error(`${what}: Directus answered ${answer.status} ${answer.text.slice(0, 300)}`);
  return answer.json ? answer.json.data : null;
}

const enc = encodeURIComponent;

// Directus' API answers (/server/ping): what this script reads and writes lives in its database. Not
// /server/health, which also checks the file storage: with SeaweedFS down, a check run waited the whole timeout
// for an answer it does not need. Check mode looks at a running Directus or reports; it does not wait for a start.
async function ready() {
  const seconds = input.check ? Math.min(Number(input.wait || 300), 30) : Number(input.wait || 300);
  const deadline = Date.now() + seconds * 1000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const answer = await api('GET', '/server/ping');
      if (answer.status === 200) return;
      last = `answered ${answer.status}`;
    } catch (error) { last = error.message; }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  throw new Error(`Directus' API did not answer in ${seconds} s (${last})`);
}

// The play's token, made to work if it does not: null in a check where it does not work yet.
async function playToken() {
  const me = await api('GET', '/users/me?fields=id,email', { token: input.token });
  if (me.status === 200 && me.json.data && me.json.data.email === input.play_email) return input.token;
  // Off, and the play never had a working token here: it never created a flow either - nothing to remove.
  if (!input.enabled) return null;
  actions.push(`set the play's token on the Directus account ${input.play_email}`);
  if (input.check) return null;
  const login = await api('POST', '/auth/login', { body: { email: input.admin_email, password: input.admin_password } });
  if (login.status !== 200) {
    throw new Error(`the play's Directus account ${input.play_email} has no working token, and the administrator's `
      + `first password (services/directus/admin-password) no longer logs in, as after a change in the app: in Directus, `
      + `give ${input.play_email} (create it with the Administrator role if missing) the token from `
      + 'borgstack_secret_overrides.directus_play_token, or set that override to a token it already has '
      + `(Directus answered the login ${login.status} ${login.text.slice(0, 200)}; the play's token got `
      + `${me.status})`);
  }
  const admin = login.json.data.access_token;
  const role = data(await api('GET', '/users/me?fields=role', { token: admin }), 'read the administrator').role;
  const found = data(await api('GET', `/users?filter[email][_eq]=${enc(input.play_email)}&fields=id`, { token: admin }),
    'look for the play account');
  const account = { token: input.token, status: 'active', role };
  if (found.length) {
    data(await api('PATCH', `/users/${found[0].id}`, { token: admin, body: account }), 'set the play token');
  } else {
    data(await api('POST', '/users', { token: admin, body: { ...account, email: input.play_email,
      first_name: 'BorgStack', last_name: 'play' } }), 'create the play account');
  }
  await api('POST', '/auth/logout', { token: admin, body: { mode: 'json' } });
  return input.token;
}

async function folder(token, name) {
  const found = data(await api('GET', `/folders?filter[name][_eq]=${enc(name)}&filter[parent][_null]=true&fields=id`,
    { token }), `look for the folder ${name}`);
  if (found.length) return found[0].id;
  actions.push(`create the folder ${name}`);
  if (input.check) return ZERO;
  return data(await api('POST', '/folders', { token, body: { name } }), `create the folder ${name}`).id;
}

// Order-independent JSON of a value (object keys sorted), to compare what Directus holds with what is wanted.
function canon(value) {
  if (Array.isArray(value)) return `[${value.map(canon).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canon(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function wanted(source, processed) {
  return {
    flow: { name: FLOW_NAME, status: 'active', trigger: 'event', accountability: 'all', icon: 'movie',
      description: 'BorgStack: envia ao n8n (e ao FileFlows) cada arquivo enviado à pasta de mídia. Gerenciado pelo play.',
      options: { type: 'action', scope: ['files.upload'] } },
    condition: { key: 'na_pasta_de_midia', name: 'Na pasta de mídia', type: 'condition', position_x: 19, position_y: 1,
      options: { filter: { $trigger: { payload: { folder: { _eq: source } } } } } },
    request: { key: 'enviar_ao_n8n', name: 'Enviar ao n8n', type: 'request', position_x: 37, position_y: 1,
      options: { method: 'POST', url: input.webhook_url, headers: [{ header: 'Content-Type', value: 'application/json' }],
        body: JSON.stringify({ file: '{{$trigger.key}}', processed_folder: processed }) } },
  };
}

function pick(object, keys) { return Object.fromEntries(keys.map((k) => [k, object ? object[k] : undefined])); }

function same(current, want) {
  if (!current) return false;
  const flowKeys = Object.keys(want.flow);
  const opKeys = ['key', 'name', 'type', 'options'];
  const ops = current.operations || [];
  const condition = ops.find((o) => o.id === current.operation);
  const request = condition && ops.find((o) => o.id === condition.resolve);
  return ops.length === 2 && canon(pick(current, flowKeys)) === canon(want.flow)
    && canon(pick(condition, opKeys)) === canon(pick(want.condition, opKeys))
    && canon(pick(request, opKeys)) === canon(pick(want.request, opKeys))
    && !condition.reject && request && !request.resolve && !request.reject;
}

async function main() {
  await ready();
  const token = await playToken();
  if (!token) {
    if (input.enabled) actions.push(`create the folders and the flow "${FLOW_NAME}"`);
    return;
  }
  const found = data(await api('GET', `/flows?filter[name][_eq]=${enc(FLOW_NAME)}&fields=*,operations.*`, { token }),
    'read the flows');
  if (!input.enabled) {
    for (const flow of found) {
      actions.push(`delete the flow "${FLOW_NAME}" (the media pipeline is off)`);
      if (!input.check) data(await api('DELETE', `/flows/${flow.id}`, { token }), 'delete the flow');
    }
    return;
  }
  const source = await folder(token, input.source_folder);
  const processed = await folder(token, input.processed_folder);
  const want = wanted(source, processed);
  if (found.length === 1 && same(found[0], want)) return;
  actions.push(found.length ? `replace the flow "${FLOW_NAME}" (it differs from the play's)` : `create the flow "${FLOW_NAME}"`);
  if (input.check) return;
  for (const flow of found) data(await api('DELETE', `/flows/${flow.id}`, { token }), 'delete the old flow');
  const flow = data(await api('POST', '/flows', { token, body: want.flow }), 'create the flow');
  const request = data(await api('POST', '/operations', { token, body: { ...want.request, flow: flow.id } }),
    'create the request operation');
  const condition = data(await api('POST', '/operations', { token, body: { ...want.condition, flow: flow.id,
    resolve: request.id } }), 'create the condition operation');
  data(await api('PATCH', `/flows/${flow.id}`, { token, body: { operation: condition.id } }), 'link the flow');
}

main().then(() => {
  process.stdout.write(`${JSON.stringify({ changed: actions.length > 0, actions })}\n`);
}).catch((error) => {
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
});
