"""A small certificate authority for a ring (`chordcast certs`): the CA, node certificates
bound to the one address a node may serve and join as, and client certificates.

ECDSA P-256 throughout (grpcio's BoringSSL does not negotiate Ed25519 certificates). A node's
identity is the URI SAN `chordcast://node/HOST:PORT`; its certificate also names HOST as an IP
or DNS SAN (for standard tools) and `tls.node_name(HOST:PORT)`, the name every chordcast peer
checks when it connects, so a certificate issued for one port cannot serve another on the
same host. A client's identity is `chordcast://client/NAME`, with the client-auth usage only:
it can never act as a server, and the nodes refuse it on the node-to-node service.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chordcast.address import split_address
from chordcast.tls import CA_DAYS, CLIENT, LEAF_DAYS, NODE, identity_uri, node_name

CLOCK_SKEW = datetime.timedelta(minutes=5)  # valid a little before now: peers' clocks differ
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CertError(Exception):
    """A certificate could not be made (bad name, missing CA, file exists)."""


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    identity: str


def init_ca(directory: Path, days: int = CA_DAYS, name: str = "chordcast CA",
            force: bool = False) -> Issued:
    """A new CA: `ca.pem` and `ca.key` (readable by the owner only) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    _refuse_overwrite([cert_path, key_path], force)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write(cert_path, key_path, cert, key)
    return Issued(cert_path, key_path, name)


def issue_node(directory: Path, address: str, name: str | None = None,
               dns: tuple[str, ...] = (), days: int = LEAF_DAYS, force: bool = False,
               valid_from: datetime.datetime | None = None) -> Issued:
    """A node certificate for the node whose advertised address is `address` (HOST:PORT):
    usable as server and as client (nodes call each other)."""
    host, port = split_address(address)
    canonical = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity_uri(NODE,
                                                                                 canonical)),
                                    x509.DNSName(node_name(canonical))]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        sans.append(x509.DNSName(host))
    sans += [x509.DNSName(d) for d in dns]
    label = name or "node-" + re.sub(r"[^A-Za-z0-9]+", "-", canonical).strip("-")
    return _issue(directory, label, canonical, sans,
                  [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                  days, force, valid_from)


def issue_client(directory: Path, name: str, days: int = LEAF_DAYS, force: bool = False,
                 valid_from: datetime.datetime | None = None) -> Issued:
    """A client certificate for the principal `name` (client authentication only)."""
    if not NAME.match(name):
        raise CertError(f"a client name is 1 to 64 letters, digits, '.', '_' or '-' "
                        f"(got {name!r})")
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity_uri(CLIENT, name))]
    return _issue(directory, name, name, sans, [ExtendedKeyUsageOID.CLIENT_AUTH], days,
                  force, valid_from)


def _issue(directory: Path, label: str, common_name: str, sans: list[x509.GeneralName],
           usages: list[x509.ObjectIdentifier], days: int, force: bool,
           valid_from: datetime.datetime | None) -> Issued:
    if not NAME.match(label):
        raise CertError(f"bad file name {label!r}: use --name")
    ca_cert, ca_key = _load_ca(directory)
    cert_path, key_path = directory / f"{label}.pem", directory / f"{label}.key"
    _refuse_overwrite([cert_path, key_path], force)
    key = ec.generate_private_key(ec.SECP256R1())
    start = valid_from or (_now() - CLOCK_SKEW)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=False, crl_sign=False,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(cert_path, key_path, cert, key)
    uri = next(s.value for s in sans if isinstance(s, x509.UniformResourceIdentifier))
    return Issued(cert_path, key_path, uri)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if not cert_path.exists() or not key_path.exists():
        raise CertError(f"no CA in {directory}: run `chordcast certs init --dir {directory}`")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path} is not an ECDSA key")
    return cert, key


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CertError(f"{existing[0]} exists (use --force to replace it)")


def _write(cert_path: Path, key_path: Path, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> None:
    """The key first, created readable by its owner only; each file replaced whole (a node
    reloading its files never reads half of one)."""
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _replace(key_path, key_pem, 0o600)
    _replace(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _replace(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
