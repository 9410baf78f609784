"""The upward side of a tree node, and keeping it whole: joining the tree (a JOIN routed
toward the group id, and the forward upcall that builds the branch), learning where our stream
starts, taking data from the parent, the child's half of the soft state (refresh, re-join),
repairing gaps and backfilling members, moving to another parent, pruning an idle node, and
the maintenance loop that drives it all."""

from __future__ import annotations

import asyncio
import logging

from chord.kbr import Forward
from chord.ports import PeerUnavailable, RemoteError
from chord.state import NodeRef
from chord.wire import node_from_pb
from chordcast.v1 import mcast_pb2 as mpb
from mcast.children import Children
from mcast.core import McastError, ScribeCore, direct_reply, reply
from mcast.tree import RANGE_MESSAGES, GroupState, Member, take

log = logging.getLogger(__name__)


class Repair:
    def __init__(self, core: ScribeCore, children: Children) -> None:
        self.core = core
        self.children = children

    # ------------------------------------------------------------ joining the tree
    async def join_tree(self, g: GroupState, fallback: int = 0) -> int:
        """Route a JOIN from here; the forward upcalls on the way build the branch. Our
        stream starts at the stopping node's position (or `fallback` if it has none yet)."""
        g.rejoining = True
        g.hold_base = g.last is None
        try:
            answer, _ = await self.core.route(g.name, mpb.McastRouted(
                join=mpb.JoinOp(name=g.name)))
        finally:
            g.rejoining = False
            g.hold_base = False
        if g.last is None and not g.is_root:
            self._position(g, answer.seq if answer.positioned else fallback)
        g.last_heard = self.core.kbr.clock.now()
        g.parent_unconfirmed = False  # the JOIN arrived: the chain up from us exists
        return answer.seq

    def forward_join(self, op: mpb.McastRouted, next_hop: NodeRef) -> Forward:
        """A JOIN passing through: adopt the previous forwarder; stop it here if we are in the
        tree already, else become a forwarder and let it go on."""
        core = self.core
        join = op.join
        child = node_from_pb(core.kbr.space, join.child) if join.HasField("child") else None
        g = core.groups.get(join.name)
        if child is not None and child.id != core.me.id and g is not None and g.attached \
                and not g.rejoining:
            self.children.add_child(g, child)  # already in the tree: the JOIN stops here
            return Forward(op.SerializeToString(), stop=True, reply=reply(
                seq=g.last or 0, positioned=g.last is not None))
        g = core.group(join.name)
        if child is not None and child.id != core.me.id:
            self.children.add_child(g, child)
        if not g.is_root:
            # Set again if this next hop fails and KBR tries another: that retry passes the
            # same JOIN through us a second time, and it must go on, not stop at us (we
            # would hang from the dead node).
            if g.parent is None or g.parent_unconfirmed:
                g.parent_unconfirmed = True
            g.parent = next_hop
        g.last_heard = core.kbr.clock.now()
        join.child.CopyFrom(core.pb(core.me))
        return Forward(op.SerializeToString())

    def _position(self, g: GroupState, seq: int) -> None:
        """Our stream reaches us from `seq` on: deliver what waited, repair what is missing."""
        g.last = seq
        for s in [s for s in g.ahead if s <= seq]:
            del g.ahead[s]
        self.children.disseminate(g, g.accept([]))
        if g.missing() is not None:
            self.repair_soon(g)

    # ------------------------------------------------------------ data from the parent
    def on_data(self, data: mpb.DataOp, sender: NodeRef) -> bytes:
        core = self.core
        g = core.groups.get(data.name)
        if g is None or not self._from_parent(g, sender):
            # Not (or no longer) its child. Pushes come one way, so tell the sender: it
            # stops sending to us (as a child that left would).
            core.kbr.spawn(core.send_quietly(sender, mpb.McastDirect(prune=mpb.RefreshOp(
                name=data.name, child=core.pb(core.me)))))
            return direct_reply(unknown=True)
        g.last_heard = core.kbr.clock.now()
        if g.parent is not None and g.parent.address == sender.address:
            g.parent_unconfirmed = False
        self.children.disseminate(g, g.accept(list(data.messages)))
        if g.missing() is not None:
            # A flow keeps its order, so a hole is a loss (a broken flow, a new parent that
            # is ahead of us): ask for it now, not at the next refresh.
            self.repair_soon(g)
        return direct_reply(last_seq=g.last or 0)

    @staticmethod
    def _from_parent(g: GroupState, sender: NodeRef) -> bool:
        return any(p is not None and p.address == sender.address
                   for p in (g.parent, g.moving_to))

    def repair_soon(self, g: GroupState) -> None:
        """Fill the holes in our stream now, one repair at a time."""
        if not g.repairing:
            g.repairing = True
            self.core.kbr.spawn(self._repair_holes(g))

    async def _repair_holes(self, g: GroupState) -> None:
        try:
            for _ in range(8):  # bounded: what stays missing is the maintenance's again
                before = g.last
                if g.missing() is None:
                    return
                await self.repair_gap(g)
                if g.last == before:
                    return  # no progress now
        finally:
            g.repairing = False

    # ------------------------------------------------------------ gaps and backfill
    async def backfill_members(self, g: GroupState) -> None:
        for m in list(g.members.values()):
            if m.pending or (g.last is not None and m.cursor is not None and m.cursor < g.last):
                await self.backfill(g, m)

    async def backfill(self, g: GroupState, m: Member) -> None:
        """What a member lacks (it resumed, or joined where the stream had another start):
        from our buffer, else the root's archive; what the archive lost is a gap event."""
        if m.cursor is None:
            return
        upto = max([g.last or 0, *(s - 1 for s in m.pending)])
        # An answer carries a bounded part of the range: ask on while it helps.
        while m.cursor is not None and m.cursor < upto:
            before = first = m.cursor + 1
            have = g.from_recent(first, upto)
            if have and have[0].seq == first:
                for msg in have:
                    m.offer(g.name, msg)
                return
            answer, _ = await self.core.route(g.name, mpb.McastRouted(range=mpb.RangeOp(
                name=g.name, from_seq=first, to_seq=upto)))
            if answer.first_available > first:
                m.gap(g.name, answer.first_available - 1)
            for msg in [*answer.messages, *have]:
                m.offer(g.name, msg)
            if m.cursor is None or m.cursor < before:
                return  # no progress now: the next maintenance round tries again

    async def repair_gap(self, g: GroupState, upto: int = 0) -> None:
        """Fill the first hole in our stream (or, with `upto`, everything up to there that we
        lack): ask the parent, then the root; what the root's archive no longer has is lost
        for good, and members are told."""
        core = self.core
        hole = g.missing()
        if hole is None and g.last is not None and upto > g.last:
            hole = (g.last + 1, upto)
        if hole is None:
            return
        first, last = hole
        messages: list[mpb.GroupMessage] = []
        if g.parent is not None:
            try:
                answer = await core.send(g.parent, mpb.McastDirect(range=mpb.RangeOp(
                    name=g.name, from_seq=first, to_seq=last)))
                messages = list(answer.messages)
            except (PeerUnavailable, RemoteError):
                pass
        if not messages or messages[0].seq != first:
            try:
                routed, _ = await core.route(g.name, mpb.McastRouted(range=mpb.RangeOp(
                    name=g.name, from_seq=first, to_seq=last)))
            except McastError:
                return
            messages = list(routed.messages)
            if routed.first_available > first:
                lost_upto = min(routed.first_available - 1, last)
                for member in g.members.values():
                    member.gap(g.name, lost_upto)
                log.warning("%s: messages %d..%d of %r are lost for good (past the root's "
                            "archive); members were told", core.me.address, first, lost_upto,
                            g.name)
                core.kbr.observer.mcast("gap_lost")
                self.children.disseminate(g, g.skip_to(lost_upto))
        core.kbr.observer.mcast("gap_repaired")
        if messages:
            log.info("%s: repaired messages %d..%d of %r", core.me.address, messages[0].seq,
                     messages[-1].seq, g.name)
        self.children.disseminate(g, g.accept(messages))

    def on_range(self, op: mpb.RangeOp) -> bytes:
        """A child repairing a gap asks our buffer first."""
        g = self.core.groups.get(op.name)
        if g is None:
            return direct_reply(unknown=True)
        return direct_reply(messages=take(g.from_recent(op.from_seq, op.to_seq),
                                          RANGE_MESSAGES))

    # ------------------------------------------------------------ moving and leaving
    async def reparent(self, op: mpb.ReparentOp, old_parent: NodeRef) -> None:
        """The bottleneck remover at our parent hands us to another of its children."""
        core = self.core
        g = core.groups.get(op.name)
        if g is None or g.parent is None or g.parent.address != old_parent.address:
            return
        target = node_from_pb(core.kbr.space, op.parent)
        g.moving_to = target  # it may push to us before its answer comes
        try:
            answer = await core.send(target, mpb.McastDirect(adopt=mpb.RefreshOp(
                name=op.name, child=core.pb(core.me), members=g.subtree_members(),
                height=g.height())))
        except (PeerUnavailable, RemoteError):
            return
        finally:
            g.moving_to = None
        if answer.unknown:
            return
        g.parent = target
        await core.send_quietly(old_parent, mpb.McastDirect(
            prune=mpb.RefreshOp(name=op.name, child=core.pb(core.me))))

    async def prune_if_idle(self, g: GroupState) -> None:
        """Neither forwarder nor member any more: leave the tree."""
        core = self.core
        if not g.idle or g.rejoining:
            return
        core.groups.pop(g.name, None)
        parent, g.parent = g.parent, None
        if parent is not None:
            await core.send_quietly(parent, mpb.McastDirect(
                prune=mpb.RefreshOp(name=g.name, child=core.pb(core.me))))

    def on_prune(self, op: mpb.RefreshOp) -> bytes:
        """A child left us (it was idle, or it moved to another parent)."""
        g = self.core.groups.get(op.name)
        if g is not None:
            self.children.drop_child(g, op.child.address)
            self.core.kbr.spawn(self.prune_if_idle(g))
        return direct_reply()

    # ------------------------------------------------------------ maintenance
    async def maintain_once(self) -> None:
        now = self.core.kbr.clock.now()
        jobs = []
        for g in list(self.core.groups.values()):
            for address in [a for a, c in g.children.items() if c.expires < now]:
                log.info("%s: child %s of %r went silent: dropped from the tree",
                         self.core.me.address, address, g.name)
                self.children.drop_child(g, address)
            if g.idle:
                jobs.append(self.prune_if_idle(g))
            elif g.is_root:
                if g.missing() is not None:
                    self.repair_soon(g)  # (one repair at a time, whoever saw the hole)
            elif not g.rejoining:
                jobs.append(self._refresh(g))
        await asyncio.gather(*jobs)

    async def _refresh(self, g: GroupState) -> None:
        """The child's half of the soft state: refresh our entry at the parent; its answer is
        the parent's heartbeat. No answer, or "not my child": re-join."""
        core = self.core
        if g.parent is not None:
            try:
                answer = await core.send(g.parent, mpb.McastDirect(refresh=mpb.RefreshOp(
                    name=g.name, child=core.pb(core.me), members=g.subtree_members(),
                    height=g.height())))
            except (PeerUnavailable, RemoteError):
                answer = mpb.McastDirectReply(unknown=True)
            if not answer.unknown:
                g.last_heard = core.kbr.clock.now()
                g.parent_unconfirmed = False
                if g.last is None and answer.positioned:
                    self._position(g, answer.last_seq)  # a fresh forwarder learns where it is
                elif answer.positioned:
                    await self.repair_gap(g, upto=answer.last_seq)  # the parent may be ahead
                await self.backfill_members(g)
                return
        await self._rejoin(g)

    async def _rejoin(self, g: GroupState) -> None:
        core = self.core
        lost = g.parent.address if g.parent is not None else "none"
        g.parent = None
        core.kbr.observer.mcast("tree_repair")
        try:
            seq = await self.join_tree(g)
        except McastError as exc:
            if exc.code == "not_found":
                log.info("%s: group %r is gone (its root does not know it): ended here",
                         core.me.address, g.name)
                await self.children.end(g.name)  # the group is gone
            else:
                g.rejoin_failures += 1
                if g.rejoin_failures == 1:  # (said once, not every round while cut off)
                    log.info("%s: lost parent %s in %r; re-joining failed (%s), trying "
                             "again each round", core.me.address, lost, g.name, exc)
            return
        log.info("%s: lost parent %s in %r; re-joined the tree under %s at seq %d%s",
                 core.me.address, lost, g.name,
                 g.parent.address if g.parent is not None else "the root (itself)", seq,
                 f" after {g.rejoin_failures + 1} tries" if g.rejoin_failures else "")
        g.rejoin_failures = 0
        # Catch up at once with what the tree sent while we were cut off, rather than at the
        # next refresh: the node that took our JOIN told us how far it is.
        await self.repair_gap(g, upto=seq)
