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

Error messages never contain a master secret, a derived secret or an override value.
"""
from __future__ import annotations

import hashlib
import hmac
import string
from typing import Any, Dict, Iterator, Mapping

from ansible.errors import AnsibleFilterError

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


def derive_secret(master: Any, purpose: Any, length: Any = 40, alphabet: Any = "alnum") -> str:
    """Derive the secret for ``purpose`` from ``master``: ``length`` characters drawn from ``alphabet``."""
    name = "derive_secret"
    master = _check_master(name, master)
    purpose = _check_purpose(name, purpose)
    length = _check_length(name, length)
    if not isinstance(alphabet, str) or alphabet not in ALPHABETS:
        raise AnsibleFilterError(f"{name}: alphabet must be one of {', '.join(ALPHABETS)}, got {alphabet!r}")
    chars = ALPHABETS[alphabet]

    prk = hmac.new(_VERSION_LABEL, master.encode("utf-8"), hashlib.sha256).digest()
    info = b"".join(
        (_VERSION_LABEL, b"/", purpose.encode("utf-8"), b"\x00", alphabet.encode("ascii"), b"\x00",
         str(length).encode("ascii"))
    )
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
) -> str:
    """Return ``overrides[purpose]`` when the operator set one, else ``derive_secret(master, purpose, length)``.

    An override that is missing, ``None`` or the empty string counts as not set. A set override shorter than
    ``min_override_length`` is refused; the error names ``borgstack_secret_overrides.<purpose>`` and never the
    value. With an override in place the master secret is not needed (nor checked).
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
        return str(override)
    return derive_secret(master, purpose, length, alphabet)


class FilterModule:
    """BorgStack secret filters."""

    def filters(self) -> Dict[str, Any]:
        return {
            "derive_secret": derive_secret,
            "stack_secret": stack_secret,
        }
