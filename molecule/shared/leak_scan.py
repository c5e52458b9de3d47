# SPDX-License-Identifier: GPL-3.0-or-later
"""Find secret values in text, in the encodings Ansible output can carry them.

A secret can reach a log raw, but also base64-encoded (``slurp`` returns file contents in base64, at any offset in
the file), URL-encoded (connection strings), JSON-escaped (``-vvv`` prints module arguments as JSON) or inside a
longer base64 blob. ``find_leaks`` looks for every form; base64 is matched at the three possible alignments of the
secret inside a longer encoded text, in the standard and the URL-safe alphabet, so a key in the middle of a slurped
config file is found too.
"""
from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Dict, Iterable, List, Mapping, Tuple

# Shorter values would match by chance (and are not secrets the stack derives).
MIN_SECRET_LENGTH = 8


def base64_fragments(secret: bytes) -> List[str]:
    """The base64 characters that encode ``secret`` wherever it sits in a longer encoded text.

    Prefixing 0, 1 or 2 bytes shifts the secret to each alignment; the characters that mix prefix or suffix bits
    are cut off, leaving what any encoding of a text that contains the secret must contain.
    """
    fragments = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret).decode()
        start = -(-8 * shift // 6)  # first character made of the secret's bits only
        end = 8 * (shift + len(secret)) // 6  # last one too
        fragment = encoded[start:end]
        if len(fragment) >= MIN_SECRET_LENGTH:
            fragments.append(fragment)
    return fragments


def encodings(secret: str) -> Dict[str, List[str]]:
    """Every form of ``secret`` that ``find_leaks`` looks for, by encoding name."""
    escaped = json.dumps(secret)[1:-1]
    # A file slurped in base64 holds the secret raw or, in a JSON file, escaped.
    std = [f for form in sorted({secret, escaped}) for f in base64_fragments(form.encode())]
    forms = {
        "raw": [secret],
        "json-escaped": [escaped],
        "url-encoded": [urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)],
        "base64": std,
        "base64url": [f.replace("+", "-").replace("/", "_") for f in std],
    }
    return {name: sorted(set(values)) for name, values in forms.items()}


def find_leaks(text: str, secrets: Mapping[str, str]) -> List[Tuple[str, str]]:
    """[(secret name, encoding)] for every secret of ``secrets`` ({name: value}) found in ``text`` in any form."""
    found = []
    for name, value in sorted(secrets.items()):
        if not value or len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"secret {name!r} is too short to look for ({len(value or '')} characters)")
        for encoding, forms in encodings(value).items():
            if any(form in text for form in forms):
                found.append((name, encoding))
    return found


def describe(leaks: Iterable[Tuple[str, str]]) -> str:
    """A message that names each leaked secret and how it was encoded (never its value)."""
    return ", ".join(f"{name} ({encoding})" for name, encoding in leaks)
