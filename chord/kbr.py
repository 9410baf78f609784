"""Key-based routing: the Common API (Dabek et al.) that applications are written against.

Applications (DHT storage, multicast) register under a name and get `route`, `send`,
`replica_set`, `neighbors` and `owns`; they receive `forward`, `deliver`, `direct` and
`update` upcalls. They never see finger tables or the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from chord.ids import IdSpace
from chord.node import ChordNode, Forward, NeighborChange, RouteResult
from chord.ports import Clock, InvalidRequest, Observer
from chord.state import NodeRef


class Application(Protocol):
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
    def __init__(self, node: ChordNode) -> None:
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

    async def route(self, key: int, app: str, payload: bytes) -> RouteResult:
        return await self.node.route(key, app, payload)

    async def send(self, node: NodeRef, app: str, payload: bytes) -> bytes:
        return await self.node.app_call(node, app, payload)

    async def broadcast(self, app: str, payload: bytes) -> None:
        """Deliver to `app`'s `direct` upcall on every ring node, this one included."""
        await self.node.broadcast(app, payload)

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

    async def forward(
        self, key: int, app: str, payload: bytes, prev_hop: NodeRef | None, next_hop: NodeRef
    ) -> Forward:
        return await self._app(app).forward(key, payload, prev_hop, next_hop)

    async def deliver(self, key: int, app: str, payload: bytes, origin: NodeRef) -> bytes:
        return await self._app(app).deliver(key, payload, origin)

    async def direct(self, app: str, payload: bytes, sender: NodeRef) -> bytes:
        return await self._app(app).direct(payload, sender)

    def update(self, change: NeighborChange) -> None:
        for app in self.apps.values():
            app.update(change)
