"""`BlockingClient`: the `Client` API without asyncio, for scripts, the demo and the REPL.

Every method is derived from the asyncio `Client` (`_blocking` below wraps the coroutine
method and keeps its signature and docs), so the two cannot drift apart. Calls run on a private
event loop thread; a subscription is read by a pump task on that loop, so giving up on a wait
never disturbs the stream.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from functools import wraps
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from chordcast.client import Client, Subscription
from chordcast.results import GroupMessage, InboxMessage
from chordcast.tls import TlsConfig

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[BlockingClient, P], T]:
    @wraps(method)
    def call(self: BlockingClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(method(self.client, *args, **kwargs))

    return call


class BlockingClient:
    """The `Client` API without asyncio; every coroutine method has a blocking twin."""

    def __init__(self, addresses: list[str] | str, timeout: float = 10.0,
                 ring_aware: bool = True, tls: TlsConfig | None = None) -> None:
        # Made first: it validates the addresses before any thread starts.
        self.client = Client(addresses, timeout, ring_aware, tls)
        self._loop = asyncio.new_event_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="chordcast-client")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the wrapped `Client` on its loop and wait for the result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        # The loop is stopped, not closed: gRPC's completion-queue poller may still hand it
        # a callback for a channel just closed, and on a closed loop that prints an "Event
        # loop is closed" traceback in the caller's terminal. A stopped loop just drops it;
        # the loop goes with this object.

    async def _shutdown(self) -> None:
        """Close the client, then end what is left on the loop (gRPC's own bookkeeping of
        cancelled streams) as asyncio.run does, so nothing is destroyed while pending."""
        await self.client.close()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def addresses(self) -> list[str]:
        return self.client.addresses

    space = _blocking(Client.space)
    node_info = _blocking(Client.node_info)
    ring = _blocking(Client.ring)
    lookup = _blocking(Client.lookup)
    put = _blocking(Client.put)
    get = _blocking(Client.get)
    delete = _blocking(Client.delete)
    create = _blocking(Client.create)
    detach = _blocking(Client.detach)
    send = _blocking(Client.send)
    destroy = _blocking(Client.destroy)
    anycast = _blocking(Client.anycast)
    info = _blocking(Client.info)
    list_groups = _blocking(Client.list_groups)
    roles = _blocking(Client.roles)
    broadcast = _blocking(Client.broadcast)
    unicast = _blocking(Client.unicast)

    # The two streams are not coroutines: they get blocking iterators of their own.
    def join(self, name: str, member: str = "", resume_after: int | None = None
             ) -> BlockingSubscription:
        sub = self.client.join(name, member, resume_after)
        self.run(sub.open())
        return BlockingSubscription(self, sub)

    def leave(self, subscription: BlockingSubscription) -> None:
        subscription.close()

    def inbox(self) -> BlockingStream[InboxMessage]:
        return BlockingStream(self, self.client.inbox())


class BlockingStream(Generic[T]):
    """Iterate for items; `next(timeout)` waits at most that long. A pump task on the
    client's loop reads the stream into a queue."""

    _DONE = object()

    def __init__(self, owner: BlockingClient, source: Any) -> None:
        self._owner = owner
        self._items: queue.Queue[Any] = queue.Queue()
        self._pump = asyncio.run_coroutine_threadsafe(self._run_pump(source), owner._loop)

    async def _run_pump(self, source: Any) -> None:
        try:
            async for item in source:
                self._items.put(item)
        except Exception as exc:  # delivered to the reader, raised there
            self._items.put(exc)
        finally:  # also when closed (cancelled): a later read ends instead of hanging
            self._items.put(self._DONE)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = self._unwrap(self._items.get())
        if item is None:
            raise StopIteration
        return item

    def next(self, timeout: float) -> T | None:
        """The next item, or None when none comes within `timeout` seconds (or the stream
        has ended)."""
        try:
            return self._unwrap(self._items.get(timeout=timeout))
        except queue.Empty:
            return None

    def _unwrap(self, item: Any) -> T | None:
        if item is self._DONE:
            self._items.put(item)  # stay ended for later calls
            return None
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        self._pump.cancel()

    def __enter__(self) -> BlockingStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockingSubscription(BlockingStream[GroupMessage]):
    """An attached member read without asyncio; `sub` is the underlying `Subscription`."""

    def __init__(self, owner: BlockingClient, sub: Subscription) -> None:
        self.sub = sub
        super().__init__(owner, sub)

    @property
    def access_node(self) -> str:
        return self.sub.access_node

    def close(self) -> None:
        self._owner.run(self.sub.close())
