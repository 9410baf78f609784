"""Signed group operations on a ring with TLS: what lets a group's root believe the principal
an access node names.

The access node authenticates its caller (mTLS) and names it in the publish or destroy it
routes to the root; a node with a stolen or misused certificate could name anyone. So the
caller also signs the operation with its own key (`Signer`), the access node passes the
certificate it saw on the connection along with that signature (`mcast_pb2.Proof`), and the
root (`ProofChecker`, Scribe's `Proofs` port) checks that the CA signed the certificate, that
the certificate names the principal, and that its key signed this very operation, recently
and only once. A certified node can then drop or delay a client's sends, not make them up.

`cryptography` is imported only here and only when a ring runs TLS (it costs every node
process ~10 MiB).
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chordcast.tls import Credentials, acl_name, identity
from chordcast.v1 import mcast_pb2 as mpb

# A signature older or newer than this (either clock may be off) is refused; one seen once
# is remembered for twice as long, so a copy replayed inside the window is refused too.
WINDOW_MS = 120_000
MAX_REMEMBERED = 1 << 18  # signatures remembered at once: ~30 MiB at most, never more
MAX_CERTS = 1024          # verified certificates kept (one per active caller)
MAX_PROOF_CERT = 16 << 10


def statement(kind: str, *fields: str | bytes | int) -> bytes:
    """The exact bytes a caller signs for one operation: its kind and fields, each length-
    prefixed (so no two operations share a statement, whatever their names hold)."""
    out = [b"chordcast/v1 ", kind.encode()]
    for f in fields:
        raw = f.encode() if isinstance(f, str) else (str(f).encode() if isinstance(f, int)
                                                      else hashlib.sha256(f).digest())
        out += [struct.pack(">I", len(raw)), raw]
    return b"".join(out)


def send_statement(name: str, message_id: str, payload: bytes, signed_ms: int) -> bytes:
    return statement("send", name, message_id, signed_ms, payload)


def destroy_statement(name: str, signed_ms: int) -> bytes:
    return statement("destroy", name, signed_ms)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Signer:
    """A client's (or a node certificate's holder's) signatures, with the key of the
    certificate its connections present (reloaded when the files change)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._key: Any = None
        self._key_pem = b""

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key_pem = self.credentials.files()[1]
        if key_pem != self._key_pem:
            self._key = serialization.load_pem_private_key(key_pem, password=None)
            self._key_pem = key_pem
        if not isinstance(self._key, ec.EllipticCurvePrivateKey):
            raise ValueError("signing needs the ECDSA key `chordcast certs` issues")
        return bytes(self._key.sign(data, ec.ECDSA(hashes.SHA256())))


@dataclass(frozen=True)
class _Verified:
    principal: str       # as access lists name it (tls.acl_name)
    public_key: Any
    not_after_ms: int
    not_before_ms: int


class ProofChecker:
    """The root's side (Scribe's `Proofs` port): is this publish or destroy signed by the
    principal it names? An error message when not, None when it is."""

    def __init__(self, credentials: Credentials, clock: Callable[[], int] = now_ms) -> None:
        self.credentials = credentials
        self.clock = clock
        self._certs: OrderedDict[bytes, _Verified] = OrderedDict()
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # statement digest -> forget at
        self._lock = threading.Lock()

    def publish(self, op: mpb.PublishOp) -> str | None:
        if op.sender != op.principal:
            return f"the sender {op.sender!r} is not the caller {op.principal!r}"
        return self._check(op.principal, op.proof,
                           send_statement(op.name, op.message_id, op.payload,
                                          op.proof.signed_ms))

    def destroy(self, op: mpb.DestroyOp) -> str | None:
        return self._check(op.principal, op.proof, destroy_statement(op.name, op.proof.signed_ms))

    def _check(self, principal: str, proof: mpb.Proof, signed: bytes) -> str | None:
        now = self.clock()
        if proof.signature and abs(now - proof.signed_ms) > WINDOW_MS:
            return (f"the signature is {abs(now - proof.signed_ms) / 1000:.0f} s away from "
                    f"this node's clock (at most {WINDOW_MS // 1000} s: are the clocks set?)")
        refused = self.signed_by(principal, proof, signed, now)
        if refused:
            return refused
        return self._first_time(hashlib.sha256(signed + proof.signature).digest(), now)

    def signed_by(self, principal: str, proof: mpb.Proof, signed: bytes, now: int
                  ) -> str | None:
        """Did `principal` sign `signed`, with a certificate the CA issued and valid `now`?"""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        if not proof.signature or not proof.cert_pem:
            return f"it carries no signature of {principal or 'its sender'}"
        if len(proof.cert_pem) > MAX_PROOF_CERT:
            return "the signer's certificate is too large"
        verified = self._certificate(proof.cert_pem, now)
        if isinstance(verified, str):
            return verified
        if verified.principal != principal:
            return f"the certificate is {verified.principal!r}'s, not {principal!r}'s"
        try:
            verified.public_key.verify(proof.signature, signed, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return f"the signature is not {principal!r}'s"
        return None

    def _first_time(self, digest: bytes, now: int) -> str | None:
        with self._lock:
            seen = self._seen
            while seen and next(iter(seen.values())) <= now:
                seen.popitem(last=False)
            if digest in seen:
                return "this signed operation was already carried out (a replay)"
            if len(seen) >= MAX_REMEMBERED:
                return "too many signed operations in the last minutes; retry"
            seen[digest] = now + 2 * WINDOW_MS
            return None

    def _certificate(self, cert_pem: bytes, now: int) -> _Verified | str:
        ca_pem = self.credentials.files()[2]
        key = hashlib.sha256(ca_pem + b"\0" + cert_pem).digest()
        with self._lock:
            verified = self._certs.get(key)
            if verified is not None:
                self._certs.move_to_end(key)
        if verified is None:
            checked = _verify_certificate(cert_pem, ca_pem)
            if isinstance(checked, str):
                return checked
            verified = checked
            with self._lock:
                self._certs[key] = verified
                while len(self._certs) > MAX_CERTS:
                    self._certs.popitem(last=False)
        if not verified.not_before_ms <= now <= verified.not_after_ms:
            return "the signer's certificate is expired or not yet valid"
        return verified


def _verify_certificate(cert_pem: bytes, ca_pem: bytes) -> _Verified | str:
    """The certificate's principal and key, if the ring's CA signed it."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return "the signer's certificate does not parse"
    ca_key = ca.public_key()
    algorithm = cert.signature_hash_algorithm
    try:
        if cert.issuer != ca.subject or algorithm is None:
            raise InvalidSignature
        if isinstance(ca_key, ec.EllipticCurvePublicKey):
            ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        elif isinstance(ca_key, rsa.RSAPublicKey):
            ca_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          algorithm)
        else:
            raise InvalidSignature
    except InvalidSignature:
        return "the ring's CA did not sign the signer's certificate"
    principal = ""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in names.get_values_for_type(x509.UniformResourceIdentifier):
            principal = acl_name(identity(uri))
            if principal:
                break
    except x509.ExtensionNotFound:
        pass
    if not principal:
        return "the signer's certificate names no chordcast identity"
    return _Verified(principal, cert.public_key(),
                     int(cert.not_valid_after_utc.timestamp() * 1000),
                     int(cert.not_valid_before_utc.timestamp() * 1000))


class MessageChecker:
    """A member's side: is a message what its sender signed? The root checked the signature
    when it numbered the message, but the nodes between the root and the member pass it on
    and could change it, so the member checks again (the signature travels with the message):
    the sender's certificate, that it names the sender shown, and that it signed this group,
    message id and payload. A copy of a message already delivered under another number is
    refused too. No time window: a message from the archive may be old."""

    def __init__(self, credentials: Credentials, remembered: int = 1 << 16) -> None:
        self.proofs = ProofChecker(credentials)
        self.remembered = remembered
        self._seen: OrderedDict[str, int] = OrderedDict()  # message id -> its number

    def check(self, group: str, seq: int, sender: str, message_id: str, payload: bytes,
              proof: mpb.Proof) -> str | None:
        if not message_id:
            return "it carries no message id"
        refused = self.proofs.signed_by(
            sender, proof, send_statement(group, message_id, payload, proof.signed_ms),
            self.proofs.clock())
        if refused:
            return refused
        earlier = self._seen.get(message_id)
        if earlier is not None and earlier != seq:
            return f"it repeats message {earlier}"
        self._seen[message_id] = seq
        while len(self._seen) > self.remembered:
            self._seen.popitem(last=False)
        return None
