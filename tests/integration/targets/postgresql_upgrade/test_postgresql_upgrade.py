# SPDX-License-Identifier: GPL-3.0-or-later
"""PostgreSQL major upgrade on a real lab host: Debian bookworm's PostgreSQL 15 -> Debian trixie's PostgreSQL 17.

Needs ``BORGSTACK_PGUP_HOST=<name>``: a fresh host made by ``lab/lab.sh create <name> --ip N`` (scripts/test.sh makes
one beside the integration host). This module converges it (site.yml) with a small stack that uses PostgreSQL:
PostgreSQL from ``borgstack-lab/postgresql:15`` (bookworm's postgresql-15 with pgvector built from Debian's pgvector
source package, lab/images/postgresql15), Redis, n8n and Caddy (SeaweedFS and Directus off: n8n needs neither and
they would only cost time). Then, in order:

- data the apps did not write is added: a table with a ``vector(3)`` column (2000 rows, an HNSW index) in n8n's
  database, owned by its tenant, and a database of the operator's own (not a tenant) with a table;
- bad input is refused before anything changes (no target image, no or a wrong confirmation, a target of the same
  major, too little free disk through postgresql_upgrade_space_factor), and the server, its volume and the apps are
  as they were, with no new volume and no dumps;
- an upgrade that fails after the switch (the new major refuses a setting 15 accepts) puts the old server back on
  its untouched volume, removes the new volume, keeps every row and starts the apps again;
- playbooks/postgresql-upgrade.yml upgrades to ``borgstack-lab/postgresql:17``: the server then reports 17, every
  table of every database has the same row count as before (read here by this test's own query, not the playbook's),
  the vector values are equal one by one, an exact nearest-neighbour query answers the same and the HNSW index is
  there again, n8n is healthy again, the old volume is still there;
- site.yml with the inventory unchanged is refused (it would start 15 on the old data), naming the three settings;
  with the settings the playbook printed, site.yml changes nothing (changed=0);
- a downgrade (17 -> 15) is refused.

What does not run: the production images (pgvector/pgvector:pg18 and a later one: no registry here; the lab's
majors are Debian's 15 and 17), a failure in the middle of the dump or the restore (only a new server that does not
start is provoked), Directus,
SeaweedFS and the apps the lab cannot run. Measured on a 2-core machine at load ~11: 949 s for the whole module on a
host already converged (the site.yml runs are most of it); a fresh host adds its first converge.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lab_prerequisites import require_docker_images, require_env

REPO_ROOT = Path(__file__).resolve().parents[4]
OLD_IMAGE = "borgstack-lab/postgresql:15"
NEW_IMAGE = "borgstack-lab/postgresql:17"
CONTAINER = "borgstack-postgresql"
OLD_VOLUME = "borgstack_postgresql_data"
NEW_VOLUME = "borgstack_postgresql_data_pg17"
APP_CONTAINERS = ("borgstack-n8n",)
PROBE_ROWS = 2000

pytestmark = pytest.mark.integration


def _host() -> str:
    return require_env("BORGSTACK_PGUP_HOST", "a fresh lab host (lab/lab.sh create NAME --ip N) for the upgrade")


def _in_host(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", "exec", _host(), *argv], capture_output=True, text=True, check=False,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv}: {proc.stdout}{proc.stderr}")
    return proc


def _psql(sql: str, db: str = "postgres") -> str:
    """psql as the superuser in the stack's PostgreSQL, on the lab host; the output's lines (tuples only)."""
    return _in_host("docker", "exec", "-i", CONTAINER, "psql", "-U", "postgres", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                    "-d", db, "-c", sql).stdout.strip()


def _inventory(tmp: Path, upgraded: bool = False) -> Path:
    """The lab inventory with PostgreSQL 15 (or, ``upgraded``, the settings the playbook tells the operator to set)."""
    # The lab's settings name lab/lab.sh relative to their inventory (secret, ssh-key, address): this inventory lives
    # elsewhere, so they name it by its absolute path.
    text = (REPO_ROOT / "inventories/lab/group_vars/borgstack/main.yml").read_text()
    lab = yaml.safe_load(text.replace("inventory_dir ~ '/../../lab/lab.sh", "'%s" % (REPO_ROOT / "lab/lab.sh")))
    services = lab["borgstack_services"]
    services["postgresql"] = {"image": NEW_IMAGE if upgraded else OLD_IMAGE}
    services["seaweedfs"] = {"enabled": False}
    services["directus"] = {"enabled": False}
    lab["postgresql_major_version"] = 17 if upgraded else 15
    if upgraded:
        lab["postgresql_volume"] = NEW_VOLUME
    # Both majors are side-loaded (no registry) besides what the lab loads (every enabled service's image and its
    # containers' own, e.g. the monitoring relay's): the upgrade finds its target image on the host.
    loads = lab["images_sideload"].strip()
    assert loads.startswith("{{") and loads.endswith("}}"), loads
    lab["images_sideload"] = f"{{{{ ({loads[2:-2].strip()} + ['{OLD_IMAGE}', '{NEW_IMAGE}']) | unique }}}}"
    inv = tmp / ("inventory-upgraded" if upgraded else "inventory")
    (inv / "group_vars" / "borgstack").mkdir(parents=True)
    (inv / "group_vars" / "all").symlink_to(REPO_ROOT / "playbooks" / "group_vars" / "all")
    (inv / "group_vars" / "borgstack" / "main.yml").write_text(yaml.safe_dump(lab, sort_keys=False))
    (inv / "hosts.yml").write_text(yaml.safe_dump({"borgstack": {"hosts": {_host(): {
        "ansible_connection": "community.docker.docker", "ansible_host": _host(),
        "ansible_python_interpreter": "/usr/bin/python3", "lab_public_ip": os.environ.get("BORGSTACK_PGUP_IP", "")}}}}))
    return inv / "hosts.yml"


def _playbook(playbook: str, inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / "collections"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    return subprocess.run(["ansible-playbook", playbook, "-i", str(inventory), *extra], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=1800)


def _recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters of the (single) host."""
    line = [ln for ln in output.splitlines() if " : ok=" in ln][-1]
    return {k: int(v) for k, v in (item.split("=") for item in line.split(":", 1)[1].split())}


def _state() -> dict[str, Any]:
    """What must not change when an upgrade is refused: server version, image and volume, apps, volumes, dumps."""
    inspect = json.loads(_in_host("docker", "inspect", CONTAINER).stdout)[0]
    return {
        "version": _psql("SHOW server_version_num"),
        "image": inspect["Config"]["Image"],
        "volumes": sorted(m["Name"] for m in inspect["Mounts"] if m["Type"] == "volume"),
        "running": sorted(_in_host("docker", "ps", "--format", "{{.Names}}").stdout.split()),
        "all_volumes": sorted(_in_host("docker", "volume", "ls", "-q").stdout.split()),
        "dumps": _in_host("ls", "-A", "/opt/borgstack/upgrades", check=False).stdout.split(),
    }


# Tables an app writes by itself whenever it runs, whatever this test does (n8n: the executions, insights and
# statistics of the reconciliation's and the reply queue's schedules, their lease row): the restore drill's own list,
# backup_drill_self_written_tables. This test's before/after counts are taken while n8n runs, so these would differ by
# timing alone; the playbook's own comparison (every table, rows and checksum) runs while the apps are stopped and
# covers them.
WRITTEN_BY_N8N_ITSELF = frozenset(
    f"{db}.{table}" for db, tables in yaml.safe_load(
        (REPO_ROOT / "roles" / "backup" / "defaults" / "main.yml").read_text())["backup_drill_self_written_tables"].items()
    for table in tables)


def _figures() -> dict[str, Any]:
    """Every table's row count in every database (this test's own query), the probe's vectors and a kNN answer."""
    rows: dict[str, int] = {}
    for db in _psql("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate").split():
        counted = _psql(
            "SELECT table_schema || '.' || table_name || ' ' || (xpath('/row/c/text()', query_to_xml(format("
            "'SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text "
            "FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')", db)
        for line in counted.splitlines():
            name, count = line.rsplit(" ", 1)
            if f"{db}.{name}" not in WRITTEN_BY_N8N_ITSELF:
                rows[f"{db}.{name}"] = int(count)
    return {
        "rows": rows,
        "vectors": _psql("SELECT string_agg(id || '=' || embedding::text, ';' ORDER BY id) FROM upgrade_probe", "n8n"),
        # Exact nearest neighbours (no index: HNSW is approximate and rebuilt by the restore), then the index itself.
        "knn": _psql("SET enable_indexscan = off; SELECT string_agg(id::text, ',') FROM (SELECT id FROM upgrade_probe "
                     "ORDER BY embedding <-> '[0.5,0.5,0.5]' LIMIT 10) k", "n8n").splitlines()[-1],
        "indexes": _psql("SELECT string_agg(indexdef, ';' ORDER BY indexname) FROM pg_indexes "
                         "WHERE tablename = 'upgrade_probe'", "n8n"),
        "extensions": _psql("SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension", "n8n"),
    }


@pytest.fixture(scope="module")
def stack15(tmp_path_factory) -> Path:
    """The lab host converged with PostgreSQL 15, n8n on it, and data of our own (vectors, an operator database)."""
    require_docker_images(OLD_IMAGE, NEW_IMAGE)
    if _in_host("test", "-e", "/opt/borgstack/services/postgresql/upgraded.json", check=False).returncode == 0:
        pytest.fail(f"{_host()} was upgraded by an earlier run: give a fresh lab host (lab/lab.sh reset)")
    tmp = tmp_path_factory.mktemp("pgup")
    inventory = _inventory(tmp)
    proc = _playbook("site.yml", inventory)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert _psql("SHOW server_version_num").startswith("15"), "the stack did not start PostgreSQL 15"
    _psql(f"""CREATE TABLE IF NOT EXISTS upgrade_probe (id int PRIMARY KEY, embedding vector(3) NOT NULL, note text);
              ALTER TABLE upgrade_probe OWNER TO n8n;
              INSERT INTO upgrade_probe SELECT i, ARRAY[random(), random(), random()]::vector, 'row ' || i
                FROM generate_series(1, {PROBE_ROWS}) i ON CONFLICT DO NOTHING;
              CREATE INDEX IF NOT EXISTS upgrade_probe_hnsw ON upgrade_probe USING hnsw (embedding vector_l2_ops);""",
          "n8n")
    if _psql("SELECT count(*) FROM pg_database WHERE datname = 'operator_notes'") == "0":
        _psql("CREATE DATABASE operator_notes")
    _psql("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text);"
          "INSERT INTO notes (body) SELECT 'note ' || i FROM generate_series(1, 37) i", "operator_notes")
    return inventory


@pytest.mark.parametrize("extra, fragment", [
    ((), "postgresql_upgrade_image: give the image"),
    ((f"postgresql_upgrade_image={NEW_IMAGE}",), "-e postgresql_upgrade_confirm=15-to-17"),
    ((f"postgresql_upgrade_image={NEW_IMAGE}", "postgresql_upgrade_confirm=17"), "postgresql_upgrade_confirm=15-to-17"),
    ((f"postgresql_upgrade_image={OLD_IMAGE}", "postgresql_upgrade_confirm=15-to-15"), "only an upgrade to a higher"),
    ((f"postgresql_upgrade_image={NEW_IMAGE}", "postgresql_upgrade_confirm=15-to-17",
      "postgresql_upgrade_space_factor=100000"), "postgresql_upgrade_space_factor: the upgrade needs 100000"),
], ids=["no-image", "no-confirm", "wrong-confirm", "same-major", "too-little-disk"])
def test_bad_input_is_refused_and_changes_nothing(stack15, extra, fragment):
    before = _state()
    args = [a for e in extra for a in ("-e", e)]
    proc = _playbook("playbooks/postgresql-upgrade.yml", stack15, *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert fragment in output, output[-3000:]
    assert "Nothing was changed" in output
    assert _state() == before


def _wait_healthy(container: str, timeout: float = 240.0) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = _in_host("docker", "inspect", "--format", "{{.State.Health.Status}}", container, check=False).stdout.strip()
        if status == "healthy":
            break
        time.sleep(3)
    return status


def test_failed_upgrade_puts_the_old_server_back(stack15):
    """A failure after the switch: the new major refuses a setting 15 accepts (vacuum_defer_cleanup_age, removed in
    16), so the new server never becomes healthy. The old server must run again on its untouched volume, the new
    volume be gone, every row be there and the apps run again. (compose_service_wait_timeout bounds the wait.)"""
    before = _figures()
    proc = _playbook("playbooks/postgresql-upgrade.yml", stack15, "-e", f"postgresql_upgrade_image={NEW_IMAGE}",
                     "-e", "postgresql_upgrade_confirm=15-to-17", "-e", "compose_service_wait_timeout=90",
                     "-e", '{"postgresql_settings_extra": {"vacuum_defer_cleanup_age": 0}}')
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-6000:]
    assert "PostgreSQL 15 runs again" in output, output[-6000:]
    assert _psql("SHOW server_version_num").startswith("15")
    inspect = json.loads(_in_host("docker", "inspect", CONTAINER).stdout)[0]
    assert inspect["Config"]["Image"] == OLD_IMAGE
    assert [m["Name"] for m in inspect["Mounts"] if m["Destination"] == "/var/lib/postgresql"] == [OLD_VOLUME]
    assert _in_host("docker", "volume", "inspect", NEW_VOLUME, check=False).returncode != 0
    assert _figures() == before
    for app in APP_CONTAINERS:
        assert _wait_healthy(app) == "healthy", app
    # The record of an upgrade is written only after a successful one.
    assert _in_host("test", "-e", "/opt/borgstack/services/postgresql/upgraded.json", check=False).returncode != 0


def test_upgrade_15_to_17_keeps_every_row_and_vector(stack15, tmp_path):
    before = _figures()
    assert before["rows"]["n8n.public.upgrade_probe"] == PROBE_ROWS
    assert before["rows"]["operator_notes.public.notes"] >= 37
    assert len(before["rows"]) > 10, before["rows"]  # n8n's own tables are there too

    proc = _playbook("playbooks/postgresql-upgrade.yml", stack15, "-e", f"postgresql_upgrade_image={NEW_IMAGE}",
                     "-e", "postgresql_upgrade_confirm=15-to-17")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]

    assert _psql("SHOW server_version_num").startswith("17")
    after = _figures()
    assert after == before
    inspect = json.loads(_in_host("docker", "inspect", CONTAINER).stdout)[0]
    assert inspect["Config"]["Image"] == NEW_IMAGE
    assert [m["Name"] for m in inspect["Mounts"] if m["Destination"] == "/var/lib/postgresql"] == [NEW_VOLUME]
    # The old volume is kept, with the old cluster in it; the playbook says how to remove it.
    assert _in_host("docker", "volume", "inspect", OLD_VOLUME, check=False).returncode == 0
    assert f"docker volume rm {OLD_VOLUME}" in output
    for app in APP_CONTAINERS:
        health = _in_host("docker", "inspect", "--format", "{{.State.Health.Status}}", app).stdout.strip()
        assert health == "healthy", f"{app}: {health}"
    # n8n logs in with its tenant's password over TCP and reads its own tables (its health is also checked by the play).
    assert _psql("SELECT count(*) > 0 FROM migrations", "n8n") == "t"

    # The inventory still names 15: site.yml refuses before changing anything.
    stale = _playbook("site.yml", stack15)
    assert stale.returncode != 0
    stale_out = stale.stdout + stale.stderr
    for setting in ("borgstack_services.postgresql.image", "postgresql_major_version", "postgresql_volume", NEW_VOLUME):
        assert setting in stale_out, stale_out[-3000:]
    assert _psql("SHOW server_version_num").startswith("17")

    # With the settings the playbook printed, site.yml changes nothing: the upgrade left the stack as site.yml has it.
    upgraded = _inventory(tmp_path, upgraded=True)
    rerun = _playbook("site.yml", upgraded)
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    assert _recap(rerun.stdout)["changed"] == 0, rerun.stdout[-6000:]
    assert _figures() == before

    # A downgrade is refused.
    down = _playbook("playbooks/postgresql-upgrade.yml", upgraded, "-e", f"postgresql_upgrade_image={OLD_IMAGE}",
                     "-e", "postgresql_upgrade_confirm=17-to-15")
    assert down.returncode != 0 and "only an upgrade to a higher" in down.stdout + down.stderr
    assert _psql("SHOW server_version_num").startswith("17")


def test_dump_directory_is_root_only(stack15):
    """Runs after the upgrade: the dumps hold every secret of every database."""
    listing = _in_host("sh", "-c", "stat -c '%a %U %n' /opt/borgstack/upgrades/* /opt/borgstack/upgrades/*/*").stdout
    lines = listing.splitlines()
    assert lines, "no dumps were kept"
    for line in lines:
        mode, owner, name = line.split(" ", 2)
        assert owner == "root", line
        assert mode in ("700", "600"), line
    assert any(shlex.split(line)[-1].endswith("/n8n.dump") for line in lines), listing
