# SPDX-License-Identifier: GPL-3.0-or-later
"""Secret derivation filters: every service secret comes from the operator's single master secret.

``derive_secret`` is deterministic (same master + purpose -> same secret on every run and machine) and gives
unrelated secrets for different purposes. Construction (version 1):

- ``prk = HMAC-SHA256(key=b"borgstack/v1", msg=master)`` (HKDF-extract style, fixed salt);
- a key stream of blocks ``HMAC-SHA256(prk, b"borgstack/v1/" + purpose + b"\\x00" + alphabet + b"\\x00" +
  str(length) + counter_be32)`` for counter = 0, 1, 2, ...;
- each stream byte ``b`` is kept only when ``b < 256 - 256 % len(alphabet)`` and then maps to
  ``alphabet[b % len(alphabet)]`` (rejection sampling: every character is equally likely, no modulo bias).

Changing the construction would rotate every secret of every installation: do not. A new construction needs
a new version label.

Rotation (``borgstack_secret_versions: {<purpose>: N}``). Version 1 - the default, also when the purpose is not
listed - is exactly the construction above, byte for byte: existing installations never rotate by upgrading. For a
version ``N >= 2`` the same ``prk`` is used and the key-stream label gets a suffix:
``info = b"borgstack/v1/" + purpose + b"\\x00" + alphabet + b"\\x00" + str(length) + b"\\x00rotation\\x00" + str(N)``.
In version 1 the length's digits (at most 3) are followed directly by the 4 counter bytes; a rotated label has at
least 11 more bytes after them, so no HMAC input of version 1 (any length) equals one of a rotated version, and no two
versions share one: every version is an unrelated HMAC output, and knowing one version's value tells nothing about
another's (nor about the master secret).

Not every secret may rotate: the registry says, for each secret, whether it may (``secrets.<purpose>.rotation``:
``never`` when a new value would destroy data - keys that encrypt what the apps stored -, ``first_setup`` when the
play applies it only when a server or an app is first set up, so a new value would not reach it and the play would
lose its login). ``secret_version_errors`` - called by the validation play before anything changes, with the
policies ``secret_policies`` reads from the registry - explains each refusal; ``service_contracts`` refuses them
too, as a last line of defence.

Error messages never contain a master secret, a derived secret or an override value.
"""
from __future__ import annotations

import hashlib
import hmac
import string
from typing import Any, Dict, Iterator, List, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

ALPHABETS: Dict[str, str] = {
    # Safe unescaped in connection URLs, env files, YAML and for Rails SECRET_KEY_BASE.
    "alnum": string.ascii_uppercase + string.ascii_lowercase + string.digits,
    # For keys that must be hexadecimal (lower case).
    "hex": "0123456789abcdef",
}

_VERSION_LABEL = b"borgstack/v1"
MIN_MASTER_LENGTH = 32
MIN_LENGTH = 16
MAX_LENGTH = 512


def _check_length(filter_name: str, length: Any) -> int:
    if isinstance(length, bool) or not isinstance(length, int):
        raise AnsibleFilterError(f"{filter_name}: length must be an integer, got {type(length).__name__}")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise AnsibleFilterError(
            f"{filter_name}: length must be between {MIN_LENGTH} and {MAX_LENGTH}, got {length}"
        )
    return length


def _check_purpose(filter_name: str, purpose: Any) -> str:
    if not isinstance(purpose, str):
        raise AnsibleFilterError(f"{filter_name}: purpose must be a string, got {type(purpose).__name__}")
    if not purpose.strip():
        raise AnsibleFilterError(f"{filter_name}: purpose must not be empty")
    return str(purpose)


def _check_master(filter_name: str, master: Any) -> str:
    # The master secret is never put in a message: only its type or its length.
    if not isinstance(master, str):
        raise AnsibleFilterError(
            f"{filter_name}: master must be a string (borgstack_master_secret), got {type(master).__name__}"
        )
    if len(master) < MIN_MASTER_LENGTH:
        raise AnsibleFilterError(
            f"{filter_name}: master (borgstack_master_secret) must be at least {MIN_MASTER_LENGTH} characters, "
            f"got {len(master)}; generate one with: openssl rand -base64 48"
        )
    return str(master)


def _stream(prk: bytes, info: bytes) -> Iterator[int]:
    counter = 0
    while True:
        block = hmac.new(prk, info + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        yield from block
        counter += 1


def _check_version(filter_name: str, purpose: str, version: Any) -> int:
    where = f"borgstack_secret_versions.{purpose}"
    if isinstance(version, bool) or not isinstance(version, int):
        raise AnsibleFilterError(
            f"{filter_name}: {where} must be an integer (1, 2, 3 ...), got {type(version).__name__}"
        )
    if version < 1:
        raise AnsibleFilterError(
            f"{filter_name}: {where} must be 1 or more (versions only move forward), got {version}"
        )
    return version


def derive_secret(master: Any, purpose: Any, length: Any = 40, alphabet: Any = "alnum", version: Any = 1) -> str:
    """Derive the secret for ``purpose`` from ``master``: ``length`` characters drawn from ``alphabet``.

    ``version`` 1 is the original construction; ``version`` N >= 2 gives an unrelated value (module docstring).
    """
    name = "derive_secret"
    master = _check_master(name, master)
    purpose = _check_purpose(name, purpose)
    length = _check_length(name, length)
    version = _check_version(name, purpose, version)
    if not isinstance(alphabet, str) or alphabet not in ALPHABETS:
        raise AnsibleFilterError(f"{name}: alphabet must be one of {', '.join(ALPHABETS)}, got {alphabet!r}")
    chars = ALPHABETS[alphabet]

    prk = hmac.new(_VERSION_LABEL, master.encode("utf-8"), hashlib.sha256).digest()
    info = b"".join(
        (_VERSION_LABEL, b"/", purpose.encode("utf-8"), b"\x00", alphabet.encode("ascii"), b"\x00",
         str(length).encode("ascii"))
    )
    if version > 1:
        info += b"\x00rotation\x00" + str(version).encode("ascii")
    limit = 256 - 256 % len(chars)
    out = []
    for byte in _stream(prk, info):
        if byte < limit:
            out.append(chars[byte % len(chars)])
            if len(out) == length:
                break
    return "".join(out)


def stack_secret(
    purpose: Any,
    master: Any,
    overrides: Any,
    length: Any = 40,
    min_override_length: Any = 12,
    alphabet: Any = "alnum",
    versions: Any = None,
) -> str:
    """Return ``overrides[purpose]`` when the operator set one, else ``derive_secret(master, purpose, length)``.

    An override that is missing, ``None`` or the empty string counts as not set. A set override shorter than
    ``min_override_length`` is refused; the error names ``borgstack_secret_overrides.<purpose>`` and never the
    value. With an override in place the master secret is not needed (nor checked).

    ``versions`` (``borgstack_secret_versions``) maps a purpose to its rotation version (absent: 1). A version
    above 1 together with an override is refused (whether a purpose may rotate at all is the registry's policy).
    """
    name = "stack_secret"
    purpose = _check_purpose(name, purpose)
    if isinstance(min_override_length, bool) or not isinstance(min_override_length, int) or min_override_length < 1:
        raise AnsibleFilterError(f"{name}: min_override_length must be a positive integer")
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise AnsibleFilterError(
            f"{name}: overrides (borgstack_secret_overrides) must be a dict purpose -> secret, "
            f"got {type(overrides).__name__}"
        )
    version = _versions_entry(name, purpose, versions)
    override = overrides.get(purpose)
    if override is not None and override != "":
        where = f"borgstack_secret_overrides.{purpose}"
        if not isinstance(override, str):
            raise AnsibleFilterError(f"{name}: {where} must be a string, got {type(override).__name__}")
        if len(override) < min_override_length:
            raise AnsibleFilterError(
                f"{name}: {where} is shorter than {min_override_length} characters; set a longer value or remove "
                f"it to use the derived secret"
            )
        if version > 1:
            raise AnsibleFilterError(
                f"{name}: borgstack_secret_versions.{purpose} has no effect while {where} is set; remove one of them"
            )
        return str(override)
    return derive_secret(master, purpose, length, alphabet, version)


def _versions_entry(filter_name: str, purpose: str, versions: Any) -> int:
    if versions is None:
        return 1
    if not isinstance(versions, Mapping):
        raise AnsibleFilterError(
            f"{filter_name}: borgstack_secret_versions must be a dict purpose -> version, got {type(versions).__name__}"
        )
    if versions.get(purpose) is None:
        return 1
    return _check_version(filter_name, purpose, versions[purpose])


def secret_version_errors(versions: Any, policies: Any, overrides: Any = None, applied: Any = None) -> List[str]:
    """Every reason to refuse ``borgstack_secret_versions`` before anything changes, one message per problem.

    ``policies`` is every purpose the stack derives with its rotation policy, ``{purpose: {rotation, why}}``
    (``secret_policies`` of the registry): ``allowed``, or ``never``/``first_setup`` with why it is refused.
    ``applied`` is what the server runs (the versions its last healthy run recorded): a version below it - going
    back to an older secret - is refused. Messages name the variable and say what to do; they never contain a
    secret.
    """
    var = "borgstack_secret_versions"
    if versions is None:
        versions = {}
    if not isinstance(versions, Mapping):
        return [f"{var} must be a dict purpose -> version (e.g. {{redis_password: 2}}), got {type(versions).__name__}"]
    if not isinstance(policies, Mapping) or not all(
            isinstance(p, Mapping) and p.get("rotation") in ("allowed", "never", "first_setup")
            for p in policies.values()):
        raise AnsibleFilterError("secret_version_errors: policies must be a dict purpose -> {rotation, why} "
                                 "(secret_policies)")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise AnsibleFilterError("secret_version_errors: overrides must be a dict (borgstack_secret_overrides)")
    refused = {str(p): str(v.get("why") or "") for p, v in policies.items() if v["rotation"] != "allowed"}
    known = sorted(str(p) for p in policies)
    errors: List[str] = []
    for purpose, version in versions.items():
        where = f"{var}.{purpose}"
        if purpose not in known:
            errors.append(
                f"{where}: unknown secret; the stack derives these (check the spelling): {', '.join(known)}"
            )
            continue
        if isinstance(version, bool) or not isinstance(version, int):
            errors.append(f"{where} must be an integer (1, 2, 3 ...), got {version!r}")
            continue
        if version < 1:
            errors.append(f"{where} must be 1 or more (versions only move forward), got {version}")
            continue
        if version == 1:
            continue
        if purpose in refused:
            errors.append(f"{where} is refused: {refused[purpose]}")
        elif overrides and overrides.get(purpose) not in (None, ""):
            errors.append(
                f"{where} has no effect while borgstack_secret_overrides.{purpose} is set: remove one of them "
                f"(the override wins; change the override to rotate it)"
            )
    if isinstance(applied, Mapping):
        for purpose, ran in sorted(applied.items()):
            if purpose not in known:
                continue  # a service no longer in the registry: its secret is not derived any more
            wanted = versions.get(purpose)
            wanted = 1 if wanted is None else wanted
            if isinstance(ran, bool) or not isinstance(ran, int) or isinstance(wanted, bool) \
                    or not isinstance(wanted, int) or wanted >= ran:
                continue
            errors.append(
                f"{var}.{purpose} is {wanted} but this server already runs version {ran} (recorded by its last "
                f"healthy run): versions only move forward - set it to {ran}, or higher to rotate again"
            )
    return errors


class FilterModule(NamedFilters):
    """BorgStack secret filters."""

    FILTERS = (derive_secret, stack_secret, secret_version_errors)
