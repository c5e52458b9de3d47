// SPDX-License-Identifier: GPL-3.0-or-later
// Creates n8n's owner account while the instance still offers its first-run setup, from inside the n8n container
// (node is always there; no port is published). Reads one JSON object on stdin:
//   {"port": 5678, "check": false, "wait": 300, "owner": {"email", "firstName", "lastName", "password"}}
// n8n may have just been (re)started by the play: it waits up to "wait" seconds for its REST API (/rest/settings
// answers 200; /healthz/readiness turns ready before the REST routes are mounted, and they answer 404 until then).
// Prints one JSON line: {"state": "present" | "created" | "would_create"}; exits 1 with a reason otherwise.
// The password is sent to n8n only; it is never printed.
'use strict';
const http = require('http');

function request(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1', port, method, path, timeout: 30000,
      headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

async function settings(port, seconds) {
  const deadline = Date.now() + seconds * 1000;
  let last = '';
  for (;;) {
    try {
      const answer = await request(port, 'GET', '/rest/settings');
      if (answer.status === 200) return answer;
      last = `GET /rest/settings answered ${answer.status}`;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline) throw new Error(`n8n not ready after ${seconds} s (${last})`);
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
  }
}

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const answer = await settings(input.port, input.wait);
  const pending = JSON.parse(answer.body).data.userManagement.showSetupOnFirstLoad === true;
  if (!pending) return { state: 'present' };
  if (input.check) return { state: 'would_create' };
  const setup = await request(input.port, 'POST', '/rest/owner/setup', input.owner);
  if (setup.status !== 200) {
    // n8n's error body names the field it refused; it never echoes the password.
    throw new Error(`POST /rest/owner/setup answered ${setup.status}: ${setup.body.slice(0, 300)}`);
  }
  return { state: 'created' };
}

main().then(
  (result) => { process.stdout.write(`${JSON.stringify(result)}\n`); },
  (error) => { process.stderr.write(`${error.message}\n`); process.exit(1); },
);
