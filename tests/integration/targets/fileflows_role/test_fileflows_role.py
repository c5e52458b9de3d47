# SPDX-License-Identifier: GPL-3.0-or-later
"""The fileflows role and the Caddy basic_auth in front of it, validated WITHOUT a FileFlows container.

No image ``revenz/fileflows:25.09`` can be obtained here (no container registry; FileFlows ships only as a binary
image and its application source is no longer public). So NOTHING here starts FileFlows, and these are NOT
exercised:

- the entrypoint creating the PUID/PGID user and running the server as it, the bash health check answering, the
  web console behind the registry's CSP (unverified: see services.yml), the SignalR websockets through Caddy;
- that 25.09 still reads exactly the variables of fileflows-25.09-env.yml (taken from the newest public copies of
  upstream's entrypoint, not from the 25.09 tag);
- the Flow Runners value being applied (FileFlows keeps it in its database; the play only checks and prints it).

What IS checked, through Ansible itself (``ansible-playbook -c local``) with the stack's real wiring
(playbooks/group_vars/all linked into a throwaway inventory):

- the Compose file rendered from the role's template; ``docker compose config`` accepts it; its environment holds only
  variables the image reads and sets the ones whose default is wrong; volumes, the shared media directory, networks,
  the memory limit from the RAM plan; no port published;
- the Caddyfile the caddy role renders with the wiring: FileFlows' site has basic_auth with the admin e-mail and a
  bcrypt hash of the derived password (never the password); ``caddy validate`` accepts it, and a real Caddy
  (borgstack-lab/caddy:2.11.7, when built) answers 401 without the password or with a wrong one and lets the right
  one through to the (absent) upstream, where Caddy holds it for its retry window (lb_try_duration) before a 502;
- the role's ``validate`` entry point refuses issue 8's bad input - a processing-node count of 0 or above the host's
  cores - and other bad settings, naming the variable.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from role_harness import (ADMIN, REPO_ROOT, app_inventory, assert_outcome, assert_reads_only, container_facts,
                          expose_role, real_caddy, render_app, render_task, run_validation, swarm_stack_config)
import yaml

HERE = Path(__file__).resolve().parent
FACTS = yaml.safe_load((HERE / "fileflows-25.09-env.yml").read_text())
MASTER = "m" * 24 + "FileFlows-Test-Master-0123456789"
HOST = "fileflows.example.com.br"

pytestmark = pytest.mark.integration


def _inventory(tmp: Path) -> Path:
    """The app roles' throwaway inventory, with what Caddy needs and a data directory under ``tmp``."""
    return app_inventory(tmp, MASTER, {"caddy_acme_email": ADMIN, "caddy_tls_internal": True,
                                       "borgstack_data_dir": str(tmp / "data")})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Render the role's compose.yaml and Caddy's Caddyfile with the wiring, then ``docker compose config``."""
    tmp = tmp_path_factory.mktemp("fileflows")
    caddy = [expose_role("caddy"),
             render_task("Render the Caddyfile", REPO_ROOT / "roles" / "caddy" / "templates" / "Caddyfile.j2",
                         tmp / "Caddyfile")]
    return render_app(tmp, "fileflows", _inventory(tmp), secrets_env=False, more_tasks=caddy,
                      play={"gather_facts": True, "gather_subset": ["min", "hardware"]}, wiring={
                          # Derived here from the master secret as the wiring derived it before the contract.
                          "password": "'basic_auth_fileflows' | borgstack.stack.stack_secret(borgstack_master_secret,"
                                      " borgstack_secret_overrides, versions=borgstack_secret_versions)",
                          "service_password": "fileflows_service.basic_auth.password",
                          "auth": "borgstack_registry"
                                  " | borgstack.stack.basic_auth_users(borgstack_master_secret, borgstack_secret_overrides,"
                                  " borgstack_admin_email, versions=borgstack_secret_versions)",
                          "plan": "borgstack_ram_plan.services.fileflows.limit_mb",
                          "runners": "fileflows_runners | int", "vcpus": "fileflows_host_vcpus | int",
                          "media": "fileflows_media_dir", "health": "borgstack_health_services",
                          "login": "borgstack_registry | borgstack.stack.login_report(borgstack_domain,"
                                   " stack_project_dir, borgstack_admin_email)"})


def test_every_variable_we_set_is_read_by_the_image(rendered):
    env = rendered["config"]["services"]["fileflows"]["environment"]
    assert_reads_only(env, FACTS["reads"], "fileflows:25.09")
    missing = sorted(k for k in FACTS["must_set"] if not env.get(k))
    assert missing == [], f"left to the image's default: {missing}"
    assert env["PUID"] != "0" and env["TZ"] == "America/Sao_Paulo"


def test_container_volumes_media_networks_limit_and_healthcheck(rendered):
    svc = rendered["config"]["services"]["fileflows"]
    observed = {
        **container_facts(svc),
        "healthcheck": svc["healthcheck"]["test"][:3],
    }
    assert observed == {
        "image": "revenz/fileflows:25.09",
        "container_name": "borgstack-fileflows",
        "ports": [],
        "networks": ["borgstack_external", "borgstack_internal"],
        "mounts": {"/app/Data": ("volume", "borgstack_fileflows_data"),
                   "/app/Logs": ("volume", "borgstack_fileflows_logs"),
                   "/temp": ("volume", "borgstack_fileflows_temp"),
                   "/media": ("bind", rendered["wiring"]["media"])},
        "mem_limit MiB": rendered["wiring"]["plan"],
        "healthcheck": ["CMD", "bash", "-c"],
    }
    assert rendered["wiring"]["media"] == str(rendered["tmp"] / "data" / "media")
    # The healthcheck script, as bash receives it ($$ is Compose's escape for $).
    script = svc["healthcheck"]["test"][3]
    assert "/dev/tcp/127.0.0.1/5000" in script and "$status" in script


def test_runners_follow_the_hosts_cores(rendered):
    wiring = rendered["wiring"]
    assert wiring["vcpus"] == os.cpu_count() or wiring["vcpus"] >= 1
    assert wiring["runners"] == max(1, wiring["vcpus"] // 4)


def test_caddyfile_asks_for_the_password_and_never_holds_it(rendered):
    import bcrypt

    text = (rendered["tmp"] / "Caddyfile").read_text()
    password = rendered["wiring"]["password"]
    assert rendered["wiring"]["service_password"] == password  # what the role writes to admin-password
    assert len(password) >= 40 and password not in text and password not in rendered["output"]
    block = text[text.index(f"{HOST} {{"):]
    block = block[:block.index("\n}\n")]
    auth = block[block.index("basic_auth {"):]
    user, hashed = auth.splitlines()[1].split()
    assert user == ADMIN and bcrypt.checkpw(password.encode(), hashed.encode())
    assert block.index("basic_auth {") < block.index("reverse_proxy borgstack-fileflows:5000")
    assert "wss://fileflows.example.com.br" in block  # websockets: the console's SignalR connection
    assert "max_size 4096MiB" in block
    lowcoder = text[text.index("lowcoder.example.com.br {"):]
    assert "basic_auth" not in lowcoder[:lowcoder.index("\n}\n")]


def test_health_check_expects_401_and_the_login_line_names_the_password_file(rendered):
    checks = {c["name"]: c for c in rendered["wiring"]["health"]}
    assert checks["fileflows"]["public_url"] == f"https://{HOST}/"
    assert checks["fileflows"]["public_expect_status"] == [401]
    line = next(line for line in rendered["wiring"]["login"] if line.startswith("fileflows:"))
    assert line == (f"fileflows: https://{HOST}/ - user {ADMIN}; first password: sudo cat "
                    f"{rendered['tmp'] / 'project'}/services/fileflows/admin-password")


def test_caddy_validates_the_caddyfile_and_enforces_the_password(rendered):
    """A real Caddy with the rendered Caddyfile: 401 without or with a wrong password; with the right one the request
    passes and goes to the (absent) upstream, where Caddy holds it for its retry window or answers 502 - anything
    but 401."""
    with real_caddy(rendered["tmp"] / "Caddyfile", HOST, "401") as status:
        observed = {"none": status(), "wrong": status("-u", f"{ADMIN}:wrong-password"),
                    "right": status("-u", f"{ADMIN}:{rendered['wiring']['password']}")}
    assert observed["none"] == "401" and observed["wrong"] == "401", observed
    assert observed["right"] in ("held", "502"), observed


# --- The validate entry point with bad input ---------------------------------------------------------------------

VALIDATION_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "wiring": ({}, None),
    "runners_zero": ({"fileflows_host_vcpus": 4, "fileflows_runners": 0}, "fileflows_runners (files processed at once, found '0')"),
    "runners_above_cores": ({"fileflows_host_vcpus": 4, "fileflows_runners": 5},
                            "fileflows_runners (files processed at once, found '5') must be a whole number from 1 to "
                            "this host's 4 vCPUs"),
    "runners_all_cores": ({"fileflows_host_vcpus": 4, "fileflows_runners": 4}, None),
    "runners_not_a_number": ({"fileflows_runners": "many"}, "fileflows_runners"),
    "root_puid": ({"fileflows_puid": 0}, "fileflows_puid / fileflows_pgid not 0"),
    "media_dir_root": ({"fileflows_media_dir": "/"}, "fileflows_media_dir an absolute directory of its own"),
    "bad_timezone": ({"fileflows_timezone": "Brasil/Recife"}, "fileflows_timezone"),
    "disabled_ignores_bad_values": ({"borgstack_services": {"fileflows": {"enabled": False}}, "fileflows_runners": 0},
                                    None),
}


@pytest.fixture(scope="module")
def validation_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fileflows-validate")
    return run_validation(tmp, "fileflows", VALIDATION_CASES, _inventory(tmp))


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_validation(validation_outcomes, case):
    assert_outcome(validation_outcomes["outcomes"][case], VALIDATION_CASES[case][1])


def test_the_cluster_would_place_it_on_the_swarm(rendered):
    """Issue 24: on a cluster this service is not deployed yet (the validation refuses it there), but the stack file
    its Compose file becomes is rendered and accepted by ``docker stack config``; nothing runs on a swarm here."""
    config = swarm_stack_config(rendered["out"] / "compose.yaml", "fileflows")
    for spec in config["services"].values():
        assert spec["deploy"]["replicas"] >= 1 and "placement" not in spec["deploy"]
