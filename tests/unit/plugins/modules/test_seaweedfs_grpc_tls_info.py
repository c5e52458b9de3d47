# SPDX-License-Identifier: GPL-3.0-or-later
"""Tests for the borgstack.stack.seaweedfs_grpc_tls_info module (module_utils ``_grpc_tls``).

A CA, weed's key, both requests and both certificates are made with ``cryptography`` in ``tmp_path`` the way the
role's community.crypto tasks make them; every check then fails on one broken piece. The owner and group the
files must have are the test user's (the module asks for root)."""
from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from ansible_collections.borgstack.stack.plugins.module_utils._grpc_tls import grpc_tls_state  # noqa: E402

CN = "seaweedfs"
INSTALLED = {("dpkg-query", "--show", "--showformat", "${Status}", "python3-cryptography"):
             (0, "install ok installed", "")}


def run(argv: list[str]) -> tuple[int, str, str]:
    return INSTALLED.get(tuple(argv), (1, "", ""))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: on.get(name, False) for name in names})


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def make_pki(tmp_path: Path, days: int = 3650, weed_key_curve: ec.EllipticCurve | None = None,
             weed_signer: ec.EllipticCurvePrivateKey | None = None) -> tuple[Path, Path]:
    ca_dir, tls_dir = tmp_path / "ca", tmp_path / "tls"
    for directory in (ca_dir, tls_dir):
        directory.mkdir(mode=0o700)
        directory.chmod(0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    weed_key = ec.generate_private_key(weed_key_curve or ec.SECP256R1())
    pem = {"encoding": serialization.Encoding.PEM, "format": serialization.PrivateFormat.PKCS8,
           "encryption_algorithm": serialization.NoEncryption()}
    ca_exts = [(x509.BasicConstraints(ca=True, path_length=0), True),
               (_key_usage(key_cert_sign=True, crl_sign=True), True)]
    weed_exts = [(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                 (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
                 (_key_usage(digital_signature=True), True)]

    def csr(key, cn, exts):
        builder = x509.CertificateSigningRequestBuilder().subject_name(_name(cn))
        for ext, critical in exts:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(key, hashes.SHA256())

    ca_csr, weed_csr = csr(ca_key, "BorgStack SeaweedFS gRPC CA", ca_exts), csr(weed_key, CN, weed_exts)
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(request, issuer_name, signer, extra):
        builder = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(issuer_name)
                   .public_key(request.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=2))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key()), critical=False))
        for ext in request.extensions:
            builder = builder.add_extension(ext.value, critical=ext.critical)
        for ext in extra:
            builder = builder.add_extension(ext, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_cert = cert(ca_csr, ca_csr.subject, ca_key, [])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    weed_cert = cert(weed_csr, ca_cert.subject, weed_signer or ca_key,
                     [x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)])
    _write(ca_dir / "ca.key", ca_key.private_bytes(**pem))
    _write(tls_dir / "weed.key", weed_key.private_bytes(**pem))
    _write(ca_dir / "ca.csr", ca_csr.public_bytes(serialization.Encoding.PEM))
    _write(ca_dir / "weed.csr", weed_csr.public_bytes(serialization.Encoding.PEM))
    _write(tls_dir / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(tls_dir / "weed.crt", weed_cert.public_bytes(serialization.Encoding.PEM))
    return ca_dir, tls_dir


def state(ca_dir: Path, tls_dir: Path, cn: str = CN, runner=run) -> dict:
    return grpc_tls_state(str(ca_dir), str(tls_dir), cn, runner, uid=os.getuid(), gid=os.getgid())


def test_a_complete_pki_is_current_and_returns_only_the_certificate(tmp_path):
    ca_dir, tls_dir = make_pki(tmp_path)
    result = state(ca_dir, tls_dir)
    assert result == {"current": True, "certificate": (tls_dir / "weed.crt").read_text()}
    assert "PRIVATE KEY" not in str(result)


@pytest.mark.parametrize(("breakage", "why"), [
    (lambda ca, tls: (tls / "weed.crt").unlink(), "weed.crt is missing"),
    (lambda ca, tls: (ca / "ca.key").chmod(0o644), "owner, group or mode differs"),
    (lambda ca, tls: tls.chmod(0o755), "owner, group or mode differs"),
    (lambda ca, tls: (tls / "weed.key").write_text("not a key"), "weed.key is not an unencrypted PEM private key"),
    (lambda ca, tls: (ca / "weed.csr").write_bytes((ca / "ca.csr").read_bytes()), "weed.csr does not match"),
    (lambda ca, tls: (tls / "weed.crt").write_bytes((tls / "ca.crt").read_bytes()), "weed.crt does not match"),
])
def test_one_broken_piece_is_not_current(tmp_path, breakage, why):
    ca_dir, tls_dir = make_pki(tmp_path)
    breakage(ca_dir, tls_dir)
    result = state(ca_dir, tls_dir)
    assert result["current"] is False and why in result["why"], result


def test_another_common_name_is_not_current(tmp_path):
    assert "weed.csr does not match its key or common name" in state(*make_pki(tmp_path), cn="other")["why"]


def test_an_expired_certificate_is_not_current(tmp_path):
    assert state(*make_pki(tmp_path, days=-1))["why"] == "ca.crt has expired"


def test_a_key_on_another_curve_is_not_current(tmp_path):
    assert state(*make_pki(tmp_path, weed_key_curve=ec.SECP384R1()))["why"] == "weed.key is not a secp256r1 key"


def test_a_certificate_signed_by_another_key_is_not_current(tmp_path):
    result = state(*make_pki(tmp_path, weed_signer=ec.generate_private_key(ec.SECP256R1())))
    assert result["why"] == "a certificate is not signed by the gRPC CA"


def test_without_the_package_nothing_is_current(tmp_path):
    result = state(*make_pki(tmp_path), runner=lambda argv: (1, "", "no packages found"))
    assert result == {"current": False, "why": "python3-cryptography is not installed"}
