# SPDX-License-Identifier: GPL-3.0-or-later
"""The mongodb role, validated WITHOUT a MongoDB server.

No MongoDB server can be obtained on this machine: there is no container registry (``mongo:7.0`` cannot be
pulled) and no Debian package of mongod to build a local image from. So nothing here starts mongod, and these are
NOT exercised:

- the server starting with the rendered mongod.conf (the entrypoint's handling of ``--config``, the WiredTiger cache
  really applied, authorization really enforced);
- the root user the image creates from ``MONGO_INITDB_ROOT_*``, and the mongosh healthcheck logging in with it;
- ``borgstack.stack.mongodb_user`` provisioning ``mongodb_service.users`` against a server, and the host reaching the
  container's address on the internal network (the module itself has unit tests with a fake client);
- idempotence of a real deployment.

What IS checked, through Ansible itself (``ansible-playbook -c local`` from the repository root):

- the role's Compose file and mongod.conf, rendered by ``ansible.builtin.template`` lookups with the role's defaults
  and a sample contract (``mongodb_service``), and with the stack's real wiring (playbooks/group_vars/all: the
  registry's contract) for a given RAM size: the volume and network names every install has, the limit and cache of
  the RAM plan, the root password and the users derived from the master secret;
- ``docker compose config`` accepts the Compose file (with a dummy env file), and its normalised form publishes no
  port, joins only the internal network, has a healthcheck, a memory limit and the named volumes; no secret is in
  the rendered files;
- mongod.conf parses as YAML with the cache size, authorization and bindIp;
- tasks/validate.yml accepts good settings and refuses bad ones (a contract a registry override or a secret
  override could produce), naming users but never printing a password;
- defaults/main.yml and meta/argument_specs.yml name the same variables.

Optional, with ``BORGSTACK_LAB_HOST=<name>`` (a host made by ``lab/lab.sh create``): the role runs against it in
``--check`` mode with pull policy ``missing`` (must complete, on a fresh host without Docker as well), and for real with pull policy ``never``
and no image (must fail before writing anything, saying the image is missing) and with pull policy ``missing``
(the pull fails: no registry; the secret env file must be root-only). The real runs need Docker inside the lab
host (``site.yml --tags docker``) and are skipped otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from role_harness import (assert_outcome, docker_compose_config, expose_role, local_inventory, render_task,
                          run_playbook, run_validation, swarm_stack_config, wiring_inventory)
from lab_prerequisites import require_env, unavailable
import yaml

REPO_ROOT = Path(__file__).resolve().parents[4]
ROLE = REPO_ROOT / "roles" / "mongodb"
LAB_HOST = os.environ.get("BORGSTACK_LAB_HOST", "")
PASSWORD = "sample-root-password-0123"
USER_PASSWORD = "sample-user-password-4567"

# A sample contract (what borgstack_contracts.mongodb holds, plugins/filter/contract.py) with values that differ from
# what the registry gives, so the checks see them pass through.
SERVICE: dict[str, Any] = {
    "name": "mongodb",
    "enabled": True,
    "image": "mongo:7.0",
    "pull": "missing",
    "project": "borgstack",
    "project_dir": "/opt/borgstack",
    "networks": {"internal": "sample_internal", "external": "sample_external"},
    "container": "sample-mongodb",
    "port": 27017,
    "memory_limit_mb": 1536,
    "ram": {"wiredtiger_cache_gb": 0.5},
    "volumes": {"data": "sample_mongodb_data", "config": "sample_mongodb_config"},
    "secrets": {"mongodb_root_password": PASSWORD},
    "users": [
        {"name": "lowcoder", "database": "lowcoder", "password": USER_PASSWORD, "roles": ["readWrite"]},
    ],
}


def service(**changes: Any) -> dict[str, Any]:
    """SERVICE with ``changes`` merged in (one level deep for dicts)."""
    merged = json.loads(json.dumps(SERVICE))
    for key, value in changes.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


SAMPLE: dict[str, Any] = {"mongodb_service": SERVICE}

pytestmark = pytest.mark.integration


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        unavailable(f"{binary} not found")


def _playbook(tmp: Path, plays: list[dict[str, Any]], inventory: Path | None = None,
              extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``plays`` with ansible-playbook from the repository root, on localhost without ``inventory``."""
    return run_playbook(tmp, plays, inventory or local_inventory(tmp), extra or ())


def _render_tasks(out: Path) -> list[dict[str, Any]]:
    return [render_task(f"Render {name}", ROLE / "templates" / template, out / name)
            for template, name in (("compose.yaml.j2", "compose.yaml"), ("mongod.conf.j2", "mongod.conf"))]


def render_with_defaults(tmp: Path, settings: dict[str, Any]) -> tuple[Path, Path]:
    """Render the two files with the role's defaults and ``settings`` over them; the project dir is ``tmp/project``."""
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    # Extra vars win over the defaults file (play vars would not: vars_files take precedence over them).
    extra = tmp / "settings.json"
    settings = dict(settings, mongodb_service=dict(settings["mongodb_service"], project_dir=str(tmp / "project")))
    extra.write_text(json.dumps(settings))
    plays = [{
        "name": "Render the mongodb role's files",
        "hosts": "localhost",
        "gather_facts": False,
        "vars_files": [str(ROLE / "defaults" / "main.yml")],
        "tasks": _render_tasks(out),
    }]
    proc = _playbook(tmp, plays, extra=["-e", f"@{extra}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "compose.yaml", out / "mongod.conf"


def _dummy_env(project_dir: Path) -> Path:
    env_file = project_dir / "services" / "mongodb" / "secrets.env"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text('MONGO_INITDB_ROOT_USERNAME="root"\nMONGO_INITDB_ROOT_PASSWORD="dummy-password-123"\n')
    env_file.chmod(0o600)
    return env_file


def compose_config(compose_file: Path, project_dir: Path) -> dict[str, Any]:
    """``docker compose config``: --quiet must accept the file; the normalised JSON is returned."""
    _require("docker")
    _dummy_env(project_dir)
    return docker_compose_config(compose_file)


# --- Rendered with the role's defaults and sample settings ------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("mongodb-sample")
    compose_file, conf_file = render_with_defaults(tmp, SAMPLE)
    return {"tmp": tmp, "compose_file": compose_file, "conf_file": conf_file,
            "config": compose_config(compose_file, tmp / "project")}


def test_compose_file_is_accepted_and_isolated(sample):
    config = sample["config"]
    services = config["services"]
    assert list(services) == ["mongodb"]
    svc = services["mongodb"]
    observed = {
        "image": svc["image"],
        "container_name": svc["container_name"],
        "command": svc["command"],
        "ports": svc.get("ports", []),
        "expose": svc.get("expose", []),
        "network_mode": svc.get("network_mode"),
        "networks": sorted(svc["networks"]),
        "external networks": sorted(name for name, net in config["networks"].items() if net.get("external")),
        "mem_limit bytes": int(svc.get("mem_limit", 0)),
        "healthcheck starts with": svc["healthcheck"]["test"][:3],
        "healthcheck disabled": svc["healthcheck"].get("disable", False),
        # Compose reads the env file into the environment: the dummy file's two variables, and nothing else.
        "environment": sorted(svc.get("environment", {})),
        "env_file (as rendered)": yaml.safe_load(sample["compose_file"].read_text())["services"]["mongodb"]["env_file"],
        "restart": svc["restart"],
    }
    assert observed == {
        "image": "mongo:7.0",
        "container_name": "sample-mongodb",
        "command": ["mongod", "--config", "/etc/mongo/mongod.conf"],
        "ports": [],
        "expose": [],
        "network_mode": None,
        "networks": ["sample_internal"],
        "external networks": ["sample_internal"],
        "mem_limit bytes": SERVICE["memory_limit_mb"] * 1024 * 1024,
        "healthcheck starts with": ["CMD", "mongosh", "--quiet"],
        "healthcheck disabled": False,
        "environment": ["MONGO_INITDB_ROOT_PASSWORD", "MONGO_INITDB_ROOT_USERNAME"],
        "env_file (as rendered)": [str(sample["tmp"] / "project" / "services" / "mongodb" / "secrets.env")],
        "restart": "unless-stopped",
    }


def test_volumes_are_named_and_config_read_only(sample):
    config = sample["config"]
    mounts = {m["target"]: m for m in config["services"]["mongodb"]["volumes"]}
    data, configdb = SERVICE["volumes"]["data"], SERVICE["volumes"]["config"]
    observed = {
        "/data/db": (mounts["/data/db"]["type"], mounts["/data/db"]["source"]),
        "/data/configdb": (mounts["/data/configdb"]["type"], mounts["/data/configdb"]["source"]),
        "conf": (mounts["/etc/mongo/mongod.conf"]["type"], mounts["/etc/mongo/mongod.conf"]["source"],
                 mounts["/etc/mongo/mongod.conf"].get("read_only", False)),
        "declared volumes": {key: vol.get("name") for key, vol in config["volumes"].items()},
    }
    assert observed == {
        "/data/db": ("volume", data),
        "/data/configdb": ("volume", configdb),
        "conf": ("bind", str(sample["tmp"] / "project" / "services" / "mongodb" / "mongod.conf"), True),
        "declared volumes": {data: data, configdb: configdb},
    }


def test_healthcheck_authenticates_from_the_environment_without_secrets_on_the_command_line(sample):
    test = sample["config"]["services"]["mongodb"]["healthcheck"]["test"]
    script = test[test.index("--eval") + 1]
    assert "process.env.MONGO_INITDB_ROOT_USERNAME" in script
    assert "process.env.MONGO_INITDB_ROOT_PASSWORD" in script
    assert "adminCommand('ping')" in script
    assert not any("--password" in arg or "-p" == arg for arg in test)


def test_no_secret_in_rendered_files(sample):
    for path in (sample["compose_file"], sample["conf_file"]):
        text = path.read_text()
        assert PASSWORD not in text, path
        assert USER_PASSWORD not in text, path


def test_mongod_conf_parses_with_cache_auth_and_bind(sample):
    conf = yaml.safe_load(sample["conf_file"].read_text())
    observed = {
        "cacheSizeGB": conf["storage"]["wiredTiger"]["engineConfig"]["cacheSizeGB"],
        "dbPath": conf["storage"]["dbPath"],
        "authorization": conf["security"]["authorization"],
        "bindIp": conf["net"]["bindIp"],
        "port": conf["net"]["port"],
    }
    assert observed == {
        "cacheSizeGB": SERVICE["ram"]["wiredtiger_cache_gb"],
        "dbPath": "/data/db",
        "authorization": "enabled",
        "bindIp": "0.0.0.0",
        "port": 27017,
    }


def test_no_memory_limit_when_the_plan_gives_none(tmp_path):
    compose_file = render_with_defaults(tmp_path, {"mongodb_service": service(memory_limit_mb=0)})[0]
    svc = compose_config(compose_file, tmp_path / "project")["services"]["mongodb"]
    assert int(svc.get("mem_limit", 0)) == 0


# --- Rendered with the stack's real wiring -------------------------------------------------------------------------


@pytest.mark.parametrize("ram_mb", [16384, 36864])  # 16 GB: the smallest host the whole stack fits
def test_wiring_feeds_the_ram_plan_into_limit_and_cache(tmp_path, ram_mb):
    """playbooks/group_vars/all + a registry with mongodb enabled: limit and cache come from ram_budget, the names
    are the ones every install has (another volume name would start on an empty database)."""
    from ansible_collections.borgstack.stack.plugins.filter.registry import memory_specs, service_registry
    from ansible_collections.borgstack.stack.plugins.filter.sizing import ram_budget

    inventory = wiring_inventory(tmp_path, {
        "borgstack_master_secret": "m" * 48,
        # The contract derives every service's logins at once: FileFlows' (enabled by default) needs this user.
        "borgstack_admin_email": "ti@example.com.br",
        "borgstack_ram_mb": ram_mb,
        "borgstack_services": {"mongodb": {"enabled": True}},
        "stack_project_dir": str(tmp_path / "project"),
    })
    out = tmp_path / "out"
    out.mkdir()
    plays = [{
        "name": "Render with the wiring",
        "hosts": "borgstack",
        "gather_facts": False,
        "tasks": [
            expose_role("mongodb", tasks_from="validate.yml"),
            {"name": "Save the secrets the wiring derived",
             "ansible.builtin.copy": {"dest": str(out / "secrets.json"), "mode": "0600",
                                      "content": "{{ {'root': mongodb_service.secrets.mongodb_root_password, "
                                                 "'users': mongodb_service.users} | to_json }}"}},
            *_render_tasks(out),
        ],
    }]
    proc = _playbook(tmp_path, plays, inventory=inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    registry = yaml.safe_load((REPO_ROOT / "playbooks" / "group_vars" / "all" / "services.yml").read_text())
    merged = service_registry(registry["borgstack_service_defaults"], {"mongodb": {"enabled": True}})
    plan = ram_budget(ram_mb, memory_specs(merged))
    secrets = json.loads((out / "secrets.json").read_text())
    svc = compose_config(out / "compose.yaml", tmp_path / "project")["services"]["mongodb"]
    conf = yaml.safe_load((out / "mongod.conf").read_text())
    from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret

    observed = {
        "container": svc["container_name"],
        "networks": sorted(svc["networks"]),
        "volumes": {m["target"]: m["source"] for m in svc["volumes"] if m["type"] == "volume"},
        "mem_limit MiB": int(svc["mem_limit"]) // (1024 * 1024),
        "cacheSizeGB": conf["storage"]["wiredTiger"]["engineConfig"]["cacheSizeGB"],
        "root password": secrets["root"] == stack_secret("mongodb_root_password", "m" * 48, {}),
        # Lowcoder (enabled by default) is the app that declares a MongoDB user.
        "users": [{k: v for k, v in u.items() if k != "password"} for u in secrets["users"]],
        "user password length": [len(u["password"]) for u in secrets["users"]],
    }
    assert observed == {
        "container": "borgstack-mongodb",
        "networks": ["borgstack_internal"],
        "volumes": {"/data/db": "borgstack_mongodb_data", "/data/configdb": "borgstack_mongodb_config"},
        "mem_limit MiB": plan["services"]["mongodb"]["limit_mb"],
        "cacheSizeGB": plan["mongodb"]["wiredtiger_cache_gb"],
        "root password": True,
        "users": [{"name": "lowcoder", "database": "lowcoder", "roles": ["readWrite"]}],
        "user password length": [40],
    }


# --- tasks/validate.yml ----------------------------------------------------------------------------------------------

GOOD_USER = {"name": "lowcoder", "database": "lowcoder", "password": USER_PASSWORD, "roles": ["readWrite"]}
USERS = "mongodb_service.users: "
VALIDATION_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    # case: (settings over SAMPLE, None when accepted or a fragment of the failure message)
    "sample": ({}, None),
    "plan_minimum": ({"mongodb_service": service(memory_limit_mb=1024, ram={"wiredtiger_cache_gb": 0.25})}, None),
    "role_with_db": ({"mongodb_service": service(
        users=[dict(GOOD_USER, roles=["readWrite", {"role": "read", "db": "reports"}])])}, None),
    "disabled_ignores_bad_values": ({"mongodb_service": service(enabled=False, ram={"wiredtiger_cache_gb": 0},
                                                                users=[{"name": "x"}])}, None),
    "cache_zero": ({"mongodb_service": service(ram={"wiredtiger_cache_gb": 0})}, "the WiredTiger cache (found 0 GB"),
    "cache_above_limit": ({"mongodb_service": service(ram={"wiredtiger_cache_gb": 1.5})},
                          "the WiredTiger cache (found 1.5 GB"),
    "bad_root_username": ({"mongodb_root_username": "ro ot"}, "mongodb_root_username (found 'ro ot')"),
    "short_root_password": ({"mongodb_service": service(secrets={"mongodb_root_password": "short"})},
                            "(borgstack_secret_overrides.mongodb_root_password, when you set one) at least 12"),
    "short_user_password": ({"mongodb_service": service(users=[dict(GOOD_USER, password="tiny-pass")])},
                            USERS + "lowcoder"),
    "bad_user_name": ({"mongodb_service": service(users=[dict(GOOD_USER, name="low coder")])}, USERS + "low coder"),
    "bad_database": ({"mongodb_service": service(users=[dict(GOOD_USER, name="app1", database="a.b")])},
                     USERS + "app1"),
    "roles_as_string": ({"mongodb_service": service(users=[dict(GOOD_USER, name="app2", roles="readWrite")])},
                        USERS + "app2"),
    "roles_missing": ({"mongodb_service": service(users=[{k: v for k, v in GOOD_USER.items() if k != "roles"}])},
                      USERS + "lowcoder"),
    "role_unknown_key": ({"mongodb_service": service(
        users=[dict(GOOD_USER, name="app3", roles=[{"role": "read", "x": 1}])])}, USERS + "app3"),
    "duplicate_user": ({"mongodb_service": service(users=[GOOD_USER, GOOD_USER])}, USERS + "lowcoder"),
    "root_user_in_admin": ({"mongodb_service": service(users=[dict(GOOD_USER, name="root", database="admin")])},
                           USERS + "root"),
}


@pytest.fixture(scope="module")
def validation_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case in one ansible-playbook run: a play per case, its failure (if any) rescued and recorded."""
    tmp = tmp_path_factory.mktemp("mongodb-validate")
    return run_validation(tmp, "mongodb", VALIDATION_CASES, local_inventory(tmp), hosts="localhost",
                          base_vars=SAMPLE, tasks_from="validate.yml")


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation(validation_outcomes, case):
    assert_outcome(validation_outcomes["outcomes"][case], VALIDATION_CASES[case][1])


def test_validation_never_prints_passwords(validation_outcomes):
    text = validation_outcomes["output"] + json.dumps(validation_outcomes["outcomes"])
    assert USERS in text  # the failures were reported...
    for secret in (PASSWORD, USER_PASSWORD, "tiny-pass"):
        assert secret not in text  # ...without a password


# --- defaults and argument specs agree -------------------------------------------------------------------------------


def test_defaults_and_argument_specs_agree():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    python_types = {"bool": bool, "str": str, "path": str, "int": int, "float": float, "list": list, "dict": dict}
    # The contract is the one default that is an expression: the registry's entry, whatever it holds.
    assert defaults.pop("mongodb_service") == "{{ borgstack_contracts.mongodb }}"
    mismatched = []
    for entry_point in ("main", "validate"):
        options = dict(specs[entry_point]["options"])
        contract = options.pop("mongodb_service")
        if (contract["type"], contract.get("required"), contract.get("no_log")) != ("dict", True, True):
            mismatched.append(("mongodb_service", "not a required no_log dict"))
        if set(options) != set(defaults):
            mismatched.append((entry_point, sorted(set(options) ^ set(defaults))))
        for name, option in options.items():
            if name in defaults and not isinstance(defaults[name], python_types[option["type"]]):
                mismatched.append((name, option["type"], type(defaults[name]).__name__))
            if option.get("no_log") and name.endswith("password") and defaults.get(name):
                mismatched.append((name, "placeholder secret in defaults"))
    assert mismatched == []


# --- Optional: against a lab host ----------------------------------------------------------------------------------

@pytest.fixture()
def lab_host() -> str:
    """The lab host named by BORGSTACK_LAB_HOST (skipped without it, a failure under BORGSTACK_REQUIRE_INTEGRATION)."""
    return require_env("BORGSTACK_LAB_HOST", "a host made by lab/lab.sh create")


lab = pytest.mark.usefixtures("lab_host")


def _lab_exec(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", LAB_HOST, *argv], capture_output=True, text=True, check=False,
                          timeout=120)


def _lab_inventory(tmp: Path) -> Path:
    """The stack's wiring (playbooks/group_vars/all) and the lab's settings, for the lab host, MongoDB enabled."""
    inventory_dir = tmp / "lab-inventory"
    (inventory_dir / "group_vars" / "borgstack").mkdir(parents=True)
    (inventory_dir / "group_vars" / "all").symlink_to(REPO_ROOT / "playbooks" / "group_vars" / "all")
    (inventory_dir / "group_vars" / "borgstack" / "main.yml").symlink_to(
        REPO_ROOT / "inventories" / "lab" / "group_vars" / "borgstack" / "main.yml")
    (inventory_dir / "hosts.yml").write_text(yaml.safe_dump({"borgstack": {"hosts": {LAB_HOST: {
        "ansible_connection": "community.docker.docker", "ansible_host": LAB_HOST,
        "ansible_python_interpreter": "/usr/bin/python3"}}}}))
    (inventory_dir / "group_vars" / "borgstack" / "zz_mongodb_test.yml").write_text(yaml.safe_dump({
        # The lab's secret, read by absolute path (the lab inventory's own lookup is relative to its directory).
        "borgstack_master_secret": "{{ lookup('ansible.builtin.pipe', '%s secret') }}" % (REPO_ROOT / "lab" / "lab.sh"),
        "borgstack_services": {"mongodb": {"enabled": True}},
        # A user of the test's own (the lab's registry enables no app that declares one).
        "mongodb_service": "{{ borgstack_contracts.mongodb | combine({'users': %s}) }}" % json.dumps([GOOD_USER]),
    }))
    return inventory_dir / "hosts.yml"


def _lab_root_password() -> str:
    """The root password the wiring derives for the lab (to make sure no output shows it)."""
    from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret

    master = subprocess.run([str(REPO_ROOT / "lab" / "lab.sh"), "secret"], capture_output=True, text=True,
                            check=True, timeout=30).stdout.strip()
    return stack_secret("mongodb_root_password", master, {})


def _lab_has_docker() -> bool:
    return _lab_exec("docker", "version", "--format", "{{.Server.Version}}").returncode == 0


def _lab_play(roles: list[str]) -> list[dict[str, Any]]:
    return [{"name": "Apply the mongodb role", "hosts": "borgstack", "gather_facts": True,
             "roles": [{"role": f"borgstack.stack.{role}"} for role in roles]}]


@lab
def test_lab_check_mode_completes(tmp_path):
    _require("docker")
    # A host where MongoDB was never deployed: check mode validates the Compose file from a temp copy (its env_file
    # not written yet) and writes nothing.
    _lab_exec("rm", "-rf", "/opt/borgstack/services/mongodb")
    # Pull policy missing: with the lab's 'never' and Docker installed, check mode would (rightly) stop at the
    # missing image, which test_lab_missing_image_with_pull_never_fails_before_writing covers.
    proc = _playbook(tmp_path, _lab_play(["mongodb"]), inventory=_lab_inventory(tmp_path),
                     extra=["--check", "-vvv", "-e", "borgstack_pull=missing"])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "failed=0" in output
    assert _service_dir_modes() == {}  # check mode wrote nothing
    assert USER_PASSWORD not in output and _lab_root_password() not in output


def _service_dir_modes() -> dict[str, str]:
    proc = _lab_exec("find", "/opt/borgstack/services/mongodb", "-printf", "%P %m %u\\n")
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines()) if proc.returncode == 0 else {}


def _require_lab_docker_without_mongo_image() -> None:
    _require("docker")
    if not _lab_has_docker():
        unavailable(f"no Docker inside {LAB_HOST} (run site.yml --tags docker against it)")
    if _lab_exec("docker", "image", "inspect", "mongo:7.0").returncode == 0:
        unavailable(f"{LAB_HOST} has a mongo:7.0 image; these tests need a lab host without it")


@lab
def test_lab_missing_image_with_pull_never_fails_before_writing(tmp_path):
    _require_lab_docker_without_mongo_image()
    _lab_exec("rm", "-rf", "/opt/borgstack/services/mongodb")
    proc = _playbook(tmp_path, _lab_play(["stack", "mongodb"]), inventory=_lab_inventory(tmp_path),
                     extra=["-vvv", "-e", "borgstack_pull=never"])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "the image(s) mongo:7.0 are not on this host" in output
    assert "the pull policy is 'never'" in output
    assert _service_dir_modes() == {}  # nothing written, so no secret either
    assert USER_PASSWORD not in output and _lab_root_password() not in output


@lab
def test_lab_failed_pull_leaves_secrets_root_only(tmp_path):
    _require_lab_docker_without_mongo_image()
    proc = _playbook(tmp_path, _lab_play(["stack", "mongodb"]), inventory=_lab_inventory(tmp_path),
                     extra=["-vvv", "-e", "borgstack_pull=missing"])
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output  # no registry: the pull fails
    assert "registry-1.docker.io" in output or "pull access denied" in output
    modes = _service_dir_modes()
    assert modes == {"": "750 root", "secrets.env": "600 root", "compose.yaml": "644 root",
                     "mongod.conf": "644 root"}
    assert USER_PASSWORD not in output and _lab_root_password() not in output
    assert _lab_exec("docker", "ps", "-aq", "--filter", "name=borgstack-mongodb").stdout.strip() == ""


def test_the_cluster_would_place_it_on_the_swarm(sample):
    """Issue 24: on a cluster this service is not deployed yet (the validation refuses it there), but the stack file
    its Compose file becomes is rendered and accepted by ``docker stack config``; nothing runs on a swarm here."""
    config = swarm_stack_config(sample["compose_file"], "mongodb")
    for spec in config["services"].values():
        assert spec["deploy"]["placement"]["constraints"] == ["node.labels.borgstack.data.mongodb == true"]
