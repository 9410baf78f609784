"""Many calls over one gRPC stream: the caller's end (`Link`) and the answering end (`serve`).

A grpc.aio unary call costs several times a message on an open stream (link.proto has the
figures), so nodes call each other, and the client library calls nodes, through one
bidirectional stream per peer. Each call is a `Frame` with an id the answer echoes; frames that
are ready together travel in one stream message. Everything is bounded: calls in flight per
link, handlers running per stream, bytes per stream message.

grpc.aio allows one write at a time on a stream, so each end has one writer task that sends
whatever accumulated while the previous write was in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from chord.ports import MAX_MESSAGE_BYTES
from chordcast.v1 import link_pb2

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 1 << 20  # a batch is closed once it holds this much (one frame may be larger)
MAX_IN_FLIGHT = 1024  # calls one link has outstanding; more wait for a slot (within their timeout)
# Requests one stream runs at once; beyond it the reader stops reading. As many as a caller
# may have in flight, so a well-behaved peer's pings never wait behind its slow calls.
MAX_HANDLERS = MAX_IN_FLIGHT
ONE_WAY_DRAIN = 10.0  # seconds a closing stream waits for the one-way frames it took
ANSWER_DRAIN = 0.5  # seconds a stopping node waits for a stream's answers in progress
FRAME_OVERHEAD = 64  # bytes a frame adds to its body (id, method, status), generously
# The largest body one call may carry: a stream message holds it with room to spare.
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES - (64 << 10)

# method, request body -> reply body; raises Refusal for an answer with an error status.
Dispatch = Callable[[str, bytes], Awaitable[bytes]]
# method, seconds, status name: how the answering end reports each call it served.
CallObserver = Callable[[str, float, str], None]


class _Status(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.detail = detail


class _Unreadable(Exception):
    """A stream message that is not a Frames message (it did not parse)."""


class Refusal(_Status):
    """A handler's answer with an error status (what context.abort is for a unary call)."""


class LinkError(_Status):
    """A call through a link failed: the peer answered with an error, the link broke, or the
    call timed out. `code` is the status a unary call would have ended with."""


def never_connected(code: grpc.StatusCode, detail: str) -> bool:
    """The call failed before reaching the peer (no connection could be made), so it was
    not sent: another node, or a fresh connection, may take it safely."""
    return code == grpc.StatusCode.UNAVAILABLE and "connect" in detail


Request = TypeVar("Request", bound=Message)
Reply = TypeVar("Reply", bound=Message)
# A service's methods as a stream serves them: name -> (request class, request -> reply).
Methods = dict[str, tuple[type[Message], Callable[[Any], Awaitable[Message]]]]

FRAMES = link_pb2.Frames
_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _expire(future: asyncio.Future[link_pb2.Frame]) -> None:
    if not future.done():
        future.set_result(link_pb2.Frame(code=grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
                                         detail="Deadline Exceeded"))


class _Batcher:
    """The one writer of a stream: frames queued by anyone go out in as few messages as fit."""

    def __init__(self, write: Callable[[link_pb2.Frames], Awaitable[Any]],
                 on_failure: Callable[[BaseException], None],
                 wanted: Callable[[link_pb2.Frame], bool] = lambda frame: True) -> None:
        self._write = write
        self._on_failure = on_failure
        self._wanted = wanted  # a request whose caller gave up is not sent at all
        self._queue: deque[link_pb2.Frame] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()  # nothing queued, nothing being written
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, frame: link_pb2.Frame) -> None:
        self._queue.append(frame)
        self._idle.clear()
        self._ready.set()

    async def _run(self) -> None:
        queue = self._queue
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while queue:
                    batch: list[link_pb2.Frame] = []
                    size = 0
                    # Close a batch at MAX_BATCH_BYTES, and before a frame that would take
                    # it past the message limit.
                    while queue and (not batch or (
                            size < MAX_BATCH_BYTES
                            and size + len(queue[0].body) + FRAME_OVERHEAD <= MAX_FRAME_BYTES)):
                        frame = queue.popleft()
                        if self._wanted(frame):
                            batch.append(frame)
                            size += len(frame.body) + FRAME_OVERHEAD
                    if batch:
                        await self._write(link_pb2.Frames(frames=batch))
                self._idle.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream is gone: whoever waits on it must hear
            self._idle.set()
            self._on_failure(exc)

    async def flush(self) -> None:
        """Until everything queued so far has been written."""
        await self._idle.wait()

    def close(self) -> None:
        self._task.cancel()


class Link:
    """The calling end: calls to one peer's stream method (e.g. /chordcast.v1.Chord/Link).

    The stream opens on the first call and again after it broke; a broken stream fails every
    call in flight at once with UNAVAILABLE (a dead peer is known without waiting for
    timeouts)."""

    def __init__(self, channel: grpc.aio.Channel, path: str,
                 max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._channel = channel
        self._path = path
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._drained: asyncio.Event | None = None  # set when a retiring link has no calls
        self._pending: dict[int, asyncio.Future[link_pb2.Frame]] = {}
        self._next_id = 0
        self._call: Any = None
        self.generation = 0  # counts the streams opened: a flow lives on one of them
        self._batcher: _Batcher | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def call(self, method: str, body: bytes, timeout: float) -> bytes:
        """The reply body; raises LinkError (its code as a unary call would have it)."""
        if self._closed:
            raise LinkError(grpc.StatusCode.CANCELLED, "link closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._slots.locked():  # (asyncio.wait_for costs a task: only when it must wait)
            try:
                await asyncio.wait_for(self._slots.acquire(), timeout)
            except TimeoutError:
                raise LinkError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{self._path}: too many calls in flight") from None
        else:
            await self._slots.acquire()
        self._next_id += 1
        call_id = self._next_id
        future: asyncio.Future[link_pb2.Frame] = loop.create_future()
        self._pending[call_id] = future
        expiry = loop.call_at(deadline, _expire, future)
        try:
            if self._closed:  # closed while this call waited for a slot
                raise LinkError(grpc.StatusCode.CANCELLED, "link closed")
            if len(body) > MAX_FRAME_BYTES:
                raise LinkError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{method} request of {len(body)} bytes exceeds the limit")
            batcher = self._open()
            if len(batcher) > 4 * self._max_in_flight:
                # The stream takes nothing (flow control): calls that gave up pile up unsent.
                raise LinkError(grpc.StatusCode.UNAVAILABLE, f"{self._path}: link congested")
            batcher.push(link_pb2.Frame(id=call_id, method=method, body=body))
            answer = await future
        finally:
            expiry.cancel()
            self._pending.pop(call_id, None)
            self._slots.release()
            if self._drained is not None and not self._pending:
                self._drained.set()
        if answer.code:
            raise LinkError(_CODES.get(answer.code, grpc.StatusCode.UNKNOWN), answer.detail)
        return answer.body

    async def cast(self, method: str, body: bytes, generation: int, timeout: float) -> int:
        """Send a one-way frame (id 0: never answered) behind those sent before it on the
        same stream, and return that stream's generation. With a `generation` (not 0) it must
        go on that stream: if it broke meanwhile, the frame is not sent (UNAVAILABLE), as the
        peer may have lost some of those sent before. Waits while the stream takes nothing
        (flow control), at most `timeout`; then the flow is taken for broken."""
        if self._closed:
            raise LinkError(grpc.StatusCode.CANCELLED, "link closed")
        if len(body) > MAX_FRAME_BYTES:
            raise LinkError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"{method} message of {len(body)} bytes exceeds the limit")
        if generation and (self._batcher is None or generation != self.generation):
            raise LinkError(grpc.StatusCode.UNAVAILABLE, f"{self._path}: stream broken")
        batcher = self._open()
        generation = self.generation
        if len(batcher) >= MAX_IN_FLIGHT:
            try:
                await asyncio.wait_for(batcher.flush(), timeout)
            except TimeoutError:
                raise LinkError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{self._path}: the peer takes nothing") from None
            if self._batcher is not batcher:
                raise LinkError(grpc.StatusCode.UNAVAILABLE, f"{self._path}: stream broken")
        batcher.push(link_pb2.Frame(method=method, body=body))
        return generation

    def _open(self) -> _Batcher:
        if self._batcher is None:
            try:
                call = self._channel.stream_stream(
                    self._path, request_serializer=link_pb2.Frames.SerializeToString,
                    response_deserializer=link_pb2.Frames.FromString)()
            except Exception as exc:  # e.g. the channel was closed under us
                raise LinkError(grpc.StatusCode.UNAVAILABLE, f"cannot open a stream: {exc}"
                                ) from None
            self._call = call
            self.generation += 1
            self._batcher = _Batcher(call.write, lambda exc: self._write_failed(call, exc),
                                     lambda frame: not frame.id or frame.id in self._pending)
            self._reader = asyncio.get_running_loop().create_task(self._read(call))
        return self._batcher

    async def _read(self, call: Any) -> None:
        try:
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    self._broken(call, None)
                    return
                for frame in message.frames:
                    future = self._pending.get(frame.id)
                    if future is not None and not future.done():
                        future.set_result(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._broken(call, exc)

    def _write_failed(self, call: Any, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            self._broken(call, exc)
        else:  # the call has ended; its reader is about to say how (with the peer's status)
            asyncio.get_running_loop().call_later(1.0, self._broken, call, exc)

    def _broken(self, call: Any, exc: BaseException | None) -> None:
        """The stream `call` ended: fail what waits on it; the next call opens a new one."""
        if call is not self._call:
            return  # an older stream, already replaced
        if isinstance(exc, grpc.aio.AioRpcError):
            code, detail = exc.code(), exc.details() or ""
        else:
            code, detail = grpc.StatusCode.UNAVAILABLE, f"stream ended ({exc or 'closed'})"
        if code == grpc.StatusCode.OK:
            code = grpc.StatusCode.UNAVAILABLE
        self._teardown()
        error = link_pb2.Frame(code=code.value[0], detail=detail)
        for future in self._pending.values():
            if not future.done():
                future.set_result(error)

    def _teardown(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if self._call is not None:
            self._call.cancel()
        self._call, self._batcher, self._reader = None, None, None

    async def retire(self, timeout: float) -> None:
        """Take no new calls, let those in flight finish (within `timeout`), then close: a
        link evicted to bound the number of open channels fails nobody's call."""
        self._closed = True
        if self._pending:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        await self.aclose()

    async def aclose(self, timeout: float = 1.0) -> None:
        """close(), then wait (briefly) until gRPC has finished the stream, so nothing of it
        is left pending when the event loop ends."""
        call = self._call
        self.close()
        if call is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(call.code(), timeout)

    def close(self) -> None:
        self._closed = True
        self._teardown()
        for future in self._pending.values():
            if not future.done():
                future.set_result(link_pb2.Frame(code=grpc.StatusCode.CANCELLED.value[0],
                                                 detail="link closed"))


class Streams:
    """The streams a server answers on. Stopping a gRPC server waits (up to its grace) for
    every open call, and a link stays open while its peer lives; `close` ends them instead: each
    stops reading, finishes the requests it took, sends their answers, and ends."""

    def __init__(self) -> None:
        self._readers: set[asyncio.Task[None]] = set()
        self.closing = False

    async def close(self, grace: float) -> None:
        self.closing = True
        readers = list(self._readers)
        for reader in readers:
            reader.cancel()
        if readers:
            await asyncio.wait(readers, timeout=grace)

    async def serve(self, context: grpc.aio.ServicerContext, dispatch: Dispatch,
                    observe: CallObserver | None = None, max_handlers: int = MAX_HANDLERS
                    ) -> None:
        """The answering end of one stream: run each frame's request through `dispatch`, at
        most `max_handlers` at once, and send the answers back as they finish."""
        if self.closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is stopping")
        failed: list[BaseException] = []
        batcher = _Batcher(context.write, failed.append)
        slots = asyncio.Semaphore(max_handlers)
        running: set[asyncio.Task[None]] = set()

        async def answer(frame: link_pb2.Frame) -> None:
            started, status = time.perf_counter(), "OK"
            try:
                body = await dispatch(frame.method, frame.body)
                batcher.push(link_pb2.Frame(id=frame.id, body=body))
            except Refusal as exc:
                status = exc.code.name
                batcher.push(link_pb2.Frame(id=frame.id, code=exc.code.value[0],
                                            detail=exc.detail))
            except Exception as exc:
                status = "UNKNOWN"
                log.exception("%s failed", frame.method or "a call without a method")
                batcher.push(link_pb2.Frame(id=frame.id, code=grpc.StatusCode.UNKNOWN.value[0],
                                            detail=f"{type(exc).__name__}: {exc}"))
            finally:
                slots.release()
                if observe is not None:
                    observe(frame.method, time.perf_counter() - started, status)

        # One-way frames (id 0) are handled one at a time, in order, by one task; when
        # max_handlers of them wait, the reader stops reading and flow control holds the peer.
        one_way: asyncio.Queue[link_pb2.Frame] = asyncio.Queue(max_handlers)

        async def take_one_way() -> None:
            while True:
                frame = await one_way.get()
                started, status = time.perf_counter(), "OK"
                try:
                    await dispatch(frame.method, frame.body)
                except Refusal as exc:  # nobody to tell: counted by its status
                    status = exc.code.name
                except Exception:
                    status = "UNKNOWN"
                    log.exception("%s failed", frame.method or "a message without a method")
                finally:
                    one_way.task_done()
                    if observe is not None:
                        observe(frame.method, time.perf_counter() - started, status)

        takers: list[asyncio.Task[None]] = []  # the one task that takes one-way frames

        async def read() -> None:
            loop = asyncio.get_running_loop()
            while not failed:
                message = await context.read()
                if message is grpc.aio.EOF:
                    return
                if not isinstance(message, link_pb2.Frames):  # did not parse
                    raise _Unreadable(f"malformed stream message: {message!r:.200}")
                for frame in message.frames:
                    if not frame.id:
                        if not takers:
                            takers.append(loop.create_task(take_one_way()))
                        await one_way.put(frame)
                        continue
                    await slots.acquire()
                    task = loop.create_task(answer(frame))
                    running.add(task)
                    task.add_done_callback(running.discard)

        reader = asyncio.get_running_loop().create_task(read())
        self._readers.add(reader)
        try:
            try:
                await asyncio.shield(reader)
            except asyncio.CancelledError:
                if not reader.cancelled():
                    # The call itself was cancelled (the peer went away or closed its end):
                    # nobody is left to answer, and gRPC would log the cancellation as an error.
                    return
            except _Unreadable as exc:  # garbage from the caller: say so, and end the stream
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Exception:  # the stream broke while reading: nobody is left to answer
                return
            # The caller closed its side or the server is stopping: let the answers it still
            # waits for go out, after the one-way messages it sent before closing.
            if takers:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(one_way.join(), ONE_WAY_DRAIN)
            if running:
                # Stopping, the node gives them a moment (gRPC's stop would cancel this
                # call under them); otherwise the caller closed its side and waits for them.
                await asyncio.wait(running, timeout=ANSWER_DRAIN if self.closing else None)
            if not failed:
                await batcher.flush()
        except asyncio.CancelledError:
            if not self.closing:
                raise
            # The server stopped under a stream still answering: it ends here, quietly
            # (its caller sees the stream end and asks elsewhere).
        finally:
            self._readers.discard(reader)
            reader.cancel()
            for task in [*running, *takers]:
                task.cancel()
            batcher.close()


def dispatcher(service: str, methods: Methods) -> Dispatch:
    """A Dispatch that decodes each frame's request for `methods[frame.method]`."""

    async def dispatch(name: str, body: bytes) -> bytes:
        entry = methods.get(name)
        if entry is None:
            raise Refusal(grpc.StatusCode.UNIMPLEMENTED, f"no {service} method {name!r}")
        request_cls, method = entry
        try:
            request = request_cls.FromString(body)
        except DecodeError as exc:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT,
                          f"malformed {name} request: {exc}") from None
        return (await method(request)).SerializeToString()

    return dispatch


async def unary(method: Callable[[Request], Awaitable[Reply]], request: Request,
                context: grpc.aio.ServicerContext) -> Reply:
    """Serve one method written for streams (it refuses with Refusal) as a unary call."""
    try:
        return await method(request)
    except Refusal as exc:
        await context.abort(exc.code, exc.detail)
        raise  # abort raises; this keeps type checkers honest
