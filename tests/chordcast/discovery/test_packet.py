"""Discovery framing and the listener's logic: round trips, authentication, replays, fuzzing."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chord.ids import IdSpace
from chordcast.discovery.logic import Identity, Responder, join_order, parse_peer, should_found
from chordcast.discovery.net import DiscoveryConfigError
from chordcast.discovery.packet import DROP_REASONS, HEADER, MAX_PACKET, Codec, Rejected
from chordcast.discovery.service import read_key_file
from chordcast.v1.discovery_pb2 import DiscoveryMessage

SPACE = IdSpace(160)
KEY = b"k" * 32
NOW = 1_800_000_000.0
ME = Identity("10.0.0.1:7000", SPACE.hash_address("10.0.0.1:7000"), 5, True)


def probe(address: str = "10.0.0.2:7000", nonce: bytes = b"n" * 16, ts: float = NOW
          ) -> DiscoveryMessage:
    return DiscoveryMessage(kind=DiscoveryMessage.PROBE, address=address,
                            node_id=SPACE.to_bytes(SPACE.hash_address(address)), id_bits=160,
                            timestamp_ms=int(ts * 1000), nonce=nonce)


def responder(key: bytes | None = None) -> Responder:
    return Responder(Codec(key), SPACE, lambda: ME)


def test_roundtrip_without_and_with_key() -> None:
    for key in (None, KEY):
        codec = Codec(key)
        msg = probe()
        assert Codec(key).decode(codec.encode(msg), NOW) == msg


def test_outsider_wrong_key_unauthenticated_and_replay_are_rejected() -> None:
    packet = Codec(KEY).encode(probe())
    with pytest.raises(Rejected, match="bad_mac"):
        Codec(b"x" * 32).decode(packet, NOW)
    with pytest.raises(Rejected, match="unauthenticated"):
        Codec(KEY).decode(Codec(None).encode(probe()), NOW)
    with pytest.raises(Rejected, match="unauthenticated"):
        Codec(None).decode(packet, NOW)
    receiver = Codec(KEY)
    receiver.decode(packet, NOW)
    with pytest.raises(Rejected, match="replayed"):
        receiver.decode(packet, NOW + 1)
    with pytest.raises(Rejected, match="stale"):
        Codec(KEY).decode(Codec(KEY).encode(probe(ts=NOW - 300)), NOW)


def test_framing_errors() -> None:
    good = Codec().encode(probe())
    cases = {
        "oversized": b"x" * (MAX_PACKET + 1),
        "truncated": good[:5],
        "bad_magic": b"XXXX" + good[4:],
        "bad_version": good[:4] + b"\x09" + good[5:],
    }
    for reason, data in cases.items():
        with pytest.raises(Rejected) as exc:
            Codec().decode(data, NOW)
        assert exc.value.reason == reason
    with pytest.raises(Rejected, match="truncated"):
        Codec().decode(good + b"extra", NOW)


def test_peer_id_must_be_sha1_of_address() -> None:
    msg = probe()
    msg.node_id = SPACE.to_bytes(12345)
    with pytest.raises(Rejected, match="SHA-1"):
        parse_peer(msg, SPACE, NOW)
    msg = probe()
    msg.id_bits = 32
    with pytest.raises(Rejected, match="wrong_id_bits"):
        parse_peer(msg, SPACE, NOW)


def test_responder_records_and_answers_probes_and_queries() -> None:
    r = responder()
    answer = r.handle(Codec().encode(probe()), "10.0.0.2", NOW, b"a" * 16)
    assert answer is not None
    msg = Codec().decode(answer, NOW)
    assert msg.kind == DiscoveryMessage.ANSWER and msg.address == ME.address
    assert msg.ring_size == 5 and msg.in_ring
    assert "10.0.0.2:7000" in r.view
    query = DiscoveryMessage(kind=DiscoveryMessage.QUERY, id_bits=160, nonce=b"q" * 16)
    assert r.handle(Codec().encode(query), "10.0.0.9", NOW, b"b" * 16) is not None
    # Its own probe (the kernel loops broadcasts back) gets no answer.
    own = probe(address=ME.address)
    assert r.handle(Codec().encode(own), "10.0.0.1", NOW, b"c" * 16) is None
    assert r.dropped["own"] == 1


def test_responder_with_key_ignores_outsiders_and_replays() -> None:
    r = responder(KEY)
    assert r.handle(Codec().encode(probe()), "10.0.0.2", NOW, b"a" * 16) is None
    signed = Codec(KEY).encode(probe())
    assert r.handle(signed, "10.0.0.2", NOW, b"a" * 16) is not None
    assert r.handle(signed, "10.0.0.2", NOW, b"b" * 16) is None
    assert r.dropped["unauthenticated"] == 1 and r.dropped["replayed"] == 1


def test_join_order_and_founder_choice() -> None:
    me = 1000
    peers = [parse_peer(probe(f"10.0.0.{i}:7000"), SPACE, NOW) for i in range(2, 6)]
    for p in peers[:2]:
        p.in_ring = True
    order = join_order(SPACE, me, peers)
    assert sorted(order) == sorted(p.address for p in peers[:2])
    dist = [min(SPACE.distance(me, p.node_id), SPACE.distance(p.node_id, me))
            for p in sorted(peers[:2], key=lambda p: order.index(p.address))]
    assert dist == sorted(dist)
    newcomers = peers[2:]
    lowest = min(p.node_id for p in newcomers)
    assert should_found(lowest - 1, newcomers)
    assert not should_found(lowest + 1, newcomers)


# -- fuzzing: nothing but Rejected ever comes out of the parser --------------------------------
def framed(body: bytes, version: int = 1, flags: int = 0) -> bytes:
    return HEADER.pack(b"CCDP", version, flags, len(body) & 0xFFFF) + body


hostile = st.one_of(
    st.binary(max_size=2 * MAX_PACKET),
    st.binary(max_size=600).map(framed),
    st.tuples(st.binary(max_size=300), st.integers(0, 255), st.integers(0, 255)).map(
        lambda t: framed(t[0], t[1], t[2])),
    st.binary(max_size=40).map(lambda b: framed(b) + b"\x00" * 32),
    st.tuples(st.integers(0, 200), st.binary(min_size=1, max_size=4)).map(
        lambda t: bytearray(Codec().encode(probe()))[: t[0]] + t[1]).map(bytes),
    st.integers(0, 0xFFFF).map(lambda n: struct.pack("!4sBBH", b"CCDP", 1, 0, n)),
)


@settings(max_examples=400, deadline=None)
@given(hostile)
def test_parser_only_ever_rejects(data: bytes) -> None:
    for key in (None, KEY):
        try:
            Codec(key).decode(data, NOW)
        except Rejected as exc:
            assert exc.reason in DROP_REASONS


@settings(max_examples=300, deadline=None)
@given(st.lists(hostile, max_size=10))
def test_responder_survives_hostile_input_and_keeps_answering(packets: list[bytes]) -> None:
    r = responder()
    for data in packets:
        r.handle(data, "10.0.0.2", NOW, b"z" * 16)
    assert sum(r.dropped.values()) + r.answered == r.received
    assert r.handle(Codec().encode(probe()), "10.0.0.2", NOW, b"y" * 16) is not None


def test_a_keyring_rotates_the_cluster_key_without_a_split(tmp_path: Path) -> None:
    """The steps of a rotation (every node moves one step at a time, in any order): nodes
    one step apart understand each other, so the ring never splits; old and new alone do
    not."""
    old, new = b"o" * 32, b"n" * 32
    steps = [(old,), (old, new), (new, old), (new,)]
    for a, b in itertools.pairwise(steps):
        for sender, receiver in ((a, b), (b, a)):
            msg = probe()
            assert Codec(receiver).decode(Codec(sender).encode(msg), NOW) == msg
    with pytest.raises(Rejected, match="bad_mac"):
        Codec((new,)).decode(Codec((old,)).encode(probe()), NOW)
    ring = tmp_path / "cluster.key"
    ring.write_bytes(b"n" * 32 + b"\n" + b"o" * 32 + b"\n")
    assert read_key_file(str(ring)) == (new, old)
    ring.write_bytes(b"n" * 32 + b"\nshort-but-text\n")
    with pytest.raises(DiscoveryConfigError, match=r"key 2 .* shorter than 16"):
        read_key_file(str(ring))
    # A binary key file (any bytes, line breaks included) is still one key, as before.
    binary = bytes(range(256))[:40]
    ring.write_bytes(binary)
    assert read_key_file(str(ring)) == (binary.strip(),)
    ring.write_bytes(b"k" * 5000)
    with pytest.raises(DiscoveryConfigError, match="larger than 4096"):
        read_key_file(str(ring))
