# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the SeaweedFS gRPC CA and weed's key, requests and certificates are all in place (the
seaweedfs_grpc_tls_info module). Stricter than the community.crypto tasks of the seaweedfs role, never looser: any
doubt (a file missing, another owner or mode, a key of another type, a request or certificate that does not match its
key, its parameters or its issuer, an expired certificate, the library or its package missing) answers "not current",
and the role then runs those tasks, which decide and heal. Reads private keys, never returns them."""
from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from typing import Any, Callable

CRYPTOGRAPHY_IMPORT_ERROR: ImportError | None = None
try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError as _error:
    CRYPTOGRAPHY_IMPORT_ERROR = _error

Runner = Callable[[list[str]], "tuple[int, str, str]"]
FILES = ("ca.key", "weed.key", "ca.csr", "weed.csr", "ca.crt", "weed.crt")


def why_not_current(ca_dir: str, tls_dir: str, weed_cn: str, run: Runner, uid: int = 0, gid: int = 0) -> str | None:
    """None when every directory, key, request and certificate is as the role's tasks would leave them, else the
    first reason found."""
    rc, out, _err = run(["dpkg-query", "--show", "--showformat", "${Status}", "python3-cryptography"])
    if rc != 0 or out.strip() != "install ok installed":
        return "python3-cryptography is not installed"
    if CRYPTOGRAPHY_IMPORT_ERROR is not None:
        raise CRYPTOGRAPHY_IMPORT_ERROR
    data: dict[str, bytes] = {}
    keys: dict[str, Any] = {}
    certs: dict[str, Any] = {}
    why = _owned_files(ca_dir, tls_dir, uid, gid, data) or _ec_keys(data, keys)
    if why:
        return why
    now = datetime.datetime.now(datetime.timezone.utc)
    for who, want in _wanted(keys, weed_cn).items():
        why = _request_and_certificate(who, want, data, now, certs)
        if why:
            return why
    return _chain(certs["ca"], certs["weed"])


def _owned_by(path: str, is_type: Callable[[int], bool], uid: int, gid: int, mode: int) -> str | None:
    """Why ``path`` is not of its type, owner, group and mode (None when it is)."""
    try:
        st = os.lstat(path)
    except OSError:
        return f"{path} is missing"
    if not is_type(st.st_mode) or (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
        return f"{path}: owner, group or mode differs"
    return None


def _owned_files(ca_dir: str, tls_dir: str, uid: int, gid: int, data: dict[str, bytes]) -> str | None:
    """Both directories root-only, every key, request and certificate a root-only file; fills ``data``."""
    for path in (ca_dir, tls_dir):
        why = _owned_by(path, stat.S_ISDIR, uid, gid, 0o700)
        if why:
            return why
    for name in FILES:
        path = os.path.join(ca_dir if name.startswith("ca.k") or name.endswith(".csr") else tls_dir, name)
        try:
            with open(path, "rb") as handle:
                data[name] = handle.read()
        except OSError:
            return f"{path} is missing"
        why = _owned_by(path, stat.S_ISREG, uid, gid, 0o600)
        if why:
            return why
    return None


def _ec_keys(data: dict[str, bytes], keys: dict[str, Any]) -> str | None:
    """Both private keys unencrypted secp256r1 PEM; fills ``keys``."""
    for name in ("ca.key", "weed.key"):
        try:
            key = serialization.load_pem_private_key(data[name], password=None)
        except (ValueError, TypeError):
            return f"{name} is not an unencrypted PEM private key"
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            return f"{name} is not a secp256r1 key"
        keys[name] = key
    return None


def _key_usage(signs_certificates: bool) -> Any:
    return x509.KeyUsage(digital_signature=not signs_certificates, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
                         crl_sign=signs_certificates, encipher_only=False, decipher_only=False)


def _wanted(keys: dict[str, Any], weed_cn: str) -> dict[str, dict[str, Any]]:
    """Per certificate: its key, common name and extensions ({oid: (critical, value)}), as the role's tasks ask."""
    return {
        "ca": {
            "key": keys["ca.key"], "cn": "BorgStack SeaweedFS gRPC CA",
            "exts": {
                x509.BasicConstraints.oid.dotted_string: (True, x509.BasicConstraints(ca=True, path_length=0)),
                x509.KeyUsage.oid.dotted_string: (True, _key_usage(signs_certificates=True)),
            },
        },
        "weed": {
            "key": keys["weed.key"], "cn": weed_cn,
            "exts": {
                x509.SubjectAlternativeName.oid.dotted_string: (False, x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])),
                x509.ExtendedKeyUsage.oid.dotted_string: (False, x509.ExtendedKeyUsage([
                    ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])),
                x509.KeyUsage.oid.dotted_string: (True, _key_usage(signs_certificates=False)),
            },
        },
    }


def _raw(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _extensions(obj: Any) -> dict[str, Any]:
    return {ext.oid.dotted_string: ext for ext in obj.extensions}


def _request_and_certificate(who: str, want: dict[str, Any], data: dict[str, bytes], now: datetime.datetime,
                             certs: dict[str, Any]) -> str | None:
    """The request matches its key, common name and extensions; the certificate matches the request and has not
    expired; fills ``certs[who]``."""
    try:
        csr = x509.load_pem_x509_csr(data[f"{who}.csr"])
        cert = x509.load_pem_x509_certificate(data[f"{who}.crt"])
    except ValueError:
        return f"{who}: the request or the certificate does not load"
    public = _raw(want["key"].public_key())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, want["cn"])])
    if not csr.is_signature_valid or _raw(csr.public_key()) != public or csr.subject != subject:
        return f"{who}.csr does not match its key or common name"
    found = _extensions(csr)
    # The CSR module adds a subjectAltName from the common name when none is given (use_common_name_for_san).
    extra = set(found) - set(want["exts"]) - {x509.SubjectAlternativeName.oid.dotted_string}
    if extra or any(oid not in found or (found[oid].critical, found[oid].value) != value
                    for oid, value in want["exts"].items()):
        return f"{who}.csr has other extensions"
    if _raw(cert.public_key()) != public or cert.subject != csr.subject:
        return f"{who}.crt does not match its request"
    cert_exts = _extensions(cert)
    ski = x509.SubjectKeyIdentifier.oid.dotted_string
    aki = x509.AuthorityKeyIdentifier.oid.dotted_string
    if {oid: (e.critical, e.value) for oid, e in cert_exts.items() if oid not in (ski, aki)} != \
            {oid: (e.critical, e.value) for oid, e in found.items() if oid != ski}:
        return f"{who}.crt has other extensions than its request"
    if ski not in cert_exts or cert_exts[ski].value != x509.SubjectKeyIdentifier.from_public_key(cert.public_key()):
        return f"{who}.crt has no matching subject key identifier"
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc)
    if not_after <= now:
        return f"{who}.crt has expired"
    certs[who] = cert
    return None


def _chain(ca_cert: Any, weed_cert: Any) -> str | None:
    """Both certificates issued and signed by the CA; weed's names the CA's key identifier."""
    for cert in (ca_cert, weed_cert):
        if cert.issuer != ca_cert.subject:
            return "a certificate is not issued by the gRPC CA"
        try:  # (verify_directly_issued_by needs cryptography 40; bookworm has 38)
            ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                        ec.ECDSA(cert.signature_hash_algorithm))
        except InvalidSignature:
            return "a certificate is not signed by the gRPC CA"
    ca_ski = _extensions(ca_cert)[x509.SubjectKeyIdentifier.oid.dotted_string].value
    weed_aki = _extensions(weed_cert).get(x509.AuthorityKeyIdentifier.oid.dotted_string)
    if weed_aki is None or weed_aki.value != x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski):
        return "weed.crt has no matching authority key identifier"
    return None


def grpc_tls_state(ca_dir: str, tls_dir: str, weed_cn: str, run: Runner, uid: int = 0, gid: int = 0) -> dict[str, Any]:
    """{"current": True, "certificate": weed.crt PEM} or {"current": False, "why": reason}."""
    try:
        why = why_not_current(ca_dir, tls_dir, weed_cn, run, uid, gid)
    except Exception as error:  # pylint: disable=broad-except
        why = f"{type(error).__name__}: {error}"
    if why is not None:
        return {"current": False, "why": why}
    with open(os.path.join(tls_dir, "weed.crt"), encoding="utf-8") as handle:
        return {"current": True, "certificate": handle.read()}
