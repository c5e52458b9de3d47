# SPDX-License-Identifier: GPL-3.0-or-later
"""A service role takes what the stack decides through one option, ``<role>_service`` (its contract,
``borgstack_contracts.<role>``, plugins/filter/contract.py), and holds only its app's own settings.

For every role named after a service of the registry (playbooks/group_vars/all/services.yml):

- every option of its argument spec (entry ``main``) is either ``<role>_service`` or an app setting: one with its
  default in ``roles/<role>/defaults/main.yml``, not ``required`` (a value given from outside) and not set by
  playbooks/group_vars/all (wiring outside the contract);
- its defaults set ``<role>_service: "{{ borgstack_contracts.<role> }}"``, exactly;
- no literal default repeats a value of the registry (an image, a port, a Redis database, a bucket, a database
  name...) or one derived from it (a volume ``borgstack_<service>_<key>``, a container ``<project>-<name>``) or the
  stack-wide settings the contract carries (project, project directory, networks): a value lives in one place.

The checks are plain functions of a role directory, run on the real roles and on small made-up ones (one that
complies, and one per rule that breaks it) so that each check is seen to pass and to fail.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GROUP_VARS = ROOT / "playbooks" / "group_vars" / "all"
SERVICES: Dict[str, Any] = yaml.safe_load((GROUP_VARS / "services.yml").read_text(encoding="utf-8"))[
    "borgstack_service_defaults"]
_WIRING = yaml.safe_load((GROUP_VARS / "stack.yml").read_text(encoding="utf-8"))
# The stack-wide settings the contract carries, as the shipped group_vars set them.
STACK = {key: _WIRING[key] for key in ("stack_project_name", "stack_project_dir", "stack_internal_network",
                                       "stack_external_network")}
SERVICE_ROLES = sorted(name for name in SERVICES if (ROOT / "roles" / name / "tasks" / "main.yml").exists())

# Registry keys whose values are not settings a role could copy (prose, references to other services, enums).
_SKIPPED_KEYS = frozenset(("why", "change", "shared_with", "requires", "kind", "layer", "enabled", "memory",
                           "rotation", "backup", "length", "suffix"))
# Integers compare only where the role variable says what it holds (0 or 1 are every other setting's value too):
# registry key -> (words one of which the variable's name holds, whether only the role's own entry counts).
_INT_KEYS = {"port": (("port",), False), "redis_db": (("redis_db", "redis_database"), True)}
_MIN_STRING = 3  # "/" (a login path) is no one's value in particular


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None


def _leaves(value: Any, path: str) -> Iterator[Tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _key(path: str) -> str:
    """The last key of a leaf's path (``a.b.shared_with[0]`` -> ``shared_with``)."""
    return re.sub(r"(\[[0-9]+\])+$", "", path.rsplit(".", 1)[-1])


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def contract_value(role: str) -> str:
    return f"{{{{ borgstack_contracts.{role} }}}}"


def wiring_outside_the_contract(group_vars: Path = GROUP_VARS) -> Dict[str, str]:
    """{variable: file} for every variable the playbooks' group_vars set (what overrides a role default)."""
    out: Dict[str, str] = {}
    for path in sorted(group_vars.glob("*.yml")):
        shown = str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)
        for name in _load(path) or {}:
            out[str(name)] = shown
    return out


def spec_problems(role_dir: Path, wired: Mapping[str, str]) -> List[str]:
    """Options of the argument spec (entry ``main``) that are neither ``<role>_service`` nor an app setting."""
    role = role_dir.name
    specs = (_load(role_dir / "meta" / "argument_specs.yml") or {}).get("argument_specs") or {}
    if "main" not in specs:
        return [f"roles/{role}/meta/argument_specs.yml has no entry point 'main'"]
    options = specs["main"].get("options") or {}
    defaults = _load(role_dir / "defaults" / "main.yml") or {}
    contract = f"{role}_service"
    where = f"roles/{role}/meta/argument_specs.yml (main)"
    problems = []
    if contract not in options:
        problems.append(f"{where}: no option {contract} (the role's contract, borgstack_contracts.{role})")
    for name, option in options.items():
        if name == contract:
            continue
        if name not in defaults:
            problems.append(f"{where}: {name} has no default in roles/{role}/defaults/main.yml - an app setting "
                            f"needs one there; what the stack decides comes through {contract}")
        elif (option or {}).get("required") is True:
            problems.append(f"{where}: {name} is required, so it is given from outside the role - read it from "
                            f"{contract} (borgstack_contracts.{role}) instead")
        if name in wired:
            problems.append(f"{where}: {name} is set by {wired[name]} - wiring outside the contract; "
                            f"read it from {contract} in the role's defaults")
    return problems


def contract_default_problems(role_dir: Path) -> List[str]:
    """The role's defaults must set ``<role>_service`` to its contract, exactly."""
    role = role_dir.name
    defaults = _load(role_dir / "defaults" / "main.yml") or {}
    name, wanted = f"{role}_service", contract_value(role)
    if name not in defaults:
        return [f"roles/{role}/defaults/main.yml lacks {name}: \"{wanted}\""]
    if defaults[name] != wanted:
        return [f"roles/{role}/defaults/main.yml: {name} is {defaults[name]!r}; it must be exactly \"{wanted}\""]
    return []


def registry_values(services: Mapping[str, Any], stack: Mapping[str, str]) -> List[Tuple[str, str, Any]]:
    """(service, where it comes from, value) for every value a role could copy: the entries' literal values, the
    volume and container names derived from them, and the stack-wide settings."""
    project = stack["stack_project_name"]
    values: List[Tuple[str, str, Any]] = []
    for service, entry in services.items():
        for key, value in (entry or {}).items():
            if key in _SKIPPED_KEYS:
                continue
            for path, leaf in _leaves(value, f"borgstack_service_defaults.{service}.{key}"):
                if leaf is None or isinstance(leaf, bool) or _key(path) in _SKIPPED_KEYS:
                    continue
                values.append((service, path, leaf))
        for key in (entry or {}).get("volumes") or {}:
            values.append((service, f"the volume of borgstack_service_defaults.{service}.volumes.{key}",
                           f"borgstack_{service}_{key}"))
        for key, spec in ((entry or {}).get("containers") or {}).items():
            replicas = (spec or {}).get("replicas", 1) if (spec or {}).get("kind") == "worker" else None
            names = [f"{project}-{key}"] if replicas is None else [f"{project}-{key}-{i}" for i in range(1, 4)]
            for container in names:
                values.append((service, f"the container of borgstack_service_defaults.{service}.containers.{key}",
                               container))
    for key, value in stack.items():
        values.append(("", f"{key} (the contract's stack settings)", value))
    return values


# The project's name ("borgstack") is also a fine name for other things (SeaweedFS' S3 identity): it counts only in a
# variable that says it holds the project.
_NAMED_ONLY = {"stack_project_name": "project"}


def _same(variable: str, value: Any, role: str, service: str, path: str, registry_value: Any) -> bool:
    if isinstance(value, bool) or isinstance(registry_value, bool) or type(value) is not type(registry_value):
        return False
    if isinstance(value, str):
        word = _NAMED_ONLY.get(path.split(" ", 1)[0], "")
        return len(value) >= _MIN_STRING and value == registry_value and word in variable.lower()
    if isinstance(value, int):
        key = _key(path)
        if key not in _INT_KEYS or value != registry_value:
            return False
        words, own_only = _INT_KEYS[key]
        return any(word in variable.lower() for word in words) and (service == role or not own_only)
    return False


def duplicate_problems(role_dir: Path, services: Mapping[str, Any], stack: Mapping[str, str]) -> List[str]:
    """Literal defaults of the role that repeat a registry value (or one derived from it)."""
    role = role_dir.name
    defaults = _load(role_dir / "defaults" / "main.yml") or {}
    known = registry_values(services, stack)
    problems = []
    for name, default in defaults.items():
        if name == f"{role}_service":
            continue
        for variable, value in _leaves(default, str(name)):
            if _is_template(value):
                continue
            sources = [path for service, path, registry_value in known
                       if _same(variable, value, role, service, path, registry_value)]
            if sources:
                problems.append(f"roles/{role}/defaults/main.yml: {variable} = {value!r} repeats "
                                f"{' and '.join(dict.fromkeys(sources))} - a value lives in one place: read it "
                                f"from {role}_service")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# The real service roles
# ---------------------------------------------------------------------------------------------------------------

def test_every_service_of_the_registry_has_its_role():
    assert SERVICE_ROLES == sorted(SERVICES), f"services without a role: {sorted(set(SERVICES) - set(SERVICE_ROLES))}"


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_options_are_app_settings_or_the_contract(role):
    problems = spec_problems(ROOT / "roles" / role, wiring_outside_the_contract())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_defaults_set_the_contract(role):
    problems = contract_default_problems(ROOT / "roles" / role)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", SERVICE_ROLES)
def test_defaults_repeat_no_registry_value(role):
    problems = duplicate_problems(ROOT / "roles" / role, SERVICES, STACK)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# The checks themselves, on made-up roles
# ---------------------------------------------------------------------------------------------------------------

FIXTURE_SERVICES = {
    "shop": {"enabled": True, "layer": "apps", "image": "example/shop:1.4.2", "requires": ["postgresql"],
             "containers": {"shop": {"kind": "web", "port": 8088, "health": "/healthz"},
                            "shop-worker": {"kind": "worker", "replicas": 1}},
             "postgres": {"database": "shopdb", "extensions": []}, "redis_db": 6, "s3_bucket": "shop-media",
             "volumes": {"uploads": {"backup": "files"}},
             "secrets": {"shop_key": {"rotation": "never", "why": "it encrypts the orders"}}},
    "postgresql": {"enabled": True, "layer": "data", "image": "postgres:17.2",
                   "containers": {"postgresql": {"kind": "web", "port": 5432}}, "volumes": {"data": {"backup": "dump"}}},
}
FIXTURE_STACK = {"stack_project_name": "borgstack", "stack_project_dir": "/opt/borgstack",
                 "stack_internal_network": "borgstack_internal", "stack_external_network": "borgstack_external"}

COMPLIANT_SPEC = {"argument_specs": {"main": {"short_description": "Shop", "options": {
    "shop_service": {"type": "dict", "description": "The contract."},
    "shop_workers_per_process": {"type": "int", "description": "Threads per worker."},
    "shop_log_level": {"type": "str", "choices": ["info", "debug"], "description": "Log level."},
    "shop_env_extra": {"type": "dict", "description": "Extra environment."},
    "shop_s3_identity": {"type": "str", "description": "Its S3 identity's name."},
    "shop_redis_password": {"type": "str", "no_log": True, "description": "From the contract."},
    "shop_port": {"type": "int", "description": "Derived from the contract."},
}}}}
COMPLIANT_DEFAULTS = {
    "shop_service": "{{ borgstack_contracts.shop }}",
    "shop_workers_per_process": 6,        # an app setting that happens to equal redis_db: not compared (name)
    "shop_log_level": "info",
    "shop_s3_identity": "borgstack",       # the project's name, but not as the project
    "shop_env_extra": {"SHOP_CACHE_TTL": 8088},  # equals the port, but the name says nothing of a port
    "shop_redis_password": "{{ shop_service.redis.password }}",
    "shop_port": "{{ shop_service.port }}",
}


def make_role(tmp_path: Path, defaults: Mapping[str, Any], spec: Mapping[str, Any], name: str = "shop") -> Path:
    role = tmp_path / "roles" / name
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "tasks").mkdir()
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(dict(defaults), sort_keys=False), encoding="utf-8")
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(dict(spec), sort_keys=False), encoding="utf-8")
    (role / "tasks" / "main.yml").write_text("---\n[]\n", encoding="utf-8")
    return role


def all_problems(role: Path, wired: Optional[Mapping[str, str]] = None) -> List[str]:
    return (spec_problems(role, wired or {}) + contract_default_problems(role)
            + duplicate_problems(role, FIXTURE_SERVICES, FIXTURE_STACK))


def test_a_compliant_role_passes(tmp_path):
    assert all_problems(make_role(tmp_path, COMPLIANT_DEFAULTS, COMPLIANT_SPEC)) == []


def _with_option(name: str, option: Mapping[str, Any], default: Any = None, has_default: bool = True):
    spec = yaml.safe_load(yaml.safe_dump(COMPLIANT_SPEC))
    spec["argument_specs"]["main"]["options"][name] = dict(option)
    defaults = dict(COMPLIANT_DEFAULTS)
    if has_default:
        defaults[name] = default
    return defaults, spec


def _without_contract_option():
    spec = yaml.safe_load(yaml.safe_dump(COMPLIANT_SPEC))
    del spec["argument_specs"]["main"]["options"]["shop_service"]
    return dict(COMPLIANT_DEFAULTS), spec


@pytest.mark.parametrize("case, expected", [
    (_with_option("shop_db_password", {"type": "str", "no_log": True, "description": "x"}, has_default=False),
     "roles/shop/meta/argument_specs.yml (main): shop_db_password has no default in roles/shop/defaults/main.yml"),
    (_with_option("shop_db_password", {"type": "str", "required": True, "no_log": True, "description": "x"}, ""),
     "roles/shop/meta/argument_specs.yml (main): shop_db_password is required, so it is given from outside the role"),
    (_without_contract_option(), "roles/shop/meta/argument_specs.yml (main): no option shop_service"),
    (({k: v for k, v in COMPLIANT_DEFAULTS.items() if k != "shop_service"}, COMPLIANT_SPEC),
     "roles/shop/defaults/main.yml lacks shop_service: \"{{ borgstack_contracts.shop }}\""),
    (({**COMPLIANT_DEFAULTS, "shop_service": "{{ borgstack_contracts['shop'] | default({}) }}"}, COMPLIANT_SPEC),
     "roles/shop/defaults/main.yml: shop_service is \"{{ borgstack_contracts['shop'] | default({}) }}\"; it must be "
     "exactly \"{{ borgstack_contracts.shop }}\""),
    (({**COMPLIANT_DEFAULTS, "shop_service": "{{ borgstack_contracts.postgresql }}"}, COMPLIANT_SPEC),
     "shop_service is '{{ borgstack_contracts.postgresql }}'; it must be exactly"),
    (_with_option("shop_image", {"type": "str", "description": "x"}, "example/shop:1.4.2"),
     "roles/shop/defaults/main.yml: shop_image = 'example/shop:1.4.2' repeats borgstack_service_defaults.shop.image"),
    (_with_option("shop_port", {"type": "int", "description": "x"}, 8088),
     "shop_port = 8088 repeats borgstack_service_defaults.shop.containers.shop.port"),
    (_with_option("shop_db_port", {"type": "int", "description": "x"}, 5432),
     "shop_db_port = 5432 repeats borgstack_service_defaults.postgresql.containers.postgresql.port"),
    (_with_option("shop_redis_db", {"type": "int", "description": "x"}, 6),
     "shop_redis_db = 6 repeats borgstack_service_defaults.shop.redis_db"),
    (_with_option("shop_s3_bucket", {"type": "str", "description": "x"}, "shop-media"),
     "shop_s3_bucket = 'shop-media' repeats borgstack_service_defaults.shop.s3_bucket"),
    (_with_option("shop_db_name", {"type": "str", "description": "x"}, "shopdb"),
     "shop_db_name = 'shopdb' repeats borgstack_service_defaults.shop.postgres.database"),
    (_with_option("shop_env", {"type": "dict", "description": "x"}, {"DATABASE_NAME": "shopdb"}),
     "shop_env.DATABASE_NAME = 'shopdb' repeats borgstack_service_defaults.shop.postgres.database"),
    (_with_option("shop_volume", {"type": "str", "description": "x"}, "borgstack_shop_uploads"),
     "shop_volume = 'borgstack_shop_uploads' repeats the volume of borgstack_service_defaults.shop.volumes.uploads"),
    (_with_option("shop_db_host", {"type": "str", "description": "x"}, "borgstack-postgresql"),
     "shop_db_host = 'borgstack-postgresql' repeats the container of "
     "borgstack_service_defaults.postgresql.containers.postgresql"),
    (_with_option("shop_workers", {"type": "list", "description": "x"}, ["borgstack-shop-worker-1"]),
     "shop_workers[0] = 'borgstack-shop-worker-1' repeats the container of "
     "borgstack_service_defaults.shop.containers.shop-worker"),
    (_with_option("shop_network", {"type": "str", "description": "x"}, "borgstack_internal"),
     "shop_network = 'borgstack_internal' repeats stack_internal_network (the contract's stack settings)"),
    (_with_option("shop_project", {"type": "str", "description": "x"}, "borgstack"),
     "shop_project = 'borgstack' repeats stack_project_name (the contract's stack settings)"),
    (_with_option("shop_dir", {"type": "path", "description": "x"}, "/opt/borgstack"),
     "shop_dir = '/opt/borgstack' repeats stack_project_dir (the contract's stack settings)"),
])
def test_a_role_that_breaks_a_rule_fails_naming_it(tmp_path, case, expected):
    defaults, spec = case
    problems = all_problems(make_role(tmp_path, defaults, spec))
    assert len(problems) == 1, problems
    assert expected in problems[0], problems[0]


def test_an_option_the_playbooks_group_vars_set_is_wiring(tmp_path):
    group_vars = tmp_path / "all"
    group_vars.mkdir()
    (group_vars / "shop.yml").write_text("---\nshop_log_level: debug\n", encoding="utf-8")
    role = make_role(tmp_path, COMPLIANT_DEFAULTS, COMPLIANT_SPEC)
    problems = all_problems(role, wiring_outside_the_contract(group_vars))
    assert problems == [f"roles/shop/meta/argument_specs.yml (main): shop_log_level is set by {group_vars / 'shop.yml'} "
                        "- wiring outside the contract; read it from shop_service in the role's defaults"]


def test_numbers_are_compared_only_where_the_name_says_what_they_hold(tmp_path):
    # Another service's Redis database is not this role's value; a port of any service is.
    defaults = {**COMPLIANT_DEFAULTS, "shop_redis_db": 0, "shop_listen_port": 5432, "shop_threads": 5432}
    spec = yaml.safe_load(yaml.safe_dump(COMPLIANT_SPEC))
    for name in ("shop_redis_db", "shop_listen_port", "shop_threads"):
        spec["argument_specs"]["main"]["options"][name] = {"type": "int", "description": "x"}
    problems = all_problems(make_role(tmp_path, defaults, spec))
    assert len(problems) == 1 and "shop_listen_port = 5432 repeats" in problems[0], problems
