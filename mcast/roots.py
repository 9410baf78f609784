"""The root side of a group: its record, counter and archive at the root and as copies on the
replica set (the root's successors). Create, publish, destroy and info at the root; promoting
a replica when the group id has become ours; the replica messages; handing a group over to a
node that joined in front of us; re-replicating when the successors change; leaving."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from chord.ids import between_right
from chord.kbr import NeighborChange
from chord.ports import PeerUnavailable, RemoteError
from chord.state import NodeRef
from chordcast.v1 import mcast_pb2 as mpb
from mcast.children import Children
from mcast.core import McastError, ScribeCore, check_name, check_payload, direct_reply, reply
from mcast.tree import RootState

log = logging.getLogger(__name__)


class Roots:
    def __init__(self, core: ScribeCore, children: Children) -> None:
        self.core = core
        self.children = children

    # ------------------------------------------------------------ promotion and copies
    async def root(self, name: str) -> RootState | None:
        """Our root state for the group, promoting a replica (ours or a successor's) when the
        group id has become ours."""
        core = self.core
        root = core.roots.get(name)
        if root is not None:
            return root
        replica = core.replicas.get(name)
        if replica is None:
            replica = await self._fetch_replica(name)
        if replica is None:
            return None
        core.replicas.pop(name, None)
        core.roots[name] = replica
        g = core.group(name)
        g.is_root, g.parent = True, None
        if g.last is None or g.last < replica.counter:
            g.recent.extend(m for m in replica.archive if g.last is None or m.seq > g.last)
            g.last = replica.counter
        log.info("%s is now the root of %r at seq %d", core.me.address, name, replica.counter)
        await self._replicate(replica.to_replica())
        return replica

    async def _fetch_replica(self, name: str) -> RootState | None:
        best: mpb.ReplicaOp | None = None
        ask = mpb.McastDirect(replica=mpb.ReplicaOp(name=name))  # an empty op asks for it
        for node in self.core.kbr.replica_set(self.core.config.replicas):
            try:
                answer = await self.core.send(node, ask)
            except (PeerUnavailable, RemoteError):
                continue
            for rec, counter in zip(answer.records, answer.counters, strict=False):
                if rec.name == name and (best is None or counter > best.counter):
                    best = mpb.ReplicaOp(name=name, record=rec, counter=counter,
                                         messages=answer.messages)
        return RootState.from_replica(best) if best is not None else None

    async def _replicate(self, op: mpb.ReplicaOp) -> int:
        """Copy root state to the replica set; returns how many acknowledged."""
        core = self.core
        msg = mpb.McastDirect(replica=op)
        results = await asyncio.gather(
            *(core.send(n, msg) for n in core.kbr.replica_set(core.config.replicas)),
            return_exceptions=True)
        return sum(1 for r in results if not isinstance(r, BaseException))

    def on_replica(self, op: mpb.ReplicaOp) -> bytes:
        """A copy from the root (or its drop), or a new root asking for our copy."""
        core = self.core
        if op.drop:
            core.replicas.pop(op.name, None)
            return direct_reply()
        if not op.HasField("record"):  # a new root asking for our copy
            copy = core.replicas.get(op.name) or core.roots.get(op.name)
            if copy is None:
                return direct_reply()
            return direct_reply(records=[copy.record], counters=[copy.counter],
                                messages=list(copy.archive))
        if op.name in core.roots:
            return direct_reply()  # we are the root ourselves (a stale copy arrives late)
        existing = core.replicas.get(op.name)
        if existing is None:
            core.replicas[op.name] = RootState.from_replica(op)
        else:
            for m in op.messages:
                existing.add(m)
            existing.counter = max(existing.counter, op.counter)
        return direct_reply()

    def on_roots_query(self) -> bytes:
        """Which groups we are the root of (for listing every group in the ring)."""
        roots = self.core.roots
        return direct_reply(records=[r.record for r in roots.values()],
                            counters=[r.counter for r in roots.values()])

    # ------------------------------------------------------------ requests at the root
    async def on_create(self, op: mpb.CreateOp) -> bytes:
        core = self.core
        check_name(op.name)
        if await self.root(op.name) is not None:
            return reply(error=f"group {op.name!r} already exists", code="exists")
        token = f"{core.rng.getrandbits(128):032x}"
        record = mpb.GroupRecord(name=op.name, creator=op.creator, created_ms=core.now_ms(),
                                 token_hash=hashlib.sha256(token.encode()).digest(),
                                 archive=op.archive or core.config.archive)
        root = RootState(record)
        core.roots[op.name] = root
        g = core.group(op.name)
        g.is_root, g.parent, g.last = True, None, 0
        await self._replicate(root.to_replica())
        return reply(token=token, root=core.pb(core.me))

    async def on_publish(self, op: mpb.PublishOp) -> bytes:
        core = self.core
        root = await self.root(op.name)
        if root is None:
            return reply(error=f"no group named {op.name!r}", code="not_found")
        check_payload(op.payload)
        m, fresh = root.stamp(op.payload, op.sender, op.message_id, core.now_ms())
        if fresh:
            copies = mpb.ReplicaOp(name=op.name, record=root.record, counter=root.counter,
                                   messages=[m])
            replicas = core.kbr.replica_set(core.config.replicas)
            if replicas and await self._replicate(copies) == 0:
                # Nobody holds a copy: sending it down would risk a duplicate number later.
                root.counter -= 1
                root.archive.pop()
                root.ids.pop(m.message_id, None)
                return reply(error="no replica acknowledged; retry", code="unavailable")
            g = core.group(op.name)
            core.kbr.observer.mcast("stamped")
            self.children.disseminate(g, g.accept([m]))
        return reply(seq=m.seq)

    async def on_destroy(self, op: mpb.DestroyOp) -> bytes:
        root = await self.root(op.name)
        if root is None:
            return reply(error=f"no group named {op.name!r}", code="not_found")
        if hashlib.sha256(op.token.encode()).digest() != root.record.token_hash:
            return reply(error="only the creator (with its token) may destroy the group",
                         code="denied")
        del self.core.roots[op.name]
        await self._replicate(mpb.ReplicaOp(name=op.name, drop=True))
        await self.children.end(op.name)
        return reply()

    def on_info(self, name: str, root: RootState) -> bytes:
        g = self.core.groups.get(name)
        members = g.subtree_members() if g else 0
        depth = g.height() - 1 if g else 0
        return reply(record=root.record, seq=root.counter, members=members, depth=depth,
                     root=self.core.pb(self.core.me))

    def on_range(self, root: RootState, op: mpb.RangeOp) -> bytes:
        """Messages from the archive, for a node repairing a gap or a member resuming."""
        return reply(messages=root.range(op.from_seq, op.to_seq),
                     first_available=root.first_available(), seq=root.counter)

    # ------------------------------------------------------------ ring changes
    def update(self, change: NeighborChange) -> None:
        """A node joined in front of us and owns some of our groups now: hand them over.
        New successors in the replica set: give them a copy of every group we are root of."""
        core = self.core
        me = core.me.id
        old_pred, new_pred = change.old_predecessor, change.new_predecessor
        if new_pred is not None and old_pred is not None and between_right(
                new_pred.id, old_pred.id, me) and new_pred.id != me:
            for name in [n for n, r in core.roots.items()
                         if between_right(core.gid(n), old_pred.id, new_pred.id)]:
                core.kbr.spawn(self._hand_over(name, new_pred))
        old = {n.id for n in change.old_successors[: core.config.replicas]}
        fresh = [n for n in change.new_successors[: core.config.replicas] if n.id not in old]
        for node in fresh:
            for root in list(core.roots.values()):
                core.kbr.spawn(core.send_quietly(node, mpb.McastDirect(
                    replica=root.to_replica())))

    async def _hand_over(self, name: str, new_root: NodeRef) -> None:
        """A node joined in front of us and owns the group id now: it becomes the root (from
        our state), and we become its child."""
        core = self.core
        root = core.roots.get(name)
        if root is None:
            return
        try:
            await core.send(new_root, mpb.McastDirect(replica=root.to_replica()))
        except (PeerUnavailable, RemoteError):
            return
        core.roots.pop(name, None)
        core.replicas[name] = root
        g = core.group(name)
        g.is_root = False
        g.parent = new_root
        try:
            # Any routed request makes the new owner promote its copy; then adopt us.
            await core.route(name, mpb.McastRouted(info=name))
            await core.send(new_root, mpb.McastDirect(adopt=mpb.RefreshOp(
                name=name, child=core.pb(core.me), members=g.subtree_members(),
                height=g.height())))
        except (McastError, PeerUnavailable, RemoteError):
            g.parent = None  # maintenance re-joins

    async def leaving(self) -> None:
        """Hand root state to the successor; members and children re-join on their own."""
        _, succs = self.core.kbr.neighbors()
        if succs:
            for root in list(self.core.roots.values()):
                await self.core.send_quietly(succs[0], mpb.McastDirect(
                    replica=root.to_replica()))
