"""The gRPC transport: the Chord service over grpc.aio, client side and server side.

Both sides are derived from the service descriptor in chord.proto, so a new RPC needs no code
here. Calls between nodes travel as frames on one long-lived stream per peer (the Link method,
chordcast.link), several times cheaper than unary calls; every method is also served as a unary
call, for tools like grpcurl. One channel per peer is reused (bounded, least recently used
closed first), and every call carries a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from chord.ports import (
    MAX_MESSAGE_BYTES,
    Handler,
    PeerUnavailable,
    RemoteError,
    refusal_status,
)
from chordcast import link
from chordcast.tls import Credentials, channel_options
from chordcast.v1 import chord_pb2

log = logging.getLogger(__name__)

SERVICE = chord_pb2.DESCRIPTOR.services_by_name["Chord"]
SERVICE_NAME = SERVICE.full_name
METHODS: dict[str, tuple[type[Message], type[Message]]] = {
    m.name: (
        message_factory.GetMessageClass(m.input_type),
        message_factory.GetMessageClass(m.output_type),
    )
    for m in SERVICE.methods
    if not (m.client_streaming or m.server_streaming)
}
LINK_PATH = f"/{SERVICE_NAME}/Link"
# What a dead, restarting or overloaded peer looks like: drop the pointer, try another node.
_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
}
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Fail fast on a dead peer instead of waiting in reconnect backoff for the whole deadline.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # Each channel its own connection: by default channels to one address share it, back-off
    # included, so a fresh channel to a peer that restarted would still fail at once.
    ("grpc.use_local_subchannel_pool", 1),
]


RpcObserver = Callable[[str, str, float, str], None]  # method, side, seconds, status code


def open_channel(address: str, tls: Credentials | None,
                 options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
    """A channel to the node at `address`; with TLS, its certificate must be the one issued
    for that address (chordcast.tls.node_name)."""
    options = [*CHANNEL_OPTIONS, *(options or [])]
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.channel(),
                                   options=[*options, *channel_options(address)])


def served_by(observe: RpcObserver | None) -> link.CallObserver | None:
    """An RPC observer as a stream's answering end reports to it (the server side)."""
    if observe is None:
        return None
    return lambda method, seconds, status: observe(method, "server", seconds, status)


class GrpcTransport:
    def __init__(self, max_channels: int = 512, observe: RpcObserver | None = None,
                 tls: Credentials | None = None) -> None:
        self.max_channels = max_channels
        self.observe = observe
        self.tls = tls
        self._tls_version = tls.version if tls is not None else None
        self._channels: OrderedDict[str, tuple[grpc.aio.Channel, link.Link]] = OrderedDict()

    async def watch(self, address: str) -> None:
        """Follow the channel's connectivity (no polling: grpc reports each change): return
        once a connection that was up goes down, or a connection attempt fails."""
        channel = self._peer(address)[0]
        was_ready = False
        while True:
            state = channel.get_state(try_to_connect=True)
            if state == grpc.ChannelConnectivity.READY:
                was_ready = True
            elif was_ready or state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                                        grpc.ChannelConnectivity.SHUTDOWN):
                return
            await channel.wait_for_state_change(state)

    def _peer(self, address: str) -> tuple[grpc.aio.Channel, link.Link]:
        if self.tls is not None and self.tls.version != self._tls_version:
            # New certificate files: new connections present them (calls in flight on the
            # old ones finish first).
            self._tls_version = self.tls.version
            for known in list(self._channels):
                self._forget(known)
        entry = self._channels.get(address)
        if entry is None:
            channel = open_channel(address, self.tls)
            entry = (channel, link.Link(channel, LINK_PATH))
            self._channels[address] = entry
            while len(self._channels) > self.max_channels:
                _, (old, old_link) = self._channels.popitem(last=False)
                asyncio.get_running_loop().create_task(self._retire(old, old_link))
        else:
            self._channels.move_to_end(address)
        return entry

    def _forget(self, address: str) -> None:
        entry = self._channels.pop(address, None)
        if entry is not None:
            asyncio.get_running_loop().create_task(self._retire(*entry))

    async def _retire(self, channel: grpc.aio.Channel, peer_link: link.Link) -> None:
        """An evicted peer: its calls in flight finish (a call's deadline at most), then it
        is closed."""
        await peer_link.retire(timeout=30.0)
        await channel.close(grace=1.0)

    def flow(self, address: str, method: str) -> GrpcFlow:
        return GrpcFlow(self, address, method)

    async def call(self, address: str, method: str, request: Message, timeout: float) -> Message:
        started, status = time.perf_counter(), "OK"
        try:
            body = request.SerializeToString()
            try:
                reply = await self._peer(address)[1].call(method, body, timeout)
            except link.LinkError as exc:
                if exc.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                # A connection that failed is not reused: its channel waits out a reconnect
                # back-off (up to seconds) and fails every call meanwhile, so a peer that
                # restarted at its old address could not be reached. A fresh channel connects
                # at once; when the call was never sent (no connection), it goes again on it.
                self._forget(address)
                left = timeout - (time.perf_counter() - started)
                if not link.never_connected(exc.code, exc.detail) or left <= 0:
                    raise
                reply = await self._peer(address)[1].call(method, body, left)
            return METHODS[method][1].FromString(reply)
        except link.LinkError as exc:
            status = exc.code.name
            if exc.code in _UNAVAILABLE:
                raise PeerUnavailable(address, f"{exc.code.name}: {exc.detail}") from None
            raise RemoteError(address, exc.code.name, exc.detail) from None
        except ValueError as exc:  # a malformed address never reaches the network
            status = "INVALID_ARGUMENT"
            raise PeerUnavailable(address, f"bad address: {exc}") from None
        except DecodeError as exc:
            status = "INTERNAL"
            raise RemoteError(address, status, f"malformed {method} reply: {exc}") from None
        finally:
            if self.observe is not None:
                self.observe(method, "client", time.perf_counter() - started, status)

    async def close(self) -> None:
        for channel, peer_link in self._channels.values():
            peer_link.close()
            await channel.close(grace=0.5)
        self._channels.clear()


class GrpcFlow:
    """One-way frames on the peer's Link stream (chordcast.link.Link.cast): the stream keeps
    their order and its flow control is the window. Bound to the stream it started on: when
    that one breaks, so does the flow."""

    def __init__(self, transport: GrpcTransport, address: str, method: str) -> None:
        self._transport = transport
        self.address = address
        self.method = method
        self._link: link.Link | None = None
        self._generation = 0
        self.broken = False

    async def send(self, request: Message, timeout: float) -> None:
        transport, address = self._transport, self.address
        started, status = time.perf_counter(), "OK"
        try:
            if self.broken:
                raise link.LinkError(grpc.StatusCode.UNAVAILABLE, "flow broken")
            peer_link = transport._peer(address)[1]
            if self._link is not None and peer_link is not self._link:
                raise link.LinkError(grpc.StatusCode.UNAVAILABLE, "connection replaced")
            self._link = peer_link
            self._generation = await peer_link.cast(
                self.method, request.SerializeToString(), self._generation, timeout)
        except link.LinkError as exc:
            self.broken = True
            status = exc.code.name
            if exc.code in _UNAVAILABLE:
                raise PeerUnavailable(address, f"{exc.code.name}: {exc.detail}") from None
            raise RemoteError(address, exc.code.name, exc.detail) from None
        except ValueError as exc:  # a malformed address never reaches the network
            self.broken = True
            status = "INVALID_ARGUMENT"
            raise PeerUnavailable(address, f"bad address: {exc}") from None
        finally:
            if transport.observe is not None:
                transport.observe(f"{self.method}:flow", "client", time.perf_counter() - started,
                                  status)


# Per connection: a check of each Chord request against the caller's identity (it raises
# link.Refusal), or None when there is nothing to check (no TLS).
Authorizer = Callable[[grpc.aio.ServicerContext], Callable[[str, Message], None] | None]


def chord_handler(handle: Handler, streams: link.Streams, observe: RpcObserver | None = None,
                  authorize: Authorizer | None = None) -> grpc.GenericRpcHandler:
    """Serve every method of the Chord service through one protocol-level handler: as unary
    calls, and as frames on Link streams. With `authorize`, each request is first checked
    against who sent it."""

    def method(name: str, check: Callable[[str, Message], None] | None = None
               ) -> Callable[[Message], Awaitable[Message]]:
        async def call(request: Message) -> Message:
            if check is not None:
                check(name, request)
            try:
                return await handle(name, request)
            except Exception as exc:
                status = refusal_status(exc)
                if status is None:
                    raise  # a failure of the handler: INTERNAL, and logged
                raise link.Refusal(grpc.StatusCode[status], str(exc)) from None

        return call

    def methods_for(check: Callable[[str, Message], None] | None) -> link.Methods:
        return {name: (req, method(name, check)) for name, (req, _) in METHODS.items()}

    methods = methods_for(None)
    dispatch = link.dispatcher("Chord", methods)

    def checked(context: grpc.aio.ServicerContext) -> link.Methods | None:
        check = authorize(context) if authorize is not None else None
        return methods_for(check) if check is not None else None

    async def serve_link(requests: Any, context: grpc.aio.ServicerContext) -> None:
        own = checked(context)  # one connection, one caller: checked once per stream
        await streams.serve(context, link.dispatcher("Chord", own) if own else dispatch,
                            served_by(observe))

    def unary(name: str, req_cls: type[Message], reply_cls: type[Message]) -> Any:
        async def call(request: Message, context: grpc.aio.ServicerContext) -> Message:
            own = checked(context)
            return await link.unary((own or methods)[name][1], request, context)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=req_cls.FromString,
            response_serializer=reply_cls.SerializeToString,
        )

    handlers = {name: unary(name, req, reply) for name, (req, reply) in METHODS.items()}
    handlers["Link"] = grpc.stream_stream_rpc_method_handler(
        serve_link, request_deserializer=link.FRAMES.FromString,
        response_serializer=link.FRAMES.SerializeToString)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
