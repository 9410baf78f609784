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
    def __init__(self, net: MemoryNetwork, address: str) -> None:
        self.net = net
        self.address = address

    async def call(self, address: str, method: str, request: Message, timeout: float) -> Message:
        try:
            return await asyncio.wait_for(self._exchange(address, method, request), timeout)
        except TimeoutError:
            raise PeerUnavailable(address, f"{method} timed out after {timeout:g}s") from None

    async def _exchange(self, dst: str, method: str, request: Message) -> Message:
        net, src = self.net, self.address
        net.messages += 1
        net.calls[method] += 1
        await asyncio.sleep(net.latency(src, dst, net.rng))
        handler = net.handlers.get(dst)
        if handler is None or net._dropped(src, dst):
            await asyncio.Future()  # silence: the caller's timeout fires
        try:
            reply = await handler(method, net._copy(request))
        except InvalidRequest as exc:
            raise RemoteError(dst, "INVALID_ARGUMENT", str(exc)) from None
        except Exception as exc:  # what a gRPC server would report as INTERNAL
            log.exception("handler %s on %s failed", method, dst)
            raise RemoteError(dst, "INTERNAL", str(exc)) from None
        await asyncio.sleep(net.latency(dst, src, net.rng))
        if dst not in net.handlers or net._dropped(dst, src):
            await asyncio.Future()  # crashed while answering, or the reply was lost
        return net._copy(reply)
