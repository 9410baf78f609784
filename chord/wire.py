"""Conversions between ring state values and their protobuf form (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from chord.ids import IdSpace
from chord.ports import InvalidRequest
from chord.state import NodeRef
from chordcast.v1 import chord_pb2 as pb

MAX_ADDRESS_LEN = 512


def node_to_pb(space: IdSpace, node: NodeRef) -> pb.Node:
    return pb.Node(id=space.to_bytes(node.id), address=node.address)


def nodes_to_pb(space: IdSpace, nodes: Iterable[NodeRef]) -> list[pb.Node]:
    return [node_to_pb(space, n) for n in nodes]


def node_from_pb(space: IdSpace, msg: pb.Node) -> NodeRef:
    """Decode a peer-supplied node; a malformed one is an InvalidRequest, never a crash."""
    return _decode_node(space.bits, msg.id, msg.address)


@lru_cache(maxsize=1 << 16)
def _decode_node(bits: int, ident: bytes, address: str) -> NodeRef:
    # Cached: successor lists and paths carry the same nodes over and over (a ring node
    # decodes tens of them per stabilization round); a failed decode raises, is not cached.
    if not address or len(address) > MAX_ADDRESS_LEN:
        raise InvalidRequest("node without a valid address")
    return NodeRef(key_from_pb(IdSpace(bits), ident), address)


def nodes_from_pb(space: IdSpace, msgs: Iterable[pb.Node]) -> list[NodeRef]:
    return [node_from_pb(space, m) for m in msgs]


def key_from_pb(space: IdSpace, data: bytes) -> int:
    if len(data) != space.byte_len:
        raise InvalidRequest(f"identifier must be {space.byte_len} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= space.size:
        raise InvalidRequest(f"identifier outside the {space.bits}-bit ring")
    return value
