"""What every part of Scribe shares: the configuration, the error type, the name and payload
checks, the reply builders, and one node's Scribe state (its groups, the groups it is the
root of, its replicas) with the messaging helpers the parts use (route to a group's root, send
to a node, send quietly).

Only `chord.kbr.Kbr` is used to reach the overlay; nothing here does I/O of its own.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chord.kbr import Kbr, LookupFailed
from chord.ports import PeerUnavailable, RemoteError
from chord.state import NodeRef
from chord.wire import node_to_pb
from chordcast.v1 import chord_pb2 as cpb
from chordcast.v1 import mcast_pb2 as mpb
from mcast.disk import GroupDisk
from mcast.tree import GroupState, RootState

APP = "scribe"
MAX_PAYLOAD = 1 << 20
MAX_NAME = 256
SEND_BATCH = 64


# Routed requests that may skip the hops to the root: no forward upcall acts on them (JOIN
# and ANYCAST do) and delivering one twice is harmless (a publish carries its message id).
ONE_HOP_OPS = frozenset({"publish", "info", "range"})


class McastError(Exception):
    """A refused or failed group operation; `code` is one of the CODES."""

    CODES = ("not_found", "exists", "denied", "invalid", "unavailable", "exhausted")

    def __init__(self, code: str, message: str) -> None:
        assert code in self.CODES
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ScribeConfig:
    archive: int = 1024
    max_children: int = 16
    parent_timeout: float = 3.0
    recent: int = 1024
    replicas: int = 3
    send_retries: int = 3
    # What one node holds for others at most: groups it is the root of, and members attached
    # to it. Past either, a create or a join is refused (nothing anyone sends grows a node's
    # memory without bound).
    max_groups: int = 10_000
    max_members: int = 10_000
    # Of the groups a node roots, those one owner (a certified caller) may hold: no one
    # client takes a root's whole share.
    max_groups_per_owner: int = 1_000


def check_name(name: str) -> None:
    if not name or len(name.encode("utf-8")) > MAX_NAME:
        raise McastError("invalid", f"a group name must be 1 to {MAX_NAME} bytes")


ANY_PRINCIPAL = "*"
_PRINCIPAL = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9._:\[\]-]*)$")
MAX_ACL = 256  # principals in one access list


def allowed(acl: Sequence[str], principal: str) -> bool:
    """May `principal` (who the access node authenticated; "" when nobody could be) act on
    a group whose access list is `acl`? An empty list lets anyone; "*" any certified caller."""
    if not acl:
        return True
    return bool(principal) and (principal in acl or ANY_PRINCIPAL in acl)


def check_acl(acl: Sequence[str]) -> None:
    """At most MAX_ACL names, each a principal's name (as certificates carry them) or "*"."""
    if len(acl) > MAX_ACL or any(not p or len(p) > MAX_NAME or not _PRINCIPAL.match(p)
                                 for p in acl):
        raise McastError("invalid", f"an access list holds up to {MAX_ACL} principal names "
                                    f"(letters, digits, . _ - : [ ], up to {MAX_NAME} bytes) "
                                    f"or '*'")


def check_payload(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise McastError(
            "invalid", f"payload of {len(payload)} bytes exceeds the 1 MiB limit ({MAX_PAYLOAD})")


def reply(**fields: object) -> bytes:
    """The answer to a routed request (`McastRouted`)."""
    return mpb.McastReply(**fields).SerializeToString()  # type: ignore[arg-type]


def direct_reply(**fields: object) -> bytes:
    """The answer to a direct message (`McastDirect`)."""
    return mpb.McastDirectReply(**fields).SerializeToString()  # type: ignore[arg-type]


class Proofs(Protocol):
    """Whether a publish or destroy that reaches a group's root really comes from the
    principal its access node named (the access node could lie): an error message, or None.
    A ring with TLS checks the caller's own signature (chordcast.proofs); a ring without it
    has no identities to prove (`Trusting`)."""

    def publish(self, op: mpb.PublishOp) -> str | None: ...

    def destroy(self, op: mpb.DestroyOp) -> str | None: ...


class Trusting:
    """Proofs for a ring without identities: nothing to check."""

    def publish(self, op: mpb.PublishOp) -> str | None:
        return None

    def destroy(self, op: mpb.DestroyOp) -> str | None:
        return None


class ScribeCore:
    """One node's Scribe state and the messaging every part uses."""

    def __init__(self, kbr: Kbr, config: ScribeConfig, rng: random.Random,
                 proofs: Proofs, disk: GroupDisk) -> None:
        self.kbr = kbr
        self.config = config
        self.rng = rng
        self.proofs = proofs
        self.disk = disk
        self.groups: dict[str, GroupState] = {}
        self.roots: dict[str, RootState] = {}
        self.replicas: dict[str, RootState] = {}

    @property
    def me(self) -> NodeRef:
        return self.kbr.me

    def gid(self, name: str) -> int:
        return self.kbr.space.hash_key(name)

    def pb(self, node: NodeRef) -> cpb.Node:
        return node_to_pb(self.kbr.space, node)

    def closeness(self, node_id: int, gid: int) -> int:
        """Routing progress toward the group id: smaller is nearer (the root is nearest)."""
        return self.kbr.space.distance(node_id, gid)

    def now_ms(self) -> int:
        return int(self.kbr.clock.wall() * 1000)

    # ------------------------------------------------------------ group state
    def group(self, name: str) -> GroupState:
        """This node's state for the group, made (detached, just heard of) if it has none."""
        g = self.groups.get(name)
        if g is None:
            g = GroupState(name, self.gid(name), recent_limit=self.config.recent)
            g.last_heard = self.kbr.clock.now()
            self.groups[name] = g
        return g

    def maybe_drop(self, g: GroupState) -> None:
        """Forget a group state that holds nothing and is in no tree."""
        if g.idle and not g.in_tree:
            self.groups.pop(g.name, None)

    # ------------------------------------------------------------ messaging
    async def route(self, name: str, op: mpb.McastRouted) -> tuple[mpb.McastReply, NodeRef]:
        """A request to the group's root; its error answer is raised as McastError."""
        # (A one-hop call that times out is routed again: see ONE_HOP_OPS.)
        one_hop = op.WhichOneof("op") in ONE_HOP_OPS
        try:
            result = await self.kbr.route(self.gid(name), APP, op.SerializeToString(), one_hop)
        except LookupFailed as exc:
            raise McastError("unavailable", f"cannot reach the root of {name!r}: {exc}") from None
        answer = mpb.McastReply.FromString(result.payload)
        if answer.error:
            raise McastError(answer.code or "invalid", answer.error)
        return answer, result.owner

    async def send(self, node: NodeRef, op: mpb.McastDirect) -> mpb.McastDirectReply:
        return mpb.McastDirectReply.FromString(
            await self.kbr.send(node, APP, op.SerializeToString()))

    async def send_quietly(self, node: NodeRef, op: mpb.McastDirect) -> None:
        """Send, and ignore a node that is gone or refuses."""
        try:
            await self.send(node, op)
        except (PeerUnavailable, RemoteError):
            pass
