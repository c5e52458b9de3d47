// SPDX-License-Identifier: GPL-3.0-or-later
// What the play's scripts run inside the n8n container share (the role prepends this file to owner_setup.js and
// workflows_sync.js before `node --eval`): one HTTP call to the instance on 127.0.0.1, and the wait for its REST API.
'use strict';
const http = require('http');

// One call; resolves {status, body} whatever the status, rejects when n8n does not answer within `timeout` seconds.
function request(port, method, path, { body, headers = {}, timeout = 60 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const all = { ...headers };
    if (data) Object.assign(all, { 'Content-Type': 'application/json', 'Content-Length': data.length });
    const req = http.request({ host: '127.0.0.1', port, method, path, timeout: timeout * 1000, headers: all }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeout} s`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// n8n may have just been (re)started by the play: waits up to `seconds` for its REST API and returns the answer of
// GET /rest/settings. /healthz/readiness turns ready before the REST routes are mounted (they answer 404 until then).
async function ready(port, seconds) {
  const deadline = Date.now() + seconds * 1000;
  let last = '';
  for (;;) {
    try {
      const answer = await request(port, 'GET', '/rest/settings', { timeout: 30 });
      if (answer.status === 200) return answer;
      last = `GET /rest/settings answered ${answer.status}`;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline) throw new Error(`n8n not ready after ${seconds} s (${last})`);
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
  }
}
