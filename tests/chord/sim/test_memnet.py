"""The in-memory transport: what a caller sees must match a real network, whether the handler
answers at once (run inline) or waits (run as a task), and the deadline must fire at exactly
the virtual instant it would have."""

from __future__ import annotations

import asyncio

import pytest

from chord.ports import InvalidRequest, PeerUnavailable, RemoteError
from chord.sim.memnet import MemoryNetwork, VirtualTimeLoop, fixed_latency
from chordcast.v1 import chord_pb2 as pb


def network(handler_delay: float = 0.0, fail: Exception | None = None) -> MemoryNetwork:
    net = MemoryNetwork(seed=1, latency=fixed_latency(0.010))

    async def handler(method: str, request: object) -> pb.PingReply:
        if handler_delay:
            await asyncio.sleep(handler_delay)
        if fail is not None:
            raise fail
        return pb.PingReply(node=pb.Node(address="b"))

    net.register("b", handler)
    return net


async def timed_call(net: MemoryNetwork, timeout: float = 1.0) -> tuple[object, float]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        outcome: object = await net.transport("a").call("b", "Ping", pb.PingRequest(), timeout)
    except Exception as exc:  # the outcome is what the test inspects
        outcome = exc
    return outcome, round(loop.time() - start, 6)


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_reply_after_the_round_trip_plus_handler_time(run_virtual, delay: float) -> None:
    reply, took = run_virtual(timed_call(network(handler_delay=delay)))
    assert isinstance(reply, pb.PingReply) and reply.node.address == "b"
    assert took == pytest.approx(0.020 + delay)


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_handler_errors_reach_the_caller_as_remote_errors(run_virtual, delay: float) -> None:
    bad, _ = run_virtual(timed_call(network(delay, fail=InvalidRequest("no such thing"))))
    assert isinstance(bad, RemoteError) and bad.code == "INVALID_ARGUMENT"
    broken, _ = run_virtual(timed_call(network(delay, fail=ValueError("bug"))))
    assert isinstance(broken, RemoteError) and broken.code == "INTERNAL"


def test_slow_handler_times_out_at_the_deadline(run_virtual) -> None:
    outcome, took = run_virtual(timed_call(network(handler_delay=5.0), timeout=1.0))
    assert isinstance(outcome, PeerUnavailable)
    assert took == pytest.approx(1.0)


def test_silence_times_out_at_the_deadline(run_virtual) -> None:
    async def scenario() -> list[tuple[object, float]]:
        gone = network()
        gone.unregister("b")
        cut = network()
        cut.partition(["a"], ["b"])
        lossy = network()
        lossy.loss = 1.0
        return [await timed_call(n, timeout=0.5) for n in (gone, cut, lossy)]

    for outcome, took in run_virtual(scenario()):
        assert isinstance(outcome, PeerUnavailable)
        assert took == pytest.approx(0.5)


def test_reply_lost_when_the_callee_crashes_while_answering(run_virtual) -> None:
    async def scenario() -> tuple[object, float]:
        net = network(handler_delay=0.1)
        call = asyncio.ensure_future(timed_call(net, timeout=1.0))
        await asyncio.sleep(0.05)  # the request is being handled
        net.unregister("b")
        return await call

    outcome, took = run_virtual(scenario())
    assert isinstance(outcome, PeerUnavailable)
    assert took == pytest.approx(1.0)


def test_latency_beyond_the_deadline_times_out_yet_the_request_is_handled(run_virtual) -> None:
    async def scenario() -> tuple[tuple[object, float], int]:
        net = network()
        handled = 0
        inner = net.handlers["b"]

        async def counting(method: str, request: object) -> object:
            nonlocal handled
            handled += 1
            return await inner(method, request)

        net.register("b", counting)
        net.latency = fixed_latency(2.0)
        outcome = await timed_call(net, timeout=1.0)
        await asyncio.sleep(5)
        return outcome, handled

    (outcome, took), handled = run_virtual(scenario())
    assert isinstance(outcome, PeerUnavailable) and took == pytest.approx(1.0)
    assert handled == 1  # as on a real network: the caller gave up, the callee still acts


def test_a_cancelled_caller_leaves_no_timer_behind(run_virtual) -> None:
    async def scenario() -> int:
        net = network(handler_delay=10.0)
        call = asyncio.ensure_future(net.transport("a").call("b", "Ping", pb.PingRequest(), 5.0))
        await asyncio.sleep(0.5)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        return loop.pending_timers()

    # Only the handler's own sleep is left; no deadline timer for the abandoned call.
    assert run_virtual(scenario()) == 1
