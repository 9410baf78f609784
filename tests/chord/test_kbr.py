"""The KBR upcalls as an application sees them: forward at every hop, deliver at the owner,
stop-and-answer from a hop, direct sends, update on neighbour changes."""

from __future__ import annotations

import asyncio
import math

from chord.kbr import Forward, Kbr, NeighborChange
from chord.node import NodeConfig
from chord.sim.ring import SimRing
from chord.state import NodeRef


class Tracer:
    """A toy application: records upcalls; a payload starting with b"stop@" + address stops
    the message at that node; every hop appends its address to the payload."""

    name = "tracer"

    def __init__(self, kbr: Kbr) -> None:
        self.kbr = kbr
        self.forwards: list[tuple[int, NodeRef | None, NodeRef]] = []
        self.delivered: list[tuple[int, bytes, NodeRef]] = []
        self.updates: list[NeighborChange] = []
        kbr.register(self)

    async def forward(self, key: int, payload: bytes, prev_hop: NodeRef | None,
                      next_hop: NodeRef) -> Forward:
        self.forwards.append((key, prev_hop, next_hop))
        me = self.kbr.me.address.encode()
        if payload.startswith(b"stop@" + me):
            return Forward(payload, stop=True, reply=b"stopped at " + me)
        return Forward(payload + b"|" + me)

    async def deliver(self, key: int, payload: bytes, origin: NodeRef) -> bytes:
        self.delivered.append((key, payload, origin))
        return b"delivered:" + payload

    async def direct(self, payload: bytes, sender: NodeRef) -> bytes:
        return b"echo:" + payload + b" from " + sender.address.encode()

    def update(self, change: NeighborChange) -> None:
        self.updates.append(change)

    async def leaving(self) -> None:
        pass


def test_forward_deliver_stop_direct_update(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=NodeConfig(successors=3), seed=5)
        tracers: dict[str, Tracer] = {}
        for _ in range(30):
            sim = await ring.add()
            tracers[sim.node.me.address] = Tracer(sim.kbr)
        assert await ring.converge()
        await asyncio.sleep(30)

        origin = ring.nodes[sorted(ring.nodes)[0]]
        # A key far from the origin, so the route has several hops.
        key = ring.space.add(origin.node.me.id, ring.space.size // 2 + 12345)
        result = await origin.kbr.route(key, "tracer", b"m")
        assert result.owner.id == ring.owner_of(key)
        assert result.hops >= 2
        forwarders = [n.address for n in result.path[:-1]]
        # Every hop but the owner ran forward and appended itself, in path order.
        assert result.payload == b"delivered:m|" + b"|".join(a.encode() for a in forwarders)
        owner_tracer = tracers[result.owner.address]
        assert owner_tracer.delivered[-1][0] == key
        assert owner_tracer.delivered[-1][2] == origin.node.me
        for i, address in enumerate(forwarders):
            _, prev_hop, next_hop = tracers[address].forwards[-1]
            assert prev_hop == (result.path[i - 1] if i else None)
            assert next_hop == result.path[i + 1]

        # A hop may stop the message and answer in the owner's place.
        stopper = forwarders[1]
        stopped = await origin.kbr.route(key, "tracer", b"stop@" + stopper.encode())
        assert stopped.payload == b"stopped at " + stopper.encode()
        assert stopped.owner.address == stopper
        assert len(owner_tracer.delivered) == 1

        # Direct send bypasses routing.
        far = ring.nodes[sorted(ring.nodes)[-1]].node.me
        reply = await origin.kbr.send(far, "tracer", b"hi")
        assert reply == b"echo:hi from " + origin.node.me.address.encode()

        # update fires when a neighbour joins, with the new successor list.
        newcomer = await ring.add()
        assert await ring.converge()
        ids = ring.sorted_ids()
        pred_id = ids[ids.index(newcomer.node.me.id) - 1]
        pred_address = next(a for a, s in ring.nodes.items() if s.node.me.id == pred_id)
        changes = tracers[pred_address].updates
        assert any(c.new_successors and c.new_successors[0] == newcomer.node.me
                   for c in changes)
        assert origin.kbr.replica_set(2) == origin.node.state.successors[:2]
        await ring.stop()

    run_virtual(scenario())


class Inbox(Tracer):
    """Counts broadcast deliveries (the `direct` upcall) per node."""

    def __init__(self, kbr: Kbr, counts: dict[str, int]) -> None:
        super().__init__(kbr)
        self.counts = counts

    async def direct(self, payload: bytes, sender: NodeRef) -> bytes:
        self.counts[self.kbr.me.address] = self.counts.get(self.kbr.me.address, 0) + 1
        return b""


def test_broadcast_reaches_every_node_once_and_no_spread_task_fails(run_virtual) -> None:
    """Leaves of the spread have nobody left to hand a stretch to: that must end quietly
    (it used to raise in every leaf's task, and on a one-node ring in `broadcast` itself)."""
    failures: list[BaseException] = []

    async def scenario(size: int) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: failures.append(ctx["exception"]))
        ring = SimRing(config=NodeConfig(successors=3), seed=11)
        counts: dict[str, int] = {}
        for _ in range(size):
            sim = await ring.add()
            Inbox(sim.kbr, counts)
        assert await ring.converge()
        await asyncio.sleep(20)  # fingers filled
        origin = ring.nodes[sorted(ring.nodes)[0]]
        started = loop.time()
        reached = await origin.kbr.broadcast("tracer", b"to all")
        took = loop.time() - started
        everyone = {address: 1 for address in ring.nodes}
        # Answered once every share is done: the count is the nodes that delivered it, and
        # it took a round trip per level of the spread (O(log N)), not a timer period.
        assert reached == size and counts == everyone
        link = ring.net.latency("a", "b", ring.net.rng)
        assert took <= 2 * link * (math.ceil(math.log2(size)) + 2)
        await asyncio.sleep(1)  # and nobody receives it twice later
        assert counts == everyone
        if size > 2:  # a node that crashed unnoticed: its share goes to its successor
            victim = sorted(ring.nodes)[size // 2]
            await ring.crash(victim)
            counts.clear()
            reached = await origin.kbr.broadcast("tracer", b"again")
            rest = {a: 1 for a in ring.nodes if a != victim}
            await ring.wait_for(lambda: counts == rest, timeout=10, step=0.1)
            await asyncio.sleep(1)  # and nobody receives it twice later
            assert counts == rest
            assert reached == size - 1
        await ring.stop()

    for size in (1, 2, 20, 150):
        run_virtual(scenario(size))
        assert not failures, f"ring of {size}: {failures!r}"


def test_a_broadcast_past_its_budget_still_reaches_every_node_once(run_virtual) -> None:
    """The budget bounds when the count comes back, never the delivery: with too little time
    to count the whole ring, the stretches still go on, uncounted."""

    async def scenario() -> None:
        ring = SimRing(config=NodeConfig(successors=3), seed=5)
        counts: dict[str, int] = {}
        for _ in range(60):
            Inbox((await ring.add()).kbr, counts)
        assert await ring.converge()
        await asyncio.sleep(20)  # fingers filled
        origin = ring.nodes[sorted(ring.nodes)[0]]
        link = ring.net.latency("a", "b", ring.net.rng)
        reached = await origin.node.routing.counted_spread(
            "tracer", b"hurry", origin.node.me, origin.node.me.id, 3 * link)
        assert 1 <= reached < 60  # what came back in three link latencies
        everyone = {a: 1 for a in ring.nodes}
        await ring.wait_for(lambda: counts == everyone, timeout=10, step=0.1)
        await asyncio.sleep(1)  # and nobody receives it twice later
        assert counts == everyone
        await ring.stop()

    run_virtual(scenario())
