"""A whole ring on the in-memory network: build it, fail nodes, compare with an oracle.

Runs inside a `VirtualTimeLoop`; used by the tests and the simulator. The nodes are the real
protocol objects (`ChordNode` + `Kbr` + `Storage`), only the transport is in memory.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chord.ids import IdSpace
from chord.kbr import Kbr
from chord.memnet import MemoryNetwork
from chord.node import ChordNode, NodeConfig
from chord.ports import VirtualClock
from chord.storage import Storage


@dataclass
class SimNode:
    node: ChordNode
    kbr: Kbr
    storage: Storage
    apps: dict[str, Any] = field(default_factory=dict)  # made by SimRing.app_factories


@dataclass
class SimRing:
    space: IdSpace = field(default_factory=IdSpace)
    config: NodeConfig = field(default_factory=NodeConfig)
    net: MemoryNetwork = field(default_factory=MemoryNetwork)
    seed: int = 0
    replicas: int = 3
    sync_interval: float = 5.0
    nodes: dict[str, SimNode] = field(default_factory=dict)  # live nodes by address
    # More applications per node (e.g. multicast): name -> factory(kbr, rng) returning an
    # object with a start() method. Kept as factories so this module stays below the apps.
    app_factories: dict[str, Callable[[Kbr, random.Random], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._counter = 0

    def new_address(self) -> str:
        self._counter += 1
        i = self._counter
        return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:4000"

    async def add(self, address: str | None = None, via: str | None = None) -> SimNode:
        """Start a node and join it through `via` (default: a random live node)."""
        address = address or self.new_address()
        node = ChordNode(
            self.space, address, self.net.transport(address), self.config,
            clock=VirtualClock(), rng=random.Random(self.rng.random()),
        )
        kbr = Kbr(node)
        storage = Storage(kbr, replicas=self.replicas, sync_interval=self.sync_interval)
        self.net.register(address, node.handle)
        if via is None and self.nodes:
            via = self.rng.choice(sorted(self.nodes))
        apps = {name: make(kbr, random.Random(self.rng.random()))
                for name, make in self.app_factories.items()}
        await node.join([via] if via else [])
        node.start()
        storage.start()
        for app in apps.values():
            app.start()
        sim = SimNode(node, kbr, storage, apps)
        self.nodes[address] = sim
        return sim

    async def grow(self, n: int, settle_every: float = 0.0) -> None:
        for _ in range(n):
            await self.add()
            if settle_every:
                await asyncio.sleep(settle_every)

    async def crash(self, address: str) -> None:
        sim = self.nodes.pop(address)
        self.net.unregister(address)
        await sim.node.stop()

    async def leave(self, address: str) -> None:
        sim = self.nodes.pop(address)
        await sim.kbr.leave()
        self.net.unregister(address)

    # -- the oracle ----------------------------------------------------------------------
    def sorted_ids(self) -> list[int]:
        return sorted(s.node.me.id for s in self.nodes.values())

    def owner_of(self, key: int) -> int:
        ids = self.sorted_ids()
        return ids[bisect.bisect_left(ids, key) % len(ids)]

    def wrong_successors(self) -> int:
        """Live nodes whose successor is not the next live node on the ring."""
        ids = self.sorted_ids()
        nxt = {a: ids[(i + 1) % len(ids)] for i, a in enumerate(ids)}
        return sum(1 for s in self.nodes.values() if s.node.state.successor.id != nxt[s.node.me.id])

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float, step: float = 1.0
    ) -> bool:
        """Advance (virtual) time until condition holds or timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(step)
        return True

    async def converge(self, timeout: float = 300.0) -> bool:
        return await self.wait_for(lambda: self.wrong_successors() == 0, timeout)

    async def stop(self) -> None:
        for address in list(self.nodes):
            await self.crash(address)
