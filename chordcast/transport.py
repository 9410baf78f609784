"""The gRPC transport: the Chord service over grpc.aio, client side and server side.

Both sides are derived from the service descriptor in chord.proto, so a new RPC needs no code
here. One channel per peer is reused (bounded, least recently used closed first), and every call
carries a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import Message

from chord.ports import Handler, InvalidRequest, PeerUnavailable, RemoteError
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
}
# What a dead, restarting or overloaded peer looks like: drop the pointer, try another node.
_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
}
MAX_MESSAGE_BYTES = 8 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Fail fast on a dead peer instead of waiting in reconnect backoff for the whole deadline.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


RpcObserver = Callable[[str, str, float, str], None]  # method, side, seconds, status code


class GrpcTransport:
    def __init__(self, max_channels: int = 512, observe: RpcObserver | None = None) -> None:
        self.max_channels = max_channels
        self.observe = observe
        self._channels: OrderedDict[str, tuple[grpc.aio.Channel, dict[str, Any]]] = OrderedDict()

    async def watch(self, address: str) -> None:
        """Follow the channel's connectivity (no polling: grpc reports each change): return
        once a connection that was up goes down, or a connection attempt fails."""
        self._stub(address, "Ping")  # make sure a channel exists
        channel = self._channels[address][0]
        was_ready = False
        while True:
            state = channel.get_state(try_to_connect=True)
            if state == grpc.ChannelConnectivity.READY:
                was_ready = True
            elif was_ready or state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                                        grpc.ChannelConnectivity.SHUTDOWN):
                return
            await channel.wait_for_state_change(state)

    def _stub(self, address: str, method: str) -> Any:
        entry = self._channels.get(address)
        if entry is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            entry = (channel, {})
            self._channels[address] = entry
            while len(self._channels) > self.max_channels:
                _, (old, _) = self._channels.popitem(last=False)
                self._close_later(old)
        else:
            self._channels.move_to_end(address)
        channel, stubs = entry
        stub = stubs.get(method)
        if stub is None:
            req_cls, reply_cls = METHODS[method]
            stub = channel.unary_unary(
                f"/{SERVICE_NAME}/{method}",
                request_serializer=req_cls.SerializeToString,
                response_deserializer=reply_cls.FromString,
            )
            stubs[method] = stub
        return stub

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        asyncio.get_running_loop().create_task(channel.close(grace=1.0))

    async def call(self, address: str, method: str, request: Message, timeout: float) -> Message:
        started, status = time.perf_counter(), "OK"
        try:
            reply: Message = await self._stub(address, method)(request, timeout=timeout)
            return reply
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            status = code.name
            if code in _UNAVAILABLE:
                raise PeerUnavailable(address, f"{code.name}: {exc.details()}") from None
            raise RemoteError(address, code.name, exc.details() or "") from None
        except ValueError as exc:  # a malformed address never reaches the network
            status = "INVALID_ARGUMENT"
            raise PeerUnavailable(address, f"bad address: {exc}") from None
        finally:
            if self.observe is not None:
                self.observe(method, "client", time.perf_counter() - started, status)

    async def close(self) -> None:
        for channel, _ in self._channels.values():
            await channel.close(grace=0.5)
        self._channels.clear()


def chord_handler(handle: Handler) -> grpc.GenericRpcHandler:
    """Serve every method of the Chord service through one protocol-level handler."""

    def unary(name: str, req_cls: type[Message], reply_cls: type[Message]) -> Any:
        async def call(request: Message, context: grpc.aio.ServicerContext) -> Message:
            try:
                return await handle(name, request)
            except InvalidRequest as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                raise  # abort raises; this keeps type checkers honest

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=req_cls.FromString,
            response_serializer=reply_cls.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {name: unary(name, req, reply) for name, (req, reply) in METHODS.items()},
    )
