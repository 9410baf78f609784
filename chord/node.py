"""A Chord node: its life cycle (join, start, the maintenance loop, stop, leave) on top of
`chord.core.NodeCore` (configuration, state, ports and the internals every part shares).

The protocol itself lives in three parts the node composes: `chord.maintenance` (stabilize,
fingers, predecessor check), `chord.routing` (route, lookups, broadcast, direct calls) and
`chord.handlers` (the incoming RPCs). `ChordNode` keeps the whole public API as thin
delegations. All of it is written against `chord.ports` only (a transport and a clock): the
same code runs over gRPC and on the in-memory, virtual-time network.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from google.protobuf.message import Message

from chord.core import NodeConfig, NodeCore
from chord.handlers import Handlers
from chord.ids import IdSpace
from chord.kbr import LookupFailed, RouteResult
from chord.maintenance import Maintenance
from chord.ports import Clock, Observer, PeerUnavailable, RemoteError, Transport
from chord.routing import AppFlow, Routing
from chord.state import NodeRef
from chord.wire import node_to_pb, nodes_from_pb, nodes_to_pb
from chordcast.v1 import chord_pb2 as pb

log = logging.getLogger(__name__)

QUIET_ROUNDS = 4  # quiet stabilization rounds before the interval doubles (when it backs off)


class JoinFailed(Exception):
    pass


class ForeignRing(JoinFailed):
    """The seed is in another ring than the one this node belongs to."""


class ChordNode(NodeCore):
    """A Chord node: the core plus its parts (routing, maintenance, handlers) and its life
    cycle. Its methods are the public API the transports, KBR and the simulator use."""

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
        super().__init__(space, address, transport, config, clock, rng, observer, secure_rng)
        self._watches: dict[str, asyncio.Task[Any]] = {}  # neighbour address -> its watch
        self.routing = Routing(self)
        self.maintenance = Maintenance(self, self.routing)
        self.handlers = Handlers(self, self.routing)

    # ================================================================== life cycle
    async def join(self, bootstrap: list[str]) -> None:
        """Zave's join: ask a known node for lookup(me), take that node's list, predecessor none.

        Tries every bootstrap address in turn; an empty list starts a new ring."""
        reasons = []
        for address in bootstrap:
            if address == self.me.address:
                continue
            try:
                owner = await self.routing.lookup_via(address, self.me.id)
                if owner.address == self.me.address:
                    # The ring still knows our previous run (restarted at the same address,
                    # before the others noticed it stopped): our successor is the node after
                    # us, which owns the next id.
                    owner = await self.routing.lookup_via(
                        address, (self.me.id + 1) % self.space.size)
                if owner.address == self.me.address:
                    continue  # the seed was ourselves under another name (e.g. a DNS record)
                if owner.id == self.me.id:
                    raise JoinFailed(f"identifier collision with {owner.address}")
                reply = await self.call(owner.address, "GetNeighbors", pb.GetNeighborsRequest())
            except (PeerUnavailable, RemoteError, LookupFailed) as exc:
                said = str(exc)  # (a peer's error names its address already)
                reasons.append(said if said.startswith(f"{address}:") else f"{address}: {said}")
                continue
            if self.ring_id and reply.ring and reply.ring != self.ring_id:
                raise ForeignRing(f"this node belongs to ring {self.ring_id}, but {address} "
                                  f"is in ring {reply.ring}")
            self.ring_id = self.ring_id or reply.ring
            before = self.snapshot()
            self.state.adopt_successors(owner, nodes_from_pb(self.space, reply.successors))
            self.state.predecessor = None
            self.changed(before)
            await self.stabilize()
            return
        if bootstrap and reasons:
            raise JoinFailed("could not join through any of: " + "; ".join(reasons))
        if not self.ring_id:  # founding a ring
            self.ring_id = f"{self.secure_rng.getrandbits(64):016x}"

    def start(self) -> None:
        """Start periodic maintenance (stabilize, fix fingers, check predecessor)."""
        self.running = True
        self.spawn(self._maintain())

    async def stop(self) -> None:
        """Stop all activity at once (also how the simulator models a crash)."""
        self.running = False
        self.stopped = True
        await self.cancel_tasks()
        self.routing.abandon()

    async def leave(self) -> None:
        """Graceful leave: tell predecessor and successor how to close the gap, then stop.

        Applications hand their data over before this (see `chord.kbr.Kbr.leave`)."""
        self.running = False
        succ, pred = self.state.successors, self.state.predecessor
        notices = []
        if succ:
            notices.append(
                self.call(
                    succ[0].address,
                    "LeaveNotice",
                    pb.LeaveNoticeRequest(
                        leaving=self.me_pb(),
                        predecessor=node_to_pb(self.space, pred) if pred else None,
                    ),
                )
            )
        if pred is not None and pred.id != self.me.id:
            notices.append(
                self.call(
                    pred.address,
                    "LeaveNotice",
                    pb.LeaveNoticeRequest(
                        leaving=self.me_pb(), successors=nodes_to_pb(self.space, succ)
                    ),
                )
            )
        await asyncio.gather(*notices, return_exceptions=True)
        await self.stop()

    async def _maintain(self) -> None:
        interval = self.config.stabilize_interval
        if not any(self.state.fingers):
            # A node that just joined finds all its fingers at once (the Chord paper's join),
            # so it routes in O(log N) hops from the start rather than after ~log N rounds.
            await self.fill_fingers()
        quiet = 0  # rounds in a row in which nothing changed
        while self.running:
            woken = self.wake.is_set()
            self.wake.clear()
            activity = self.activity
            try:
                await self.stabilize()
                await self.fix_fingers()
                await self.maintenance.gossip()
                if woken or self.stabilize_rounds % self.config.check_predecessor_every == 0:
                    await self.check_predecessor()
                self._watch_neighbours()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not silently stop maintenance for good
                log.exception("maintenance round failed on %s", self.me.address)
            quiet = quiet + 1 if self.activity == activity and not woken else 0
            # Jitter keeps nodes started together from stabilizing in lockstep.
            pause = interval * self._backoff(quiet) * (0.75 + 0.5 * self.rng.random())
            await self._pause(pause, interval / 4)

    def _backoff(self, quiet: int) -> int:
        """The factor on the stabilization interval: doubles every QUIET_ROUNDS quiet rounds,
        up to `idle_backoff`."""
        return min(self.config.idle_backoff, 1 << min(quiet // QUIET_ROUNDS, 16))

    async def _pause(self, seconds: float, at_least: float) -> None:
        """Wait until the next round: `seconds`, or less when something changes (but never
        less than `at_least`, so a burst of changes cannot make rounds run back to back)."""
        if self.config.idle_backoff <= 1:
            await self.clock.sleep(seconds)
            return
        started = self.clock.now()
        try:
            await asyncio.wait_for(self.wake.wait(), seconds)
        except TimeoutError:
            return
        rest = at_least - (self.clock.now() - started)
        if rest > 0:
            await self.clock.sleep(rest)

    def _watch_neighbours(self) -> None:
        """Watch the connections to the successor and the predecessor (when maintenance
        backs off): one closing starts a round at once, so a crash is repaired as fast as
        with a short fixed interval."""
        if self.config.idle_backoff <= 1:
            return
        wanted = {n.address for n in (*self.state.successors[:1], self.state.predecessor)
                  if n is not None and n.id != self.me.id}
        for address in [a for a in self._watches if a not in wanted]:
            self._watches.pop(address).cancel()
        for address in wanted - self._watches.keys():
            self._watches[address] = self.spawn(self._watch(address))

    async def _watch(self, address: str) -> None:
        try:
            await self.transport.watch(address)
        finally:
            if self._watches.get(address) is asyncio.current_task():
                del self._watches[address]  # a newer watch of the same node stays
        self.stirred()

    # ================================================================== maintenance
    @property
    def stabilize_rounds(self) -> int:
        return self.maintenance.rounds

    async def stabilize(self) -> None:
        await self.maintenance.stabilize()

    async def fix_fingers(self, hints: list[NodeRef] | None = None) -> None:
        await self.maintenance.fix_fingers(hints)

    async def fill_fingers(self) -> None:
        await self.maintenance.fill_fingers()

    async def check_predecessor(self) -> None:
        await self.maintenance.check_predecessor()

    # ================================================================== routing
    async def route(self, key: int, app: str, payload: bytes, one_hop: bool = False
                    ) -> RouteResult:
        """KBR route from this node: deliver `payload` to the owner of `key` (recursive, or
        one hop from the location cache when `one_hop` allows it)."""
        return await self.routing.route(key, app, payload, one_hop)

    async def lookup(self, key: int) -> RouteResult:
        return await self.routing.lookup(key)

    async def lookup_iterative(self, key: int) -> RouteResult:
        """This node asks each hop in turn for the next one (no forward upcalls)."""
        return await self.routing.lookup_iterative(key)

    async def broadcast(self, app: str, payload: bytes) -> int:
        """Deliver `payload` to `app` on every ring node (this one included); returns how
        many delivered it."""
        return await self.routing.broadcast(app, payload)

    async def app_call(self, node: NodeRef, app: str, payload: bytes) -> bytes:
        """Send an application message straight to `node` (not routed)."""
        return await self.routing.app_call(node, app, payload)

    def app_flow(self, node: NodeRef, app: str) -> AppFlow:
        """Application messages to `node`, one way, in order (see AppFlow)."""
        return AppFlow(self, node, app)

    # ================================================================== incoming RPCs
    async def handle(self, method: str, request: Message) -> Message:
        """Entry point for every incoming Chord RPC (used by all transports)."""
        return await self.handlers.handle(method, request)
