"""Mutual TLS for nodes and clients: where the files are, the gRPC credentials built from them
(reloaded when they change, so a rotation needs no restart), the name a peer must present,
and who a caller is (the principal in its certificate).

Identities live in URI SANs: `chordcast://node/HOST:PORT` for a node (the one address it may
serve and join as), `chordcast://client/NAME` for a client. `chordcast.certs` issues them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from chordcast.address import split_address

NODE = "node"
CLIENT = "client"
SCHEME = "chordcast://"
ENV = {"cert": "CHORDCAST_TLS_CERT", "key": "CHORDCAST_TLS_KEY", "ca": "CHORDCAST_TLS_CA"}
RECHECK = 1.0  # seconds between looks at the files' modification times
CA_DAYS = 3650  # how long `chordcast certs` makes a CA, and a node or client certificate, valid
LEAF_DAYS = 365


def identity_uri(kind: str, name: str) -> str:
    return f"{SCHEME}{kind}/{name}"


def node_name(address: str) -> str:
    """The DNS name a node's certificate carries for its address, and that every chordcast
    peer asks for when it connects (grpc.ssl_target_name_override): a digest of the exact
    address string (HOST:PORT as advertised), so no two addresses share a name and a
    certificate for another port, or another spelling of the host, does not pass."""
    split_address(address)  # a malformed address is refused here, not by the handshake
    return f"{hashlib.sha256(address.encode()).hexdigest()[:40]}.node.chordcast"


@dataclass(frozen=True)
class Principal:
    """Who is calling, from its certificate: kind NODE (name = HOST:PORT) or CLIENT."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def acl_name(principal: Principal | None) -> str:
    """How a principal appears in a group's access lists: a client by its name, a node as
    "node:HOST:PORT" ("" for nobody: a connection without TLS)."""
    if principal is None:
        return ""
    return principal.name if principal.kind == CLIENT else f"{NODE}:{principal.name}"


def principal_of(context: Any) -> Principal | None:
    """The caller's chordcast identity, or None when its certificate names none (or the
    connection is not TLS: then there is no certificate at all)."""
    auth = context.auth_context() or {}
    for raw in auth.get("peer_uri", []) or auth.get("x509_subject_alternative_name", []):
        principal = identity(raw.decode() if isinstance(raw, bytes) else str(raw))
        if principal is not None:
            return principal
    return None


def identity(uri: str) -> Principal | None:
    """The principal a certificate's URI SAN names, if it is a chordcast identity."""
    if uri.startswith(SCHEME):
        kind, _, name = uri[len(SCHEME):].partition("/")
        if kind in (NODE, CLIENT) and name:
            return Principal(kind, name)
    return None


def peer_certificate(context: Any) -> bytes:
    """The caller's certificate (PEM) as its TLS connection presented it; b"" without TLS."""
    auth = context.auth_context() or {}
    return bytes((auth.get("x509_pem_cert") or [b""])[0])


def is_tls(context: Any) -> bool:
    auth = context.auth_context() or {}
    return bool(auth.get("transport_security_type", [b""])[0] == b"ssl")


class TlsError(Exception):
    """The TLS files are missing, unreadable or incomplete."""


@dataclass(frozen=True)
class TlsConfig:
    """The three files of a node or a client: its certificate, its key, and the CA's."""

    cert: Path
    key: Path
    ca: Path

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):  # paths given as strings work too
            object.__setattr__(self, name, Path(getattr(self, name)))

    @classmethod
    def from_options(cls, cert: str | None, key: str | None, ca: str | None,
                     environ: dict[str, str] | None = None) -> TlsConfig | None:
        """From command-line values, each falling back to its CHORDCAST_TLS_* variable;
        None when none is given. Some but not all is an error. A certificate and its key
        come from one place (both flags or both variables: never one identity's
        certificate with another's key); the CA may come from either."""
        env = os.environ if environ is None else environ
        if cert or key:
            pair = {"cert": cert, "key": key}
        else:
            pair = {"cert": env.get(ENV["cert"]), "key": env.get(ENV["key"])}
        given = {**pair, "ca": ca or env.get(ENV["ca"])}
        if not any(given.values()):
            return None
        if (cert or key) and not (cert and key):
            raise TlsError("give --tls-cert and --tls-key together (a certificate and its "
                           "key come from one place; the CA may come from CHORDCAST_TLS_CA)")
        missing = [f"--tls-{k} (or {ENV[k]})" for k, v in given.items() if not v]
        if missing:
            raise TlsError(f"TLS needs a certificate, its key and the CA: missing "
                           f"{', '.join(missing)}")
        config = cls(Path(str(given["cert"])), Path(str(given["key"])), Path(str(given["ca"])))
        config.read()  # fail now, with the file's name, not at the first connection
        return config

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise TlsError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None
            if b"-----BEGIN" not in data:
                raise TlsError(f"{path} is not a PEM file")
            out.append(data)
        _check_pair(self.cert, out[0], self.key, out[1], self.ca, out[2])
        return out[0], out[1], out[2]

    def version(self) -> tuple[float, ...]:
        """What changes when any of the files is replaced."""
        stamps = []
        for path in (self.cert, self.key, self.ca):
            try:
                st = path.stat()
                stamps += [st.st_mtime_ns, st.st_ino, st.st_size]
            except OSError:
                stamps += [0, 0, 0]
        return tuple(stamps)


def _check_pair(cert_path: Path, cert_pem: bytes, key_path: Path, key_pem: bytes,
                ca_path: Path, ca_pem: bytes) -> None:
    """The key belongs to the certificate, and the CA file holds a CA: what gRPC would
    otherwise report as a failed listen or a failed handshake, said in the user's terms."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise TlsError(f"cannot load the TLS files ({cert_path}, {key_path}, {ca_path}): "
                       f"{exc}") from None
    if key.public_key() != cert.public_key():
        raise TlsError(f"the key {key_path} does not belong to the certificate {cert_path}")
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise TlsError(f"{ca_path} is not a CA certificate (give the ring's ca.pem)")


class Credentials:
    """gRPC credentials from a TlsConfig, rebuilt when its files change: the server's through
    grpc's dynamic credentials (asked once per new connection), the channels' on demand (a
    caller that sees a new `version` opens new channels)."""

    def __init__(self, config: TlsConfig) -> None:
        self.config = config
        self._lock = threading.Lock()  # the server's fetcher runs on a gRPC thread
        self._version = config.version()
        self._checked = time.monotonic()
        self._files = config.read()
        self._served_version: tuple[float, ...] | None = None

    def _refresh(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._checked < RECHECK:
                return
            self._checked = now
            version = self.config.version()
            if version == self._version:
                return
            try:
                files = self.config.read()
            except TlsError:
                return  # half-replaced: keep the last good ones, look again later
            self._version, self._files = version, files

    @property
    def version(self) -> tuple[float, ...]:
        self._refresh()
        return self._version

    def files(self) -> tuple[bytes, bytes, bytes]:
        """The current certificate, key and CA (PEM)."""
        self._refresh()
        return self._files

    def channel(self) -> grpc.ChannelCredentials:
        self._refresh()
        cert, key, ca = self._files
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                            certificate_chain=cert)

    def server(self) -> grpc.ServerCredentials:
        cert, key, ca = self._files
        self._served_version = self._version
        return grpc.dynamic_ssl_server_credentials(
            grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca),
            self._fetch,  # type: ignore[arg-type]  # None means "unchanged" (grpc's docs)
            require_client_authentication=True)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC for each new connection: a new configuration once the files
        changed, else None (keep the current one)."""
        self._refresh()
        with self._lock:
            if self._version == self._served_version:
                return None
            self._served_version = self._version
            cert, key, ca = self._files
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)


def channel_options(address: str) -> list[tuple[str, Any]]:
    """What a TLS channel to the node at `address` adds: the name its certificate must hold."""
    return [("grpc.ssl_target_name_override", node_name(address))]
