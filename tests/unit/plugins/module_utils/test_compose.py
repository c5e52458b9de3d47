# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure functions of compose_deploy (plugins/module_utils/_compose_*.py): files, what needs `up`, jobs, stale
containers, runtime drift (declared state vs docker inspect), volume modes."""
from __future__ import annotations

import copy

import pytest

from ansible_collections.borgstack.stack.plugins.module_utils._compose_base import ARGUMENT_SPEC, SECRET_OPTIONS
from ansible_collections.borgstack.stack.plugins.module_utils._compose_files import (
    config_key,
    env_file_text,
    file_changes,
    parse_mode,
    resolve_id,
)
from ansible_collections.borgstack.stack.plugins.module_utils._compose_runtime import (
    HASH_LABEL,
    container_drift,
    declared_services,
    not_ready,
    parse_hashes,
    parse_ps,
    parse_size,
    plan_services,
    stale_containers,
    volume_drift,
)

# The shape of `docker compose config --format json` for one of our services (trimmed).
CONFIG = {
    "name": "borgstack",
    "services": {
        "redis": {"container_name": "borgstack-redis", "image": "redis:8.2-alpine", "mem_limit": "1745879040",
                  "networks": {"internal": None}, "restart": "unless-stopped"},
        "migrate": {"image": "app:1.0", "labels": {"org.borgstack.job": "true"}, "networks": {"internal": None}},
        "worker": {"image": "app:1.0", "networks": {"internal": None, "borgstack_external": {}},
                   "depends_on": {"migrate": {"condition": "service_completed_successfully", "required": True}}},
    },
    "networks": {"internal": {"name": "borgstack_internal", "external": True},
                 "borgstack_external": {"name": "borgstack_external", "external": True}},
}
RUNNING = {
    "Image": "sha256:" + "a" * 64,
    "NetworkSettings": {"Networks": {"borgstack_internal": {"IPAddress": "172.18.0.2"}}},
    "HostConfig": {"Memory": 1745879040, "RestartPolicy": {"Name": "unless-stopped"}},
}


@pytest.mark.parametrize("value,expected", [
    (None, 0), ("", 0), (1745879040, 1745879040), ("1745879040", 1745879040), ("1665m", 1665 * 1024 ** 2),
    ("2g", 2 * 1024 ** 3), ("512MB", 512 * 1024 ** 2), ("64k", 65536),
])
def test_sizes(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["lots", "12q", True])
def test_a_size_that_is_none_is_refused(value):
    with pytest.raises(ValueError):
        parse_size(value)


def test_declared_services_resolve_network_names_container_names_and_jobs():
    declared = declared_services(CONFIG)
    assert declared["redis"] == {"container": "borgstack-redis", "image": "redis:8.2-alpine",
                                 "networks": ["borgstack_internal"], "memory": 1745879040,
                                 "restart": "unless-stopped", "job": False, "depends_on": []}
    assert declared["worker"]["container"] == "borgstack-worker-1"
    assert declared["worker"]["networks"] == ["borgstack_external", "borgstack_internal"]
    assert declared["worker"]["restart"] == "no" and declared["worker"]["memory"] == 0
    assert declared["migrate"]["job"] is True
    assert declared["worker"]["depends_on"] == ["migrate"] and declared["migrate"]["depends_on"] == []


def test_a_container_as_declared_has_no_drift():
    assert container_drift(declared_services(CONFIG)["redis"], RUNNING, RUNNING["Image"]) == []


@pytest.mark.parametrize("change,expected", [
    (lambda c: c["NetworkSettings"].update(Networks={}), "networks [] instead of ['borgstack_internal']"),
    (lambda c: c["NetworkSettings"]["Networks"].update(bridge={}), "networks ['borgstack_internal', 'bridge']"),
    (lambda c: c["HostConfig"].update(Memory=314572800), "memory limit 314572800 bytes instead of 1745879040"),
    (lambda c: c["HostConfig"].update(Memory=0), "memory limit 0 bytes"),
    (lambda c: c["HostConfig"].update(RestartPolicy={"Name": "no"}), "restart policy no instead of unless-stopped"),
    (lambda c: c.update(Image="sha256:" + "b" * 64), "runs image sha256:bbbbbbbbbbbb instead of redis:8.2-alpine"),
])
def test_each_kind_of_hand_made_change_is_named(change, expected):
    running = copy.deepcopy(RUNNING)
    change(running)
    drift = container_drift(declared_services(CONFIG)["redis"], running, RUNNING["Image"])
    assert len(drift) == 1 and drift[0].startswith(expected), drift


def test_a_missing_container_is_drift():
    assert container_drift(declared_services(CONFIG)["redis"], None, None) == ["container borgstack-redis is missing"]


@pytest.mark.parametrize("uid,gid,mode,expected", [
    (1000, 1000, 0o40700, []),
    (0, 1000, 0o40700, ["owner 0 instead of 1000"]),
    (1000, 0, 0o40700, ["group 0 instead of 1000"]),
    (1000, 1000, 0o40777, ["mode 0777 instead of 0700"]),
    (0, 0, 0o40755, ["owner 0 instead of 1000", "group 0 instead of 1000", "mode 0755 instead of 0700"]),
])
def test_volume_owner_group_and_mode(uid, gid, mode, expected):
    assert volume_drift({"name": "v", "owner": 1000, "group": 1000, "mode": "0700"}, uid, gid, mode) == expected


def test_a_volume_setting_left_out_is_not_compared():
    assert volume_drift({"name": "v", "mode": "0750"}, 0, 0, 0o40750) == []


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------
def test_the_env_file_keeps_the_format_the_role_wrote():
    # The role's template: header, then {{ key }}={{ value | string | to_json }} sorted by key (to_json escapes
    # non-ASCII, as json.dumps does by default).
    assert env_file_text({"B": 5, "A": 'p"w\\n', "C": "ção", "D": True}) == (
        "# Managed by BorgStack. Secrets: root-only.\n"
        'A="p\\"w\\\\n"\nB="5"\nC="\\u00e7\\u00e3o"\nD="True"\n')
    assert env_file_text({}) == "# Managed by BorgStack. Secrets: root-only.\n"


WANTED = {"content": b"x\n", "uid": 0, "gid": 0, "mode": 0o644}


@pytest.mark.parametrize("current,expected", [
    (None, ["created"]),
    ({"content": b"x\n", "uid": 0, "gid": 0, "mode": 0o100644}, []),
    ({"content": b"y\n", "uid": 0, "gid": 0, "mode": 0o100644}, ["content"]),
    ({"content": b"x\n", "uid": 999, "gid": 0, "mode": 0o100644}, ["owner 999 instead of 0"]),
    ({"content": b"x\n", "uid": 0, "gid": 999, "mode": 0o100644}, ["group 999 instead of 0"]),
    ({"content": b"x\n", "uid": 0, "gid": 0, "mode": 0o100600}, ["mode 0600 instead of 0644"]),
    ({"content": b"", "uid": 1, "gid": 1, "mode": 0o100777},
     ["content", "owner 1 instead of 0", "group 1 instead of 0", "mode 0777 instead of 0644"]),
])
def test_file_changes(current, expected):
    assert file_changes(WANTED, current) == expected


def test_a_directory_is_compared_without_content():
    assert file_changes(dict(WANTED, content=None, mode=0o750), {"content": None, "uid": 0, "gid": 0,
                                                                 "mode": 0o40750}) == []


@pytest.mark.parametrize("value,expected", [(None, 0o640), ("", 0o640), ("0400", 0o400), ("750", 0o750),
                                            (0o600, 0o600), ("02750", 0o2750)])
def test_modes(value, expected):
    assert parse_mode(value, 0o640) == expected


@pytest.mark.parametrize("value", ["rw", "0999", "8", True])
def test_a_mode_that_is_none_is_refused(value):
    with pytest.raises(ValueError):
        parse_mode(value, 0o644)


def test_owners_by_name_or_number():
    assert resolve_id("root", "owner") == 0 and resolve_id("root", "group") == 0
    assert resolve_id(999, "owner") == 999 and resolve_id("1000", "group") == 1000
    with pytest.raises(ValueError, match="unknown user"):
        resolve_id("no-such-user-bstest", "owner")


def test_the_argument_spec_masks_every_secret_option():
    """env whole; secret_files' content (its path, owner and mode stay readable)."""
    assert SECRET_OPTIONS == {"env", "secret_files"}
    assert ARGUMENT_SPEC["env"]["no_log"] is True
    assert ARGUMENT_SPEC["secret_files"]["options"]["content"]["no_log"] is True
    assert not ARGUMENT_SPEC["files"]["options"]["content"].get("no_log")


# ----------------------------------------------------------------------------------------------------------------
# What needs `up`
# ----------------------------------------------------------------------------------------------------------------
HASHES = {"redis": "h-redis", "migrate": "h-migrate", "worker": "h-worker"}
IMAGES = {"redis:8.2-alpine": RUNNING["Image"], "app:1.0": RUNNING["Image"]}


def container(service, running=True, health=None, exit_code=0, config_hash=None, **changes):
    spec = declared_services(CONFIG)[service]
    found = copy.deepcopy(RUNNING)
    found["NetworkSettings"]["Networks"] = {name: {} for name in spec["networks"]}
    found["HostConfig"] = {"Memory": spec["memory"], "RestartPolicy": {"Name": spec["restart"]}}
    found["Config"] = {"Labels": {HASH_LABEL: config_hash or HASHES[service]}}
    found["State"] = {"Running": running, "Status": "running" if running else "exited", "ExitCode": exit_code}
    if health:
        found["State"]["Health"] = {"Status": health}
    found.update(changes)
    return found


def all_fine(**overrides):
    inspected = {"borgstack-redis": container("redis", health="healthy"),
                 "borgstack-migrate-1": container("migrate", running=False),
                 "borgstack-worker-1": container("worker")}
    inspected.update(overrides)
    return {name: value for name, value in inspected.items() if value is not None}


def plan(inspected, hashes=None, unknown_hashes=False):
    return plan_services(declared_services(CONFIG), None if unknown_hashes else hashes or HASHES, inspected, IMAGES)


def test_nothing_to_do_when_everything_runs_as_declared():
    assert plan(all_fine()) == {"up": {}, "force": {}, "waiting": []}


@pytest.mark.parametrize("name,found,expected", [
    ("borgstack-redis", None, "container borgstack-redis is missing"),
    ("borgstack-redis", container("redis", running=False), "container borgstack-redis is exited"),
    ("borgstack-worker-1", container("worker", config_hash="old"), "configuration changed"),
])
def test_compose_brings_up_a_missing_stopped_or_changed_container(name, found, expected):
    result = plan(all_fine(**{name: found}))
    service = name.split("-")[1]
    assert list(result["up"]) == [service] and result["up"][service][0].startswith(expected)
    assert result["force"] == {}


def test_unknown_hashes_mean_every_existing_container_may_change():
    """Check mode on a Compose file that cannot be fully resolved yet (its env_file not written)."""
    assert set(plan(all_fine(), unknown_hashes=True)["up"]) == {"redis", "migrate", "worker"}


def test_runtime_drift_needs_a_forced_recreate():
    drifted = container("redis", health="healthy")
    drifted["HostConfig"]["Memory"] = 1
    result = plan(all_fine(**{"borgstack-redis": drifted}))
    assert result["up"] == {} and result["force"]["redis"][0].startswith("memory limit 1 bytes")


def test_another_image_behind_the_tag_needs_a_forced_recreate():
    result = plan_services(declared_services(CONFIG), HASHES, all_fine(), dict(IMAGES, **{"app:1.0": "sha256:new"}))
    assert list(result["force"]) == ["worker"]  # the job is not compared as a running service


def test_a_starting_container_is_only_waited_for():
    result = plan(all_fine(**{"borgstack-redis": container("redis", health="starting")}))
    assert result == {"up": {}, "force": {}, "waiting": ["redis"]}
    assert plan(all_fine(**{"borgstack-redis": container("redis", health="unhealthy")}))["waiting"] == ["redis"]


@pytest.mark.parametrize("found,expected", [
    (container("migrate", running=False, exit_code=0), {}),
    (container("migrate", running=True), {}),  # still running: left alone
    (container("migrate", running=False, exit_code=3), {"migrate": ["job exited with code 3"]}),
    (container("migrate", running=False, config_hash="old"),
     {"migrate": ["configuration changed (Compose config hash)"]}),
    (None, {"migrate": ["container borgstack-migrate-1 is missing"]}),
])
def test_a_job_that_exited_0_with_the_declared_config_is_done(found, expected):
    found_drift = copy.deepcopy(found)
    if found_drift is not None:
        found_drift["NetworkSettings"]["Networks"] = {}  # a job is never compared for runtime drift
    result = plan(all_fine(**{"borgstack-migrate-1": found_drift}))
    assert result["up"] == expected and result["force"] == {} and result["waiting"] == []


def test_stale_containers_are_those_of_this_file_whose_service_is_gone():
    rows = parse_ps("borgstack-redis\tredis\t/opt/s/redis/compose.yaml\n"
                    "borgstack-worker-2\tworker2\t/opt/s/redis/compose.yaml\n"
                    "borgstack-n8n\tn8n\t/opt/s/n8n/compose.yaml\n"
                    "garbage line\n")
    assert len(rows) == 3
    assert stale_containers(rows, "/opt/s/redis/compose.yaml", ["redis"]) == ["borgstack-worker-2"]
    assert stale_containers(rows, "/opt/s/redis/compose.yaml", ["redis", "worker2"]) == []
    assert stale_containers(rows, "/opt/s/n8n/compose.yaml", []) == ["borgstack-n8n"]


def test_hashes_and_readiness():
    assert parse_hashes("redis abc\nworker def\n\n") == {"redis": "abc", "worker": "def"}
    assert not_ready(None) and not_ready({"State": {"Running": False}})
    assert not_ready({"State": {"Running": True, "Health": {"Status": "starting"}}})
    assert not not_ready({"State": {"Running": True}})
    assert not not_ready({"State": {"Running": True, "Health": {"Status": "healthy"}}})


def test_the_config_key_follows_every_input_compose_reads(tmp_path):
    service = tmp_path / "services/app"
    service.mkdir(parents=True)
    (service / "compose.yaml").write_text("services: {}\n")
    (service / "secrets.env").write_text("A=1\n")
    program = tmp_path / "docker-compose"
    program.write_text("v1")
    key = config_key("bs", str(tmp_path), str(service), [str(program), str(tmp_path / "absent")])
    same = config_key("bs", str(tmp_path), str(service), [str(program)])
    assert key == same
    # The cache itself, its temp copy and a staged Compose file do not count.
    for name in (".compose-config.json", ".compose-config.json.x1", ".compose.yaml.x2"):
        (service / name).write_text("anything")
    assert config_key("bs", str(tmp_path), str(service), [str(program)]) == key
    (service / "secrets.env").write_text("A=2\n")
    changed_env = config_key("bs", str(tmp_path), str(service), [str(program)])
    assert changed_env != key
    (tmp_path / ".env").write_text("X=1\n")
    assert config_key("bs", str(tmp_path), str(service), [str(program)]) != changed_env
    program.write_text("v2 with another size")
    assert config_key("bs", str(tmp_path), str(service), [str(program)]) != changed_env
    assert config_key("other", str(tmp_path), str(service), []) != config_key(
        "bs", str(tmp_path), str(service), [])
