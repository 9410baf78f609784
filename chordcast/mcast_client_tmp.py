"""Typed multicast client: `Client` (asyncio) and `BlockingClient`, connecting to any node.

    async with Client(["127.0.0.1:7001", "127.0.0.1:7002"]) as c:
        created = await c.create("room")
        async with c.join("room") as sub:
            await c.send("room", "hello")
            async for msg in sub:            # messages in the group's total order
                print(msg.seq, msg.sender, msg.text)

A subscription survives the death of its access node: it reconnects to the next address and
resumes after the last sequence number it delivered, so nothing is lost or repeated.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from chordcast.address import split_address
from chordcast.v1 import mcast_pb2 as mpb
from chordcast.v1 import mcast_pb2_grpc

MESSAGE_LIMIT = 8 << 20
_OPTIONS = [("grpc.max_send_message_length", MESSAGE_LIMIT),
            ("grpc.max_receive_message_length", MESSAGE_LIMIT)]
_RECONNECT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
              grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
              grpc.StatusCode.INTERNAL}
KIND_NAMES = {mpb.GroupEvent.MESSAGE: "message", mpb.GroupEvent.GAP: "gap",
              mpb.GroupEvent.ENDED: "ended", mpb.GroupEvent.ANYCAST: "anycast"}


class McastClientError(Exception):
    """One clear line: what failed and why. `code` is the gRPC status name."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CreatedGroup:
    group: str
    group_id: str
    root: str
    token: str


@dataclass(frozen=True)
class GroupMessage:
    kind: str          # "message", "gap" (seq..last_seq lost), "ended", "anycast"
    group: str
    seq: int
    payload: bytes
    sender: str
    ts: float          # the root's stamp time, seconds since the epoch
    last_seq: int = 0

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class GroupInfo:
    group: str
    group_id: str
    root: str
    creator: str
    created: float
    last_seq: int
    members: int
    depth: int


def _payload(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _error(exc: grpc.aio.AioRpcError, address: str) -> McastClientError:
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in (exc.details() or ""):
        return McastClientError(f"cannot reach node at {address}: {exc.details()}", code.name)
    return McastClientError(f"{address}: {exc.details()}", code.name)


class Client:
    def __init__(self, addresses: list[str] | str, timeout: float = 10.0) -> None:
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        if not self.addresses:
            raise McastClientError("give at least one node address")
        for a in self.addresses:
            try:
                split_address(a)
            except ValueError as exc:
                raise McastClientError(str(exc)) from None
        self.timeout = timeout
        self._current = 0
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

    def _stub(self, address: str) -> mcast_pb2_grpc.MulticastStub:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = grpc.aio.insecure_channel(address, options=_OPTIONS)
        return mcast_pb2_grpc.MulticastStub(ch)

    async def _unary(self, method: str, request: Any) -> Any:
        """Call on the current node; if it cannot be reached, try the others in turn."""
        last: McastClientError | None = None
        for i in range(len(self.addresses)):
            address = self.addresses[(self._current + i) % len(self.addresses)]
            try:
                reply = await getattr(self._stub(address), method)(request, timeout=self.timeout)
                self._current = (self._current + i) % len(self.addresses)
                return reply
            except grpc.aio.AioRpcError as exc:
                last = _error(exc, address)
                if exc.code() != grpc.StatusCode.UNAVAILABLE or "connect" not in (
                        exc.details() or ""):
                    raise last from None
        assert last is not None
        raise last

    async def create(self, name: str, creator: str = "") -> CreatedGroup:
        r = await self._unary("Create", mpb.CreateGroupRequest(name=name, creator=creator))
        return CreatedGroup(r.name, r.group_id.hex(), r.root.address, r.token)

    def join(self, name: str, member: str = "", resume_after: int | None = None
             ) -> Subscription:
        return Subscription(self, name, member, resume_after)

    async def leave(self, subscription: Subscription) -> None:
        await subscription.close()

    async def send(self, name: str, payload: bytes | str, sender: str = "") -> int:
        r = await self._unary("Send", mpb.SendRequest(name=name, payload=_payload(payload),
                                                      sender=sender))
        return int(r.seq)

    async def detach(self, name: str, member: str) -> int:
        """End the streams of the members named `member` attached to the current node."""
        r = await self._unary("Leave", mpb.LeaveGroupRequest(name=name, member=member))
        return int(r.left)

    async def inbox(self) -> AsyncIterator[mpb.InboxMessage]:
        """What arrives in the current node's inbox (broadcasts, unicasts to its keys)."""
        address = self.addresses[self._current]
        try:
            async for m in self._stub(address).Inbox(mpb.InboxRequest()):
                yield m
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, address) from None

    async def roles(self) -> list[mpb.GroupRole]:
        """The current node's part in each group's tree (root, children, members, parent)."""
        return list((await self._unary("Roles", mpb.RolesRequest())).groups)

    async def destroy(self, name: str, token: str) -> None:
        await self._unary("Destroy", mpb.DestroyGroupRequest(name=name, token=token))

    async def anycast(self, name: str, payload: bytes | str, sender: str = "") -> str:
        r = await self._unary("Anycast", mpb.AnycastRequest(name=name, payload=_payload(payload),
                                                            sender=sender))
        return str(r.node.address)

    async def info(self, name: str) -> GroupInfo:
        return _info(await self._unary("Info", mpb.GroupInfoRequest(name=name)))

    async def groups(self) -> list[GroupInfo]:
        r = await self._unary("List", mpb.ListGroupsRequest())
        return [_info(g) for g in r.groups]

    async def broadcast(self, payload: bytes | str, sender: str = "") -> None:
        await self._unary("Broadcast", mpb.BroadcastRequest(payload=_payload(payload),
                                                            sender=sender))

    async def unicast(self, key: str, payload: bytes | str, sender: str = "") -> str:
        r = await self._unary("Unicast", mpb.UnicastRequest(key=key, payload=_payload(payload),
                                                            sender=sender))
        return str(r.owner.address)


def _info(g: mpb.GroupInfo) -> GroupInfo:
    return GroupInfo(g.name, g.group_id.hex(), g.root.address, g.creator, g.created_ms / 1000,
                     g.last_seq, g.members, g.depth)


class Subscription:
    """An attached member: iterate it for messages; it reconnects and resumes on its own."""

    def __init__(self, client: Client, name: str, member: str, resume_after: int | None,
                 max_reconnects: int = 20) -> None:
        self.client = client
        self.name = name
        self.member = member
        self.last_seq = resume_after
        self.start_seq: int | None = None
        self.max_reconnects = max_reconnects
        self._call: Any = None
        self._closed = False
        self._ended = False
        self.reconnects = 0
        self.access_node = ""

    async def __aenter__(self) -> Subscription:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[GroupMessage]:
        return self

    async def open(self) -> None:
        """Attach at the current node (or the next one that answers)."""
        last: McastClientError | None = None
        n = len(self.client.addresses)
        for i in range(n):
            index = (self.client._current + i) % n
            address = self.client.addresses[index]
            resume = self.last_seq is not None
            call = self.client._stub(address).Join(mpb.JoinGroupRequest(
                name=self.name, resume=resume, last_seq=self.last_seq or 0, member=self.member))
            try:
                first = await asyncio.wait_for(call.read(), self.client.timeout)
            except TimeoutError:
                call.cancel()
                last = McastClientError(f"{address}: no answer to join", "DEADLINE_EXCEEDED")
                continue
            except grpc.aio.AioRpcError as exc:
                last = _error(exc, address)
                if exc.code() not in _RECONNECT:
                    raise last from None
                continue
            if first is grpc.aio.EOF or first.kind != mpb.GroupEvent.JOINED:
                call.cancel()
                last = McastClientError(f"{address}: join was not acknowledged")
                continue
            self._call, self.access_node = call, address
            self.client._current = index
            if self.last_seq is None:
                self.last_seq = first.seq
            if self.start_seq is None:
                self.start_seq = first.seq
            return
        assert last is not None
        raise last

    async def __anext__(self) -> GroupMessage:
        while True:
            if self._closed or self._ended:
                raise StopAsyncIteration
            if self._call is None:
                await self.open()
            try:
                e = await self._call.read()
            except asyncio.CancelledError:
                if self._closed:  # our own close() cancelled the call
                    raise StopAsyncIteration from None
                raise
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                if exc.code() not in _RECONNECT:
                    raise _error(exc, self.access_node) from None
                e = None
            if e is None or e is grpc.aio.EOF:
                if self._closed:
                    raise StopAsyncIteration
                # The access node went away (or let us go): resume at another one.
                self._call = None
                self.reconnects += 1
                if self.reconnects > self.max_reconnects:
                    raise McastClientError(f"gave up on {self.name!r} after "
                                           f"{self.max_reconnects} reconnects")
                self.client._current = (self.client._current + 1) % len(self.client.addresses)
                await asyncio.sleep(min(1.0, 0.1 * self.reconnects))
                continue
            msg = GroupMessage(KIND_NAMES.get(e.kind, "message"), e.group, e.seq, e.payload,
                               e.sender, e.ts_ms / 1000, e.last_seq)
            if msg.kind == "message":
                if self.last_seq is not None and msg.seq <= self.last_seq:
                    continue  # already delivered before a reconnect
                self.last_seq = msg.seq
            elif msg.kind == "gap":
                self.last_seq = max(self.last_seq or 0, msg.last_seq)
            elif msg.kind == "ended":
                self._ended = True
            return msg

    async def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()
            self._call = None


class BlockingClient:
    """The same API without asyncio: calls run on a private event loop thread."""

    def __init__(self, addresses: list[str] | str, timeout: float = 10.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client = self._run(self._make(addresses, timeout))

    async def _make(self, addresses: list[str] | str, timeout: float) -> Client:
        return Client(addresses, timeout)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self, name: str, creator: str = "") -> CreatedGroup:
        return self._run(self._client.create(name, creator))

    def send(self, name: str, payload: bytes | str, sender: str = "") -> int:
        return self._run(self._client.send(name, payload, sender))

    def destroy(self, name: str, token: str) -> None:
        self._run(self._client.destroy(name, token))

    def anycast(self, name: str, payload: bytes | str, sender: str = "") -> str:
        return self._run(self._client.anycast(name, payload, sender))

    def info(self, name: str) -> GroupInfo:
        return self._run(self._client.info(name))

    def groups(self) -> list[GroupInfo]:
        return self._run(self._client.groups())

    def broadcast(self, payload: bytes | str, sender: str = "") -> None:
        self._run(self._client.broadcast(payload, sender))

    def unicast(self, key: str, payload: bytes | str, sender: str = "") -> str:
        return self._run(self._client.unicast(key, payload, sender))

    def join(self, name: str, member: str = "", resume_after: int | None = None
             ) -> BlockingSubscription:
        sub = self._client.join(name, member, resume_after)
        self._run(sub.open())
        return BlockingSubscription(self, sub)


class BlockingSubscription:
    """Iterate for messages; `next(timeout)` waits at most that long. A pump task on the
    client's loop reads the stream, so giving up on a wait never disturbs the stream."""

    _DONE = object()

    def __init__(self, owner: BlockingClient, sub: Subscription) -> None:
        self._owner = owner
        self.sub = sub
        self._items: queue.Queue[Any] = queue.Queue()
        self._pump = asyncio.run_coroutine_threadsafe(self._run_pump(), owner._loop)

    async def _run_pump(self) -> None:
        try:
            async for msg in self.sub:
                self._items.put(msg)
        except Exception as exc:  # delivered to the reader, raised there
            self._items.put(exc)
        self._items.put(self._DONE)

    def __iter__(self) -> Iterator[GroupMessage]:
        return self

    def __next__(self) -> GroupMessage:
        item = self._items.get()
        return self._unwrap(item, stop=True)  # type: ignore[return-value]

    def next(self, timeout: float) -> GroupMessage | None:
        """The next message, or None when none comes within `timeout` seconds (or the
        subscription has ended)."""
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            return None
        return self._unwrap(item, stop=False)

    def _unwrap(self, item: Any, stop: bool) -> GroupMessage | None:
        if item is self._DONE:
            self._items.put(item)  # stay ended for later calls
            if stop:
                raise StopIteration
            return None
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        self._owner._run(self.sub.close())

    def __enter__(self) -> BlockingSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
