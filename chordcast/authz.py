"""Authorization on a TLS node. gRPC accepts any certificate the CA signed, so every call is
checked here: who the caller is (its certificate's chordcast identity), whether its role may
use the service (the node-to-node Chord service only from node certificates), and, for Chord
messages, that every node the message names as its sender is the caller itself (no spoofed
sender, origin, leave notice or route result). Refusals are counted by reason.

A node without TLS checks nothing here: anyone who reaches its port is trusted (README,
"Security").
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from chordcast.link import Refusal
from chordcast.tls import NODE, Principal, is_tls, principal_of
from chordcast.v1 import chord_pb2

CHORD_SERVICE = chord_pb2.DESCRIPTOR.services_by_name["Chord"].full_name

# Refusal reasons (the `reason` label of chordcast_auth_refusals_total).
NO_IDENTITY = "no_identity"      # a CA-signed certificate without a chordcast identity
NOT_A_NODE = "not_a_node"        # a client certificate on the node-to-node service
SPOOFED = "spoofed_sender"       # a message naming another node as its sender
BUSY = "peer_limit"              # a caller past its share of the calls served at once
REASONS = (NO_IDENTITY, NOT_A_NODE, SPOOFED, BUSY)

# For each Chord method, the nodes a request claims to come from: each must be the caller.
# (A route's origin and a broadcast's origin travel over other nodes and are not the caller;
# the hop that sends a route is the last of its path.)
CLAIMS: dict[str, Callable[[Any], list[str]]] = {
    "Rectify": lambda r: [r.candidate.address],
    "Route": lambda r: [r.path[-1].address if r.path else r.origin.address],
    "RouteResult": lambda r: [r.owner.address, *([r.path[-1].address] if r.path else [])],
    "LeaveNotice": lambda r: [r.leaving.address],
    "AppCall": lambda r: [r.sender.address],
    "Resolve": lambda r: [r.origin.address],
}

Refused = Callable[[str], None]  # counts one refusal by reason


def claims_checker(principal: Principal, refused: Refused) -> Callable[[str, Message], None]:
    """For one authenticated node connection: refuse a Chord request that names another
    node as its sender."""

    def check(method: str, request: Message) -> None:
        claimed = CLAIMS.get(method)
        if claimed is None:
            return
        for address in claimed(request):
            if address != principal.name:
                refused(SPOOFED)
                raise Refusal(grpc.StatusCode.PERMISSION_DENIED,
                              f"{method} from {principal} names {address or 'no node'} as "
                              f"its sender")

    return check


def caller(context: grpc.aio.ServicerContext) -> Principal | None:
    """The authenticated node or client calling, None on a connection without TLS."""
    return principal_of(context) if is_tls(context) else None


class Malformed:
    """What a request that does not parse becomes (gRPC itself would answer UNKNOWN, as if
    the handler had crashed): the wrapped handler refuses it with INVALID_ARGUMENT."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def peer_key(context: grpc.aio.ServicerContext) -> str:
    """Whose share a call counts against: its certificate's principal on TLS, else the
    caller's IP address (one host, however many connections it opens)."""
    principal = caller(context)
    if principal is not None:
        return str(principal)
    peer = context.peer() or ""  # "ipv4:1.2.3.4:567", "ipv6:[::1]:567", "unix:..."
    kind, _, rest = peer.partition(":")
    return rest.rsplit(":", 1)[0] if kind in ("ipv4", "ipv6") else peer


class InFlight:
    """Calls (and streams) being served per caller, each caller held to `limit` at once so
    no one peer or client takes the whole node (--max-calls bounds them all together). Only
    callers with calls in flight have an entry: the table is as small as the calls are few."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: dict[str, int] = {}

    def enter(self, who: str) -> bool:
        count = self.calls.get(who, 0)
        if count >= self.limit:
            return False
        self.calls[who] = count + 1
        return True

    def leave(self, who: str) -> None:
        count = self.calls.pop(who) - 1
        if count:
            self.calls[who] = count


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method so it first checks its caller's role (an interceptor itself sees
    only the method and metadata; the wrapped handler sees the connection's certificate),
    holds each caller to its share of the calls served at once, and makes a request that
    does not parse INVALID_ARGUMENT, not a crash."""

    def __init__(self, refused: Refused, per_peer: int = 2_000) -> None:
        self.refused = refused
        self.in_flight = InFlight(per_peer)

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        nodes_only = method.split("/")[1:2] == [CHORD_SERVICE]
        return _guard(handler, method,
                      lambda context: self._check(context, nodes_only, method),
                      self._admit)

    def _admit(self, context: grpc.aio.ServicerContext) -> Callable[[], None] | None:
        """Count the call against its caller's share: what releases it when it ends, or
        None when the caller has its whole share in flight already."""
        who = peer_key(context)
        if self.in_flight.enter(who):
            return lambda: self.in_flight.leave(who)
        self.refused(BUSY)
        return None

    async def _check(self, context: grpc.aio.ServicerContext, nodes_only: bool,
                     method: str) -> None:
        if not is_tls(context):
            return
        principal = principal_of(context)
        if principal is None:
            self.refused(NO_IDENTITY)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "the certificate names no chordcast identity "
                                "(issue one with `chordcast certs`)")
        elif nodes_only and principal.kind != NODE:
            self.refused(NOT_A_NODE)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{method} is for ring nodes only, not {principal}")


def _guard(handler: Any, method: str, check: Callable[[Any], Awaitable[None]],
           admit: Callable[[Any], Callable[[], None] | None]) -> Any:
    """The same handler with `check(context)` run before its behaviour, run only while
    `admit(context)` gives its caller room (released when it ends), and its request parsed
    without ever raising (see Malformed)."""

    async def checked(request: Any, context: Any) -> None:
        await check(context)
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"malformed {method} request: {request.error}")

    async def busy(context: Any) -> None:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"too many calls in flight from {peer_key(context)} "
                            f"(its share of this node: --max-calls-per-peer); retry later")

    def wrap(behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):
            async def stream(request: Any, context: Any) -> Any:
                release = admit(context)
                if release is None:
                    await busy(context)
                    return
                try:
                    await checked(request, context)
                    async for item in behavior(request, context):
                        yield item
                finally:
                    release()

            return stream

        async def call(request: Any, context: Any) -> Any:
            release = admit(context)
            if release is None:
                await busy(context)
                return None
            try:
                await checked(request, context)
                return await behavior(request, context)
            finally:
                release()

        return call

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data) if deserialize is not None else data
        except Exception as exc:  # DecodeError, and whatever a parser may raise on garbage
            return Malformed(exc)

    deserialize = handler.request_deserializer

    kinds = {
        (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
        (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
        (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
        (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
    }
    field, make = kinds[handler.request_streaming, handler.response_streaming]
    return make(wrap(getattr(handler, field)), request_deserializer=parse,
                response_serializer=handler.response_serializer)
