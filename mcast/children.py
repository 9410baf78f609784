"""The downward side of a tree node: delivering to local members, the ordered and batched
queue to each child, adopting children (with Scribe's bottleneck remover), answering a
child's refresh, and ending a group down the tree."""

from __future__ import annotations

import asyncio
from collections import deque

from chord.ports import PeerUnavailable, RemoteError
from chord.state import NodeRef
from chord.wire import node_from_pb
from chordcast.v1 import mcast_pb2 as mpb
from mcast.core import SEND_BATCH, ScribeCore, direct_reply
from mcast.tree import ENDED, Child, Event, GroupState, take

CHILD_QUEUE_LIMIT = 10_000
PUSH_WINDOW = 32  # batches in flight to one child: a push need not wait for the last one's ack


class _ChildLink:
    """Messages to one child go in order, in batches, up to PUSH_WINDOW batches in flight
    (like a stream with a window). The first batch to a new child goes alone: until it has
    taken one, it may not know where its stream starts, and must not see a later batch first."""

    def __init__(self) -> None:
        self.queue: deque[mpb.GroupMessage] = deque()
        self.in_flight = 0
        self.closed = False  # dropped: pushes still in flight must not touch what follows


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
        link = self._links.setdefault(key, _ChildLink())
        link.queue.extend(messages)
        if len(link.queue) > CHILD_QUEUE_LIMIT:
            # A child this far behind is dropped; it re-joins and repairs from the archive.
            self.drop_child(g, child.address)
            return
        self._pump(g.name, child, link)

    def _child(self, name: str, address: str) -> Child | None:
        g = self.core.groups.get(name)
        return g.children.get(address) if g is not None else None

    def _pump(self, name: str, child: NodeRef, link: _ChildLink) -> None:
        entry = self._child(name, child.address)
        window = PUSH_WINDOW if entry is not None and entry.positioned else 1
        while link.queue and link.in_flight < window:
            batch = take(link.queue, SEND_BATCH)
            for _ in batch:
                link.queue.popleft()
            link.in_flight += 1
            self.core.kbr.spawn(self._push(name, child, link, batch))

    async def _push(self, name: str, child: NodeRef, link: _ChildLink,
                    batch: list[mpb.GroupMessage]) -> None:
        try:
            reply = await self.core.send(child, mpb.McastDirect(
                data=mpb.DataOp(name=name, messages=batch)))
        except (PeerUnavailable, RemoteError):
            reply = mpb.McastDirectReply(unknown=True)
        link.in_flight -= 1
        if link.closed:
            return  # dropped meanwhile; a newer link (if any) is not ours to touch
        key = (name, child.address)
        if reply.unknown:
            g = self.core.groups.get(name)
            if g is not None:
                self.drop_child(g, child.address)
            return
        entry = self._child(name, child.address)
        if entry is not None:
            entry.positioned = True
        self.core.kbr.observer.mcast("forwarded", len(batch))
        self._pump(name, child, link)
        if not link.queue and not link.in_flight and self._links.get(key) is link:
            del self._links[key]

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
