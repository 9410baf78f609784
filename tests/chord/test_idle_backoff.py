"""Cheap idle rings: with `idle_backoff`, a settled ring stabilizes ever more rarely, yet a
crash is repaired as fast as with the short fixed interval, because each node watches the
connections to its neighbours (the Transport's `watch`). Bounds in virtual time."""

from __future__ import annotations

import asyncio
import random

from chord.node import NodeConfig
from chord.sim.ring import SimRing


def _pointers_right(ring: SimRing) -> bool:
    """Every successor and every predecessor is the oracle's."""
    ids = ring.sorted_ids()
    by_id = {s.node.me.id: s.node for s in ring.nodes.values()}
    for i, ident in enumerate(ids):
        st = by_id[ident].state
        if st.successor.id != ids[(i + 1) % len(ids)]:
            return False
        if st.predecessor is None or st.predecessor.id != ids[i - 1]:
            return False
    return True


async def _idle_calls_and_repair(backoff: int) -> tuple[int, list[float]]:
    """Stabilization calls of a settled 40-node ring over 60 s, and how long each of three
    crashes (a random node each) took to set every pointer right again."""
    config = NodeConfig(successors=4, stabilize_interval=0.5, rpc_timeout=0.5,
                        idle_backoff=backoff)
    ring = SimRing(config=config, seed=9, with_storage=False)
    ring.build_stable(40)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(60)  # settle (and back off)
    before = ring.net.calls["GetNeighbors"]
    await asyncio.sleep(60)
    idle_calls = ring.net.calls["GetNeighbors"] - before
    rng = random.Random(4)
    repairs = []
    for _ in range(3):
        await ring.crash(rng.choice(sorted(ring.nodes)))
        crashed_at = loop.time()
        assert await ring.wait_for(lambda: _pointers_right(ring), timeout=60, step=0.01)
        repairs.append(loop.time() - crashed_at)
        await asyncio.sleep(60)  # idle again before the next crash
    await ring.stop()
    return idle_calls, repairs


def test_idle_ring_backs_off_and_still_repairs_a_crash_at_once(run_virtual) -> None:
    fixed_calls, fixed_repairs = run_virtual(_idle_calls_and_repair(1))
    idle_calls, repairs = run_virtual(_idle_calls_and_repair(8))
    assert idle_calls * 4 <= fixed_calls, (idle_calls, fixed_calls)
    # As fast as the fixed interval: one RPC timeout to find the dead node is the floor.
    assert max(repairs) <= max(fixed_repairs) + 0.2, (repairs, fixed_repairs)
    assert max(repairs) < 0.5 + 0.5 + 0.5, repairs  # interval + timeout + slack, not 4 s
