# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The service registry: merge the operator's changes over the defaults, check the whole, and derive wiring.

Pure functions; every filter raises AnsibleFilterError on bad input. ``registry_errors`` returns the list of
problems instead, so a validation task can show all of them at once.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.secrets import stack_secret

_KEYS = frozenset(
    ("enabled", "layer", "image", "public", "hostname", "port", "health", "requires", "postgres", "redis_db",
     "s3_bucket", "memory_mb", "login")
)
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


def service_registry(defaults: Any, overrides: Any) -> Dict[str, Dict[str, Any]]:
    """Merge ``overrides`` (borgstack_services) over ``defaults`` (borgstack_service_defaults), one level deep per
    service and two for the ``postgres`` dict. Unknown service names are refused, naming the variable."""
    defaults = _mapping("service_registry", defaults, "the defaults")
    overrides = _mapping("service_registry", overrides, "borgstack_services")
    unknown = sorted(str(k) for k in overrides if k not in defaults)
    if unknown:
        raise AnsibleFilterError(
            f"borgstack_services: unknown service(s) {', '.join(unknown)}; known services: {', '.join(defaults)}"
        )
    merged: Dict[str, Dict[str, Any]] = {}
    for name, base in defaults.items():
        entry = dict(_mapping("service_registry", base, f"the defaults of {name}"))
        change = _mapping("service_registry", overrides.get(name), f"borgstack_services.{name}")
        for key, value in change.items():
            if key == "postgres" and isinstance(value, Mapping) and isinstance(entry.get(key), Mapping):
                entry[key] = {**entry[key], **value}
            else:
                entry[key] = value
        merged[name] = entry
    return merged


def _enabled(registry: Mapping[str, Mapping[str, Any]]) -> List[str]:
    return [name for name, svc in registry.items() if svc.get("enabled") is True]


def service_hostname(name: str, registry: Any, domain: Any) -> str:
    """Public host name of one service: its ``hostname`` or ``<name>.<domain>``."""
    registry = _mapping("service_hostname", registry, "the registry")
    if name not in registry:
        raise AnsibleFilterError(f"service_hostname: unknown service {name!r}")
    return str(registry[name].get("hostname") or f"{name}.{domain}")


def service_hostnames(registry: Any, domain: Any) -> Dict[str, str]:
    """{service: public host name} for every enabled public service."""
    registry = _mapping("service_hostnames", registry, "the registry")
    return {
        name: service_hostname(name, registry, domain)
        for name in _enabled(registry)
        if registry[name].get("public") is True
    }


def registry_errors(registry: Any, domain: Any) -> List[str]:
    """Every problem in the merged registry, each naming the variable (borgstack_services.<service>.<key>)."""
    registry = _mapping("registry_errors", registry, "the registry")
    errors: List[str] = []
    var = "borgstack_services"
    enabled = _enabled(registry)
    for name, svc in registry.items():
        where = f"{var}.{name}"
        extra = sorted(set(svc) - _KEYS)
        if extra:
            errors.append(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(_KEYS))})")
        if not isinstance(svc.get("enabled"), bool):
            errors.append(f"{where}.enabled must be true or false, found {svc.get('enabled')!r}")
        if svc.get("layer") not in _LAYERS:
            errors.append(f"{where}.layer must be one of {', '.join(_LAYERS)}, found {svc.get('layer')!r}")
        image_error = _image_error(where, svc.get("image"))
        if image_error:
            errors.append(image_error)
        port = svc.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            errors.append(f"{where}.port must be an integer between 1 and 65535, found {port!r}")
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
        hostname = svc.get("hostname")
        if hostname not in (None, "") and (not isinstance(hostname, str) or not _HOST_RE.match(hostname)):
            errors.append(f"{where}.hostname {hostname!r} is not a valid DNS host name (lower case, no scheme)")
        pg = svc.get("postgres")
        if pg is not None:
            if not isinstance(pg, Mapping) or not _IDENT_RE.match(str(pg.get("database", ""))):
                errors.append(f"{where}.postgres.database must be a SQL identifier ([a-z_][a-z0-9_]*), found "
                              f"{(pg or {}).get('database') if isinstance(pg, Mapping) else pg!r}")
            elif not isinstance(pg.get("extensions", []), list):
                errors.append(f"{where}.postgres.extensions must be a list")
            if name in enabled and "postgresql" not in enabled:
                errors.append(f"{name} has a PostgreSQL tenant: enable {var}.postgresql or disable {where}")
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
        if db is not None and (not isinstance(db, int) or isinstance(db, bool) or not 0 <= db <= 15):
            errors.append(f"{where}.redis_db must be an integer between 0 and 15, found {db!r}")

    def _dupes(key: str, values: Dict[str, Any], what: str) -> None:
        seen: Dict[Any, str] = {}
        for name, value in values.items():
            if value in seen:
                errors.append(f"{var}.{seen[value]}.{key} and {var}.{name}.{key} are both {value!r}: {what}")
            else:
                seen[value] = name

    on = {n: registry[n] for n in enabled}
    _dupes("port", {n: s.get("port") for n, s in on.items()}, "each service needs its own port")
    _dupes("redis_db", {n: s["redis_db"] for n, s in on.items() if s.get("redis_db") is not None},
           "each service needs its own Redis database")
    _dupes("s3_bucket", {n: s["s3_bucket"] for n, s in on.items() if s.get("s3_bucket") is not None},
           "each service needs its own bucket")
    _dupes("postgres.database",
           {n: s["postgres"].get("database") for n, s in on.items() if isinstance(s.get("postgres"), Mapping)},
           "each service needs its own database")
    if isinstance(domain, str) and _HOST_RE.match(domain):
        _dupes("hostname", service_hostnames(registry, domain), "two services cannot share one host name")
    return errors


def postgres_tenants(registry: Any, master: Any, overrides: Any = None) -> List[Dict[str, Any]]:
    """PostgreSQL tenants of the enabled services: [{name, database, extensions, password}].

    The password is the secret of purpose ``postgresql_<service>`` (see stack_secret), the same the app reads.
    """
    registry = _mapping("postgres_tenants", registry, "the registry")
    tenants = []
    for name in _enabled(registry):
        pg = registry[name].get("postgres")
        if not isinstance(pg, Mapping):
            continue
        tenants.append({
            "name": name,
            "database": pg.get("database", name),
            "extensions": list(pg.get("extensions", [])),
            "password": stack_secret(f"postgresql_{name}", master, overrides or {}),
        })
    return tenants


def health_checks(registry: Any, domain: Any, project: Any, master: Any, overrides: Any = None) -> List[Dict[str, Any]]:
    """The stack_health module's ``services`` list for the enabled services.

    Container names follow the roles' convention ``<project>-<service>``. Services with a ``health`` path get an
    internal HTTP check on their port, public ones a check of ``https://<hostname>/<health>`` through the proxy,
    those with a PostgreSQL tenant a real login with the tenant's password, and Redis a password-checked PING.
    """
    registry = _mapping("health_checks", registry, "the registry")
    enabled = _enabled(registry)
    overrides = overrides or {}
    checks: List[Dict[str, Any]] = []
    for name in enabled:
        svc = registry[name]
        check: Dict[str, Any] = {"name": name, "container": f"{project}-{name}"}
        health = svc.get("health")
        if health:
            check["internal_check"] = {"type": "http", "port": svc["port"], "path": health}
        else:
            check["internal_check"] = {"type": "tcp", "port": svc["port"]}
        if svc.get("public") is True:
            check["public_url"] = f"https://{service_hostname(name, registry, domain)}{health or '/'}"
        pg = svc.get("postgres")
        if isinstance(pg, Mapping) and "postgresql" in enabled:
            check["database"] = {
                "type": "postgresql",
                "container": f"{project}-postgresql",
                "port": registry["postgresql"]["port"],
                "dbname": pg.get("database", name),
                "user": name,
                "password": stack_secret(f"postgresql_{name}", master, overrides),
            }
        elif name == "redis":
            check["database"] = {
                "type": "redis",
                "container": f"{project}-redis",
                "port": svc["port"],
                "password": stack_secret("redis_password", master, overrides),
            }
        checks.append(check)
    return checks


def login_report(registry: Any, domain: Any, project_dir: Any, admin_email: Any) -> List[str]:
    """One line per enabled public service with a ``login``: where to log in, as whom, and the command that shows
    the first password (never the password itself)."""
    registry = _mapping("login_report", registry, "the registry")
    lines = []
    for name in _enabled(registry):
        svc = registry[name]
        login = svc.get("login")
        if svc.get("public") is not True or not isinstance(login, Mapping):
            continue
        lines.append(f"{name}: https://{service_hostname(name, registry, domain)}{login['path']} - user "
                     f"{admin_email}; first password: sudo cat {project_dir}/services/{name}/{login['password_file']}")
    return lines


class FilterModule:
    """Service registry filters."""

    def filters(self) -> Dict[str, Any]:
        return {
            "service_registry": service_registry,
            "service_hostname": service_hostname,
            "service_hostnames": service_hostnames,
            "registry_errors": registry_errors,
            "postgres_tenants": postgres_tenants,
            "health_checks": health_checks,
            "login_report": login_report,
        }
