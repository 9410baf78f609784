"""The Chord node protocol: join, stabilize, rectify, fix fingers, check predecessor, leave,
and recursive/iterative routing.

Written against `chord.ports` only (a transport and a clock): the same code runs over gRPC and
on the in-memory, virtual-time network. Ring maintenance follows Zave's correct Chord: the
successor list is replaced whole from a node that just answered, rectify replaces notify, and a
node that did not answer is forgotten everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from chord.ids import IdSpace, between, between_right
from chord.kbr import Forward, LookupFailed, NeighborChange, RouteResult, Upcalls
from chord.ports import Clock, InvalidRequest, Observer, PeerUnavailable, RemoteError, Transport
from chord.state import NodeRef, RingState
from chord.wire import key_from_pb, node_from_pb, node_to_pb, nodes_from_pb, nodes_to_pb
from chordcast.v1 import chord_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeConfig:
    successors: int = 8
    stabilize_interval: float = 0.5
    rpc_timeout: float = 1.0
    lookup_timeout: float = 5.0
    max_hops: int = 64
    check_predecessor_every: int = 2  # stabilization rounds


class JoinFailed(Exception):
    pass


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


class ChordNode:
    def __init__(
        self,
        space: IdSpace,
        address: str,
        transport: Transport,
        config: NodeConfig | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.space = space
        self.config = config or NodeConfig()
        self.me = NodeRef(space.hash_address(address), address)
        self._me_pb = node_to_pb(space, self.me)
        self._neighbors_cache: tuple[list[NodeRef] | None, NodeRef | None,
                                     pb.GetNeighborsReply] = (None, None, pb.GetNeighborsReply())
        self.state = RingState(space, self.me, self.config.successors)
        self.transport = transport
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        self.observer = observer or Observer()
        self.upcalls: Upcalls = _NoApps()
        self.running = False
        self.stopped = False
        self.stabilize_rounds = 0
        self._next_finger = 0
        self._next_request = 0
        self._pending: dict[int, asyncio.Future[pb.RouteResultRequest]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers = {
            "Ping": self._on_ping,
            "GetNeighbors": self._on_get_neighbors,
            "Rectify": self._on_rectify,
            "Route": self._on_route,
            "RouteResult": self._on_route_result,
            "NextHop": self._on_next_hop,
            "LeaveNotice": self._on_leave_notice,
            "AppCall": self._on_app_call,
            "Spread": self._on_spread,
        }

    # ================================================================== life cycle
    async def join(self, bootstrap: list[str]) -> None:
        """Zave's join: ask a known node for lookup(me), take that node's list, predecessor none.

        Tries every bootstrap address in turn; an empty list starts a new ring."""
        reasons = []
        for address in bootstrap:
            if address == self.me.address:
                continue
            try:
                owner = await self._lookup_via(address, self.me.id)
                if owner.address == self.me.address:
                    continue  # the seed was ourselves under another name (e.g. a DNS record)
                if owner.id == self.me.id:
                    raise JoinFailed(f"identifier collision with {owner.address}")
                reply = await self._call(owner.address, "GetNeighbors", pb.GetNeighborsRequest())
            except (PeerUnavailable, RemoteError, LookupFailed) as exc:
                reasons.append(f"{address}: {exc}")
                continue
            before = self._snapshot()
            self.state.adopt_successors(owner, nodes_from_pb(self.space, reply.successors))
            self.state.predecessor = None
            self._changed(before)
            await self.stabilize()
            return
        if bootstrap and reasons:
            raise JoinFailed("could not join through any of: " + "; ".join(reasons))

    def start(self) -> None:
        """Start periodic maintenance (stabilize, fix fingers, check predecessor)."""
        self.running = True
        self.spawn(self._maintain())

    async def stop(self) -> None:
        """Stop all activity at once (also how the simulator models a crash)."""
        self.running = False
        self.stopped = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for fut in self._pending.values():
            if not fut.done():  # whoever waits gets an answer, not a cancellation
                fut.set_result(pb.RouteResultRequest(error="the node stopped"))
        self._pending.clear()

    async def leave(self) -> None:
        """Graceful leave: tell predecessor and successor how to close the gap, then stop.

        Applications hand their data over before this (see `chord.kbr.Kbr.leave`)."""
        self.running = False
        succ, pred = self.state.successors, self.state.predecessor
        notices = []
        if succ:
            notices.append(
                self._call(
                    succ[0].address,
                    "LeaveNotice",
                    pb.LeaveNoticeRequest(
                        leaving=self._pb_me(),
                        predecessor=node_to_pb(self.space, pred) if pred else None,
                    ),
                )
            )
        if pred is not None and pred.id != self.me.id:
            notices.append(
                self._call(
                    pred.address,
                    "LeaveNotice",
                    pb.LeaveNoticeRequest(
                        leaving=self._pb_me(), successors=nodes_to_pb(self.space, succ)
                    ),
                )
            )
        await asyncio.gather(*notices, return_exceptions=True)
        await self.stop()

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

    async def _maintain(self) -> None:
        interval = self.config.stabilize_interval
        if not any(self.state.fingers):
            # A node that just joined finds all its fingers at once (the Chord paper's join),
            # so it routes in O(log N) hops from the start rather than after ~log N rounds.
            await self.fill_fingers()
        while self.running:
            try:
                await self.stabilize()
                await self.fix_fingers()
                if self.stabilize_rounds % self.config.check_predecessor_every == 0:
                    await self.check_predecessor()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not silently stop maintenance for good
                log.exception("maintenance round failed on %s", self.me.address)
            # Jitter keeps nodes started together from stabilizing in lockstep.
            await self.clock.sleep(interval * (0.75 + 0.5 * self.rng.random()))

    # ================================================================== maintenance
    async def stabilize(self) -> None:
        """Query the head of the successor list; adopt its list, and a closer node only if it
        answers; then ask the head to rectify its predecessor to us."""
        self.stabilize_rounds += 1
        before = self._snapshot()
        try:
            while True:
                head = self.state.successors[0] if self.state.successors else None
                if head is None:
                    # Alone (or everyone we knew died): a predecessor is the only way back in.
                    head = await self._revive_from_predecessor()
                    if head is None:
                        return
                try:
                    reply = await self._call(head.address, "GetNeighbors", pb.GetNeighborsRequest())
                except (PeerUnavailable, RemoteError):
                    self.state.forget(head.id)
                    self.observer.repaired("successor")
                    continue
                self.state.adopt_successors(head, nodes_from_pb(self.space, reply.successors))
                # Follow predecessors back towards us while they are closer (bounded): nodes
                # that joined into one gap together are all adopted in one round, not one per
                # round. Each is adopted only after it answered.
                for _ in range(self.state.r):
                    if not reply.HasField("predecessor"):
                        break
                    p = node_from_pb(self.space, reply.predecessor)
                    if not between(p.id, self.me.id, head.id):
                        break
                    try:
                        reply = await self._call(p.address, "GetNeighbors",
                                                 pb.GetNeighborsRequest())
                    except (PeerUnavailable, RemoteError):
                        break  # never adopt a node that did not answer
                    self.state.adopt_successors(p, nodes_from_pb(self.space, reply.successors))
                    head = p
                break
        finally:
            self._changed(before)
            self.observer.stabilized()
        if self.state.successors:
            try:
                await self._call(
                    self.state.successors[0].address,
                    "Rectify",
                    pb.RectifyRequest(candidate=self._pb_me()),
                )
            except (PeerUnavailable, RemoteError):
                pass  # next round finds out

    async def _revive_from_predecessor(self) -> NodeRef | None:
        pred = self.state.predecessor
        if pred is None or pred.id == self.me.id:
            return None
        try:
            await self._call(pred.address, "Ping", pb.PingRequest())
        except (PeerUnavailable, RemoteError):
            self.state.forget(pred.id)
            return None
        return pred

    async def fix_fingers(self, hints: list[NodeRef] | None = None) -> None:
        """Refresh one finger (and every later finger the same node covers).

        A finger that answers and whose predecessor precedes the finger's start is still the
        successor of that start: one call confirms it (a few if nodes joined in between), and
        only a failed check costs a lookup. A settled ring's maintenance stays at a few calls
        per round."""
        if not self.state.successors:
            self.state.fingers = [None] * self.space.bits
            return
        i = self._next_finger
        start = self.space.finger_start(self.me.id, i)
        old = self.state.fingers[i]
        # Without a finger, a hint (a neighbour's finger): the first known node at or after start.
        dist = self.space.distance
        near = old if old is not None else next(
            (h for h in hints or [] if dist(self.me.id, h.id) >= dist(self.me.id, start)), None)
        found = await self._confirm_finger(near, start) if near is not None else None
        if found is not None:
            if old is not None:
                self.observer.finger_checked(found.id == old.id)
            self._next_finger = self.state.set_finger_run(i, found)
            return
        old = self.state.fingers[i]  # the check may have found it dead and forgotten it
        try:
            result = await self._originate(start, "", b"", first_hop=None, observe=False)
        except LookupFailed:
            self._next_finger = (i + 1) % self.space.bits
            return
        if old is not None or result.owner.id != self.me.id:
            self.observer.finger_checked(old is not None and old.id == result.owner.id)
        if result.owner.id == self.me.id:
            # start lies in (pred, me]: no node in [start, me) - the finger is empty, wrap around.
            self.state.fingers[i] = None
            self._next_finger = 0
            return
        self._next_finger = self.state.set_finger_run(i, result.owner)

    async def _confirm_finger(self, node: NodeRef, start: int) -> NodeRef | None:
        """The successor of `start`, found by asking `node` (a node at or after start) and
        walking back along predecessor pointers while they are still at or after start: a
        few calls where a lookup would take about log2 N hops. None if the walk does not
        end within a few steps; only a node that answered is ever returned."""
        for _ in range(3):
            try:
                reply = await self._call(node.address, "GetNeighbors", pb.GetNeighborsRequest())
            except (PeerUnavailable, RemoteError):
                self._forget(node.id, "finger")
                return None
            if not reply.HasField("predecessor"):
                return None
            pred = node_from_pb(self.space, reply.predecessor)
            if between_right(start, pred.id, node.id):
                return node
            dist = self.space.distance
            if pred.id == self.me.id or dist(start, pred.id) >= dist(start, node.id):
                return None  # pointers disagree with the ring: leave it to a lookup
            node = pred  # someone joined between start and node
        return None

    async def fill_fingers(self) -> None:
        """Find every finger once. The successor's fingers serve as hints (the Chord paper's
        join): a hint confirmed with one call saves a lookup of about log2 N hops."""
        self._next_finger = 0
        hints: list[NodeRef] = []
        if self.state.successors:
            try:
                reply = await self._call(self.state.successors[0].address, "GetNeighbors",
                                         pb.GetNeighborsRequest(with_fingers=True))
                hints = nodes_from_pb(self.space, [*reply.successors, *reply.fingers])
            except (PeerUnavailable, RemoteError):
                pass  # no hints: plain lookups
        hints = sorted({h.id: h for h in hints if h.id != self.me.id}.values(),
                       key=lambda h: self.space.distance(self.me.id, h.id))
        for _ in range(self.space.bits):
            try:
                await self.fix_fingers(hints)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("filling fingers failed on %s", self.me.address)
                return
            if self._next_finger == 0:
                return

    async def check_predecessor(self) -> None:
        pred = self.state.predecessor
        if pred is None:
            return
        before = self._snapshot()
        try:
            await self._call(pred.address, "Ping", pb.PingRequest())
        except (PeerUnavailable, RemoteError):
            if self.state.predecessor == pred:
                self.state.predecessor = None
            self.state.forget(pred.id)
            self.observer.repaired("predecessor")
        self._changed(before)

    # ================================================================== routing
    async def route(self, key: int, app: str, payload: bytes) -> RouteResult:
        """KBR route from this node: deliver `payload` to the owner of `key` (recursive)."""
        return await self._originate(key, app, payload, first_hop=None)

    async def lookup(self, key: int) -> RouteResult:
        return await self.route(key, "", b"")

    async def lookup_iterative(self, key: int) -> RouteResult:
        """This node asks each hop in turn for the next one (no forward upcalls)."""
        path = [self.me]
        if self.state.owns(key) or not self.state.successors:
            return RouteResult(self.me, path, b"")
        done, candidates = self.state.next_hops(key)
        deadline = self.clock.now() + self.config.lookup_timeout
        while len(path) <= self.config.max_hops and self.clock.now() < deadline:
            for cand in candidates:
                if cand.id == self.me.id:
                    continue
                try:
                    reply = await self._call(cand.address, "NextHop", pb.NextHopRequest(
                        key=self.space.to_bytes(key)))
                except (PeerUnavailable, RemoteError):
                    self._forget(cand.id)
                    continue
                path.append(cand)
                if done:
                    # cand answered: it is alive and, by the previous hop's list, the owner.
                    return RouteResult(cand, path, b"")
                done = reply.done
                candidates = nodes_from_pb(self.space, reply.candidates)
                if done and candidates and candidates[0].id == cand.id:
                    return RouteResult(cand, path, b"")
                break
            else:
                raise LookupFailed(f"no live next hop toward {self.space.format(key)}",
                                   "no_route")
        raise LookupFailed(f"lookup of {self.space.format(key)} exceeded its hop or time limit",
                           "hop_limit")

    async def _lookup_via(self, address: str, key: int) -> NodeRef:
        result = await self._originate(key, "", b"", first_hop=address)
        return result.owner

    async def _originate(
        self, key: int, app: str, payload: bytes, first_hop: str | None, observe: bool = True
    ) -> RouteResult:
        started = self.clock.now()
        try:
            result = await self._originate_once(key, app, payload, first_hop)
        except LookupFailed as exc:
            if observe:
                self.observer.lookup_failed(exc.reason, self.clock.now() - started)
            raise
        if observe:
            self.observer.lookup(result.hops, self.clock.now() - started)
        return result

    async def _originate_once(
        self, key: int, app: str, payload: bytes, first_hop: str | None
    ) -> RouteResult:
        self._next_request += 1
        rid = self._next_request
        fut: asyncio.Future[pb.RouteResultRequest] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        timeout = self.config.lookup_timeout
        req = pb.RouteRequest(
            request_id=rid,
            key=self.space.to_bytes(key),
            app=app,
            payload=payload,
            origin=self._pb_me(),
            budget_ms=int(timeout * 1000),
        )
        try:
            if first_hop is None:
                self.spawn(self._process_route(req, self.clock.now() + timeout))
            else:
                await self._call(first_hop, "Route", req)
            result = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise LookupFailed(
                f"no answer for {self.space.format(key)} within {timeout:g}s", "timeout"
            ) from None
        except (PeerUnavailable, RemoteError) as exc:
            raise LookupFailed(str(exc), "no_route") from None
        finally:
            self._pending.pop(rid, None)
        if result.error:
            reason = ("hop_limit" if "hop limit" in result.error else
                      "no_route" if "no live next hop" in result.error else "error")
            raise LookupFailed(result.error, reason)
        return RouteResult(
            node_from_pb(self.space, result.owner),
            nodes_from_pb(self.space, result.path),
            result.payload,
        )

    async def _process_route(self, req: pb.RouteRequest, deadline: float) -> None:
        try:
            await self._route_step(req, deadline)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an application upcall failed: report it, never lose the reply
            log.debug("route %d failed on %s", req.request_id, self.me.address, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
            await self._finish(req, [*req.path, self._pb_me()], error=error)

    async def _route_step(self, req: pb.RouteRequest, deadline: float) -> None:
        """Take over a routed message: deliver it here or hand it to the best live next hop."""
        key = key_from_pb(self.space, req.key)
        origin = node_from_pb(self.space, req.origin)
        path = [*req.path, self._pb_me()]
        if len(path) > self.config.max_hops:
            await self._finish(req, path, error=f"hop limit {self.config.max_hops} reached")
            return
        st = self.state
        prev_hop = node_from_pb(self.space, req.path[-1]) if req.path else None
        tried: set[int] = set()
        # Re-plan after every failed attempt: once dead nodes are forgotten, the owner may
        # turn up in the successor list, or the key may turn out to be ours.
        for _ in range(self.config.successors + self.space.bits):
            if st.owns(key) or not st.successors or (req.final and st.predecessor is None):
                await self._deliver_here(req, key, origin, path)
                return
            pred = st.predecessor if req.final else None
            if pred is not None:
                # The sender thought we own key, but our predecessor is closer: it precedes us.
                final, candidates = True, [pred]
            else:
                final, candidates = st.next_hops(key)
            cand = next((c for c in candidates if c.id != self.me.id and c.id not in tried),
                        None)
            if cand is None and final and pred is None:
                # Every node we hold for the owner failed (a dead entry can come back with a
                # successor list adopted meanwhile): go on through the closest live node
                # before the key, whose own list reaches further.
                final = False
                cand = next((c for c in st.preceding_candidates(key) if c.id not in tried), None)
            if cand is None:
                break
            tried.add(cand.id)
            payload = req.payload
            if req.app:
                verdict = await self.upcalls.forward(key, req.app, payload, prev_hop, cand)
                if verdict.stop:
                    await self._finish(req, path, payload=verdict.reply)
                    return
                payload = verdict.payload
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return  # the origin has given up already
            nxt = pb.RouteRequest(
                request_id=req.request_id, key=req.key, app=req.app, payload=payload,
                origin=req.origin, path=path, final=final, budget_ms=int(remaining * 1000),
            )
            try:
                await self._call(cand.address, "Route", nxt, min(self.config.rpc_timeout,
                                                                 remaining))
                return
            except PeerUnavailable:
                self._forget(cand.id)
            except RemoteError as exc:
                log.debug("next hop %s refused a route: %s", cand.address, exc)
        if req.final:
            await self._deliver_here(req, key, origin, path)  # our predecessor is gone: ours now
            return
        await self._finish(req, path, error=f"no live next hop from {self.me.address}")

    async def _deliver_here(
        self, req: pb.RouteRequest, key: int, origin: NodeRef, path: list[pb.Node]
    ) -> None:
        try:
            reply = b""
            if req.app:
                reply = await self.upcalls.deliver(key, req.app, req.payload, origin)
        except InvalidRequest as exc:
            await self._finish(req, path, error=str(exc))
            return
        await self._finish(req, path, payload=reply)

    async def _finish(
        self, req: pb.RouteRequest, path: list[pb.Node], payload: bytes = b"", error: str = ""
    ) -> None:
        result = pb.RouteResultRequest(
            request_id=req.request_id, owner=self._pb_me(), path=path, payload=payload, error=error
        )
        if req.origin.address == self.me.address:
            self._resolve(result)
            return
        try:
            await self._call(req.origin.address, "RouteResult", result)
        except (PeerUnavailable, RemoteError):
            pass  # the origin is gone; nobody is waiting

    def _resolve(self, result: pb.RouteResultRequest) -> None:
        fut = self._pending.get(result.request_id)
        if fut is not None and not fut.done():
            fut.set_result(result)

    # ================================================================== handlers
    async def handle(self, method: str, request: Message) -> Message:
        """Entry point for every incoming Chord RPC (used by all transports)."""
        handler = self._handlers.get(method)
        if handler is None:
            raise InvalidRequest(f"unknown method {method!r}")
        return await handler(request)

    async def _on_ping(self, req: pb.PingRequest) -> pb.PingReply:
        return pb.PingReply(node=self._pb_me())

    async def _on_get_neighbors(self, req: pb.GetNeighborsRequest) -> pb.GetNeighborsReply:
        st = self.state
        if req.with_fingers:
            reply = pb.GetNeighborsReply()
            reply.CopyFrom(self._neighbors_pb())
            reply.fingers.extend(nodes_to_pb(self.space, st.distinct_fingers()))
            return reply
        return self._neighbors_pb()

    def _neighbors_pb(self) -> pb.GetNeighborsReply:
        # The most frequent answer of all (every stabilization round, every finger check):
        # built again only when the neighbours changed. The successor list is only ever
        # replaced whole, so its identity tells whether it changed. Callers never mutate it.
        st = self.state
        key = (st.successors, st.predecessor)
        cached_succ, cached_pred, reply = self._neighbors_cache
        if cached_succ is not key[0] or cached_pred != key[1]:
            reply = pb.GetNeighborsReply(
                node=self._pb_me(),
                predecessor=node_to_pb(self.space, st.predecessor) if st.predecessor else None,
                successors=nodes_to_pb(self.space, st.successors),
            )
            self._neighbors_cache = (st.successors, st.predecessor, reply)
        return reply

    async def _on_rectify(self, req: pb.RectifyRequest) -> pb.RectifyReply:
        """Zave's rectify: adopt the candidate if we have no predecessor, if it is closer than
        ours, or if ours no longer answers."""
        cand = node_from_pb(self.space, req.candidate)
        if cand.id == self.me.id:
            return pb.RectifyReply()
        before = self._snapshot()
        pred = self.state.predecessor
        if pred is None or between(cand.id, pred.id, self.me.id):
            self.state.predecessor = cand
        elif cand.id != pred.id:
            try:
                await self._call(pred.address, "Ping", pb.PingRequest())
            except (PeerUnavailable, RemoteError):
                self.state.forget(pred.id)
                self.state.predecessor = cand
        if not self.state.successors:
            # A two-node ring forms here: the first node learns its successor from its
            # predecessor, which just called us and so is alive.
            self.state.adopt_successors(cand, [])
        self._changed(before)
        return pb.RectifyReply()

    async def _on_route(self, req: pb.RouteRequest) -> pb.RouteAck:
        key_from_pb(self.space, req.key)
        node_from_pb(self.space, req.origin)
        nodes_from_pb(self.space, req.path)
        if len(req.path) > self.config.max_hops:
            raise InvalidRequest("path longer than the hop limit")
        budget = min(req.budget_ms / 1000, self.config.lookup_timeout)
        self.spawn(self._process_route(req, self.clock.now() + budget))
        return pb.RouteAck()

    async def _on_route_result(self, req: pb.RouteResultRequest) -> pb.RouteResultReply:
        self._resolve(req)
        return pb.RouteResultReply()

    async def _on_next_hop(self, req: pb.NextHopRequest) -> pb.NextHopReply:
        key = key_from_pb(self.space, req.key)
        if self.state.owns(key):
            return pb.NextHopReply(done=True, candidates=[self._pb_me()])
        done, candidates = self.state.next_hops(key)
        return pb.NextHopReply(done=done, candidates=nodes_to_pb(self.space, candidates[:4]))

    async def _on_leave_notice(self, req: pb.LeaveNoticeRequest) -> pb.LeaveNoticeReply:
        leaving = node_from_pb(self.space, req.leaving)
        before = self._snapshot()
        was_pred = self.state.predecessor is not None and self.state.predecessor.id == leaving.id
        self.state.forget(leaving.id)
        if was_pred and req.HasField("predecessor"):
            new_pred = node_from_pb(self.space, req.predecessor)
            if new_pred.id != self.me.id and await self._answers(new_pred):
                self.state.predecessor = new_pred
        succs = [s for s in nodes_from_pb(self.space, req.successors) if s.id != self.me.id]
        head = self.state.successors[0] if self.state.successors else None
        # Take the leaving node's list unless we already know a closer live successor.
        if succs and (head is None or not between(head.id, self.me.id, succs[0].id)):
            if await self._answers(succs[0]):
                self.state.adopt_successors(succs[0], succs[1:])
        self._changed(before)
        return pb.LeaveNoticeReply()

    async def _on_app_call(self, req: pb.AppCallRequest) -> pb.AppCallReply:
        sender = node_from_pb(self.space, req.sender)
        return pb.AppCallReply(payload=await self.upcalls.direct(req.app, req.payload, sender))

    async def _on_spread(self, req: pb.SpreadRequest) -> pb.SpreadAck:
        origin = node_from_pb(self.space, req.origin)
        limit = key_from_pb(self.space, req.limit)
        self.spawn(self._spread(req.app, req.payload, origin, limit))
        return pb.SpreadAck()

    # ================================================================== KBR helpers
    async def broadcast(self, app: str, payload: bytes) -> None:
        """Deliver `payload` to `app` on every ring node (this one included)."""
        await self._spread(app, payload, self.me, self.me.id)

    async def _spread(self, app: str, payload: bytes, origin: NodeRef, limit: int) -> None:
        """Deliver here, then hand each known node in (me, limit) the stretch up to the next
        one: every node is reached once, in O(log N) steps when the fingers are right."""
        try:
            await self.upcalls.direct(app, payload, origin)
        except Exception:
            log.exception("broadcast delivery to %s failed on %s", app, self.me.address)
        targets = sorted(
            {n.id: n for n in [*self.state.fingers, *self.state.successors]
             if n is not None and between(n.id, self.me.id, limit)}.values(),
            key=lambda n: self.space.distance(self.me.id, n.id),
        )
        limits = [t.id for t in targets[1:]] + [limit]
        await asyncio.gather(*(self._spread_to(app, payload, origin, t, lim)
                               for t, lim in zip(targets, limits, strict=True)))

    async def _spread_to(self, app: str, payload: bytes, origin: NodeRef, target: NodeRef,
                         limit: int) -> None:
        req = pb.SpreadRequest(app=app, payload=payload, origin=node_to_pb(self.space, origin),
                               limit=self.space.to_bytes(limit))
        try:
            await self._call(target.address, "Spread", req)
            return
        except (PeerUnavailable, RemoteError):
            self._forget(target.id)
        # The target is gone: its stretch now starts at its successor, if that is still ours.
        try:
            owner = (await self.lookup(target.id)).owner
        except LookupFailed:
            return
        if owner.id != self.me.id and between(owner.id, self.me.id, limit):
            try:
                await self._call(owner.address, "Spread", req)
            except (PeerUnavailable, RemoteError):
                pass


    async def app_call(self, node: NodeRef, app: str, payload: bytes) -> bytes:
        """Send an application message straight to `node` (not routed)."""
        if node.id == self.me.id:
            return await self.upcalls.direct(app, payload, self.me)
        try:
            reply = await self._call(
                node.address, "AppCall", pb.AppCallRequest(app=app, payload=payload,
                                                           sender=self._pb_me()))
        except PeerUnavailable:
            self._forget(node.id)
            raise
        return reply.payload

    # ================================================================== internals
    async def _call(
        self, address: str, method: str, request: Message, timeout: float | None = None
    ) -> Any:
        return await self.transport.call(
            address, method, request, timeout if timeout is not None else self.config.rpc_timeout
        )

    async def _answers(self, node: NodeRef) -> bool:
        try:
            await self._call(node.address, "Ping", pb.PingRequest())
            return True
        except (PeerUnavailable, RemoteError):
            return False

    def _forget(self, node_id: int, pointer: str = "next_hop") -> None:
        before = self._snapshot()
        self.state.forget(node_id)
        self._changed(before)
        self.observer.repaired(pointer)

    def _pb_me(self) -> pb.Node:
        # Built once: assigning a message to a field copies it, so sharing it is safe.
        return self._me_pb

    def _snapshot(self) -> tuple[list[NodeRef], NodeRef | None]:
        return list(self.state.successors), self.state.predecessor

    def _changed(self, before: tuple[list[NodeRef], NodeRef | None]) -> None:
        old_succ, old_pred = before
        if old_succ != self.state.successors or old_pred != self.state.predecessor:
            self.upcalls.update(
                NeighborChange(old_succ, list(self.state.successors), old_pred,
                               self.state.predecessor)
            )
