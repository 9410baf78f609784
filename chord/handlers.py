"""The server side of the Chord service: one handler per incoming RPC, dispatched by method
name (`Handlers.handle` is what every transport calls).

Handlers answer from the node's ring state, apply Zave's rectify and a leaving node's notice,
and hand routed and broadcast messages to `chord.routing` in background tasks. They reach the
node only through `chord.core.NodeCore` and never import `chord.node`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from chord.core import NodeCore
from chord.ids import between
from chord.ports import InvalidRequest, PeerUnavailable, RemoteError
from chord.routing import Routing
from chord.state import NodeRef
from chord.wire import key_from_pb, node_from_pb, node_to_pb, nodes_from_pb, nodes_to_pb
from chordcast.v1 import chord_pb2 as pb

MAX_SAMPLE = 64  # nodes a neighbour may ask for in one location-cache sample


class Handlers:
    """One node's answers to incoming Chord RPCs, by method name."""

    def __init__(self, node: NodeCore, routing: Routing) -> None:
        self.node = node
        self.routing = routing
        self._neighbors_cache: tuple[list[NodeRef] | None, NodeRef | None,
                                     pb.GetNeighborsReply] = (None, None, pb.GetNeighborsReply())
        self._table: dict[str, Callable[[Any], Awaitable[Message]]] = {
            "Ping": self._on_ping,
            "GetNeighbors": self._on_get_neighbors,
            "Rectify": self._on_rectify,
            "Route": self._on_route,
            "RouteResult": self._on_route_result,
            "NextHop": self._on_next_hop,
            "LeaveNotice": self._on_leave_notice,
            "AppCall": self._on_app_call,
            "Spread": self._on_spread,
            "Resolve": self._on_resolve,
        }

    async def handle(self, method: str, request: Message) -> Message:
        """Entry point for every incoming Chord RPC (used by all transports)."""
        handler = self._table.get(method)
        if handler is None:
            raise InvalidRequest(f"unknown method {method!r}")
        return await handler(request)

    async def _on_ping(self, req: pb.PingRequest) -> pb.PingReply:
        return pb.PingReply(node=self.node.me_pb())

    async def _on_get_neighbors(self, req: pb.GetNeighborsRequest) -> pb.GetNeighborsReply:
        node = self.node
        if not req.with_fingers and not req.sample:
            return self._neighbors_pb()
        reply = pb.GetNeighborsReply()
        reply.CopyFrom(self._neighbors_pb())
        if req.with_fingers:
            reply.fingers.extend(nodes_to_pb(node.space, node.state.distinct_fingers()))
        if req.sample:
            reply.known.extend(nodes_to_pb(node.space, node.cache.sample(
                min(req.sample, MAX_SAMPLE))))
        return reply

    def _neighbors_pb(self) -> pb.GetNeighborsReply:
        # The most frequent answer of all (every stabilization round, every finger check):
        # built again only when the neighbours changed. The successor list is only ever
        # replaced whole, so its identity tells whether it changed. Callers never mutate it.
        node = self.node
        st = node.state
        key = (st.successors, st.predecessor)
        cached_succ, cached_pred, reply = self._neighbors_cache
        if cached_succ is not key[0] or cached_pred != key[1] or reply.ring != node.ring_id:
            reply = pb.GetNeighborsReply(
                node=node.me_pb(),
                predecessor=node_to_pb(node.space, st.predecessor) if st.predecessor else None,
                successors=nodes_to_pb(node.space, st.successors),
                ring=node.ring_id,
            )
            self._neighbors_cache = (st.successors, st.predecessor, reply)
        return reply

    async def _on_rectify(self, req: pb.RectifyRequest) -> pb.RectifyReply:
        """Zave's rectify: adopt the candidate if we have no predecessor, if it is closer than
        ours, or if ours no longer answers."""
        node = self.node
        cand = node_from_pb(node.space, req.candidate)
        if cand.id == node.me.id:
            return pb.RectifyReply()
        before = node.snapshot()
        pred = node.state.predecessor
        if pred is None or between(cand.id, pred.id, node.me.id):
            node.state.predecessor = cand
        elif cand.id != pred.id:
            try:
                await node.call(pred.address, "Ping", pb.PingRequest())
            except (PeerUnavailable, RemoteError):
                node.state.forget(pred.id)
                node.state.predecessor = cand
        if not node.state.successors:
            # A two-node ring forms here: the first node learns its successor from its
            # predecessor, which just called us and so is alive.
            node.state.adopt_successors(cand, [])
        node.changed(before)
        return pb.RectifyReply()

    async def _on_route(self, req: pb.RouteRequest) -> pb.RouteAck:
        node = self.node
        key_from_pb(node.space, req.key)
        node_from_pb(node.space, req.origin)
        nodes_from_pb(node.space, req.path)
        if len(req.path) > node.config.max_hops:
            raise InvalidRequest("path longer than the hop limit")
        budget = min(req.budget_ms / 1000, node.config.lookup_timeout)
        node.spawn(self.routing.process_route(req, node.clock.now() + budget))
        return pb.RouteAck()

    async def _on_resolve(self, req: pb.ResolveRequest) -> pb.ResolveReply:
        """One-hop routing: answer only as the key's owner (its predecessor precedes the key,
        so no node lies between them); otherwise refuse, naming the nodes to try."""
        node = self.node
        key = key_from_pb(node.space, req.key)
        origin = node_from_pb(node.space, req.origin)
        node.cache.learn([origin])
        st = node.state
        if st.predecessor is None or not st.owns(key):
            final, candidates = st.next_hops(key)
            hints = [st.predecessor, *(candidates[:3] if final else [])]
            return pb.ResolveReply(owner=False, hints=nodes_to_pb(
                node.space, [h for h in hints if h is not None and h.id != origin.id]))
        if not req.app:
            return pb.ResolveReply(owner=True)
        try:
            answer = await node.upcalls.deliver(key, req.app, req.payload, origin)
        except InvalidRequest as exc:
            return pb.ResolveReply(owner=True, error=str(exc))
        return pb.ResolveReply(owner=True, payload=answer)

    async def _on_route_result(self, req: pb.RouteResultRequest) -> pb.RouteResultReply:
        self.routing.resolve(req)
        return pb.RouteResultReply()

    async def _on_next_hop(self, req: pb.NextHopRequest) -> pb.NextHopReply:
        node = self.node
        key = key_from_pb(node.space, req.key)
        if node.state.owns(key):
            return pb.NextHopReply(done=True, candidates=[node.me_pb()])
        done, candidates = node.state.next_hops(key)
        return pb.NextHopReply(done=done, candidates=nodes_to_pb(node.space, candidates[:4]))

    async def _on_leave_notice(self, req: pb.LeaveNoticeRequest) -> pb.LeaveNoticeReply:
        node = self.node
        leaving = node_from_pb(node.space, req.leaving)
        before = node.snapshot()
        was_pred = node.state.predecessor is not None and node.state.predecessor.id == leaving.id
        node.state.forget(leaving.id)
        if was_pred and req.HasField("predecessor"):
            new_pred = node_from_pb(node.space, req.predecessor)
            if new_pred.id != node.me.id and await node.answers(new_pred):
                node.state.predecessor = new_pred
        succs = [s for s in nodes_from_pb(node.space, req.successors) if s.id != node.me.id]
        head = node.state.successors[0] if node.state.successors else None
        # Take the leaving node's list unless we already know a closer live successor.
        if succs and (head is None or not between(head.id, node.me.id, succs[0].id)):
            if await node.answers(succs[0]):
                node.state.adopt_successors(succs[0], succs[1:])
        node.changed(before)
        return pb.LeaveNoticeReply()

    async def _on_app_call(self, req: pb.AppCallRequest) -> pb.AppCallReply:
        node = self.node
        sender = node_from_pb(node.space, req.sender)
        return pb.AppCallReply(payload=await node.upcalls.direct(req.app, req.payload, sender))

    async def _on_spread(self, req: pb.SpreadRequest) -> pb.SpreadAck:
        node = self.node
        origin = node_from_pb(node.space, req.origin)
        limit = key_from_pb(node.space, req.limit)
        # Answered once the receiver's stretch is done or its budget is spent, whichever is
        # first, with how many of it delivered (the count adds up at the origin); the stretch
        # goes on regardless. No budget (a sender that gives none): the lookup timeout.
        budget = min(req.budget_ms / 1000 or node.config.lookup_timeout,
                     node.config.lookup_timeout)
        return pb.SpreadAck(reached=await self.routing.counted_spread(
            req.app, req.payload, origin, limit, budget))
