// SPDX-License-Identifier: GPL-3.0-or-later
// Installs BorgStack's shipped n8n workflows and the credentials they use, from inside the n8n container (node, n8n's
// own libraries and its CLI are there; nothing is published). It never uses the owner's password: the operator may
// change that at any time. Read -> plan -> apply:
//   key    the play's own public-API key (user_api_keys row BorgStackPlayApiKey, label "BorgStack play", the owner's,
//          shown in Settings > n8n API) is read from n8n's database and must verify with the secret n8n signs keys
//          with; when it is missing, belongs to someone else or does not verify it is signed again and written (a
//          check only reports it). The key is never printed nor kept anywhere else.
//   read   credentials straight from n8n's database (name, type, and the data decrypted with the instance's
//          encryption key: no login, no CLI); workflows through the public API (/api/v1) with that key - or, in a
//          check before the key exists, from the database
//   plan   a credential is (re)imported when it is missing, or its name, type or fingerprint (a SHA-256 of its type
//          and data, kept in the credential's data as the extra field borgstackFingerprint) differs; a workflow when
//          it is missing or its name, nodes, connections, settings or version marker (meta.borgstack) differ from
//          the shipped file (an edit in the editor counts as a difference); then every shipped workflow must be active
//   apply  only when not a check: deactivate a workflow about to be replaced (its production webhooks go away
//          cleanly), `n8n import:credentials` / `n8n import:workflow` (the CLI keeps the fixed ids; importing leaves
//          workflows inactive), then activate them through the public API of the running instance (no restart).
// Workflows whose ids are in "keep" are neither read nor written: the operator owns them. Workflows that are not
// shipped are never touched.
// Reads one JSON object on stdin:
//   {"port", "check", "wait", "credentials": [{id, name, type, data}], "workflows": [<workflow JSON>],
//    "settings": {<@@name@@ value>}, "keep": [<id>]}
// Prints one JSON line {"changed": bool, "actions": [...]} (names and ids only); exits 1 with a reason otherwise.
// No secret is ever printed: credential data goes to the n8n CLI only, through a file in a private temporary
// directory (mode 0600, the container's user node) removed right after the import.
// request() and ready() come from n8n_http.js, which the role puts before this file.
const crypto = require('crypto');
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

// n8n's own copies of the PostgreSQL client and of the JWT library it signs API keys with.
const n8nRequire = require('module').createRequire(fs.realpathSync('/usr/local/bin/n8n'));

const KEY_ID = 'BorgStackPlayApiKey';
const KEY_LABEL = 'BorgStack play';
// n8n's community edition does not enforce an API key's scopes, but its UI lists them: what the play does.
const KEY_SCOPES = ['workflow:read', 'workflow:update', 'workflow:activate', 'workflow:deactivate'];
const KEY_CLAIMS = { issuer: 'n8n', audience: 'public-api' };
// The public API's path (N8N_PUBLIC_API_ENDPOINT, "api" unless the operator moved it).
const API = `/${process.env.N8N_PUBLIC_API_ENDPOINT || 'api'}/v1`;

// --- n8n's settings, as n8n itself reads them ------------------------------------------------------------------------
// A VAR or VAR_FILE setting (the file read whole, as @n8n/config does).
function setting(name) {
  if (process.env[name]) return process.env[name];
  if (process.env[`${name}_FILE`]) return fs.readFileSync(process.env[`${name}_FILE`], 'utf8');
  return undefined;
}

function encryptionKey() {
  const key = process.env.N8N_ENCRYPTION_KEY;
  if (key) return key;
  const folder = path.join(process.env.N8N_USER_FOLDER || os.homedir(), '.n8n');
  return JSON.parse(fs.readFileSync(path.join(folder, 'config'), 'utf8')).encryptionKey;
}

// n8n's JwtService: N8N_USER_MANAGEMENT_JWT_SECRET, else the SHA-256 (hex) of every other character of the key.
function jwtSecret(key) {
  const configured = setting('N8N_USER_MANAGEMENT_JWT_SECRET');
  if (configured) return configured;
  let base = '';
  for (let i = 0; i < key.length; i += 2) base += key[i];
  return crypto.createHash('sha256').update(base).digest('hex');
}

// n8n-core's Cipher (OpenSSL's salted format: EVP_BytesToKey with MD5, AES-256-CBC).
function decrypt(data, key) {
  const input = Buffer.from(data, 'base64');
  const salt = input.subarray(8, 16);
  const password = Buffer.concat([Buffer.from(key, 'binary'), salt]);
  const hash1 = crypto.createHash('md5').update(password).digest();
  const hash2 = crypto.createHash('md5').update(Buffer.concat([hash1, password])).digest();
  const iv = crypto.createHash('md5').update(Buffer.concat([hash2, password])).digest();
  const decipher = crypto.createDecipheriv('aes-256-cbc', Buffer.concat([hash1, hash2]), iv);
  return Buffer.concat([decipher.update(input.subarray(16)), decipher.final()]).toString('utf8');
}

async function database() {
  if (process.env.DB_TYPE !== 'postgresdb') {
    throw new Error(`n8n's database is ${process.env.DB_TYPE || 'sqlite'}: this script reads PostgreSQL only`);
  }
  const { Client } = n8nRequire('pg');
  const schema = process.env.DB_POSTGRESDB_SCHEMA || 'public';
  const client = new Client({
    host: process.env.DB_POSTGRESDB_HOST || 'localhost',
    port: Number(process.env.DB_POSTGRESDB_PORT || 5432),
    database: process.env.DB_POSTGRESDB_DATABASE || 'n8n',
    user: process.env.DB_POSTGRESDB_USER || 'postgres',
    password: setting('DB_POSTGRESDB_PASSWORD') || '',
    options: `-c search_path=${schema}`,
    connectionTimeoutMillis: 30000,
  });
  await client.connect();
  const prefix = process.env.DB_TABLE_PREFIX || '';
  const table = (name) => `"${prefix}${name}"`;
  return { client, table, query: async (text, values) => (await client.query(text, values)).rows };
}

// --- the play's API key ----------------------------------------------------------------------------------------------
function verifies(jwt, secret, apiKey, ownerId) {
  if (typeof apiKey !== 'string' || apiKey.startsWith('n8n_api_')) return false;
  try {
    return jwt.verify(apiKey, secret, { ...KEY_CLAIMS, algorithms: ['HS256'] }).sub === ownerId;
  } catch (error) {
    return false;
  }
}

// Returns {apiKey (usable now, or null), action (what must change, or null), write (applies it)}.
async function playKey(db, secret) {
  const jwt = n8nRequire('jsonwebtoken');
  const owners = await db.query(`SELECT id FROM ${db.table('user')} WHERE "roleSlug" = 'global:owner'`);
  if (owners.length !== 1) {
    throw new Error(`n8n has ${owners.length} owner accounts, not one: its owner is set up first (tasks/owner.yml)`);
  }
  const ownerId = owners[0].id;
  const rows = await db.query(
    `SELECT "userId", label, "apiKey", scopes FROM ${db.table('user_api_keys')} WHERE id = $1`, [KEY_ID]);
  const row = rows[0];
  const usable = row !== undefined && row.userId === ownerId && verifies(jwt, secret, row.apiKey, ownerId);
  if (usable && Array.isArray(row.scopes)) return { apiKey: row.apiKey, action: null };
  const action = `${row === undefined ? 'create' : 'renew'} the play's n8n API key (${KEY_ID}, Settings > n8n API)`;
  return {
    apiKey: usable ? row.apiKey : null,
    action,
    write: async () => {
      // The label is unique per user: the one the row has (the operator may rename it), else the first free one
      // (an operator's own key may already be called "BorgStack play").
      const labels = new Set((await db.query(
        `SELECT label FROM ${db.table('user_api_keys')} WHERE "userId" = $1 AND id <> $2`, [ownerId, KEY_ID]))
        .map((r) => r.label));
      let label = row !== undefined && row.userId === ownerId ? row.label : KEY_LABEL;
      for (let n = 2; labels.has(label); n += 1) label = `${KEY_LABEL} ${n}`;
      // As n8n signs its own keys (PublicApiKeyService.generateApiKey): no expiry.
      const apiKey = usable ? row.apiKey
        : jwt.sign({ sub: ownerId, iss: KEY_CLAIMS.issuer, aud: KEY_CLAIMS.audience }, secret);
      await db.query(
        `INSERT INTO ${db.table('user_api_keys')} (id, "userId", label, "apiKey", scopes) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET "userId" = EXCLUDED."userId", label = EXCLUDED.label,
           "apiKey" = EXCLUDED."apiKey", scopes = EXCLUDED.scopes, "updatedAt" = CURRENT_TIMESTAMP(3)`,
        [KEY_ID, ownerId, label, apiKey, JSON.stringify(KEY_SCOPES)]);
      return apiKey;
    },
  };
}

// --- workflows and credentials ---------------------------------------------------------------------------------------
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
      // A list or dict (the WhatsApp numbers) goes in as a JSON literal of the workflow's code.
      const setting = settings[name];
      return setting !== null && typeof setting === 'object' ? JSON.stringify(setting) : String(setting);
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

// The stored fingerprint of each shipped credential present in the database (null when its data cannot be read).
async function storedCredentials(db, ids, key) {
  const rows = await db.query(
    `SELECT id, name, type, data FROM ${db.table('credentials_entity')} WHERE id = ANY($1)`, [ids]);
  return new Map(rows.map((row) => {
    let stored = null;
    try {
      stored = JSON.parse(decrypt(row.data, key)).borgstackFingerprint || null;
    } catch (error) {
      stored = null;
    }
    return [row.id, { name: row.name, type: row.type, fingerprint: stored }];
  }));
}

// A workflow through the public API (null when missing).
async function apiWorkflow(port, apiKey, id) {
  const answer = await request(port, 'GET', `${API}/workflows/${encodeURIComponent(id)}`,
    { headers: { 'X-N8N-API-KEY': apiKey } });
  let body;
  try {
    body = JSON.parse(answer.body);
  } catch (error) {
    // The editor's page instead of the API's JSON: n8n runs without its public API.
    throw new Error(`GET ${API}/workflows/${id} answered ${answer.status} without JSON: n8n's public API is off `
      + '(remove N8N_PUBLIC_API_DISABLED from n8n_env_extra and n8n_secret_env_extra)');
  }
  if (answer.status === 404) return null;
  if (answer.status !== 200) {
    throw new Error(`GET ${API}/workflows/${id} answered ${answer.status}: ${answer.body.slice(0, 200)}`);
  }
  return body;
}

// The same from the database: only for a check made before the play's key exists.
async function dbWorkflow(db, id) {
  const rows = await db.query(
    `SELECT name, nodes, connections, settings, meta, active FROM ${db.table('workflow_entity')} WHERE id = $1`, [id]);
  return rows[0] || null;
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
async function setActive(port, apiKey, workflow, active) {
  const verb = active ? 'activate' : 'deactivate';
  for (let attempt = 1; ; attempt += 1) {
    try {
      const answer = await request(port, 'POST', `${API}/workflows/${encodeURIComponent(workflow.id)}/${verb}`,
        { headers: { 'X-N8N-API-KEY': apiKey } });
      if (answer.status !== 200) {
        throw new Error(`${verb.replace(/e$/, '')}ing workflow ${workflow.id} (${workflow.name}) answered `
          + `${answer.status}: ${answer.body.slice(0, 300)}`);
      }
      return;
    } catch (error) {
      if (attempt >= 3 || !/socket hang up|ECONNRESET|EPIPE|no answer/.test(error.message)) throw error;
      await new Promise((resolve) => { setTimeout(resolve, 2000 * attempt); });
    }
  }
}

async function sync(input, db) {
  const actions = [];
  const keep = new Set(input.keep || []);
  const key = encryptionKey();
  const play = await playKey(db, jwtSecret(key));
  if (play.action) actions.push(play.action);
  // The key is part of the reading: outside a check it is healed first, so the workflows are read through it.
  let { apiKey } = play;
  if (play.action && !input.check) apiKey = await play.write();

  const credentials = [];
  const stored = await storedCredentials(db, input.credentials.map((c) => c.id), key);
  for (const credential of input.credentials) {
    const wanted = { ...credential, data: { ...credential.data, borgstackFingerprint: fingerprint(credential) } };
    const current = stored.get(credential.id);
    const same = current !== undefined && current.name === credential.name && current.type === credential.type
      && current.fingerprint === wanted.data.borgstackFingerprint;
    if (!same) {
      credentials.push(wanted);
      actions.push(`${current === undefined ? 'create' : 'update'} credential ${credential.id} (${credential.name})`);
    }
  }

  const replace = [];
  const activate = [];
  for (const workflow of input.workflows.map((shipped) => substitute(shipped, input.settings || {}))) {
    if (keep.has(workflow.id)) {
      actions.push(`leave workflow ${workflow.id} (${workflow.name}) alone: listed in n8n_workflows_keep`);
      continue;
    }
    const current = apiKey ? await apiWorkflow(input.port, apiKey, workflow.id) : await dbWorkflow(db, workflow.id);
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
  if (input.check || (credentials.length === 0 && replace.length === 0 && activate.length === 0)) {
    return { changed, actions };
  }

  for (const { workflow, wasActive } of replace) {
    if (wasActive) await setActive(input.port, apiKey, workflow, false);
  }
  if (credentials.length > 0) cli('import:credentials', credentials);
  if (replace.length > 0) {
    cli('import:workflow', replace.map(({ workflow }) => ({ ...workflow, active: false })));
  }
  for (const workflow of activate) await setActive(input.port, apiKey, workflow, true);
  return { changed, actions };
}

async function main() {
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  await ready(input.port, input.wait);
  const db = await database();
  try {
    return await sync(input, db);
  } finally {
    await db.client.end();
  }
}

main().then(
  (result) => { process.stdout.write(`${JSON.stringify(result)}\n`); },
  (error) => { process.stderr.write(`${error.message}\n`); process.exit(1); },
);
