# SPDX-License-Identifier: GPL-3.0-or-later
"""The leak scanner the molecule scenarios use on Ansible's output (molecule/shared/leak_scan.py)."""
from __future__ import annotations

import base64
import json
import sys
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "molecule" / "shared"))
from leak_scan import describe, find_leaks  # noqa: E402  pylint: disable=wrong-import-position,import-error

SECRET = "k3y/with+odd=chars&more\"quoted\\"
SECRETS = {"n8n_encryption_key": SECRET, "other": "NotInTheText-0123456789"}


def _config(prefix: str) -> bytes:
    return f'{prefix}{{"encryptionKey": {json.dumps(SECRET)}, "x": 1}}\n'.encode()


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "0123456789"])
def test_base64_of_a_file_holding_the_secret_is_found_at_every_offset(prefix):
    slurped = base64.b64encode(_config(prefix)).decode()
    output = f'ok: [host] => {{"content": "{slurped}", "encoding": "base64"}}'
    assert ("n8n_encryption_key", "base64") in find_leaks(output, SECRETS)


@pytest.mark.parametrize("prefix", ["", "a", "ab"])
def test_url_safe_base64_is_found(prefix):
    encoded = base64.urlsafe_b64encode(_config(prefix)).decode()
    leaks = find_leaks(encoded, SECRETS)
    assert ("n8n_encryption_key", "base64url") in leaks


@pytest.mark.parametrize("encoding,text", [
    ("raw", f"password={SECRET}"),
    ("json-escaped", json.dumps({"password": SECRET})),
    ("url-encoded", "postgresql://n8n:" + urllib.parse.quote(SECRET, safe="") + "@db/n8n"),
    ("url-encoded", "a=" + urllib.parse.quote_plus(SECRET)),
])
def test_other_encodings_are_found(encoding, text):
    assert (("n8n_encryption_key", encoding) in find_leaks(text, SECRETS)), find_leaks(text, SECRETS)


def test_clean_text_has_no_leak_and_the_message_never_holds_the_value():
    clean = base64.b64encode(b"nothing secret here, just a long config file " * 20).decode()
    assert not find_leaks(clean + "raw text", SECRETS)
    message = describe(find_leaks(SECRET, SECRETS))
    assert message == "n8n_encryption_key (raw)" and SECRET not in message


def test_a_value_too_short_to_look_for_is_refused():
    with pytest.raises(ValueError, match="too short"):
        find_leaks("text", {"empty": ""})
