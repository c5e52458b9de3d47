"""Table-driven tests of the sshd filters: algorithm names checked against OpenSSH's, ``sshd -T`` read and compared
with the ssh role's settings; and the role's shipped algorithm lists held to the same check."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.borgstack.stack.plugins.filter.sshd import (
    KNOWN_CIPHERS, KNOWN_KEX, KNOWN_MACS, sshd_algorithm_errors, sshd_effective, sshd_mismatches)

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "ssh" / "defaults" / "main.yml").read_text())

# `ssh -Q cipher|mac|kex` of OpenSSH 10.0p1 (Debian 13), as the lab host printed them.
OPENSSH_10_0 = {
    "cipher": "3des-cbc aes128-cbc aes192-cbc aes256-cbc aes128-ctr aes192-ctr aes256-ctr aes128-gcm@openssh.com "
              "aes256-gcm@openssh.com chacha20-poly1305@openssh.com",
    "mac": "hmac-sha1 hmac-sha1-96 hmac-sha2-256 hmac-sha2-512 hmac-md5 hmac-md5-96 umac-64@openssh.com "
           "umac-128@openssh.com hmac-sha1-etm@openssh.com hmac-sha1-96-etm@openssh.com hmac-sha2-256-etm@openssh.com "
           "hmac-sha2-512-etm@openssh.com hmac-md5-etm@openssh.com hmac-md5-96-etm@openssh.com umac-64-etm@openssh.com "
           "umac-128-etm@openssh.com",
    "kex": "diffie-hellman-group1-sha1 diffie-hellman-group14-sha1 diffie-hellman-group14-sha256 "
           "diffie-hellman-group16-sha512 diffie-hellman-group18-sha512 diffie-hellman-group-exchange-sha1 "
           "diffie-hellman-group-exchange-sha256 ecdh-sha2-nistp256 ecdh-sha2-nistp384 ecdh-sha2-nistp521 "
           "curve25519-sha256 curve25519-sha256@libssh.org sntrup761x25519-sha512 sntrup761x25519-sha512@openssh.com "
           "mlkem768x25519-sha256",
}
# OpenSSH 9.2p1 (Debian 12, this machine) offers the same, less the two names 9.9 added.
OPENSSH_9_2_KEX = set(OPENSSH_10_0["kex"].split()) - {"sntrup761x25519-sha512", "mlkem768x25519-sha256"}


def test_known_names_are_what_openssh_offers():
    assert KNOWN_CIPHERS == set(OPENSSH_10_0["cipher"].split())
    assert KNOWN_MACS == set(OPENSSH_10_0["mac"].split())
    assert KNOWN_KEX == set(OPENSSH_10_0["kex"].split())


def test_the_shipped_lists_are_known_and_offered_by_every_supported_openssh():
    settings = {name: DEFAULTS[name] for name in ("ssh_ciphers", "ssh_macs", "ssh_kex_algorithms")}
    assert sshd_algorithm_errors(settings) == []
    # The oldest supported OpenSSH (8.9, Ubuntu 22.04) has the kex names of 9.2 (sntrup761 since 8.5).
    assert set(DEFAULTS["ssh_kex_algorithms"]) <= OPENSSH_9_2_KEX
    weak = {"3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "hmac-sha1", "hmac-sha1-96", "hmac-md5",
            "hmac-md5-96", "diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1",
            "diffie-hellman-group-exchange-sha1"}
    shipped = {n for names in settings.values() for n in names}
    assert not shipped & weak
    assert all(n.endswith("-etm@openssh.com") for n in DEFAULTS["ssh_macs"]), "MACs: encrypt-then-MAC only"


@pytest.mark.parametrize("variable,names,expected", [
    ("ssh_ciphers", ["aes256-gcm@openssh.com", "aes512-gcm@openssh.com"],
     "ssh_ciphers names 'aes512-gcm@openssh.com', unknown to OpenSSH: fix the spelling or remove it (the names this "
     "server offers: ssh -Q cipher)"),
    ("ssh_macs", ["hmac-sha2-256-etm", "umac-128-etm@openssh.com", "hmac-sha3"],
     "ssh_macs names 'hmac-sha2-256-etm', 'hmac-sha3', unknown to OpenSSH: fix the spelling or remove it (the names "
     "this server offers: ssh -Q mac)"),
    ("ssh_kex_algorithms", ["curve25519"],
     "ssh_kex_algorithms names 'curve25519', unknown to OpenSSH: fix the spelling or remove it (the names this server "
     "offers: ssh -Q kex)"),
    ("ssh_ciphers", [], "ssh_ciphers must be a non-empty list of algorithm names, found []"),
    ("ssh_ciphers", "aes256-ctr", "ssh_ciphers must be a non-empty list of algorithm names, found 'aes256-ctr'"),
    ("ssh_macs", [None], "ssh_macs must be a non-empty list of algorithm names, found [None]"),
    ("ssh_ciphers", ["aes256-ctr", "aes128-ctr", "aes256-ctr"],
     "ssh_ciphers names 'aes256-ctr' more than once: list each once"),
])
def test_bad_algorithm_lists_are_refused_naming_the_variable(variable, names, expected):
    assert sshd_algorithm_errors({variable: names}) == [expected]


def test_names_newer_than_some_servers_are_known():
    """mlkem768x25519-sha256 is a real name (OpenSSH 9.9+): accepted here; sshd -t refuses it on an older server."""
    assert sshd_algorithm_errors({"ssh_kex_algorithms": ["mlkem768x25519-sha256", "curve25519-sha256"]}) == []


@pytest.mark.parametrize("bad", [None, ["ssh_ciphers"], {"ssh_hostkeys": []}])
def test_algorithm_errors_reject_what_is_not_a_settings_dict(bad):
    with pytest.raises(AnsibleFilterError):
        sshd_algorithm_errors(bad)


SSHD_T = """port 22
port 2222
permitrootlogin without-password
passwordauthentication no
kbdinteractiveauthentication no
x11forwarding no
maxauthtries 3
ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com
hostkey /etc/ssh/ssh_host_ecdsa_key
hostkey /etc/ssh/ssh_host_ed25519_key
"""
WANTED = {"Port": [2222, 22], "PermitRootLogin": "prohibit-password", "PasswordAuthentication": "no",
          "KbdInteractiveAuthentication": "no", "X11Forwarding": "no", "MaxAuthTries": 3,
          "Ciphers": "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"}


def test_sshd_t_is_read_by_keyword():
    found = sshd_effective(SSHD_T)
    assert found["port"] == ["22", "2222"]
    assert found["hostkey"] == ["/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key"]
    assert sshd_effective("") == {}
    with pytest.raises(AnsibleFilterError):
        sshd_effective(None)


def test_settings_that_hold_give_no_mismatch():
    """Ports in any order; sshd -T's older spelling of prohibit-password (without-password) is the same value."""
    assert sshd_mismatches(SSHD_T, WANTED) == []


@pytest.mark.parametrize("change,expected", [
    ({"PasswordAuthentication": "yes"}, "PasswordAuthentication: wanted yes, sshd would use no"),
    ({"Port": [22]}, "Port: wanted 22, sshd would use 22 2222"),
    ({"PermitRootLogin": "no"}, "PermitRootLogin: wanted no, sshd would use prohibit-password"),
    ({"Ciphers": "aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"},
     "Ciphers: wanted aes256-gcm@openssh.com,chacha20-poly1305@openssh.com, sshd would use "
     "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com"),
    ({"LoginGraceTime": 30}, "LoginGraceTime: wanted 30, sshd would use nothing"),
])
def test_a_setting_sshd_would_not_use_is_named(change, expected):
    assert sshd_mismatches(SSHD_T, {**WANTED, **change}) == [expected]


def test_mismatches_reject_what_is_not_a_settings_dict():
    with pytest.raises(AnsibleFilterError):
        sshd_mismatches(SSHD_T, ["Port"])
