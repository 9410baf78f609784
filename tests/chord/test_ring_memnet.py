"""The node protocol on the in-memory network: convergence, lookups against the oracle, crashes."""

from __future__ import annotations

import asyncio
import math
import random
import statistics

from chord.ids import IdSpace
from chord.memnet import MemoryNetwork
from chord.node import NodeConfig
from chord.sim import SimRing

CONFIG = NodeConfig(successors=8, stabilize_interval=0.5, rpc_timeout=0.5, lookup_timeout=5.0)


async def check_lookups(ring: SimRing, count: int, rng: random.Random) -> list[int]:
    """Run `count` lookups for random keys from random nodes; every owner must match the oracle."""
    hops = []
    addresses = sorted(ring.nodes)
    for _ in range(count):
        key = rng.randrange(ring.space.size)
        origin = ring.nodes[rng.choice(addresses)].node
        result = await origin.lookup(key)
        assert result.owner.id == ring.owner_of(key), f"wrong owner for {key:x}"
        assert result.path[0] == origin.me and result.path[-1] == result.owner
        hops.append(result.hops)
    return hops


def test_200_nodes_converge_lookup_and_survive_30_percent_crash(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=CONFIG, net=MemoryNetwork(seed=11), seed=11)
        rng = random.Random(5)
        await ring.grow(200)
        assert await ring.converge(timeout=300), f"{ring.wrong_successors()} wrong successors"
        await asyncio.sleep(40)  # let fix_fingers cycle through the table
        hops = await check_lookups(ring, 1000, rng)
        n = len(ring.nodes)
        mean = statistics.mean(hops)
        assert mean <= 0.5 * math.log2(n) + 1, f"mean hops {mean:.2f} at N={n}"

        victims = rng.sample(sorted(ring.nodes), k=int(0.3 * n))
        for address in victims:
            await ring.crash(address)
        assert await ring.converge(timeout=300), f"{ring.wrong_successors()} wrong after crash"
        await check_lookups(ring, 1000, rng)
        await ring.stop()

    run_virtual(scenario())


def test_iterative_lookup_agrees_with_oracle(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=CONFIG, net=MemoryNetwork(seed=3), seed=3)
        rng = random.Random(3)
        await ring.grow(40)
        assert await ring.converge()
        await asyncio.sleep(20)
        for _ in range(200):
            key = rng.randrange(ring.space.size)
            origin = ring.nodes[rng.choice(sorted(ring.nodes))].node
            result = await origin.lookup_iterative(key)
            assert result.owner.id == ring.owner_of(key)
        await ring.stop()

    run_virtual(scenario())


def test_small_id_space_and_tiny_rings(run_virtual) -> None:
    """m = 8 bits, rings of 1..5 nodes: every key has the oracle's owner at every size."""

    async def scenario() -> None:
        ring = SimRing(space=IdSpace(8), config=NodeConfig(successors=3), seed=1)
        for _ in range(5):
            await ring.add()
            assert await ring.converge(timeout=60)
            await asyncio.sleep(10)
            for key in range(0, 256, 7):
                for sim in ring.nodes.values():
                    assert (await sim.node.lookup(key)).owner.id == ring.owner_of(key)
        await ring.stop()

    run_virtual(scenario())


def test_graceful_leave_closes_the_gap_at_once(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=8)
        await ring.grow(12)
        assert await ring.converge()
        # With stabilization effectively stopped, only the leave notices can repair the ring.
        for sim in ring.nodes.values():
            sim.node.running = False
        await asyncio.sleep(2)
        leaver = sorted(ring.nodes)[0]
        await ring.leave(leaver)
        assert ring.wrong_successors() == 0
        ids = ring.sorted_ids()
        for sim in ring.nodes.values():
            me = ids.index(sim.node.me.id)
            assert sim.node.state.predecessor is not None
            assert sim.node.state.predecessor.id == ids[me - 1]
        await ring.stop()

    run_virtual(scenario())


def test_lookup_fails_cleanly_when_the_ring_is_cut_off(run_virtual) -> None:
    """A lookup whose route dies gives a clear error within its timeout, never hangs."""
    from chord.node import LookupFailed

    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=4)
        await ring.grow(10)
        assert await ring.converge()
        origin = ring.nodes[sorted(ring.nodes)[0]].node
        others = [a for a in ring.nodes if a != origin.me.address]
        ring.net.partition([origin.me.address], others)
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            result = await origin.lookup(origin.space.add(origin.me.id, origin.space.size // 2))
        except LookupFailed as exc:
            assert str(exc)
        else:
            # Alone behind the partition it may legitimately answer itself once it has
            # forgotten every unreachable neighbour.
            assert result.owner == origin.me
        assert loop.time() - start <= CONFIG.lookup_timeout + 1
        ring.net.heal()
        await ring.stop()

    run_virtual(scenario())
