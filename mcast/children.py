"""The downward side of a tree node: delivering to local members, the ordered and batched
queue to each child, adopting children (with Scribe's bottleneck remover), answering a
child's refresh, and ending a group down the tree."""

from __future__ import annotations

import asyncio
from collections import deque

from chord.kbr import AppFlow
from chord.ports import PeerUnavailable, RemoteError
from chord.state import NodeRef
from chord.wire import node_from_pb
from chordcast.v1 import mcast_pb2 as mpb
from mcast.core import APP, SEND_BATCH, ScribeCore, direct_reply
from mcast.tree import ENDED, Child, Event, GroupState, take

CHILD_QUEUE_LIMIT = 10_000
RESEND = 4 * SEND_BATCH  # the newest messages a replacement flow carries again
RETRY_FIRST = 0.005  # seconds before a flow that broke again is replaced again (doubling)
RETRY_MAX = 0.5


class _ChildLink:
    """Messages to one child, in order and in batches, on one flow (a stream: each batch goes
    as soon as the flow takes it, so a burst is many batches on the wire at once, and the
    child takes them in order). A flow that breaks may have lost its last messages: a new one
    starts with the newest RESEND again (the child drops what it has), so a push that did not
    land is re-sent at once instead of waiting for the child's next refresh. Flows that keep
    breaking are replaced less and less often; a child unreachable for a whole parent timeout
    is dropped (it re-joins, if it lives)."""

    def __init__(self, flow: AppFlow) -> None:
        self.flow = flow
        self.queue: deque[mpb.GroupMessage] = deque()
        self.sent: deque[mpb.GroupMessage] = deque(maxlen=RESEND)
        self.pumping = False
        self.failing_since: float | None = None  # the first break of the current run
        self.failures = 0
        self.closed = False  # dropped: a pump still running must not touch what follows

    def heard_from_child(self) -> None:
        """The child answered (its refresh): whatever broke before is over."""
        self.failing_since, self.failures = None, 0


class Children:
    def __init__(self, core: ScribeCore) -> None:
        self.core = core
        self._links: dict[tuple[str, str], _ChildLink] = {}

    # ------------------------------------------------------------ dissemination
    def disseminate(self, g: GroupState, messages: list[mpb.GroupMessage]) -> None:
        """Deliver accepted (in-order) messages to local members and queue them to children."""
        if not messages:
            return
        for member in list(g.members.values()):
            for m in messages:
                member.offer(g.name, m)
        if g.members:
            kbr = self.core.kbr
            obs, now = kbr.observer, kbr.clock.wall()
            obs.mcast("delivered", len(messages) * len(g.members))
            for m in messages:
                obs.mcast_latency(max(0.0, now - m.ts_ms / 1000))
        for child in list(g.children.values()):
            self._queue(g, child.node, messages)

    def _queue(self, g: GroupState, child: NodeRef, messages: list[mpb.GroupMessage]) -> None:
        key = (g.name, child.address)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = _ChildLink(self.core.kbr.flow(child, APP))
        link.queue.extend(messages)
        if len(link.queue) > CHILD_QUEUE_LIMIT:
            # A child this far behind is dropped; it re-joins and repairs from the archive.
            self.drop_child(g, child.address)
            return
        if not link.pumping:
            link.pumping = True
            self.core.kbr.spawn(self._pump(g.name, child, link))

    async def _pump(self, name: str, child: NodeRef, link: _ChildLink) -> None:
        """Send what is queued, batch by batch, until the queue is empty."""
        core = self.core
        try:
            while link.queue and not link.closed:
                batch = take(link.queue, SEND_BATCH)
                for _ in batch:
                    link.queue.popleft()
                link.sent.extend(batch)
                try:
                    await link.flow.send(mpb.McastDirect(
                        data=mpb.DataOp(name=name, messages=batch)).SerializeToString())
                except (PeerUnavailable, RemoteError):
                    if not await self._replace_flow(name, child, link):
                        return
                    continue
                core.kbr.observer.mcast("forwarded", len(batch))
        finally:
            link.pumping = False

    async def _replace_flow(self, name: str, child: NodeRef, link: _ChildLink) -> bool:
        """The flow broke: open a new one that starts with the newest messages sent again
        (False: the child is dropped, or was meanwhile)."""
        core = self.core
        now = core.kbr.clock.now()
        if link.failing_since is None:
            link.failing_since = now
        g = core.groups.get(name)
        if link.closed or g is None or child.address not in g.children:
            return False
        if now - link.failing_since > core.config.parent_timeout:
            self.drop_child(g, child.address)
            return False
        if link.failures:  # broke again: wait a little longer each time
            await core.kbr.clock.sleep(min(RETRY_MAX, RETRY_FIRST * 2 ** (link.failures - 1)))
            if link.closed:
                return False
        link.failures += 1
        link.queue.extendleft(reversed(link.sent))
        link.sent.clear()
        link.flow = core.kbr.flow(child, APP)
        return True

    def drop_child(self, g: GroupState, address: str) -> None:
        g.children.pop(address, None)
        link = self._links.pop((g.name, address), None)
        if link is not None:
            link.closed = True
            link.queue.clear()

    # ------------------------------------------------------------ adopting children
    def add_child(self, g: GroupState, child: NodeRef) -> None:
        """Adopt a child. Over the bound, Scribe's bottleneck remover: the child farthest
        from the group id is handed to the nearest one (parents stay nearer the group id
        than their children, so no cycle can form); it stays ours until it has moved."""
        core = self.core
        expires = core.kbr.clock.now() + 3 * core.config.parent_timeout
        existing = g.children.get(child.address)
        if existing is not None:
            existing.expires = expires
            return
        # A new branch holds at least one member; its refreshes report the real count.
        g.children[child.address] = Child(child, expires, members=1)
        if len(g.children) > core.config.max_children:
            by_distance = sorted(g.children.values(),
                                 key=lambda c: core.closeness(c.node.id, g.group_id))
            nearest, farthest = by_distance[0], by_distance[-1]
            if nearest is not farthest:
                core.kbr.spawn(core.send_quietly(farthest.node, mpb.McastDirect(
                    reparent=mpb.ReparentOp(name=g.name, parent=core.pb(nearest.node)))))

    def on_refresh(self, r: mpb.RefreshOp, adopt: bool) -> bytes:
        """The parent's half of the soft state: a child's refresh (or, with `adopt`, a node
        handed to us by the bottleneck remover). The answer is our heartbeat."""
        g = self.core.groups.get(r.name)
        if g is None or not g.in_tree:
            return direct_reply(unknown=True)
        child = node_from_pb(self.core.kbr.space, r.child)
        if adopt or child.address in g.children:
            self.add_child(g, child)
        else:
            return direct_reply(unknown=True)  # not our child (any more): re-join
        entry = g.children.get(child.address)
        if entry is not None:
            entry.members, entry.height = r.members, r.height
        link = self._links.get((r.name, child.address))
        if link is not None:
            link.heard_from_child()
        return direct_reply(last_seq=g.last or 0, positioned=g.last is not None)

    # ------------------------------------------------------------ the end of a group
    async def end(self, name: str) -> None:
        """The group is gone: tell local members, and pass the end on to the children."""
        g = self.core.groups.pop(name, None)
        if g is None:
            return
        for member in g.members.values():
            member.on_event(Event(ENDED, name))
        children = list(g.children.values())
        for child in children:
            link = self._links.pop((name, child.node.address), None)
            if link is not None:
                link.closed = True
        await asyncio.gather(*(self.core.send_quietly(c.node, mpb.McastDirect(end=name))
                               for c in children))
