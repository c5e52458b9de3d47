// SPDX-License-Identifier: GPL-3.0-or-later
// Creates n8n's owner account while the instance still offers its first-run setup, from inside the n8n container
// (node is always there; no port is published). Reads one JSON object on stdin:
//   {"port": 5678, "check": false, "wait": 300, "owner": {"email", "firstName", "lastName", "password"}}
// n8n may have just been (re)started by the play: it waits up to "wait" seconds for its REST API (n8n_http.js).
// Prints one JSON line: {"state": "present" | "created" | "would_create"}; exits 1 with a reason otherwise.
// The password is sent to n8n only; it is never printed.
// request() and ready() come from n8n_http.js, which the role puts before this file.

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const answer = await ready(input.port, input.wait);
  const pending = JSON.parse(answer.body).data.userManagement.showSetupOnFirstLoad === true;
  if (!pending) return { state: 'present' };
  if (input.check) return { state: 'would_create' };
  const setup = await request(input.port, 'POST', '/rest/owner/setup', { body: input.owner, timeout: 30 });
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
