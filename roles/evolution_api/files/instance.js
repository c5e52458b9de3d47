// SPDX-License-Identifier: GPL-3.0-or-later
// Creates the WhatsApp instance the n8n workflows send through, once: run inside the Evolution container (Node 20,
// global fetch) by tasks/instance.yml with {port, key, instance, check, wait} on stdin. Prints {"state": "present" |
// "created" | "would_create"}; on failure exits 1 with a message naming the step and Evolution's answer (never the
// key). API of Evolution 2.2.3 (src/api/routes/instance.router.ts, src/api/guards/instance.guard.ts):
//   GET  /instance/fetchInstances?instanceName=<n>  header apikey  -> 200 [..] | 404 when the instance does not exist
//   POST /instance/create {instanceName, integration, qrcode}     -> 201 | 403 when the name is already in use
'use strict';

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  main(JSON.parse(Buffer.concat(chunks).toString('utf8'))).then(
    (state) => process.stdout.write(JSON.stringify({ state }) + '\n'),
    (err) => {
      process.stderr.write(`${err.message}\n`);
      process.exit(1);
    },
  );
});

async function call(base, method, path, key, body) {
  const res = await fetch(base + path, {
    method,
    headers: { apikey: key, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text: text.slice(0, 300) };
}

async function waitUp(base, seconds) {
  const deadline = Date.now() + seconds * 1000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(base + '/');
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.message;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  throw new Error(`Evolution API did not answer GET / with 200 within ${seconds} s (last: ${last})`);
}

async function main({ port, key, instance, check, wait }) {
  const base = `http://127.0.0.1:${port}`;
  await waitUp(base, wait);
  const found = await call(base, 'GET', `/instance/fetchInstances?instanceName=${encodeURIComponent(instance)}`, key);
  if (found.status === 200) return 'present';
  if (found.status !== 404) {
    throw new Error(`GET /instance/fetchInstances answered HTTP ${found.status}: ${found.text}`);
  }
  if (check) return 'would_create';
  const created = await call(base, 'POST', '/instance/create', key, {
    instanceName: instance,
    integration: 'WHATSAPP-BAILEYS',
    qrcode: false,
  });
  if (created.status === 201 || created.status === 200) return 'created';
  throw new Error(`POST /instance/create answered HTTP ${created.status}: ${created.text}`);
}
