"""Key-based routing: the Common API (Dabek et al.) that applications are written against.

Applications (DHT storage, multicast) register under a name and get `route`, `send`,
`replica_set`, `neighbors` and `owns`; they receive `forward`, `deliver`, `direct` and
`update` upcalls. They never see finger tables or the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, NamedTuple, Protocol

from google.protobuf.message import DecodeError

from chord.ids import IdSpace
from chord.ports import Clock, InvalidRequest, Observer
from chord.state import NodeRef, RingState


class LookupFailed(Exception):
    """Routing could not reach the owner of a key (no live next hop, hop limit, timeout)."""

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason  # "timeout", "no_route", "hop_limit" or "error"


class RouteResult(NamedTuple):
    owner: NodeRef          # the node that answered (the key's owner unless a hop stopped it)
    path: list[NodeRef]     # every node that handled the message, owner last
    payload: bytes

    @property
    def hops(self) -> int:
        return len(self.path) - 1


class NeighborChange(NamedTuple):
    old_successors: list[NodeRef]
    new_successors: list[NodeRef]
    old_predecessor: NodeRef | None
    new_predecessor: NodeRef | None


class Forward(NamedTuple):
    """A forward upcall's verdict: go on with `payload`, or stop here answering `reply`."""

    payload: bytes
    stop: bool = False
    reply: bytes = b""


class Upcalls(Protocol):
    """What the layer above (KBR) receives from the node. The node knows nothing else of it."""

    async def forward(
        self, key: int, app: str, payload: bytes, prev_hop: NodeRef | None, next_hop: NodeRef
    ) -> Forward: ...

    async def deliver(self, key: int, app: str, payload: bytes, origin: NodeRef) -> bytes: ...

    async def direct(self, app: str, payload: bytes, sender: NodeRef) -> bytes: ...

    def update(self, change: NeighborChange) -> None: ...


class AppFlow(Protocol):
    """Messages to one node's application, one way and in order (a stream): `send` raises
    PeerUnavailable once the flow has broken; whatever was sent got through up to a point."""

    async def send(self, payload: bytes) -> None: ...


class Overlay(Protocol):
    """What KBR needs of the node beneath it (`chord.node.ChordNode`): the Common API is
    written against this, so the node depends on KBR's types and never the other way round."""

    me: NodeRef
    space: IdSpace
    clock: Clock
    observer: Observer
    state: RingState
    upcalls: Upcalls

    async def route(self, key: int, app: str, payload: bytes, one_hop: bool = False
                    ) -> RouteResult: ...

    async def app_call(self, node: NodeRef, app: str, payload: bytes) -> bytes: ...

    def app_flow(self, node: NodeRef, app: str) -> AppFlow: ...

    async def broadcast(self, app: str, payload: bytes) -> int: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    async def leave(self) -> None: ...


class Application(Protocol):
    """An application on KBR. It may set a class attribute `one_hop = True` when its
    `forward` upcall only passes messages on: its routes may then skip the hops between."""

    name: str

    async def forward(
        self, key: int, payload: bytes, prev_hop: NodeRef | None, next_hop: NodeRef
    ) -> Forward:
        """At every hop before the message moves on: change it, or stop it here."""
        ...

    async def deliver(self, key: int, payload: bytes, origin: NodeRef) -> bytes:
        """At the key's owner; the answer goes back to the origin."""
        ...

    async def direct(self, payload: bytes, sender: NodeRef) -> bytes:
        """A message sent straight to this node by `Kbr.send`."""
        ...

    def update(self, change: NeighborChange) -> None:
        """The successor list or the predecessor changed."""
        ...

    async def leaving(self) -> None:
        """The node is about to leave gracefully: hand state over now."""
        ...


class Kbr:
    """The Common API on one node: applications register here and reach the overlay only
    through it; the node's upcalls are dispatched to the application named in each message."""

    def __init__(self, node: Overlay) -> None:
        self.node = node
        self.apps: dict[str, Application] = {}
        node.upcalls = self

    # -- what applications call ------------------------------------------------------------
    @property
    def me(self) -> NodeRef:
        return self.node.me

    @property
    def space(self) -> IdSpace:
        return self.node.space

    @property
    def clock(self) -> Clock:
        return self.node.clock

    @property
    def observer(self) -> Observer:
        return self.node.observer

    def register(self, app: Application) -> None:
        if app.name in self.apps:
            raise ValueError(f"application {app.name!r} registered twice")
        self.apps[app.name] = app

    async def route(self, key: int, app: str, payload: bytes, one_hop: bool | None = None
                    ) -> RouteResult:
        """Deliver to `app` at the owner of `key`. A message that needs no forward upcall on
        the way may be taken there in one hop from the location cache (`one_hop`; by default
        the application's `one_hop` attribute); for the others every hop sees the message
        (Scribe builds its trees so)."""
        if one_hop is None:
            one_hop = bool(getattr(self.apps.get(app), "one_hop", False))
        return await self.node.route(key, app, payload, one_hop)

    async def send(self, node: NodeRef, app: str, payload: bytes) -> bytes:
        return await self.node.app_call(node, app, payload)

    def flow(self, node: NodeRef, app: str) -> AppFlow:
        """A stream of one-way messages to `app` on `node`, each taken by its `direct`
        upcall in the order sent (the answers are dropped)."""
        return self.node.app_flow(node, app)

    async def broadcast(self, app: str, payload: bytes) -> int:
        """Deliver to `app`'s `direct` upcall on every ring node, this one included; returns
        how many nodes delivered it."""
        return await self.node.broadcast(app, payload)

    def owns(self, key: int) -> bool:
        return self.node.state.owns(key)

    def replica_set(self, n: int) -> list[NodeRef]:
        """The nodes that take over this node's keys if it fails, in order: its successors."""
        return self.node.state.successors[:n]

    def neighbors(self) -> tuple[NodeRef | None, list[NodeRef]]:
        return self.node.state.predecessor, list(self.node.state.successors)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task that ends with the node."""
        return self.node.spawn(coro)

    async def leave(self) -> None:
        for app in self.apps.values():
            await app.leaving()
        await self.node.leave()

    # -- upcalls from the node ---------------------------------------------------------------
    def _app(self, name: str) -> Application:
        app = self.apps.get(name)
        if app is None:
            raise InvalidRequest(f"no application {name!r} on this node")
        return app

    # An application's message that does not parse came from a peer that sent garbage: a
    # refusal (InvalidRequest), never a crash of the handler.
    async def forward(
        self, key: int, app: str, payload: bytes, prev_hop: NodeRef | None, next_hop: NodeRef
    ) -> Forward:
        with _parsing(app):
            return await self._app(app).forward(key, payload, prev_hop, next_hop)

    async def deliver(self, key: int, app: str, payload: bytes, origin: NodeRef) -> bytes:
        with _parsing(app):
            return await self._app(app).deliver(key, payload, origin)

    async def direct(self, app: str, payload: bytes, sender: NodeRef) -> bytes:
        with _parsing(app):
            return await self._app(app).direct(payload, sender)

    def update(self, change: NeighborChange) -> None:
        for app in self.apps.values():
            app.update(change)


@contextlib.contextmanager
def _parsing(app: str) -> Iterator[None]:
    try:
        yield
    except DecodeError as exc:
        raise InvalidRequest(f"malformed {app} message: {exc}") from None
