"""chordcast.link over real gRPC on loopback: many calls multiplexed on one stream, each answer
to its own caller; errors keep their status; timeouts, a dead peer and a stopping server end
calls at once and leave the link usable; every bound holds."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from chordcast import link
from chordcast.transport import CHANNEL_OPTIONS
from tests.chordcast.ports import free_port

PATH = "/test.Echo/Link"
Handler = Callable[[str, bytes], Awaitable[bytes]]


@asynccontextmanager
async def serving(dispatch: Handler, port: int = 0, max_handlers: int = link.MAX_HANDLERS
                  ) -> AsyncIterator[tuple[str, grpc.aio.Server, link.Streams]]:
    streams = link.Streams()

    async def behaviour(requests: Any, context: grpc.aio.ServicerContext) -> None:
        await streams.serve(context, dispatch, max_handlers=max_handlers)

    server = grpc.aio.server(options=CHANNEL_OPTIONS)  # the message limits nodes use
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Echo", {
        "Link": grpc.stream_stream_rpc_method_handler(
            behaviour, request_deserializer=link.FRAMES.FromString,
            response_serializer=link.FRAMES.SerializeToString)})])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield f"127.0.0.1:{bound}", server, streams
    finally:
        await server.stop(None)


@asynccontextmanager
async def linked(address: str, **kwargs: Any) -> AsyncIterator[link.Link]:
    channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    peer = link.Link(channel, PATH, **kwargs)
    try:
        yield peer
    finally:
        await peer.aclose()
        await channel.close()


async def echo(method: str, body: bytes) -> bytes:
    await asyncio.sleep(random.random() / 100)  # answers come back out of order
    return method.encode() + b":" + body


async def test_concurrent_calls_on_one_stream_each_get_their_own_answer() -> None:
    async with serving(echo) as (address, _, _), linked(address) as peer:
        bodies = [random.randbytes(random.randrange(0, 3000)) for _ in range(500)]
        answers = await asyncio.gather(*(peer.call(f"m{i}", b, 5.0)
                                         for i, b in enumerate(bodies)))
        assert answers == [f"m{i}:".encode() + b for i, b in enumerate(bodies)]


async def test_errors_keep_their_status_and_detail(caplog: pytest.LogCaptureFixture) -> None:
    async def dispatch(method: str, body: bytes) -> bytes:
        if method == "refuse":
            raise link.Refusal(grpc.StatusCode.NOT_FOUND, "no such thing")
        if method == "crash":
            raise RuntimeError("handler bug")
        if method == "after":
            return b"after:" + body
        raise link.Refusal(grpc.StatusCode.UNIMPLEMENTED, f"no method {method!r}")

    caplog.set_level(logging.ERROR, logger="chordcast.link")
    async with serving(dispatch) as (address, _, _), linked(address) as peer:
        with pytest.raises(link.LinkError) as refused:
            await peer.call("refuse", b"", 5.0)
        assert (refused.value.code, refused.value.detail) == (grpc.StatusCode.NOT_FOUND,
                                                              "no such thing")
        with pytest.raises(link.LinkError) as unknown:
            await peer.call("nothing", b"", 5.0)
        assert unknown.value.code == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(link.LinkError) as crashed:
            await peer.call("crash", b"", 5.0)
        assert crashed.value.code == grpc.StatusCode.UNKNOWN
        assert "handler bug" in crashed.value.detail
        assert "handler bug" in caplog.text  # a handler's bug is logged where it happened
        assert await peer.call("after", b"x", 5.0) == b"after:x"  # the stream survived them


class Gate:
    """A handler that holds every call until released, and says how many it holds."""

    def __init__(self) -> None:
        self.entered = 0
        self._changed = asyncio.Condition()
        self.released = asyncio.Event()

    async def __call__(self, method: str, body: bytes) -> bytes:
        async with self._changed:
            self.entered += 1
            self._changed.notify_all()
        await self.released.wait()
        return body

    async def holding(self, calls: int) -> None:
        """Until `calls` calls have reached the handler (within a deadline)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.entered >= calls), 10)


async def test_a_slow_answer_times_out_and_the_link_stays_usable() -> None:
    gate = Gate()

    async def dispatch(method: str, body: bytes) -> bytes:
        return await gate(method, body) if method == "slow" else body

    async with serving(dispatch) as (address, _, _), linked(address) as peer:
        await peer.call("fast", b"", 5.0)
        with pytest.raises(link.LinkError) as late:  # not an answer: the deadline first
            await peer.call("slow", b"", 0.2)
        assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert await peer.call("fast", b"ok", 5.0) == b"ok"
        gate.released.set()


async def test_a_dead_peer_fails_calls_in_flight_at_once_and_a_new_one_is_reached() -> None:
    gate = Gate()  # never released: only the peer's end ends these calls
    port = free_port()
    async with serving(gate, port) as (address, server, _), linked(address) as peer:
        calls = [asyncio.ensure_future(peer.call("hang", b"", 30.0)) for _ in range(5)]
        await gate.holding(5)
        await server.stop(None)  # the peer's process ends
        results = await asyncio.gather(*calls, return_exceptions=True)
        # Failed as a lost peer, not by the calls' 30 s deadline (DEADLINE_EXCEEDED).
        assert all(isinstance(r, link.LinkError) for r in results), results
        assert {r.code for r in results if isinstance(r, link.LinkError)} <= {
            grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
        async with serving(echo, port):  # the peer is back on its address
            assert await peer.call("m", b"again", 10.0) == b"m:again"


async def test_nobody_listening_is_unavailable_and_says_it_could_not_connect() -> None:
    async with linked(f"127.0.0.1:{free_port()}") as peer:
        with pytest.raises(link.LinkError) as failed:
            await peer.call("m", b"", 5.0)
        assert failed.value.code == grpc.StatusCode.UNAVAILABLE
        assert link.never_connected(failed.value.code, failed.value.detail)


async def test_closing_the_streams_answers_what_was_taken_and_lets_the_server_stop_at_once(
        ) -> None:
    gate = Gate()
    async with serving(gate) as (address, server, streams), linked(address) as peer:
        in_flight = asyncio.ensure_future(peer.call("m", b"taken", 30.0))
        await gate.holding(1)
        closing = asyncio.ensure_future(streams.close(grace=30.0))
        gate.released.set()
        await closing
        assert await in_flight == b"taken"
        # An idle link left open would hold the server for its whole 30 s grace.
        await asyncio.wait_for(server.stop(grace=30.0), 10.0)
        with pytest.raises(link.LinkError) as refused:
            await peer.call("m", b"", 2.0)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE


async def test_calls_beyond_the_in_flight_bound_wait_for_a_slot() -> None:
    gate = Gate()
    async with serving(gate) as (address, _, _), linked(address, max_in_flight=2) as peer:
        first = [asyncio.ensure_future(peer.call("m", b"%d" % i, 30.0)) for i in range(2)]
        await gate.holding(2)
        with pytest.raises(link.LinkError) as waited:
            await peer.call("m", b"third", 0.2)
        assert waited.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "too many calls in flight" in waited.value.detail
        third = asyncio.ensure_future(peer.call("m", b"third", 30.0))
        gate.released.set()
        assert await asyncio.gather(*first, third) == [b"0", b"1", b"third"]


async def test_a_stream_runs_at_most_max_handlers_requests_at_once() -> None:
    running = peak = 0

    async def counted(method: str, body: bytes) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return body

    async with serving(counted, max_handlers=4) as (address, _, _), linked(address) as peer:
        answers = await asyncio.gather(*(peer.call("m", b"%d" % i, 10.0) for i in range(60)))
        assert answers == [b"%d" % i for i in range(60)]
    assert peak == 4


async def test_a_retired_link_finishes_its_calls_then_takes_no_more() -> None:
    gate = Gate()
    async with serving(gate) as (address, _, _), linked(address) as peer:
        in_flight = [asyncio.ensure_future(peer.call("m", b"%d" % i, 30.0)) for i in range(3)]
        await gate.holding(3)
        retiring = asyncio.ensure_future(peer.retire(timeout=30.0))
        gate.released.set()
        await retiring
        assert await asyncio.gather(*in_flight) == [b"0", b"1", b"2"]  # none failed
        with pytest.raises(link.LinkError) as closed:
            await peer.call("m", b"", 1.0)
        assert closed.value.code == grpc.StatusCode.CANCELLED


async def test_a_body_over_the_message_limit_fails_that_call_alone() -> None:
    async with serving(echo) as (address, _, _), linked(address) as peer:
        big = asyncio.ensure_future(peer.call("m", b"x" * (link.MAX_FRAME_BYTES + 1), 5.0))
        small = asyncio.ensure_future(peer.call("m", b"ok", 5.0))
        with pytest.raises(link.LinkError) as refused:
            await big
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await small == b"m:ok"
        near = b"y" * (link.MAX_FRAME_BYTES - 1024)  # the largest bodies still go, each alone
        assert await asyncio.gather(peer.call("a", near, 10.0), peer.call("b", near, 10.0)) == [
            b"a:" + near, b"b:" + near]
