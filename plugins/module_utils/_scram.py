# SPDX-License-Identifier: GPL-3.0-or-later
"""SCRAM key derivation, SASLprep, and how MongoDB and PostgreSQL feed passwords into them (pure Python).

The one SCRAM and SASLprep implementation of the collection: ``_mongodb``/``mongodb_user`` and ``_postgresql``
both use it; only their storage formats (a BSON document, a ``pg_authid.rolpassword`` string) live with them.

SCRAM (RFC 5802, RFC 7677) stores, per user and mechanism, a salt, an iteration count and two keys:

    SaltedPassword = PBKDF2-HMAC-H(password, salt, i)
    ClientKey      = HMAC-H(SaltedPassword, "Client Key")
    StoredKey      = H(ClientKey)
    ServerKey      = HMAC-H(SaltedPassword, "Server Key")

A candidate password is the stored one exactly when it reproduces StoredKey and ServerKey from the stored
salt and iteration count. That is what lets a module decide "password unchanged" without logging in and
without ever seeing the old password.

MongoDB specifics:

* SCRAM-SHA-1 hashes the legacy digest ``md5("<user>:mongo:<password>")`` (lower-case hex), not the
  password itself, and applies no SASLprep.
* SCRAM-SHA-256 hashes the SASLprep'd (RFC 4013) password, UTF-8 encoded.

PostgreSQL specifics (``postgresql_saslprep``): pure-ASCII passwords are hashed unchanged, and a password that
SASLprep rejects (or prepares to nothing) is hashed as its raw UTF-8 bytes instead of being refused.

This file must not import pymongo: it is shared by code that runs without it and is unit-tested alone.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import stringprep
import unicodedata
from typing import Any, Mapping, NamedTuple

SCRAM_SHA_1 = "SCRAM-SHA-1"
SCRAM_SHA_256 = "SCRAM-SHA-256"

# Mechanism name -> hashlib name.
HASH_NAMES = {
    SCRAM_SHA_1: "sha1",
    SCRAM_SHA_256: "sha256",
}
SCRAM_MECHANISMS = tuple(HASH_NAMES)


class SaslPrepError(ValueError):
    """The string cannot be prepared with SASLprep (RFC 4013). The message never contains the string."""


class ScramKeys(NamedTuple):
    """The verifier MongoDB stores for one mechanism (raw bytes, not base64)."""

    stored_key: bytes
    server_key: bytes


# --------------------------------------------------------------------------------------------------------------
# SASLprep (RFC 4013, a profile of stringprep, RFC 3454)
# --------------------------------------------------------------------------------------------------------------

# RFC 4013 section 2.3: the prohibited output tables, with a readable reason each (never the character).
_PROHIBITED = (
    (stringprep.in_table_c12, "non-ASCII space"),
    (stringprep.in_table_c21, "ASCII control character"),
    (stringprep.in_table_c22, "non-ASCII control character"),
    (stringprep.in_table_c3, "private use character"),
    (stringprep.in_table_c4, "non-character code point"),
    (stringprep.in_table_c5, "surrogate code point"),
    (stringprep.in_table_c6, "character inappropriate for plain text"),
    (stringprep.in_table_c7, "character inappropriate for canonical representation"),
    (stringprep.in_table_c8, "change display property or deprecated character"),
    (stringprep.in_table_c9, "tagging character"),
)


def saslprep(value: str, allow_unassigned: bool = False, unicode_3_2_nfkc: bool = True) -> str:
    """Prepare ``value`` with SASLprep (RFC 4013).

    Steps: map non-ASCII spaces (table C.1.2) to U+0020 and "commonly mapped to nothing" characters (B.1) to
    nothing; normalise with NFKC; reject prohibited output (C.1.2-C.9) and, for stored strings
    (``allow_unassigned=False``), unassigned code points (A.1); apply the bidirectional rule of RFC 3454
    section 6.

    NFKC uses the Unicode 3.2 tables stringprep requires (what pymongo does). ``unicode_3_2_nfkc=False`` uses
    the running Python's current tables instead, as PostgreSQL does with its own: then a character added after
    Unicode 3.2 whose NFKC form is an older character (U+03F9 -> U+03A3) passes the unassigned check.

    Raises SaslPrepError naming the position and the class of the offending character, never the value.
    """
    if not isinstance(value, str):
        raise TypeError(f"saslprep expects str, got {type(value).__name__}")

    mapped = []
    for char in value:
        # U+200B is in both tables; "mapped to nothing" first, as pymongo (the client side of the login) does.
        if stringprep.in_table_b1(char):
            continue
        if stringprep.in_table_c12(char):
            mapped.append(" ")
        else:
            mapped.append(char)
    normalize = unicodedata.ucd_3_2_0.normalize if unicode_3_2_nfkc else unicodedata.normalize
    prepared = normalize("NFKC", "".join(mapped))
    if not prepared:
        return prepared

    for position, char in enumerate(prepared, start=1):
        for in_table, reason in _PROHIBITED:
            if in_table(char):
                raise SaslPrepError(f"prohibited character at position {position} ({reason})")
        if not allow_unassigned and stringprep.in_table_a1(char):
            raise SaslPrepError(f"unassigned code point at position {position}")

    _check_bidi(prepared)
    return prepared


def _check_bidi(prepared: str) -> None:
    """The bidirectional rule of RFC 3454 section 6."""
    if not any(stringprep.in_table_d1(char) for char in prepared):
        return
    if any(stringprep.in_table_d2(char) for char in prepared):
        raise SaslPrepError("mixes right-to-left and left-to-right characters (RFC 3454 section 6)")
    if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
        raise SaslPrepError(
            "right-to-left text must start and end with a right-to-left character (RFC 3454 section 6)"
        )


# --------------------------------------------------------------------------------------------------------------
# SCRAM primitives (RFC 5802 section 3)
# --------------------------------------------------------------------------------------------------------------


def hash_name(mechanism: str) -> str:
    """hashlib name for a SCRAM mechanism name; ValueError for anything else."""
    try:
        return HASH_NAMES[mechanism]
    except KeyError:
        raise ValueError(
            f"unsupported SCRAM mechanism {mechanism!r}; expected one of {', '.join(SCRAM_MECHANISMS)}"
        ) from None


def salted_password(password: bytes, salt: bytes, iterations: int, hash_algorithm: str) -> bytes:
    """SaltedPassword := Hi(password, salt, i), Hi being PBKDF2 with HMAC-H."""
    if iterations < 1:
        raise ValueError(f"iteration count must be positive, got {iterations}")
    return hashlib.pbkdf2_hmac(hash_algorithm, password, salt, iterations)


def client_key(salted: bytes, hash_algorithm: str) -> bytes:
    """ClientKey := HMAC(SaltedPassword, "Client Key")."""
    return hmac.new(salted, b"Client Key", hash_algorithm).digest()


def stored_key(client_key_value: bytes, hash_algorithm: str) -> bytes:
    """StoredKey := H(ClientKey)."""
    return hashlib.new(hash_algorithm, client_key_value).digest()


def server_key(salted: bytes, hash_algorithm: str) -> bytes:
    """ServerKey := HMAC(SaltedPassword, "Server Key")."""
    return hmac.new(salted, b"Server Key", hash_algorithm).digest()


def client_proof(client_key_value: bytes, auth_message: bytes, hash_algorithm: str) -> bytes:
    """ClientProof := ClientKey XOR HMAC(StoredKey, AuthMessage)."""
    signature = hmac.new(stored_key(client_key_value, hash_algorithm), auth_message, hash_algorithm).digest()
    return bytes(left ^ right for left, right in zip(client_key_value, signature))


def server_signature(server_key_value: bytes, auth_message: bytes, hash_algorithm: str) -> bytes:
    """ServerSignature := HMAC(ServerKey, AuthMessage)."""
    return hmac.new(server_key_value, auth_message, hash_algorithm).digest()


def derive_keys(password: bytes, salt: bytes, iterations: int, hash_algorithm: str) -> ScramKeys:
    """StoredKey and ServerKey for an already prepared password (the bytes fed to PBKDF2)."""
    salted = salted_password(password, salt, iterations, hash_algorithm)
    return ScramKeys(
        stored_key=stored_key(client_key(salted, hash_algorithm), hash_algorithm),
        server_key=server_key(salted, hash_algorithm),
    )


def keys_match(derived: ScramKeys, expected_stored_key: bytes, expected_server_key: bytes) -> bool:
    """True when both derived keys equal the stored ones.

    Both comparisons are constant-time and both always run, so timing does not tell which one failed.
    """
    stored_ok = hmac.compare_digest(derived.stored_key, expected_stored_key)
    server_ok = hmac.compare_digest(derived.server_key, expected_server_key)
    return stored_ok and server_ok


# --------------------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------------------


def postgresql_saslprep(password: str) -> bytes:
    """The bytes PostgreSQL feeds into PBKDF2 for SCRAM-SHA-256 (``pg_saslprep`` and its callers).

    PostgreSQL leaves pure-ASCII passwords untouched, and when SASLprep rejects a password (prohibited or
    unassigned characters, bad bidirectional text) or leaves nothing of it, it hashes the raw UTF-8 bytes
    instead of failing. NFKC uses current Unicode tables, as PostgreSQL's own normaliser does; everything else is
    the RFC 4013 ``saslprep`` above.
    """
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    try:
        prepared = saslprep(password, unicode_3_2_nfkc=False)
    except SaslPrepError:
        return raw
    return prepared.encode("utf-8") if prepared else raw


# --------------------------------------------------------------------------------------------------------------
# MongoDB
# --------------------------------------------------------------------------------------------------------------


def mongodb_password_digest(username: str, password: str) -> str:
    """The legacy MongoDB password digest used by SCRAM-SHA-1: md5("<user>:mongo:<password>") in hex."""
    # MD5 here is MongoDB's wire-format password transform, not a security choice of ours.
    return hashlib.md5(f"{username}:mongo:{password}".encode("utf-8")).hexdigest()  # nosec B324


def mongodb_scram_password(mechanism: str, username: str, password: str) -> bytes:
    """The bytes MongoDB feeds into PBKDF2 for ``mechanism``."""
    hash_name(mechanism)
    if mechanism == SCRAM_SHA_1:
        return mongodb_password_digest(username, password).encode("ascii")
    return saslprep(password).encode("utf-8")


def derive_mongodb_keys(mechanism: str, username: str, password: str, salt: bytes, iterations: int) -> ScramKeys:
    """StoredKey and ServerKey MongoDB would store for this user, password, salt and iteration count."""
    algorithm = hash_name(mechanism)
    return derive_keys(mongodb_scram_password(mechanism, username, password), salt, iterations, algorithm)


def _b64(entry: Mapping[str, Any], field: str, mechanism: str) -> bytes:
    value = entry.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"stored {mechanism} credentials have no {field}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"stored {mechanism} credentials: {field} is not valid base64") from None


def verify_scram_credentials(
    password: str, stored: Mapping[str, Any], mechanism: str, username: str
) -> bool:
    """True when ``password`` reproduces the stored SCRAM verifier of ``mechanism``.

    ``stored`` is the ``credentials`` document of MongoDB's ``usersInfo`` with ``showCredentials: true``::

        {"SCRAM-SHA-256": {"iterationCount": 15000, "salt": "...", "storedKey": "...", "serverKey": "..."},
         "SCRAM-SHA-1": {...}}

    Both StoredKey and ServerKey must match; the comparison is constant-time. Raises ValueError when the
    mechanism is unsupported or absent from ``stored``, or the stored document is malformed, and
    SaslPrepError when the password cannot be prepared for SCRAM-SHA-256.
    """
    hash_name(mechanism)
    entry = stored.get(mechanism)
    if not isinstance(entry, Mapping):
        raise ValueError(f"no stored {mechanism} credentials")
    iterations = entry.get("iterationCount")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"stored {mechanism} credentials have no valid iterationCount")
    salt = _b64(entry, "salt", mechanism)
    expected_stored = _b64(entry, "storedKey", mechanism)
    expected_server = _b64(entry, "serverKey", mechanism)

    keys = derive_mongodb_keys(mechanism, username, password, salt, iterations)
    return keys_match(keys, expected_stored, expected_server)
