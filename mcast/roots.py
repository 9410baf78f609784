"""The root side of a group: its record, counter and archive at the root and as copies on the
replica set (the root's successors). Create, publish, destroy and info at the root; promoting
a replica when the group id has become ours; the replica messages; handing a group over to a
node that joined in front of us; re-replicating when the successors change; leaving."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from dataclasses import dataclass, field

from chord.ids import between_right
from chord.kbr import LookupFailed, NeighborChange
from chord.ports import DiskError, PeerUnavailable, RemoteError
from chord.state import NodeRef
from chordcast.v1 import mcast_pb2 as mpb
from mcast.children import Children
from mcast.core import (
    MAX_NAME,
    McastError,
    ScribeCore,
    allowed,
    check_acl,
    check_name,
    check_payload,
    direct_reply,
    reply,
)
from mcast.tree import RANGE_MESSAGES, RootState, take

log = logging.getLogger(__name__)


COMMIT_BATCH = 256  # messages copied to the replicas in one go
COMMIT_WINDOW = 32  # batches on their way to the replicas at once
WARN_EVERY = 10.0  # seconds between log lines about refused operations (each is counted)


def _settle(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


@dataclass
class _Pipeline:
    """A group's messages on their way from the stamp to the replicas, in order."""

    root: RootState
    sent: int  # the last number handed to a copy
    in_flight: deque[tuple[list[mpb.GroupMessage], asyncio.Task[bool]]] = field(
        default_factory=deque)
    waiters: dict[int, asyncio.Future[bool]] = field(default_factory=dict)  # seq -> outcome


class Roots:
    def __init__(self, core: ScribeCore, children: Children) -> None:
        self.core = core
        self.children = children
        self._pipes: dict[str, _Pipeline] = {}  # groups whose replication is running
        self._promoting: dict[str, asyncio.Future[None]] = {}  # one promotion at a time
        self._handing_over: set[str] = set()  # groups being handed to another root
        self._warned = -WARN_EVERY  # when an unproven operation was last logged

    # ------------------------------------------------------------ promotion and copies
    async def root(self, name: str) -> RootState | None:
        """Our root state for the group, promoting a replica when the group id has become
        ours. Concurrent requests share one promotion (two would make two roots)."""
        for _ in range(3):  # a promotion we waited for may have been cancelled: try again
            root = self.core.roots.get(name)
            if root is not None:
                return root
            promoting = self._promoting.get(name)
            if promoting is None:
                break
            await asyncio.shield(promoting)
        else:
            return self.core.roots.get(name)
        promoted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._promoting[name] = promoted
        try:
            return await self._promote(name)
        finally:
            del self._promoting[name]
            promoted.set_result(None)

    async def _promote(self, name: str) -> RootState | None:
        """Take over from the best copy: ours, or a replica's with a higher counter (the old
        root may have committed more than reached us), so no number is stamped twice."""
        core = self.core
        fetched = await self._fetch_replica(name)
        if root := core.roots.get(name):
            return root  # created or handed to us meanwhile
        replica = core.replicas.get(name)  # (read after the wait: a copy may have come)
        if fetched is not None and (replica is None or fetched.counter > replica.counter):
            if replica is None:
                replica = fetched
            else:
                for m in fetched.archive:
                    replica.add(m)
                replica.counter = max(replica.counter, fetched.counter)
        if replica is None:
            return None
        core.replicas.pop(name, None)
        g = core.group(name)
        # A forwarder may have passed on messages its copy lacks: they are committed (the
        # old root sent them down), so the new root's numbering continues after them.
        for m in g.recent:
            if m.seq > replica.counter:
                replica.add(m)
        replica.counter = max(replica.counter, g.last or 0)
        replica.committed = replica.counter  # a copy holds only what its root committed
        core.roots[name] = replica
        g.is_root, g.parent = True, None
        if g.last is None:
            g.recent.extend(replica.archive)
            g.last = replica.counter
        else:  # a forwarder: what its stream lacks goes down its subtree now, in order
            self.children.disseminate(g, g.accept(
                [m for m in replica.archive if m.seq > (g.last or 0)]))
            # ... and past what no copy holds any more; no stale entry stays held ahead.
            self.children.disseminate(g, g.skip_to(replica.counter))
        log.info("%s is now the root of %r at seq %d", core.me.address, name, replica.counter)
        for copy in replica.to_replicas():
            await self._replicate(copy)
        await core.disk.save(replica, replica.committed, replica.archive)
        return replica

    async def _fetch_replica(self, name: str) -> RootState | None:
        """The replica set's best copy of the group (the highest counter), if any has one."""
        core = self.core
        ask = mpb.McastDirect(replica=mpb.ReplicaOp(name=name))  # an empty op asks for it
        answers = await asyncio.gather(
            *(core.send(n, ask) for n in core.kbr.replica_set(core.config.replicas)),
            return_exceptions=True)
        best: mpb.ReplicaOp | None = None
        for answer in answers:
            if isinstance(answer, BaseException):
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

    async def on_replica(self, op: mpb.ReplicaOp) -> bytes:
        """A copy from the root (or its drop), or a new root asking for our copy. A copy is
        on our disk before we acknowledge it (see mcast.disk)."""
        core = self.core
        if op.drop:
            await core.disk.drop(op.name, core.replicas.pop(op.name, None))
            return direct_reply()
        if not op.HasField("record"):  # a new root asking for our copy
            copy = core.replicas.get(op.name) or core.roots.get(op.name)
            if copy is None:
                return direct_reply()
            # The newest messages that fit one reply: a new root needs the counter and the
            # recent past; older ones stay with the copies it will not see (gap events).
            newest = take(reversed([m for m in copy.archive if m.seq <= copy.committed]),
                          len(copy.archive))
            return direct_reply(records=[copy.record], counters=[copy.committed],
                                messages=newest[::-1])
        if op.name in core.roots:
            return direct_reply()  # we are the root ourselves (a stale copy arrives late)
        existing = core.replicas.get(op.name)
        if existing is None:
            existing = core.replicas[op.name] = RootState.from_replica(op)
        else:
            existing.merge(op)
        await core.disk.save(existing, existing.committed, op.messages)
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
        if await self.root(op.name) is not None or op.name in core.roots:
            # (checked again after the wait: two creates at once must not both win)
            return reply(error=f"group {op.name!r} already exists", code="exists")
        if len(core.roots) >= core.config.max_groups:
            return reply(error=f"the root node holds its limit of {core.config.max_groups} "
                               f"groups", code="exhausted")
        limit = core.config.max_groups_per_owner
        if op.owner and sum(r.record.owner == op.owner for r in core.roots.values()) >= limit:
            return reply(error=f"the root node {core.me.address} holds {op.owner}'s limit "
                               f"of {limit} groups", code="exhausted")
        # The right to destroy the group: unguessable where the node's rng draws from the
        # OS (a real node's does); seeded, so reproducible, in the simulator.
        token = f"{core.rng.getrandbits(128):032x}"
        check_acl(op.publishers)
        check_acl(op.subscribers)
        if len(op.creator.encode()) > MAX_NAME or len(op.owner.encode()) > MAX_NAME:
            return reply(error=f"creator and owner names are at most {MAX_NAME} bytes",
                         code="invalid")
        record = mpb.GroupRecord(name=op.name, creator=op.creator, created_ms=core.now_ms(),
                                 token_hash=hashlib.sha256(token.encode()).digest(),
                                 archive=op.archive or core.config.archive, owner=op.owner,
                                 publishers=op.publishers, subscribers=op.subscribers)
        root = RootState(record)
        core.roots[op.name] = root
        g = core.group(op.name)
        g.is_root, g.parent, g.last = True, None, 0
        for copy in root.to_replicas():
            await self._replicate(copy)
        await core.disk.save(root, 0, [])
        return reply(token=token, root=core.pb(core.me))

    async def on_publish(self, op: mpb.PublishOp) -> bytes:
        core = self.core
        root = await self.root(op.name)
        if root is None:
            return reply(error=f"no group named {op.name!r}", code="not_found")
        check_payload(op.payload)
        if not allowed(root.record.publishers, op.principal):
            # Checked here, at the root, where every send of the group must pass.
            who = op.principal or "an unauthenticated caller"
            return reply(error=f"permission denied: {who} may not send to {op.name!r}",
                         code="denied")
        if root.frozen:
            return reply(error="the group's root is moving; retry", code="unavailable")
        if root.counter - root.committed >= max(1, (root.archive.maxlen or 1) // 2):
            # Stamped messages wait in the archive until they are committed: never so many
            # that the archive would drop one first.
            return reply(error="too many messages waiting for the replicas; retry",
                         code="unavailable")
        if op.message_id not in root.ids and (refused := core.proofs.publish(op)):
            # The principal the access node named must have signed this very message (a
            # retry of one stamped already is answered its number: nothing new is sent).
            # Checked last, so a send refused for a passing reason can be retried.
            self._unproven(op.name, op.principal, refused)
            return reply(error=f"permission denied: {refused}", code="denied")
        # The sender's signature goes down with the message: its members check it themselves
        # (a node on the way could otherwise change what they get).
        m, fresh = root.stamp(op.payload, op.sender, op.message_id, core.now_ms(),
                              op.proof if op.HasField("proof") else None)
        if fresh:
            core.kbr.observer.mcast("stamped")
        if m.seq > root.committed and not await self._commit(op.name, root, m.seq):
            # New, or a retry of one still being replicated, and the group moved meanwhile.
            return reply(error="the group's root moved while replicating; retry",
                         code="unavailable")
        return reply(seq=m.seq)

    def _unproven(self, name: str, principal: str, why: str) -> None:
        """Count a send or destroy its named caller did not sign (a node acting for someone
        it is not, or a client whose clock is off), and say so in the log now and then."""
        core = self.core
        core.kbr.observer.mcast("unproven")
        now = core.kbr.clock.now()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning("%s: refused an operation on %r in the name of %s: %s (more are "
                        "counted in chordcast_mcast_messages_total{event=\"unproven\"})",
                        core.me.address, name, principal or "nobody", why)

    async def _commit(self, name: str, root: RootState, seq: int) -> bool:
        """Wait until message `seq` is copied to the replicas and sent down the tree (True),
        or the group stopped being ours first (False). Messages stamped together are copied
        together (group commit) and several batches are on their way at once, so many sends
        are in flight and the tree still gets them in order, each only once it is safe."""
        pipe = self._pipes.get(name)
        if pipe is None or pipe.root is not root:  # (a group destroyed and made again)
            pipe = self._pipes[name] = _Pipeline(root, root.committed)
            self.core.kbr.spawn(self._replicate_in_order(name, root, pipe))
        future = pipe.waiters.get(seq)
        if future is None:
            future = pipe.waiters[seq] = asyncio.get_running_loop().create_future()
        self._fill(name, root, pipe)
        return await asyncio.shield(future)

    def _fill(self, name: str, root: RootState, pipe: _Pipeline) -> None:
        """Start copying what is stamped and not yet on its way, up to the window."""
        while len(pipe.in_flight) < COMMIT_WINDOW and (
                batch := take(root.after(pipe.sent), COMMIT_BATCH)):
            pipe.sent = batch[-1].seq
            pipe.in_flight.append((batch, self.core.kbr.spawn(self._copy(name, root, batch))))

    async def _replicate_in_order(self, name: str, root: RootState, pipe: _Pipeline) -> None:
        """As the oldest batch on its way is acknowledged, commit it: send it down the tree
        and tell its senders. A batch no replica took is tried again (the replica set is
        repairing): a number once stamped is never given to another message by this root."""
        core = self.core
        failures = 0
        try:
            while core.roots.get(name) is root and not root.frozen:
                # Sends that come while a batch is on its way fill the window themselves
                # (`_commit`), so an empty one here means everything stamped is committed.
                self._fill(name, root, pipe)
                if not pipe.in_flight:
                    break
                batch, task = pipe.in_flight[0]
                ok = await task
                if core.roots.get(name) is not root or root.frozen:
                    break  # handed over, destroyed or moving meanwhile: commit nothing more
                if not ok:
                    failures += 1
                    await core.kbr.clock.sleep(min(1.0, 0.05 * failures))
                    pipe.in_flight[0] = (batch, core.kbr.spawn(self._copy(name, root, batch)))
                    continue
                failures = 0
                pipe.in_flight.popleft()
                root.committed = max(root.committed, batch[-1].seq)
                g = core.group(name)
                self.children.disseminate(g, g.accept(batch))
                for seq in [s for s in pipe.waiters if s <= root.committed]:
                    _settle(pipe.waiters.pop(seq), True)
        finally:
            # Done, or the group is no longer ours: nobody may wait for a replication that
            # will not come (a sender told "retry" retries with its message id).
            if self._pipes.get(name) is pipe:
                del self._pipes[name]
            for _, task in pipe.in_flight:
                task.cancel()
            for seq in list(pipe.waiters):
                _settle(pipe.waiters.pop(seq), seq <= root.committed)

    async def _copy(self, name: str, root: RootState, batch: list[mpb.GroupMessage]) -> bool:
        """One batch to the replica set: did any replica take it (or is there none)? Then
        on our own disk too, before the senders are told (see mcast.disk)."""
        if self.core.kbr.replica_set(self.core.config.replicas) and await self._replicate(
                mpb.ReplicaOp(name=name, record=root.record, counter=batch[-1].seq,
                              messages=batch)) == 0:
            return False
        try:
            await self.core.disk.save(root, batch[-1].seq, batch)
        except DiskError as exc:  # not committed: tried again (the senders wait, or retry)
            log.error("%s: group %r: %s", self.core.me.address, name, exc)
            return False
        return True

    async def on_destroy(self, op: mpb.DestroyOp) -> bytes:
        root = await self.root(op.name)
        if root is None:
            return reply(error=f"no group named {op.name!r}", code="not_found")
        owner = root.record.owner
        if hashlib.sha256(op.token.encode()).digest() != root.record.token_hash:
            if not (owner and op.principal == owner):
                return reply(error="permission denied: only the creator (its certificate, "
                                   "or the token) may destroy the group", code="denied")
            if refused := self.core.proofs.destroy(op):
                self._unproven(op.name, op.principal, refused)
                return reply(error=f"permission denied: {refused}", code="denied")
        del self.core.roots[op.name]
        await self._replicate(mpb.ReplicaOp(name=op.name, drop=True))
        await self.core.disk.drop(op.name, root)
        await self.children.end(op.name)
        return reply()

    def on_info(self, name: str, root: RootState) -> bytes:
        g = self.core.groups.get(name)
        members = g.subtree_members() if g else 0
        depth = g.height() - 1 if g else 0
        return reply(record=root.record, seq=root.committed, members=members, depth=depth,
                     root=self.core.pb(self.core.me))

    def on_range(self, root: RootState, op: mpb.RangeOp) -> bytes:
        """Messages from the archive, for a node repairing a gap or a member resuming."""
        return reply(messages=take(root.range(op.from_seq, op.to_seq), RANGE_MESSAGES),
                     first_available=root.first_available(), seq=root.committed)

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
                core.kbr.spawn(self._copy_to(node, root))

    async def _hand_over(self, name: str, new_root: NodeRef) -> None:
        """A node joined in front of us and owns the group id now: it becomes the root (from
        our state), and we become its child."""
        core = self.core
        root = core.roots.get(name)
        if root is None or name in self._handing_over:
            return  # (one hand-over at a time: two would unfreeze each other's copy)
        self._handing_over.add(name)
        try:
            await self._hand_over_root(name, root, new_root)
        finally:
            self._handing_over.discard(name)

    async def _hand_over_root(self, name: str, root: RootState, new_root: NodeRef) -> None:
        core = self.core
        # Stop stamping and committing first, so the copy is all the new root must know.
        root.frozen = True
        try:
            for op in root.to_replicas():
                await core.send(new_root, mpb.McastDirect(replica=op))
        except (PeerUnavailable, RemoteError):
            root.frozen = False
            return
        core.roots.pop(name, None)
        root.truncate()
        root.frozen = False
        core.replicas[name] = root
        g = core.group(name)
        g.is_root = False
        g.parent = new_root
        # Our children lie before the group id; the new root lies between them and us, so
        # they are nearer it than we are now. Kept, they would break the rule that keeps
        # trees free of cycles (our own re-join could be adopted by one of them): they move
        # to the new root (as the bottleneck remover moves a child), or, should that fail,
        # re-join toward it at their next refresh.
        children = [c.node for c in g.children.values()]
        for child in children:
            self.children.drop_child(g, child.address)
        log.info("%s handed the root of %r over to %s (its %d children move there)",
                 core.me.address, name, new_root.address, len(children))
        try:
            # Any routed request makes the new owner promote its copy; then adopt us.
            await core.route(name, mpb.McastRouted(info=name))
            await core.send(new_root, mpb.McastDirect(adopt=mpb.RefreshOp(
                name=name, child=core.pb(core.me), members=g.subtree_members(),
                height=g.height())))
        except (McastError, PeerUnavailable, RemoteError):
            g.parent = None  # maintenance re-joins
            return
        move = mpb.McastDirect(reparent=mpb.ReparentOp(name=name, parent=core.pb(new_root)))
        await asyncio.gather(*(core.send_quietly(child, move) for child in children))

    async def hand_over_unowned(self) -> None:
        """(Each maintenance round.) A root whose group id is no longer its own hands the
        group to the owner: a join seen while a promotion was still under way (or two joins
        in front of us at once) would otherwise leave a root nobody routes to, beside the
        real one."""
        core = self.core
        pred, _ = core.kbr.neighbors()
        if pred is None:
            return  # we cannot tell what we own
        for name in [n for n in core.roots if not core.kbr.owns(core.gid(n))]:
            try:
                owner = (await core.kbr.route(core.gid(name), "", b"")).owner
            except LookupFailed:
                continue
            if owner.id != core.me.id:
                log.info("%s no longer owns the id of %r (%s does): handing the root over",
                         core.me.address, name, owner.address)
                await self._hand_over(name, owner)

    async def leaving(self) -> None:
        """Hand root state to the successor; members and children re-join on their own."""
        _, succs = self.core.kbr.neighbors()
        if succs:
            for root in list(self.core.roots.values()):
                root.frozen = True  # nothing more committed here after the copy
                await self._copy_to(succs[0], root)

    async def _copy_to(self, node: NodeRef, root: RootState) -> None:
        """Our committed copy of a group, to one node (it may be gone: then nothing)."""
        for op in root.to_replicas():
            try:
                await self.core.send(node, mpb.McastDirect(replica=op))
            except (PeerUnavailable, RemoteError):
                return
