"""What every part of a Chord node shares: its configuration, identity, ring state and ports,
and the few internals the parts all use (calling a peer, forgetting a dead one, telling the
layer above that the neighbours changed, owning background tasks).

`chord.node.ChordNode` is a `NodeCore` that composes the protocol parts (`chord.routing`,
`chord.maintenance`, `chord.handlers`); the parts are written against `NodeCore`, so none of
them imports `chord.node`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from chord.cache import LocationCache
from chord.ids import IdSpace
from chord.kbr import Forward, NeighborChange, Upcalls
from chord.ports import Clock, InvalidRequest, Observer, PeerUnavailable, RemoteError, Transport
from chord.state import NodeRef, RingState
from chord.wire import node_to_pb
from chordcast.v1 import chord_pb2 as pb

log = logging.getLogger(__name__)

Snapshot = tuple[list[NodeRef], NodeRef | None]  # successor list and predecessor, before a change


@dataclass(frozen=True)
class NodeConfig:
    successors: int = 8
    stabilize_interval: float = 0.5
    rpc_timeout: float = 1.0
    lookup_timeout: float = 5.0
    max_hops: int = 64
    check_predecessor_every: int = 2  # stabilization rounds
    location_cache: int = 0  # nodes remembered for one-hop routing; 0: plain Chord
    # While nothing changes, the stabilization interval doubles every few quiet rounds up to
    # this factor; any change, or a neighbour's connection closing, brings it back at once.
    # 1: a fixed interval (the Chord paper's and the simulator's setting).
    idle_backoff: int = 1


class _NoApps:
    async def forward(
        self, key: int, app: str, payload: bytes, prev_hop: NodeRef | None, next_hop: NodeRef
    ) -> Forward:
        return Forward(payload)

    async def deliver(self, key: int, app: str, payload: bytes, origin: NodeRef) -> bytes:
        raise InvalidRequest(f"no application {app!r} on this node")

    async def direct(self, app: str, payload: bytes, sender: NodeRef) -> bytes:
        raise InvalidRequest(f"no application {app!r} on this node")

    def update(self, change: NeighborChange) -> None:
        pass


class NodeCore:
    """A node's identity, ring state, ports and the internals its protocol parts share."""

    def __init__(
        self,
        space: IdSpace,
        address: str,
        transport: Transport,
        config: NodeConfig | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observer: Observer | None = None,
        secure_rng: random.Random | None = None,
    ) -> None:
        self.space = space
        self.config = config or NodeConfig()
        self.me = NodeRef(space.hash_address(address), address)
        self._me_pb = node_to_pb(space, self.me)
        self.state = RingState(space, self.me, self.config.successors)
        self.transport = transport
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        # Numbers a peer must not guess (route request ids): the OS's entropy in a real node
        # (random.SystemRandom); the simulator's seeded rng there, so runs stay reproducible.
        # Kept apart from `rng`, which draws often (jitter, gossip samples) and may be cheap.
        self.secure_rng = secure_rng or self.rng
        # Which ring this node is in: drawn by the node that founds a ring, taken by every
        # node that joins it. A node that must be in one ring (its data is that ring's) sets
        # it before joining, and a join into another ring fails (ForeignRing).
        self.ring_id = ""
        self.observer = observer or Observer()
        self.cache = LocationCache(space, self.me, self.config.location_cache, self.rng)
        self.upcalls: Upcalls = _NoApps()
        self.running = False
        self.stopped = False
        self.activity = 0  # bumped by every change of neighbours and every dead node found
        self.wake = asyncio.Event()  # set to start the next maintenance round now
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task owned by this node (cancelled when the node stops; a
        stopped node starts nothing new, even from a request that was already in flight)."""
        if self.stopped:
            coro.close()
            coro = asyncio.sleep(0)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def call(
        self, address: str, method: str, request: Message, timeout: float | None = None
    ) -> Any:
        """One Chord RPC to a peer, within the RPC timeout unless told otherwise."""
        return await self.transport.call(
            address, method, request, timeout if timeout is not None else self.config.rpc_timeout
        )

    async def answers(self, node: NodeRef) -> bool:
        try:
            await self.call(node.address, "Ping", pb.PingRequest())
            return True
        except (PeerUnavailable, RemoteError):
            return False

    def forget(self, node_id: int, pointer: str = "next_hop") -> None:
        """A node did not answer: drop it everywhere, and count the repair."""
        before = self.snapshot()
        self.state.forget(node_id)
        self.cache.forget(node_id)
        self.changed(before)
        self.observer.repaired(pointer)
        self.stirred()

    def stirred(self) -> None:
        """Something changed: maintenance leaves its idle pace (at once, when it backs off)."""
        self.activity += 1
        if self.config.idle_backoff > 1:
            self.wake.set()

    def me_pb(self) -> pb.Node:
        # Built once: assigning a message to a field copies it, so sharing it is safe.
        return self._me_pb

    def snapshot(self) -> Snapshot:
        return list(self.state.successors), self.state.predecessor

    def changed(self, before: Snapshot) -> None:
        """Tell the layer above if the successor list or the predecessor changed since
        `before`."""
        old_succ, old_pred = before
        new_succ, new_pred = self.state.successors, self.state.predecessor
        # The neighbours an operator follows at info: a new first successor or predecessor
        # (a join next to us, a node back after a failure; a failure is logged where seen).
        if new_succ and old_succ and old_succ[0].id != new_succ[0].id:
            log.info("%s: successor is now %s (was %s)", self.me.address, new_succ[0].address,
                     old_succ[0].address)
        if new_pred is not None and old_pred is not None and old_pred.id != new_pred.id:
            log.info("%s: predecessor is now %s (was %s)", self.me.address, new_pred.address,
                     old_pred.address)
        if old_succ != self.state.successors or old_pred != self.state.predecessor:
            # Neighbours just adopted have answered: the best entries a cache can have.
            self.cache.learn([*self.state.successors, self.state.predecessor])
            self.stirred()
            self.upcalls.update(
                NeighborChange(old_succ, list(self.state.successors), old_pred,
                               self.state.predecessor)
            )
