# SPDX-License-Identifier: GPL-3.0-or-later
"""The SCRAM-SHA-256 verifier helpers checked against the RFC 7677 example exchange (no server needed).

The integration tests check the same helpers against verifiers the real server computes; this file pins them
to the published test vector so a regression shows up even where Docker is unavailable.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from ansible_collections.borgstack.stack.plugins.module_utils._postgresql import (
    scram_sha256_keys,
    scram_sha256_matches,
    scram_sha256_verifier,
)
from ansible_collections.borgstack.stack.plugins.module_utils._scram import postgresql_saslprep

# RFC 7677 section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_NONCE = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_AUTH_MESSAGE = (
    "n=user,r=rOprNGfwEbeRWgbNEkqO,"
    f"r={RFC_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    f"c=biws,r={RFC_NONCE}"
).encode()
RFC_CLIENT_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_keys_reproduce_rfc7677_exchange():
    stored_key, server_key = scram_sha256_keys("pencil", RFC_SALT, 4096)
    client_signature = hmac.new(stored_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(RFC_CLIENT_PROOF, client_signature))
    server_signature = hmac.new(server_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest()
    assert (hashlib.sha256(client_key).digest(), server_signature) == (stored_key, RFC_SERVER_SIGNATURE)


def test_verifier_format_and_round_trip():
    verifier = scram_sha256_verifier("pencil", salt=RFC_SALT)
    other = scram_sha256_verifier("pencil")
    head, salt_b64 = verifier.split("$")[1].split(":")
    other_salt = base64.b64decode(other.split("$")[1].split(":")[1])
    assert (verifier.split("$", maxsplit=1)[0], head, salt_b64, len(other_salt),
            other == verifier, scram_sha256_matches("pencil", verifier), scram_sha256_matches("pencil", other),
            scram_sha256_matches("pencil!", verifier)) == (
        "SCRAM-SHA-256", "4096", "W22ZaJ0SNY7soEsUEjb6gQ==", 16, False, True, True, False)


@pytest.mark.parametrize("stored", [
    None,
    "",
    "md5" + "0" * 32,
    "pencil",
    "SCRAM-SHA-256$4096:not base64!$AAAA:AAAA",
    "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",
])
def test_non_scram_or_broken_stored_values_never_match(stored):
    assert scram_sha256_matches("pencil", stored) is False


@pytest.mark.parametrize("password, prepared", [
    ("plain", b"plain"),
    ("I\u00adX", "IX".encode()),             # soft hyphen is mapped to nothing
    ("a\u00a0b", b"a b"),                    # non-ASCII space becomes a space
    ("a\u1680b", b"a b"),                    # so does U+1680, which NFKC alone would leave (C.1.2 mapping)
    ("\u2168", b"IX"),                       # NFKC: roman numeral nine
    ("bad\u0007", "bad\u0007".encode()),     # ASCII is never changed
    ("x\u0627", "x\u0627".encode()),         # prohibited bidi mix: PostgreSQL hashes the raw bytes
    ("\u0627\u0031", "\u0627\u0031".encode()),  # RTL text ending in a digit: raw bytes
    ("a\u0221b", "a\u0221b".encode()),         # unassigned in Unicode 3.2: raw bytes
    ("a\ue000b", "a\ue000b".encode()),         # private use: raw bytes
    ("\u00ad", "\u00ad".encode()),             # prepares to nothing: raw bytes, not an empty password
    ("caf\u0065\u0301", "caf\u00e9".encode()),  # NFKC composes
    ("\u03f9", "\u03a3".encode()),             # added in Unicode 4.0; PostgreSQL's current NFKC maps it to Sigma
])
def test_saslprep_follows_postgresql(password, prepared):
    assert postgresql_saslprep(password) == prepared


def test_keys_use_the_postgresql_preparation():
    """A password SASLprep changes and one it rejects both reach PBKDF2 the way PostgreSQL feeds them."""
    assert scram_sha256_keys("I\u00adX", RFC_SALT, 4096) == scram_sha256_keys("IX", RFC_SALT, 4096)
    assert scram_sha256_matches("x\u0627", scram_sha256_verifier("x\u0627", salt=RFC_SALT))
    assert not scram_sha256_matches("x", scram_sha256_verifier("x\u0627", salt=RFC_SALT))


# --------------------------------------------------------------------------------------------------------------
# scram_sha256_matches: each part of the stored verifier must agree, not just one of them
# --------------------------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def _verifier(iterations: int, salt: bytes, stored_key: bytes, server_key: bytes) -> str:
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


RFC_STORED_KEY, RFC_SERVER_KEY = scram_sha256_keys("pencil", RFC_SALT, 4096)
RFC_VERIFIER = _verifier(4096, RFC_SALT, RFC_STORED_KEY, RFC_SERVER_KEY)


def test_the_rfc_verifier_matches_its_password():
    """The baseline the tampered cases below differ from by one part each."""
    assert scram_sha256_matches("pencil", RFC_VERIFIER) is True


@pytest.mark.parametrize("stored", [
    pytest.param(_verifier(4096, RFC_SALT, RFC_STORED_KEY, _flip(RFC_SERVER_KEY)), id="only-stored-key-matches"),
    pytest.param(_verifier(4096, RFC_SALT, _flip(RFC_STORED_KEY), RFC_SERVER_KEY), id="only-server-key-matches"),
    pytest.param(_verifier(4096, RFC_SALT, _flip(RFC_STORED_KEY), _flip(RFC_SERVER_KEY)), id="no-key-matches"),
    pytest.param(_verifier(4096, RFC_SALT, RFC_STORED_KEY[:-1], RFC_SERVER_KEY), id="stored-key-truncated"),
    pytest.param(_verifier(4096, RFC_SALT, RFC_STORED_KEY, RFC_SERVER_KEY + b"\0"), id="server-key-extended"),
    pytest.param(_verifier(4096, RFC_SALT, RFC_SERVER_KEY, RFC_STORED_KEY), id="keys-swapped"),
    pytest.param(_verifier(4096, _flip(RFC_SALT), RFC_STORED_KEY, RFC_SERVER_KEY), id="other-salt"),
    pytest.param(_verifier(4097, RFC_SALT, RFC_STORED_KEY, RFC_SERVER_KEY), id="other-iterations"),
    pytest.param(_verifier(2048, RFC_SALT, RFC_STORED_KEY, RFC_SERVER_KEY), id="fewer-iterations"),
])
def test_a_verifier_with_one_part_altered_does_not_match(stored):
    assert scram_sha256_matches("pencil", stored) is False


@pytest.mark.parametrize("stored", [
    pytest.param(RFC_VERIFIER.replace("SCRAM-SHA-256", "SCRAM-SHA-1"), id="other-mechanism"),
    pytest.param(RFC_VERIFIER.replace("SCRAM-SHA-256", "scram-sha-256"), id="lower-case-mechanism"),
    pytest.param(RFC_VERIFIER + "$", id="trailing-dollar"),
    pytest.param(" " + RFC_VERIFIER, id="leading-space"),
    pytest.param(RFC_VERIFIER + "\n", id="trailing-newline"),
    pytest.param(RFC_VERIFIER.rsplit(":", 1)[0], id="server-key-missing"),
    pytest.param(RFC_VERIFIER.replace(":", ";"), id="wrong-separators"),
    pytest.param(RFC_VERIFIER.replace("$4096:", "$:"), id="iterations-missing"),
    pytest.param(RFC_VERIFIER.replace("$4096:", "$-4096:"), id="negative-iterations"),
    pytest.param(RFC_VERIFIER.replace("$4096:", "$four:"), id="iterations-not-a-number"),
    pytest.param(_verifier(4096, RFC_SALT, RFC_STORED_KEY, RFC_SERVER_KEY).replace("=$", "$", 1),
                 id="salt-padding-missing"),
    pytest.param(f"SCRAM-SHA-256$4096:{_b64(RFC_SALT)}${_b64(RFC_STORED_KEY)}:", id="server-key-empty"),
    pytest.param(RFC_VERIFIER.encode().hex(), id="hex-noise"),
])
def test_malformed_verifiers_do_not_match(stored):
    assert scram_sha256_matches("pencil", stored) is False
