# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.compose_deploy updating a service to another image, against this machine's real Docker engine and
a real PostgreSQL (the lab's build, borgstack-lab/postgresql:17, in a throw-away container).

The service is an "app" whose versions are images made here from the PostgreSQL image (it has psql): version 1 is
a plain re-tag, healthy; the broken version runs a "migration" against the app's database (deletes its row, creates
a table) and then never becomes healthy (a marker file its healthcheck refuses); version 3 is another healthy re-tag.
Covered: an update to the broken version dumps the database first (root-only file), fails, and is rolled back - the
previous image runs again, healthy, the Compose file is the previous one, the row is back and the migration's table
gone, the message names both images and shows the broken version's log lines; a rerun with version 1 changes
nothing and takes no dump; an update to version 3 succeeds with a dump and reports both references.
Containers, images, network and temp directory are removed at the end.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from ansible_module_runner import ModuleRun, run_module
from lab_prerequisites import require_docker_images

pytestmark = pytest.mark.integration

PG_IMAGE = os.environ.get("BORGSTACK_POSTGRESQL_IMAGE", "borgstack-lab/postgresql:17")
MODULE = "borgstack.stack.compose_deploy"
PASSWORD = "pw-" + secrets.token_hex(8)


def docker(*args: str, check: bool = True, data: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=300, input=data)


class Update:
    """The throw-away project: a PostgreSQL container beside it, and the app's image versions."""

    def __init__(self, root: Path) -> None:
        self.name = f"bsupd-{secrets.token_hex(4)}"
        self.dir = root / "project"
        self.dumps = root / "dumps"
        self.network = f"{self.name}_default"
        self.pg = f"{self.name}-pg"
        self.app = f"{self.name}-app"
        self.images = {version: f"{self.name}/app:{version}" for version in ("1", "broken", "3")}

    def compose(self, version: str) -> str:
        return f"""services:
  app:
    image: {self.images[version]}
    container_name: {self.app}
    command:
      - sh
      - -c
      - >-
        if [ -e /broken ]; then psql -h {self.pg} -U postgres -d appdb -c 'DELETE FROM t'
        -c 'CREATE TABLE migrated (i int)'; echo broken version: migrated; fi; exec sleep infinity
    environment:
      PGPASSWORD: "{PASSWORD}"
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "sh", "-c", "test ! -e /broken"]
      interval: 1s
      timeout: 3s
      retries: 3
networks:
  default:
    name: {self.network}
    external: true
"""

    def run(self, version: str) -> ModuleRun:
        return run_module(MODULE, {
            "name": "app", "project": self.name, "project_dir": str(self.dir), "compose": self.compose(version),
            "pull": "never", "wait_timeout": 20,
            "update_dump": {"container": self.pg, "database": "appdb", "dir": str(self.dumps), "keep": 2},
        }, timeout=300)

    def sql(self, query: str) -> str:
        return docker("exec", self.pg, "psql", "-U", "postgres", "-X", "-At", "-d", "appdb", "-c", query).stdout.strip()


@pytest.fixture(scope="module")
def update(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Update]:
    require_docker_images(PG_IMAGE)
    upd = Update(tmp_path_factory.mktemp("compose_deploy_update"))
    upd.dir.mkdir()
    docker("network", "create", upd.network)
    docker("run", "--detach", "--name", upd.pg, "--network", upd.network, "--env", f"POSTGRES_PASSWORD={PASSWORD}",
           PG_IMAGE)
    for _attempt in range(120):
        if docker("exec", upd.pg, "pg_isready", "-U", "postgres", check=False).returncode == 0 and docker(
                "exec", upd.pg, "psql", "-U", "postgres", "-c", "SELECT 1", check=False).returncode == 0:
            break
        time.sleep(1)
    docker("exec", upd.pg, "createdb", "-U", "postgres", "appdb")
    upd.sql("CREATE TABLE t (note text); INSERT INTO t VALUES ('before the update')")
    docker("tag", PG_IMAGE, upd.images["1"])
    docker("tag", PG_IMAGE, upd.images["3"])
    docker("build", "--quiet", "--tag", upd.images["broken"], "-",
           data=f"FROM {PG_IMAGE}\nRUN touch /broken\n")
    yield upd
    docker("rm", "--force", upd.app, upd.pg, check=False)
    docker("network", "rm", upd.network, check=False)
    docker("image", "rm", *upd.images.values(), check=False)
    shutil.rmtree(upd.dir.parent, ignore_errors=True)


def test_a_broken_update_rolls_back_and_a_good_one_goes_through(update: Update) -> None:
    first = update.run("1")
    assert not first.failed and first.changed and "updated" not in first.result, first.output
    assert not update.dumps.exists(), "a first deploy is not an update: no dump"

    broken = update.run("broken")
    msg = broken.result.get("msg", "")
    assert broken.failed, broken.output
    assert f"{update.images['1']} -> {update.images['broken']}" in msg and "was rolled back" in msg, msg
    assert "broken version: migrated" in msg, "the new version's log lines are missing from the message"
    assert docker("inspect", "--format", "{{.Config.Image}} {{.State.Health.Status}}", update.app
                  ).stdout.split() == [update.images["1"], "healthy"]
    assert update.sql("SELECT note FROM t") == "before the update"
    assert update.sql("SELECT to_regclass('migrated') IS NULL") == "t"
    assert f"image: {update.images['1']}" in (update.dir / "services/app/compose.yaml").read_text()
    dumps = sorted(update.dumps.iterdir())
    assert len(dumps) == 1 and dumps[0].stat().st_mode & 0o777 == 0o600
    assert update.dumps.stat().st_mode & 0o777 == 0o700

    again = update.run("1")
    assert not again.failed and not again.changed, again.output
    assert len(list(update.dumps.iterdir())) == 1, "a run without an image change took a dump"

    good = update.run("3")
    assert not good.failed and good.changed, good.output
    assert good.result["updated"] == {update.app: {"from": update.images["1"], "to": update.images["3"]}}
    assert Path(good.result["dump"]).is_file() and len(list(update.dumps.iterdir())) == 2
    assert docker("inspect", "--format", "{{.Config.Image}}", update.app).stdout.strip() == update.images["3"]
