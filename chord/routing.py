"""Routing on the Chord ring: recursive routes and lookups started here (each waits on a
pending request future until the owner reports back), the per-hop route step, delivery at the
owner, iterative lookup, the ring-wide broadcast and direct application calls.

Reaches peers only through the node core it runs on (`chord.core.NodeCore`); it never
imports `chord.node`, which composes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chord.core import NodeCore
from chord.ids import between
from chord.kbr import LookupFailed, RouteResult
from chord.ports import InvalidRequest, PeerUnavailable, RemoteError
from chord.state import NodeRef
from chord.wire import key_from_pb, node_from_pb, node_to_pb, nodes_from_pb
from chordcast.v1 import chord_pb2 as pb

log = logging.getLogger(__name__)

ONE_HOP_TRIES = 2  # the cached guess, then the best node a refusal's hints name


# Of the time left to a node spreading a broadcast, the part it waits for the next node's
# answer (the rest: going round that node, should it be gone), and of that the part the next
# node takes to answer for its stretch (the rest covers the network). Less than
# MIN_SPREAD_WAIT left: the stretch is handed on uncounted, with a budget of its own.
FIRST_TRY = 0.7
SPREAD_ANSWER = 0.9
MIN_SPREAD_WAIT = 0.02


class Tally:
    """Nodes of a broadcast's stretch that delivered it, as the counts come back."""

    def __init__(self) -> None:
        self.count = 0


class AppFlow:
    """Application messages straight to one node, one way and in order (a transport flow
    carrying AppCall requests). Raises PeerUnavailable once broken: then open another."""

    def __init__(self, host: NodeCore, node: NodeRef, app: str) -> None:
        self._host = host
        self._node = node
        self._app = app
        self._flow = host.transport.flow(node.address, "AppCall")
        self.broken = False

    async def send(self, payload: bytes) -> None:
        host = self._host
        if self.broken:
            raise PeerUnavailable(self._node.address, "flow broken")
        if self._node.id == host.me.id:
            await host.upcalls.direct(self._app, payload, host.me)
            return
        try:
            await self._flow.send(pb.AppCallRequest(app=self._app, payload=payload,
                                                    sender=host.me_pb()),
                                  host.config.rpc_timeout)
        except PeerUnavailable:
            self.broken = True
            host.forget(self._node.id)
            raise
        except RemoteError:
            self.broken = True
            raise


class Routing:
    """Routes that start, pass through or end at one node."""

    def __init__(self, node: NodeCore) -> None:
        self.node = node
        self._pending: dict[int, asyncio.Future[pb.RouteResultRequest]] = {}

    # ================================================================== origination
    async def route(self, key: int, app: str, payload: bytes, one_hop: bool = False
                    ) -> RouteResult:
        """KBR route from this node: deliver `payload` to the owner of `key` (recursive).
        `one_hop`: the application needs no forward upcalls on the way, so the location
        cache may send the message straight to the owner (plain lookups always may)."""
        return await self.originate(key, app, payload, first_hop=None,
                                    one_hop=one_hop or not app)

    async def lookup(self, key: int) -> RouteResult:
        return await self.route(key, "", b"")

    async def lookup_iterative(self, key: int) -> RouteResult:
        """This node asks each hop in turn for the next one (no forward upcalls)."""
        node = self.node
        path = [node.me]
        if node.state.owns(key) or not node.state.successors:
            return RouteResult(node.me, path, b"")
        done, candidates = node.state.next_hops(key)
        deadline = node.clock.now() + node.config.lookup_timeout
        while len(path) <= node.config.max_hops and node.clock.now() < deadline:
            for cand in candidates:
                if cand.id == node.me.id:
                    continue
                try:
                    reply = await node.call(cand.address, "NextHop", pb.NextHopRequest(
                        key=node.space.to_bytes(key)))
                except (PeerUnavailable, RemoteError):
                    node.forget(cand.id)
                    continue
                path.append(cand)
                if done:
                    # cand answered: it is alive and, by the previous hop's list, the owner.
                    return RouteResult(cand, path, b"")
                done = reply.done
                candidates = nodes_from_pb(node.space, reply.candidates)
                if done and candidates and candidates[0].id == cand.id:
                    return RouteResult(cand, path, b"")
                break
            else:
                raise LookupFailed(f"no live next hop toward {node.space.format(key)}",
                                   "no_route")
        raise LookupFailed(f"lookup of {node.space.format(key)} exceeded its hop or time limit",
                           "hop_limit")

    async def lookup_via(self, address: str, key: int) -> NodeRef:
        """The owner of `key`, found by a route whose first hop is `address` (used to join)."""
        result = await self.originate(key, "", b"", first_hop=address)
        return result.owner

    async def originate(
        self, key: int, app: str, payload: bytes, first_hop: str | None, observe: bool = True,
        one_hop: bool = False,
    ) -> RouteResult:
        node = self.node
        started = node.clock.now()
        try:
            result = None
            if one_hop and first_hop is None and node.cache.enabled:
                result = await self._one_hop(key, app, payload)
            if result is None:
                result = await self._originate_once(key, app, payload, first_hop)
        except LookupFailed as exc:
            if observe:
                node.observer.lookup_failed(exc.reason, node.clock.now() - started)
            raise
        if observe:
            node.observer.lookup(result.hops, node.clock.now() - started)
        return result

    async def _one_hop(self, key: int, app: str, payload: bytes) -> RouteResult | None:
        """Ask the node the location cache names as the owner; it answers only if it owns
        the key (a hit: one call, the answer in the reply). A refusal's hints may name a
        better guess, tried once more. None: no guess, or no confirmed owner — Chord routing
        takes over, so a stale or dead entry costs a call, never a wrong answer."""
        node = self.node
        if node.state.owns(key) or not node.state.successors:
            return None  # ours (or we are alone): routing delivers here without a call
        req = pb.ResolveRequest(key=node.space.to_bytes(key), app=app, payload=payload,
                                origin=node.me_pb())
        tried: set[int] = set()
        for _ in range(ONE_HOP_TRIES):
            guess = node.cache.owner_guess(key)
            if guess is None or guess.id in tried:
                return None
            tried.add(guess.id)
            try:
                reply: pb.ResolveReply = await node.call(guess.address, "Resolve", req)
            except PeerUnavailable:
                node.forget(guess.id, "cache")
                continue
            except RemoteError:
                return None
            if reply.owner:
                if reply.error:
                    raise LookupFailed(reply.error, "error")
                return RouteResult(guess, [node.me, guess], reply.payload)
            node.cache.learn(nodes_from_pb(node.space, reply.hints))
        return None

    async def _originate_once(
        self, key: int, app: str, payload: bytes, first_hop: str | None
    ) -> RouteResult:
        node = self.node
        # Drawn, not counted: a node that could guess another's request ids could answer
        # its routes with forged results (a real node's rng draws from the OS).
        rid = node.secure_rng.getrandbits(63) or 1
        while rid in self._pending:
            rid = node.secure_rng.getrandbits(63) or 1
        fut: asyncio.Future[pb.RouteResultRequest] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        timeout = node.config.lookup_timeout
        req = pb.RouteRequest(
            request_id=rid,
            key=node.space.to_bytes(key),
            app=app,
            payload=payload,
            origin=node.me_pb(),
            budget_ms=int(timeout * 1000),
        )
        try:
            if first_hop is None:
                node.spawn(self.process_route(req, node.clock.now() + timeout))
            else:
                await node.call(first_hop, "Route", req)
            result = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise LookupFailed(
                f"no answer for {node.space.format(key)} within {timeout:g}s", "timeout"
            ) from None
        except (PeerUnavailable, RemoteError) as exc:
            raise LookupFailed(str(exc), "no_route") from None
        finally:
            self._pending.pop(rid, None)
        path = nodes_from_pb(node.space, result.path)
        node.cache.learn(path)  # every node on the path handled the message: it is alive
        if result.error:
            reason = ("hop_limit" if "hop limit" in result.error else
                      "no_route" if "no live next hop" in result.error else "error")
            raise LookupFailed(result.error, reason)
        return RouteResult(node_from_pb(node.space, result.owner), path, result.payload)

    def resolve(self, result: pb.RouteResultRequest) -> None:
        """A route started here has its answer: wake whoever waits for it."""
        fut = self._pending.get(result.request_id)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def abandon(self) -> None:
        """The node stopped: answer every route still waiting here with an error."""
        for fut in self._pending.values():
            if not fut.done():  # whoever waits gets an answer, not a cancellation
                fut.set_result(pb.RouteResultRequest(error="the node stopped"))
        self._pending.clear()

    # ================================================================== one hop
    async def process_route(self, req: pb.RouteRequest, deadline: float) -> None:
        """Handle a routed message on this node; a failure is reported to its origin."""
        try:
            await self._route_step(req, deadline)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an application upcall failed: report it, never lose the reply
            log.debug("route %d failed on %s", req.request_id, self.node.me.address,
                      exc_info=True)
            error = f"{type(exc).__name__}: {exc}"
            await self._finish(req, [*req.path, self.node.me_pb()], error=error)

    async def _route_step(self, req: pb.RouteRequest, deadline: float) -> None:
        """Take over a routed message: deliver it here or hand it to the best live next hop."""
        node = self.node
        key = key_from_pb(node.space, req.key)
        origin = node_from_pb(node.space, req.origin)
        path = [*req.path, node.me_pb()]
        if len(path) > node.config.max_hops:
            await self._finish(req, path, error=f"hop limit {node.config.max_hops} reached")
            return
        st = node.state
        prev_hop = node_from_pb(node.space, req.path[-1]) if req.path else None
        tried: set[int] = set()
        # Re-plan after every failed attempt: once dead nodes are forgotten, the owner may
        # turn up in the successor list, or the key may turn out to be ours.
        for _ in range(node.config.successors + node.space.bits):
            if st.owns(key) or not st.successors or (req.final and st.predecessor is None):
                await self._deliver_here(req, key, origin, path)
                return
            pred = st.predecessor if req.final else None
            if pred is not None:
                # The sender thought we own key, but our predecessor is closer: it precedes us.
                final, candidates = True, [pred]
            else:
                final, candidates = st.next_hops(key)
            cand = next((c for c in candidates if c.id != node.me.id and c.id not in tried),
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
                verdict = await node.upcalls.forward(key, req.app, payload, prev_hop, cand)
                if verdict.stop:
                    await self._finish(req, path, payload=verdict.reply)
                    return
                payload = verdict.payload
            remaining = deadline - node.clock.now()
            if remaining <= 0:
                return  # the origin has given up already
            nxt = pb.RouteRequest(
                request_id=req.request_id, key=req.key, app=req.app, payload=payload,
                origin=req.origin, path=path, final=final, budget_ms=int(remaining * 1000),
            )
            try:
                await node.call(cand.address, "Route", nxt, min(node.config.rpc_timeout,
                                                                 remaining))
                return
            except PeerUnavailable:
                node.forget(cand.id)
            except RemoteError as exc:
                log.debug("next hop %s refused a route: %s", cand.address, exc)
        if req.final:
            await self._deliver_here(req, key, origin, path)  # our predecessor is gone: ours now
            return
        await self._finish(req, path, error=f"no live next hop from {node.me.address}")

    async def _deliver_here(
        self, req: pb.RouteRequest, key: int, origin: NodeRef, path: list[pb.Node]
    ) -> None:
        try:
            reply = b""
            if req.app:
                reply = await self.node.upcalls.deliver(key, req.app, req.payload, origin)
        except InvalidRequest as exc:
            await self._finish(req, path, error=str(exc))
            return
        await self._finish(req, path, payload=reply)

    async def _finish(
        self, req: pb.RouteRequest, path: list[pb.Node], payload: bytes = b"", error: str = ""
    ) -> None:
        node = self.node
        result = pb.RouteResultRequest(
            request_id=req.request_id, owner=node.me_pb(), path=path, payload=payload,
            error=error,
        )
        if req.origin.address == node.me.address:
            self.resolve(result)
            return
        try:
            await node.call(req.origin.address, "RouteResult", result)
        except (PeerUnavailable, RemoteError):
            pass  # the origin is gone; nobody is waiting

    # ================================================================== broadcast
    async def broadcast(self, app: str, payload: bytes) -> int:
        """Deliver `payload` to `app` on every ring node (this one included); returns how
        many nodes delivered it within the lookup timeout (all of them, unless some stretch
        of the spread was slow or had to go round a failed node: it still delivers, later
        and uncounted)."""
        node = self.node
        return await self.counted_spread(app, payload, node.me, node.me.id,
                                         node.config.lookup_timeout)

    async def counted_spread(self, app: str, payload: bytes, origin: NodeRef, limit: int,
                             budget: float) -> int:
        """Spread our stretch in the background and answer within `budget` with how many
        nodes of it delivered so far: the budget bounds when we answer, never what the
        stretch delivers (so a short budget deep in the spread loses nothing)."""
        node = self.node
        tally = Tally()
        spreading = node.spawn(self.spread(app, payload, origin, limit,
                                           node.clock.now() + budget, tally))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(spreading), budget)
        return tally.count

    async def spread(self, app: str, payload: bytes, origin: NodeRef, limit: int,
                     deadline: float, tally: Tally) -> None:
        """Deliver here, then hand each known node in (me, limit) the stretch up to the next
        one: every node is reached once, in O(log N) steps when the fingers are right. Each
        stretch's count is added to `tally` as it comes back (by `deadline`, to be counted)."""
        node = self.node
        try:
            await node.upcalls.direct(app, payload, origin)
            tally.count += 1
        except InvalidRequest as exc:  # refused here (e.g. no such application): said once
            log.warning("broadcast from %s refused on %s: %s", origin.address,
                        node.me.address, exc)
        except Exception:
            log.exception("broadcast delivery to %s failed on %s", app, node.me.address)
        targets = sorted(
            {n.id: n for n in [*node.state.fingers, *node.state.successors]
             if n is not None and between(n.id, node.me.id, limit)}.values(),
            key=lambda n: node.space.distance(node.me.id, n.id),
        )
        if not targets:
            return  # a leaf of the spread: nobody left in our stretch
        limits = [t.id for t in targets[1:]] + [limit]
        await asyncio.gather(*(self._spread_to(app, payload, origin, t, lim, deadline, tally)
                               for t, lim in zip(targets, limits, strict=True)))

    async def _spread_to(self, app: str, payload: bytes, origin: NodeRef, target: NodeRef,
                         limit: int, deadline: float, tally: Tally) -> None:
        """Hand `target` its stretch, waiting FIRST_TRY of the time left for its answer (it
        answers within SPREAD_ANSWER of that, so a call that times out is a node that does
        not answer, not a slow stretch); the rest is for going round it. Past our deadline
        the stretch is still handed on, with time of its own, uncounted."""
        node = self.node
        req = pb.SpreadRequest(app=app, payload=payload, origin=node_to_pb(node.space, origin),
                               limit=node.space.to_bytes(limit))

        async def hand(to: NodeRef, part: float) -> None:
            left = (deadline - node.clock.now()) * part
            if left < MIN_SPREAD_WAIT:  # too late to count: the receiver takes its own time
                left, req.budget_ms = node.config.lookup_timeout, 0
            else:
                req.budget_ms = max(1, int(left * SPREAD_ANSWER * 1000))
            reply = await node.call(to.address, "Spread", req, timeout=left)
            tally.count += int(reply.reached)

        try:
            await hand(target, FIRST_TRY)
            return
        except (PeerUnavailable, RemoteError):
            node.forget(target.id)
        # The target is gone: its stretch now starts at its successor, if that is still ours.
        # Looked up as the owner of target+1: a node that has not noticed the crash yet would
        # still name the target as the owner of its own id (and the stretch would be lost).
        try:
            owner = (await self.lookup(node.space.add(target.id, 1))).owner
        except LookupFailed:
            return
        if owner.id != node.me.id and between(owner.id, node.me.id, limit):
            with contextlib.suppress(PeerUnavailable, RemoteError):
                await hand(owner, 1.0)

    # ================================================================== direct calls
    async def app_call(self, node: NodeRef, app: str, payload: bytes) -> bytes:
        """Send an application message straight to `node` (not routed)."""
        host = self.node
        if node.id == host.me.id:
            return await host.upcalls.direct(app, payload, host.me)
        try:
            reply: pb.AppCallReply = await host.call(
                node.address, "AppCall", pb.AppCallRequest(app=app, payload=payload,
                                                           sender=host.me_pb()))
        except PeerUnavailable:
            host.forget(node.id)
            raise
        return reply.payload
