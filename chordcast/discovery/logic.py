"""What a discovery listener answers and which node a newcomer joins through (pure).

The listener is a state machine in the h11 style: a datagram and its source in, an answer (or
nothing) out, with counters for every outcome. No sockets, no clocks: the caller passes `now`
and the nonce for the answer.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chord.ids import IdSpace
from chordcast.address import split_address
from chordcast.discovery.packet import Codec, Rejected
from chordcast.v1.discovery_pb2 import DiscoveryMessage

VIEW_CAPACITY = 4096


@dataclass(frozen=True)
class Identity:
    """What a node says about itself in discovery messages."""

    address: str
    node_id: int
    ring_size: int
    in_ring: bool


@dataclass
class Peer:
    address: str
    node_id: int
    ring_size: int
    in_ring: bool
    last_seen: float
    id_bits: int


class Responder:
    def __init__(
        self,
        codec: Codec,
        space: IdSpace,
        identity: Callable[[], Identity],
        allowed: Callable[[str], bool] = lambda ip: True,
    ) -> None:
        self.codec = codec
        self.space = space
        self.identity = identity
        self.allowed = allowed
        self.view: OrderedDict[str, Peer] = OrderedDict()  # the group as this node sees it
        self.received = 0
        self.answered = 0
        self.dropped: Counter[str] = Counter()
        self.last_drop: Rejected | None = None  # why the latest datagram got no answer

    def handle(self, data: bytes, source_ip: str, now: float, nonce: bytes) -> bytes | None:
        """One datagram in; the unicast answer to send back to its source, or None."""
        self.received += 1
        try:
            msg = self.codec.decode(data, now)
            me = self.identity()
            if msg.kind == DiscoveryMessage.ANSWER:
                raise Rejected("unexpected_kind", "answers go to the prober's own socket")
            if not self.allowed(source_ip):
                raise Rejected("not_allowed", source_ip)
            if msg.kind == DiscoveryMessage.PROBE:
                peer = parse_peer(msg, self.space, now)
                if peer.node_id == me.node_id and peer.address == me.address:
                    raise Rejected("own")
                self._remember(peer)
        except Rejected as exc:
            self.dropped[exc.reason] += 1
            self.last_drop = exc
            return None
        self.answered += 1
        return self.codec.encode(make_message(DiscoveryMessage.ANSWER, me, self.space, now, nonce))

    def _remember(self, peer: Peer) -> None:
        self.view.pop(peer.address, None)
        self.view[peer.address] = peer
        while len(self.view) > VIEW_CAPACITY:
            self.view.popitem(last=False)


def make_message(kind: DiscoveryMessage.Kind, me: Identity | None, space: IdSpace, now: float,
                 nonce: bytes) -> DiscoveryMessage:
    msg = DiscoveryMessage(kind=kind, id_bits=space.bits, timestamp_ms=int(now * 1000),
                           nonce=nonce)
    if me is not None:
        msg.address = me.address
        msg.node_id = space.to_bytes(me.node_id)
        msg.ring_size = me.ring_size
        msg.in_ring = me.in_ring
    return msg


def parse_peer(msg: DiscoveryMessage, space: IdSpace, now: float) -> Peer:
    """The sender of a PROBE or ANSWER, validated: its id must be SHA-1 of its address."""
    if msg.id_bits != space.bits:
        raise Rejected("wrong_id_bits", f"{msg.id_bits} != {space.bits}")
    try:
        split_address(msg.address)
    except ValueError as exc:
        raise Rejected("malformed", str(exc)) from None
    if len(msg.node_id) != space.byte_len:
        raise Rejected("malformed", "node id has the wrong length")
    node_id = int.from_bytes(msg.node_id, "big")
    if node_id != space.hash_address(msg.address):
        raise Rejected("malformed", "node id is not SHA-1 of the address")
    return Peer(msg.address, node_id, msg.ring_size, msg.in_ring, now, space.bits)


def ring_distance(space: IdSpace, a: int, b: int) -> int:
    return min(space.distance(a, b), space.distance(b, a))


def join_order(space: IdSpace, my_id: int, peers: list[Peer]) -> list[str]:
    """Ring members to join through, closest to our own id first (fewest routing hops)."""
    members = [p for p in peers if p.in_ring]
    members.sort(key=lambda p: (ring_distance(space, p.node_id, my_id), p.address))
    return [p.address for p in members]


def should_found(my_id: int, peers: list[Peer]) -> bool:
    """Nobody answered from a ring, only fellow newcomers: the one with the lowest id starts
    the ring and the others join it, instead of each starting a ring of its own."""
    return all(my_id < p.node_id for p in peers if not p.in_ring)
