"""What the role tests share: a throwaway inventory wired like the stack (group_vars/all linked), a playbook runner,
one play per bad-input case running a role's validation entry point and recording whether it failed and with which
message (how the tests check that `validate` refuses each case naming the variable), the rendering of a thin app
role's Compose file and secret environment with ``docker compose config``, and the checks every app role test makes
of them (only variables the image reads, no upstream default left where it is public, secrets unique and never in
the Compose file or the output, the container's image, name, ports, networks, mounts and memory limit)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

import pytest
import yaml
from lab_prerequisites import unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN = "ti@example.com.br"
DOMAIN = "example.com.br"
CADDY_IMAGE = os.environ.get("BORGSTACK_CADDY_IMAGE", "borgstack-lab/caddy:2.11.7")


def _ansible_bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def wiring_inventory(tmp: Path, group_vars: Mapping[str, Any]) -> Path:
    """An inventory with localhost in the borgstack group, the stack's wiring (playbooks/group_vars/all linked) and
    ``group_vars`` as the operator's settings; returns its hosts file."""
    inventory_dir = tmp / "inventory"
    (inventory_dir / "group_vars" / "borgstack").mkdir(parents=True, exist_ok=True)
    link = inventory_dir / "group_vars" / "all"
    if not link.exists():
        link.symlink_to(REPO_ROOT / "playbooks" / "group_vars" / "all")
    (inventory_dir / "hosts.yml").write_text(yaml.safe_dump({"borgstack": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    (inventory_dir / "group_vars" / "borgstack" / "test.yml").write_text(yaml.safe_dump(dict(group_vars)))
    return inventory_dir / "hosts.yml"


def app_inventory(tmp: Path, master: str, settings: Mapping[str, Any] | None = None) -> Path:
    """``wiring_inventory`` with what every app role test sets (master secret, admin e-mail, example.com.br, a 16 GB
    host, the project directory under ``tmp``) and ``settings`` over it."""
    return wiring_inventory(tmp, {
        "borgstack_master_secret": master,
        "borgstack_admin_email": ADMIN,
        "borgstack_domain": DOMAIN,
        "borgstack_ram_mb": 16384,
        "stack_project_dir": str(tmp / "project"),
        **(settings or {}),
    })


def local_inventory(tmp: Path) -> Path:
    """An inventory with only localhost (group ``all``), local connection; returns its file."""
    inventory = tmp / "local-inventory.yml"
    inventory.write_text(yaml.safe_dump(
        {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                         "ansible_python_interpreter": sys.executable}}}}))
    return inventory


def run_playbook(tmp: Path, plays: List[Dict[str, Any]], inventory: Path,
                 extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """ansible-playbook on ``plays`` (written under ``tmp``) with ``extra`` arguments, from the repository root (its
    ansible.cfg finds the collection)."""
    path = tmp / f"play-{len(list(tmp.glob('play-*.yml')))}.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_STDOUT_CALLBACK="default")
    return subprocess.run([_ansible_bin("ansible-playbook"), "-i", str(inventory), str(path), *extra], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=env, timeout=900, check=False)


def validation_plays(role: str, cases: Mapping[str, Tuple[Any, ...]], results: Path, hosts: str = "borgstack",
                     base_vars: Mapping[str, Any] | None = None, tasks_from: str = "validate") -> List[Dict[str, Any]]:
    """Plays for ``cases`` ({case: (settings, ...)}): each writes results/<case>.json - {"failed": false} or
    {"failed": true, "msg": <the failing task's message>}."""
    plays = []
    for case, (settings, *_rest) in cases.items():
        plays.append({
            "name": f"Case {case}",
            "hosts": hosts,
            "gather_facts": False,
            "vars": {**(base_vars or {}), **settings},
            "tasks": [{
                "name": "Validate",
                "block": [
                    {"name": "Run the role's validation",
                     "ansible.builtin.include_role": {"name": f"borgstack.stack.{role}", "tasks_from": tasks_from}},
                    {"name": "Record success", "ansible.builtin.copy": {
                        "dest": str(results / f"{case}.json"), "mode": "0600", "content": '{"failed": false}'}},
                ],
                "rescue": [
                    {"name": "Record the failure", "ansible.builtin.copy": {
                        "dest": str(results / f"{case}.json"), "mode": "0600",
                        "content": "{{ {'failed': true, 'msg': ansible_failed_result.msg | default('')} | to_json }}"}},
                ],
            }],
        })
    return plays


def run_validation(tmp: Path, role: str, cases: Mapping[str, Tuple[Any, ...]], inventory: Path,
                   more_plays: Callable[[Path], List[Dict[str, Any]]] | None = None,
                   **plays_options: Any) -> Dict[str, Any]:
    """Every case in one ansible-playbook run: ``validation_plays`` (``plays_options`` passed on), then the plays
    ``more_plays(results)`` returns (they write their own results/<name>.json); the run must succeed (each failure is
    rescued). Returns {"outcomes": {case: outcome}, "output": the run's output}."""
    results = tmp / "results"
    results.mkdir()
    plays = validation_plays(role, cases, results, **plays_options)
    if more_plays is not None:
        plays += more_plays(results)
    proc = run_playbook(tmp, plays, inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"outcomes": outcomes(results), "output": proc.stdout + proc.stderr}


def outcomes(results: Path) -> Dict[str, Dict[str, Any]]:
    """{case: outcome} read back from the files the plays wrote."""
    return {path.stem: json.loads(path.read_text()) for path in results.glob("*.json")}


def expose_role(role: str, tasks_from: str = "validate") -> Dict[str, Any]:
    """A task that runs a role's validation with the wiring and keeps its defaults for the tasks after it."""
    return {"name": f"Validate and expose the {role} role's defaults",
            "ansible.builtin.include_role": {"name": f"borgstack.stack.{role}", "tasks_from": tasks_from,
                                             "public": True}}


def render_task(name: str, template: Path, dest: Path, mode: str = "0644") -> Dict[str, Any]:
    """A task that renders one of the collection's templates with everything the play has exposed."""
    return {"name": name,
            "ansible.builtin.copy": {"dest": str(dest), "mode": mode,
                                     "content": "{{ lookup('ansible.builtin.template', '%s') }}" % template}}


def assert_outcome(outcome: Mapping[str, Any], fragment: str | None) -> None:
    """A case without a fragment passed validation; one with a fragment failed with it in the message."""
    if fragment is None:
        assert outcome == {"failed": False}
    else:
        assert outcome["failed"] is True, outcome
        assert fragment in str(outcome["msg"]), outcome["msg"]


def docker_compose_config(compose_file: Path) -> Dict[str, Any]:
    """``docker compose config`` of a rendered file: --quiet must accept it; the normalised JSON is returned."""
    base = ["docker", "compose", "--project-name", "borgstack", "--file", str(compose_file), "config"]
    quiet = subprocess.run([*base, "--quiet"], capture_output=True, text=True, check=False, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run([*base, "--format", "json"], capture_output=True, text=True, check=False, timeout=60)
    assert full.returncode == 0, full.stderr
    return json.loads(full.stdout)


# What a cluster's swarm settings hold besides the plan (playbooks/group_vars/all/stack.yml, compose_service_swarm).
SWARM_SETTINGS = {"network": "borgstack_cluster", "replicas": {}, "edge": ["caddy"], "single": ["evolution_api"],
                  "stateful": ["postgresql", "redis", "mongodb", "seaweedfs"], "stop_first": ["n8n"]}


def swarm_stack_config(compose_file: Path, service: str) -> Dict[str, Any]:
    """The stack file a cluster would deploy for ``service`` (filter swarm_stack of the rendered Compose file),
    accepted by ``docker stack config`` (no swarm needed: it only parses and checks the file); the parsed output."""
    from ansible_collections.borgstack.stack.plugins.filter.cluster import swarm_stack  # pylint: disable=import-outside-toplevel
    stack = swarm_stack(compose_file.read_text(), service, SWARM_SETTINGS)
    stack_file = compose_file.with_name("stack.yaml")
    stack_file.write_text(yaml.safe_dump(stack))
    proc = subprocess.run(["docker", "stack", "config", "--compose-file", str(stack_file)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    for key, spec in config["services"].items():
        assert list(spec["networks"]) == ["borgstack_cluster"], key
        if spec["deploy"].get("mode") == "replicated-job":
            # A one-off job (a migration): one task run to completion, retried a few times, no endpoint and no
            # rolling update of its own.
            assert spec["deploy"]["restart_policy"]["condition"] == "on-failure", key
            assert "endpoint_mode" not in spec["deploy"] and "update_config" not in spec["deploy"], key
            continue
        assert spec["deploy"]["endpoint_mode"] == "dnsrr", key
        assert spec["deploy"]["update_config"]["failure_action"] == "rollback", key
    return config


def secrets_env_task(template: Path, dest: Path) -> Dict[str, Any]:
    """A task that renders a role's secrets.env.j2 (the mapping tasks/main.yml hands compose_service as
    compose_service_env) the way compose_deploy writes secrets.env: KEY="json string", one a line, root-only."""
    return {"name": "Render the secret environment",
            "vars": {"__env": "{{ lookup('ansible.builtin.template', '%s') | from_yaml }}" % template},
            "ansible.builtin.copy": {"dest": str(dest), "mode": "0600",
                                     "content": "{% for key, value in __env | dictsort %}"
                                                "{{ key }}={{ value | string | to_json }}\n{% endfor %}"}}


def render_app(tmp: Path, role: str, inventory: Path, wiring: Mapping[str, str], secrets_env: bool = True,
               more_tasks: Iterable[Dict[str, Any]] = (), play: Mapping[str, Any] | None = None) -> Dict[str, Any]:
    """Render a thin app role's compose.yaml (and secrets.env unless ``secrets_env`` is false) into
    tmp/project/services/<role> as the role would, its validate entry point first, then run ``more_tasks`` and save
    ``wiring`` ({key: Jinja expression}) as tmp/wiring.json; the run must succeed and ``docker compose config`` accept
    the Compose file. Returns {"tmp", "out" (the service directory), "config" (the normalised Compose JSON),
    "wiring" (the saved values), "output" (the run's output)}."""
    if shutil.which("docker") is None:
        pytest.fail("docker not found: `docker compose config` is part of this test")
    role_dir = REPO_ROOT / "roles" / role
    out = tmp / "project" / "services" / role
    out.mkdir(parents=True)
    tasks = [expose_role(role),
             render_task("Render the Compose file", role_dir / "templates" / "compose.yaml.j2", out / "compose.yaml")]
    if secrets_env:
        tasks.append(secrets_env_task(role_dir / "templates" / "secrets.env.j2", out / "secrets.env"))
    tasks.extend(more_tasks)
    saved = ", ".join(f"'{key}': {expression}" for key, expression in wiring.items())
    tasks.append({"name": "Save what the wiring derived",
                  "ansible.builtin.copy": {"dest": str(tmp / "wiring.json"), "mode": "0600",
                                           "content": "{{ {%s} | to_json }}" % saved}})
    plays = [{"name": f"Render the {role} role's files with the stack's wiring", "hosts": "borgstack",
              "gather_facts": False, **(play or {}), "tasks": tasks}]
    proc = run_playbook(tmp, plays, inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"tmp": tmp, "out": out, "config": docker_compose_config(out / "compose.yaml"),
            "wiring": json.loads((tmp / "wiring.json").read_text()), "output": proc.stdout + proc.stderr}


def assert_reads_only(env: Mapping[str, Any], reads: Iterable[str], image: str) -> None:
    """Every variable of ``env`` is one the image reads (``reads``: the facts file's list, from upstream's source)."""
    unknown = sorted(set(env) - set(reads))
    assert unknown == [], f"variables {image} does not read: {unknown}"


def assert_public_defaults_overridden(env: Mapping[str, Any], facts: Mapping[str, Any],
                                      keep: Iterable[str] = ()) -> None:
    """Every variable of facts["must_set"] is set to a non-empty value, and none (but ``keep``) to upstream's value
    (facts["reads"][name])."""
    missing = sorted(set(facts["must_set"]) - {k for k, v in env.items() if v not in (None, "")})
    assert missing == [], f"left to upstream's default (an empty value counts as unset): {missing}"
    kept = sorted(k for k in facts["must_set"] if env[k] == facts["reads"][k] and k not in set(keep))
    assert kept == [], f"set, but to upstream's value: {kept}"


def unique_secrets(env: Mapping[str, str], names: Iterable[str]) -> Dict[str, str]:
    """{name: value} of the secret variables ``names``; no two share a value."""
    secrets = {name: env[name] for name in names}
    assert len(set(secrets.values())) == len(secrets), "two secrets share a value"
    return secrets


def assert_secrets_hidden(rendered: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
    """No value of ``secrets`` ({name: value}) is in the rendered Compose file or in the play's output."""
    compose_text = (rendered["out"] / "compose.yaml").read_text()
    in_compose = sorted(name for name, value in secrets.items() if value in compose_text)
    assert in_compose == [], f"secrets in the Compose file: {in_compose}"
    printed = sorted(name for name, value in secrets.items() if value in rendered["output"])
    assert printed == [], f"secrets printed: {printed}"


def container_facts(service: Mapping[str, Any]) -> Dict[str, Any]:
    """What the container tests compare of a service of ``docker compose config``: image, container name, published
    ports, networks (sorted), mounts ({target: (type, source)}) and the memory limit in MiB."""
    return {
        "image": service["image"],
        "container_name": service["container_name"],
        "ports": service.get("ports", []),
        "networks": sorted(service["networks"]),
        "mounts": {m["target"]: (m["type"], m["source"]) for m in service["volumes"]},
        "mem_limit MiB": int(service["mem_limit"]) // (1024 * 1024),
    }


@contextlib.contextmanager
def real_caddy(caddyfile: Path, host: str, ready_status: str) -> Iterator[Callable[..., str]]:
    """A real Caddy (the lab image) serving the rendered ``caddyfile``, once ``caddy validate`` accepted it. Yields
    ``status(*curl_args)``: the HTTP status of ``https://<host>/`` through it as text, or "held" when Caddy accepted
    the request and still holds it for an upstream that is not there (its retry window; curl's own 8 s limit ends
    it). Waits until a plain request answers ``ready_status`` - proof that the site is up before anything is
    concluded from an answer."""
    if subprocess.run(["docker", "image", "inspect", CADDY_IMAGE], capture_output=True, check=False).returncode:
        unavailable(f"{CADDY_IMAGE} is not on this machine (lab/build-images.sh builds it)")
    check = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{caddyfile}:/etc/caddy/Caddyfile:ro",
                            CADDY_IMAGE, "caddy", "validate", "--config", "/etc/caddy/Caddyfile", "--adapter",
                            "caddyfile"], capture_output=True, text=True, check=False, timeout=120)
    assert check.returncode == 0, check.stderr
    container = subprocess.run(["docker", "run", "-d", "--rm", "-v", f"{caddyfile}:/etc/caddy/Caddyfile:ro",
                                CADDY_IMAGE], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    try:
        address = subprocess.run(["docker", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", container],
                                 capture_output=True, text=True, check=True).stdout.strip()

        def status(*curl_args: str) -> str:
            done = subprocess.run(["curl", "-sk", "--max-time", "8", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--resolve", f"{host}:443:{address}", *curl_args, f"https://{host}/"],
                                  capture_output=True, text=True, check=False, timeout=30)
            # curl exits 28 when its time limit ends a request Caddy accepted and still holds.
            return "held" if done.returncode == 28 and done.stdout == "000" else done.stdout

        deadline = time.monotonic() + 60
        while (last := status()) != ready_status and time.monotonic() < deadline:
            time.sleep(1)
        assert last == ready_status, f"Caddy never answered {ready_status} for {host} (last: {last})"
        yield status
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
