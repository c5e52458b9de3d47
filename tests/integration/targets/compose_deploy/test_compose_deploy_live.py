# SPDX-License-Identifier: GPL-3.0-or-later
"""borgstack.stack.compose_deploy against this machine's real Docker engine.

A throw-away Compose project ``bstest-<random>`` in a temp directory, with a tiny service: the lab's Redis 8.0 image
(no registry here: pull policy ``never``) with a ``redis-cli ping`` healthcheck, a config file it reads at start, a
secret file, an env_file (secrets.env) and a named volume. The module runs through the ansible CLI
(tests/integration/ansible_module_runner.py); the role compose_service runs through ansible-playbook at -vvv with
--diff, and its output is scanned for the secrets (molecule/shared/leak_scan.py).

Covered: first deploy healthy → rerun not changed → check mode after a config edit reports and changes nothing →
apply recreates and waits healthy (the container reads the new file) → runtime drift (network disconnected,
``docker update --memory``, volume mode) reported in check mode, healed, then not changed → a stopped container
started → a service dropped from the file has its container removed → pull=never with a missing image fails before
anything is written → an invalid Compose file fails and the live file stays → state=absent keeps volumes and files,
purge deletes the volume → check mode on a fresh service writes nothing.
Containers, networks, volumes and the temp directory are removed at the end.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from ansible_module_runner import REPO_ROOT, ModuleRun, run_module
from lab_prerequisites import require_docker_images
import yaml

sys.path.insert(0, str(REPO_ROOT / "molecule" / "shared"))
from leak_scan import describe, find_leaks  # noqa: E402  pylint: disable=wrong-import-position,import-error

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("BORGSTACK_REDIS_IMAGE", "borgstack-lab/redis:8.0")
MODULE = "borgstack.stack.compose_deploy"
SECRET_ENV = "env-Secret-7d1f0c92ab"
SECRET_FILE = "file-Secret-41e9b3c7d5"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def inspect(container: str, template: str) -> str:
    return docker("inspect", "--format", template, container, check=False).stdout.strip()


class Project:
    """The throw-away project: its names and the module arguments of its services."""

    def __init__(self, root: Path) -> None:
        self.name = f"bstest-{secrets.token_hex(4)}"
        self.dir = root
        self.network = f"{self.name}_default"
        self.volume = f"{self.name}_data"

    def container(self, service: str = "cache") -> str:
        return f"{self.name}-{service}"

    def service_dir(self, name: str = "t") -> Path:
        return self.dir / "services" / name

    def compose(self, name: str = "t", extra: bool = False, image: str = IMAGE) -> str:
        conf = self.service_dir(name) / "redis.conf"
        text = f"""services:
  cache:
    image: {image}
    container_name: {self.container()}
    command: ["redis-server", "/etc/redis-test.conf"]
    restart: unless-stopped
    mem_limit: 64m
    env_file: [{self.service_dir(name)}/secrets.env]
    volumes:
      - {conf}:/etc/redis-test.conf:ro
      - data:/data
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 3s
      retries: 10
"""
        if extra:
            text += f"""  extra:
    image: {image}
    container_name: {self.container('extra')}
    command: ["redis-server", "--port", "6380"]
"""
        return text + f"""volumes:
  data:
    name: {self.volume}
"""

    def args(self, name: str = "t", maxmemory: str = "0", **overrides: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "name": name,
            "project": self.name,
            "project_dir": str(self.dir),
            "compose": self.compose(name, extra=overrides.pop("extra", False),
                                    image=overrides.pop("image", IMAGE)),
            "files": [{"path": "redis.conf", "content": f"maxmemory {maxmemory}\n", "mode": "0644"}],
            "secret_files": [{"path": "auth.conf", "content": f"token {SECRET_FILE}\n", "owner": 999,
                              "mode": "0400"}],
            "env": {"APP_TOKEN": SECRET_ENV},
            "dirs": [{"path": "data/sub", "mode": "0700"}],
            "volumes": [{"name": self.volume, "owner": 999, "group": 999, "mode": "0750"}],
            "pull": "never",
            "wait_timeout": 60,
        }
        args.update(overrides)
        return args

    def run(self, args: dict[str, Any], check: bool = False) -> ModuleRun:
        run = run_module(MODULE, args, check=check, diff=True, timeout=180)
        leaks = find_leaks(run.output, {"env": SECRET_ENV, "file": SECRET_FILE})
        assert not leaks, f"secrets in the output: {describe(leaks)}"
        return run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    require_docker_images(IMAGE)
    proj = Project(tmp_path_factory.mktemp("compose_deploy"))
    yield proj
    names = docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={proj.name}",
                   check=False).stdout.split()
    if names:
        docker("rm", "--force", *names, check=False)
    docker("network", "rm", proj.network, check=False)
    docker("volume", "rm", proj.volume, check=False)
    shutil.rmtree(proj.dir, ignore_errors=True)


def ok(run: ModuleRun) -> ModuleRun:
    assert not run.failed, run.output
    return run


def test_deploy_recreate_drift_and_stale(project: Project) -> None:  # pylint: disable=too-many-statements
    container = project.container()
    first = ok(project.run(project.args()))
    assert first.changed and first.result["started"] == [container]
    assert inspect(container, "{{.State.Health.Status}}") == "healthy"
    service = project.service_dir()
    assert (service / "secrets.env").read_text() == (
        f'# Managed by BorgStack. Secrets: root-only.\nAPP_TOKEN="{SECRET_ENV}"\n')
    modes = {p.name: (oct(p.stat().st_mode & 0o7777), p.stat().st_uid) for p in service.iterdir()}
    # data: a parent made on the way, default mode, as ansible.builtin.file. .compose-config.json: what
    # `docker compose config` derived, kept (root-only) for the next run - services and hashes, no environment.
    assert modes == {"compose.yaml": ("0o644", 0), "redis.conf": ("0o644", 0), "auth.conf": ("0o400", 999),
                     "secrets.env": ("0o600", 0), "data": ("0o755", 0), ".compose-config.json": ("0o600", 0)}
    assert SECRET_ENV not in (service / ".compose-config.json").read_text()
    assert oct((service / "data" / "sub").stat().st_mode & 0o7777) == "0o700"
    assert oct(service.stat().st_mode & 0o7777) == "0o750"
    # The secret files appear in the diff by path only.
    diffs = {d["after_header"]: d for d in first.result["diff"]}
    assert diffs[str(service / "auth.conf")]["after"] == "(secret content changed)\n"
    assert diffs[str(service / "redis.conf")]["after"] == "maxmemory 0\n"

    second = ok(project.run(project.args()))
    assert not second.changed, second.result
    assert second.result["files_changed"] == [] and second.result["drift"] == {}
    # No-op: docker version, image inspect, ps, container inspect, volume inspect; what `config` and `config --hash`
    # gave the first run is kept under the same inputs, so neither runs.
    assert len(second.result["commands"]) == 5, second.result["commands"]
    assert not [command for command in second.result["commands"] if command.startswith("docker compose config")]

    # A config file edit: check mode reports the recreate and changes nothing.
    before_id = inspect(container, "{{.Id}}")
    check = ok(project.run(project.args(maxmemory="10mb"), check=True))
    assert check.changed and check.result["files_changed"] == [str(service / "redis.conf")]
    assert check.result["recreated"] == [container]
    assert (service / "redis.conf").read_text() == "maxmemory 0\n"
    assert inspect(container, "{{.Id}}") == before_id

    # Applied: recreated, healthy when the module returns, and running with the new file.
    applied = ok(project.run(project.args(maxmemory="10mb")))
    assert applied.changed and applied.result["recreated"] == [container]
    assert inspect(container, "{{.Id}}") != before_id
    assert inspect(container, "{{.State.Health.Status}}") == "healthy"
    assert docker("exec", container, "redis-cli", "config", "get", "maxmemory").stdout.split() == [
        "maxmemory", "10485760"]
    assert not ok(project.run(project.args(maxmemory="10mb"))).changed

    # Runtime drift Compose does not see: a network disconnected, docker update --memory, a volume's mode.
    docker("network", "disconnect", project.network, container)
    docker("update", "--memory", "100m", "--memory-swap", "100m", container)
    mountpoint = inspect(project.volume, "{{.Mountpoint}}") or docker(
        "volume", "inspect", "--format", "{{.Mountpoint}}", project.volume).stdout.strip()
    os.chmod(mountpoint, 0o777)
    check = ok(project.run(project.args(maxmemory="10mb"), check=True))
    assert check.changed
    drift = check.result["drift"]
    assert any(line.startswith("networks []") for line in drift[container]), drift
    assert any(line.startswith("memory limit 104857600") for line in drift[container]), drift
    assert drift[f"volume {project.volume}"] == ["mode 0777 instead of 0750"]
    assert oct(os.stat(mountpoint).st_mode & 0o7777) == "0o777"  # check mode chmods nothing
    healed = ok(project.run(project.args(maxmemory="10mb")))
    assert healed.changed and healed.result["recreated"] == [container]
    assert project.network in inspect(container, "{{json .NetworkSettings.Networks}}")
    assert inspect(container, "{{.HostConfig.Memory}}") == str(64 * 1024 ** 2)
    assert oct(os.stat(mountpoint).st_mode & 0o7777) == "0o750"
    assert inspect(container, "{{.State.Health.Status}}") == "healthy"
    assert not ok(project.run(project.args(maxmemory="10mb"))).changed

    # A stopped container is started.
    docker("stop", container)
    started = ok(project.run(project.args(maxmemory="10mb")))
    assert started.changed and started.result["started"] == [container]
    assert inspect(container, "{{.State.Health.Status}}") == "healthy"

    # secrets.env deleted by hand (the Compose file reads it as env_file): written again, the container recreated.
    (service / "secrets.env").unlink()
    rewritten = ok(project.run(project.args(maxmemory="10mb")))
    assert rewritten.changed and rewritten.result["recreated"] == [container]
    assert (service / "secrets.env").stat().st_mode & 0o7777 == 0o600
    assert f"APP_TOKEN={SECRET_ENV}" in inspect(container, "{{json .Config.Env}}")
    assert not ok(project.run(project.args(maxmemory="10mb"))).changed

    # A service dropped from the file: its container goes, the other stays.
    ok(project.run(project.args(maxmemory="10mb", extra=True)))
    assert inspect(project.container("extra"), "{{.State.Running}}") == "true"
    check = ok(project.run(project.args(maxmemory="10mb"), check=True))
    assert check.changed and check.result["removed"] == [project.container("extra")]
    assert inspect(project.container("extra"), "{{.State.Running}}") == "true"
    dropped = ok(project.run(project.args(maxmemory="10mb")))
    assert dropped.changed and dropped.result["removed"] == [project.container("extra")]
    assert docker("inspect", project.container("extra"), check=False).returncode != 0
    assert inspect(container, "{{.State.Running}}") == "true"
    assert not ok(project.run(project.args(maxmemory="10mb"))).changed


def test_a_missing_image_with_pull_never_fails_before_writing(project: Project) -> None:
    run = project.run(project.args(name="noimage", image="bstest-missing/none:0.1"))
    assert run.failed
    assert "bstest-missing/none:0.1" in run.result["msg"] and "pull policy is 'never'" in run.result["msg"]
    assert not project.service_dir("noimage").exists()


def test_an_invalid_compose_file_fails_and_the_live_one_stays(project: Project) -> None:
    live = (project.service_dir() / "compose.yaml").read_text()
    for check in (True, False):
        run = project.run(dict(project.args(maxmemory="10mb"), compose="services:\n  cache:\n    image: [1, 2]\n"),
                          check=check)
        assert run.failed and "is not valid" in run.result["msg"], run.result
        assert (project.service_dir() / "compose.yaml").read_text() == live
        assert sorted(p.name for p in project.service_dir().iterdir()) == [
            ".compose-config.json", "auth.conf", "compose.yaml", "data", "redis.conf", "secrets.env"]  # no temp file


def test_check_mode_on_a_new_service_writes_nothing(project: Project) -> None:
    run = ok(project.run(project.args(name="fresh"), check=True))
    assert run.changed and "would be deployed" in run.result["msg"]
    assert not project.service_dir("fresh").exists()


def test_absent_keeps_volumes_and_files_unless_purge(project: Project) -> None:
    container = project.container()
    args = {"name": "t", "project": project.name, "project_dir": str(project.dir), "state": "absent"}
    check = ok(project.run(args, check=True))
    assert check.changed and check.result["removed"] == [container]
    assert inspect(container, "{{.State.Running}}") == "true"
    removed = ok(project.run(args))
    assert removed.changed and removed.result["removed"] == [container]
    assert docker("inspect", container, check=False).returncode != 0
    assert docker("volume", "inspect", project.volume, check=False).returncode == 0
    assert (project.service_dir() / "compose.yaml").exists()
    assert not ok(project.run(args)).changed

    ok(project.run(project.args(maxmemory="10mb")))
    purged = ok(project.run(dict(args, purge=True)))
    assert purged.changed and purged.result["removed"] == [container, f"volume {project.volume}"]
    assert docker("volume", "inspect", project.volume, check=False).returncode != 0


def test_the_role_prints_no_secret_at_vvv_with_diff(project: Project, tmp_path: Path) -> None:
    """compose_service's task has no no_log: the module's no_log options must keep the secrets out of -vvv --diff."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Deploy through the role",
        "ansible.builtin.include_role": {"name": "borgstack.stack.compose_service"},
        "vars": {
            "compose_service_name": "viarole",
            "compose_service_project": project.name,
            "compose_service_project_dir": str(project.dir),
            "compose_service_compose": project.compose("viarole").replace(project.container(),
                                                                          project.container("viarole")),
            "compose_service_env": {"APP_TOKEN": SECRET_ENV},
            "compose_service_secret_files": [{"path": "auth.conf", "content": f"token {SECRET_FILE}\n"}],
            "compose_service_files": [{"path": "redis.conf", "content": "maxmemory 0\n"}],
            "compose_service_pull": "never",
            "compose_service_wait_timeout": 60,
        }}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    ansible_playbook = shutil.which("ansible-playbook", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    assert ansible_playbook
    for extra in (["--check"], [], []):
        proc = subprocess.run([ansible_playbook, "-i", "localhost,", "-c", "local", "-vvv", "--diff",
                               "-e", f"ansible_python_interpreter={sys.executable}", *extra,
                               str(tmp_path / "play.yml")], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=300, check=False, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        leaks = find_leaks(output, {"env": SECRET_ENV, "file": SECRET_FILE})
        assert not leaks, f"secrets in the -vvv --diff output: {describe(leaks)}"
        assert "(secret content changed)" in output or "changed=0" in output
    assert "changed=0" in output  # the third run
    assert inspect(project.container("viarole"), "{{.State.Health.Status}}") == "healthy"


JOB_IMAGE = os.environ.get("BORGSTACK_JOB_IMAGE", "borgstack-lab/debian:bookworm")


def job_compose(project: Project, version: str, exit_code: int = 0) -> str:
    """A web service that waits for a one-off job (a migration), as the chatwoot role renders them: the job logs
    each start, does its work (one line in ``runs``) only when the marker on its volume does not hold ``version``
    yet (the app's version: the job's configuration changes only with it), and writes the marker when done."""
    work = f"echo $$APP_VERSION >> /log/runs; exit {exit_code}" if exit_code else "echo $$APP_VERSION >> /log/runs"
    return f"""services:
  web:
    image: {IMAGE}
    container_name: {project.container('web')}
    restart: unless-stopped
    env_file: [{project.service_dir('jobs')}/secrets.env]
    volumes:
      - {project.service_dir('jobs')}/web.conf:/etc/redis-test.conf:ro
    command: ["redis-server", "/etc/redis-test.conf"]
    depends_on:
      migrate: {{condition: service_completed_successfully}}
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 3s
      retries: 10
  migrate:
    image: {JOB_IMAGE}
    container_name: {project.container('migrate')}
    restart: "no"
    labels: {{org.borgstack.job: "true"}}
    environment: {{APP_VERSION: "{version}"}}
    command:
      - sh
      - -c
      - >-
        echo start >> /log/starts;
        [ "$$(cat /log/done 2>/dev/null)" = "$$APP_VERSION" ] && exit 0;
        {work} && echo $$APP_VERSION > /log/done
    volumes:
      - joblog:/log
volumes:
  joblog:
    name: {project.name}_joblog
"""


def job_log(project: Project, name: str) -> list[str]:
    out = docker("run", "--rm", "-v", f"{project.name}_joblog:/log", JOB_IMAGE, "cat", f"/log/{name}", check=False)
    return out.stdout.split()


def test_a_one_off_job_runs_once_per_configuration(project: Project) -> None:  # pylint: disable=too-many-statements
    """A completed job is neither drift nor a failure of `up --wait` nor recreated by a rerun; Compose recreates it
    only when its own configuration changes (the app's version). Compose starts it again whenever it starts or
    recreates a service that depends on it (measured here: ``starts``), so the work is guarded by a marker on the
    job's volume (``runs`` counts the work done) - the pattern of the chatwoot role's migration job."""
    require_docker_images(JOB_IMAGE)
    web, job = project.container("web"), project.container("migrate")

    def args(version: str = "1", maxmemory: str = "0", exit_code: int = 0) -> dict[str, Any]:
        return {"name": "jobs", "project": project.name, "project_dir": str(project.dir),
                "compose": job_compose(project, version, exit_code), "env": {"APP_TOKEN": SECRET_ENV},
                "files": [{"path": "web.conf", "content": f"maxmemory {maxmemory}\n"}],
                "pull": "never", "wait_timeout": 60}

    try:
        first = ok(project.run(args()))
        assert first.changed and sorted(first.result["started"]) == [job, web], first.result
        assert inspect(web, "{{.State.Health.Status}}") == "healthy"
        assert inspect(job, "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"
        assert job_log(project, "runs") == ["1"]
        job_id = inspect(job, "{{.Id}}")

        # The completed job is done: no drift, nothing to do, not started again.
        again = ok(project.run(args()))
        assert not again.changed, again.result
        assert again.result["drift"] == {} and job_log(project, "starts") == ["start"]

        # The web's config file changes: the web is recreated; the job container stays (Compose starts it again as
        # a dependency, the marker makes that a no-op).
        edited = ok(project.run(args(maxmemory="10mb")))
        assert edited.changed and edited.result["recreated"] == [web], edited.result
        assert inspect(web, "{{.State.Health.Status}}") == "healthy"
        assert inspect(job, "{{.Id}}") == job_id and job_log(project, "runs") == ["1"]
        assert len(job_log(project, "starts")) == 2
        assert not ok(project.run(args(maxmemory="10mb"))).changed

        # The web stopped by hand: started again, the work not redone.
        docker("stop", web)
        restarted = ok(project.run(args(maxmemory="10mb")))
        assert restarted.changed and restarted.result["started"] == [web], restarted.result
        assert inspect(job, "{{.Id}}") == job_id and job_log(project, "runs") == ["1"]

        # A new version: the job's configuration changes, Compose recreates it and it does the work once.
        upgraded = ok(project.run(args(version="2", maxmemory="10mb")))
        assert upgraded.changed and job in upgraded.result["recreated"], upgraded.result
        assert inspect(job, "{{.Id}}") != job_id and job_log(project, "runs") == ["1", "2"]
        assert inspect(web, "{{.State.Health.Status}}") == "healthy"
        assert not ok(project.run(args(version="2", maxmemory="10mb"))).changed
        assert job_log(project, "runs") == ["1", "2"]

        # A failing job fails the deploy, and the web is not started on a failed migration.
        docker("rm", "--force", web)
        failed = project.run(args(version="3", maxmemory="10mb", exit_code=3))
        assert failed.failed and "migrate" in failed.result["msg"], failed.result
        assert inspect(job, "{{.State.ExitCode}}") == "3"
        assert docker("inspect", web, check=False).returncode != 0 or inspect(web, "{{.State.Running}}") != "true"
        # In check mode the failed job is reported to be run again.
        check = ok(project.run(args(version="3", maxmemory="10mb", exit_code=3), check=True))
        assert check.changed and "job exited with code 3" in check.result["drift"][job], check.result
    finally:
        names = [n for n in (web, job) if docker("inspect", n, check=False).returncode == 0]
        if names:
            docker("rm", "--force", *names, check=False)
        docker("volume", "rm", f"{project.name}_joblog", check=False)
