"""The client library: one asyncio `Client` for everything a user does with a ring.

    async with Client(["127.0.0.1:7001", "127.0.0.1:7002"]) as c:
        await c.put("k", b"v")
        print((await c.get("k")).value)
        created = await c.create("room")
        async with c.join("room") as sub:
            await c.send("room", "hello")
            async for msg in sub:            # messages in the group's total order
                print(msg.seq, msg.sender, msg.text)
                break

It takes several node addresses and fails over between them: a call that cannot reach the
current node goes to the next one. A subscription survives the death of its access node: it
reconnects to the next address and resumes after the last sequence number it delivered, so
nothing is lost or repeated. `chordcast.blocking.BlockingClient` is the same API without asyncio.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from chord.ids import IdError, IdSpace
from chord.storage import MAX_VALUE_BYTES
from chordcast import link
from chordcast.address import split_address
from chordcast.proofs import MessageChecker, Signer, destroy_statement, now_ms, send_statement
from chordcast.results import (
    ClientError,
    CreatedGroup,
    Deleted,
    GroupInfo,
    GroupMessage,
    GroupRole,
    InboxMessage,
    Lookup,
    NodeInfo,
    Peer,
    Stored,
    Value,
)
from chordcast.tls import Credentials, TlsConfig, TlsError, channel_options
from chordcast.v1 import chord_pb2, mcast_pb2_grpc
from chordcast.v1 import client_pb2 as cpb
from chordcast.v1 import mcast_pb2 as mpb

MESSAGE_LIMIT = 8 << 20
log = logging.getLogger(__name__)
MAX_RING_WALK = 100_000
RING_VIEW_LIMIT = 4096  # nodes a ring-aware client walks to learn the ring
UNREACHABLE_FOR = 30.0  # seconds an owner that did not answer stays out of the view
SEND_ATTEMPTS = 3  # a send that timed out or lost its node is retried (same message id)
_OPTIONS = [("grpc.max_send_message_length", MESSAGE_LIMIT),
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            # A connection (and its reconnect back-off) of its own, not shared with other
            # channels to the address: a node that restarted is reached at once.
            ("grpc.use_local_subchannel_pool", 1)]
# A subscription's stream that ends with one of these is resumed at another node.
_RECONNECT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.INTERNAL}
# The calls that travel as frames on one Session stream per node: service -> (the stream's
# path, the reply class of each method it serves). Other calls are unary.
SESSIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "node": (f"/{cpb.DESCRIPTOR.services_by_name['NodeApi'].full_name}/Session",
             {"Info": cpb.NodeInfoReply, "Lookup": cpb.LookupReply, "Put": cpb.PutReply,
              "Get": cpb.GetReply, "Delete": cpb.DeleteReply}),
    "mcast": (f"/{mpb.DESCRIPTOR.services_by_name['Multicast'].full_name}/Session",
              {"Send": mpb.SendReply}),
}
KIND_NAMES = {mpb.GroupEvent.MESSAGE: "message", mpb.GroupEvent.GAP: "gap",
              mpb.GroupEvent.ENDED: "ended", mpb.GroupEvent.ANYCAST: "anycast",
              mpb.GroupEvent.LAGGED: "lagged"}


def _payload(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _error(exc: grpc.aio.AioRpcError, address: str, timeout: float) -> ClientError:
    return _status_error(exc.code(), exc.details() or "", address, timeout)


def _status_error(code: grpc.StatusCode, details: str, address: str, timeout: float
                  ) -> ClientError:
    if link.never_connected(code, details):  # so another node may serve the call
        return ClientError(f"cannot reach node at {address}: {details}{_tls_hint(details)}",
                           code.name, unreachable=True)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientError(f"node at {address} did not answer within {timeout:g}s", code.name)
    return ClientError(f"{address}: {details} ({code.name})", code.name)


def _tls_hint(details: str) -> str:
    """What a connection refused by TLS most likely means, in the user's terms."""
    if "Socket closed" in details:
        return (" (a node with TLS closes connections without a certificate: give "
                "--tls-cert/--tls-key/--tls-ca or CHORDCAST_TLS_*)")
    if any(word in details for word in ("Handshake", "SSL", "certificate", "Hostname")):
        return (" (TLS refused: the certificate must come from the ring's CA, be valid now, "
                "and the node's must be for its address)")
    return ""


class Client:
    """`ring_aware` (the default): put/get/delete go straight to the key's owner, as last seen
    (the ring is walked once, on the first such call). A node that no longer owns the key still
    answers correctly (it routes the request on) and names the owner, which corrects the view;
    an owner that cannot be reached is dropped from it and the request goes through the
    current node."""

    def __init__(self, addresses: list[str] | str, timeout: float = 10.0,
                 ring_aware: bool = True, tls: TlsConfig | None = None) -> None:
        """`tls`: a client (or node) certificate, its key and the CA, for a ring that runs
        with mutual TLS; by default from CHORDCAST_TLS_CERT, _KEY and _CA when they are set."""
        try:
            config = tls if tls is not None else TlsConfig.from_options(None, None, None)
        except TlsError as exc:
            raise ClientError(str(exc)) from None
        self._tls = Credentials(config) if config is not None else None
        # What lets a group's root believe this client's sends and destroys (the node it
        # goes through only vouches for the connection): its own signatures.
        self._signer = Signer(self._tls) if self._tls is not None else None
        self._tls_version = self._tls.version if self._tls is not None else None
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        if not self.addresses:
            raise ClientError("give at least one node address")
        for a in self.addresses:
            try:
                split_address(a)
            except ValueError as exc:
                raise ClientError(str(exc)) from None
        self.timeout = timeout
        self.current = 0  # index of the node calls go to first
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._sessions: dict[tuple[str, str], link.Link] = {}  # (stream path, address)
        self._retired: list[grpc.aio.Channel] = []  # replaced after a certificate rotation
        self._retired_sessions: list[link.Link] = []
        self._space: IdSpace | None = None
        self.ring_aware = ring_aware
        self._view: list[tuple[int, str]] | None = None  # (id, address) sorted, as last seen
        # Owners that could not be reached from here, and when: kept out of the view for a
        # while (each try would cost a failed call before the request went another way).
        self._unreachable: dict[str, float] = {}
        self._view_ids: list[int] = []  # the ids of _view, for bisect

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for session in [*self._sessions.values(), *self._retired_sessions]:
            await session.aclose()
        self._sessions.clear()
        self._retired_sessions.clear()
        for ch in [*self._channels.values(), *self._retired]:
            await ch.close()
        self._channels.clear()
        self._retired.clear()

    # -- plumbing ---------------------------------------------------------------------------
    def _rotate_if_changed(self) -> None:
        if self._tls is not None and self._tls.version != self._tls_version:
            # Rotated certificate files: new calls go on new connections that present them;
            # streams open on the old ones go on until they end (closed with the client).
            self._tls_version = self._tls.version
            self._retired.extend(self._channels.values())
            self._channels.clear()
            self._retired_sessions.extend(self._sessions.values())
            self._sessions.clear()

    def _channel(self, address: str) -> grpc.aio.Channel:
        self._rotate_if_changed()
        ch = self._channels.get(address)
        if ch is None:
            if self._tls is None:
                ch = grpc.aio.insecure_channel(address, options=_OPTIONS)
            else:
                ch = grpc.aio.secure_channel(address, self._tls.channel(),
                                             options=[*_OPTIONS, *channel_options(address)])
            self._channels[address] = ch
        return ch

    def multicast_stub(self, address: str) -> mcast_pb2_grpc.MulticastStub:
        return mcast_pb2_grpc.MulticastStub(self._channel(address))

    def _session(self, address: str, path: str) -> link.Link:
        self._rotate_if_changed()
        session = self._sessions.get((path, address))
        if session is None:
            session = self._sessions[path, address] = link.Link(self._channel(address), path)
        return session

    async def _call(self, service: str, method: str, request: Any, address: str) -> Any:
        """One call to one node; raises ClientError, with `unreachable` set when the node
        could not be reached at all."""
        path, replies = SESSIONS[service]
        try:
            if method in replies:
                body = await self._session(address, path).call(
                    method, request.SerializeToString(), self.timeout)
                return replies[method].FromString(body)
            return await getattr(self.multicast_stub(address), method)(request,
                                                                       timeout=self.timeout)
        except link.LinkError as exc:
            raise _status_error(exc.code, exc.detail, address, self.timeout) from None
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, address, self.timeout) from None

    async def _unary(self, service: str, method: str, request: Any,
                     address: str | None = None) -> Any:
        """Call on `address`, or on the current node; a node that cannot be reached hands the
        call to the next address in turn (any other error is the answer)."""
        if address is not None:
            candidates = [(self.current, address)]
        else:
            n = len(self.addresses)
            candidates = [((self.current + i) % n, self.addresses[(self.current + i) % n])
                          for i in range(n)]
        last: ClientError | None = None
        for index, target in candidates:
            try:
                reply = await self._call(service, method, request, target)
            except ClientError as exc:
                if not exc.unreachable:
                    raise
                last = exc
                continue
            if address is None:
                self.current = index
            return reply
        assert last is not None
        raise last

    async def _node(self, method: str, request: Any, address: str | None = None) -> Any:
        return await self._unary("node", method, request, address)

    async def _mcast(self, method: str, request: Any, address: str | None = None) -> Any:
        return await self._unary("mcast", method, request, address)

    async def space(self) -> IdSpace:
        """The ring's id space (its width comes from the first node that answers)."""
        if self._space is None:
            await self.node_info()
        assert self._space is not None
        return self._space

    def _peer(self, space: IdSpace, msg: chord_pb2.Node) -> Peer:
        return Peer(space.format(int.from_bytes(msg.id, "big")), msg.address)

    # -- the ring ---------------------------------------------------------------------------
    async def node_info(self, address: str | None = None) -> NodeInfo:
        """One node's view: its id, predecessor, successor list, fingers and key counts."""
        r = await self._node("Info", cpb.NodeInfoRequest(), address)
        space = self._space = IdSpace(r.id_bits)
        return NodeInfo(
            node=self._peer(space, r.node),
            predecessor=self._peer(space, r.predecessor) if r.HasField("predecessor") else None,
            successors=[self._peer(space, s) for s in r.successors],
            fingers=[self._peer(space, f) for f in r.fingers],
            keys=r.keys, replicas=r.replicas, id_bits=r.id_bits, rpc_p99_ms=r.rpc_p99_ms,
        )

    async def ring(self, limit: int = MAX_RING_WALK) -> list[NodeInfo]:
        """Every node, walked from the current node along successor pointers until the walk
        comes back (or stops advancing)."""
        first = await self.node_info()
        infos, seen = [first], {first.node.address}
        while infos[-1].successors and len(infos) < limit:
            address = infos[-1].successors[0].address
            if address in seen:
                break
            seen.add(address)
            infos.append(await self.node_info(address))
        return infos

    async def lookup(self, key: str | None = None, key_id: str | None = None,
                     iterative: bool = False) -> Lookup:
        """The owner of `key` (hashed), or of the raw hex identifier `key_id`."""
        if (key is None) == (key_id is None):
            raise ClientError("give either a key or a key id")
        req = cpb.LookupRequest(iterative=iterative)
        space = await self.space()
        if key_id is not None:
            digits = key_id.lower().removeprefix("0x").rstrip("…")
            try:
                req.key_id = space.to_bytes(space.parse(digits))
            except IdError as exc:
                raise ClientError(str(exc), "INVALID_ARGUMENT") from None
            if len(digits) != space.hex_digits:  # 3fa9 is not 0x…3fa9 by surprise
                raise ClientError(
                    f"an id of this ring has {space.hex_digits} hex digits; {key_id!r} has "
                    f"{len(digits)} (a table's short id is only a prefix: `--json` prints "
                    f"whole ids)", "INVALID_ARGUMENT")
        else:
            req.key = key or ""
        r = await self._node("Lookup", req)
        return Lookup(key=key or "", key_id=space.format(int.from_bytes(r.key_id, "big")),
                      owner=self._peer(space, r.owner), hops=r.hops,
                      path=[p.address for p in r.path])

    # -- storage ----------------------------------------------------------------------------
    async def put(self, key: str, value: bytes | str) -> Stored:
        data = _payload(value)
        if len(data) > MAX_VALUE_BYTES:
            raise ClientError(
                f"value of {len(data)} bytes is larger than the 1 MiB limit ({MAX_VALUE_BYTES})",
                "INVALID_ARGUMENT")
        r = await self._storage("Put", cpb.PutRequest(key=key, value=data), key)
        return Stored(key, self._peer(await self.space(), r.owner), r.version)

    async def get(self, key: str) -> Value:
        r = await self._storage("Get", cpb.GetRequest(key=key), key)
        return Value(key, r.found, r.value, r.version, self._peer(await self.space(), r.owner))

    async def delete(self, key: str) -> Deleted:
        r = await self._storage("Delete", cpb.DeleteRequest(key=key), key)
        return Deleted(key, r.found, self._peer(await self.space(), r.owner))

    async def _storage(self, method: str, request: Any, key: str) -> Any:
        """A storage call, sent to the key's owner when the client knows the ring."""
        target = await self._owner_of(key) if self.ring_aware else None
        if target is None:
            reply = await self._node(method, request)
        else:
            try:
                reply = await self._node(method, request, target)
            except ClientError as exc:
                if exc.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    raise
                self._drop(target)  # gone (or not serving): any node routes it correctly
                reply = await self._node(method, request)
        await self._correct_view(key, reply.owner)
        return reply

    async def _owner_of(self, key: str) -> str | None:
        space = await self.space()
        if self._view is None:
            try:
                infos = await self.ring(limit=RING_VIEW_LIMIT)
            except ClientError:
                # Some node cannot be reached from here (only some are published, say):
                # without a view, every request goes through the node we reach and is
                # routed from there; owners that answer and can be reached join the view.
                infos = []
            self._set_view((int(i.node.id, 16), i.node.address) for i in infos)
        if not self._view:
            return None
        return self._view[self._view_at(space.hash_key(key))][1]

    def _view_at(self, key_id: int) -> int:
        """The index of the key's owner in the view: the first node at or after the key."""
        assert self._view
        return bisect.bisect_left(self._view_ids, key_id) % len(self._view_ids)

    def _set_view(self, entries: Iterable[tuple[int, str]]) -> None:
        self._view = sorted(set(entries))
        self._view_ids = [i for i, _ in self._view]

    async def _correct_view(self, key: str, owner: chord_pb2.Node) -> None:
        """The node that answered is the key's owner now: no live node lies between the key
        and it, so any such entry is stale; and the owner belongs in the view."""
        if self._view is None or not owner.address or self._shunned(owner.address):
            return
        space = await self.space()
        kid, oid = space.hash_key(key), int.from_bytes(owner.id, "big")
        if self._view and self._view[self._view_at(kid)] == (oid, owner.address):
            return  # the view already says so (the common case: nothing to rebuild)
        dist = space.distance
        self._set_view({
            *((i, a) for i, a in self._view if a != owner.address
              and not (dist(kid, i) < dist(kid, oid))),
            (oid, owner.address)})

    def _shunned(self, address: str) -> bool:
        since = self._unreachable.get(address)
        if since is not None and time.monotonic() - since > UNREACHABLE_FOR:
            del self._unreachable[address]  # it may be back (a restart): try it again
            return False
        return since is not None

    def _drop(self, address: str) -> None:
        if len(self._unreachable) < RING_VIEW_LIMIT:
            self._unreachable[address] = time.monotonic()
        if self._view is not None:
            self._set_view((i, a) for i, a in self._view if a != address)

    # -- groups -----------------------------------------------------------------------------
    async def create(self, name: str, creator: str = "", publishers: Iterable[str] = (),
                     subscribers: Iterable[str] = ()) -> CreatedGroup:
        """A new group. On a ring with TLS, `publishers` and `subscribers` (client-certificate
        names, "*" = any certified caller; empty = anyone) limit who may send and subscribe,
        and the creator's certificate may destroy it without the token."""
        r = await self._mcast("Create", mpb.CreateGroupRequest(
            name=name, creator=creator, publishers=list(publishers),
            subscribers=list(subscribers)))
        return CreatedGroup(r.name, r.group_id.hex(), r.root.address, r.token)

    def join(self, name: str, member: str = "", resume_after: int | None = None
             ) -> Subscription:
        """A subscription: `async with` (or `await sub.open()`) attaches it."""
        return Subscription(self, name, member, resume_after)

    async def leave(self, subscription: Subscription) -> None:
        await subscription.close()

    async def detach(self, name: str, member: str) -> int:
        """End the streams of the members named `member` attached to the current node."""
        r = await self._mcast("Leave", mpb.LeaveGroupRequest(name=name, member=member))
        return int(r.left)

    async def send(self, name: str, payload: bytes | str, sender: str = "") -> int:
        """Multicast; returns the sequence number the root gave the message.

        The message carries an id chosen here, so a send that timed out or lost its node is
        retried through the next node without risk: the root stamps one id once, and the
        retry gets the number the first attempt got."""
        request = mpb.SendRequest(name=name, payload=_payload(payload), sender=sender,
                                  message_id=secrets.token_hex(16))
        if self._signer is not None:
            request.signed_ms = now_ms()
            request.signature = self._signer.sign(send_statement(
                name, request.message_id, request.payload, request.signed_ms))
        last: ClientError | None = None
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.1 * attempt)  # the root may be moving or busy
            try:
                r = await self._mcast("Send", request)
                return int(r.seq)
            except ClientError as exc:
                if exc.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    raise
                last = exc
                self.current = (self.current + 1) % len(self.addresses)
        assert last is not None
        raise last

    async def destroy(self, name: str, token: str = "") -> None:
        """On a ring with TLS the creator's certificate suffices; else the create's token."""
        request = mpb.DestroyGroupRequest(name=name, token=token)
        if self._signer is not None:
            request.signed_ms = now_ms()
            request.signature = self._signer.sign(destroy_statement(name, request.signed_ms))
        await self._mcast("Destroy", request)

    async def anycast(self, name: str, payload: bytes | str, sender: str = "") -> str:
        r = await self._mcast("Anycast", mpb.AnycastRequest(name=name, payload=_payload(payload),
                                                            sender=sender))
        return str(r.node.address)

    async def info(self, name: str) -> GroupInfo:
        return _info(await self._mcast("Info", mpb.GroupInfoRequest(name=name)))

    async def list_groups(self) -> list[GroupInfo]:
        r = await self._mcast("List", mpb.ListGroupsRequest())
        return [_info(g) for g in r.groups]

    async def roles(self, address: str | None = None) -> list[GroupRole]:
        """A node's part in each group's tree (root, children, members, parent): the node at
        `address`, or the current one."""
        r = await self._mcast("Roles", mpb.RolesRequest(), address)
        return [GroupRole(g.name, g.root, g.parent, g.children, g.members, g.last_seq,
                          tuple(g.child_addresses), tuple(g.member_names))
                for g in r.groups]

    # -- the ring's inboxes -----------------------------------------------------------------
    async def broadcast(self, payload: bytes | str, sender: str = "") -> int:
        """To every ring node's inbox, over the fingers; returns how many nodes it reached."""
        r = await self._mcast("Broadcast", mpb.BroadcastRequest(payload=_payload(payload),
                                                                sender=sender))
        return int(r.reached)

    async def unicast(self, key: str, payload: bytes | str, sender: str = "") -> str:
        """To the inbox of the node that owns `key`; returns its address."""
        r = await self._mcast("Unicast", mpb.UnicastRequest(key=key, payload=_payload(payload),
                                                            sender=sender))
        return str(r.owner.address)

    async def inbox(self) -> AsyncIterator[InboxMessage]:
        """What arrives in the current node's inbox (broadcasts, unicasts to its keys)."""
        address = self.addresses[self.current]
        try:
            async for m in self.multicast_stub(address).Inbox(mpb.InboxRequest()):
                yield InboxMessage(m.kind, m.payload, m.sender)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, address, self.timeout) from None


def _info(g: mpb.GroupInfo) -> GroupInfo:
    return GroupInfo(g.name, g.group_id.hex(), g.root.address, g.creator, g.created_ms / 1000,
                     g.last_seq, g.members, g.depth, g.owner, tuple(g.publishers),
                     tuple(g.subscribers))


class Subscription:
    """An attached member: iterate it for messages; it reconnects and resumes on its own,
    giving up after `max_reconnects` failed reconnects in a row."""

    def __init__(self, client: Client, name: str, member: str, resume_after: int | None,
                 max_reconnects: int = 20) -> None:
        self.client = client
        self.name = name
        self.member = member
        self.last_seq = resume_after
        self.start_seq: int | None = None
        self.max_reconnects = max_reconnects
        self._call: Any = None
        self._batch: deque[mpb.GroupEvent] = deque()  # events received, not yet returned
        self._closed = False
        self._ended = False
        self.reconnects = 0
        self.access_node = ""
        # On a ring with TLS every message is checked against its sender's signature: the
        # nodes that pass it on could otherwise change it.
        tls = client._tls
        self._checker = MessageChecker(tls) if tls is not None else None

    async def __aenter__(self) -> Subscription:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[GroupMessage]:
        return self

    async def open(self) -> None:
        """Attach at the current node (or the next one that answers)."""
        client = self.client
        last: ClientError | None = None
        n = len(client.addresses)
        for i in range(n):
            index = (client.current + i) % n
            address = client.addresses[index]
            resume = self.last_seq is not None
            call = client.multicast_stub(address).Join(mpb.JoinGroupRequest(
                name=self.name, resume=resume, last_seq=self.last_seq or 0, member=self.member))
            try:
                first = await asyncio.wait_for(call.read(), client.timeout)
            except TimeoutError:
                call.cancel()
                last = ClientError(f"{address}: no answer to join", "DEADLINE_EXCEEDED")
                continue
            except grpc.aio.AioRpcError as exc:
                last = _error(exc, address, client.timeout)
                if exc.code() not in _RECONNECT:
                    raise last from None
                continue
            if first is grpc.aio.EOF or first.kind != mpb.GroupEvent.JOINED:
                call.cancel()
                last = ClientError(f"{address}: join was not acknowledged")
                continue
            self._call, self.access_node = call, address
            client.current = index
            if self.reconnects:  # (said when the node took us back, even if nothing is sent)
                log.warning("subscription to %r resumed via %s after %d attempt(s), after "
                            "seq %s", self.name, address, self.reconnects, self.last_seq)
            if self.last_seq is None:
                self.last_seq = first.seq
            if self.start_seq is None:
                self.start_seq = first.seq
            return
        assert last is not None
        raise last

    async def __anext__(self) -> GroupMessage:
        client = self.client
        while True:
            if self._closed or self._ended:
                raise StopAsyncIteration
            if self._call is None:
                try:
                    await self.open()
                except ClientError as exc:
                    # Every node we know is down or restarting (a rolling restart of a
                    # single --via): keep trying, within the reconnect budget.
                    if exc.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                        raise
                    await self._backoff(str(exc))
                    continue
            e: Any
            if self._batch:  # the rest of a stream message that carried several events
                e = self._batch.popleft()
            else:
                try:
                    e = await self._call.read()
                except asyncio.CancelledError:
                    if self._closed:  # our own close() cancelled the call
                        raise StopAsyncIteration from None
                    raise
                except grpc.aio.AioRpcError as exc:
                    if self._closed:
                        raise StopAsyncIteration from None
                    if exc.code() == grpc.StatusCode.ABORTED:  # the member was detached
                        self._ended = True
                        raise StopAsyncIteration from None
                    if exc.code() not in _RECONNECT:
                        raise _error(exc, self.access_node, client.timeout) from None
                    e = None
            if e is None or e is grpc.aio.EOF:
                if self._closed:
                    raise StopAsyncIteration
                # The access node went away (or let us go): resume at another one.
                self._call = None
                client.current = (client.current + 1) % len(client.addresses)
                await self._backoff(f"lost its node {self.access_node}")
                continue
            self.reconnects = 0  # the budget is for failures in a row, not for a lifetime
            if e.more:
                self._batch.extend(e.more)
            msg = GroupMessage(KIND_NAMES.get(e.kind, "message"), e.group, e.seq, e.payload,
                               e.sender, e.ts_ms / 1000, e.last_seq)
            if msg.kind == "message":
                if self.last_seq is not None and msg.seq <= self.last_seq:
                    continue  # already delivered before a reconnect
                if self._checker is not None and (refused := self._checker.check(
                        e.group, e.seq, e.sender, e.message_id, e.payload, e.proof)):
                    raise ClientError(
                        f"message {e.seq} of {self.name!r} is not what {e.sender or 'anyone'} "
                        f"sent ({refused}): a node between the group's root and "
                        f"{self.access_node} changed it", "DATA_LOSS")
                self.last_seq = msg.seq
            elif msg.kind == "gap":
                self.last_seq = max(self.last_seq or 0, msg.last_seq)
            elif msg.kind == "ended":
                self._ended = True
            return msg

    async def _backoff(self, why: str) -> None:
        """Wait before the next attempt; said once per streak of failures (a library's
        warning: a CLI shows it on stderr), and in the error when the budget is spent."""
        self.reconnects += 1
        if self.reconnects > self.max_reconnects:
            raise ClientError(f"gave up on {self.name!r} after {self.max_reconnects} "
                              f"reconnects: {why}", "UNAVAILABLE")
        if self.reconnects == 1:
            log.warning("subscription to %r: %s; reconnecting (up to %d attempts)",
                        self.name, why, self.max_reconnects)
        await asyncio.sleep(min(1.0, 0.1 * self.reconnects))

    async def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()
            self._call = None
