"""The simulator: determinism, Zave's invariants under random schedules, mass failure, and
multicast under forwarder crashes at 1,000 nodes."""

from __future__ import annotations

import asyncio
import random

import pytest

from chord import invariants
from chord.ids import IdSpace
from chord.node import NodeConfig
from chord.sim.experiments import ring_experiment, run
from chord.sim.memnet import MemoryNetwork
from chord.sim.ring import SimRing


async def scripted(seed: int) -> tuple[list, list]:
    """Joins, crashes, a leave and lookups, with tracing on."""
    net = MemoryNetwork(seed=seed)
    net.trace = []
    ring = SimRing(config=NodeConfig(successors=4, rpc_timeout=0.5), net=net, seed=seed)
    rng = random.Random(seed)
    await ring.grow(15)
    await asyncio.sleep(5)
    for address in rng.sample(sorted(ring.nodes), 3):
        await ring.crash(address)
    await ring.add()
    await ring.leave(sorted(ring.nodes)[2])
    await asyncio.sleep(5)
    owners = [(await ring.nodes[rng.choice(sorted(ring.nodes))].node.lookup(
        rng.randrange(ring.space.size))).owner for _ in range(30)]
    await ring.stop()
    return net.trace, owners


def test_same_seed_same_event_trace(run_virtual) -> None:
    first = run_virtual(scripted(42))
    second = run_virtual(scripted(42))
    assert len(first[0]) > 1000
    assert first == second
    assert run_virtual(scripted(43))[0] != first[0]


def test_invariants_detect_broken_rings() -> None:
    space = IdSpace(8)
    good = {10: [20, 30], 20: [30, 10], 30: [10, 20]}
    assert invariants.check(space, good) == []
    two_rings = {10: [20], 20: [10], 30: [40], 40: [30]}
    assert any(v.startswith("AtMostOneRing") for v in invariants.check(space, two_rings))
    disordered = {10: [30, 20], 20: [10, 30], 30: [20, 10]}
    found = invariants.check(space, disordered)
    assert any(v.startswith("OrderedRing") for v in found)
    assert any(v.startswith("OrderedSuccessorLists") for v in found)
    assert any(v.startswith("NoDuplicates") for v in invariants.check(space, {10: [20, 20],
                                                                              20: [10]}))
    appendage = {10: [20], 20: [10], 30: [99]}
    assert any(v.startswith("ConnectedAppendages") for v in invariants.check(space, appendage))


async def random_schedule(seed: int) -> list[str]:
    """A stable base of 10-30 nodes (r = 3), then random joins, crashes and leaves; Zave's
    invariants checked every quarter second. Crashes respect the failure assumption: no live
    node is ever left without a live successor."""
    rng = random.Random(seed)
    ring = SimRing(config=NodeConfig(successors=3, stabilize_interval=0.5, rpc_timeout=0.3),
                   net=MemoryNetwork(seed=seed, copy_messages=False), seed=seed,
                   with_storage=False)
    ring.build_stable(rng.randint(10, 30))
    violations: list[str] = []

    async def watch() -> None:
        while True:
            violations.extend(ring.check_invariants())
            await asyncio.sleep(0.25)

    watcher = asyncio.ensure_future(watch())

    def safe_to_crash(victim: str) -> bool:
        alive = set(ring.nodes) - {victim}
        return len(alive) > 4 and all(
            any(s.address in alive for s in sim.node.state.successors)
            for a, sim in ring.nodes.items() if a != victim)

    for _ in range(rng.randint(4, 8)):
        action = rng.choice(["join", "crash", "leave"])
        if action == "join":
            await ring.add()
        else:
            candidates = [a for a in sorted(ring.nodes) if safe_to_crash(a)]
            if candidates:
                victim = rng.choice(candidates)
                await (ring.crash(victim) if action == "crash" else ring.leave(victim))
        await asyncio.sleep(rng.uniform(1.0, 3.0))  # at least one stabilization in between
    converged = await ring.converge(timeout=60)
    watcher.cancel()
    await ring.stop()
    if not converged:
        violations.append("ring did not converge")
    return violations


def test_200_random_small_schedules_keep_every_invariant(run_virtual) -> None:
    failures = {}
    for seed in range(200):
        found = run_virtual(random_schedule(seed))
        if found:
            failures[seed] = found[:2]
    assert failures == {}


@pytest.mark.slow
def test_1000_nodes_half_fail_at_once_then_every_lookup_finds_the_live_owner() -> None:
    result = run(ring_experiment(1000, seed=7, lookup_count=2000, fail_fraction=0.5))
    assert result["form"] == "joins" and result["join_failures"] == 0
    assert result["correct_fraction"] == 1.0 and result["failed_lookups"] == 0
    assert result["invariant_violations"] == 0
