"""Ring maintenance, following Zave's correct Chord: stabilize (the successor list is replaced
whole from a node that just answered, then the successor is asked to rectify), reviving from
the predecessor when no successor is left, fixing and filling fingers, checking the
predecessor. A node that did not answer is forgotten everywhere.

Reaches peers only through the node it runs on (`chord.core.NodeCore`); a finger that cannot be
confirmed cheaply is looked up through `chord.routing`. It never imports `chord.node`.
"""

from __future__ import annotations

import asyncio
import logging

from chord.core import NodeCore
from chord.ids import between, between_right
from chord.kbr import LookupFailed
from chord.ports import PeerUnavailable, RemoteError
from chord.routing import Routing
from chord.state import NodeRef
from chord.wire import node_from_pb, nodes_from_pb
from chordcast.v1 import chord_pb2 as pb

log = logging.getLogger(__name__)

GOSSIP_SAMPLE = 64  # nodes asked for per location-cache exchange
GOSSIP_MAX_GAP = 32  # rounds between exchanges once they stop teaching anything new


class Maintenance:
    """One node's ring maintenance rounds and their state."""

    def __init__(self, node: NodeCore, routing: Routing) -> None:
        self.node = node
        self.routing = routing
        self.rounds = 0  # stabilization rounds so far
        self.next_finger = 0  # the finger fix_fingers refreshes next
        self.gossip_every = 1  # rounds between location-cache exchanges (backs off when idle)
        self.gossip_wait = 0

    async def gossip(self) -> None:
        """Fill the location cache epidemically: ask a random known node for a sample of the
        nodes it knows (push-pull gossip reaches everyone in O(log N) rounds). The gap between
        exchanges doubles while they teach nothing new, so a settled ring stays quiet."""
        node, cache = self.node, self.node.cache
        if not cache.enabled:
            return
        self.gossip_wait -= 1
        if self.gossip_wait > 0:
            return
        # The ring state's own nodes first: a ring built from a stable base has taught the
        # cache nothing yet, and these are the freshest entries there are.
        cache.learn([*node.state.successors, *node.state.distinct_fingers()])
        peers = cache.sample(1)
        if not peers:
            return
        peer = peers[0]
        try:
            reply = await node.call(peer.address, "GetNeighbors",
                                    pb.GetNeighborsRequest(sample=GOSSIP_SAMPLE))
        except PeerUnavailable:
            node.forget(peer.id, "cache")
            return
        except RemoteError:
            return
        new = cache.learn([*nodes_from_pb(node.space, reply.successors),
                           *nodes_from_pb(node.space, reply.known)])
        self.gossip_every = 1 if new else min(GOSSIP_MAX_GAP, 2 * self.gossip_every)
        self.gossip_wait = self.gossip_every

    async def stabilize(self) -> None:
        """Query the head of the successor list; adopt its list, and a closer node only if it
        answers; then ask the head to rectify its predecessor to us."""
        node = self.node
        self.rounds += 1
        before = node.snapshot()
        try:
            while True:
                head = node.state.successors[0] if node.state.successors else None
                if head is None:
                    # Alone (or everyone we knew died): a predecessor is the only way back in.
                    head = await self._revive_from_predecessor()
                    if head is None:
                        return
                try:
                    reply = await node.call(head.address, "GetNeighbors", pb.GetNeighborsRequest())
                except (PeerUnavailable, RemoteError):
                    node.state.forget(head.id)
                    node.cache.forget(head.id)
                    node.observer.repaired("successor")
                    log.info("%s: successor %s does not answer: dropped, the next one takes "
                             "its place", node.me.address, head.address)
                    continue
                node.state.adopt_successors(head, nodes_from_pb(node.space, reply.successors))
                # Follow predecessors back towards us while they are closer (bounded): nodes
                # that joined into one gap together are all adopted in one round, not one per
                # round. Each is adopted only after it answered.
                for _ in range(node.state.r):
                    if not reply.HasField("predecessor"):
                        break
                    p = node_from_pb(node.space, reply.predecessor)
                    if not between(p.id, node.me.id, head.id):
                        break
                    try:
                        reply = await node.call(p.address, "GetNeighbors",
                                                 pb.GetNeighborsRequest())
                    except (PeerUnavailable, RemoteError):
                        break  # never adopt a node that did not answer
                    node.state.adopt_successors(p, nodes_from_pb(node.space, reply.successors))
                    head = p
                break
        finally:
            node.changed(before)
            node.observer.stabilized()
        if node.state.successors:
            try:
                await node.call(
                    node.state.successors[0].address,
                    "Rectify",
                    pb.RectifyRequest(candidate=node.me_pb()),
                )
            except (PeerUnavailable, RemoteError):
                pass  # next round finds out

    async def _revive_from_predecessor(self) -> NodeRef | None:
        node = self.node
        pred = node.state.predecessor
        if pred is None or pred.id == node.me.id:
            return None
        try:
            await node.call(pred.address, "Ping", pb.PingRequest())
        except (PeerUnavailable, RemoteError):
            node.state.forget(pred.id)
            return None
        return pred

    async def fix_fingers(self, hints: list[NodeRef] | None = None) -> None:
        """Refresh one finger (and every later finger the same node covers).

        A finger that answers and whose predecessor precedes the finger's start is still the
        successor of that start: one call confirms it (a few if nodes joined in between), and
        only a failed check costs a lookup. A settled ring's maintenance stays at a few calls
        per round."""
        node = self.node
        if not node.state.successors:
            node.state.fingers = [None] * node.space.bits
            return
        i = self.next_finger
        start = node.space.finger_start(node.me.id, i)
        old = node.state.fingers[i]
        # Without a finger, a hint (a neighbour's finger): the first known node at or after start.
        dist = node.space.distance
        near = old if old is not None else next(
            (h for h in hints or [] if dist(node.me.id, h.id) >= dist(node.me.id, start)), None)
        found = await self._confirm_finger(near, start) if near is not None else None
        if found is not None:
            if old is not None:
                node.observer.finger_checked(found.id == old.id)
            self.next_finger = node.state.set_finger_run(i, found)
            node.cache.learn([found])
            return
        old = node.state.fingers[i]  # the check may have found it dead and forgotten it
        try:
            result = await self.routing.originate(start, "", b"", first_hop=None, observe=False)
        except LookupFailed:
            self.next_finger = (i + 1) % node.space.bits
            return
        if old is not None or result.owner.id != node.me.id:
            node.observer.finger_checked(old is not None and old.id == result.owner.id)
        if result.owner.id == node.me.id:
            # start lies in (pred, me]: no node in [start, me) - the finger is empty, wrap around.
            node.state.fingers[i] = None
            self.next_finger = 0
            return
        self.next_finger = node.state.set_finger_run(i, result.owner)
        node.cache.learn([result.owner])

    async def _confirm_finger(self, finger: NodeRef, start: int) -> NodeRef | None:
        """The successor of `start`, found by asking `finger` (a node at or after start) and
        walking back along predecessor pointers while they are still at or after start: a
        few calls where a lookup would take about log2 N hops. None if the walk does not
        end within a few steps; only a node that answered is ever returned."""
        node = self.node
        for _ in range(3):
            try:
                reply = await node.call(finger.address, "GetNeighbors",
                                         pb.GetNeighborsRequest())
            except (PeerUnavailable, RemoteError):
                node.forget(finger.id, "finger")
                return None
            if not reply.HasField("predecessor"):
                return None
            pred = node_from_pb(node.space, reply.predecessor)
            if between_right(start, pred.id, finger.id):
                return finger
            dist = node.space.distance
            if pred.id == node.me.id or dist(start, pred.id) >= dist(start, finger.id):
                return None  # pointers disagree with the ring: leave it to a lookup
            finger = pred  # someone joined between start and finger
        return None

    async def fill_fingers(self) -> None:
        """Find every finger once. The successor's fingers serve as hints (the Chord paper's
        join): a hint confirmed with one call saves a lookup of about log2 N hops."""
        node = self.node
        self.next_finger = 0
        hints: list[NodeRef] = []
        if node.state.successors:
            try:
                reply = await node.call(node.state.successors[0].address, "GetNeighbors",
                                         pb.GetNeighborsRequest(with_fingers=True))
                hints = nodes_from_pb(node.space, [*reply.successors, *reply.fingers])
            except (PeerUnavailable, RemoteError):
                pass  # no hints: plain lookups
        hints = sorted({h.id: h for h in hints if h.id != node.me.id}.values(),
                       key=lambda h: node.space.distance(node.me.id, h.id))
        for _ in range(node.space.bits):
            try:
                await self.fix_fingers(hints)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("filling fingers failed on %s", node.me.address)
                return
            if self.next_finger == 0:
                return

    async def check_predecessor(self) -> None:
        node = self.node
        pred = node.state.predecessor
        if pred is None:
            return
        before = node.snapshot()
        try:
            await node.call(pred.address, "Ping", pb.PingRequest())
        except (PeerUnavailable, RemoteError):
            if node.state.predecessor == pred:
                node.state.predecessor = None
            node.state.forget(pred.id)
            node.observer.repaired("predecessor")
            log.info("%s: predecessor %s does not answer: dropped (the next one to rectify "
                     "us takes its place)", node.me.address, pred.address)
        node.changed(before)
