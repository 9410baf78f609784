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
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from chord.ids import between_right
from chord.kbr import Forward, Kbr, LookupFailed, NeighborChange
from chord.ports import InvalidRequest, PeerUnavailable, RemoteError
from chord.state import NodeRef
from chord.wire import node_from_pb, node_to_pb
from chordcast.v1 import mcast_pb2 as mpb
from mcast.tree import ANYCAST, ENDED, Child, Event, GroupState, Member, RootState

log = logging.getLogger(__name__)

APP = "scribe"
MAX_PAYLOAD = 1 << 20
MAX_NAME = 256
SEND_BATCH = 64
CHILD_QUEUE_LIMIT = 10_000


class McastError(Exception):
    """A refused or failed group operation; `code` is one of the CODES."""

    CODES = ("not_found", "exists", "denied", "invalid", "unavailable")

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


class _ChildLink:
    """Messages to one child go in order, in batches, one call at a time (like a stream)."""

    def __init__(self) -> None:
        self.queue: deque[mpb.GroupMessage] = deque()
        self.busy = False


def check_name(name: str) -> None:
    if not name or len(name.encode("utf-8")) > MAX_NAME:
        raise McastError("invalid", f"a group name must be 1 to {MAX_NAME} bytes")


def check_payload(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD:
        raise McastError(
            "invalid", f"payload of {len(payload)} bytes exceeds the 1 MiB limit ({MAX_PAYLOAD})")


def _reply(**fields: object) -> bytes:
    return mpb.McastReply(**fields).SerializeToString()  # type: ignore[arg-type]


def _direct_reply(**fields: object) -> bytes:
    return mpb.McastDirectReply(**fields).SerializeToString()  # type: ignore[arg-type]


class Scribe:
    name = APP

    def __init__(self, kbr: Kbr, config: ScribeConfig | None = None,
                 rng: random.Random | None = None) -> None:
        self.kbr = kbr
        self.config = config or ScribeConfig()
        self.rng = rng or random.Random()
        self.groups: dict[str, GroupState] = {}
        self.roots: dict[str, RootState] = {}
        self.replicas: dict[str, RootState] = {}
        self.inbox: list[Callable[[str, bytes, str], None]] = []
        self._links: dict[tuple[str, str], _ChildLink] = {}
        self._next_member = 0
        self._next_message = 0
        kbr.register(self)

    # ============================================================ helpers
    @property
    def me(self) -> NodeRef:
        return self.kbr.me

    def gid(self, name: str) -> int:
        return self.kbr.space.hash_key(name)

    def _pb(self, node: NodeRef) -> object:
        return node_to_pb(self.kbr.space, node)

    def _closeness(self, node_id: int, gid: int) -> int:
        """Routing progress toward the group id: smaller is nearer (the root is nearest)."""
        return self.kbr.space.distance(node_id, gid)

    def _now_ms(self) -> int:
        return int(self.kbr.clock.wall() * 1000)

    async def _route(self, name: str, op: mpb.McastRouted) -> tuple[mpb.McastReply, NodeRef]:
        try:
            result = await self.kbr.route(self.gid(name), APP, op.SerializeToString())
        except LookupFailed as exc:
            raise McastError("unavailable", f"cannot reach the root of {name!r}: {exc}") from None
        reply = mpb.McastReply.FromString(result.payload)
        if reply.error:
            raise McastError(reply.code or "invalid", reply.error)
        return reply, result.owner

    async def _send(self, node: NodeRef, op: mpb.McastDirect) -> mpb.McastDirectReply:
        return mpb.McastDirectReply.FromString(
            await self.kbr.send(node, APP, op.SerializeToString()))

    # ============================================================ the API (local operations)
    async def create(self, name: str, creator: str = "") -> tuple[str, NodeRef]:
        """Create a group; returns the token that destroying it needs, and its root."""
        check_name(name)
        reply, root = await self._route(name, mpb.McastRouted(create=mpb.CreateOp(
            name=name, creator=creator or self.me.address, archive=self.config.archive)))
        return reply.token, root

    async def join(self, name: str, on_event: Callable[[Event], None], member: str = "",
                   resume_after: int | None = None) -> tuple[Member, int]:
        """Attach a member here and join the tree if this node is not in it yet. Returns the
        member and the sequence number delivery starts after."""
        check_name(name)
        # A clear "no such group" before any tree state is made; and where "from now on"
        # starts: after the root's current sequence number.
        now_at = (await self.info(name)).last_seq
        self._next_member += 1
        m = Member(self._next_member, member or f"member-{self._next_member}", on_event,
                   cursor=resume_after)
        g = self.groups.get(name)
        if g is None:
            g = self._group(name)
        g.members[m.id] = m
        if not g.in_tree:
            try:
                await self._join_tree(g, fallback=now_at)
            except McastError:
                g.members.pop(m.id, None)
                self._maybe_drop(g)
                raise
        if m.cursor is None:
            m.cursor = now_at
        await self._backfill(g, m)
        return m, m.cursor

    async def leave(self, name: str, member: Member) -> None:
        g = self.groups.get(name)
        if g is None:
            return
        g.members.pop(member.id, None)
        await self._prune_if_idle(g)

    async def send(self, name: str, payload: bytes, sender: str = "") -> int:
        """Multicast: to the root for a sequence number, then down the tree."""
        check_name(name)
        check_payload(payload)
        self._next_message += 1
        message_id = f"{self.me.address}/{self._next_message}/{self.rng.getrandbits(32):x}"
        op = mpb.McastRouted(publish=mpb.PublishOp(name=name, payload=payload,
                                                   sender=sender or self.me.address,
                                                   message_id=message_id))
        for attempt in range(self.config.send_retries):
            try:
                reply, _ = await self._route(name, op)
                return reply.seq
            except McastError as exc:
                if exc.code != "unavailable" or attempt + 1 == self.config.send_retries:
                    raise
                await self.kbr.clock.sleep(0.2 * (attempt + 1))  # the ring is repairing
        raise AssertionError("unreachable")

    async def destroy(self, name: str, token: str) -> None:
        check_name(name)
        await self._route(name, mpb.McastRouted(destroy=mpb.DestroyOp(name=name, token=token)))

    async def anycast(self, name: str, payload: bytes, sender: str = "") -> NodeRef:
        """Deliver to one member: the nearest in the tree to where the request meets it."""
        check_name(name)
        check_payload(payload)
        reply, _ = await self._route(name, mpb.McastRouted(anycast=mpb.AnycastOp(
            name=name, payload=payload, sender=sender or self.me.address)))
        if not reply.delivered:
            raise McastError("not_found", f"group {name!r} has no members")
        return node_from_pb(self.kbr.space, reply.node)

    async def info(self, name: str) -> GroupSummary:
        check_name(name)
        reply, root = await self._route(name, mpb.McastRouted(info=name))
        return GroupSummary(name, self.gid(name), root, reply.record.creator,
                            reply.record.created_ms, reply.seq, reply.members, reply.depth)

    async def list_groups(self, max_nodes: int = 10_000) -> list[GroupSummary]:
        """Every group in the ring: asks each node (along the successor pointers) for the
        groups it is the root of."""
        found: dict[str, GroupSummary] = {}
        node, seen = self.me, set()
        while node.id not in seen and len(seen) < max_nodes:
            seen.add(node.id)
            try:
                reply = await self._send(node, mpb.McastDirect(roots="?"))
            except (PeerUnavailable, RemoteError):
                reply = mpb.McastDirectReply()
            for record, counter in zip(reply.records, reply.counters, strict=False):
                found[record.name] = GroupSummary(record.name, self.gid(record.name), node,
                                                  record.creator, record.created_ms, counter,
                                                  0, 0)
            node = await self._successor_of(node)
            if node is None:
                break
        return sorted(found.values(), key=lambda s: s.name)

    async def _successor_of(self, node: NodeRef) -> NodeRef | None:
        if node.id == self.me.id:
            _, succs = self.kbr.neighbors()
            return succs[0] if succs else None
        try:
            return (await self.kbr.route(self.kbr.space.add(node.id, 1), "", b"")).owner
        except LookupFailed:
            return None

    async def broadcast(self, payload: bytes, sender: str = "") -> None:
        """To every ring node's inbox, over the fingers (N-1 messages, O(log N) steps)."""
        check_payload(payload)
        await self.kbr.broadcast(APP, mpb.McastDirect(
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

    # ============================================================ tree building
    def _group(self, name: str) -> GroupState:
        g = self.groups.get(name)
        if g is None:
            g = GroupState(name, self.gid(name), recent_limit=self.config.recent)
            g.last_heard = self.kbr.clock.now()
            self.groups[name] = g
        return g

    async def _join_tree(self, g: GroupState, fallback: int = 0) -> int:
        """Route a JOIN from here; the forward upcalls on the way build the branch. Our
        stream starts at the stopping node's position (or `fallback` if it has none yet)."""
        g.rejoining = True
        g.hold_base = g.last is None
        try:
            reply, _ = await self._route(g.name, mpb.McastRouted(join=mpb.JoinOp(name=g.name)))
        finally:
            g.rejoining = False
            g.hold_base = False
        if g.last is None and not g.is_root:
            self._position(g, reply.seq if reply.positioned else fallback)
        g.last_heard = self.kbr.clock.now()
        return reply.seq

    def _position(self, g: GroupState, seq: int) -> None:
        """Our stream reaches us from `seq` on: deliver what waited, repair what is missing."""
        g.last = seq
        for s in [s for s in g.ahead if s <= seq]:
            del g.ahead[s]
        self._disseminate(g, g.accept([]))
        if g.missing() is not None:
            self.kbr.spawn(self._repair_gap(g))

    def _add_child(self, g: GroupState, child: NodeRef) -> None:
        """Adopt a child. Over the bound, Scribe's bottleneck remover: the child farthest
        from the group id is handed to the nearest one (parents stay nearer the group id
        than their children, so no cycle can form); it stays ours until it has moved."""
        expires = self.kbr.clock.now() + 3 * self.config.parent_timeout
        existing = g.children.get(child.address)
        if existing is not None:
            existing.expires = expires
            return
        # A new branch holds at least one member; its refreshes report the real count.
        g.children[child.address] = Child(child, expires, members=1)
        if len(g.children) > self.config.max_children:
            by_distance = sorted(g.children.values(),
                                 key=lambda c: self._closeness(c.node.id, g.group_id))
            nearest, farthest = by_distance[0], by_distance[-1]
            if nearest is not farthest:
                self.kbr.spawn(self._send_quietly(farthest.node, mpb.McastDirect(
                    reparent=mpb.ReparentOp(name=g.name, parent=self._pb(nearest.node)))))

    async def _send_quietly(self, node: NodeRef, op: mpb.McastDirect) -> None:
        try:
            await self._send(node, op)
        except (PeerUnavailable, RemoteError):
            pass

    async def _prune_if_idle(self, g: GroupState) -> None:
        if not g.idle or g.rejoining:
            return
        self.groups.pop(g.name, None)
        parent, g.parent = g.parent, None
        if parent is not None:
            await self._send_quietly(parent, mpb.McastDirect(
                prune=mpb.RefreshOp(name=g.name, child=self._pb(self.me))))

    def _maybe_drop(self, g: GroupState) -> None:
        if g.idle and not g.in_tree:
            self.groups.pop(g.name, None)

    # ============================================================ dissemination
    def _disseminate(self, g: GroupState, messages: list[mpb.GroupMessage]) -> None:
        """Deliver accepted (in-order) messages to local members and queue them to children."""
        if not messages:
            return
        for member in list(g.members.values()):
            for m in messages:
                member.offer(g.name, m)
        if g.members:
            obs, now = self.kbr.observer, self.kbr.clock.wall()
            obs.mcast("delivered", len(messages) * len(g.members))
            for m in messages:
                obs.mcast_latency(max(0.0, now - m.ts_ms / 1000))
        for child in list(g.children.values()):
            self._queue(g, child.node, messages)

    def _queue(self, g: GroupState, child: NodeRef, messages: list[mpb.GroupMessage]) -> None:
        key = (g.name, child.address)
        link = self._links.setdefault(key, _ChildLink())
        link.queue.extend(messages)
        if len(link.queue) > CHILD_QUEUE_LIMIT:
            # A child this far behind is dropped; it re-joins and repairs from the archive.
            self._drop_child(g, child.address)
            return
        if not link.busy:
            link.busy = True
            self.kbr.spawn(self._drain(g.name, child, link))

    async def _drain(self, name: str, child: NodeRef, link: _ChildLink) -> None:
        try:
            while link.queue:
                batch = [link.queue.popleft() for _ in range(min(SEND_BATCH, len(link.queue)))]
                try:
                    reply = await self._send(child, mpb.McastDirect(
                        data=mpb.DataOp(name=name, messages=batch)))
                except (PeerUnavailable, RemoteError):
                    reply = mpb.McastDirectReply(unknown=True)
                if reply.unknown:
                    g = self.groups.get(name)
                    if g is not None:
                        self._drop_child(g, child.address)
                    return
                self.kbr.observer.mcast("forwarded", len(batch))
        finally:
            link.busy = False
            if not link.queue:
                self._links.pop((name, child.address), None)

    def _drop_child(self, g: GroupState, address: str) -> None:
        g.children.pop(address, None)
        link = self._links.pop((g.name, address), None)
        if link is not None:
            link.queue.clear()

    async def _backfill_members(self, g: GroupState) -> None:
        for m in list(g.members.values()):
            if m.pending or (g.last is not None and m.cursor is not None and m.cursor < g.last):
                await self._backfill(g, m)

    async def _backfill(self, g: GroupState, m: Member) -> None:
        """What a member lacks (it resumed, or joined where the stream had another start):
        from our buffer, else the root's archive; what the archive lost is a gap event."""
        if m.cursor is None:
            return
        upto = max([g.last or 0, *(s - 1 for s in m.pending)])
        if m.cursor >= upto:
            return
        first, last = m.cursor + 1, upto
        have = g.from_recent(first, last)
        if have and have[0].seq == first:
            for msg in have:
                m.offer(g.name, msg)
            return
        reply, _ = await self._route(g.name, mpb.McastRouted(range=mpb.RangeOp(
            name=g.name, from_seq=first, to_seq=last)))
        if reply.first_available > first:
            m.gap(g.name, reply.first_available - 1)
        for msg in [*reply.messages, *have]:
            m.offer(g.name, msg)

    async def _repair_gap(self, g: GroupState, upto: int = 0) -> None:
        """Fill the first hole in our stream (or, with `upto`, everything up to there that we
        lack): ask the parent, then the root; what the root's archive no longer has is lost
        for good, and members are told."""
        hole = g.missing()
        if hole is None and g.last is not None and upto > g.last:
            hole = (g.last + 1, upto)
        if hole is None:
            return
        first, last = hole
        messages: list[mpb.GroupMessage] = []
        if g.parent is not None:
            try:
                reply = await self._send(g.parent, mpb.McastDirect(range=mpb.RangeOp(
                    name=g.name, from_seq=first, to_seq=last)))
                messages = list(reply.messages)
            except (PeerUnavailable, RemoteError):
                pass
        if not messages or messages[0].seq != first:
            try:
                routed, _ = await self._route(g.name, mpb.McastRouted(range=mpb.RangeOp(
                    name=g.name, from_seq=first, to_seq=last)))
            except McastError:
                return
            messages = list(routed.messages)
            if routed.first_available > first:
                lost_upto = min(routed.first_available - 1, last)
                for member in g.members.values():
                    member.gap(g.name, lost_upto)
                self.kbr.observer.mcast("gap_lost")
                self._disseminate(g, g.skip_to(lost_upto))
        self.kbr.observer.mcast("gap_repaired")
        self._disseminate(g, g.accept(messages))

    # ============================================================ root side
    async def _root(self, name: str) -> RootState | None:
        """Our root state for the group, promoting a replica (ours or a successor's) when the
        group id has become ours."""
        root = self.roots.get(name)
        if root is not None:
            return root
        replica = self.replicas.get(name)
        if replica is None:
            replica = await self._fetch_replica(name)
        if replica is None:
            return None
        self.replicas.pop(name, None)
        self.roots[name] = replica
        g = self._group(name)
        g.is_root, g.parent = True, None
        if g.last is None or g.last < replica.counter:
            g.recent.extend(m for m in replica.archive if g.last is None or m.seq > g.last)
            g.last = replica.counter
        log.info("%s is now the root of %r at seq %d", self.me.address, name, replica.counter)
        await self._replicate(replica.to_replica())
        return replica

    async def _fetch_replica(self, name: str) -> RootState | None:
        best: mpb.ReplicaOp | None = None
        ask = mpb.McastDirect(replica=mpb.ReplicaOp(name=name))  # an empty op asks for it
        for node in self.kbr.replica_set(self.config.replicas):
            try:
                reply = await self._send(node, ask)
            except (PeerUnavailable, RemoteError):
                continue
            for rec, counter in zip(reply.records, reply.counters, strict=False):
                if rec.name == name and (best is None or counter > best.counter):
                    best = mpb.ReplicaOp(name=name, record=rec, counter=counter,
                                         messages=reply.messages)
        return RootState.from_replica(best) if best is not None else None

    async def _replicate(self, op: mpb.ReplicaOp) -> int:
        """Copy root state to the replica set; returns how many acknowledged."""
        msg = mpb.McastDirect(replica=op)
        results = await asyncio.gather(
            *(self._send(n, msg) for n in self.kbr.replica_set(self.config.replicas)),
            return_exceptions=True)
        return sum(1 for r in results if not isinstance(r, BaseException))

    async def _on_create(self, op: mpb.CreateOp) -> bytes:
        check_name(op.name)
        if await self._root(op.name) is not None:
            return _reply(error=f"group {op.name!r} already exists", code="exists")
        token = f"{self.rng.getrandbits(128):032x}"
        record = mpb.GroupRecord(name=op.name, creator=op.creator, created_ms=self._now_ms(),
                                 token_hash=hashlib.sha256(token.encode()).digest(),
                                 archive=op.archive or self.config.archive)
        root = RootState(record)
        self.roots[op.name] = root
        g = self._group(op.name)
        g.is_root, g.parent, g.last = True, None, 0
        await self._replicate(root.to_replica())
        return _reply(token=token, root=self._pb(self.me))

    async def _on_publish(self, op: mpb.PublishOp) -> bytes:
        root = await self._root(op.name)
        if root is None:
            return _reply(error=f"no group named {op.name!r}", code="not_found")
        check_payload(op.payload)
        m, fresh = root.stamp(op.payload, op.sender, op.message_id, self._now_ms())
        if fresh:
            copies = mpb.ReplicaOp(name=op.name, record=root.record, counter=root.counter,
                                   messages=[m])
            replicas = self.kbr.replica_set(self.config.replicas)
            if replicas and await self._replicate(copies) == 0:
                # Nobody holds a copy: sending it down would risk a duplicate number later.
                root.counter -= 1
                root.archive.pop()
                root.ids.pop(m.message_id, None)
                return _reply(error="no replica acknowledged; retry", code="unavailable")
            g = self._group(op.name)
            self.kbr.observer.mcast("stamped")
            self._disseminate(g, g.accept([m]))
        return _reply(seq=m.seq)

    async def _on_destroy(self, op: mpb.DestroyOp) -> bytes:
        root = await self._root(op.name)
        if root is None:
            return _reply(error=f"no group named {op.name!r}", code="not_found")
        if hashlib.sha256(op.token.encode()).digest() != root.record.token_hash:
            return _reply(error="only the creator (with its token) may destroy the group",
                          code="denied")
        del self.roots[op.name]
        await self._replicate(mpb.ReplicaOp(name=op.name, drop=True))
        await self._end(op.name)
        return _reply()

    async def _end(self, name: str) -> None:
        g = self.groups.pop(name, None)
        if g is None:
            return
        for member in g.members.values():
            member.on_event(Event(ENDED, name))
        children = list(g.children.values())
        for child in children:
            self._links.pop((name, child.node.address), None)
        await asyncio.gather(*(self._send_quietly(c.node, mpb.McastDirect(end=name))
                               for c in children))

    def _on_info(self, name: str, root: RootState) -> bytes:
        g = self.groups.get(name)
        members = g.subtree_members() if g else 0
        depth = g.height() - 1 if g else 0
        return _reply(record=root.record, seq=root.counter, members=members, depth=depth,
                      root=self._pb(self.me))

    async def _anycast_here(self, g: GroupState, op: mpb.AnycastOp) -> NodeRef | None:
        """Depth-first from this node: a local member first, then each child's subtree."""
        for member in g.members.values():
            member.on_event(Event(ANYCAST, g.name, payload=op.payload, sender=op.sender))
            return self.me
        for child in sorted(g.children.values(), key=lambda c: -c.members):
            try:
                reply = await self._send(child.node, mpb.McastDirect(anycast=op))
            except (PeerUnavailable, RemoteError):
                continue
            if reply.delivered:
                return node_from_pb(self.kbr.space, reply.node)
        return None

    # ============================================================ KBR upcalls
    async def forward(self, key: int, payload: bytes, prev_hop: NodeRef | None,
                      next_hop: NodeRef) -> Forward:
        op = mpb.McastRouted.FromString(payload)
        kind = op.WhichOneof("op")
        if kind == "join":
            return self._forward_join(op, next_hop)
        if kind == "anycast":
            g = self.groups.get(op.anycast.name)
            if g is not None and g.in_tree:
                node = await self._anycast_here(g, op.anycast)
                if node is not None:
                    return Forward(payload, stop=True, reply=_reply(
                        delivered=True, node=self._pb(node)))
        return Forward(payload)

    def _forward_join(self, op: mpb.McastRouted, next_hop: NodeRef) -> Forward:
        join = op.join
        child = node_from_pb(self.kbr.space, join.child) if join.HasField("child") else None
        g = self.groups.get(join.name)
        if child is not None and child.id != self.me.id and g is not None and g.in_tree \
                and not g.rejoining:
            self._add_child(g, child)  # already in the tree: the JOIN stops here
            return Forward(op.SerializeToString(), stop=True, reply=_reply(
                seq=g.last or 0, positioned=g.last is not None))
        g = self._group(join.name)
        if child is not None and child.id != self.me.id:
            self._add_child(g, child)
        g.parent = next_hop  # set again if this next hop fails and another is tried
        g.last_heard = self.kbr.clock.now()
        join.child.CopyFrom(self._pb(self.me))
        return Forward(op.SerializeToString())

    async def deliver(self, key: int, payload: bytes, origin: NodeRef) -> bytes:
        op = mpb.McastRouted.FromString(payload)
        kind = op.WhichOneof("op")
        try:
            if kind == "create":
                return await self._on_create(op.create)
            if kind == "publish":
                return await self._on_publish(op.publish)
            if kind == "destroy":
                return await self._on_destroy(op.destroy)
            if kind == "unicast":
                self._to_inbox(op.unicast)
                return _reply(delivered=True)
            name = getattr(op, kind).name if kind in ("join", "anycast", "range") else op.info
            root = await self._root(name)
            if root is None:
                return _reply(error=f"no group named {name!r}", code="not_found")
            if kind == "info":
                return self._on_info(name, root)
            g = self._group(name)
            if kind == "join":
                if op.join.HasField("child"):
                    child = node_from_pb(self.kbr.space, op.join.child)
                    if child.id != self.me.id:
                        self._add_child(g, child)
                return _reply(seq=root.counter, positioned=True)
            if kind == "range":
                return _reply(messages=root.range(op.range.from_seq, op.range.to_seq),
                              first_available=root.first_available(), seq=root.counter)
            if kind == "anycast":
                node = await self._anycast_here(g, op.anycast)
                return _reply(delivered=node is not None,
                              node=self._pb(node) if node is not None else None)
        except McastError as exc:
            return _reply(error=str(exc), code=exc.code)
        raise InvalidRequest("empty multicast request")

    async def direct(self, payload: bytes, sender: NodeRef) -> bytes:
        op = mpb.McastDirect.FromString(payload)
        kind = op.WhichOneof("op")
        if kind == "data":
            return self._on_data(op.data, sender)
        if kind in ("refresh", "adopt"):
            r = op.refresh if kind == "refresh" else op.adopt
            g = self.groups.get(r.name)
            if g is None or not g.in_tree:
                return _direct_reply(unknown=True)
            child = node_from_pb(self.kbr.space, r.child)
            if kind == "adopt" or child.address in g.children:
                self._add_child(g, child)
            else:
                return _direct_reply(unknown=True)  # not our child (any more): re-join
            entry = g.children.get(child.address)
            if entry is not None:
                entry.members, entry.height = r.members, r.height
            return _direct_reply(last_seq=g.last or 0, positioned=g.last is not None)
        if kind == "prune":
            g = self.groups.get(op.prune.name)
            if g is not None:
                self._drop_child(g, op.prune.child.address)
                self.kbr.spawn(self._prune_if_idle(g))
            return _direct_reply()
        if kind == "end":
            self.kbr.spawn(self._end(op.end))
            return _direct_reply()
        if kind == "range":
            g = self.groups.get(op.range.name)
            if g is None:
                return _direct_reply(unknown=True)
            return _direct_reply(messages=g.from_recent(op.range.from_seq, op.range.to_seq))
        if kind == "replica":
            return self._on_replica(op.replica)
        if kind == "anycast":
            g = self.groups.get(op.anycast.name)
            node = await self._anycast_here(g, op.anycast) if g is not None else None
            return _direct_reply(delivered=node is not None,
                                 node=self._pb(node) if node is not None else None)
        if kind == "reparent":
            self.kbr.spawn(self._reparent(op.reparent, sender))
            return _direct_reply()
        if kind == "roots":
            return _direct_reply(records=[r.record for r in self.roots.values()],
                                 counters=[r.counter for r in self.roots.values()])
        if kind == "broadcast":
            self._to_inbox(op.broadcast)
            return _direct_reply()
        raise InvalidRequest("empty multicast message")

    def _on_data(self, data: mpb.DataOp, sender: NodeRef) -> bytes:
        g = self.groups.get(data.name)
        if g is None or g.parent is None or g.parent.address != sender.address:
            return _direct_reply(unknown=True)  # not (or no longer) its child
        g.last_heard = self.kbr.clock.now()
        self._disseminate(g, g.accept(list(data.messages)))
        if g.missing() is not None and len(g.ahead) >= SEND_BATCH:
            self.kbr.spawn(self._repair_gap(g))
        return _direct_reply(last_seq=g.last or 0)

    def _on_replica(self, op: mpb.ReplicaOp) -> bytes:
        if op.drop:
            self.replicas.pop(op.name, None)
            return _direct_reply()
        if not op.HasField("record"):  # a new root asking for our copy
            copy = self.replicas.get(op.name) or self.roots.get(op.name)
            if copy is None:
                return _direct_reply()
            return _direct_reply(records=[copy.record], counters=[copy.counter],
                                 messages=list(copy.archive))
        if op.name in self.roots:
            return _direct_reply()  # we are the root ourselves (a stale copy arrives late)
        existing = self.replicas.get(op.name)
        if existing is None:
            self.replicas[op.name] = RootState.from_replica(op)
        else:
            for m in op.messages:
                existing.add(m)
            existing.counter = max(existing.counter, op.counter)
        return _direct_reply()

    async def _reparent(self, op: mpb.ReparentOp, old_parent: NodeRef) -> None:
        g = self.groups.get(op.name)
        if g is None or g.parent is None or g.parent.address != old_parent.address:
            return
        target = node_from_pb(self.kbr.space, op.parent)
        try:
            reply = await self._send(target, mpb.McastDirect(adopt=mpb.RefreshOp(
                name=op.name, child=self._pb(self.me), members=g.subtree_members(),
                height=g.height())))
        except (PeerUnavailable, RemoteError):
            return
        if reply.unknown:
            return
        g.parent = target
        await self._send_quietly(old_parent, mpb.McastDirect(
            prune=mpb.RefreshOp(name=op.name, child=self._pb(self.me))))

    def update(self, change: NeighborChange) -> None:
        me = self.me.id
        old_pred, new_pred = change.old_predecessor, change.new_predecessor
        if new_pred is not None and old_pred is not None and between_right(
                new_pred.id, old_pred.id, me) and new_pred.id != me:
            for name in [n for n, r in self.roots.items()
                         if between_right(self.gid(n), old_pred.id, new_pred.id)]:
                self.kbr.spawn(self._hand_over(name, new_pred))
        old = {n.id for n in change.old_successors[: self.config.replicas]}
        fresh = [n for n in change.new_successors[: self.config.replicas] if n.id not in old]
        for node in fresh:
            for root in list(self.roots.values()):
                self.kbr.spawn(self._send_quietly(node, mpb.McastDirect(
                    replica=root.to_replica())))

    async def _hand_over(self, name: str, new_root: NodeRef) -> None:
        """A node joined in front of us and owns the group id now: it becomes the root (from
        our state), and we become its child."""
        root = self.roots.get(name)
        if root is None:
            return
        try:
            await self._send(new_root, mpb.McastDirect(replica=root.to_replica()))
        except (PeerUnavailable, RemoteError):
            return
        self.roots.pop(name, None)
        self.replicas[name] = root
        g = self._group(name)
        g.is_root = False
        g.parent = new_root
        try:
            # Any routed request makes the new owner promote its copy; then adopt us.
            await self._route(name, mpb.McastRouted(info=name))
            await self._send(new_root, mpb.McastDirect(adopt=mpb.RefreshOp(
                name=name, child=self._pb(self.me), members=g.subtree_members(),
                height=g.height())))
        except (McastError, PeerUnavailable, RemoteError):
            g.parent = None  # maintenance re-joins

    async def leaving(self) -> None:
        """Hand root state to the successor; members and children re-join on their own."""
        _, succs = self.kbr.neighbors()
        if succs:
            for root in list(self.roots.values()):
                await self._send_quietly(succs[0], mpb.McastDirect(replica=root.to_replica()))

    # ============================================================ maintenance
    def start(self) -> None:
        self.kbr.spawn(self._maintain())

    async def _maintain(self) -> None:
        period = self.config.parent_timeout / 3
        while True:
            await self.kbr.clock.sleep(period * (0.8 + 0.4 * self.rng.random()))
            try:
                await self.maintain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("multicast maintenance failed on %s", self.me.address)

    async def maintain_once(self) -> None:
        now = self.kbr.clock.now()
        jobs = []
        for g in list(self.groups.values()):
            for address in [a for a, c in g.children.items() if c.expires < now]:
                self._drop_child(g, address)
            if g.idle:
                jobs.append(self._prune_if_idle(g))
            elif g.is_root:
                if g.missing() is not None:
                    jobs.append(self._repair_gap(g))
            elif not g.rejoining:
                jobs.append(self._refresh(g))
        await asyncio.gather(*jobs)

    async def _refresh(self, g: GroupState) -> None:
        """The child's half of the soft state: refresh our entry at the parent; its answer is
        the parent's heartbeat. No answer, or "not my child": re-join."""
        if g.parent is not None:
            try:
                reply = await self._send(g.parent, mpb.McastDirect(refresh=mpb.RefreshOp(
                    name=g.name, child=self._pb(self.me), members=g.subtree_members(),
                    height=g.height())))
            except (PeerUnavailable, RemoteError):
                reply = mpb.McastDirectReply(unknown=True)
            if not reply.unknown:
                g.last_heard = self.kbr.clock.now()
                if g.last is None and reply.positioned:
                    self._position(g, reply.last_seq)  # a fresh forwarder learns where it is
                elif reply.positioned:
                    await self._repair_gap(g, upto=reply.last_seq)  # the parent may be ahead
                await self._backfill_members(g)
                return
        await self._rejoin(g)

    async def _rejoin(self, g: GroupState) -> None:
        g.parent = None
        self.kbr.observer.mcast("tree_repair")
        try:
            seq = await self._join_tree(g)
        except McastError as exc:
            if exc.code == "not_found":
                await self._end(g.name)  # the group is gone
            return
        # Catch up at once with what the tree sent while we were cut off, rather than at the
        # next refresh: the node that took our JOIN told us how far it is.
        await self._repair_gap(g, upto=seq)

    # ============================================================ inbox (broadcast, unicast)
    def _to_inbox(self, data: bytes) -> None:
        item = mpb.InboxMessage.FromString(data)
        for listener in list(self.inbox):
            listener(item.kind, item.payload, item.sender)


def _inbox_payload(kind: str, payload: bytes, sender: str) -> bytes:
    return mpb.InboxMessage(kind=kind, payload=payload, sender=sender).SerializeToString()
