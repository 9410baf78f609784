"""One-hop routing from the location cache: the table itself, a warm cache on a 500-node stable
ring, and stale entries (a crashed owner, a newcomer in front of the owner) corrected without
ever returning an owner that did not confirm."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from chord.cache import LocationCache
from chord.ids import IdSpace
from chord.node import NodeConfig
from chord.sim.ring import SimRing
from chord.state import NodeRef
from tests.chord.test_ring_memnet import check_lookups

SPACE = IdSpace(16)
ME = NodeRef(1000, "me:1")


def ref(i: int) -> NodeRef:
    return NodeRef(i, f"n{i}:1")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, SPACE.size - 1), max_size=60), st.integers(0, SPACE.size - 1),
       st.integers(1, 40))
def test_owner_guess_is_the_first_known_node_at_or_after_the_key(
        ids: list[int], key: int, capacity: int) -> None:
    cache = LocationCache(SPACE, ME, capacity)
    cache.learn(ref(i) for i in ids)
    assert len(cache) <= capacity
    guess = cache.owner_guess(key)
    kept = sorted(n.id for n in cache.sample(capacity))
    assert len(kept) == len(cache)
    if not kept:
        assert guess is None
        return
    after = [i for i in kept if i >= key]
    assert guess is not None and guess.id == (after[0] if after else kept[0])


def test_learn_keeps_the_most_recent_forget_drops_and_me_is_never_cached() -> None:
    cache = LocationCache(SPACE, ME, capacity=3)
    assert cache.learn([ref(1), ref(2), ME, None]) == 2
    cache.learn([ref(1)])                      # refreshed: now the most recent
    cache.learn([ref(3), ref(4)])              # over capacity: 2 (learned longest ago) goes
    assert sorted(n.id for n in cache.sample(10)) == [1, 3, 4]
    cache.forget(3)
    assert cache.owner_guess(2) == ref(4) and cache.owner_guess(5) == ref(1)  # wraps around
    cache.learn([NodeRef(4, "moved:2")])       # same id, new address: the newer wins
    assert cache.owner_guess(4) == NodeRef(4, "moved:2") and len(cache) == 2
    off = LocationCache(SPACE, ME, capacity=0)
    assert not off.enabled and off.learn([ref(1)]) == 0 and off.owner_guess(0) is None


def test_500_node_stable_ring_warm_cache_answers_in_one_hop(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=NodeConfig(successors=8, location_cache=1024), seed=3,
                       with_storage=False)
        ring.build_stable(500)
        warm = await ring.wait_for(  # gossip fills every cache with (nearly) all other 499
            lambda: all(len(n.node.cache) >= 0.98 * 499 for n in ring.nodes.values()),
            timeout=120)
        assert warm
        hops = await check_lookups(ring, 1000, random.Random(1))
        one_hop = sum(1 for h in hops if h <= 1) / len(hops)
        assert one_hop >= 0.99, f"one-hop fraction {one_hop:.3f}"
        await ring.stop()

    run_virtual(scenario())


def test_plain_chord_without_a_cache_keeps_its_path_lengths(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=NodeConfig(successors=8), seed=3, with_storage=False)
        ring.build_stable(500)
        await asyncio.sleep(10)
        hops = await check_lookups(ring, 300, random.Random(1))
        assert 2.5 < sum(hops) / len(hops) < 6  # ~ (1/2) log2 N, the paper's figure
        assert all(len(n.node.cache) == 0 for n in ring.nodes.values())
        await ring.stop()

    run_virtual(scenario())


def test_stale_entries_are_corrected_and_never_answer(run_virtual) -> None:
    """A cached owner that crashed, and one that a newcomer now stands in front of: the
    lookup still returns the live, confirmed owner, and the cache learns it."""

    async def scenario() -> None:
        rng = random.Random(5)
        ring = SimRing(config=NodeConfig(successors=6, location_cache=1024), seed=5,
                       with_storage=False)
        ring.build_stable(60)
        await asyncio.sleep(40)
        await check_lookups(ring, 100, rng)

        for _ in range(5):  # crashes of owners every cache knows
            victim = rng.choice(sorted(ring.nodes))
            await ring.crash(victim)
            assert await ring.converge()
            await check_lookups(ring, 50, rng)
        for _ in range(5):  # newcomers in front of owners every cache knows
            await ring.add()
            assert await ring.converge()
            hops = await check_lookups(ring, 50, rng)
            assert max(hops) <= 8
        # Between events, lookups interleave with joins and crashes in flight.
        for k in range(20):
            event = ring.add() if k % 2 else ring.crash(rng.choice(sorted(ring.nodes)))
            await event
            await asyncio.sleep(rng.uniform(0, 2))
        assert await ring.converge()
        hops = await check_lookups(ring, 200, rng)
        assert sum(1 for h in hops if h <= 1) / len(hops) > 0.9
        await ring.stop()

    run_virtual(scenario())
