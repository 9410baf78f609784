"""Data dirs on the in-memory network (chord.ports.MemoryDisk, one per address): a ring that
crashes whole and comes back at the same addresses keeps every acknowledged key, every
delete, and each group's numbering and archive; a replica that was away while a key was
deleted does not bring the key back; tombstones are collected after their lifetime."""

from __future__ import annotations

from chord.node import NodeConfig
from chord.sim.ring import SimRing
from chord.storage import SPACE
from mcast.scribe import Scribe, ScribeConfig
from mcast.tree import MESSAGE, Event
from tests.mcast.rings import scribe

CONFIG = NodeConfig(successors=4, stabilize_interval=0.5, rpc_timeout=1.0, location_cache=64)
NODES = 6


def durable_ring(seed: int) -> SimRing:
    ring = SimRing(config=CONFIG, seed=seed, disks={})
    ring.app_factories["scribe"] = lambda kbr, rng: Scribe(
        kbr, ScribeConfig(parent_timeout=3.0), rng, durable=ring.disk(kbr.me.address))
    return ring


async def restart_all(ring: SimRing) -> None:
    addresses = sorted(ring.nodes)
    for address in addresses:
        await ring.crash(address)
    for address in addresses:  # the first founds the ring again, the rest join
        await ring.restart(address)
    assert await ring.converge()


def test_a_whole_ring_comes_back_with_its_keys_deletes_and_groups(run_virtual) -> None:
    async def scenario() -> None:
        ring = durable_ring(41)
        await ring.grow(NODES)
        assert await ring.converge()
        sims = sorted(ring.nodes.values(), key=lambda s: s.node.me.address)
        for i in range(60):
            await sims[i % NODES].storage.put(f"k{i}", f"v{i}".encode())
        for i in range(0, 60, 10):
            await sims[1].storage.delete(f"k{i}")
        await scribe(sims[0]).create("g")
        for i in range(20):
            assert await scribe(sims[i % NODES]).send("g", f"m{i + 1}".encode()) == i + 1

        await restart_all(ring)
        sims = sorted(ring.nodes.values(), key=lambda s: s.node.me.address)
        for i in range(60):
            got = await sims[(i + 3) % NODES].storage.get(f"k{i}")
            if i % 10 == 0:
                assert not got.found, f"k{i} came back"
            else:
                assert got.found and got.value == f"v{i}".encode(), f"k{i} lost"
        assert await scribe(sims[2]).send("g", b"m21") == 21  # no number used twice
        events: list[Event] = []
        await scribe(sims[4]).join("g", events.append, resume_after=0)
        assert await ring.wait_for(
            lambda: sum(e.kind == MESSAGE for e in events) >= 21, 30, step=0.5)
        got = [(e.seq, e.payload) for e in events if e.kind == MESSAGE]
        assert got == [(n, f"m{n}".encode()) for n in range(1, 22)]
        await ring.stop()

    run_virtual(scenario())


def test_a_replica_that_was_away_does_not_bring_a_deleted_key_back(run_virtual) -> None:
    async def scenario() -> None:
        ring = durable_ring(42)
        await ring.grow(NODES)
        assert await ring.converge()
        any_node = next(iter(ring.nodes.values())).storage
        owner, _ = await any_node.put("doomed", b"old")
        away = next(a for a, s in ring.nodes.items()
                    if a != owner.address and "doomed" in s.storage.items)
        await ring.crash(away)                 # holds "old" on its disk
        assert await ring.converge()
        await ring.nodes[owner.address].storage.delete("doomed")
        await ring.restart(away)               # comes back with the stale copy
        assert await ring.converge()
        await ring.crash(owner.address)        # the others decide between their copies
        assert await ring.converge()
        for sim in ring.nodes.values():
            assert not (await sim.storage.get("doomed")).found
        await ring.stop()

    run_virtual(scenario())


def test_tombstones_are_collected_after_their_lifetime(run_virtual) -> None:
    async def scenario() -> None:
        ring = durable_ring(43)
        await ring.grow(3)
        assert await ring.converge()
        for sim in ring.nodes.values():
            sim.storage.tombstone_ttl = 60.0
        store = next(iter(ring.nodes.values())).storage
        await store.put("short-lived", b"x")
        await store.delete("short-lived")

        def tombstones() -> int:
            return sum("short-lived" in s.storage.items for s in ring.nodes.values()) + sum(
                any(r.key == "short-lived" for r in ring.disk(a).load(SPACE))  # type: ignore
                for a in ring.nodes)

        assert tombstones() > 0
        assert await ring.wait_for(lambda: tombstones() == 0, 60 + 4 * 30, step=1.0)
        await ring.stop()

    run_virtual(scenario())
