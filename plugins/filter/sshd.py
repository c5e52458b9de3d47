# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""sshd settings: the algorithm names OpenSSH knows, checked before anything changes, and what ``sshd -T`` says
it will really use compared with what the ssh role asked for.

The names are every value ``ssh -Q cipher``, ``ssh -Q mac`` and ``ssh -Q kex`` print on the OpenSSH releases of
the supported systems (Ubuntu 22.04: 8.9p1, Debian 12: 9.2p1, Ubuntu 24.04: 9.6p1, Debian 13: 10.0p1) - the
weak ones too, since knowing a name is not recommending it. A name that is none of them is a typo, refused here;
a real name this server's OpenSSH lacks (mlkem768x25519-sha256 before 9.9) is refused by ``sshd -t`` on the
candidate configuration, before it goes live.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.plugin_utils._filters import NamedFilters

KNOWN_CIPHERS = frozenset({
    "3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-ctr", "aes192-ctr", "aes256-ctr",
    "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
})
KNOWN_MACS = frozenset({
    "hmac-sha1", "hmac-sha1-96", "hmac-sha2-256", "hmac-sha2-512", "hmac-md5", "hmac-md5-96",
    "umac-64@openssh.com", "umac-128@openssh.com", "hmac-sha1-etm@openssh.com", "hmac-sha1-96-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-md5-etm@openssh.com",
    "hmac-md5-96-etm@openssh.com", "umac-64-etm@openssh.com", "umac-128-etm@openssh.com",
})
KNOWN_KEX = frozenset({
    "diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1", "diffie-hellman-group14-sha256",
    "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha1",
    "diffie-hellman-group-exchange-sha256", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
    "curve25519-sha256", "curve25519-sha256@libssh.org", "sntrup761x25519-sha512@openssh.com",
    # OpenSSH 9.9 and later only:
    "sntrup761x25519-sha512", "mlkem768x25519-sha256",
})
KNOWN = {"ssh_ciphers": ("cipher", KNOWN_CIPHERS), "ssh_macs": ("mac", KNOWN_MACS),
         "ssh_kex_algorithms": ("kex", KNOWN_KEX)}

# sshd -T prints some values under an older spelling than sshd_config(5) documents.
_SYNONYMS = {"permitrootlogin": {"without-password": "prohibit-password"}}


def sshd_algorithm_errors(settings: Any) -> List[str]:
    """One message per list of ``settings`` ({ssh_ciphers|ssh_macs|ssh_kex_algorithms: [names]}) that is empty, not
    a list of names, or names an algorithm OpenSSH does not know; each names the variable and the fix."""
    if not isinstance(settings, Mapping) or not set(settings) <= set(KNOWN):
        raise AnsibleFilterError(f"sshd_algorithm_errors: expects a dict with keys among {sorted(KNOWN)}, "
                                 f"got {settings!r}")
    errors = []
    for variable, names in settings.items():
        query, known = KNOWN[variable]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            errors.append(f"{variable} must be a non-empty list of algorithm names, found {names!r}")
            continue
        unknown = [n for n in names if n not in known]
        if unknown:
            errors.append(f"{variable} names {', '.join(map(repr, unknown))}, unknown to OpenSSH: fix the spelling "
                          f"or remove it (the names this server offers: ssh -Q {query})")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            errors.append(f"{variable} names {', '.join(map(repr, duplicated))} more than once: list each once")
    return errors


def sshd_effective(output: Any) -> Dict[str, List[str]]:
    """``sshd -T`` output as {keyword (lower case): [value of each line]} (``port`` may have several lines)."""
    if not isinstance(output, str):
        raise AnsibleFilterError(f"sshd_effective: expects the text sshd -T printed, got {type(output).__name__}")
    found: Dict[str, List[str]] = {}
    for line in output.splitlines():
        keyword, value = (line.strip().split(" ", 1) + [""])[:2]
        if keyword:
            found.setdefault(keyword.lower(), []).append(value.strip())
    return found


def sshd_mismatches(output: Any, wanted: Any) -> List[str]:
    """What ``sshd -T`` (``output``) will use that differs from ``wanted`` ({Keyword: value or list of values},
    as the ssh role's drop-in writes it), one message per keyword; empty when sshd uses every wanted value."""
    if not isinstance(wanted, Mapping):
        raise AnsibleFilterError(f"sshd_mismatches: expects a dict of sshd keywords, got {wanted!r}")
    effective = sshd_effective(output)
    errors = []
    for keyword, value in wanted.items():
        key = keyword.lower()
        want = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        have = [_SYNONYMS.get(key, {}).get(v, v) for v in effective.get(key, [])]
        if sorted(have) != sorted(want):
            errors.append(f"{keyword}: wanted {' '.join(want)}, sshd would use {' '.join(have) or 'nothing'}")
    return errors


class FilterModule(NamedFilters):
    """sshd setting filters."""

    FILTERS = (sshd_algorithm_errors, sshd_effective, sshd_mismatches)
