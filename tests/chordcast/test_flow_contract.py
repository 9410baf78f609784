"""The Transport port's one-way flows, one contract, both transports: the in-memory network
(virtual time) and gRPC on loopback. A flow delivers in the order sent, one message at a time;
a slow peer holds the sender back (bounded), a dead or stopped peer breaks the flow, and what
got through is always a prefix of what was sent. Scribe's pushes down the tree rely on all of
it in the simulator and in real nodes alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from chord.ports import Flow, PeerUnavailable
from chord.sim.memnet import MemoryNetwork, VirtualTimeLoop
from chordcast import link
from chordcast.transport import CHANNEL_OPTIONS, GrpcTransport, chord_handler
from chordcast.v1 import chord_pb2 as pb


@dataclass
class Peer:
    """The receiving end: records what its handler took, optionally held at a gate."""

    taken: list[bytes] = field(default_factory=list)
    running: int = 0
    most_running: int = 0
    gate: asyncio.Event | None = None

    async def handle(self, method: str, request: Any) -> Any:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            elif request.payload[-1] % 3 == 0:
                await asyncio.sleep(0.001)  # some take a while: the next must still wait
            self.taken.append(request.payload)
            return pb.AppCallReply()
        finally:
            self.running -= 1


@dataclass
class Net:
    flow: Callable[[], Flow]
    stop: Callable[[], Awaitable[None]]


def payload(i: int, size: int = 8) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 5) + bytes([i % 251])


def request(i: int, size: int = 8) -> pb.AppCallRequest:
    return pb.AppCallRequest(app="test", payload=payload(i, size))


@asynccontextmanager
async def in_memory(peer: Peer) -> AsyncIterator[Net]:
    net = MemoryNetwork(seed=1)
    net.register("b", peer.handle)

    async def stop() -> None:
        net.unregister("b")

    yield Net(lambda: net.transport("a").flow("b", "AppCall"), stop)


@asynccontextmanager
async def over_grpc(peer: Peer) -> AsyncIterator[Net]:
    streams = link.Streams()
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    server.add_generic_rpc_handlers([chord_handler(peer.handle, streams)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    transport = GrpcTransport()

    async def stop() -> None:
        await streams.close(0.1)
        await server.stop(None)

    try:
        yield Net(lambda: transport.flow(f"127.0.0.1:{port}", "AppCall"), stop)
    finally:
        await transport.close()
        await server.stop(None)


NETS = {"memory": in_memory, "grpc": over_grpc}


def run(kind: str, scenario: Callable[[Net, Peer], Awaitable[None]]) -> None:
    async def main() -> None:
        peer = Peer()
        async with NETS[kind](peer) as net:
            await scenario(net, peer)

    loop_factory = VirtualTimeLoop if kind == "memory" else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(asyncio.wait_for(main(), 60))


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("kind", NETS)
def test_a_flow_delivers_in_order_one_message_at_a_time(kind: str) -> None:
    async def scenario(net: Net, peer: Peer) -> None:
        flow = net.flow()
        for i in range(600):
            await flow.send(request(i), 5.0)
        await until(lambda: len(peer.taken) == 600)
        assert peer.taken == [payload(i) for i in range(600)]
        assert peer.most_running == 1

    run(kind, scenario)


# Sends a flow to a peer that takes nothing may hold before it breaks: the in-memory window
# (1,024 messages), or gRPC's stream windows and the answering end's queue (2,048 of 16 KiB
# measured): bounded either way, never buffered without end.
HELD_AT_MOST = 4096
NOTICED_WITHIN = 500  # sends, 10 ms apart: a dead peer is noticed within 5 s


async def sends_until_it_breaks(flow: Flow, size: int = 8, timeout: float = 1.0,
                                pause: float = 0.0, limit: int = 20_000) -> int:
    """How many sends `flow` took before one raised PeerUnavailable (fails if none did)."""
    for sent in range(limit):
        try:
            await flow.send(request(sent, size), timeout)
        except PeerUnavailable:
            return sent
        if pause:
            await asyncio.sleep(pause)
    raise AssertionError(f"the flow took {limit} sends without breaking")


@pytest.mark.parametrize("kind", NETS)
def test_a_peer_that_takes_nothing_holds_the_sender_back_then_breaks_the_flow(
        kind: str) -> None:
    async def scenario(net: Net, peer: Peer) -> None:
        peer.gate = asyncio.Event()
        flow = net.flow()
        held = await sends_until_it_breaks(flow, size=16 << 10, timeout=0.5)
        assert 0 < held <= HELD_AT_MOST, held
        with pytest.raises(PeerUnavailable):
            await flow.send(request(held + 1), 5.0)  # a broken flow stays broken
        peer.gate.set()
        await until(lambda: len(peer.taken) > 0 and peer.running == 0)
        taken = len(peer.taken)
        assert peer.taken == [payload(i, 16 << 10) for i in range(taken)]  # a prefix

    run(kind, scenario)


@pytest.mark.parametrize("kind", NETS)
def test_a_stopped_peer_breaks_the_flow_and_what_it_took_is_a_prefix(kind: str) -> None:
    async def scenario(net: Net, peer: Peer) -> None:
        flow = net.flow()
        for i in range(50):
            await flow.send(request(i), 5.0)
        await until(lambda: len(peer.taken) == 50)
        await net.stop()
        assert await sends_until_it_breaks(flow, pause=0.01) <= NOTICED_WITHIN
        assert peer.taken == [payload(i) for i in range(50)]  # nothing after the stop
        # A new flow to a peer that is gone breaks too.
        assert await sends_until_it_breaks(net.flow(), pause=0.01) <= NOTICED_WITHIN

    run(kind, scenario)
