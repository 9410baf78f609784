"""The node protocol on the in-memory network: convergence, lookups against the oracle, crashes."""

from __future__ import annotations

import asyncio
import math
import random
import statistics

from chord.ids import IdSpace, between
from chord.node import NodeConfig
from chord.sim.memnet import MemoryNetwork
from chord.sim.ring import SimRing

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
    from chord.kbr import LookupFailed

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


def test_ring_formed_by_waves_of_concurrent_joins(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=CONFIG, net=MemoryNetwork(seed=5), seed=5, with_storage=False)
        assert await ring.form(300) == 0  # no join had to be retried
        assert len(ring.nodes) == 300
        assert ring.is_ideal() and ring.check_invariants() == []
        # Each newcomer found its fingers on joining: O(log N) routes with no warm-up.
        hops = await check_lookups(ring, 300, random.Random(5))
        assert statistics.mean(hops) <= 0.5 * math.log2(300) + 1
        await ring.stop()

    run_virtual(scenario())


def test_a_finger_overtaken_by_a_newcomer_is_fixed_without_a_lookup(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=CONFIG, net=MemoryNetwork(seed=9), seed=9, with_storage=False)
        ring.build_stable(64, maintain=False)  # no background rounds: only what we call runs
        x = ring.nodes[sorted(ring.nodes)[0]].node
        i = ring.space.bits - 1
        start, finger = ring.space.finger_start(x.me.id, i), x.state.fingers[i]
        assert finger is not None
        # An address whose node lands in (start, finger): the finger is no longer right.
        address = next(a for a in (f"10.200.{k >> 8}.{k & 255}:4000" for k in range(65536))
                       if between(ring.space.hash_address(a), start, finger.id))
        newcomer = (await ring.add(address)).node
        ids = ring.sorted_ids()
        before = ids[ids.index(newcomer.me.id) - 1]
        pred = next(s.node for s in ring.nodes.values() if s.node.me.id == before)
        await pred.stabilize()  # one round: the newcomer now knows its predecessor
        ring.net.trace = []
        x.maintenance.next_finger = i
        await x.fix_fingers()
        assert x.state.fingers[i] == newcomer.me
        sent = [method for _, src, _, method in ring.net.trace if src == x.me.address]
        assert sent == ["GetNeighbors", "GetNeighbors"]  # asked the finger, then the newcomer
        await ring.stop()

    run_virtual(scenario())
