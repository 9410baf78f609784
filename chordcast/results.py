"""What the client library returns: plain frozen dataclasses, and its one exception type.

Ids are lowercase hex, zero-padded to the ring's id width, so they can be pasted back into
`lookup --id`. Nothing here talks to the network.
"""

from __future__ import annotations

from dataclasses import dataclass


class ClientError(Exception):
    """One clear line for the user: what failed and why. `code` is the gRPC status name
    (e.g. "UNAVAILABLE", "NOT_FOUND", "INVALID_ARGUMENT"), or "" for a local refusal.
    `unreachable`: the node could not be reached at all, so another node may serve the call."""

    def __init__(self, message: str, code: str = "", unreachable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.unreachable = unreachable


@dataclass(frozen=True)
class Peer:
    id: str        # lowercase hex, zero-padded to the id space's width
    address: str


@dataclass(frozen=True)
class NodeInfo:
    node: Peer
    predecessor: Peer | None
    successors: list[Peer]
    fingers: list[Peer]
    keys: int
    replicas: int
    id_bits: int
    rpc_p99_ms: float = 0.0  # the slowest 1% of the RPCs it served lately; 0: none yet


@dataclass(frozen=True)
class Lookup:
    key: str          # "" when a raw id was looked up
    key_id: str
    owner: Peer
    hops: int
    path: list[str]   # addresses, origin first, owner last


@dataclass(frozen=True)
class Stored:
    key: str
    owner: Peer
    version: int


@dataclass(frozen=True)
class Value:
    key: str
    found: bool
    value: bytes
    version: int
    owner: Peer


@dataclass(frozen=True)
class Deleted:
    key: str
    found: bool
    owner: Peer


@dataclass(frozen=True)
class CreatedGroup:
    group: str
    group_id: str
    root: str
    token: str


@dataclass(frozen=True)
class GroupMessage:
    kind: str          # "message", "gap" (seq..last_seq lost), "ended", "anycast", "lagged"
    group: str
    seq: int
    payload: bytes
    sender: str
    ts: float          # the root's stamp time, seconds since the epoch
    last_seq: int = 0

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class GroupInfo:
    group: str
    group_id: str
    root: str
    creator: str
    created: float
    last_seq: int
    members: int
    depth: int
    owner: str = ""  # the creator's principal (a ring with TLS)
    publishers: tuple[str, ...] = ()  # empty: anyone may send
    subscribers: tuple[str, ...] = ()  # empty: anyone may subscribe


@dataclass(frozen=True)
class GroupRole:
    """A node's part in one group's tree."""

    group: str
    root: bool
    parent: str
    children: int
    members: int
    last_seq: int
    child_addresses: tuple[str, ...] = ()
    member_names: tuple[str, ...] = ()  # as each member named itself when it joined here


@dataclass(frozen=True)
class InboxMessage:
    kind: str          # "broadcast" or "unicast"
    payload: bytes
    sender: str

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class TreeNode:
    """One node of a group's multicast tree, as the tree was walked from its root."""

    address: str
    parent: str                # "" at the root
    depth: int                 # 0 at the root
    children: tuple[str, ...]  # addresses
    members: tuple[str, ...]   # names of the members attached here
    root: bool
