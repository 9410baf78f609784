"""An in-memory network with virtual time: the second transport, for tests and simulation.

`VirtualTimeLoop` is an asyncio event loop whose clock jumps straight to the next timer instead
of waiting, so protocol code written for asyncio runs unchanged, deterministically and as fast
as the CPU allows. `MemoryNetwork` delivers RPCs between registered handlers with a latency
model, loss and partitions; a crashed or unreachable node simply never answers, so callers see
the same timeouts they would see on a real network.
"""

from __future__ import annotations

import asyncio
import logging
import random
import selectors
from collections import Counter
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from chord.ports import Handler, InvalidRequest, PeerUnavailable, RemoteError

log = logging.getLogger(__name__)


class _NoIOSelector(selectors.BaseSelector):
    """Stands in for the OS selector: nothing is ever ready, so waiting means advancing time."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        raise RuntimeError("the virtual-time loop does no I/O")

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        raise RuntimeError("the virtual-time loop does no I/O")

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: nothing is scheduled and nothing can wake the loop")
        self._loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return {}

    def close(self) -> None:
        pass


class VirtualTimeLoop(asyncio.BaseEventLoop):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        self._selector = _NoIOSelector(self)
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds

    def _process_events(self, event_list: list[Any]) -> None:
        pass

    def _write_to_self(self) -> None:
        pass


def fixed_latency(seconds: float) -> Callable[[str, str, random.Random], float]:
    return lambda src, dst, rng: seconds


def uniform_latency(low: float, high: float) -> Callable[[str, str, random.Random], float]:
    return lambda src, dst, rng: rng.uniform(low, high)


class MemoryNetwork:
    def __init__(
        self,
        seed: int = 0,
        latency: Callable[[str, str, random.Random], float] | None = None,
        loss: float = 0.0,
        copy_messages: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.latency = latency or fixed_latency(0.005)
        self.loss = loss
        self.copy_messages = copy_messages  # serialize each message, as a wire would
        self.handlers: dict[str, Handler] = {}
        self._partition: dict[str, int] = {}  # address -> side; unlisted nodes reach everyone
        self._cuts: set[frozenset[str]] = set()  # single links that carry nothing
        self.messages = 0
        self.calls: Counter[str] = Counter()  # by method
        # Every message sent (time, from, to, method) when tracing is on: two runs with one
        # seed must produce the same trace.
        self.trace: list[tuple[float, str, str, str]] | None = None

    def register(self, address: str, handler: Handler) -> None:
        self.handlers[address] = handler

    def unregister(self, address: str) -> None:
        self.handlers.pop(address, None)

    def partition(self, *sides: list[str]) -> None:
        self._partition = {a: i for i, side in enumerate(sides) for a in side}

    def heal(self) -> None:
        self._partition = {}
        self._cuts = set()

    def cut(self, a: str, b: str) -> None:
        """Break the link between two nodes (both directions); each still reaches the rest."""
        self._cuts.add(frozenset((a, b)))

    def transport(self, address: str) -> MemoryTransport:
        return MemoryTransport(self, address)

    def _linked(self, src: str, dst: str) -> bool:
        if self._cuts and frozenset((src, dst)) in self._cuts:
            return False
        a, b = self._partition.get(src), self._partition.get(dst)
        return a is None or b is None or a == b

    def _dropped(self, src: str, dst: str) -> bool:
        return not self._linked(src, dst) or (self.loss > 0 and self.rng.random() < self.loss)

    def _copy(self, msg: Message) -> Message:
        return type(msg).FromString(msg.SerializeToString()) if self.copy_messages else msg


class MemoryTransport:
    """Calls as timers and callbacks on the loop (no task per call): a request arrives after
    the link's latency, the handler runs as a task, the reply travels back; the caller's
    deadline fires unless the reply came first. A request whose caller gave up is still
    handled, as it would be on a real network."""

    def __init__(self, net: MemoryNetwork, address: str) -> None:
        self.net = net
        self.address = address

    async def call(self, address: str, method: str, request: Message, timeout: float) -> Message:
        net, loop = self.net, asyncio.get_running_loop()
        net.messages += 1
        net.calls[method] += 1
        if net.trace is not None:
            net.trace.append((round(loop.time(), 9), self.address, address, method))
        fut: asyncio.Future[Message] = loop.create_future()
        timer = loop.call_later(timeout, _expire, fut, address, method, timeout)
        loop.call_later(net.latency(self.address, address, net.rng), _arrive, net,
                        self.address, address, method, request, fut)
        try:
            return await fut
        finally:
            timer.cancel()


def _expire(fut: asyncio.Future[Message], address: str, method: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(PeerUnavailable(address, f"{method} timed out after {timeout:g}s"))


def _arrive(net: MemoryNetwork, src: str, dst: str, method: str, request: Message,
            fut: asyncio.Future[Message]) -> None:
    handler = net.handlers.get(dst)
    if handler is None or net._dropped(src, dst):
        return  # silence: the caller's deadline fires
    task = asyncio.get_running_loop().create_task(handler(method, net._copy(request)))
    task.add_done_callback(lambda t: _answer(net, src, dst, method, t, fut))


def _answer(net: MemoryNetwork, src: str, dst: str, method: str, task: asyncio.Task[Message],
            fut: asyncio.Future[Message]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        outcome: Message | Exception = net._copy(task.result())
    elif isinstance(exc, InvalidRequest):
        outcome = RemoteError(dst, "INVALID_ARGUMENT", str(exc))
    else:  # what a gRPC server would report as INTERNAL
        log.error("handler %s on %s failed", method, dst, exc_info=exc)
        outcome = RemoteError(dst, "INTERNAL", str(exc))
    asyncio.get_running_loop().call_later(net.latency(dst, src, net.rng), _reply, net, src,
                                          dst, outcome, fut)


def _reply(net: MemoryNetwork, src: str, dst: str, outcome: Message | Exception,
           fut: asyncio.Future[Message]) -> None:
    if fut.done() or dst not in net.handlers or net._dropped(dst, src):
        return  # too late, crashed while answering, or the reply was lost
    if isinstance(outcome, Exception):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
