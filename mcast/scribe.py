"""Scribe on KBR: groups, trees, ordered reliable delivery, anycast, broadcast and unicast.

Written only against `chord.kbr.Kbr` (route, send, broadcast, replica_set, owns, update):
no finger tables, no transport, no wall clock.

- A JOIN is routed toward the group id. At each hop the forward upcall adopts the previous
  forwarder as a child; a node already in the tree stops the JOIN there, a node not yet in it
  becomes a forwarder and lets the JOIN go on. The root is the owner of the group id.
- A message goes to the root, which stamps the next sequence number, archives it, copies it to
  its replicas (its successors) and only then sends it down the tree, so a new root after a
  failure continues the sequence with no gap and no duplicate.
- Tree links are soft state: each child refreshes its parent every `parent_timeout / 3`
  seconds; the answer is the parent's heartbeat and tells the child how far the stream has
  got. A child whose parent stops answering re-routes its JOIN and resumes from its last
  sequence number (the new parent's buffer, or the root's archive, fills the gap).
- Parent pointers always move toward the group id (routing guarantees it, and the bottleneck
  remover hands a new child only to a child nearer the group id), so trees cannot have cycles.

This module is the Scribe class: the API, the KBR upcalls (each dispatching on the message
kind through a table), anycast and the inbox. The work is done by its parts:
`mcast.core` (shared state and messaging), `mcast.children` (the downward side: dissemination
and child links), `mcast.roots` (the root side: records, replicas, hand-over) and
`mcast.repair` (the upward side: joining, refresh, re-join, gap repair, maintenance).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chord.kbr import Forward, Kbr, LookupFailed, NeighborChange
from chord.ports import Durable, Forgetful, InvalidRequest, PeerUnavailable, RemoteError
from chord.state import NodeRef
from chord.wire import node_from_pb
from chordcast.v1 import mcast_pb2 as mpb
from mcast.children import Children
from mcast.core import (
    APP,
    MAX_NAME,
    MAX_PAYLOAD,
    ONE_HOP_OPS,
    McastError,
    Proofs,
    ScribeConfig,
    ScribeCore,
    Trusting,
    allowed,
    check_acl,
    check_name,
    check_payload,
    direct_reply,
    reply,
)
from mcast.disk import GroupDisk
from mcast.repair import Repair
from mcast.roots import Roots
from mcast.tree import ANYCAST, Event, GroupState, Member, RootState, TreeRole

log = logging.getLogger(__name__)

MAX_MESSAGE_ID = 128  # characters; a client's id is opaque to us, but bounded

__all__ = ["APP", "MAX_PAYLOAD", "GroupSummary", "McastError", "Scribe", "ScribeConfig",
           "check_name", "check_payload"]

InboxListener = Callable[[str, bytes, str], None]
_ForwardHandler = Callable[[mpb.McastRouted, bytes, NodeRef], Awaitable[Forward]]
_DeliverHandler = Callable[[mpb.McastRouted], Awaitable[bytes]]
_AtRootHandler = Callable[[str, RootState, mpb.McastRouted], Awaitable[bytes]]
_DirectHandler = Callable[[mpb.McastDirect, NodeRef], Awaitable[bytes]]


@dataclass(frozen=True)
class GroupSummary:
    name: str
    group_id: int
    root: NodeRef
    creator: str
    created_ms: int
    last_seq: int
    members: int
    depth: int
    owner: str = ""
    publishers: tuple[str, ...] = ()
    subscribers: tuple[str, ...] = ()


class Scribe:
    """Scribe on one node: the group API for local callers and the KBR application that
    routes, forwards and delivers group messages between nodes."""

    name = APP

    def __init__(self, kbr: Kbr, config: ScribeConfig | None = None,
                 rng: random.Random | None = None, proofs: Proofs | None = None,
                 durable: Durable | None = None) -> None:
        """`proofs`: how a group's root checks that a publish or destroy comes from the
        principal named in it (see `Proofs`; none to check by default). `durable`: where the
        group copies this node holds are kept across restarts (memory only by default)."""
        disk = GroupDisk(durable or Forgetful())
        self._core = ScribeCore(kbr, config or ScribeConfig(), rng or random.Random(),
                                proofs or Trusting(), disk)
        # Copies from before a restart wait as replicas: the group's root, once asked,
        # takes over from the best copy in its replica set (as after any root change).
        for state in disk.load():
            self._core.replicas[state.record.name] = state
        self._children = Children(self._core)
        self._roots = Roots(self._core, self._children)
        self._repair = Repair(self._core, self._children)
        self.inbox: list[InboxListener] = []
        self._next_member = 0
        self._next_message = 0
        # The upcalls' dispatch tables: message kind -> handler.
        self._on_forward: dict[str, _ForwardHandler] = {
            "join": self._forward_join,
            "anycast": self._forward_anycast,
        }
        assert not self._on_forward.keys() & ONE_HOP_OPS  # those skip the forward upcalls
        self._on_deliver: dict[str, _DeliverHandler] = {  # at the key's owner
            "create": self._deliver_create,
            "publish": self._deliver_publish,
            "destroy": self._deliver_destroy,
            "unicast": self._deliver_unicast,
        }
        self._on_deliver_at_root: dict[str, _AtRootHandler] = {  # at a group's root
            "info": self._deliver_info,
            "join": self._deliver_join,
            "range": self._deliver_range,
            "anycast": self._deliver_anycast,
        }
        self._on_direct: dict[str, _DirectHandler] = {
            "data": self._direct_data,
            "refresh": self._direct_refresh,
            "adopt": self._direct_adopt,
            "prune": self._direct_prune,
            "end": self._direct_end,
            "range": self._direct_range,
            "replica": self._direct_replica,
            "anycast": self._direct_anycast,
            "reparent": self._direct_reparent,
            "roots": self._direct_roots,
            "broadcast": self._direct_broadcast,
        }
        kbr.register(self)

    # ============================================================ state (shared with the parts)
    @property
    def kbr(self) -> Kbr:
        return self._core.kbr

    @property
    def config(self) -> ScribeConfig:
        return self._core.config

    @property
    def rng(self) -> random.Random:
        return self._core.rng

    @property
    def groups(self) -> dict[str, GroupState]:
        return self._core.groups

    @property
    def roots(self) -> dict[str, RootState]:
        return self._core.roots

    @property
    def replicas(self) -> dict[str, RootState]:
        return self._core.replicas

    @property
    def me(self) -> NodeRef:
        return self._core.me

    def gid(self, name: str) -> int:
        return self._core.gid(name)

    # ============================================================ read-only views
    def roles(self) -> list[TreeRole]:
        """What this node is in each group it takes part in, sorted by name."""
        return [TreeRole(name=g.name, group_id=g.group_id, is_root=g.is_root, parent=g.parent,
                          children=tuple(c.node for c in g.children.values()),
                          members=tuple(m.name for m in g.members.values()),
                          last_seq=g.last)
                for g in sorted(self._core.groups.values(), key=lambda g: g.name)]

    def listen_inbox(self, listener: InboxListener) -> Callable[[], None]:
        """Call `listener(kind, payload, sender)` for each broadcast or unicast this node
        gets; returns the function that stops it."""
        self.inbox.append(listener)

        def remove() -> None:
            if listener in self.inbox:
                self.inbox.remove(listener)

        return remove

    # ============================================================ the API (local operations)
    async def create(self, name: str, creator: str = "", owner: str = "",
                     publishers: Sequence[str] = (), subscribers: Sequence[str] = ()
                     ) -> tuple[str, NodeRef]:
        """Create a group; returns the token that destroying it needs, and its root. `owner`
        (the principal the caller authenticated as) may destroy it without the token;
        `publishers` and `subscribers` limit who may send and subscribe (see `allowed`)."""
        check_name(name)
        check_acl(publishers)
        check_acl(subscribers)
        if len(creator.encode()) > MAX_NAME:
            raise McastError("invalid", f"a creator name is at most {MAX_NAME} bytes")
        answer, root = await self._core.route(name, mpb.McastRouted(create=mpb.CreateOp(
            name=name, creator=creator or self.me.address, archive=self.config.archive,
            owner=owner, publishers=publishers, subscribers=subscribers)))
        return answer.token, root

    async def join(self, name: str, on_event: Callable[[Event], None], member: str = "",
                   resume_after: int | None = None, principal: str = "") -> tuple[Member, int]:
        """Attach a member here and join the tree if this node is not in it yet. Returns the
        member and the sequence number delivery starts after. `principal`: who the caller
        authenticated as, checked against the group's subscribers (from its root)."""
        check_name(name)
        # A clear "no such group" before any tree state is made; and where "from now on"
        # starts: after the root's current sequence number.
        summary = await self.info(name)
        if not allowed(summary.subscribers, principal):
            who = principal or "an unauthenticated caller"
            raise McastError("denied", f"permission denied: {who} may not subscribe to "
                                       f"{name!r}")
        now_at = summary.last_seq
        attached = sum(len(g.members) for g in self.groups.values())
        if attached >= self.config.max_members:
            raise McastError("exhausted", f"this node holds its limit of "
                                          f"{self.config.max_members} members")
        self._next_member += 1
        m = Member(self._next_member, member or f"member-{self._next_member}", on_event,
                   cursor=resume_after)
        g = self._core.group(name)
        g.members[m.id] = m
        try:
            if not g.in_tree:
                await self._repair.join_tree(g, fallback=now_at)
            if m.cursor is None:
                m.cursor = now_at
            await self._repair.backfill(g, m)
        except BaseException:  # refused, failed or cancelled: no member is left behind
            g.members.pop(m.id, None)
            self._core.maybe_drop(g)
            if g.in_tree:  # attached meanwhile: leave again, unless others need the branch
                self.kbr.spawn(self._repair.prune_if_idle(g))
            raise
        return m, m.cursor

    async def leave(self, name: str, member: Member) -> None:
        g = self.groups.get(name)
        if g is None:
            return
        g.members.pop(member.id, None)
        await self._repair.prune_if_idle(g)

    async def send(self, name: str, payload: bytes, sender: str = "", message_id: str = "",
                   principal: str = "", proof: mpb.Proof | None = None) -> int:
        """Multicast: to the root for a sequence number, then down the tree. A send that
        carries the `message_id` of one the root already stamped gets that number again and
        is not delivered twice (a client retrying through another access node)."""
        check_name(name)
        check_payload(payload)
        if len(message_id) > MAX_MESSAGE_ID:
            raise McastError("invalid", f"message id longer than {MAX_MESSAGE_ID} characters")
        if not message_id:
            self._next_message += 1
            message_id = f"{self.me.address}/{self._next_message}/{self.rng.getrandbits(32):x}"
        op = mpb.McastRouted(publish=mpb.PublishOp(name=name, payload=payload,
                                                   sender=sender or self.me.address,
                                                   message_id=message_id, principal=principal,
                                                   proof=proof))
        for attempt in range(self.config.send_retries):
            try:
                answer, _ = await self._core.route(name, op)
                return answer.seq
            except McastError as exc:
                if exc.code != "unavailable" or attempt + 1 == self.config.send_retries:
                    raise
                await self.kbr.clock.sleep(0.2 * (attempt + 1))  # the ring is repairing
        raise AssertionError("unreachable")

    async def destroy(self, name: str, token: str, principal: str = "",
                      proof: mpb.Proof | None = None) -> None:
        check_name(name)
        await self._core.route(name, mpb.McastRouted(destroy=mpb.DestroyOp(
            name=name, token=token, principal=principal, proof=proof)))

    async def anycast(self, name: str, payload: bytes, sender: str = "", principal: str = ""
                      ) -> NodeRef:
        """Deliver to one member: the nearest in the tree to where the request meets it.
        Only a principal allowed to send to the group may (checked against the root's
        record first, as the anycast itself stops at the first tree node it meets)."""
        check_name(name)
        check_payload(payload)
        if not allowed((await self.info(name)).publishers, principal):
            who = principal or "an unauthenticated caller"
            raise McastError("denied", f"permission denied: {who} may not send to {name!r}")
        answer, _ = await self._core.route(name, mpb.McastRouted(anycast=mpb.AnycastOp(
            name=name, payload=payload, sender=sender or self.me.address)))
        if not answer.delivered:
            raise McastError("not_found", f"group {name!r} has no members")
        return node_from_pb(self.kbr.space, answer.node)

    async def info(self, name: str) -> GroupSummary:
        check_name(name)
        answer, root = await self._core.route(name, mpb.McastRouted(info=name))
        r = answer.record
        return GroupSummary(name, self.gid(name), root, r.creator, r.created_ms, answer.seq,
                            answer.members, answer.depth, r.owner, tuple(r.publishers),
                            tuple(r.subscribers))

    async def list_groups(self, max_nodes: int = 10_000) -> list[GroupSummary]:
        """Every group in the ring: asks each node (along the successor pointers) for the
        groups it is the root of."""
        found: dict[str, GroupSummary] = {}
        node: NodeRef | None = self.me
        seen: set[int] = set()
        while node is not None and node.id not in seen and len(seen) < max_nodes:
            seen.add(node.id)
            try:
                answer = await self._core.send(node, mpb.McastDirect(roots="?"))
            except (PeerUnavailable, RemoteError):
                answer = mpb.McastDirectReply()
            for record, counter in zip(answer.records, answer.counters, strict=False):
                found[record.name] = GroupSummary(record.name, self.gid(record.name), node,
                                                  record.creator, record.created_ms, counter,
                                                  0, 0)
            node = await self._successor_of(node)
        return sorted(found.values(), key=lambda s: s.name)

    async def _successor_of(self, node: NodeRef) -> NodeRef | None:
        if node.id == self.me.id:
            _, succs = self.kbr.neighbors()
            return succs[0] if succs else None
        try:
            return (await self.kbr.route(self.kbr.space.add(node.id, 1), "", b"")).owner
        except LookupFailed:
            return None

    async def broadcast(self, payload: bytes, sender: str = "") -> int:
        """To every ring node's inbox, over the fingers (N-1 messages, O(log N) steps);
        returns how many nodes it reached."""
        check_payload(payload)
        return await self.kbr.broadcast(APP, mpb.McastDirect(
            broadcast=_inbox_payload("broadcast", payload, sender or self.me.address)
        ).SerializeToString())

    async def unicast(self, key: str, payload: bytes, sender: str = "") -> NodeRef:
        """To the inbox of the node that owns `key`."""
        check_payload(payload)
        try:
            result = await self.kbr.route(self.kbr.space.hash_key(key), APP, mpb.McastRouted(
                unicast=_inbox_payload("unicast", payload, sender or self.me.address)
            ).SerializeToString())
        except LookupFailed as exc:
            raise McastError("unavailable", str(exc)) from None
        return result.owner

    def start(self) -> None:
        self.kbr.spawn(self._maintain())

    async def _maintain(self) -> None:
        """Every parent_timeout / 3 (jittered): the tree's soft state and repairs, and each
        root's check that the group id is still its own."""
        core = self._core
        period = core.config.parent_timeout / 3
        while True:
            await core.kbr.clock.sleep(period * (0.8 + 0.4 * core.rng.random()))
            try:
                await self.maintain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("multicast maintenance failed on %s", core.me.address)

    async def maintain_once(self) -> None:
        await self._repair.maintain_once()
        await self._roots.hand_over_unowned()

    # ============================================================ KBR upcalls
    async def forward(self, key: int, payload: bytes, prev_hop: NodeRef | None,
                      next_hop: NodeRef) -> Forward:
        op = mpb.McastRouted.FromString(payload)
        handler = self._on_forward.get(op.WhichOneof("op") or "")
        if handler is None:
            return Forward(payload)
        return await handler(op, payload, next_hop)

    async def deliver(self, key: int, payload: bytes, origin: NodeRef) -> bytes:
        op = mpb.McastRouted.FromString(payload)
        kind = op.WhichOneof("op")
        try:
            handler = self._on_deliver.get(kind or "")
            if handler is not None:
                return await handler(op)
            name = getattr(op, kind).name if kind in ("join", "anycast", "range") else op.info
            root = await self._roots.root(name)
            if root is None:
                return reply(error=f"no group named {name!r}", code="not_found")
            at_root = self._on_deliver_at_root.get(kind or "")
            if at_root is not None:
                return await at_root(name, root, op)
            self._core.group(name)  # an empty request, looked up as the group named ""
        except McastError as exc:
            return reply(error=str(exc), code=exc.code)
        raise InvalidRequest("empty multicast request")

    async def direct(self, payload: bytes, sender: NodeRef) -> bytes:
        op = mpb.McastDirect.FromString(payload)
        handler = self._on_direct.get(op.WhichOneof("op") or "")
        if handler is None:
            raise InvalidRequest("empty multicast message")
        return await handler(op, sender)

    def update(self, change: NeighborChange) -> None:
        self._roots.update(change)

    async def leaving(self) -> None:
        await self._roots.leaving()

    # ------------------------------------------------------------ forward: kind -> handler
    async def _forward_join(self, op: mpb.McastRouted, payload: bytes,
                            next_hop: NodeRef) -> Forward:
        return self._repair.forward_join(op, next_hop)

    async def _forward_anycast(self, op: mpb.McastRouted, payload: bytes,
                               next_hop: NodeRef) -> Forward:
        g = self.groups.get(op.anycast.name)
        if g is not None and g.in_tree:
            node = await self._anycast_here(g, op.anycast)
            if node is not None:
                return Forward(payload, stop=True, reply=reply(
                    delivered=True, node=self._core.pb(node)))
        return Forward(payload)

    # ------------------------------------------------------------ deliver: kind -> handler
    async def _deliver_create(self, op: mpb.McastRouted) -> bytes:
        return await self._roots.on_create(op.create)

    async def _deliver_publish(self, op: mpb.McastRouted) -> bytes:
        return await self._roots.on_publish(op.publish)

    async def _deliver_destroy(self, op: mpb.McastRouted) -> bytes:
        return await self._roots.on_destroy(op.destroy)

    async def _deliver_unicast(self, op: mpb.McastRouted) -> bytes:
        self._to_inbox(op.unicast)
        return reply(delivered=True)

    async def _deliver_info(self, name: str, root: RootState, op: mpb.McastRouted) -> bytes:
        return self._roots.on_info(name, root)

    async def _deliver_join(self, name: str, root: RootState, op: mpb.McastRouted) -> bytes:
        """A JOIN that reached the root: adopt the last forwarder."""
        g = self._core.group(name)
        if op.join.HasField("child"):
            child = node_from_pb(self.kbr.space, op.join.child)
            if child.id != self.me.id:
                self._children.add_child(g, child)
        return reply(seq=root.committed, positioned=True)

    async def _deliver_range(self, name: str, root: RootState, op: mpb.McastRouted) -> bytes:
        self._core.group(name)
        return self._roots.on_range(root, op.range)

    async def _deliver_anycast(self, name: str, root: RootState, op: mpb.McastRouted) -> bytes:
        node = await self._anycast_here(self._core.group(name), op.anycast)
        return reply(delivered=node is not None,
                     node=self._core.pb(node) if node is not None else None)

    # ------------------------------------------------------------ direct: kind -> handler
    async def _direct_data(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        return self._repair.on_data(op.data, sender)

    async def _direct_refresh(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        return self._children.on_refresh(op.refresh, adopt=False)

    async def _direct_adopt(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        return self._children.on_refresh(op.adopt, adopt=True)

    async def _direct_prune(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        return self._repair.on_prune(op.prune)

    async def _direct_end(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        self.kbr.spawn(self._children.end(op.end))
        return direct_reply()

    async def _direct_range(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        return self._repair.on_range(op.range)

    async def _direct_replica(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        return await self._roots.on_replica(op.replica)

    async def _direct_anycast(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        g = self.groups.get(op.anycast.name)
        node = await self._anycast_here(g, op.anycast) if g is not None else None
        return direct_reply(delivered=node is not None,
                            node=self._core.pb(node) if node is not None else None)

    async def _direct_reparent(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        self.kbr.spawn(self._repair.reparent(op.reparent, sender))
        return direct_reply()

    async def _direct_roots(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        return self._roots.on_roots_query()

    async def _direct_broadcast(self, op: mpb.McastDirect, sender: NodeRef) -> bytes:
        self._to_inbox(op.broadcast)
        return direct_reply()

    # ============================================================ anycast
    async def _anycast_here(self, g: GroupState, op: mpb.AnycastOp) -> NodeRef | None:
        """Depth-first from this node: a local member first, then each child's subtree."""
        for member in g.members.values():
            member.on_event(Event(ANYCAST, g.name, payload=op.payload, sender=op.sender))
            return self.me
        for child in sorted(g.children.values(), key=lambda c: -c.members):
            try:
                answer = await self._core.send(child.node, mpb.McastDirect(anycast=op))
            except (PeerUnavailable, RemoteError):
                continue
            if answer.delivered:
                return node_from_pb(self.kbr.space, answer.node)
        return None

    # ============================================================ inbox (broadcast, unicast)
    def _to_inbox(self, data: bytes) -> None:
        item = mpb.InboxMessage.FromString(data)
        for listener in list(self.inbox):
            listener(item.kind, item.payload, item.sender)


def _inbox_payload(kind: str, payload: bytes, sender: str) -> bytes:
    return mpb.InboxMessage(kind=kind, payload=payload, sender=sender).SerializeToString()
