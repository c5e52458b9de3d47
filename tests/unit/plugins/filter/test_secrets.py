# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests of derive_secret and stack_secret: determinism, separation, alphabet, uniformity, overrides, errors; and of
secret_version_errors with the rotation policies of the shipped registry (secret_policies)."""
from __future__ import annotations

import hashlib
import hmac
import re
import string
from collections import Counter
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter import secrets
from ansible_collections.borgstack.stack.plugins.filter.contract import secret_policies
from ansible_collections.borgstack.stack.plugins.filter.registry import service_registry
from ansible_collections.borgstack.stack.plugins.filter.secrets import (
    FilterModule,
    derive_secret,
    secret_version_errors,
    stack_secret,
)

from sidecar_doc import check_sidecar_doc  # pylint: disable=import-error

MASTER = "correct-horse-battery-staple-0123456789-master"
OTHER_MASTER = "another-operator-master-secret-0123456789-xyz"
ALNUM = set(string.ascii_letters + string.digits)
HEX = set("0123456789abcdef")


def reference_derive(master: str, purpose: str, length: int, alphabet: str, version: int = 1) -> str:
    """Independent implementation of the construction documented in secrets.py (version 1, and N >= 2)."""
    chars = {"alnum": string.ascii_uppercase + string.ascii_lowercase + string.digits,
             "hex": "0123456789abcdef"}[alphabet]
    prk = hmac.new(b"borgstack/v1", master.encode(), hashlib.sha256).digest()
    info = b"borgstack/v1/" + purpose.encode() + b"\0" + alphabet.encode() + b"\0" + str(length).encode()
    if version > 1:
        info += b"\0rotation\0" + str(version).encode()
    out = ""
    counter = 0
    while len(out) < length:
        for byte in hmac.new(prk, info + counter.to_bytes(4, "big"), hashlib.sha256).digest():
            if byte < 256 - 256 % len(chars) and len(out) < length:
                out += chars[byte % len(chars)]
        counter += 1
    return out


# ---------------------------------------------------------------------------------------------------------------
# derive_secret
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "purpose, length, alphabet",
    [
        ("n8n_encryption_key", 40, "alnum"),
        ("chatwoot_secret_key_base", 128, "alnum"),
        ("postgresql_superuser_password", 16, "alnum"),
        ("lowcoder_api_key_secret", 512, "alnum"),
        ("some_hex_key", 64, "hex"),
        ("ação/ünïcode purpose", 40, "alnum"),
    ],
)
def test_derive_secret_matches_documented_construction(purpose, length, alphabet):
    got = derive_secret(MASTER, purpose, length, alphabet)
    assert got == reference_derive(MASTER, purpose, length, alphabet)
    assert len(got) == length
    assert set(got) <= (HEX if alphabet == "hex" else ALNUM)


def test_derive_secret_known_answer():
    # Compatibility pin: changing the construction would silently rotate every installation's secrets.
    assert derive_secret("0123456789abcdef0123456789abcdef", "test", 16) == reference_derive(
        "0123456789abcdef0123456789abcdef", "test", 16, "alnum"
    )
    assert derive_secret("0123456789abcdef0123456789abcdef", "test", 16) == "yTX5z7bE4dAMyb1m"


def test_derive_secret_is_deterministic():
    assert derive_secret(MASTER, "redis_password") == derive_secret(MASTER, "redis_password")
    assert derive_secret(MASTER, "redis_password") == derive_secret(MASTER, "redis_password", 40, "alnum")


def test_derive_secret_is_distinct_per_purpose_master_length_and_alphabet():
    purposes = [f"service_{i}_password" for i in range(200)] + ["a", "b", "ab", "a/b", "a\0b"]
    derived = {derive_secret(MASTER, purpose) for purpose in purposes}
    assert len(derived) == len(purposes)
    assert derive_secret(MASTER, "x") != derive_secret(OTHER_MASTER, "x")
    # a longer secret is not an extension of the shorter one
    assert not derive_secret(MASTER, "x", 64).startswith(derive_secret(MASTER, "x", 40))
    assert derive_secret(MASTER, "x", 40, "hex") != derive_secret(MASTER, "x", 40, "alnum").lower()
    for value in derived:
        assert MASTER not in value


@pytest.mark.parametrize("length", [16, 17, 40, 63, 64, 100, 511, 512])
def test_derive_secret_length(length):
    assert len(derive_secret(MASTER, "p", length)) == length
    assert len(derive_secret(MASTER, "p", length, "hex")) == length


@pytest.mark.parametrize("alphabet, chars", [("alnum", ALNUM), ("hex", HEX)])
def test_derive_secret_is_uniform(alphabet, chars):
    # 2000 secrets x 64 chars. With modulo bias (byte % 62, no rejection) 'A'..'H' would come up 5/256 instead
    # of 4/256 of the time: chi-square in the thousands. Unbiased output stays near the degrees of freedom.
    counts = Counter()
    for i in range(2000):
        counts.update(derive_secret(MASTER, f"uniformity/{i}", 64, alphabet))
    total = sum(counts.values())
    assert set(counts) == chars
    expected = total / len(chars)
    chi_square = sum((counts[c] - expected) ** 2 / expected for c in chars)
    dof = len(chars) - 1
    # p < 1e-5 bounds: 61 dof -> ~115, 15 dof -> ~44
    assert chi_square < dof + 7 * (2 * dof) ** 0.5, chi_square
    # uniform digits: the first character (the one most affected by a modulo bug) is not skewed either
    first = Counter(derive_secret(MASTER, f"first/{i}", 16, alphabet)[0] for i in range(3000))
    assert max(first.values()) < 3 * 3000 / len(chars)


@pytest.mark.parametrize(
    "args, words",
    [
        (("short-master-31-chars-xxxxxxxxx", "p"), "at least 32"),
        ((12345678901234567890123456789012345, "p"), "master must be a string"),
        ((None, "p"), "master must be a string"),
        ((MASTER, ""), "purpose"),
        ((MASTER, "   "), "purpose"),
        ((MASTER, None), "purpose"),
        ((MASTER, "p", 15), "length"),
        ((MASTER, "p", 513), "length"),
        ((MASTER, "p", "40"), "length"),
        ((MASTER, "p", True), "length"),
        ((MASTER, "p", 40, "base64"), "alphabet"),
    ],
)
def test_derive_secret_bad_input(args, words):
    with pytest.raises(AnsibleFilterError, match=words) as err:
        derive_secret(*args)
    assert MASTER not in str(err.value)
    if isinstance(args[0], str):
        assert args[0] not in str(err.value)
    assert "12345678901234567890" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# stack_secret
# ---------------------------------------------------------------------------------------------------------------


def test_stack_secret_uses_the_override_when_set():
    overrides = {"postgresql_n8n_password": "operator-chosen-pw-123"}
    assert stack_secret("postgresql_n8n_password", MASTER, overrides) == "operator-chosen-pw-123"
    # with an override the master is not needed
    assert stack_secret("postgresql_n8n_password", None, overrides) == "operator-chosen-pw-123"


@pytest.mark.parametrize("overrides", [None, {}, {"other": "x" * 20}, {"p": None}, {"p": ""}])
def test_stack_secret_derives_when_not_overridden(overrides):
    assert stack_secret("p", MASTER, overrides) == derive_secret(MASTER, "p", 40)
    assert stack_secret("p", MASTER, overrides, 64, 12, "hex") == derive_secret(MASTER, "p", 64, "hex")


def test_stack_secret_length_applies_to_the_derived_secret():
    assert len(stack_secret("p", MASTER, {}, 100)) == 100


def test_stack_secret_min_override_length():
    assert stack_secret("p", MASTER, {"p": "x" * 12}) == "x" * 12
    assert stack_secret("p", MASTER, {"p": "y" * 8}, min_override_length=8) == "y" * 8
    with pytest.raises(AnsibleFilterError):
        stack_secret("p", MASTER, {"p": "x" * 12}, min_override_length=13)


@pytest.mark.parametrize(
    "args, kwargs, words, leaked",
    [
        (("chatwoot_secret_key_base", MASTER, {"chatwoot_secret_key_base": "tooShort99"}), {},
         r"borgstack_secret_overrides\.chatwoot_secret_key_base", "tooShort99"),
        (("redis_password", MASTER, {"redis_password": 987654321987654321}), {},
         r"borgstack_secret_overrides\.redis_password", "987654321987654321"),
        (("redis_password", MASTER, {"redis_password": ["sekritValue-123456"]}), {},
         r"borgstack_secret_overrides\.redis_password", "sekritValue-123456"),
        (("p", MASTER, ["sekritValue-123456"]), {}, "overrides", "sekritValue-123456"),
        (("p", MASTER, "sekritValue-123456"), {}, "overrides", "sekritValue-123456"),
        (("p", "too-short-master-value", {}), {}, "at least 32", "too-short-master-value"),
        (("", MASTER, {"": "sekritValue-123456"}), {}, "purpose", "sekritValue-123456"),
        (("p", MASTER, {}), {"min_override_length": 0}, "min_override_length", MASTER),
        (("p", MASTER, {}), {"length": 8}, "length", MASTER),
    ],
)
def test_stack_secret_errors_do_not_leak(args, kwargs, words, leaked):
    with pytest.raises(AnsibleFilterError, match=words) as err:
        stack_secret(*args, **kwargs)
    message = str(err.value)
    assert leaked not in message
    assert MASTER not in message


# ---------------------------------------------------------------------------------------------------------------
# Rotation: borgstack_secret_versions
# ---------------------------------------------------------------------------------------------------------------

# Known answers of version 1, computed with the code before rotation existed (commit 03f9331): they must never change,
# or every existing installation would rotate every secret on its next run.
V1_VECTORS = [
    ("redis_password", 40, "alnum", "vwpLpZwKASgcKWGBxVuHaP0PQz00pB42kmhAZicU"),
    ("postgresql_n8n", 40, "alnum", "zuqIDhgQRKe5lgI6N74fKhIO9L1N5qJztEQKhBZk"),
    ("seaweedfs_s3_access_key", 20, "alnum", "kSyayoDI20zzuMP1MPk0"),
    ("some_hex_key", 32, "hex", "f65dd43a74d2e77a3f70793fe46025cb"),
]


@pytest.mark.parametrize("purpose, length, alphabet, expected", V1_VECTORS)
@pytest.mark.parametrize("versions", [None, {}, {"other": 3}, {"PURPOSE": 1}, {"PURPOSE": None}])
def test_version_1_is_todays_secret(purpose, length, alphabet, expected, versions):
    if versions is not None:
        versions = {(purpose if k == "PURPOSE" else k): v for k, v in versions.items()}
    assert derive_secret(MASTER, purpose, length, alphabet) == expected
    assert derive_secret(MASTER, purpose, length, alphabet, 1) == expected
    assert stack_secret(purpose, MASTER, {}, length, 12, alphabet, versions) == expected
    assert stack_secret(purpose, MASTER, {}, length, alphabet=alphabet, versions=versions) == expected


def test_version_n_follows_the_documented_construction():
    for version in (2, 3, 10, 1000):
        for purpose, length, alphabet, _v1 in V1_VECTORS:
            got = derive_secret(MASTER, purpose, length, alphabet, version)
            assert got == reference_derive(MASTER, purpose, length, alphabet, version)
            assert len(got) == length and set(got) <= (HEX if alphabet == "hex" else ALNUM)
            assert stack_secret(purpose, MASTER, {}, length, alphabet=alphabet, versions={purpose: version}) == got
    # A known answer for version 2, so that a change of the rotated construction is seen too.
    assert derive_secret(MASTER, "redis_password", 40, "alnum", 2) == ROTATED_REDIS_V2


ROTATED_REDIS_V2 = "LZuoyhpstx5mibT4xxcMgOhdfjVFR88ObOYDaM4t"


def test_versions_give_unrelated_values():
    values = {derive_secret(MASTER, "redis_password", 40, "alnum", v) for v in range(1, 51)}
    assert len(values) == 50
    # No shared prefix beyond chance between versions (a rotated value is not a tweak of the old one).
    v1, v2 = derive_secret(MASTER, "p", 40, "alnum", 1), derive_secret(MASTER, "p", 40, "alnum", 2)
    assert sum(a == b for a, b in zip(v1, v2)) < 8
    # The version is per purpose: rotating one leaves the others as they were.
    versions = {"redis_password": 2}
    assert stack_secret("postgresql_n8n", MASTER, {}, versions=versions) == V1_VECTORS[1][3]
    assert stack_secret("redis_password", MASTER, {}, versions=versions) != V1_VECTORS[0][3]


@pytest.mark.parametrize(
    "version, words",
    [(0, "1 or more"), (-2, "1 or more"), ("2", "must be an integer"), (2.0, "must be an integer"),
     (True, "must be an integer")],
)
def test_bad_versions_are_refused_naming_the_variable(version, words):
    with pytest.raises(AnsibleFilterError, match=r"borgstack_secret_versions\.redis_password") as err:
        stack_secret("redis_password", MASTER, {}, versions={"redis_password": version})
    assert words in str(err.value)
    assert MASTER not in str(err.value)
    with pytest.raises(AnsibleFilterError, match=words):
        derive_secret(MASTER, "redis_password", 40, "alnum", version)
    with pytest.raises(AnsibleFilterError, match="borgstack_secret_versions must be a dict"):
        stack_secret("redis_password", MASTER, {}, versions=[2])


# The rotation policies of the shipped registry, merged as the play merges it (service_registry, no changes).
ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/services.yml").read_text(encoding="utf-8"))[
    "borgstack_service_defaults"]
REGISTRY = service_registry(DEFAULTS, {})
POLICIES = secret_policies(REGISTRY)
# Registry secrets by rotation policy, with the entry that declares each one.
DECLARED = {str(purpose): (name, spec or {}) for name, svc in REGISTRY.items()
            for purpose, spec in (svc.get("secrets") or {}).items()}
NEVER = sorted(p for p, (_n, spec) in DECLARED.items() if spec.get("rotation") == "never")
FIRST_SETUP = sorted(p for p, (_n, spec) in DECLARED.items() if spec.get("rotation") == "first_setup")
ALLOWED = sorted(p for p, policy in POLICIES.items() if policy["rotation"] == "allowed")


def test_the_registry_declares_the_secrets_these_tests_rely_on():
    # A registry that lost its policies would make the parametrized tests below run on nothing.
    assert {"n8n_encryption_key", "chatwoot_secret_key_base", "chatwoot_encryption_primary_key",
            "chatwoot_encryption_deterministic_key", "chatwoot_encryption_key_derivation_salt",
            "lowcoder_db_encryption_password", "lowcoder_db_encryption_salt", "duplicati_settings_encryption_key",
            "duplicati_backup_passphrase"} <= set(NEVER)
    assert {"postgresql_superuser", "mongodb_root_password", "n8n_owner_password", "directus_admin_password",
            "chatwoot_admin_password"} <= set(FIRST_SETUP)
    assert {"redis_password", "seaweedfs_s3_access_key", "postgresql_n8n", "mongodb_lowcoder",
            "basic_auth_fileflows"} <= set(ALLOWED)


def test_the_rotation_policy_lives_in_the_registry_not_in_the_mechanism():
    assert not hasattr(secrets, "ROTATION_REFUSED") and not hasattr(secrets, "ROTATABLE")


@pytest.mark.parametrize("purpose", NEVER + FIRST_SETUP)
def test_stack_secret_derives_any_version_the_policy_is_the_callers(purpose):
    """stack_secret is the mechanism: it derives version N of any purpose (service_contracts and the validation
    play refuse what the registry's policy forbids, tests/unit/plugins/filter/test_contract.py)."""
    assert stack_secret(purpose, MASTER, {}, versions={purpose: 1}) == derive_secret(MASTER, purpose)
    assert stack_secret(purpose, MASTER, {}, versions={purpose: 2}) == derive_secret(MASTER, purpose, 40, "alnum", 2)


def test_a_version_with_an_override_is_refused():
    overrides = {"redis_password": "operator-chosen-pw-123"}
    assert stack_secret("redis_password", MASTER, overrides, versions={"redis_password": 1}) == overrides["redis_password"]
    with pytest.raises(AnsibleFilterError, match="has no effect while borgstack_secret_overrides.redis_password") as err:
        stack_secret("redis_password", MASTER, overrides, versions={"redis_password": 2})
    assert "operator-chosen-pw-123" not in str(err.value)


def test_secret_version_errors_accepts_rotatable_versions():
    versions = {"postgresql_n8n": 2, "redis_password": 7, "seaweedfs_s3_secret_key": 2, "n8n_encryption_key": 1,
                "mongodb_lowcoder": 3, "basic_auth_fileflows": 2, "directus_secret": 2}
    assert secret_version_errors(versions, POLICIES) == []
    assert secret_version_errors({purpose: 2 for purpose in ALLOWED}, POLICIES) == []
    assert secret_version_errors({}, POLICIES) == []
    assert secret_version_errors(None, {}) == []


@pytest.mark.parametrize("purpose", NEVER)
def test_every_secret_whose_rotation_destroys_data_is_refused_with_its_why(purpose):
    why = " ".join(str(DECLARED[purpose][1]["why"]).split())
    assert len(why) > 20, f"{purpose}: the registry's why is too short to tell the operator anything"
    errors = secret_version_errors({purpose: 2}, POLICIES)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"borgstack_secret_versions.{purpose} is refused: rotating it would destroy data")
    assert why in errors[0] and "It never rotates" in errors[0]
    assert secret_version_errors({purpose: 1}, POLICIES) == []


@pytest.mark.parametrize("purpose", FIRST_SETUP)
def test_a_first_setup_secret_is_refused_naming_its_override(purpose):
    owner, spec = DECLARED[purpose]
    errors = secret_version_errors({purpose: 3}, POLICIES)
    assert len(errors) == 1, errors
    assert f"borgstack_secret_versions.{purpose} is refused" in errors[0]
    assert f"only when {owner} is first set up" in errors[0]
    assert f"change it {spec['change']}" in errors[0]
    assert errors[0].endswith(f"put the new value in borgstack_secret_overrides.{purpose}")


@pytest.mark.parametrize(
    "versions, words",
    [
        ({"n8n_encryption_key": 2}, ["borgstack_secret_versions.n8n_encryption_key is refused", "undecryptable"]),
        ({"chatwoot_secret_key_base": 2}, ["chatwoot_secret_key_base is refused", "destroy data"]),
        ({"chatwoot_encryption_primary_key": 3}, ["is refused", "Active Record"]),
        ({"lowcoder_db_encryption_password": 2}, ["is refused", "data source"]),
        ({"lowcoder_db_encryption_salt": 2}, ["is refused", "data source"]),
        ({"postgresql_superuser": 2}, ["is refused", "ALTER ROLE", "borgstack_secret_overrides.postgresql_superuser"]),
        ({"mongodb_root_password": 2}, ["is refused", "first set up", "changeUserPassword"]),
        ({"n8n_owner_password": 2}, ["is refused", "first set up", "Settings > Personal"]),
        ({"redis_password": 0}, ["borgstack_secret_versions.redis_password must be 1 or more"]),
        ({"redis_password": -1}, ["borgstack_secret_versions.redis_password must be 1 or more"]),
        ({"redis_password": "2"}, ["borgstack_secret_versions.redis_password must be an integer"]),
        ({"redis_password": 1.5}, ["borgstack_secret_versions.redis_password must be an integer"]),
        ({"redis_password": None}, ["borgstack_secret_versions.redis_password must be an integer"]),
        ({"postgresql_n8m": 2}, ["borgstack_secret_versions.postgresql_n8m: unknown secret", "postgresql_n8n"]),
        ({"redis": 2}, ["borgstack_secret_versions.redis: unknown secret", "redis_password"]),
        ([["redis_password", 2]], ["borgstack_secret_versions must be a dict"]),
    ],
)
def test_secret_version_errors_refuses(versions, words):
    errors = secret_version_errors(versions, POLICIES)
    assert len(errors) == 1, errors
    for word in words:
        assert word in errors[0]


def test_an_unknown_purpose_lists_the_known_ones():
    errors = secret_version_errors({"n8n_encryptoin_key": 2}, POLICIES)
    assert len(errors) == 1, errors
    listed = errors[0].split("check the spelling): ", 1)[1].split(", ")
    assert listed == sorted(POLICIES)
    # Per-service logins (from the entries' postgres, mongodb and site.basic_auth) are known as well.
    assert {"postgresql_n8n", "postgresql_chatwoot", "mongodb_lowcoder", "basic_auth_fileflows"} <= set(listed)
    # A purpose the policies do not list is unknown, whatever its name.
    assert "unknown secret" in secret_version_errors({"redis_password": 2}, {})[0]


@pytest.mark.parametrize("policies", [["redis_password"], {"redis_password": "allowed"},
                                      {"redis_password": {"rotation": "sometimes"}}, {"redis_password": {}}, None])
def test_secret_version_errors_refuses_policies_that_are_not_secret_policies(policies):
    with pytest.raises(AnsibleFilterError, match=r"policies must be a dict purpose -> \{rotation, why\}"):
        secret_version_errors({"redis_password": 2}, policies)


def test_secret_version_errors_refuses_a_version_with_an_override():
    errors = secret_version_errors({"redis_password": 2}, POLICIES, {"redis_password": "operator-chosen-pw-123"})
    assert errors and "borgstack_secret_overrides.redis_password" in errors[0]
    assert "operator-chosen-pw-123" not in errors[0]
    assert secret_version_errors({"redis_password": 2}, POLICIES, {"redis_password": ""}) == []


def test_secret_version_errors_refuses_going_back_below_what_the_server_runs():
    applied = {"postgresql_n8n": 3, "redis_password": 2, "gone_service": 5, "postgresql_directus": 1}
    assert secret_version_errors({"postgresql_n8n": 3, "redis_password": 4}, POLICIES, None, applied) == []
    errors = secret_version_errors({"postgresql_n8n": 2}, POLICIES, None, applied)
    assert len(errors) == 2, errors
    assert "borgstack_secret_versions.postgresql_n8n is 2 but this server already runs version 3" in errors[0]
    assert "versions only move forward" in errors[0]
    # Removing the entry (or the whole dict) means version 1: refused as well.
    assert "borgstack_secret_versions.redis_password is 1 but this server already runs version 2" in errors[1]
    # gone_service is not derived any more (no longer in the registry): ignored.
    assert len(secret_version_errors({}, POLICIES, None, applied)) == 2
    assert len(secret_version_errors(None, POLICIES, None, applied)) == 2
    # No record (a new host) or a record that is not a dict: nothing to compare with.
    assert secret_version_errors({}, POLICIES, None, {}) == []
    assert secret_version_errors({}, POLICIES, None, None) == []


def test_every_registry_secret_has_one_policy_and_the_destructive_keys_never_rotate():
    assert set(DECLARED) <= set(POLICIES)
    for purpose, (_name, spec) in DECLARED.items():
        assert spec.get("rotation") in ("allowed", "never", "first_setup"), f"{purpose} has no rotation policy"
        assert POLICIES[purpose]["rotation"] == spec["rotation"]
        assert bool(POLICIES[purpose]["why"]) is (spec["rotation"] != "allowed"), purpose
    for purpose in NEVER:
        assert "destroy data" in POLICIES[purpose]["why"]


GROUP_VARS = ROOT / "playbooks" / "group_vars" / "all"
STACK_SECRET_CALL = re.compile(r"'([a-z0-9_]+)'\s*\|\s*borgstack\.stack\.stack_secret\(([^)]*)\)", re.S)


def test_every_wired_secret_takes_its_version_and_has_a_rotation_policy():
    """A rotatable secret wired without ``versions=`` would silently never rotate; one the registry gives no policy
    would be refused as an unknown purpose the day an operator tries. (Wiring that derives a secret itself, outside
    the contract, is what the roles are leaving: every call still left must follow both rules.)"""
    files = sorted(GROUP_VARS.glob("*.yml")) + sorted((ROOT / "roles").glob("*/defaults/main.yml"))
    calls = [(path.name, m.group(1), m.group(2)) for path in files
             for m in STACK_SECRET_CALL.finditer(path.read_text(encoding="utf-8"))]
    for name, purpose, args in calls:
        assert purpose in POLICIES, f"{name}: {purpose} has no rotation policy in the registry"
        assert POLICIES[purpose]["rotation"] != "allowed" or "versions=borgstack_secret_versions" in args, (
            f"{name}: {purpose} is derived without its version")


# ---------------------------------------------------------------------------------------------------------------
# Plugin wiring and sidecar docs
# ---------------------------------------------------------------------------------------------------------------

FILTER_DIR = Path(secrets.__file__).resolve().parent


def test_filter_module_exports():
    assert FilterModule().filters() == {"derive_secret": derive_secret, "stack_secret": stack_secret,
                                        "secret_version_errors": secret_version_errors}


@pytest.mark.parametrize("name", ["derive_secret", "stack_secret", "secret_version_errors"])
def test_sidecar_doc_matches_signature(name):
    check_sidecar_doc(getattr(secrets, name), FILTER_DIR / f"{name}.yml")
