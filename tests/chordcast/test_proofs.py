"""Signed group operations (chordcast.proofs): a root believes a publish or destroy only when
the principal it names signed that very operation, recently, once, with a certificate the
ring's CA issued."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from chordcast import certs
from chordcast.proofs import (
    WINDOW_MS,
    ProofChecker,
    Signer,
    destroy_statement,
    now_ms,
    send_statement,
)
from chordcast.tls import Credentials, TlsConfig
from chordcast.v1 import mcast_pb2 as mpb

NOW = now_ms()  # the certificates below are valid from now on


class Pki:
    def __init__(self, root: Path) -> None:
        self.dir = root / "pki"
        self.ca = certs.init_ca(self.dir).cert
        self.node = certs.issue_node(self.dir, "127.0.0.1:7000")
        self.alice = certs.issue_client(self.dir, "alice")
        self.bob = certs.issue_client(self.dir, "bob")
        long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
        self.expired = certs.issue_client(self.dir, "old", days=1, valid_from=long_ago)
        certs.init_ca(root / "other", name="another CA")
        self.foreign = certs.issue_client(root / "other", "alice")

    def credentials(self, who: certs.Issued, ca: Path | None = None) -> Credentials:
        return Credentials(TlsConfig(who.cert, who.key, ca or self.ca))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def checker(pki: Pki, clock: list[int]) -> ProofChecker:
    return ProofChecker(pki.credentials(pki.node), clock=lambda: clock[0])


def publish(pki: Pki, who: certs.Issued, principal: str, *, payload: bytes = b"hi",
            message_id: str = "m1", signed_ms: int = NOW, ca: Path | None = None
            ) -> mpb.PublishOp:
    creds = pki.credentials(who, ca)
    signature = Signer(creds).sign(send_statement("g", message_id, payload, signed_ms))
    return mpb.PublishOp(name="g", payload=payload, sender=principal, message_id=message_id,
                         principal=principal,
                         proof=mpb.Proof(cert_pem=who.cert.read_bytes(), signature=signature,
                                         signed_ms=signed_ms))


def test_a_signed_publish_is_believed_once(pki: Pki) -> None:
    clock = [NOW + 5_000]
    check = checker(pki, clock)
    op = publish(pki, pki.alice, "alice")
    assert check.publish(op) is None
    assert "replay" in (check.publish(op) or "")
    # Remembered for as long as the signature could pass, then forgotten with it.
    clock[0] = NOW + 2 * WINDOW_MS + 1
    assert "clock" in (check.publish(op) or "")
    # A node's own certificate signs as "node:HOST:PORT".
    assert check.publish(publish(pki, pki.node, "node:127.0.0.1:7000", message_id="m2",
                                 signed_ms=clock[0])) is None


@pytest.mark.parametrize(("case", "why"), [
    ("another principal", "not 'alice''s"), ("unsigned", "no signature"),
    ("tampered payload", "signature is not"), ("sender differs", "not the caller"),
    ("other CA", "CA did not sign"), ("expired", "expired"), ("stale", "clock"),
    ("future", "clock"), ("signature of another", "signature is not")])
def test_what_a_root_does_not_believe(pki: Pki, case: str, why: str) -> None:
    check = checker(pki, [NOW])
    op = publish(pki, pki.alice, "alice")
    if case == "another principal":   # bob's own, valid signature, naming alice
        op = publish(pki, pki.bob, "alice")
    elif case == "unsigned":           # what a node acting for alice on its own can send
        op.ClearField("proof")
    elif case == "tampered payload":
        op.payload = b"something else"
    elif case == "sender differs":
        op.sender = "bob"
    elif case == "other CA":           # "alice" by a CA the ring does not trust
        op = publish(pki, pki.foreign, "alice", ca=pki.dir.parent / "other" / "ca.pem")
    elif case == "expired":
        op = publish(pki, pki.expired, "old")
    elif case == "stale":
        op = publish(pki, pki.alice, "alice", signed_ms=NOW - WINDOW_MS - 1)
    elif case == "future":
        op = publish(pki, pki.alice, "alice", signed_ms=NOW + WINDOW_MS + 1)
    elif case == "signature of another":  # alice's certificate, bob's signature
        op.proof.signature = publish(pki, pki.bob, "bob").proof.signature
    refused = check.publish(op)
    assert refused is not None and why in refused, (case, refused)


def test_a_destroy_is_believed_only_from_its_signer(pki: Pki) -> None:
    check = checker(pki, [NOW])
    signature = Signer(pki.credentials(pki.alice)).sign(destroy_statement("g", NOW))
    proof = mpb.Proof(cert_pem=pki.alice.cert.read_bytes(), signature=signature, signed_ms=NOW)
    assert check.destroy(mpb.DestroyOp(name="g", principal="bob", proof=proof))
    assert check.destroy(mpb.DestroyOp(name="other", principal="alice", proof=proof))
    assert check.destroy(mpb.DestroyOp(name="g", principal="alice", proof=proof)) is None


def test_statements_do_not_run_into_each_other() -> None:
    # Length prefixes: no name and message id can be split another way to the same bytes.
    assert send_statement("a\n", "b", b"", 1) != send_statement("a", "\nb", b"", 1)
    assert send_statement("g", "m", b"x", 1) != destroy_statement("g", 1)
