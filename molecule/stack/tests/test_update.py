# SPDX-License-Identifier: GPL-3.0-or-later
"""A single-service update that goes wrong is rolled back, proven on the lab stack with a deliberately broken n8n.

The broken release is built for the test in the lab host's engine from a tiny context: the lab's n8n image with
another entrypoint that does what a bad release does - it migrates the database (creates a table, renames every
workflow) and then never becomes ready. `site.yml --tags n8n` with it as n8n's image must: dump n8n's database
first (root-only), start it, wait n8n_wait_timeout (40 s here, to keep the test short), then stop it, restore the
database from the dump, put the previous Compose file and image back, bring the previous n8n up healthy, and fail
with a message that names both images and shows the broken release's last log lines. Afterwards n8n runs the
previous image, healthy, with its data (the workflows' names as before, a row written before the update still
there, the broken release's table gone), and a rerun with the original image changes nothing.

Not run here: a registry pull of the new version (no registry in the lab: the pull policy is `never`) and a
successful update's request figures (scripts/benchmark-update.sh measures those). Took 300 s on the shared 2-core
machine at load ~14 (most of it the two playbook runs and n8n's restart after the rollback).
"""
from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import yaml
from conftest import PROJECT, inspect, run_site

PG = "borgstack-postgresql"
N8N = "borgstack-n8n"
DUMPS = "/var/backups/borgstack/updates"
MARK = uuid.uuid4().hex[:12]
BROKEN_JS = """\
// A bad release for the rollback test: it migrates the database, then never becomes ready.
const fs = require('fs');
const { Client } = require('/usr/local/lib/n8n/node_modules/pg');
process.on('SIGTERM', () => process.exit(0));
const hang = () => setInterval(() => {}, 1 << 30);
(async () => {
  const env = process.env;
  const db = new Client({ host: env.DB_POSTGRESDB_HOST, port: Number(env.DB_POSTGRESDB_PORT),
    database: env.DB_POSTGRESDB_DATABASE, user: env.DB_POSTGRESDB_USER,
    password: fs.readFileSync(env.DB_POSTGRESDB_PASSWORD_FILE, 'utf8').trim() });
  await db.connect();
  await db.query('CREATE TABLE IF NOT EXISTS borgstack_broken_release (id integer)');
  await db.query("UPDATE workflow_entity SET name = name || ' (migrated by the broken release)'");
  await db.end();
  console.log('broken release: database migrated; this version never becomes ready');
  hang();
})().catch((error) => { console.error(`broken release: ${error.message}`); hang(); });
"""


def _lab_services() -> dict:
    """The lab inventory's borgstack_services (an -e value replaces the whole dict: every other key is kept)."""
    path = PROJECT / "inventories" / "lab" / "group_vars" / "borgstack" / "main.yml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))["borgstack_services"]


def _with_n8n_image(image: str) -> str:
    services = _lab_services()
    services["n8n"] = dict(services["n8n"], image=image)
    return json.dumps({"borgstack_services": services})


def _sql(host, query: str) -> str:
    return host.check_output(f"docker exec {PG} psql -U postgres -X -At -d n8n -c \"{query}\"")


def _build_broken(host, base: str, tag: str) -> None:
    dockerfile = f'FROM {base}\nCOPY broken.js /broken.js\nENTRYPOINT ["node", "/broken.js"]\n'
    files = {"Dockerfile": dockerfile, "broken.js": BROKEN_JS}
    script = "set -e; d=$(mktemp -d); " + "; ".join(
        f"echo {base64.b64encode(text.encode()).decode()} | base64 -d > $d/{name}" for name, text in files.items())
    script += f"; docker build --quiet --tag {tag} $d; rm -rf $d"
    build = host.run(f"sh -c '{script}'")
    assert build.rc == 0, f"building the broken release failed: {build.stderr}"


def test_a_broken_update_is_rolled_back_with_its_data(host):
    base = _lab_services()["n8n"]["image"]
    broken = f"{base}-broken"
    assert inspect(host, N8N)["Config"]["Image"] == base, "converge the lab stack first"
    _build_broken(host, base, broken)
    _sql(host, "CREATE TABLE IF NOT EXISTS update_drill (note text)")
    _sql(host, f"INSERT INTO update_drill VALUES ('{MARK}')")
    workflows = _sql(host, "SELECT id || ' ' || name FROM workflow_entity ORDER BY id")
    assert workflows, "the lab's n8n has no workflows to compare"
    before_id = inspect(host, N8N)["Image"]
    dumps_before = set(host.run(f"ls {DUMPS}").stdout.split())

    run = run_site("--tags", "n8n", "-e", _with_n8n_image(broken), "-e", "n8n_wait_timeout=40", json_output=True)

    messages = " | ".join(failure.message for failure in run.failures)
    assert run.rc != 0 and run.failed == 1, f"the broken update did not fail the play:\n{run.output[-3000:]}"
    assert f"{base} -> {broken}" in messages and "did not become healthy within 40 s and was rolled back" in messages
    assert "restored from the pre-update dump" in messages and "previous version running and healthy" in messages
    # The new version's last log lines are in the message.
    assert "broken release: database migrated" in messages, messages

    container = inspect(host, N8N)
    assert container["Config"]["Image"] == base and container["Image"] == before_id
    assert container["State"]["Health"]["Status"] == "healthy"
    assert _sql(host, "SELECT id || ' ' || name FROM workflow_entity ORDER BY id") == workflows
    assert _sql(host, f"SELECT count(*) FROM update_drill WHERE note = '{MARK}'") == "1"
    assert _sql(host, "SELECT to_regclass('borgstack_broken_release') IS NULL") == "t"
    compose = host.file("/opt/borgstack/services/n8n/compose.yaml").content_string
    assert f"image: {base}" in compose and broken not in compose
    new_dumps = set(host.run(f"ls {DUMPS}").stdout.split()) - dumps_before
    assert len(new_dumps) == 1, f"expected one new pre-update dump in {DUMPS}, found {sorted(new_dumps)}"
    dump = host.file(f"{DUMPS}/{new_dumps.pop()}")
    assert dump.mode == 0o600 and dump.user == "root" and dump.size > 0
    assert host.file(DUMPS).mode == 0o700

    rerun = run_site("--tags", "n8n")
    assert rerun.rc == 0 and rerun.changed == 0, f"rerun with the original image changed:\n{rerun.output[-3000:]}"
    _sql(host, "DROP TABLE update_drill")
    host.run(f"docker image rm {broken}")


def test_docs_name_the_mechanism():
    """The operator's guide explains the update, the rollback and the benchmark (pt-BR)."""
    guide = (Path(PROJECT) / "docs" / "atualizacao.md").read_text(encoding="utf-8")
    for needle in ("--tags n8n", "scripts/benchmark-update.sh", "caddy_proxy_try_duration", DUMPS):
        assert needle in guide, f"docs/atualizacao.md does not mention {needle}"
