# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for plugins/module_utils/_scram.py.

The published exchanges used here:

* RFC 5802 section 5 (SCRAM-SHA-1, user "user", password "pencil").
* RFC 7677 section 3 (SCRAM-SHA-256, same user and password).
* The MongoDB driver authentication specification's SCRAM-SHA-1 example, where the password fed to SCRAM is
  MongoDB's digest md5("user:mongo:pencil").

Each exchange is replayed from both ends: as the client (derive the keys from the password, rebuild the
ClientProof and expected server signature) and as the server (recover ClientKey from the published proof and
check it against the StoredKey, sign with the ServerKey). The second direction ties the stored-key fixtures
below to the RFC text without trusting our own derivation.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pymongo.saslprep import saslprep as pymongo_saslprep

from ansible_collections.borgstack.stack.plugins.module_utils import _scram
from ansible_collections.borgstack.stack.plugins.module_utils._scram import (
    SaslPrepError,
    derive_mongodb_keys,
    mongodb_password_digest,
    saslprep,
    verify_scram_credentials,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def parse_attributes(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(","))


class Exchange:
    """One published SCRAM conversation, split as RFC 5802 section 3 defines AuthMessage."""

    def __init__(self, client_first: str, server_first: str, client_final: str, server_final: str) -> None:
        self.client_first_bare = client_first.split(",", 2)[2]  # drop the GS2 header "n,,"
        self.server_first = server_first
        self.client_final = client_final
        self.server_final = server_final
        self.client_final_without_proof = client_final.rsplit(",p=", 1)[0]
        attributes = parse_attributes(server_first)
        self.salt = unb64(attributes["s"])
        self.iterations = int(attributes["i"])
        self.proof = unb64(parse_attributes(client_final)["p"])
        self.signature = unb64(parse_attributes(server_final)["v"])

    @property
    def auth_message(self) -> bytes:
        return ",".join((self.client_first_bare, self.server_first, self.client_final_without_proof)).encode()


RFC5802 = Exchange(
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
)
RFC7677 = Exchange(
    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
)
MONGODB_SPEC_SHA1 = Exchange(
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,s=rQ9ZY3MntBeuP3E1TDVC4w==,i=10000",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawLHo+Vgk7qvUOKUwuWLIWg4l/9SraGMHEE,p=MC2T8BvbmWRckDw8oWl5IVghwCY=",
    "v=UMWeI25JD1yNYZRMpZ4VHvhZ9e0=",
)

# What a MongoDB server stores for user "user" / password "pencil" with the salts and iteration counts of
# the exchanges above (usersInfo + showCredentials format). test_stored_fixture_accepts_published_exchange
# proves these keys against the published proofs and signatures.
STORED_SHA256 = {
    "iterationCount": 4096,
    "salt": "W22ZaJ0SNY7soEsUEjb6gQ==",
    "storedKey": "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
    "serverKey": "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
}
STORED_SHA1 = {
    "iterationCount": 10000,
    "salt": "rQ9ZY3MntBeuP3E1TDVC4w==",
    "storedKey": "p5z6n7Utqf+pLBkaeJk4T3eBOOA=",
    "serverKey": "lRrVHyqMX+OOqGvpcvv9anlA8IQ=",
}
CREDENTIALS = {"SCRAM-SHA-256": STORED_SHA256, "SCRAM-SHA-1": STORED_SHA1}


# --------------------------------------------------------------------------------------------------------------
# Published vectors
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "algorithm", "password"),
    [
        pytest.param(RFC5802, "sha1", b"pencil", id="rfc5802-sha1"),
        pytest.param(RFC7677, "sha256", b"pencil", id="rfc7677-sha256"),
        pytest.param(MONGODB_SPEC_SHA1, "sha1", hashlib.md5(b"user:mongo:pencil").hexdigest().encode(),
                     id="mongodb-spec-sha1"),
    ],
)
def test_client_side_reproduces_published_proof_and_signature(exchange, algorithm, password):
    salted = _scram.salted_password(password, exchange.salt, exchange.iterations, algorithm)
    client_key = _scram.client_key(salted, algorithm)
    server_key = _scram.server_key(salted, algorithm)

    proof = _scram.client_proof(client_key, exchange.auth_message, algorithm)
    signature = _scram.server_signature(server_key, exchange.auth_message, algorithm)

    assert f"{exchange.client_final_without_proof},p={b64(proof)}" == exchange.client_final
    assert f"v={b64(signature)}" == exchange.server_final


@pytest.mark.parametrize(
    ("exchange", "algorithm", "stored"),
    [
        pytest.param(RFC7677, "sha256", STORED_SHA256, id="rfc7677-sha256"),
        pytest.param(MONGODB_SPEC_SHA1, "sha1", STORED_SHA1, id="mongodb-spec-sha1"),
    ],
)
def test_stored_fixture_accepts_published_exchange(exchange, algorithm, stored):
    """Act as the server: the published proof must unlock the stored keys (RFC 5802 section 3)."""
    assert unb64(stored["salt"]) == exchange.salt
    assert stored["iterationCount"] == exchange.iterations
    stored_key = unb64(stored["storedKey"])
    client_signature = hmac.new(stored_key, exchange.auth_message, algorithm).digest()
    recovered_client_key = bytes(a ^ b for a, b in zip(exchange.proof, client_signature))
    assert hashlib.new(algorithm, recovered_client_key).digest() == stored_key
    server_signature = hmac.new(unb64(stored["serverKey"]), exchange.auth_message, algorithm).digest()
    assert server_signature == exchange.signature


def test_mongodb_password_digest_is_md5_of_user_mongo_password():
    assert mongodb_password_digest("user", "pencil") == hashlib.md5(b"user:mongo:pencil").hexdigest()
    assert mongodb_password_digest("user", "pencil") != mongodb_password_digest("other", "pencil")


@pytest.mark.parametrize(
    ("mechanism", "stored"),
    [("SCRAM-SHA-256", STORED_SHA256), ("SCRAM-SHA-1", STORED_SHA1)],
)
def test_derive_mongodb_keys_matches_stored_fixture(mechanism, stored):
    keys = derive_mongodb_keys(mechanism, "user", "pencil", unb64(stored["salt"]), stored["iterationCount"])
    assert b64(keys.stored_key) == stored["storedKey"]
    assert b64(keys.server_key) == stored["serverKey"]


def test_sha1_keys_use_the_digest_not_the_plain_password():
    salt = unb64(STORED_SHA1["salt"])
    plain = _scram.salted_password(b"pencil", salt, 10000, "sha1")
    plain_stored = _scram.stored_key(_scram.client_key(plain, "sha1"), "sha1")
    assert b64(plain_stored) != STORED_SHA1["storedKey"]


# --------------------------------------------------------------------------------------------------------------
# verify_scram_credentials
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_verify_accepts_the_stored_password(mechanism):
    assert verify_scram_credentials("pencil", CREDENTIALS, mechanism, "user") is True


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
@pytest.mark.parametrize("password", ["pencil2", "Pencil", "pencil ", ""])
def test_verify_rejects_other_passwords(mechanism, password):
    assert verify_scram_credentials(password, CREDENTIALS, mechanism, "user") is False


def test_sha1_verification_depends_on_the_user_name():
    assert verify_scram_credentials("pencil", CREDENTIALS, "SCRAM-SHA-1", "someone") is False


def test_sha256_verification_does_not_depend_on_the_user_name():
    assert verify_scram_credentials("pencil", CREDENTIALS, "SCRAM-SHA-256", "someone") is True


@pytest.mark.parametrize("field", ["storedKey", "serverKey"])
def test_verify_needs_both_keys_to_match(field):
    tampered = dict(STORED_SHA256)
    raw = bytearray(unb64(tampered[field]))
    raw[0] ^= 0x01
    tampered[field] = b64(bytes(raw))
    assert verify_scram_credentials("pencil", {"SCRAM-SHA-256": tampered}, "SCRAM-SHA-256", "user") is False


def test_verify_uses_constant_time_compare(monkeypatch):
    seen = []
    real = hmac.compare_digest

    def recording(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(_scram.hmac, "compare_digest", recording)
    assert verify_scram_credentials("pencil", CREDENTIALS, "SCRAM-SHA-256", "user") is True
    assert len(seen) == 2


def test_verify_saslpreps_the_sha256_password():
    # U+00AD SOFT HYPHEN maps to nothing and U+00A0 to a space, so these prepare to the same string.
    salt = b"0123456789abcdef"
    keys = derive_mongodb_keys("SCRAM-SHA-256", "u", "pen cil", salt, 4096)
    stored = {"SCRAM-SHA-256": {"iterationCount": 4096, "salt": b64(salt),
                                "storedKey": b64(keys.stored_key), "serverKey": b64(keys.server_key)}}
    assert verify_scram_credentials("pen\u00ad\u00a0cil", stored, "SCRAM-SHA-256", "u")
    assert not verify_scram_credentials("pencil", stored, "SCRAM-SHA-256", "u")


def test_verify_rejects_an_unpreparable_sha256_password():
    with pytest.raises(SaslPrepError):
        verify_scram_credentials("pen\x07cil", CREDENTIALS, "SCRAM-SHA-256", "user")


@pytest.mark.parametrize(
    ("stored", "mechanism", "message"),
    [
        ({"SCRAM-SHA-1": STORED_SHA1}, "SCRAM-SHA-256", "no stored SCRAM-SHA-256"),
        (CREDENTIALS, "SCRAM-SHA-512", "unsupported SCRAM mechanism"),
        (CREDENTIALS, "MONGODB-CR", "unsupported SCRAM mechanism"),
        ({"SCRAM-SHA-256": dict(STORED_SHA256, salt="not base64!")}, "SCRAM-SHA-256", "salt is not valid base64"),
        ({"SCRAM-SHA-256": dict(STORED_SHA256, storedKey="")}, "SCRAM-SHA-256", "no storedKey"),
        ({"SCRAM-SHA-256": {k: v for k, v in STORED_SHA256.items() if k != "serverKey"}}, "SCRAM-SHA-256",
         "no serverKey"),
        ({"SCRAM-SHA-256": dict(STORED_SHA256, iterationCount=0)}, "SCRAM-SHA-256", "iterationCount"),
        ({"SCRAM-SHA-256": dict(STORED_SHA256, iterationCount="4096")}, "SCRAM-SHA-256", "iterationCount"),
    ],
)
def test_verify_reports_malformed_input(stored, mechanism, message):
    with pytest.raises(ValueError, match=message):
        verify_scram_credentials("pencil", stored, mechanism, "user")


def test_salted_password_rejects_zero_iterations():
    with pytest.raises(ValueError):
        _scram.salted_password(b"x", b"salt", 0, "sha256")


# --------------------------------------------------------------------------------------------------------------
# SASLprep (RFC 4013)
# --------------------------------------------------------------------------------------------------------------

SASLPREP_OK = [
    # RFC 4013 section 3 examples.
    pytest.param("I\u00adX", "IX", id="soft-hyphen-mapped-to-nothing"),
    pytest.param("user", "user", id="no-transformation"),
    pytest.param("USER", "USER", id="case-preserved"),
    pytest.param("\u00aa", "a", id="nfkc-feminine-ordinal"),
    pytest.param("\u2168", "IX", id="nfkc-roman-nine"),
    # Mapping table B.1 and C.1.2.
    pytest.param("a\u200bb", "ab", id="zero-width-space-to-nothing"),
    pytest.param("a\ufeffb", "ab", id="bom-to-nothing"),
    pytest.param("a\u00a0b", "a b", id="no-break-space-to-space"),
    pytest.param("a\u3000b", "a b", id="ideographic-space-to-space"),
    # NFKC leaves U+1680 as it is (U+00A0 and U+3000 it maps to a space by itself): only the C.1.2 mapping step
    # turns it into a space, and without that step it would be refused as a prohibited non-ASCII space.
    pytest.param("a\u1680b", "a b", id="ogham-space-mark-to-space"),
    pytest.param("a b", "a b", id="ascii-space-kept"),
    pytest.param("\ufb01", "fi", id="nfkc-ligature"),
    pytest.param("caf\u0065\u0301", "caf\u00e9", id="nfkc-composes"),
    pytest.param("\u0627\u0031\u0628", "\u0627\u0031\u0628", id="rtl-framed-by-rtl"),
    pytest.param("", "", id="empty"),
]

SASLPREP_ERRORS = [
    pytest.param("\u0007", "ASCII control", id="rfc4013-control"),
    pytest.param("a\x7fb", "ASCII control", id="delete"),
    pytest.param("a\u0085b", "non-ASCII control", id="next-line"),
    pytest.param("a\ue000b", "private use", id="private-use"),
    pytest.param("a\ufffeb", "non-character", id="non-character"),
    pytest.param("a\ud800b", "surrogate", id="lone-surrogate"),
    pytest.param("a\ufffdb", "inappropriate for plain text", id="replacement-character"),
    pytest.param("a\u2ff0b", "canonical representation", id="ideographic-description"),
    pytest.param("a\u200eb", "display property", id="left-to-right-mark"),
    pytest.param("a\U000e0001b", "tagging", id="language-tag"),
    pytest.param("\u0627\u0031", "start and end", id="rfc4013-bidi-rtl-not-at-end"),
    pytest.param("\u0627a\u0628", "mixes", id="bidi-mixed-directions"),
    pytest.param("a\u0221b", "unassigned", id="unassigned-in-unicode-3.2"),
]


@pytest.mark.parametrize(("value", "expected"), SASLPREP_OK)
def test_saslprep_prepares(value, expected):
    assert saslprep(value) == expected


@pytest.mark.parametrize(("value", "reason"), SASLPREP_ERRORS)
def test_saslprep_rejects(value, reason):
    with pytest.raises(SaslPrepError, match=reason) as caught:
        saslprep(value)
    assert value not in str(caught.value)


def test_saslprep_normalises_with_unicode_3_2_unless_told_otherwise():
    """U+03F9 arrived in Unicode 4.0: unassigned for RFC 4013, Sigma under current NFKC (PostgreSQL's view)."""
    with pytest.raises(SaslPrepError, match="unassigned"):
        saslprep("\u03f9")
    assert saslprep("\u03f9", unicode_3_2_nfkc=False) == "\u03a3"


def test_saslprep_allows_unassigned_for_queries():
    assert saslprep("a\u0221b", allow_unassigned=True) == "a\u0221b"


def test_saslprep_rejects_bytes():
    with pytest.raises(TypeError):
        saslprep(b"pencil")  # type: ignore[arg-type]


DIFFERENTIAL = [
    "pencil", "I\u00adX", "\u00aa", "\u2168", "a\u00a0b", "a\u1680b", "a\u200bb", "\ufb01", "caf\u0065\u0301",
    "\u0627\u0031\u0628", "\u0007", "a\ue000b", "\u0627\u0031", "\u0627a\u0628", "a\u0221b", "a\ufffdb",
]


@pytest.mark.parametrize("value", DIFFERENTIAL)
def test_saslprep_agrees_with_pymongo(value):
    """pymongo's SASLprep is what the driver applies when it logs in with SCRAM-SHA-256."""
    try:
        expected = pymongo_saslprep(value)
    except ValueError:
        with pytest.raises(SaslPrepError):
            saslprep(value)
    else:
        assert saslprep(value) == expected
