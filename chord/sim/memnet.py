"""An in-memory network with virtual time: the second transport, for tests and simulation.

`VirtualTimeLoop` is an asyncio event loop whose clock jumps straight to the next timer instead
of waiting, so protocol code written for asyncio runs unchanged, deterministically and as fast
as the CPU allows. `MemoryNetwork` delivers RPCs between registered handlers with a latency
model, loss and partitions; a crashed or unreachable node simply never answers, so callers see
the same timeouts they would see on a real network. Flows (one-way streams) keep their order and
their window, and break as a TCP connection does: when the peer is gone or cut off.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from chord.ports import (
    MAX_MESSAGE_BYTES,
    Handler,
    PeerUnavailable,
    RemoteError,
    refusal_status,
)

log = logging.getLogger(__name__)


class VirtualTimeLoop(asyncio.BaseEventLoop):
    """Runs what is ready; when nothing is, jumps to the next timer. No I/O at all.

    Timers live in a heap of (when, sequence, handle): comparisons stay in C (the simulator
    schedules millions of timers) and timers due at the same instant run in the order they
    were scheduled, which keeps runs reproducible."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        self._clock_resolution = 1e-9
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._sequence = 0

    def time(self) -> float:
        return self._now

    def call_at(  # type: ignore[override]  # typeshed's TypeVarTuple form; same behaviour
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        timer = asyncio.TimerHandle(when, callback, args, self, context)
        self._sequence += 1
        heapq.heappush(self._timers, (when, self._sequence, timer))
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def pending_timers(self) -> int:
        return sum(1 for _, _, t in self._timers if not t.cancelled())

    def _run_once(self) -> None:
        ready, timers = self._ready, self._timers  # type: ignore[attr-defined]
        if not ready and not self._stopping:  # type: ignore[attr-defined]
            while timers and timers[0][2].cancelled():
                heapq.heappop(timers)
            if not timers:
                raise RuntimeError("deadlock: nothing is scheduled and nothing can wake the loop")
            self._now = max(self._now, timers[0][0])
        due = self._now + self._clock_resolution
        while timers and timers[0][0] < due:
            timer = heapq.heappop(timers)[2]
            timer._scheduled = False  # type: ignore[attr-defined]
            if not timer.cancelled():
                ready.append(timer)
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle.cancelled():
                handle._run()

    def close(self) -> None:
        self._timers.clear()
        super().close()

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
        # Links being watched (`MemoryTransport.watch`): watched address -> (watcher, future).
        self._watchers: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}
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
        """The node at `address` is gone: its connections close, and each watcher hears of it
        one link latency later (as a FIN would arrive)."""
        self.handlers.pop(address, None)
        for watcher, fut in self._watchers.pop(address, []):
            if not fut.done():
                delay = self.latency(address, watcher, self.rng)
                fut.get_loop().call_later(delay, _settle, fut)

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
    """Calls as timers and callbacks on the loop: a request arrives after the link's latency,
    the handler runs, the reply travels back; the caller's deadline fires unless the reply came
    first. A request whose caller gave up is still handled, as it would be on a real network.

    Two shortcuts keep a message cheap (the simulator sends millions) without changing what
    any caller can observe: a handler that finishes without waiting runs inline instead of as
    a task, and the deadline timer is only scheduled once the reply is known to miss it."""

    def __init__(self, net: MemoryNetwork, address: str) -> None:
        self.net = net
        self.address = address

    async def call(self, address: str, method: str, request: Message, timeout: float) -> Message:
        net, loop = self.net, asyncio.get_running_loop()
        net.messages += 1
        net.calls[method] += 1
        now = loop.time()
        if net.trace is not None:
            net.trace.append((round(now, 9), self.address, address, method))
        if net.copy_messages and request.ByteSize() > MAX_MESSAGE_BYTES:
            raise RemoteError(address, "RESOURCE_EXHAUSTED", _too_big("request", request))
        pending = _Pending(loop.create_future(), address, method, timeout, now + timeout)
        latency = net.latency(self.address, address, net.rng)
        if now + latency >= pending.deadline:
            pending.expire_at_deadline(loop)  # arrives too late, but is still handled
        loop.call_at(now + latency, _arrive, net, self.address, address, method, request,
                     pending)
        try:
            return await pending.fut
        finally:
            pending.disarm()

    def flow(self, address: str, method: str) -> MemoryFlow:
        return MemoryFlow(self.net, self.address, address, method)

    async def watch(self, address: str) -> None:
        net = self.net
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if address not in net.handlers:
            fut.set_result(None)  # nothing there: the connection fails at once
        entry = (self.address, fut)
        net._watchers.setdefault(address, []).append(entry)
        try:
            await fut
        finally:
            watchers = net._watchers.get(address)
            if watchers is not None and entry in watchers:
                watchers.remove(entry)
                if not watchers:
                    del net._watchers[address]


# Messages a flow has sent and its peer not yet handled; more wait (what a stream's flow-control
# window and the server's queue together hold).
FLOW_WINDOW = 1024


class MemoryFlow:
    """One stream's worth of one-way messages: each arrives one link latency after it was sent
    but never before the one sent ahead of it, and the peer handles them one at a time in that
    order. A stream is a connection, not a datagram: random loss does not touch it (TCP would
    resend), but a peer that is gone or cut off breaks it, and nothing more goes through."""

    def __init__(self, net: MemoryNetwork, src: str, dst: str, method: str) -> None:
        self.net = net
        self.src = src
        self.dst = dst
        self.method = method
        self.broken = False
        self._unhandled = 0
        self._last_arrival = 0.0
        self._room = asyncio.Event()
        self._arrived: deque[Message] = deque()
        self._busy = False
        self._handler: Handler | None = None  # the peer it connected to (a restart breaks it)

    async def send(self, request: Message, timeout: float) -> None:
        net, loop = self.net, asyncio.get_running_loop()
        if not self.broken and self._unhandled >= FLOW_WINDOW:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), timeout)
            except TimeoutError:
                self._break()
                raise PeerUnavailable(self.dst, f"{self.method} flow full for {timeout:g}s"
                                      ) from None
        if self.broken:
            raise PeerUnavailable(self.dst, f"{self.method} flow broken")
        if net.copy_messages and request.ByteSize() > MAX_MESSAGE_BYTES:
            self._break()
            raise RemoteError(self.dst, "RESOURCE_EXHAUSTED", _too_big("request", request))
        net.messages += 1
        net.calls[self.method] += 1
        now = loop.time()
        if net.trace is not None:
            net.trace.append((round(now, 9), self.src, self.dst, self.method))
        self._unhandled += 1
        at = max(now + net.latency(self.src, self.dst, net.rng), self._last_arrival)
        self._last_arrival = at
        loop.call_at(at, self._arrive, net._copy(request))

    def _arrive(self, request: Message) -> None:
        if self.broken:
            return
        handler = self.net.handlers.get(self.dst)
        if handler is None or not self.net._linked(self.src, self.dst) or (
                self._handler is not None and handler is not self._handler):
            self._break()
            return
        self._handler = handler
        self._arrived.append(request)
        if not self._busy:
            self._drain()

    def _drain(self) -> None:
        """Hand the arrived messages to the handler in order; one that waits for something
        holds the rest until it is done."""
        while self._arrived and not self.broken and self._handler is not None:
            coro: Any = self._handler(self.method, self._arrived.popleft())
            try:
                waiting_on = coro.send(None)
            except StopIteration:
                self._handled()
                continue
            except Exception as exc:
                self._failed(exc)
                continue
            self._busy = True
            task = asyncio.get_running_loop().create_task(_resume(_Started(coro, waiting_on)))
            task.add_done_callback(self._resumed)
            return

    def _resumed(self, task: asyncio.Task[Message]) -> None:
        self._busy = False
        if not task.cancelled() and task.exception() is not None:
            self._failed(task.exception())
        else:
            self._handled()
        self._drain()

    def _failed(self, exc: BaseException | None) -> None:
        if refusal_status(exc) is None:  # a refusal has nobody to go to
            log.error("flow %s on %s failed", self.method, self.dst, exc_info=exc)
        self._handled()

    def _handled(self) -> None:
        self._unhandled -= 1
        self._room.set()

    def _break(self) -> None:
        self.broken = True
        self._arrived.clear()
        self._room.set()


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Pending:
    """One call in flight: the caller's future and, once needed, its deadline timer."""

    __slots__ = ("address", "deadline", "fut", "method", "timeout", "timer")

    def __init__(self, fut: asyncio.Future[Message], address: str, method: str,
                 timeout: float, deadline: float) -> None:
        self.fut = fut
        self.address = address
        self.method = method
        self.timeout = timeout
        self.deadline = deadline
        self.timer: asyncio.TimerHandle | None = None

    def expire_at_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.timer is None and not self.fut.done():
            self.timer = loop.call_at(self.deadline, self._expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _expire(self) -> None:
        if not self.fut.done():
            self.fut.set_exception(PeerUnavailable(
                self.address, f"{self.method} timed out after {self.timeout:g}s"))


def _arrive(net: MemoryNetwork, src: str, dst: str, method: str, request: Message,
            pending: _Pending) -> None:
    loop = asyncio.get_running_loop()
    handler = net.handlers.get(dst)
    if handler is None or net._dropped(src, dst):
        pending.expire_at_deadline(loop)  # silence: the caller's deadline fires
        return
    # Stepped by hand (`send`), so the handler's first step runs inline with no task.
    coro: Any = handler(method, net._copy(request))
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        _answer(net, src, dst, method, done.value, None, pending)
        return
    except Exception as exc:
        _answer(net, src, dst, method, None, exc, pending)
        return
    # The handler waits for something: it goes on as a task, and may take any time.
    pending.expire_at_deadline(loop)
    task = loop.create_task(_resume(_Started(coro, waiting_on)))
    task.add_done_callback(lambda t: None if t.cancelled() else _answer(
        net, src, dst, method, None if t.exception() else t.result(), t.exception(), pending))


_NOTHING = object()


class _Started:
    """A coroutine that already ran up to its first await, made awaitable again: the first
    step hands back what it was waiting on, later steps go straight to the coroutine."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Any, first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> _Started:
        return self

    def __iter__(self) -> _Started:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def send(self, value: Any) -> Any:
        first, self._first = self._first, _NOTHING
        return first if first is not _NOTHING else self._coro.send(value)

    def throw(self, *exc: Any) -> Any:
        return self._coro.throw(*exc)

    def close(self) -> None:
        self._coro.close()


async def _resume(started: _Started) -> Message:
    return await started  # type: ignore[no-any-return]


def _too_big(what: str, msg: Message) -> str:
    return (f"{what} {type(msg).__name__} of {msg.ByteSize()} bytes exceeds the message limit "
            f"({MAX_MESSAGE_BYTES})")


def _answer(net: MemoryNetwork, src: str, dst: str, method: str, result: Message | None,
            exc: BaseException | None, pending: _Pending) -> None:
    outcome: Message | Exception
    if result is not None and exc is None:
        if net.copy_messages and result.ByteSize() > MAX_MESSAGE_BYTES:
            outcome = RemoteError(dst, "RESOURCE_EXHAUSTED", _too_big("reply", result))
        else:
            outcome = net._copy(result)
    elif (status := refusal_status(exc)) is not None:
        outcome = RemoteError(dst, status, str(exc))
    else:  # what a gRPC server would report as INTERNAL
        log.error("handler %s on %s failed", method, dst, exc_info=exc)
        outcome = RemoteError(dst, "INTERNAL", str(exc))
    loop = asyncio.get_running_loop()
    at = loop.time() + net.latency(dst, src, net.rng)
    if at >= pending.deadline:
        pending.expire_at_deadline(loop)  # the reply would come too late
        return
    loop.call_at(at, _reply, net, src, dst, outcome, pending)


def _reply(net: MemoryNetwork, src: str, dst: str, outcome: Message | Exception,
           pending: _Pending) -> None:
    fut = pending.fut
    if fut.done():
        return  # the caller gave up
    if dst not in net.handlers or net._dropped(dst, src):
        pending.expire_at_deadline(asyncio.get_running_loop())  # crashed, or the reply was lost
        return
    if isinstance(outcome, Exception):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)
