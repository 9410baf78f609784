"""What the Scribe tests on the in-memory network share: a ring whose nodes all run Scribe,
the Scribe of one of its nodes, an observer that counts multicast events, and waiting (in
virtual time) for something to stop changing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from chord.node import NodeConfig
from chord.ports import Observer
from chord.sim.ring import SimNode, SimRing
from mcast.scribe import Scribe, ScribeConfig


def scribe(sim: SimNode) -> Scribe:
    return sim.apps["scribe"]  # type: ignore[no-any-return]


def scribe_ring(config: NodeConfig, seed: int, scribe_config: ScribeConfig,
                observer: Observer | None = None) -> SimRing:
    """A ring (not grown yet) whose every node runs Scribe with `scribe_config`."""
    return SimRing(config=config, seed=seed, observer=observer or Observer(), app_factories={
        "scribe": lambda kbr, rng: Scribe(kbr, scribe_config, rng)})


async def grown_with_full_caches(ring: SimRing, nodes: int) -> list[SimNode]:
    """Grow the ring to `nodes`, let it converge, and wait until every location cache knows
    every other node (as in a settled real ring: sends then reach a root in one hop, which
    is not what these tests measure). The nodes, by address."""
    await ring.grow(nodes)
    assert await ring.converge()
    assert await ring.wait_for(
        lambda: all(len(s.node.cache) == nodes - 1 for s in ring.nodes.values()), 60, step=0.5)
    return sorted(ring.nodes.values(), key=lambda s: s.node.me.address)


class Counted(Observer):
    def __init__(self) -> None:
        self.events: Counter[str] = Counter()

    def mcast(self, event: str, count: int = 1) -> None:
        self.events[event] += count


async def settled(snapshot: Callable[[], object], hold: float, timeout: float) -> bool:
    """Advance (virtual) time until `snapshot()` has not changed for `hold` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last, since = snapshot(), loop.time()
    while loop.time() - since < hold:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.1)
        now = snapshot()
        if now != last:
            last, since = now, loop.time()
    return True
