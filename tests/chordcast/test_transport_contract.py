"""One multicast scenario, the same protocol code, both transports: Scribe on the in-memory
network (virtual time) and Scribe in real nodes over gRPC (several NodeServers in this process,
as `chordcast cluster` runs them). Trees, ordering and exactly-once delivery must not depend on
which transport carries the messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from chord.node import NodeConfig
from chord.sim.memnet import VirtualTimeLoop
from chord.sim.ring import SimRing
from chordcast.cluster import Cluster, ClusterOptions
from chordcast.server import NodeOptions
from mcast.scribe import Scribe, ScribeConfig
from mcast.tree import MESSAGE, Event
from tests.mcast.rings import grown_with_full_caches

NODES = 6
MESSAGES = 60
SCRIBE = ScribeConfig(max_children=2, parent_timeout=3.0)


async def scenario(scribes: list[Scribe], wait_for: Callable[[Callable[[], bool]],
                                                              Awaitable[bool]]) -> None:
    """Create a group, attach members on four nodes, send from two others at once: every
    member gets 1..N once, in order, with the payloads the senders were told."""
    await scribes[0].create("contract")
    got: dict[int, list[Event]] = {}
    for i in range(1, 5):
        await scribes[i].join("contract", got.setdefault(i, []).append, member=f"m{i}")
    sends = [scribes[4 + k % 2].send("contract", f"msg-{k}".encode()) for k in range(MESSAGES)]
    seqs = await asyncio.gather(*sends)
    assert sorted(seqs) == list(range(1, MESSAGES + 1))
    payload_at = {seq: f"msg-{k}".encode() for k, seq in enumerate(seqs)}

    def delivered(i: int) -> list[int]:
        return [e.seq for e in got[i] if e.kind == MESSAGE]

    assert await wait_for(lambda: all(len(delivered(i)) >= MESSAGES for i in got))
    for i, events in got.items():
        assert delivered(i) == list(range(1, MESSAGES + 1)), i
        assert all(e.payload == payload_at[e.seq] for e in events if e.kind == MESSAGE)


def test_scribe_on_the_in_memory_network() -> None:
    async def run() -> None:
        ring = SimRing(config=NodeConfig(successors=4, stabilize_interval=0.5,
                                         location_cache=64), seed=4,
                       app_factories={"scribe": lambda kbr, rng: Scribe(kbr, SCRIBE, rng)})
        sims = await grown_with_full_caches(ring, NODES)

        async def wait_for(check: Callable[[], bool]) -> bool:
            return await ring.wait_for(check, 30, step=0.05)

        await scenario([s.apps["scribe"] for s in sims], wait_for)

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(run())


@pytest.mark.slow
async def test_scribe_in_real_nodes_over_grpc() -> None:
    cluster = Cluster(ClusterOptions(nodes=NODES, listen="127.0.0.1:0",
                                     node=NodeOptions(listen="", scribe=SCRIBE)),
                      announce=lambda line: None)
    try:
        await cluster.start()
        loop = asyncio.get_running_loop()

        async def wait_for(check: Callable[[], bool]) -> bool:
            deadline = loop.time() + 30
            while not check():
                if loop.time() > deadline:
                    return False
                await asyncio.sleep(0.05)
            return True

        # The ring settles (every successor right) before the tree is built on it.
        servers = sorted(cluster.servers, key=lambda ns: ns.node.me.id)

        def ring_ok() -> bool:
            return all(ns.node.state.successors and ns.node.state.successors[0].address
                       == servers[(i + 1) % NODES].node.me.address
                       for i, ns in enumerate(servers))

        assert await wait_for(ring_ok)
        await scenario([ns.scribe for ns in sorted(cluster.servers,
                                                   key=lambda ns: ns.node.me.address)],
                       wait_for)
    finally:
        left = await cluster.leave()
    assert left  # (after the scenario: a failed leave must not hide why it failed)
