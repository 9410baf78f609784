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

from chord import invariants
from chord.ids import IdSpace
from chord.kbr import Kbr
from chord.node import ChordNode, NodeConfig
from chord.ports import MemoryDisk, Observer, VirtualClock
from chord.sim.memnet import MemoryNetwork
from chord.storage import Storage


@dataclass
class SimNode:
    node: ChordNode
    kbr: Kbr
    storage: Storage  # absent (None) in rings built with with_storage=False
    apps: dict[str, Any] = field(default_factory=dict)  # made by SimRing.app_factories


@dataclass
class SimRing:
    space: IdSpace = field(default_factory=IdSpace)
    config: NodeConfig = field(default_factory=NodeConfig)
    net: MemoryNetwork = field(default_factory=MemoryNetwork)
    seed: int = 0
    replicas: int = 3
    sync_interval: float = 5.0
    with_storage: bool = True
    observer: Observer = field(default_factory=Observer)  # shared by every node
    nodes: dict[str, SimNode] = field(default_factory=dict)  # live nodes by address
    # More applications per node (e.g. multicast): name -> factory(kbr, rng) returning an
    # object with a start() method. Kept as factories so this module stays below the apps.
    app_factories: dict[str, Callable[[Kbr, random.Random], Any]] = field(default_factory=dict)
    # Data dirs in memory by address (None: nodes keep nothing): a node restarted at an
    # address starts from what its disk there holds. An app reaches its node's disk here.
    disks: dict[str, MemoryDisk] | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._counter = 0
        self._ids: list[int] | None = None  # the oracle's sorted live ids, None when stale
        self._id_map: dict[int, SimNode] | None = None

    def new_address(self) -> str:
        self._counter += 1
        i = self._counter
        return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:4000"

    def _make(self, address: str) -> SimNode:
        node = ChordNode(
            self.space, address, self.net.transport(address), self.config,
            clock=VirtualClock(), rng=random.Random(self.rng.random()), observer=self.observer,
        )
        kbr = Kbr(node)
        storage = (Storage(kbr, replicas=self.replicas, sync_interval=self.sync_interval,
                           durable=self.disk(address))
                   if self.with_storage else None)
        self.net.register(address, node.handle)
        apps = {name: make(kbr, random.Random(self.rng.random()))
                for name, make in self.app_factories.items()}
        return SimNode(node, kbr, storage, apps)  # type: ignore[arg-type]

    def disk(self, address: str) -> MemoryDisk | None:
        """The data dir of the node at `address` (None in a ring without disks)."""
        return None if self.disks is None else self.disks.setdefault(address, MemoryDisk())

    def _start(self, sim: SimNode) -> None:
        sim.node.start()
        if sim.storage is not None:
            sim.storage.start()
        for app in sim.apps.values():
            app.start()
        self._enter(sim)

    def _enter(self, sim: SimNode) -> None:
        self.nodes[sim.node.me.address] = sim
        self._ids = self._id_map = None

    def _remove(self, address: str) -> SimNode:
        self._ids = self._id_map = None
        return self.nodes.pop(address)

    async def add(self, address: str | None = None, via: str | None = None) -> SimNode:
        """Start a node and join it through `via` (default: a random live node)."""
        address = address or self.new_address()
        if via is None and self.nodes:
            via = self.rng.choice(sorted(self.nodes))
        sim = self._make(address)
        try:
            await sim.node.join([via] if via else [])
        except Exception:
            self.net.unregister(address)
            await sim.node.stop()
            raise
        self._start(sim)
        return sim

    def build_stable(self, n: int, maintain: bool = True) -> None:
        """n nodes with the oracle's pointers already in place (successor lists, predecessors,
        fingers): the "stable base" Zave's proofs start from, and the Chord paper's
        experiments too. Far faster than n joins; the protocol runs normally from here."""
        sims = [self._make(self.new_address()) for _ in range(n)]
        by_id = sorted(sims, key=lambda s: s.node.me.id)
        ids = [s.node.me.id for s in by_id]
        refs = [s.node.me for s in by_id]
        r = self.config.successors
        for i, sim in enumerate(by_id):
            st = sim.node.state
            st.successors = [refs[(i + k) % n] for k in range(1, min(r, n - 1) + 1)]
            st.predecessor = refs[i - 1] if n > 1 else None
            for f in range(self.space.bits):
                j = bisect.bisect_left(ids, self.space.finger_start(ids[i], f)) % n
                st.fingers[f] = refs[j] if j != i else None
            if maintain:
                self._start(sim)
            else:
                self._enter(sim)

    async def form(self, n: int, progress: Callable[[int], None] | None = None,
                   max_rounds: int = 300) -> int:
        """Form a ring of n nodes by joins, as a deployment would: one node founds it, then
        waves of concurrent joins through random members, each wave at most as large as the
        ring already is; between waves, wait (bounded) until every successor is right.
        Returns how many joins failed and were retried in a later wave."""
        if not self.nodes:
            await self.add()
        failed = 0
        period = self.config.stabilize_interval
        while len(self.nodes) < n:
            wave = min(len(self.nodes), n - len(self.nodes))
            outcomes = await asyncio.gather(*(self.add() for _ in range(wave)),
                                            return_exceptions=True)
            failed += sum(1 for o in outcomes if isinstance(o, BaseException))
            if not await self.converge(timeout=max_rounds * period):
                raise RuntimeError(f"{len(self.nodes)} nodes: successors still wrong after "
                                   f"{max_rounds} stabilization rounds")
            if progress:
                progress(len(self.nodes))
        # Formed means Zave's ideal state, not just right successors: full successor lists and
        # right predecessors everywhere (lists fill in one hop per round after the last wave).
        if not await self.wait_for(self.is_ideal, timeout=max_rounds * period):
            raise RuntimeError(f"{len(self.nodes)} nodes: not ideal after {max_rounds} rounds")
        return failed

    async def restart(self, address: str) -> SimNode:
        """A crashed node comes back at the same address and re-joins, with what its disk
        holds (empty state in a ring without disks)."""
        if address in self.nodes:
            await self.crash(address)
        return await self.add(address)

    async def grow(self, n: int, settle_every: float = 0.0) -> None:
        for _ in range(n):
            await self.add()
            if settle_every:
                await asyncio.sleep(settle_every)

    async def crash(self, address: str) -> None:
        sim = self._remove(address)
        self.net.unregister(address)
        await sim.node.stop()

    async def leave(self, address: str) -> None:
        sim = self._remove(address)
        await sim.kbr.leave()
        self.net.unregister(address)

    # -- the oracle ----------------------------------------------------------------------
    def _live_ids(self) -> list[int]:
        if self._ids is None:  # cached: 100,000 lookups at 10,000 nodes each ask the oracle
            self._ids = sorted(s.node.me.id for s in self.nodes.values())
        return self._ids

    def sorted_ids(self) -> list[int]:
        return list(self._live_ids())

    def owner_of(self, key: int) -> int:
        ids = self._live_ids()
        return ids[bisect.bisect_left(ids, key) % len(ids)]

    def successor_lists(self) -> dict[int, list[int]]:
        return {s.node.me.id: [x.id for x in s.node.state.successors]
                for s in self.nodes.values()}

    def check_invariants(self) -> list[str]:
        return invariants.check(self.space, self.successor_lists())

    def wrong_successors(self) -> int:
        """Live nodes whose successor is not the next live node on the ring."""
        ids = self._live_ids()
        nxt = {a: ids[(i + 1) % len(ids)] for i, a in enumerate(ids)}
        return sum(1 for s in self.nodes.values() if s.node.state.successor.id != nxt[s.node.me.id])

    def is_ideal(self) -> bool:
        """Every live node holds exactly the next r live nodes and the previous one."""
        ids, by_id = self._live_ids(), self._by_id()
        n = len(ids)
        for i, a in enumerate(ids):
            st = by_id[a].node.state
            want_pred = ids[i - 1] if n > 1 else None  # a lone node has no predecessor
            want_succ = [ids[(i + k) % n] for k in range(1, min(self.config.successors, n - 1) + 1)]
            got_pred = st.predecessor.id if st.predecessor is not None else None
            if got_pred != want_pred or [s.id for s in st.successors] != want_succ:
                return False
        return True

    def _by_id(self) -> dict[int, SimNode]:
        if self._id_map is None:
            self._id_map = {s.node.me.id: s for s in self.nodes.values()}
        return self._id_map

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
