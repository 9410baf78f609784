"""A ring with mutual TLS, run as users run it (`chordcast node --tls-*`, metrics on), over real
gRPC on loopback: it forms and serves a certified client; everyone else is refused — no
certificate, another CA's, an expired one, a node certificate for another address, a client
certificate posing as a node, and a certified node naming another node as a message's sender —
each with its status code, and the node counts each refusal by reason. Certificates rotate
without a restart."""

from __future__ import annotations

import asyncio
import datetime
import json
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpc_health.v1.health_pb2_grpc import HealthStub

from chord.ids import IdSpace
from chord.ports import RemoteError
from chordcast import certs
from chordcast.client import Client
from chordcast.localring import LocalRing, NodeProcess, RingError
from chordcast.proofs import Signer, now_ms, send_statement
from chordcast.results import ClientError
from chordcast.tls import Credentials, TlsConfig, node_name
from chordcast.transport import GrpcTransport
from chordcast.v1 import chord_pb2 as pb
from chordcast.v1 import chord_pb2_grpc
from chordcast.v1 import mcast_pb2 as mpb
from chordcast.v1.mcast_pb2_grpc import MulticastStub
from tests.chordcast.ports import free_ports

NODES = 5
pytestmark = pytest.mark.slow


def tls_args(issued: certs.Issued, ca: Path) -> list[str]:
    return ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key), "--tls-ca", str(ca)]


class Pki:
    def __init__(self, root: Path, ports: list[int]) -> None:
        self.dir = root / "pki"
        self.ca = certs.init_ca(self.dir).cert
        self.nodes = [certs.issue_node(self.dir, f"127.0.0.1:{p}") for p in ports]
        self.alice = certs.issue_client(self.dir, "alice")
        self.bob = certs.issue_client(self.dir, "bob")
        self.carol = certs.issue_client(self.dir, "carol")
        long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
        self.expired = certs.issue_client(self.dir, "old", days=1, valid_from=long_ago)
        other = root / "other"
        certs.init_ca(other, name="someone else's CA")
        self.foreign = certs.issue_client(other, "mallory")

    health_port = 0  # node 0's plaintext health port

    def config(self, issued: certs.Issued) -> TlsConfig:
        return TlsConfig(issued.cert, issued.key, self.ca)


@pytest.fixture(scope="module")
def tls_ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRing, Pki]]:
    ports = free_ports(NODES + 1)  # the last: node 0's plaintext health port
    pki = Pki(tmp_path_factory.mktemp("tls"), ports)
    mp = pytest.MonkeyPatch()
    # The oracle's client (LocalRing.converged) is certified through the environment.
    mp.setenv("CHORDCAST_TLS_CERT", str(pki.alice.cert))
    mp.setenv("CHORDCAST_TLS_KEY", str(pki.alice.key))
    mp.setenv("CHORDCAST_TLS_CA", str(pki.ca))
    ring = LocalRing()
    try:
        for i in range(NODES):
            pki.health_port = ports[NODES]
            health = ["--health-port", str(pki.health_port)] if i == 0 else []
            node = ring.spawn(join=[n.address for n in ring.live()[:2]],
                              listen=f"127.0.0.1:{ports[i]}",
                              extra=[*tls_args(pki.nodes[i], pki.ca), *health])
            ring.wait_ready(node)
        ring.wait_converged(timeout=60)
        yield ring, pki
    finally:
        ring.stop()
        mp.undo()
    ring.check_logs()


def call(address: str, tls: TlsConfig | None, method: str, request: object,
         name: str | None = None) -> object:
    """One unary Chord call as an outsider would make it."""

    async def go() -> object:
        options = [("grpc.ssl_target_name_override", name or node_name(address))]
        if tls is None:
            channel = grpc.aio.insecure_channel(address)
        else:
            channel = grpc.aio.secure_channel(address, Credentials(tls).channel(), options)
        try:
            stub = chord_pb2_grpc.ChordStub(channel)
            return await getattr(stub, method)(request, timeout=5)
        finally:
            await channel.close()

    return asyncio.run(go())


def refusal(address: str, tls: TlsConfig | None, method: str, request: object
            ) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        call(address, tls, method, request)
    return err.value.code()


def refusals(node: NodeProcess, metric: str = "chordcast_auth_refusals_total",
             label: str = "reason") -> dict[str, float]:
    text = urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            reason = line.split(f'{label}="')[1].split('"')[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def test_a_tls_ring_forms_and_serves_a_certified_client(tls_ring: tuple[LocalRing, Pki]
                                                         ) -> None:
    ring, pki = tls_ring

    async def go() -> None:
        async with Client([n.address for n in ring.live()], tls=pki.config(pki.alice)) as c:
            await c.put("k", b"v")
            assert (await c.get("k")).value == b"v"
            assert len(await c.ring()) == NODES
            await c.create("g")
            sub = c.join("g")
            await sub.open()
            seq = await c.send("g", b"hello")
            got = await asyncio.wait_for(sub.__anext__(), 10)
            assert (got.seq, got.payload) == (seq, b"hello")
            await sub.close()

    asyncio.run(go())
    # The live view surveys the ring with the node's own certificate.
    view = json.loads(urllib.request.urlopen(f"http://{ring.live()[0].metrics}/api/ring",
                                             timeout=30).read())
    assert {n["address"] for n in view["nodes"]} == {n.address for n in ring.live()}


def test_probes_without_a_certificate_see_health_on_the_health_port_and_nothing_else(
        tls_ring: tuple[LocalRing, Pki]) -> None:
    _, pki = tls_ring
    channel = grpc.insecure_channel(f"127.0.0.1:{pki.health_port}")
    try:
        status = HealthStub(channel).Check(HealthCheckRequest(), timeout=5).status
        assert status == HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as other:
            chord_pb2_grpc.ChordStub(channel).Ping(pb.PingRequest(), timeout=5)
        assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()


def test_callers_without_a_good_certificate_cannot_even_connect(
        tls_ring: tuple[LocalRing, Pki], monkeypatch: pytest.MonkeyPatch) -> None:
    ring, pki = tls_ring
    for var in ("CHORDCAST_TLS_CERT", "CHORDCAST_TLS_KEY", "CHORDCAST_TLS_CA"):
        monkeypatch.delenv(var)  # (the oracle's certificate: not for these callers)
    address = ring.live()[0].address
    for who in (None, pki.config(pki.foreign), pki.config(pki.expired)):
        # The handshake fails before any call: no certificate, another CA's, an expired one.
        assert refusal(address, who, "Ping", pb.PingRequest()) == grpc.StatusCode.UNAVAILABLE

        async def client_call(who: TlsConfig | None = who) -> None:
            async with Client(address, timeout=3, tls=who) as c:
                await c.node_info()

        with pytest.raises(ClientError) as err:
            asyncio.run(client_call())
        assert err.value.code == "UNAVAILABLE"


def test_a_client_certificate_cannot_act_as_a_node(tls_ring: tuple[LocalRing, Pki]) -> None:
    ring, pki = tls_ring
    target = ring.live()[1]
    before = refusals(target).get("not_a_node", 0)
    alice = pki.config(pki.alice)
    for method, request in (("Ping", pb.PingRequest()),
                            ("GetNeighbors", pb.GetNeighborsRequest()),
                            ("Rectify", pb.RectifyRequest(candidate=pb.Node(
                                address="127.0.0.1:1")))):
        assert refusal(target.address, alice, method, request) == \
            grpc.StatusCode.PERMISSION_DENIED
    assert refusals(target)["not_a_node"] >= before + 3
    # A client certificate is never a server certificate: it cannot serve a node's address.
    with pytest.raises(RingError, match="not a node certificate"):
        ring.wait_ready(ring.spawn(join=[target.address], listen="127.0.0.1:0",
                                   extra=tls_args(pki.alice, pki.ca)))


def test_a_node_certificate_serves_and_speaks_only_for_its_own_address(
        tls_ring: tuple[LocalRing, Pki], tmp_path: Path) -> None:
    ring, pki = tls_ring
    a, b = ring.live()[0], ring.live()[1]
    # Started on another port with A's certificate: the node refuses to start.
    with pytest.raises(RingError, match="not a node certificate for"):
        ring.wait_ready(ring.spawn(join=[b.address], listen="127.0.0.1:0",
                                   extra=tls_args(pki.nodes[0], pki.ca)))
    # A caller that expects A at B's address finds B's certificate there, not A's: a node
    # certificate is good for its own address only (each peer checks the name).
    call(b.address, pki.config(pki.nodes[0]), "Ping", pb.PingRequest())  # A may call B
    with pytest.raises(grpc.aio.AioRpcError) as wrong_name:
        call(b.address, pki.config(pki.nodes[1]), "Ping", pb.PingRequest(),
             name=node_name(a.address))
    assert wrong_name.value.code() == grpc.StatusCode.UNAVAILABLE  # B is not A


def test_a_certified_node_cannot_name_another_as_the_sender(tls_ring: tuple[LocalRing, Pki]
                                                            ) -> None:
    ring, pki = tls_ring
    b, c = ring.live()[1:3]
    me = pki.config(pki.nodes[0])  # node A's own certificate, in a rogue process
    before = refusals(b).get("spoofed_sender", 0)
    forged = [
        ("LeaveNotice", pb.LeaveNoticeRequest(leaving=pb.Node(address=c.address))),
        ("AppCall", pb.AppCallRequest(app="scribe", sender=pb.Node(address=c.address))),
        ("Rectify", pb.RectifyRequest(candidate=pb.Node(address=c.address))),
        ("RouteResult", pb.RouteResultRequest(request_id=1, owner=pb.Node(address=c.address))),
        ("Resolve", pb.ResolveRequest(origin=pb.Node(address=c.address))),
    ]
    for method, request in forged:
        assert refusal(b.address, me, method, request) == grpc.StatusCode.PERMISSION_DENIED
    # The same over the node-to-node streams every node uses (frames on a Link).

    async def over_link() -> None:
        transport = GrpcTransport(tls=Credentials(me))
        try:
            with pytest.raises(RemoteError) as err:
                await transport.call(b.address, "LeaveNotice", forged[0][1], 5.0)
            assert err.value.code == "PERMISSION_DENIED"
            # Naming itself, A is heard.
            await transport.call(b.address, "Ping", pb.PingRequest(), 5.0)
        finally:
            await transport.close()

    asyncio.run(over_link())
    assert refusals(b)["spoofed_sender"] >= before + len(forged) + 1
    ring.wait_converged(timeout=30)  # and nobody forgot C


def test_a_node_takes_new_certificate_files_without_a_restart(
        tls_ring: tuple[LocalRing, Pki]) -> None:
    ring, pki = tls_ring
    node = ring.live()[2]
    index = [n.address for n in ring.nodes].index(node.address)

    def served_serial() -> int:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(pki.alice.cert), str(pki.alice.key))
        ctx.set_alpn_protocols(["h2"])
        host, port = node.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=node_name(node.address)) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return int(x509.load_der_x509_certificate(der).serial_number)

    old = served_serial()
    assert old == x509.load_pem_x509_certificate(
        pki.nodes[index].cert.read_bytes()).serial_number
    renewed = certs.issue_node(pki.dir, node.address, force=True)  # same files, new cert
    new = x509.load_pem_x509_certificate(renewed.cert.read_bytes()).serial_number
    deadline = time.monotonic() + 5.0
    while served_serial() != new:  # the files are looked at again within a second
        assert time.monotonic() < deadline, "the node still serves its old certificate"
        time.sleep(0.2)
    ring.wait_converged(timeout=30)  # its peers reconnect to it with the new one


def test_group_access_lists_hold_whichever_node_a_caller_goes_through(
        tls_ring: tuple[LocalRing, Pki]) -> None:
    ring, pki = tls_ring
    nodes = [n.address for n in ring.live()[:NODES]]

    async def as_(who: certs.Issued, address: str) -> Client:
        return Client(address, tls=pki.config(who), ring_aware=False)

    async def go() -> None:
        alice = await as_(pki.alice, nodes[0])
        await alice.create("acl", publishers=["alice"], subscribers=["alice", "bob"])
        info = await alice.info("acl")
        assert (info.owner, info.publishers, info.subscribers) == (
            "alice", ("alice",), ("alice", "bob"))
        # bob may listen; carol may not, through any node.
        bob = await as_(pki.bob, nodes[1])
        sub = bob.join("acl")
        await sub.open()
        for address in nodes[:3]:
            carol = await as_(pki.carol, address)
            with pytest.raises(ClientError) as no_sub:
                async with carol.join("acl"):
                    pass
            assert no_sub.value.code == "PERMISSION_DENIED", no_sub.value
            await carol.close()
        # bob may not send, whichever node he enters through (the root refuses it).
        for address in nodes:
            sender = await as_(pki.bob, address)
            with pytest.raises(ClientError) as refused:
                await sender.send("acl", b"not allowed")
            assert refused.value.code == "PERMISSION_DENIED"
            assert "permission denied: bob may not send to 'acl'" in str(refused.value)
            await sender.close()
        # A member is not anyone's to end: carol cannot detach bob's, bob can.
        named = bob.join("acl", member="bobs")
        await named.open()
        carol = await as_(pki.carol, nodes[1])
        assert await carol.detach("acl", "bobs") == 0
        await carol.close()
        assert await bob.detach("acl", "bobs") == 1
        # alice's message reaches bob, with the sender her certificate names (not a claim).
        seq = await alice.send("acl", b"hello", sender="someone-else")
        got = await asyncio.wait_for(sub.__anext__(), 10)
        assert (got.seq, got.payload, got.sender) == (seq, b"hello", "alice")
        await sub.close()
        await named.close()
        # Destroy: not bob; alice by her certificate, without the token.
        with pytest.raises(ClientError) as no_destroy:
            await bob.destroy("acl", "")
        assert no_destroy.value.code == "PERMISSION_DENIED"
        await alice.destroy("acl", "")
        # ... and the token still destroys, whoever holds it.
        second = await alice.create("acl-token", publishers=["alice"])
        await bob.destroy("acl-token", second.token)
        with pytest.raises(ClientError):
            await alice.info("acl-token")
        for c in (alice, bob):
            await c.close()

    asyncio.run(go())
    # The command line gives a refused publisher one clear line, and exit status 1.
    done = subprocess.run(
        [sys.executable, "-m", "chordcast", "group", "create", "cli-acl", "--via", nodes[0],
         "--publishers", "alice", *tls_args(pki.alice, pki.ca)], capture_output=True)
    assert done.returncode == 0, done.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "chordcast", "group", "send", "cli-acl", "hi", "--via",
         nodes[2], *tls_args(pki.bob, pki.ca)], capture_output=True, text=True)
    assert refused.returncode == 1
    lines = [ln for ln in refused.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "permission denied: bob may not send to 'cli-acl'" in lines[0]


def test_a_ca_signed_certificate_without_a_chordcast_identity_is_unauthenticated(
        tls_ring: tuple[LocalRing, Pki]) -> None:
    """gRPC lets in any certificate the CA signed; one that names no chordcast principal
    (issued by other tooling with the same CA) is refused on every service."""
    ring, pki = tls_ring
    target = ring.live()[3]
    anonymous = _issue_without_identity(pki)
    before = refusals(target).get("no_identity", 0)
    assert refusal(target.address, anonymous, "Ping", pb.PingRequest()) == \
        grpc.StatusCode.UNAUTHENTICATED

    async def as_client() -> None:
        async with Client(target.address, tls=anonymous) as c:
            await c.node_info()

    with pytest.raises(ClientError) as err:
        asyncio.run(as_client())
    assert err.value.code == "UNAUTHENTICATED"
    assert refusals(target)["no_identity"] >= before + 2


def _issue_without_identity(pki: Pki) -> TlsConfig:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anonymous")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = pki.dir / "anonymous.pem", pki.dir / "anonymous.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return TlsConfig(cert_path, key_path, pki.ca)


def test_a_certified_node_cannot_send_or_destroy_for_a_client(
        tls_ring: tuple[LocalRing, Pki]) -> None:
    """A node that goes rogue (its own, valid certificate) routes to a group's root a
    publish and a destroy that name alice as the caller: the root wants alice's signature,
    and a node has only its own key."""
    ring, pki = tls_ring
    nodes = [n.address for n in ring.live()[:NODES]]
    space = IdSpace(160)

    def unproven(address: str) -> float:
        node = next(n for n in ring.live() if n.address == address)
        return refusals(node, "chordcast_mcast_messages_total", "event").get("unproven", 0)

    async def go() -> None:
        alice = Client(nodes[0], tls=pki.config(pki.alice), ring_aware=False)
        await alice.create("signed", publishers=["alice"])
        first = await alice.send("signed", b"one")
        root = (await alice.info("signed")).root
        rogue = next(i for i, a in enumerate(nodes) if a != root)
        before = unproven(root)
        me = pb.Node(id=space.to_bytes(space.hash_key(nodes[rogue])), address=nodes[rogue])
        transport = GrpcTransport(tls=Credentials(pki.config(pki.nodes[rogue])))
        forged = [
            mpb.McastRouted(publish=mpb.PublishOp(name="signed", payload=b"forged",
                                                  sender="alice", message_id="x1",
                                                  principal="alice")),
            # alice's certificate (it passed the rogue on her connection) and a signature
            # of a message she sent does not cover another message.
            mpb.McastRouted(publish=mpb.PublishOp(
                name="signed", payload=b"forged", sender="alice", message_id="x2",
                principal="alice", proof=mpb.Proof(
                    cert_pem=pki.alice.cert.read_bytes(), signed_ms=now_ms(),
                    signature=Signer(Credentials(pki.config(pki.alice))).sign(
                        send_statement("signed", "other", b"one", now_ms()))))),
            mpb.McastRouted(destroy=mpb.DestroyOp(name="signed", principal="alice")),
        ]
        try:
            for op in forged:
                await transport.call(root, "Route", pb.RouteRequest(
                    request_id=secrets.randbits(63), key=space.to_bytes(space.hash_key("signed")),
                    app="scribe", payload=op.SerializeToString(), origin=me, path=[me],
                    final=True, budget_ms=5000), 5.0)
        finally:
            await transport.close()
        # The root answers the rogue (its RouteResult goes to the real node, which ignores
        # it) and counts each operation it did not believe; nothing was sent or destroyed.
        deadline = time.monotonic() + 10
        while unproven(root) < before + len(forged):
            assert time.monotonic() < deadline, unproven(root)
            await asyncio.sleep(0.1)
        info = await alice.info("signed")
        assert info.last_seq == first
        assert await alice.send("signed", b"two") == first + 1
        await alice.destroy("signed")
        await alice.close()

    asyncio.run(go())


def test_members_check_each_message_against_its_senders_signature(
        tls_ring: tuple[LocalRing, Pki]) -> None:
    """The nodes between a group's root and a member pass messages on: one that goes rogue
    (its own, valid certificate; the member's tree parent) pushes a message alice never sent,
    or one she sent again under a new number. The member's client library checks the
    sender's signature that travels with every message, and refuses both (DATA_LOSS)."""
    ring, pki = tls_ring
    nodes = [n.address for n in ring.live()[:NODES]]
    space = IdSpace(160)
    alice_tls = pki.config(pki.alice)

    async def push(parent: str, to: str, message: mpb.GroupMessage, group: str) -> None:
        """What the rogue parent sends its child: a batch of the group's stream."""
        me = pb.Node(id=space.to_bytes(space.hash_address(parent)), address=parent)
        transport = GrpcTransport(tls=Credentials(pki.config(pki.nodes[nodes.index(parent)])))
        op = mpb.McastDirect(data=mpb.DataOp(name=group, messages=[message]))
        try:
            await transport.call(to, "AppCall", pb.AppCallRequest(
                app="scribe", payload=op.SerializeToString(), sender=me), 5.0)
        finally:
            await transport.close()

    async def case(group: str, forged: Callable[[mpb.GroupMessage], mpb.GroupMessage],
                   why: str) -> None:
        alice = Client(nodes[0], tls=alice_tls, ring_aware=False)
        await alice.create(group, publishers=["alice"])
        root = (await alice.info(group)).root
        access = next(a for a in nodes if a != root)
        bob = Client(access, tls=pki.config(pki.bob), ring_aware=False)
        sub = bob.join(group)
        await sub.open()
        # Alice's first message, as it passed the rogue: its id and signature are known.
        signed_ms = now_ms()
        first = mpb.SendRequest(name=group, payload=b"one", message_id=f"{group}-1",
                                signed_ms=signed_ms, signature=Signer(
                                    Credentials(alice_tls)).sign(send_statement(
                                        group, f"{group}-1", b"one", signed_ms)))
        channel = grpc.aio.secure_channel(nodes[0], Credentials(alice_tls).channel(),
                                          [("grpc.ssl_target_name_override",
                                            node_name(nodes[0]))])
        try:
            assert (await MulticastStub(channel).Send(first, timeout=10)).seq == 1
        finally:
            await channel.close()
        got = await asyncio.wait_for(sub.__anext__(), 10)
        assert (got.seq, got.payload, got.sender) == (1, b"one", "alice")  # checked: fine
        parent = next(r.parent for r in await Client(access, tls=alice_tls,
                                                      ring_aware=False).roles()
                      if r.group == group)
        genuine = mpb.GroupMessage(seq=1, payload=b"one", sender="alice",
                                   ts_ms=signed_ms, message_id=f"{group}-1",
                                   proof=mpb.Proof(cert_pem=pki.alice.cert.read_bytes(),
                                                   signature=first.signature,
                                                   signed_ms=signed_ms))
        await push(parent, access, forged(genuine), group)
        with pytest.raises(ClientError) as refused:
            await asyncio.wait_for(sub.__anext__(), 10)
        assert refused.value.code == "DATA_LOSS", refused.value
        assert f"message 2 of {group!r} is not what alice sent" in str(refused.value)
        assert why in str(refused.value)
        await sub.close()
        for c in (alice, bob):
            await c.close()

    def made_up(m: mpb.GroupMessage) -> mpb.GroupMessage:
        return mpb.GroupMessage(seq=2, payload=b"made up", sender="alice", ts_ms=m.ts_ms,
                                message_id="made-up")

    def altered(m: mpb.GroupMessage) -> mpb.GroupMessage:
        out = mpb.GroupMessage()
        out.CopyFrom(m)
        out.seq, out.message_id, out.payload = 2, "altered", b"pay me"
        return out

    def again(m: mpb.GroupMessage) -> mpb.GroupMessage:
        out = mpb.GroupMessage()
        out.CopyFrom(m)
        out.seq = 2
        return out

    asyncio.run(case("e2e-made-up", made_up, "no signature"))
    asyncio.run(case("e2e-altered", altered, "signature is not 'alice''s"))
    asyncio.run(case("e2e-again", again, "repeats message 1"))
