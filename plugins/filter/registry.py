# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service registry: merge the operator's changes over the defaults, check the whole, and derive wiring.

Pure functions; every filter raises AnsibleFilterError on bad input. ``registry_errors`` returns the list of
problems instead, so a validation task can show all of them at once.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret
from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

_KEYS = frozenset(
    ("enabled", "layer", "image", "requires", "containers", "site", "postgres", "redis_db", "s3_bucket", "mongodb",
     "login", "volumes", "secrets", "redis_keys", "postgres_reader", "placement")
)
# Where a service's tasks may run on a cluster: any node, or the one node holding its volumes (its data).
_PLACEMENTS = ("any", "node")
_CONTAINER_KEYS = frozenset(("kind", "port", "health", "health_body", "replicas", "memory", "image", "metrics"))
_KINDS = ("web", "worker", "job")
_MEMORY_KEYS = frozenset(("weight", "min_mb", "max_mb"))
_SITE_KEYS = frozenset(("hostname", "container", "websockets", "max_body_mb", "csp", "headers", "basic_auth",
                        "ready", "refuse_auth", "routes"))
# A site route's path: a URL path, optionally ending in * (Caddy's path matcher: that prefix).
_ROUTE_PATH_RE = re.compile(r"^/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/?\*?$")
# An HTTP authentication scheme's name (RFC 9110 token, kept to letters, digits and '-': it goes into Caddy's regexp).
_AUTH_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")
# A site's ready path: an absolute URL path, no query (Caddy's health_uri).
_READY_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
# CSP directives an app may loosen (fetch directives and the few navigation ones that take sources).
_CSP_DIRECTIVES = frozenset((
    "default-src", "script-src", "script-src-elem", "script-src-attr", "style-src", "style-src-elem",
    "style-src-attr", "img-src", "font-src", "connect-src", "media-src", "object-src", "frame-src", "child-src",
    "worker-src", "manifest-src", "form-action", "frame-ancestors", "base-uri",
))
_CSP_SOURCES_RE = re.compile(r"^[^;,\"\r\n]+$")
_HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")
_CONTAINER_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
_LAYERS = ("data", "apps", "proxy")
_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Docker's reference grammar: [registry[:port]/]path[:tag][@digest]. A digest is the strongest pin.
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# A registry has a dot or a port, or is localhost (what Docker takes for one; "N8NIO/n8n" is a mistyped repo).
_IMAGE_REGISTRY = rf"(?:(?:localhost|{_IMAGE_LABEL}(?:\.{_IMAGE_LABEL})+)(?::[0-9]+)?|{_IMAGE_LABEL}:[0-9]+)"
_IMAGE_RE = re.compile(
    rf"^(?:{_IMAGE_REGISTRY}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}))?$"
)
# Tags that point at a new image on each release (compared in lower case). A tag without a digit names no version
# either (alpine, lts-alpine, bookworm), and neither does one that starts with a moving word (stable-alpine3.22).
_MOVING_TAGS = frozenset((
    "latest", "stable", "edge", "nightly", "main", "master", "dev", "develop", "development", "next", "beta",
    "alpha", "rc", "lts", "current", "rolling", "release", "canary", "unstable", "testing", "preview", "head",
    "trunk", "snapshot", "experimental", "mainline", "insider",
))
_PIN_FIX = "pin a version (repo:1.2.3) or a digest (repo@sha256:<64 hex>, or repo:1.2.3@sha256:<64 hex>)"


def _image_error(where: str, image: Any) -> str:
    """'' for an image reference pinned to a version tag or a digest, else what is wrong and the fix."""
    match = _IMAGE_RE.match(image) if isinstance(image, str) else None
    if match is None:
        return (f"{where}.image must be an image reference ([registry/]repo:tag or repo@sha256:<64 hex>, repository "
                f"in lower case), found {image!r}: {_PIN_FIX}")
    tag, digest = match.group("tag"), match.group("digest")
    if digest:
        return ""
    if tag is None:
        return f"{where}.image {image!r} has no tag, so Docker pulls 'latest': {_PIN_FIX}"
    first = re.split(r"[-_.]", tag.lower(), maxsplit=1)[0]
    if tag.lower() in _MOVING_TAGS or first in _MOVING_TAGS or not re.search(r"[0-9]", tag):
        return (f"{where}.image {image!r}: the tag {tag!r} moves to a new image on each release (the host would run "
                f"whatever it last pulled): {_PIN_FIX}")
    return ""


def _mapping(name: str, value: Any, what: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"{name}: {what} must be a dict, got {type(value).__name__}")
    return value


def _merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> Dict[str, Any]:
    """``change`` over ``base``, dicts merged recursively, anything else (lists included) replaced."""
    out = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def service_registry(defaults: Any, overrides: Any) -> Dict[str, Dict[str, Any]]:
    """Merge ``overrides`` (borgstack_services) over ``defaults`` (borgstack_service_defaults), dicts recursively
    and lists replaced. Unknown service names are refused, naming the variable.

    ``enabled: auto`` (a data service only some apps need, such as MongoDB) becomes true when an enabled service
    ``requires`` it and false otherwise; an explicit true or false is kept as the operator wrote it."""
    defaults = _mapping("service_registry", defaults, "the defaults")
    overrides = _mapping("service_registry", overrides, "borgstack_services")
    unknown = sorted(str(k) for k in overrides if k not in defaults)
    if unknown:
        raise AnsibleFilterError(
            f"borgstack_services: unknown service(s) {', '.join(unknown)}; known services: {', '.join(defaults)}"
        )
    merged: Dict[str, Dict[str, Any]] = {}
    for name, base in defaults.items():
        entry = _mapping("service_registry", base, f"the defaults of {name}")
        change = _mapping("service_registry", overrides.get(name), f"borgstack_services.{name}")
        merged[name] = _merge(entry, change)
    auto = {name for name, svc in merged.items() if svc.get("enabled") == "auto"}
    on = {name for name, svc in merged.items() if svc.get("enabled") is True}
    grew = True
    while grew:  # an auto service that is needed may need another auto service
        needed = {dep for name in on for dep in (merged[name].get("requires") or [])
                  if isinstance(merged[name].get("requires"), list)}
        grew = bool((needed & auto) - on)
        on |= needed & auto
    for name in auto:
        merged[name] = {**merged[name], "enabled": name in on}
    return merged


def _enabled(registry: Mapping[str, Mapping[str, Any]]) -> List[str]:
    return [name for name, svc in registry.items() if svc.get("enabled") is True]


def _containers(svc: Mapping[str, Any]) -> Dict[str, Mapping[str, Any]]:
    containers = svc.get("containers")
    if not isinstance(containers, Mapping):
        return {}
    return {str(k): (v if isinstance(v, Mapping) else {}) for k, v in containers.items()}


def _replicas(spec: Mapping[str, Any]) -> int:
    if spec.get("kind") == "worker":
        replicas = spec.get("replicas", 1)
        return replicas if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 0 else 0
    return 1


def _routes(svc: Mapping[str, Any], container: str) -> List[Tuple[str, str, str]]:
    """The paths of the service's site another of its processes answers while it runs (``site.routes`` whose worker
    has replicas: n8n's production webhooks and its webhook processors, on a cluster): ``[(path, worker, host)]``,
    ``host`` the one name all the worker's tasks answer to (``<project>-<worker>``, from the main container's name
    ``container``). None on one host (those workers have no replicas there)."""
    site = svc.get("site") if isinstance(svc.get("site"), Mapping) else {}
    main = _site_container(svc)
    prefix = container[:-len(main)] if main and container.endswith(main) else ""
    return [(str(path), str(key), f"{prefix}{key}") for path, key in (site.get("routes") or {}).items()
            if isinstance(key, str) and _replicas(_containers(svc).get(key, {})) > 0]


def _site_container(svc: Mapping[str, Any]) -> str:
    """The container that answers the service's site (and its internal checks): ``site.container`` or the first
    container with a port."""
    site = svc.get("site") if isinstance(svc.get("site"), Mapping) else {}
    if site.get("container"):
        return str(site["container"])
    for key, spec in _containers(svc).items():
        if spec.get("port") is not None:
            return key
    return next(iter(_containers(svc)), "")


def _container_names(project: str, key: str, spec: Mapping[str, Any]) -> List[str]:
    if spec.get("kind") == "worker":
        return [f"{project}-{key}-{i}" for i in range(1, _replicas(spec) + 1)]
    return [f"{project}-{key}"]


def dns_label(name: str) -> str:
    """A service's name as a DNS label and container-name prefix (``evolution_api`` -> ``evolution-api``): role and
    variable names use underscores, host names cannot."""
    return name.replace("_", "-")


def service_hostname(name: str, registry: Any, domain: Any) -> str:
    """Public host name of one service: its ``site.hostname`` or ``<name>.<domain>`` (underscores as dashes)."""
    registry = _mapping("service_hostname", registry, "the registry")
    if name not in registry:
        raise AnsibleFilterError(f"service_hostname: unknown service {name!r}")
    site = registry[name].get("site")
    hostname = site.get("hostname") if isinstance(site, Mapping) else None
    return str(hostname or f"{dns_label(name)}.{domain}")


def service_hostnames(registry: Any, domain: Any) -> Dict[str, str]:
    """{service: public host name} for every enabled service with a ``site``."""
    registry = _mapping("service_hostnames", registry, "the registry")
    return {
        name: service_hostname(name, registry, domain)
        for name in _enabled(registry)
        if isinstance(registry[name].get("site"), Mapping)
    }


def _is_int(value: Any, low: int, high: Optional[int] = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _container_errors(where: str, name: str, containers: Any) -> List[str]:
    if not isinstance(containers, Mapping) or not containers:
        return [f"{where}.containers must be a dict of the service's containers, {{<name>: {{kind, port, memory}}}}, "
                f"found {containers!r}"]
    errors: List[str] = []
    ports: Dict[int, str] = {}
    prefix = dns_label(name)
    for key, spec in containers.items():
        cwhere = f"{where}.containers.{key}"
        if not isinstance(key, str) or not _CONTAINER_RE.match(key) or not (key == prefix or key.startswith(prefix + "-")):
            errors.append(f"{cwhere}: a container's name is {prefix!r} or starts with '{prefix}-' (lower case, digits, "
                          f"dashes), so that it is unique in the stack")
            continue
        if not isinstance(spec, Mapping):
            errors.append(f"{cwhere} must be a dict (kind, port, health, replicas, memory), found {spec!r}")
            continue
        extra = sorted(set(spec) - _CONTAINER_KEYS)
        if extra:
            errors.append(f"{cwhere}: unknown key(s) {', '.join(map(str, extra))} "
                          f"(known: {', '.join(sorted(_CONTAINER_KEYS))})")
        kind = spec.get("kind")
        if kind not in _KINDS:
            errors.append(f"{cwhere}.kind must be one of {', '.join(_KINDS)}, found {kind!r}")
        port = spec.get("port")
        if port is not None:
            if not _is_int(port, 1, 65535):
                errors.append(f"{cwhere}.port must be an integer between 1 and 65535, found {port!r}")
            elif port in ports:
                errors.append(f"{where}.containers.{ports[port]}.port and {cwhere}.port are both {port}: each "
                              f"container of a service needs its own port")
            else:
                ports[port] = key
        health = spec.get("health")
        if health is not None and (not isinstance(health, str) or not health.startswith("/") or port is None):
            errors.append(f"{cwhere}.health must be an HTTP path (/...) of a container with a port, found {health!r}")
        metrics = spec.get("metrics")
        if metrics is not None and (not isinstance(metrics, str) or not _READY_RE.match(metrics) or port is None):
            errors.append(f"{cwhere}.metrics must be the HTTP path (/...) where a container with a port serves "
                          f"Prometheus metrics, found {metrics!r}")
        body = spec.get("health_body")
        if body is not None:
            try:
                valid = isinstance(body, str) and bool(body) and health is not None and re.compile(body) is not None
            except re.error:
                valid = False
            if not valid:
                errors.append(f"{cwhere}.health_body must be a regular expression the body of its health path must "
                              f"match (with a health path), found {body!r}")
        if "replicas" in spec and (kind != "worker" or not _is_int(spec["replicas"], 0, 32)):
            errors.append(f"{cwhere}.replicas is for workers only, an integer from 0 to 32, found "
                          f"{spec['replicas']!r} (kind {kind})")
        if "image" in spec:
            # A container that runs another image than its service's (the monitoring exporters): pinned the same way.
            image_error = _image_error(cwhere, spec["image"])
            if image_error:
                errors.append(image_error)
        memory = spec.get("memory")
        if not isinstance(memory, Mapping):
            errors.append(f"{cwhere}.memory must be {{weight, min_mb[, max_mb]}} (its share of the RAM plan), "
                          f"found {memory!r}")
            continue
        extra = sorted(set(memory) - _MEMORY_KEYS)
        if extra:
            errors.append(f"{cwhere}.memory: unknown key(s) {', '.join(map(str, extra))} (known: max_mb, min_mb, "
                          f"weight)")
        if not _is_number(memory.get("weight")):
            errors.append(f"{cwhere}.memory.weight must be a positive number, found {memory.get('weight')!r}")
        if not _is_int(memory.get("min_mb"), 16):
            errors.append(f"{cwhere}.memory.min_mb must be an integer of at least 16 (MiB), found "
                          f"{memory.get('min_mb')!r}")
        max_mb = memory.get("max_mb")
        if max_mb is not None and (not _is_int(max_mb, 16) or (
                _is_int(memory.get("min_mb"), 16) and max_mb < memory["min_mb"])):
            errors.append(f"{cwhere}.memory.max_mb must be an integer not below min_mb, found {max_mb!r}")
    return errors


def _mapping_errors(where: str, value: Any, shape: str, item_errors: Callable[[Any, Any], List[str]]) -> List[str]:
    """A setting that must be a dict: its shape refused as a whole, or each (key, value) checked by item_errors."""
    if not isinstance(value, Mapping):
        return [f"{where} must be a dict {shape}, found {value!r}"]
    return [error for key, item in value.items() for error in item_errors(key, item)]


def _site_errors(where: str, site: Any, containers: Any) -> List[str]:
    if not isinstance(site, Mapping):
        return [f"{where}.site must be a dict (hostname, container, websockets, max_body_mb, csp, headers, "
                f"basic_auth, ready, refuse_auth, routes), found {site!r}"]
    errors: List[str] = []
    extra = sorted(set(site) - _SITE_KEYS)
    if extra:
        errors.append(f"{where}.site: unknown key(s) {', '.join(map(str, extra))} (known: {', '.join(sorted(_SITE_KEYS))})")
    hostname = site.get("hostname")
    if hostname not in (None, "") and (not isinstance(hostname, str) or not _HOST_RE.match(hostname)):
        errors.append(f"{where}.site.hostname {hostname!r} is not a valid DNS host name (lower case, no scheme)")
    container = site.get("container")
    if container is not None:
        spec = containers.get(container) if isinstance(containers, Mapping) else None
        if not isinstance(spec, Mapping) or spec.get("port") is None:
            errors.append(f"{where}.site.container {container!r} must name one of the service's containers that "
                          f"has a port")
    if "websockets" in site and not isinstance(site["websockets"], bool):
        errors.append(f"{where}.site.websockets must be true or false, found {site['websockets']!r}")
    if "basic_auth" in site and not isinstance(site["basic_auth"], bool):
        errors.append(f"{where}.site.basic_auth must be true or false (Caddy asks for a password before the app), "
                      f"found {site['basic_auth']!r}")
    if "ready" in site and not (isinstance(site["ready"], str) and _READY_RE.match(site["ready"])):
        errors.append(f"{where}.site.ready must be a URL path such as /rest/settings (letters, digits, . _ ~ - /), "
                      f"found {site['ready']!r}")
    if "max_body_mb" in site and not _is_int(site["max_body_mb"], 1, 102400):
        errors.append(f"{where}.site.max_body_mb must be an integer from 1 to 102400 (MiB), found "
                      f"{site['max_body_mb']!r}")
    refuse = site.get("refuse_auth", [])
    if not isinstance(refuse, list) or not all(isinstance(s, str) and _AUTH_SCHEME_RE.match(s) for s in refuse):
        errors.append(f"{where}.site.refuse_auth must be a list of HTTP authentication scheme names (e.g. [PreAuth]: "
                      f"letters, digits and -) that Caddy refuses from outside, found {refuse!r}")

    def csp_errors(directive: Any, sources: Any) -> List[str]:
        if directive not in _CSP_DIRECTIVES:
            return [f"{where}.site.csp.{directive}: not a CSP directive that takes sources (known: "
                    f"{', '.join(sorted(_CSP_DIRECTIVES))})"]
        if not isinstance(sources, str) or not _CSP_SOURCES_RE.match(sources):
            return [f"{where}.site.csp.{directive} must be a string of sources separated by spaces "
                    f"(no ; , or quotes \"), found {sources!r}"]
        return []

    def route_errors(path: Any, key: Any) -> List[str]:
        spec = containers.get(key) if isinstance(containers, Mapping) and isinstance(key, str) else None
        found = []
        if not isinstance(path, str) or not _ROUTE_PATH_RE.match(path):
            found.append(f"{where}.site.routes: {path!r} is not a URL path such as /webhook/* (letters, digits, "
                         f". _ ~ - /, an optional * at the end)")
        if not isinstance(spec, Mapping) or spec.get("kind") != "worker":
            found.append(f"{where}.site.routes.{path}: {key!r} must name one of the service's worker containers "
                         f"(the processes that answer that path on a cluster)")
        return found

    errors += _mapping_errors(f"{where}.site.csp", site.get("csp", {}),
                              '{<directive>: "<sources>"} added to the default policy', csp_errors)
    errors += _mapping_errors(f"{where}.site.routes", site.get("routes", {}),
                              "{<path>: <worker container>} (e.g. {/webhook/*: n8n-webhook})", route_errors)
    headers = site.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and _HEADER_RE.match(k) and isinstance(v, str) and _CSP_SOURCES_RE.match(v.replace(",", ""))
            for k, v in headers.items()):
        errors.append(f"{where}.site.headers must be a dict {{<Header-Name>: \"<value>\"}} of strings without "
                      f"quotes or line breaks, found {headers!r}")
    return errors


def registry_errors(registry: Any, domain: Any) -> List[str]:
    """Every problem in the merged registry, each naming the variable (borgstack_services.<service>.<key>)."""
    registry = _mapping("registry_errors", registry, "the registry")
    errors: List[str] = []
    var = "borgstack_services"
    enabled = _enabled(registry)
    for name, svc in registry.items():
        where = f"{var}.{name}"
        if not isinstance(svc, Mapping):
            errors.append(f"{where} must be a dict, found {svc!r}")
            continue
        extra = sorted(set(svc) - _KEYS)
        if extra:
            errors.append(f"{where}: unknown key(s) {', '.join(map(str, extra))} (known: {', '.join(sorted(_KEYS))})")
        if not isinstance(svc.get("enabled"), bool):
            errors.append(f"{where}.enabled must be true, false or auto, found {svc.get('enabled')!r}")
        if svc.get("layer") not in _LAYERS:
            errors.append(f"{where}.layer must be one of {', '.join(_LAYERS)}, found {svc.get('layer')!r}")
        placement = svc.get("placement", "any")
        if placement not in _PLACEMENTS:
            errors.append(f"{where}.placement must be node (on a cluster, pinned to the node holding its volumes) or "
                          f"any, found {placement!r}")
        elif placement == "any" and svc.get("layer") == "data" and "placement" in svc:
            errors.append(f"{where}.placement: a data service always runs on the node holding its data; remove it")
        image_error = _image_error(where, svc.get("image"))
        if image_error:
            errors.append(image_error)
        errors.extend(_container_errors(where, name, svc.get("containers")))
        if svc.get("site") is not None:
            errors.extend(_site_errors(where, svc["site"], svc.get("containers")))
        requires = svc.get("requires", [])
        if not isinstance(requires, list):
            errors.append(f"{where}.requires must be a list of services")
            requires = []
        if name in enabled:
            for dep in requires:
                if dep not in registry:
                    errors.append(f"{where}.requires names an unknown service {dep!r}")
                elif dep not in enabled:
                    errors.append(f"{name} needs {dep}: enable {var}.{dep} or disable {where}")
        pg = svc.get("postgres")
        if pg is not None:
            if not isinstance(pg, Mapping) or not _IDENT_RE.match(str(pg.get("database", ""))):
                errors.append(f"{where}.postgres.database must be a SQL identifier ([a-z_][a-z0-9_]*), found "
                              f"{(pg or {}).get('database') if isinstance(pg, Mapping) else pg!r}")
            elif not isinstance(pg.get("extensions", []), list):
                errors.append(f"{where}.postgres.extensions must be a list")
            if name in enabled and "postgresql" not in enabled:
                errors.append(f"{name} has a PostgreSQL tenant: enable {var}.postgresql or disable {where}")
        mongo = svc.get("mongodb")
        if mongo is not None:
            if (not isinstance(mongo, Mapping) or set(mongo) - {"database", "roles"}
                    or not re.match(r"^[a-z][a-z0-9_]{0,62}$", str(mongo.get("database", "")))
                    or not isinstance(mongo.get("roles", ["readWrite"]), list)):
                errors.append(f"{where}.mongodb must be {{database: <name>, roles: [readWrite]}}, found {mongo!r}")
            if name in enabled and "mongodb" not in enabled:
                errors.append(f"{name} needs a MongoDB user: enable {var}.mongodb (it is off unless an app needs it) "
                              f"or disable {where}")
        bucket = svc.get("s3_bucket")
        if bucket is not None and (not isinstance(bucket, str) or not _BUCKET_RE.match(bucket) or ".." in bucket):
            errors.append(f"{where}.s3_bucket {bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
        login = svc.get("login")
        if login is not None and (not isinstance(login, Mapping) or set(login) - {"path", "password_file"}
                                  or not str(login.get("path", "")).startswith("/")
                                  or not re.match(r"^[a-z0-9][a-z0-9._-]*$", str(login.get("password_file", "")))):
            errors.append(f"{where}.login must be {{path: /<login page>, password_file: <file name under "
                          f"services/{name}/>}}, found {login!r}")
        db = svc.get("redis_db")
        if db is not None and not _is_int(db, 0, 15):
            errors.append(f"{where}.redis_db must be an integer between 0 and 15, found {db!r}")

    def _dupes(key: str, values: Dict[str, Any], what: str) -> None:
        seen: Dict[Any, str] = {}
        for name, value in values.items():
            if value in seen:
                errors.append(f"{var}.{seen[value]}.{key} and {var}.{name}.{key} are both {value!r}: {what}")
            else:
                seen[value] = name

    on = {n: registry[n] for n in enabled if isinstance(registry[n], Mapping)}
    _dupes("redis_db", {n: s["redis_db"] for n, s in on.items() if s.get("redis_db") is not None},
           "each service needs its own Redis database")
    _dupes("s3_bucket", {n: s["s3_bucket"] for n, s in on.items() if s.get("s3_bucket") is not None},
           "each service needs its own bucket")
    _dupes("postgres.database",
           {n: s["postgres"].get("database") for n, s in on.items() if isinstance(s.get("postgres"), Mapping)},
           "each service needs its own database")
    _dupes("mongodb.database",
           {n: s["mongodb"].get("database") for n, s in on.items() if isinstance(s.get("mongodb"), Mapping)},
           "each service needs its own MongoDB database")
    if isinstance(domain, str) and _HOST_RE.match(domain):
        _dupes("site.hostname", service_hostnames(on, domain), "two services cannot share one host name")
    # The volumes and secrets entries (the contract's own module imports this one).
    from ansible_collections.borgstack.stack.plugins.filter.contract import (  # pylint: disable=import-outside-toplevel
        contract_errors,
    )
    return errors + contract_errors(registry)


def service_roles(registry: Any) -> Dict[str, List[str]]:
    """{layer: [service, ...]} in registry order: the role of a service has the service's name, and it runs in the
    play of its layer (every service, enabled or not: a disabled one is removed by its role)."""
    registry = _mapping("service_roles", registry, "the registry")
    layers: Dict[str, List[str]] = {layer: [] for layer in _LAYERS}
    for name, svc in registry.items():
        layer = svc.get("layer") if isinstance(svc, Mapping) else None
        if layer not in layers:
            raise AnsibleFilterError(f"borgstack_services.{name}.layer must be one of {', '.join(_LAYERS)}, "
                                     f"found {layer!r}")
        layers[layer].append(name)
    return layers


def pinned_services(registry: Any) -> List[str]:
    """The services whose tasks run, on a cluster, on the one node that holds their volumes, in registry order: every
    data service, and the apps with ``placement: node`` (an app whose volume keeps what must not be shared or lost:
    WhatsApp session keys, an SQLite database, uploads, the volumes a backup app reads). Each has a node label
    ``borgstack.data.<service>`` given by ``borgstack_node_data``; enabled or not (a host may keep a disabled one's
    data)."""
    registry = _mapping("pinned_services", registry, "the registry")
    return [name for name, svc in registry.items() if isinstance(svc, Mapping)
            and (svc.get("layer") == "data" or svc.get("placement") == "node")]


def service_endpoints(registry: Any, project: Any, network: Any) -> Dict[str, Dict[str, Any]]:
    """Where each service is reached: {service: {host, port, network, container, containers}}.

    ``container``/``host`` is the service's main container (its site's, else the first with a port), ``port`` its
    port; ``containers`` maps each registry container to its container names (``<project>-<name>``; workers
    ``<project>-<name>-<n>`` per replica). The one place that names containers.
    """
    registry = _mapping("service_endpoints", registry, "the registry")
    if not isinstance(project, str) or not project:
        raise AnsibleFilterError("service_endpoints: project must be the Compose project name")
    out: Dict[str, Dict[str, Any]] = {}
    for name, svc in registry.items():
        containers = _containers(svc)
        main = _site_container(svc)
        out[name] = {
            "host": f"{project}-{main}",
            "container": f"{project}-{main}",
            "port": containers.get(main, {}).get("port"),
            "network": network,
            "containers": {key: _container_names(project, key, spec) for key, spec in containers.items()},
        }
    return out


def memory_specs(registry: Any) -> Dict[str, Dict[str, Any]]:
    """The RAM plan's input from the registry: {container: {weight, min_mb, max_mb, count}} for every container of
    every enabled service (workers counted per replica; none when their replicas are 0)."""
    registry = _mapping("memory_specs", registry, "the registry")
    specs: Dict[str, Dict[str, Any]] = {}
    for name in _enabled(registry):
        for key, spec in _containers(registry[name]).items():
            count = _replicas(spec)
            memory = spec.get("memory")
            if count == 0 or not isinstance(memory, Mapping):
                continue
            specs[key] = {"weight": memory.get("weight"), "min_mb": memory.get("min_mb"),
                          "max_mb": memory.get("max_mb"), "count": count}
    return specs


def s3_buckets(registry: Any, shared: Any = None) -> List[str]:
    """The buckets SeaweedFS creates: ``shared`` ones plus each enabled service's ``s3_bucket``."""
    registry = _mapping("s3_buckets", registry, "the registry")
    buckets = list(shared or [])
    for name in _enabled(registry):
        bucket = registry[name].get("s3_bucket")
        if bucket and bucket not in buckets:
            buckets.append(bucket)
    return buckets


def _logins(registry: Mapping[str, Any], key: str, master: Any, overrides: Any, every: bool,
            versions: Any) -> List[Tuple[str, Mapping[str, Any], str]]:
    """(service, its ``key`` entry, its derived password) for each enabled service (``every``: each service) with a
    ``postgres`` or ``mongodb`` entry; the password's purpose is ``postgresql_<service>`` or ``mongodb_<service>``."""
    purpose = {"postgres": "postgresql", "mongodb": "mongodb"}[key]
    return [(name, registry[name][key],
             stack_secret(f"{purpose}_{name}", master, overrides or {}, versions=versions))
            for name in (list(registry) if every else _enabled(registry))
            if isinstance(registry[name].get(key), Mapping)]


def mongodb_users(registry: Any, master: Any, overrides: Any = None, every: bool = False,
                  versions: Any = None) -> List[Dict[str, Any]]:
    """MongoDB users of the enabled services (``every``: of every service): [{name, database, roles, password}]
    (purpose ``mongodb_<service>``, at its version in ``versions``: borgstack_secret_versions)."""
    registry = _mapping("mongodb_users", registry, "the registry")
    return [{"name": name, "database": mongo.get("database", name), "roles": list(mongo.get("roles", ["readWrite"])),
             "password": password}
            for name, mongo, password in _logins(registry, "mongodb", master, overrides, every, versions)]


def caddy_sites(registry: Any, domain: Any, endpoints: Any, credentials: Any = None) -> List[Dict[str, Any]]:
    """Caddy's sites: one per enabled service with a ``site``, sorted by host name -
    [{hostname, upstream, max_body_mb, csp_extra: {directive: sources}, headers_extra, basic_auth, health_uri,
    refuse_auth, routes}]. The proxy itself is skipped; ``health_uri`` is the site's ``ready`` path, when it has one;
    ``refuse_auth`` the authentication schemes Caddy answers 403 to (credentials meant for the host only);
    ``routes`` ([{matcher, path, upstream}]) the paths a running worker of the service answers instead of the site's
    container (``site.routes`` whose worker has replicas).

    ``credentials`` is basic_auth_users' answer ({service: {user, password, hash}}): a site with ``basic_auth:
    true`` gets ``basic_auth: {user, hash}`` (never the password); one without its credentials is refused."""
    registry = _mapping("caddy_sites", registry, "the registry")
    endpoints = _mapping("caddy_sites", endpoints, "the endpoints")
    credentials = _mapping("caddy_sites", credentials, "the basic_auth credentials")
    sites = []
    for name, hostname in service_hostnames(registry, domain).items():
        svc = registry[name]
        site = svc["site"]
        main = _site_container(svc)
        port = _containers(svc).get(main, {}).get("port")
        if port is None or name not in endpoints:
            continue
        csp = {str(k): str(v) for k, v in (site.get("csp") or {}).items()}
        if site.get("websockets") is True:
            csp["connect-src"] = " ".join(filter(None, (csp.get("connect-src", ""), f"wss://{hostname}")))
        entry: Dict[str, Any] = {
            "hostname": hostname,
            "upstream": f"{endpoints[name]['containers'][main][0]}:{port}",
            "csp_extra": csp,
            "headers_extra": dict(site.get("headers") or {}),
        }
        if site.get("max_body_mb") is not None:
            entry["max_body_mb"] = site["max_body_mb"]
        if site.get("ready"):
            entry["health_uri"] = site["ready"]
        if site.get("refuse_auth"):
            entry["refuse_auth"] = sorted(set(site["refuse_auth"]))
        # Paths another process of the service answers (n8n's production webhooks, its webhook processors): only
        # while that worker runs (replicas > 0: on a cluster), by the one name all its tasks answer to on the
        # overlay (<project>-<container>, dnsrr), on the site container's port. Without it, nothing changes.
        routes = [{"matcher": key.replace("-", "_"), "path": path, "upstream": f"{host}:{port}"}
                  for path, key, host in _routes(svc, endpoints[name]["container"])]
        if routes:
            entry["routes"] = routes
        if site.get("basic_auth") is True:
            cred = credentials.get(name)
            if not isinstance(cred, Mapping) or not cred.get("user") or not cred.get("hash"):
                raise AnsibleFilterError(f"caddy_sites: borgstack_services.{name}.site.basic_auth is true but no "
                                         f"credentials were given for {name} (basic_auth_users)")
            entry["basic_auth"] = {"user": str(cred["user"]), "hash": str(cred["hash"])}
        sites.append(entry)
    return sorted(sites, key=lambda s: s["hostname"])


# bcrypt's own base64 alphabet (salts and hashes), in the order of the standard one.
_BCRYPT_B64 = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
)


@functools.lru_cache(maxsize=64)
def _bcrypt_hash(password: str, context: str, cost: int = 12) -> str:
    """bcrypt hash (``$2b$``) of ``password`` with a salt derived from the password and ``context``: the same input
    gives the same hash, so the Caddyfile does not change on every run (a random salt would rewrite it each time).
    The salt stays as unguessable as the password it is derived from."""
    try:
        import bcrypt  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise AnsibleFilterError(
            "basic_auth_users: the Python library bcrypt is needed on the controller (pip install -r "
            "requirements.txt)") from exc
    raw = hmac.new(password.encode(), f"borgstack-basic-auth-salt:{context}".encode(), hashlib.sha256).digest()[:16]
    salt = base64.b64encode(raw).translate(_BCRYPT_B64)[:22]
    return bcrypt.hashpw(password.encode(), b"$2b$%02d$" % cost + salt).decode()


def basic_auth_users(registry: Any, master: Any, overrides: Any = None, user: Any = "",
                     versions: Any = None) -> Dict[str, Dict[str, str]]:
    """The password Caddy asks for in front of each enabled service whose ``site.basic_auth`` is true:
    {service: {user, password, hash}} - purpose ``basic_auth_<service>`` (see stack_secret; its version from
    ``versions``), ``user`` the stack's admin e-mail, ``hash`` the bcrypt hash Caddy's basic_auth directive reads."""
    registry = _mapping("basic_auth_users", registry, "the registry")
    out: Dict[str, Dict[str, str]] = {}
    for name in _enabled(registry):
        site = registry[name].get("site")
        if not isinstance(site, Mapping) or site.get("basic_auth") is not True:
            continue
        # Checked only when a site needs it: a host-only run (every app off) has no admin e-mail to give.
        if not isinstance(user, str) or not re.match(r"^[^\s:]{1,254}$", user):
            raise AnsibleFilterError(f"basic_auth_users: the user (borgstack_admin_email) must be a name without "
                                     f"spaces or ':', found {user!r}")
        password = stack_secret(f"basic_auth_{name}", master, overrides or {}, versions=versions)
        out[name] = {"user": user, "password": password, "hash": _bcrypt_hash(password, name)}
    return out


def postgres_tenants(registry: Any, master: Any, overrides: Any = None, every: bool = False,
                     versions: Any = None) -> List[Dict[str, Any]]:
    """PostgreSQL tenants of the enabled services (``every``: of every service, enabled or not - a disabled app's
    role still renders its settings to remove it): [{name, database, extensions, password}].

    The password is the secret of purpose ``postgresql_<service>`` (see stack_secret; its version from ``versions``,
    borgstack_secret_versions); the service contracts (contract.py: the postgresql role's tenants, each app's
    postgres login) read it from these lists, so it is derived in this one place.
    """
    registry = _mapping("postgres_tenants", registry, "the registry")
    tenants = [{"name": name, "database": pg.get("database", name), "extensions": list(pg.get("extensions", [])),
                "password": password}
               for name, pg, password in _logins(registry, "postgres", master, overrides, every, versions)]
    return tenants


def health_checks(registry: Any, domain: Any, endpoints: Any, tenants: Any, redis_password: Any = "",
                  swarm_stack: Any = "") -> List[Dict[str, Any]]:
    """The stack_health module's ``services`` list for the enabled services.

    Every long-running container of a service is checked (workers per replica); the main container answers an HTTP
    check on its ``health`` path (else a TCP check on its port); services with a site get a check of
    ``https://<hostname><health>`` through the proxy, those with a PostgreSQL tenant a real login with the tenant's
    password (``tenants``: postgres_tenants' list), and Redis a password-checked PING. With ``swarm_stack`` (a
    cluster) each check also names the swarm services of the service: ``<stack>_<Compose service>`` per long-running
    container of the registry (the stack file's service keys).
    """
    registry = _mapping("health_checks", registry, "the registry")
    endpoints = _mapping("health_checks", endpoints, "the endpoints")
    by_name = {t["name"]: t for t in (tenants or [])}
    enabled = _enabled(registry)
    hostnames = service_hostnames(registry, domain)
    checks: List[Dict[str, Any]] = []
    for name in enabled:
        svc = registry[name]
        ends = endpoints[name]
        containers = _containers(svc)
        main = _site_container(svc)
        names = [c for key, spec in containers.items() if spec.get("kind") != "job"
                 for c in ends["containers"][key]]
        check: Dict[str, Any] = {"name": name}
        if len(names) == 1:
            check["container"] = names[0]
        else:
            check["containers"] = names
        if swarm_stack:
            check["swarm_services"] = [f"{swarm_stack}_{key}" for key, spec in containers.items()
                                       if spec.get("kind") != "job" and _replicas(spec) > 0]
        spec = containers.get(main, {})
        if spec.get("health"):
            check["internal_check"] = {"type": "http", "port": spec["port"], "path": spec["health"]}
            if spec.get("health_body"):
                # An app whose health path answers 200 even when it is failing (Chatwoot's /api): read the body.
                check["internal_check"]["expect_body"] = spec["health_body"]
        elif spec.get("port") is not None:
            check["internal_check"] = {"type": "tcp", "port": spec["port"]}
        if name in hostnames:
            check["public_url"] = f"https://{hostnames[name]}{spec.get('health') or '/'}"
            if (svc.get("site") or {}).get("basic_auth") is True:
                # Caddy asks for the password before the app: the right public answer without it is 401.
                check["public_expect_status"] = [401]
        if name in by_name and "postgresql" in enabled:
            tenant = by_name[name]
            check["database"] = {
                "type": "postgresql",
                "container": endpoints["postgresql"]["container"],
                "port": endpoints["postgresql"]["port"],
                "dbname": tenant["database"],
                "user": name,
                "password": tenant["password"],
            }
        elif name == "redis" and redis_password:
            check["database"] = {
                "type": "redis",
                "container": ends["container"],
                "port": ends["port"],
                "password": redis_password,
            }
        checks.append(check)
    return checks


def login_report(registry: Any, domain: Any, project_dir: Any, admin_email: Any) -> List[str]:
    """One line per enabled public service with a ``login``: where to log in, as whom, and the command that shows
    the first password (never the password itself)."""
    registry = _mapping("login_report", registry, "the registry")
    lines = []
    hostnames = service_hostnames(registry, domain)
    for name in _enabled(registry):
        login = registry[name].get("login")
        if name not in hostnames or not isinstance(login, Mapping):
            continue
        lines.append(f"{name}: https://{hostnames[name]}{login['path']} - user "
                     f"{admin_email}; first password: sudo cat {project_dir}/services/{name}/{login['password_file']}")
    return lines


class FilterModule(NamedFilters):
    """Service registry filters."""

    FILTERS = (service_registry, service_hostname, service_hostnames, service_endpoints, service_roles, pinned_services,
               registry_errors, memory_specs, postgres_tenants, mongodb_users, basic_auth_users, s3_buckets,
               caddy_sites, health_checks, login_report)
