// SPDX-License-Identifier: GPL-3.0-or-later
// Installs BorgStack's shipped n8n workflows and the credentials they use, from inside the n8n container (node and
// the n8n CLI are there; nothing is published). Read -> plan -> apply:
//   read   log in to n8n's internal REST API as the owner; read each shipped credential and workflow by its fixed id
//   plan   a credential is (re)imported when it is missing or its fingerprint (a SHA-256 of its type and data,
//          stored in the credential as the extra field borgstackFingerprint) differs; a workflow when it is missing
//          or its name, nodes, connections, settings or version marker (meta.borgstack) differ from the shipped
//          file (an edit in the editor counts as a difference); then every shipped workflow must be active
//   apply  only when not a check: deactivate a workflow about to be replaced (its production webhooks go away
//          cleanly), `n8n import:credentials` / `n8n import:workflow` from stdin (the CLI keeps the fixed ids; the
//          internal API would give new ones; importing leaves workflows inactive), then activate them through the
//          REST API of the running instance (no restart).
// Workflows whose ids are in "keep" are neither read nor written: the operator owns them. Workflows that are not
// shipped are never touched.
// Reads one JSON object on stdin:
//   {"port", "check", "wait", "owner": {"email", "password"}, "credentials": [{id, name, type, data}],
//    "workflows": [<workflow JSON>], "settings": {<@@name@@ value>}, "keep": [<id>]}
// Prints one JSON line {"changed": bool, "actions": [...]} (names and ids only); exits 1 with a reason otherwise.
// No secret is ever printed: credential data goes to the n8n CLI only, through a
// file in a private temporary directory (mode 0600, the container's user node) removed right after the import.
'use strict';
const http = require('http');
const crypto = require('crypto');
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

function request(port, method, path, body, cookie) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = {};
    if (data) Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': data.length });
    if (cookie) headers.Cookie = cookie;
    const req = http.request({ host: '127.0.0.1', port, method, path, timeout: 60000, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString(),
      }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 60 s`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

async function ready(port, seconds) {
  const deadline = Date.now() + seconds * 1000;
  let last = '';
  for (;;) {
    try {
      const answer = await request(port, 'GET', '/rest/settings');
      if (answer.status === 200) return;
      last = `GET /rest/settings answered ${answer.status}`;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline) throw new Error(`n8n not ready after ${seconds} s (${last})`);
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
  }
}

async function login(port, owner) {
  // n8n allows 5 logins a minute from one address (express-rate-limit on /rest/login): a rerun right after other
  // logins waits for the window (Retry-After) instead of failing, for at most 90 s.
  const deadline = Date.now() + 90000;
  let answer;
  for (;;) {
    answer = await request(port, 'POST', '/rest/login', { emailOrLdapLoginId: owner.email, password: owner.password });
    if (answer.status !== 429 || Date.now() > deadline) break;
    const wait = Math.min(Math.max(Number(answer.headers['retry-after']) || 10, 1), 60);
    await new Promise((resolve) => { setTimeout(resolve, wait * 1000); });
  }
  if (answer.status !== 200) {
    throw new Error(`logging in as the owner (${owner.email}) answered ${answer.status}: ${answer.body.slice(0, 200)}`);
  }
  const cookie = (answer.headers['set-cookie'] || []).map((c) => c.split(';')[0]).find((c) => c.startsWith('n8n-auth='));
  if (!cookie) throw new Error('logging in as the owner gave no n8n-auth cookie');
  return cookie;
}

async function get(port, cookie, path) {
  const answer = await request(port, 'GET', path, undefined, cookie);
  if (answer.status === 404) return null;
  if (answer.status !== 200) throw new Error(`GET ${path} answered ${answer.status}: ${answer.body.slice(0, 200)}`);
  return JSON.parse(answer.body).data;
}

// Key order does not matter to n8n; it must not matter to the comparison either.
function canonical(value) {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical(value[key])]));
  }
  return value;
}

// The shipped files hold @@name@@ for the site's settings (addresses, account and inbox ids): filled in here.
function substitute(value, settings) {
  if (typeof value === 'string') {
    return value.replace(/@@([a-z0-9_]+)@@/g, (whole, name) => {
      if (!(name in settings)) throw new Error(`shipped workflow uses @@${name}@@, which the role does not set`);
      return String(settings[name]);
    });
  }
  if (Array.isArray(value)) return value.map((item) => substitute(item, settings));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, substitute(item, settings)]));
  }
  return value;
}

function fingerprint(credential) {
  return crypto.createHash('sha256').update(JSON.stringify(canonical({ type: credential.type, data: credential.data })))
    .digest('hex');
}

function shape(workflow) {
  return JSON.stringify(canonical({
    name: workflow.name,
    nodes: workflow.nodes,
    connections: workflow.connections,
    settings: workflow.settings || {},
    borgstack: (workflow.meta || {}).borgstack || null,
  }));
}

// The CLI reads a file only (not a pipe): a private directory, removed whatever happens.
function cli(command, input) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'borgstack-'));
  const file = path.join(dir, 'import.json');
  const args = [command, `--input=${file}`];
  let run;
  try {
    fs.writeFileSync(file, JSON.stringify(input), { mode: 0o600 });
    run = spawnSync('n8n', args, { encoding: 'utf8', timeout: 300000 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (run.status !== 0) {
    // The CLI's messages name files and ids, never the credential data it was given.
    const output = `${run.stdout || ''}${run.stderr || ''}`.trim().split('\n').slice(-5).join(' | ');
    throw new Error(`n8n ${args.join(' ')} failed (${run.status ?? run.error?.message}): ${output}`);
  }
}

// Right after an import the instance may be busy (a socket closed without answer): asked again, up to 3 times.
async function setActive(port, cookie, id, active) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await setActiveOnce(port, cookie, id, active);
    } catch (error) {
      if (attempt >= 3 || !/socket hang up|ECONNRESET|EPIPE|no answer/.test(error.message)) throw error;
      await new Promise((resolve) => { setTimeout(resolve, 2000 * attempt); });
    }
  }
}

async function setActiveOnce(port, cookie, id, active) {
  const current = await get(port, cookie, `/rest/workflows/${id}`);
  if (current === null) throw new Error(`workflow ${id} is missing after the import`);
  if (current.active === active) return;
  const answer = await request(port, 'PATCH', `/rest/workflows/${id}`,
    { active, versionId: current.versionId }, cookie);
  if (answer.status !== 200) {
    throw new Error(`${active ? 'activating' : 'deactivating'} workflow ${id} (${current.name}) answered `
      + `${answer.status}: ${answer.body.slice(0, 300)}`);
  }
}

async function main() {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  await ready(input.port, input.wait);
  const cookie = await login(input.port, input.owner);
  const actions = [];
  const keep = new Set(input.keep || []);

  const credentials = [];
  for (const credential of input.credentials) {
    const wanted = { ...credential, data: { ...credential.data } };
    wanted.data.borgstackFingerprint = fingerprint(credential);
    const current = await get(input.port, cookie, `/rest/credentials/${credential.id}?includeData=true`);
    const same = current !== null && current.name === credential.name && current.type === credential.type
      && (current.data || {}).borgstackFingerprint === wanted.data.borgstackFingerprint;
    if (!same) {
      credentials.push(wanted);
      actions.push(`${current === null ? 'create' : 'update'} credential ${credential.id} (${credential.name})`);
    }
  }

  const replace = [];
  const activate = [];
  for (const workflow of input.workflows.map((shipped) => substitute(shipped, input.settings || {}))) {
    if (keep.has(workflow.id)) {
      actions.push(`leave workflow ${workflow.id} (${workflow.name}) alone: listed in n8n_workflows_keep`);
      continue;
    }
    const current = await get(input.port, cookie, `/rest/workflows/${workflow.id}`);
    if (current === null || shape(current) !== shape(workflow)) {
      replace.push({ workflow, wasActive: current !== null && current.active });
      activate.push(workflow);
      const version = ((workflow.meta || {}).borgstack || {}).version;
      actions.push(`${current === null ? 'create' : 'replace'} workflow ${workflow.id} (${workflow.name}, version ${version})`);
    } else if (!current.active) {
      activate.push(workflow);
      actions.push(`activate workflow ${workflow.id} (${workflow.name})`);
    }
  }

  const changed = actions.some((action) => !action.startsWith('leave'));
  if (input.check || !changed) return { changed, actions };

  for (const { workflow, wasActive } of replace) {
    if (wasActive) await setActive(input.port, cookie, workflow.id, false);
  }
  if (credentials.length > 0) cli('import:credentials', credentials);
  if (replace.length > 0) {
    cli('import:workflow', replace.map(({ workflow }) => ({ ...workflow, active: false })));
  }
  for (const workflow of activate) await setActive(input.port, cookie, workflow.id, true);
  return { changed, actions };
}

main().then(
  (result) => { process.stdout.write(`${JSON.stringify(result)}\n`); },
  (error) => { process.stderr.write(`${error.message}\n`); process.exit(1); },
);
