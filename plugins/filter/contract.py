# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The contract between the registry and the roles: one dict per service with all its role needs.

``service_contracts(registry, stack)`` turns each entry of the merged registry into what its role reads (image,
containers with their names, ports, replicas and memory limits, public host name, networks, its logins to
PostgreSQL, Redis, S3 and MongoDB with their derived passwords, its volumes, its secrets, where every other service
is reached) and, for the services that serve the others, what they serve (PostgreSQL's tenants, MongoDB's users,
SeaweedFS' buckets, Caddy's sites, Duplicati's sources). A role reads ``<role>_service`` (its defaults set it to
``borgstack_contracts.<role>``) and nothing else of the registry: adding a service is its role, its registry entry
and its line in playbooks/site.yml.

``secret_policies(registry)`` is the rotation policy of every secret the stack derives (the registry's ``secrets``
and the per-service logins), read by the validation play's ``secret_version_errors``.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List, Mapping, Tuple

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.registry import (
    _containers, _enabled, _mapping, _replicas, _routes, _site_container, basic_auth_users, caddy_sites, mongodb_users,
    postgres_tenants, s3_buckets, service_endpoints, service_hostnames,
)
from ansible_collections.borgstack.stack.plugins.filter.monitoring import monitoring_targets
from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret
from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

# Region SDKs expect from an S3 endpoint; SeaweedFS does not check it.
S3_REGION = "us-east-1"
# What the stack context must give (the stack-wide settings of group_vars/all/contracts.yml).
_STACK_KEYS = ("domain", "project", "project_dir", "internal_network", "external_network", "pull", "admin_email",
               "ram_plan", "master", "overrides", "versions", "data_dir")
SECRET_KEYS = frozenset(("length", "suffix", "rotation", "why", "change", "shared_with"))
ROTATIONS = ("allowed", "never", "first_setup")
VOLUME_KEYS = frozenset(("backup",))
# The services the others log into as databases (the contract's postgres, redis and mongodb logins).
DATABASES = ("postgresql", "redis", "mongodb")
BACKUPS = ("files", "dump", "none")
# A service's Redis key spaces (``redis_keys``): which keys of its own Redis database a restore brings back.
REDIS_KEY_KEYS = frozenset(("match", "restore", "why"))
# A reader's predefined roles (the postgresql_tenant module's list) and a table name of its ``read``.
READER_ROLES = ("pg_monitor", "pg_read_all_settings", "pg_read_all_stats", "pg_stat_scan_tables")
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def volume_name(service: str, key: str) -> str:
    """Docker volume of a registry volume: ``borgstack_<service>_<key>`` whatever the project is called (the names
    every install has had; a renamed project keeps its data)."""
    return f"borgstack_{service}_{key}"


def _policy(owner: str, purpose: str, spec: Mapping[str, Any]) -> Dict[str, str]:
    """``{rotation, why}`` of the secret ``purpose`` that ``owner``'s entry declares."""
    rotation = spec.get("rotation", "allowed")
    why = ""
    if rotation == "never":
        why = f"rotating it would destroy data: {spec.get('why', '')}. It never rotates"
    elif rotation == "first_setup":
        why = (f"the play applies it only when {owner} is first set up, so a new version would not reach it "
               f"(and the play would lose its own login); change it {spec.get('change', 'in the app')}, then "
               f"put the new value in borgstack_secret_overrides.{purpose}")
    return {"rotation": rotation, "why": why}


def _secret(owner: str, purpose: str, spec: Mapping[str, Any], stack: Mapping[str, Any]) -> str:
    """A registry secret's value: the operator's override as it is, else the derived value and its suffix."""
    overrides = stack["overrides"] or {}
    version = (stack["versions"] or {}).get(purpose) or 1
    policy = _policy(owner, purpose, spec)
    if policy["rotation"] != "allowed" and version != 1:
        raise AnsibleFilterError(f"service_contracts: borgstack_secret_versions.{purpose} is refused: {policy['why']}")
    value = stack_secret(purpose, stack["master"], overrides, spec.get("length", 40), versions=stack["versions"])
    if overrides.get(purpose) in (None, ""):
        value += str(spec.get("suffix", ""))
    return value


def _stack(stack: Any) -> Dict[str, Any]:
    stack = _mapping("service_contracts", stack, "the stack settings")
    missing = [key for key in _STACK_KEYS if key not in stack]
    if missing:
        raise AnsibleFilterError(f"service_contracts: the stack settings lack {', '.join(missing)}")
    return dict(stack)


def _logins(name: str, svc: Mapping[str, Any], endpoints: Mapping[str, Any], stack: Mapping[str, Any],
            secrets: Mapping[str, str], tenants: Mapping[str, Any], users: Mapping[str, Any]) -> Dict[str, Any]:
    """The service's logins to the data services its entry declares."""
    out: Dict[str, Any] = {}
    if name in tenants:
        pg = endpoints["postgresql"]
        out["postgres"] = {"host": pg["host"], "port": pg["port"], "database": tenants[name]["database"],
                           "user": name, "password": tenants[name]["password"],
                           "extensions": tenants[name]["extensions"]}
    if svc.get("redis_db") is not None:
        redis = endpoints["redis"]
        out["redis"] = {"host": redis["host"], "port": redis["port"], "db": svc["redis_db"],
                        "password": secrets["redis_password"]}
    if svc.get("s3_bucket") is not None:
        s3 = endpoints["seaweedfs"]
        out["s3"] = {"endpoint": f"http://{s3['host']}:{s3['port']}", "region": S3_REGION, "bucket": svc["s3_bucket"],
                     "access_key": secrets["seaweedfs_s3_access_key"],
                     "secret_key": secrets["seaweedfs_s3_secret_key"]}
    if name in users:
        mongo = endpoints["mongodb"]
        out["mongodb"] = {"host": mongo["host"], "port": mongo["port"], "database": users[name]["database"],
                          "user": name, "password": users[name]["password"],
                          "auth_source": users[name]["database"]}
    return out


def _served(name: str, registry: Mapping[str, Any], stack: Mapping[str, Any], endpoints: Mapping[str, Any],
            basic_auth: Mapping[str, Any], logins: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """What a service serves the others, from the whole registry. ``logins`` holds every service's PostgreSQL tenant
    and MongoDB user, already derived ({"postgres"|"mongodb": {service: login}}, registry order): the servers get
    those of the enabled services."""
    enabled = _enabled(registry)
    if name == "postgresql":
        return {"tenants": [t for service, t in logins["postgres"].items() if service in enabled]}
    if name == "mongodb":
        return {"users": [u for service, u in logins["mongodb"].items() if service in enabled]}
    if name == "seaweedfs":
        return {"buckets": s3_buckets(registry)}
    if name == "caddy":
        return {"sites": caddy_sites(registry, stack["domain"], endpoints, basic_auth)}
    if name == "redis":
        return {"key_spaces": redis_key_spaces(registry)}
    if name == "monitoring":
        # What to watch, and each enabled service's database (the exporter's custom queries read n8n's tables).
        # And whether the sites' certificates come from Caddy's internal CA (12-hour certificates: the validation
        # holds the certificate alert's threshold under their renewal point).
        return {"watch": monitoring_targets(registry, endpoints, stack["domain"]),
                "databases": {service: t["database"] for service, t in logins["postgres"].items() if service in enabled},
                "tls_internal_ca": bool(stack.get("tls_internal", False))}
    return {}


def _volumes(registry: Mapping[str, Any]) -> Dict[str, Dict[str, str]]:
    return {name: {str(key): volume_name(name, str(key)) for key in (svc.get("volumes") or {})}
            for name, svc in registry.items()}


def backup_sources(registry: Any) -> Dict[str, List[str]]:
    """Duplicati's view of the volumes: ``sources`` (``backup: files`` volumes of the enabled services) and
    ``database_volumes`` (``backup: dump`` volumes of every service: dumped by the host job, never copied live).

    ``sources`` lists the apps' volumes (layer ``apps``) before the other layers' (SeaweedFS' objects), each group in
    registry order: the order Duplicati's job and its Compose file have always had. The job's source list and the
    container's mounts compare in order, so another order would rewrite the job and recreate the container on every
    existing install for nothing."""
    registry = _mapping("backup_sources", registry, "the registry")
    enabled = _enabled(registry)
    out: Dict[str, List[str]] = {"sources": [], "database_volumes": []}
    # sorted() is stable: registry order within each group.
    for name, svc in sorted(registry.items(), key=lambda item: (item[1] or {}).get("layer") != "apps"):
        for key, spec in (svc.get("volumes") or {}).items():
            backup = (spec or {}).get("backup", "none")
            if backup == "files" and name in enabled:
                out["sources"].append(volume_name(name, str(key)))
    for name, svc in registry.items():
        for key, spec in (svc.get("volumes") or {}).items():
            if (spec or {}).get("backup", "none") == "dump":
                out["database_volumes"].append(volume_name(name, str(key)))
    return out


def redis_key_spaces(registry: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The Redis key spaces that must survive a restore, of the enabled services, in registry order: one entry per
    service, ``{service, db, spaces: {space: [glob, ...]}}`` (its ``redis_keys`` whose ``restore`` is true). The
    backup job takes these keys beside the service's database dump, restore.yml replaces them with the service's
    database, the drill loads and compares them. A space with ``restore: false`` is written down (and why) in the
    registry only: nothing of it is backed up apart, restored or deleted."""
    enabled = _enabled(registry)
    out: List[Dict[str, Any]] = []
    for name, svc in registry.items():
        if name not in enabled or not isinstance(svc, Mapping) or svc.get("redis_db") is None:
            continue
        spaces = {str(space): [str(glob) for glob in spec.get("match") or []]
                  for space, spec in (svc.get("redis_keys") or {}).items()
                  if isinstance(spec, Mapping) and spec.get("restore") is True}
        if spaces:
            out.append({"service": name, "db": svc["redis_db"], "spaces": spaces})
    return out


def _secrets(registry: Mapping[str, Any], stack: Mapping[str, Any]) -> Dict[str, Dict[str, str]]:
    """{service: {purpose: value}}: each service's own secrets and those shared with it."""
    values: Dict[str, Dict[str, str]] = {name: {} for name in registry}
    for owner, svc in registry.items():
        for purpose, spec in (svc.get("secrets") or {}).items():
            spec = spec or {}
            value = _secret(owner, str(purpose), spec, stack)
            values[owner][str(purpose)] = value
            for other in spec.get("shared_with") or []:
                if other in values:
                    values[other][str(purpose)] = value
    return values


def service_contracts(registry: Any, stack: Any) -> Dict[str, Dict[str, Any]]:
    """{service: contract} for every service of the registry, enabled or not (a disabled service's role still
    renders its settings to remove its containers). See the module's documentation for the keys."""
    registry = _mapping("service_contracts", registry, "the registry")
    stack = _stack(stack)
    endpoints = service_endpoints(registry, stack["project"], stack["internal_network"])
    hostnames = service_hostnames(registry, stack["domain"])
    plan = stack["ram_plan"] if isinstance(stack["ram_plan"], Mapping) else {}
    limits = plan.get("services") or {}
    secrets = _secrets(registry, stack)
    redis_secrets = secrets.get("redis", {})
    s3_secrets = secrets.get("seaweedfs", {})
    data_secrets = {**redis_secrets, **s3_secrets}
    tenants = {t["name"]: t for t in postgres_tenants(registry, stack["master"], stack["overrides"], True,
                                                      versions=stack["versions"])}
    users = {u["name"]: u for u in mongodb_users(registry, stack["master"], stack["overrides"], True,
                                                 versions=stack["versions"])}
    basic_auth = basic_auth_users(registry, stack["master"], stack["overrides"], stack["admin_email"],
                                  versions=stack["versions"])
    volumes = _volumes(registry)
    enabled = _enabled(registry)
    peers = {name: {"enabled": name in enabled, "host": ends["host"], "container": ends["container"],
                    "port": ends["port"],
                    "url": f"http://{ends['host']}:{ends['port']}" if ends["port"] is not None else "",
                    "hostname": hostnames.get(name, "")}
             for name, ends in endpoints.items()}
    # The paths another process of a service answers (n8n's webhook processors, on a cluster): {path: host}, only
    # where there are some (filter peer_url picks the host for a path).
    for name, ends in endpoints.items():
        routes = {path: host for path, _key, host in _routes(registry[name] or {}, ends["container"])}
        if routes:
            peers[name]["routes"] = routes
    contracts: Dict[str, Dict[str, Any]] = {}
    for name, svc in registry.items():
        main = _site_container(svc)
        containers = {key: {"names": endpoints[name]["containers"][key], "port": spec.get("port"),
                            "image": spec.get("image") or svc.get("image"),
                            "replicas": _replicas(spec), "kind": spec.get("kind"),
                            "memory_limit_mb": int((limits.get(key) or {}).get("limit_mb", 0))}
                      for key, spec in _containers(svc).items()}
        hostname = hostnames.get(name, "")
        contract: Dict[str, Any] = {
            "name": name,
            "enabled": svc.get("enabled") is True,
            "image": svc.get("image"),
            "pull": stack["pull"],
            "project": stack["project"],
            "project_dir": stack["project_dir"],
            "data_dir": stack["data_dir"],
            "networks": {"internal": stack["internal_network"], "external": stack["external_network"]},
            "container": endpoints[name]["container"],
            "port": endpoints[name]["port"],
            "containers": containers,
            "memory_limit_mb": containers.get(main, {}).get("memory_limit_mb", 0),
            "ram": dict(plan.get(name) or {}),
            "hostname": hostname,
            "url": f"https://{hostname}/" if hostname else "",
            "site": dict(svc.get("site") or {}),
            "admin_email": stack["admin_email"],
            # Settings the customer-service apps share (the WhatsApp instance, Chatwoot's account and inbox).
            "customer_service": dict(stack.get("customer_service") or {}),
            "volumes": volumes[name],
            "secrets": secrets[name],
            "peers": peers,
        }
        if name in basic_auth:
            contract["basic_auth"] = {"user": basic_auth[name]["user"], "password": basic_auth[name]["password"]}
        contract.update(_logins(name, svc, endpoints, stack, data_secrets, tenants, users))
        contract.update(_served(name, registry, stack, endpoints, basic_auth, {"postgres": tenants, "mongodb": users}))
        contracts[name] = contract
    if "duplicati" in contracts:
        contracts["duplicati"].update(backup_sources(registry))
    readers = postgres_readers(registry, secrets, tenants)
    if "postgresql" in contracts:
        # In the postgresql_tenant module's own shape (its ``readers`` option): the role, the restore and the
        # major upgrade pass the list as it is.
        contracts["postgresql"]["readers"] = [{key: value for key, value in reader.items() if key != "service"}
                                              for reader in readers]
    pg = endpoints.get("postgresql") or {}
    for reader in readers:
        if reader["state"] == "present":
            contracts[reader["service"]]["postgres_reader"] = {
                "host": pg.get("host"), "port": pg.get("port"), "user": reader["name"],
                "password": reader["password"]}
    return contracts


READER_KEYS = frozenset(("secret", "roles", "read", "why"))


def reader_name(service: str) -> str:
    """The PostgreSQL role of a service's ``postgres_reader``: ``<service>_reader``."""
    return f"{service}_reader"


def postgres_readers(registry: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]],
                     tenants: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The postgresql_tenant module's ``readers``: one per service with a ``postgres_reader`` entry - a login with
    the entry's predefined ``roles`` (pg_monitor) and SELECT on the tables of ``read`` ({service: [tables]}, each
    service's tenant database; only those of enabled services). Its password is the entry's own registry secret
    (``secret``: a purpose of its ``secrets``, with its rotation policy). A disabled service's reader is
    ``state: absent`` (the role and its grants are removed)."""
    enabled = _enabled(registry)
    out: List[Dict[str, Any]] = []
    for name, svc in registry.items():
        spec = svc.get("postgres_reader") if isinstance(svc, Mapping) else None
        if not isinstance(spec, Mapping):
            continue
        if name not in enabled or "postgresql" not in enabled:
            out.append({"service": name, "name": reader_name(name), "state": "absent", "password": "",
                        "roles": [], "grants": []})
            continue
        grants = [{"database": tenants[other]["database"], "tables": list(tables or [])}
                  for other, tables in (spec.get("read") or {}).items() if other in enabled and other in tenants]
        out.append({"service": name, "name": reader_name(name), "state": "present",
                    "password": secrets[name][str(spec["secret"])], "roles": list(spec.get("roles") or []),
                    "grants": grants})
    return out


def _reader_errors(where: str, name: str, svc: Mapping[str, Any], registry: Mapping[str, Any]) -> List[str]:
    """Problems in a service's ``postgres_reader`` entry ({secret, roles, read: {service: [tables]}})."""
    spec = svc.get("postgres_reader")
    if spec is None:
        return []
    at = f"{where}.postgres_reader"
    if not isinstance(spec, Mapping):
        return [f"{at} must be a dict (secret, roles, read), found {spec!r}"]
    errors: List[str] = []
    unknown = sorted(set(map(str, spec)) - READER_KEYS)
    if unknown:
        errors.append(f"{at}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(READER_KEYS))})")
    if str(spec.get("secret")) not in map(str, (svc.get("secrets") or {})):
        errors.append(f"{at}.secret must name one of {where}.secrets (its password, with its rotation policy), "
                      f"found {spec.get('secret')!r}")
    if not isinstance(spec.get("roles", []), list) or any(r not in READER_ROLES for r in spec.get("roles", [])):
        errors.append(f"{at}.roles must be a list of {', '.join(sorted(READER_ROLES))}, found {spec.get('roles')!r}")
    read = spec.get("read") or {}
    if not isinstance(read, Mapping):
        return errors + [f"{at}.read must be a dict <service>: [tables], found {read!r}"]
    for other, tables in read.items():
        if not isinstance(registry.get(other), Mapping) or not isinstance(registry[other].get("postgres"), Mapping):
            errors.append(f"{at}.read.{other}: not a service with a PostgreSQL tenant (borgstack_services.<name>."
                          "postgres)")
        if not isinstance(tables, list) or not all(isinstance(t, str) and _TABLE_RE.match(t) for t in tables):
            errors.append(f"{at}.read.{other} must be a list of table names of schema public ([a-z_][a-z0-9_]*), "
                          f"found {tables!r}")
    return errors


def secret_policies(registry: Any) -> Dict[str, Dict[str, str]]:
    """{purpose: {rotation, why}} for every secret the stack derives: the registry's ``secrets`` and the logins
    each service gets from its entry (``postgresql_<service>``, ``mongodb_<service>``, ``basic_auth_<service>``,
    all rotatable). ``why`` says, for a secret that may not rotate, why and what to do instead."""
    registry = _mapping("secret_policies", registry, "the registry")
    out: Dict[str, Dict[str, str]] = {}
    for name, svc in registry.items():
        for purpose, spec in (svc.get("secrets") or {}).items():
            out[str(purpose)] = _policy(name, str(purpose), spec or {})
        if isinstance(svc.get("postgres"), Mapping):
            out[f"postgresql_{name}"] = {"rotation": "allowed", "why": ""}
        if isinstance(svc.get("mongodb"), Mapping):
            out[f"mongodb_{name}"] = {"rotation": "allowed", "why": ""}
        if isinstance(svc.get("site"), Mapping) and svc["site"].get("basic_auth") is True:
            out[f"basic_auth_{name}"] = {"rotation": "allowed", "why": ""}
    return out


def _entries(entries: Mapping[str, Any], where: str, shape: str, known: frozenset,
             errors: List[str]) -> Iterator[Tuple[str, str, Mapping[str, Any]]]:
    """Each (key, its variable path, its spec) of a registry sub-dict whose spec is a dict; a spec that is not, and
    unknown keys of one that is, are added to ``errors`` naming the variable."""
    for key, spec in entries.items():
        at = f"{where}.{key}"
        spec = spec if spec is not None else {}
        if not isinstance(spec, Mapping):
            errors.append(f"{at} must be {shape}, found {spec!r}")
            continue
        unknown = sorted(set(map(str, spec)) - known)
        if unknown:
            errors.append(f"{at}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        yield str(key), at, spec


def _secret_errors(where: str, secrets: Any, registry: Mapping[str, Any], owners: Dict[str, str]) -> List[str]:
    """Problems in one service's ``secrets`` entry; ``owners`` ({purpose: service}) finds a purpose declared twice."""
    if not isinstance(secrets, Mapping):
        return [f"{where}.secrets must be a dict <purpose>: {{length, rotation, ...}}"]
    errors: List[str] = []
    shape = "a dict (length, suffix, rotation, why, change, shared_with)"
    for purpose, at, spec in _entries(secrets, f"{where}.secrets", shape, SECRET_KEYS, errors):
        if "rotation" not in spec:
            errors.append(f"{at}.rotation is missing: say whether it may rotate ({', '.join(ROTATIONS)})")
        elif spec["rotation"] not in ROTATIONS:
            errors.append(f"{at}.rotation must be one of {', '.join(ROTATIONS)}, found {spec['rotation']!r}")
        elif spec["rotation"] == "never" and not spec.get("why"):
            errors.append(f"{at}.why must say what a new value would destroy (rotation: never)")
        length = spec.get("length", 40)
        if isinstance(length, bool) or not isinstance(length, int) or not 16 <= length <= 512:
            errors.append(f"{at}.length must be an integer from 16 to 512, found {length!r}")
        errors.extend(f"{at}.shared_with names an unknown service {other!r}"
                      for other in spec.get("shared_with") or [] if other not in registry)
        if str(purpose) in owners:
            errors.append(f"{at}: {purpose} is also a secret of borgstack_services.{owners[str(purpose)]}")
        owners[str(purpose)] = where.rsplit(".", 1)[-1]
    return errors


def _volume_errors(where: str, name: str, volumes: Any) -> List[str]:
    """Problems in one service's ``volumes`` entry. A database's volume is never copied as files: a live data
    directory copied file by file does not restore; the host job dumps it."""
    if not isinstance(volumes, Mapping):
        return [f"{where}.volumes must be a dict <key>: {{backup: files|dump|none}}"]
    errors: List[str] = []
    for key, spec in volumes.items():
        at = f"{where}.volumes.{key}"
        spec = spec if spec is not None else {}
        if not isinstance(spec, Mapping) or set(map(str, spec)) - VOLUME_KEYS:
            errors.append(f"{at} must be {{backup: files|dump|none}}, found {spec!r}")
        elif spec.get("backup") not in BACKUPS:
            errors.append(f"{at}.backup must be one of {', '.join(BACKUPS)} (files: Duplicati copies it; dump: "
                          f"the host job dumps it; none: not backed up), found {spec.get('backup')!r}")
        elif name in DATABASES and spec["backup"] == "files":
            errors.append(f"{at}.backup cannot be files: {name} is a database, and its live directory copied file by "
                          f"file does not restore; the host job dumps it (backup: dump)")
    return errors


def _redis_key_errors(where: str, svc: Mapping[str, Any]) -> List[str]:
    """Problems in one service's ``redis_keys``. A service with a Redis database must say, per key space, whether it
    survives a restore (and why): what lives only in Redis is decided, never left to chance."""
    keys = svc.get("redis_keys")
    if svc.get("redis_db") is None:
        return [] if keys is None else [f"{where}.redis_keys: the service has no redis_db, so no Redis keys of its own "
                                        f"(remove redis_keys or give it a redis_db)"]
    shape = "a dict <space>: {match: [<glob>, ...], restore: true|false, why: <text>}"
    if keys is None:
        return [f"{where}.redis_keys is missing: the service has a Redis database (redis_db), so say for each of its "
                f"key spaces whether a restore brings it back - {shape} (docs/backup.md)"]
    if not isinstance(keys, Mapping) or not keys:
        return [f"{where}.redis_keys must be {shape}, found {keys!r}"]
    errors: List[str] = []
    space_shape = "{match: [<glob>, ...], restore: true|false, why: <text>}"
    for _space, at, spec in _entries(keys, f"{where}.redis_keys", space_shape, REDIS_KEY_KEYS, errors):
        match = spec.get("match")
        if (not isinstance(match, list) or not match
                or not all(isinstance(g, str) and g and not any(c.isspace() for c in g) for g in match)):
            errors.append(f"{at}.match must be a non-empty list of Redis glob patterns (SCAN MATCH, no spaces) of the "
                          f"keys in its redis_db, found {match!r}")
        if not isinstance(spec.get("restore"), bool):
            errors.append(f"{at}.restore must be true (backed up with the service's database and restored with it) "
                          f"or false (not backed up apart, never restored), found {spec.get('restore')!r}")
        if not isinstance(spec.get("why"), str) or not spec["why"].strip():
            errors.append(f"{at}.why must say why this key space does or does not survive a restore")
    return errors


def contract_errors(registry: Any) -> List[str]:
    """Problems in the registry's ``secrets``, ``volumes`` and ``redis_keys`` entries, each naming the variable."""
    registry = _mapping("contract_errors", registry, "the registry")
    errors: List[str] = []
    owners: Dict[str, str] = {}
    for name, svc in registry.items():
        if not isinstance(svc, Mapping):
            continue
        where = f"borgstack_services.{name}"
        errors.extend(_secret_errors(where, svc.get("secrets") or {}, registry, owners))
        errors.extend(_volume_errors(where, name, svc.get("volumes") or {}))
        errors.extend(_redis_key_errors(where, svc))
        errors.extend(_reader_errors(where, name, svc, registry))
    return errors


def _route_matches(pattern: str, path: str) -> bool:
    """A site route's path (``/webhook/*``: a prefix; else the exact path) against a request path."""
    return path.startswith(pattern[:-1]) if pattern.endswith("*") else path == pattern


def peer_url(peer: Any, path: Any, suffix: Any = "") -> str:
    """``http://<host><suffix>:<port><path>``: where another service answers ``path`` on the internal network -
    the host of the peer's route that matches the path (its ``routes``: n8n's production webhooks go to its webhook
    processors on a cluster, as Caddy sends them), else the peer's own host (one host: n8n's container). ``suffix``
    is added to the host name (``.internal``: a name with a top-level domain, for a sender that refuses a bare host -
    Evolution API's global webhook; a Compose link or an overlay alias gives that name)."""
    if not isinstance(peer, Mapping) or not peer.get("host") or peer.get("port") is None:
        raise AnsibleFilterError(f"peer_url expects a contract's peer ({{host, port, routes}}), got {peer!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise AnsibleFilterError(f"peer_url: the path must start with /, found {path!r}")
    host = str(peer["host"])
    for pattern, route_host in (peer.get("routes") or {}).items():
        if _route_matches(str(pattern), path):
            host = str(route_host)
            break
    return f"http://{host}{suffix or ''}:{peer['port']}{path}"


def peer_hosts(peers: Any) -> List[str]:
    """Every name a service of the stack answers to on the internal network: each peer's host, followed by its
    routes' hosts (n8n's webhook processors on a cluster) - the hosts a webhook may use over plain http."""
    if not isinstance(peers, Mapping):
        raise AnsibleFilterError(f"peer_hosts expects a contract's peers ({{service: peer}}), got {peers!r}")
    hosts: List[str] = []
    for name, peer in peers.items():
        if not isinstance(peer, Mapping) or not peer.get("host"):
            raise AnsibleFilterError(f"peer_hosts: the peer {name} has no host: {peer!r}")
        for host in [peer["host"], *(peer.get("routes") or {}).values()]:
            if str(host) not in hosts:
                hosts.append(str(host))
    return hosts


class FilterModule(NamedFilters):
    """Registry-to-role contract filters."""

    FILTERS = (service_contracts, secret_policies, contract_errors, backup_sources, peer_url, peer_hosts)
