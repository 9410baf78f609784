"""The Multicast gRPC service: what external clients (the CLI, `chordcast.Client`) call on any
node. External members are served over a server-streaming call fed from a bounded queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc

from chord.wire import node_to_pb
from chordcast import link
from chordcast.authz import caller
from chordcast.tls import acl_name, peer_certificate
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
    "exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
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


class _MemberStream:
    """What waits to go down one member's stream: events bounded in number and payload bytes.
    Past the bound the member has lagged: nothing more is queued (the tree never waits for
    it), and it resumes from the archive after the last message it was given."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._bytes = 0
        self._lagged = False
        self._held: Any = None  # taken from the queue, but for the next stream message
        self.given = 0  # the last sequence number the member was given

    def offer(self, e: Event) -> None:
        if self._lagged:
            return
        if (self._queue.qsize() >= STREAM_QUEUE_LIMIT
                or self._bytes + len(e.payload) > self.max_bytes):
            self._lagged = True
            self._queue.put_nowait(_OVERFLOW)
            return
        self._bytes += len(e.payload)
        self._queue.put_nowait(e)

    def leave(self) -> None:
        self._queue.put_nowait(_LEFT)

    async def next(self) -> Any:
        """The next stream message: an event with the events queued behind it in `more`
        (an end of group goes alone), or _LEFT / _OVERFLOW."""
        e = self._held if self._held is not None else await self._queue.get()
        self._held = None
        if e is _LEFT or e is _OVERFLOW:
            return e
        out = self._took(e)
        size = len(e.payload)
        while (e.kind != ENDED and not self._queue.empty() and len(out.more) < BATCH_EVENTS
               and size < BATCH_BYTES):
            nxt = self._queue.get_nowait()
            if nxt is _LEFT or nxt is _OVERFLOW or nxt.kind == ENDED:
                self._held = nxt
                break
            out.more.append(self._took(nxt))
            size += len(nxt.payload)
        return out

    def _took(self, e: Event) -> mpb.GroupEvent:
        self._bytes -= len(e.payload)
        if e.kind == MESSAGE:
            self.given = e.seq
        elif e.kind == GAP:
            self.given = max(self.given, e.last_seq)
        return event_to_pb(e)


def event_to_pb(e: Event) -> mpb.GroupEvent:
    return mpb.GroupEvent(kind=KINDS[e.kind], group=e.group, seq=e.seq, payload=e.payload,
                          sender=e.sender, ts_ms=e.ts_ms, last_seq=e.last_seq,
                          message_id=e.message_id, proof=e.proof)


class MulticastServicer(mcast_pb2_grpc.MulticastServicer):
    def __init__(self, scribe: Scribe, ready: Callable[[], bool], streams: link.Streams,
                 observe: RpcObserver | None = None,
                 queue_bytes: int = STREAM_QUEUE_BYTES) -> None:
        self.scribe = scribe
        self.queue_bytes = queue_bytes  # a member's unread payload before it lags
        self.ready = ready  # has the node joined a ring?
        self.streams = streams
        self.observe = observe
        self.methods: link.Methods = {"Send": (mpb.SendRequest, self.send)}
        # (group, member name) -> the streams attached under it, with who attached them
        self._streams: dict[tuple[str, str], list[tuple[Member, _MemberStream, str]]] = {}

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        if not self.ready():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node has not joined a ring yet")

    def _pb(self, node: Any) -> Any:
        return node_to_pb(self.scribe.kbr.space, node)

    async def Create(self, request: mpb.CreateGroupRequest, context: Any) -> mpb.CreateGroupReply:
        await self._check(context)
        who = acl_name(caller(context))
        if (request.publishers or request.subscribers) and not who:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "group access lists need a ring with TLS: without it there "
                                "are no identities to check")
        try:
            token, root = await self.scribe.create(
                request.name, who or request.creator, owner=who,
                publishers=request.publishers, subscribers=request.subscribers)
        except McastError as exc:
            await _abort(context, exc)
        space = self.scribe.kbr.space
        return mpb.CreateGroupReply(name=request.name,
                                    group_id=space.to_bytes(self.scribe.gid(request.name)),
                                    root=self._pb(root), token=token)

    async def Join(self, request: mpb.JoinGroupRequest, context: Any
                   ) -> AsyncIterator[mpb.GroupEvent]:
        await self._check(context)
        stream = _MemberStream(self.queue_bytes)
        who = acl_name(caller(context))
        try:
            member, start = await self.scribe.join(
                request.name, stream.offer, member=request.member,
                resume_after=request.last_seq if request.resume else None, principal=who)
        except McastError as exc:
            await _abort(context, exc)
        stream.given = start
        key = (request.name, member.name)
        entry = (member, stream, who)
        self._streams.setdefault(key, []).append(entry)
        try:
            yield mpb.GroupEvent(kind=mpb.GroupEvent.JOINED, group=request.name, seq=start)
            while True:
                out = await stream.next()
                if out is _LEFT:
                    # Not a plain end of stream: the client would take that for a lost access
                    # node and re-attach. ABORTED tells it the member left for good.
                    await context.abort(grpc.StatusCode.ABORTED, "member left the group")
                if out is _OVERFLOW:
                    yield mpb.GroupEvent(kind=mpb.GroupEvent.LAGGED, group=request.name,
                                         seq=stream.given)
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        "client too slow: resume after the lagged event's seq")
                yield out
                if out.kind == mpb.GroupEvent.ENDED:
                    return
        finally:
            entries = self._streams.get(key, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:
                self._streams.pop(key, None)
            await self.scribe.leave(request.name, member)

    async def Leave(self, request: mpb.LeaveGroupRequest, context: Any) -> mpb.LeaveGroupReply:
        # A copy: each stream's own cleanup empties the live list while we wait below.
        who = acl_name(caller(context))
        # On a TLS ring, only the streams the caller attached itself: a member is not
        # anyone's to end.
        entries = [e for e in self._streams.get((request.name, request.member), [])
                   if not who or e[2] == who]
        for member, stream, _ in entries:
            stream.leave()
            await self.scribe.leave(request.name, member)
        return mpb.LeaveGroupReply(left=len(entries))

    async def send(self, request: mpb.SendRequest, who: str = "", cert: bytes = b""
                   ) -> mpb.SendReply:
        """`who`: the caller's principal on a TLS connection; it is also the sender the
        members see (a self-declared sender counts only without TLS). `cert`: the
        certificate it presented, which the root checks the request's signature with."""
        if not self.ready():
            raise link.Refusal(grpc.StatusCode.UNAVAILABLE, "node has not joined a ring yet")
        try:
            seq = await self.scribe.send(request.name, request.payload,
                                         who or request.sender, request.message_id,
                                         principal=who, proof=_proof(cert, request))
        except McastError as exc:
            raise link.Refusal(STATUS[exc.code], str(exc)) from None
        return mpb.SendReply(seq=seq)

    async def Send(self, request: mpb.SendRequest, context: Any) -> mpb.SendReply:
        who, cert = acl_name(caller(context)), peer_certificate(context)
        return await link.unary(lambda r: self.send(r, who, cert), request, context)

    async def Session(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        """The hot path (Send) as frames on one stream per client (one caller per stream:
        its principal is read once)."""
        who, cert = acl_name(caller(context)), peer_certificate(context)
        methods: link.Methods = self.methods if not who else {
            "Send": (mpb.SendRequest, lambda r: self.send(r, who, cert))}
        await self.streams.serve(context, link.dispatcher("Multicast", methods),
                                 served_by(self.observe))

    async def Destroy(self, request: mpb.DestroyGroupRequest, context: Any
                      ) -> mpb.DestroyGroupReply:
        await self._check(context)
        try:
            await self.scribe.destroy(request.name, request.token,
                                      principal=acl_name(caller(context)),
                                      proof=_proof(peer_certificate(context), request))
        except McastError as exc:
            await _abort(context, exc)
        return mpb.DestroyGroupReply()

    async def Anycast(self, request: mpb.AnycastRequest, context: Any) -> mpb.AnycastReply:
        await self._check(context)
        try:
            who = acl_name(caller(context))
            node = await self.scribe.anycast(request.name, request.payload,
                                             who or request.sender, principal=who)
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
                             last_seq=s.last_seq, members=s.members, depth=s.depth,
                             owner=s.owner, publishers=s.publishers, subscribers=s.subscribers)

    async def List(self, request: mpb.ListGroupsRequest, context: Any) -> mpb.ListGroupsReply:
        await self._check(context)
        return mpb.ListGroupsReply(groups=[self._info(s) for s in
                                           await self.scribe.list_groups()])

    async def Broadcast(self, request: mpb.BroadcastRequest, context: Any
                        ) -> mpb.BroadcastReply:
        await self._check(context)
        try:
            reached = await self.scribe.broadcast(request.payload,
                                                  acl_name(caller(context)) or request.sender)
        except McastError as exc:
            await _abort(context, exc)
        return mpb.BroadcastReply(reached=reached)

    async def Unicast(self, request: mpb.UnicastRequest, context: Any) -> mpb.UnicastReply:
        await self._check(context)
        try:
            owner = await self.scribe.unicast(request.key, request.payload,
                                              acl_name(caller(context)) or request.sender)
        except McastError as exc:
            await _abort(context, exc)
        return mpb.UnicastReply(owner=self._pb(owner))

    async def Roles(self, request: mpb.RolesRequest, context: Any) -> mpb.RolesReply:
        return mpb.RolesReply(groups=[
            mpb.GroupRole(name=g.name, root=g.is_root, children=len(g.children),
                          members=len(g.members), parent=g.parent.address if g.parent else "",
                          last_seq=g.last_seq or 0,
                          child_addresses=[c.address for c in g.children],
                          member_names=list(g.members))
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


def _proof(cert: bytes, request: mpb.SendRequest | mpb.DestroyGroupRequest) -> mpb.Proof | None:
    """What the root needs to believe the caller (chordcast.proofs): its certificate, as
    this node saw it, and the signature the caller made. None without TLS."""
    if not cert:
        return None
    return mpb.Proof(cert_pem=cert, signature=request.signature, signed_ms=request.signed_ms)
