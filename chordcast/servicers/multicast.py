"""The Multicast gRPC service: what external clients (the CLI, `chordcast.Client`) call on any
node. External members are served over a server-streaming call fed from a bounded queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from chord.wire import node_to_pb
from chordcast import link
from chordcast.transport import RpcObserver, served_by
from chordcast.v1 import mcast_pb2 as mpb
from chordcast.v1 import mcast_pb2_grpc
from mcast.scribe import GroupSummary, McastError, Scribe
from mcast.tree import ANYCAST, ENDED, GAP, MESSAGE, Event, Member

log = logging.getLogger(__name__)

STREAM_QUEUE_LIMIT = 10_000
STREAM_QUEUE_BYTES = 16 << 20
# What one stream message to a member may carry: the events queued while the last was sent.
BATCH_EVENTS = 256
BATCH_BYTES = 1 << 20
STATUS = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "exists": grpc.StatusCode.ALREADY_EXISTS,
    "denied": grpc.StatusCode.PERMISSION_DENIED,
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}
KINDS = {
    MESSAGE: mpb.GroupEvent.MESSAGE,
    GAP: mpb.GroupEvent.GAP,
    ENDED: mpb.GroupEvent.ENDED,
    ANYCAST: mpb.GroupEvent.ANYCAST,
}
_OVERFLOW = object()
_LEFT = object()


async def _abort(context: grpc.aio.ServicerContext, exc: McastError) -> NoReturn:
    await context.abort(STATUS[exc.code], str(exc))
    raise AssertionError("abort returns only by raising")


@dataclass
class _Backlog:
    """A member stream's unread events: their payload bytes, whether it overflowed, and
    the last sequence number the member was given (where it resumes after lagging)."""

    bytes: int = 0
    lagged: bool = False
    given: int = 0

    def took(self, e: Event) -> None:
        self.bytes -= len(e.payload)
        if e.kind == MESSAGE:
            self.given = e.seq
        elif e.kind == GAP:
            self.given = max(self.given, e.last_seq)


def event_to_pb(e: Event) -> mpb.GroupEvent:
    return mpb.GroupEvent(kind=KINDS[e.kind], group=e.group, seq=e.seq, payload=e.payload,
                          sender=e.sender, ts_ms=e.ts_ms, last_seq=e.last_seq)


class MulticastServicer(mcast_pb2_grpc.MulticastServicer):
    def __init__(self, scribe: Scribe, ready: Any, streams: link.Streams,
                 observe: RpcObserver | None = None,
                 queue_bytes: int = STREAM_QUEUE_BYTES) -> None:
        self.scribe = scribe
        self.queue_bytes = queue_bytes  # a member's unread payload before it lags
        self.ready = ready  # callable: has the node joined a ring?
        self.streams = streams
        self.observe = observe
        self.methods: link.Methods = {"Send": (mpb.SendRequest, self.send)}
        self._streams: dict[tuple[str, str], list[tuple[Member, asyncio.Queue[Any]]]] = {}

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        if not self.ready():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node has not joined a ring yet")

    def _pb(self, node: Any) -> Any:
        return node_to_pb(self.scribe.kbr.space, node)

    async def Create(self, request: mpb.CreateGroupRequest, context: Any) -> mpb.CreateGroupReply:
        await self._check(context)
        try:
            token, root = await self.scribe.create(request.name, request.creator)
        except McastError as exc:
            await _abort(context, exc)
        space = self.scribe.kbr.space
        return mpb.CreateGroupReply(name=request.name,
                                    group_id=space.to_bytes(self.scribe.gid(request.name)),
                                    root=self._pb(root), token=token)

    async def Join(self, request: mpb.JoinGroupRequest, context: Any
                   ) -> AsyncIterator[mpb.GroupEvent]:
        await self._check(context)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        # What the member has not read yet is bounded in events and bytes. Beyond that it is
        # told it lagged and resumes from the archive; the tree never waits for it.
        backlog = _Backlog()

        def on_event(e: Event) -> None:
            if backlog.lagged:
                return
            if (queue.qsize() >= STREAM_QUEUE_LIMIT
                    or backlog.bytes + len(e.payload) > self.queue_bytes):
                backlog.lagged = True
                queue.put_nowait(_OVERFLOW)
                return
            backlog.bytes += len(e.payload)
            queue.put_nowait(e)

        try:
            member, start = await self.scribe.join(
                request.name, on_event, member=request.member,
                resume_after=request.last_seq if request.resume else None)
        except McastError as exc:
            await _abort(context, exc)
        backlog.given = start
        key = (request.name, member.name)
        self._streams.setdefault(key, []).append((member, queue))
        try:
            yield mpb.GroupEvent(kind=mpb.GroupEvent.JOINED, group=request.name, seq=start)
            held: Any = None  # taken from the queue, but for the next stream message
            while True:
                e = held if held is not None else await queue.get()
                held = None
                if e is _LEFT:
                    # Not a plain end of stream: the client would take that for a lost access
                    # node and re-attach. ABORTED tells it the member left for good.
                    await context.abort(grpc.StatusCode.ABORTED, "member left the group")
                if e is _OVERFLOW:
                    yield mpb.GroupEvent(kind=mpb.GroupEvent.LAGGED, group=request.name,
                                         seq=backlog.given)
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        "client too slow: resume after the lagged event's seq")
                backlog.took(e)
                out = event_to_pb(e)
                size = len(e.payload)
                while (e.kind != ENDED and not queue.empty() and len(out.more) < BATCH_EVENTS
                       and size < BATCH_BYTES):
                    nxt = queue.get_nowait()
                    if nxt is _LEFT or nxt is _OVERFLOW or nxt.kind == ENDED:
                        held = nxt
                        break
                    out.more.append(event_to_pb(nxt))
                    size += len(nxt.payload)
                    backlog.took(nxt)
                yield out
                if e.kind == ENDED:
                    return
        finally:
            entries = self._streams.get(key, [])
            if (member, queue) in entries:
                entries.remove((member, queue))
            if not entries:
                self._streams.pop(key, None)
            await self.scribe.leave(request.name, member)

    async def Leave(self, request: mpb.LeaveGroupRequest, context: Any) -> mpb.LeaveGroupReply:
        # A copy: each stream's own cleanup empties the live list while we wait below.
        entries = list(self._streams.get((request.name, request.member), []))
        for member, queue in entries:
            queue.put_nowait(_LEFT)
            await self.scribe.leave(request.name, member)
        return mpb.LeaveGroupReply(left=len(entries))

    async def send(self, request: mpb.SendRequest) -> mpb.SendReply:
        if not self.ready():
            raise link.Refusal(grpc.StatusCode.UNAVAILABLE, "node has not joined a ring yet")
        try:
            seq = await self.scribe.send(request.name, request.payload, request.sender,
                                         request.message_id)
        except McastError as exc:
            raise link.Refusal(STATUS[exc.code], str(exc)) from None
        return mpb.SendReply(seq=seq)

    async def Send(self, request: mpb.SendRequest, context: Any) -> mpb.SendReply:
        return await link.unary(self.send, request, context)

    async def Session(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        """The hot path (Send) as frames on one stream per client."""
        await self.streams.serve(context, link.dispatcher("Multicast", self.methods),
                                 served_by(self.observe))

    async def Destroy(self, request: mpb.DestroyGroupRequest, context: Any
                      ) -> mpb.DestroyGroupReply:
        await self._check(context)
        try:
            await self.scribe.destroy(request.name, request.token)
        except McastError as exc:
            await _abort(context, exc)
        return mpb.DestroyGroupReply()

    async def Anycast(self, request: mpb.AnycastRequest, context: Any) -> mpb.AnycastReply:
        await self._check(context)
        try:
            node = await self.scribe.anycast(request.name, request.payload, request.sender)
        except McastError as exc:
            await _abort(context, exc)
        return mpb.AnycastReply(node=self._pb(node))

    async def Info(self, request: mpb.GroupInfoRequest, context: Any) -> mpb.GroupInfo:
        await self._check(context)
        try:
            s = await self.scribe.info(request.name)
        except McastError as exc:
            await _abort(context, exc)
        return self._info(s)

    def _info(self, s: GroupSummary) -> mpb.GroupInfo:
        return mpb.GroupInfo(name=s.name, group_id=self.scribe.kbr.space.to_bytes(s.group_id),
                             root=self._pb(s.root), creator=s.creator, created_ms=s.created_ms,
                             last_seq=s.last_seq, members=s.members, depth=s.depth)

    async def List(self, request: mpb.ListGroupsRequest, context: Any) -> mpb.ListGroupsReply:
        await self._check(context)
        return mpb.ListGroupsReply(groups=[self._info(s) for s in
                                           await self.scribe.list_groups()])

    async def Broadcast(self, request: mpb.BroadcastRequest, context: Any
                        ) -> mpb.BroadcastReply:
        await self._check(context)
        try:
            await self.scribe.broadcast(request.payload, request.sender)
        except McastError as exc:
            await _abort(context, exc)
        return mpb.BroadcastReply()

    async def Unicast(self, request: mpb.UnicastRequest, context: Any) -> mpb.UnicastReply:
        await self._check(context)
        try:
            owner = await self.scribe.unicast(request.key, request.payload, request.sender)
        except McastError as exc:
            await _abort(context, exc)
        return mpb.UnicastReply(owner=self._pb(owner))

    async def Roles(self, request: mpb.RolesRequest, context: Any) -> mpb.RolesReply:
        return mpb.RolesReply(groups=[
            mpb.GroupRole(name=g.name, root=g.is_root, children=len(g.children),
                          members=len(g.members), parent=g.parent.address if g.parent else "",
                          last_seq=g.last_seq or 0)
            for g in self.scribe.roles()])

    async def Inbox(self, request: mpb.InboxRequest, context: Any
                    ) -> AsyncIterator[mpb.InboxMessage]:
        queue: asyncio.Queue[mpb.InboxMessage] = asyncio.Queue(maxsize=STREAM_QUEUE_LIMIT)

        def listener(kind: str, payload: bytes, sender: str) -> None:
            if not queue.full():
                queue.put_nowait(mpb.InboxMessage(kind=kind, payload=payload, sender=sender))

        stop_listening = self.scribe.listen_inbox(listener)
        try:
            while True:
                yield await queue.get()
        finally:
            stop_listening()
