"""Scribe in the simulator: groups of many sizes on a stable ring, messages from random
senders, forwarders crashed while they flow; tree shape, stress, delay penalty, repair time.

Runs the same Scribe code as a real node, on `chord.sim`'s virtual-time network.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from typing import Any

from chord.sim.experiments import Progress, SimStats, new_ring, pair_latency, percentile
from chord.sim.ring import SimRing
from mcast.scribe import McastError, Scribe, ScribeConfig
from mcast.tree import MESSAGE


async def mcast_experiment(nodes: int, seed: int, groups: int, sizes: list[int],
                           messages: int, crash_fraction: float = 0.0,
                           progress: Progress | None = None, parent_timeout: float = 30.0
                           ) -> dict[str, Any]:
    """Scribe: `groups` groups with the given member counts (one member per node), messages
    from random senders, optionally crashing a fraction of the forwarders while they flow."""
    rng = random.Random(seed)
    config = ScribeConfig(parent_timeout=parent_timeout, max_children=16)
    ring = new_ring(nodes, seed, 2 * math.ceil(math.log2(nodes)), stabilize=5.0,
                    latency=pair_latency(seed, 0.010, 0.100),
                    app_factories={"scribe": lambda kbr, rr: Scribe(kbr, config, rr)})
    ring.build_stable(nodes)
    loop = asyncio.get_running_loop()
    addresses = sorted(ring.nodes)
    names = [f"group-{i}" for i in range(groups)]
    delays: list[float] = []
    penalties: list[float] = []
    received: dict[tuple[str, str], list[int]] = {}
    root_of: dict[str, str] = {}

    def scribe(address: str) -> Any:
        return ring.nodes[address].apps["scribe"]

    for name in names:
        _, root = await scribe(rng.choice(addresses)).create(name)
        root_of[name] = root.address
    joins = []
    for name, size in zip(names, sizes, strict=True):
        for address in rng.sample(addresses, k=min(size, len(addresses))):
            key = (name, address)
            received[key] = []

            def on_event(e: Any, key: tuple[str, str] = key) -> None:
                if e.kind == MESSAGE:
                    received[key].append(e.seq)
                    delay = loop.time() - e.ts_ms / 1000
                    direct = ring.net.latency(root_of[key[0]], key[1], ring.net.rng)
                    delays.append(delay)
                    if key[1] != root_of[key[0]]:
                        penalties.append(delay / direct)

            joins.append(scribe(address).join(name, on_event))
    order = list(range(len(joins)))
    rng.shuffle(order)  # groups fill up together, as they would in a live system
    for start in range(0, len(order), 1000):  # 1,000 joins in flight at a time
        await asyncio.gather(*(joins[i] for i in order[start:start + 1000]))
        if progress is not None:
            progress("members joined", min(start + 1000, len(order)), len(order))
    stats = ring.observer
    assert isinstance(stats, SimStats)
    forwarded_before = stats.counts["mcast_forwarded"]

    async def send(sender: Any, k: int) -> None:
        try:
            await sender.send(names[k % groups], f"m{k}".encode())
        except McastError:
            pass

    async def traffic() -> None:
        # A steady stream, one send every 50 ms whatever the previous one is doing (a send
        # waits for the root's stamp): with crashes, messages keep coming while trees repair.
        sends = []
        for k in range(messages):
            sends.append(asyncio.ensure_future(send(scribe(rng.choice(sorted(ring.nodes))), k)))
            await asyncio.sleep(0.05)
        await asyncio.gather(*sends)

    flow = asyncio.ensure_future(traffic())
    crashed = 0
    repair_times: list[float] = []
    orphans: set[tuple[str, str]] = set()
    if crash_fraction:
        await asyncio.sleep(1.0)
        forwarders = sorted(a for a, s in ring.nodes.items() if any(
            g.children and not g.is_root for g in s.apps["scribe"].groups.values()))
        victims = set(rng.sample(forwarders, k=int(crash_fraction * len(forwarders))))
        # The subtrees cut off: every (group, node) whose parent is about to crash.
        orphans = {(name, a) for a, s in ring.nodes.items() if a not in victims
                   for name, g in s.apps["scribe"].groups.items()
                   if g.parent is not None and g.parent.address in victims}
        for address in sorted(victims):
            await ring.crash(address)
            crashed += 1
        watcher = asyncio.ensure_future(watch_repairs(ring, orphans, repair_times))
    await flow
    sent_all = loop.time()
    expected = {}
    for name in names:
        root = next(s.apps["scribe"].roots[name] for s in ring.nodes.values()
                    if name in s.apps["scribe"].roots)
        expected[name] = list(range(1, root.counter + 1))

    def complete() -> bool:
        return all(seqs == expected[n] for (n, a), seqs in received.items() if a in ring.nodes)

    for _ in range(300):  # repair, bounded: 300 virtual seconds
        if complete():
            break
        await asyncio.sleep(1.0)
    settle_seconds = loop.time() - sent_all
    unrepaired = await watcher if crash_fraction else 0
    live = [(k, v) for k, v in received.items() if k[1] in ring.nodes]
    exact = sum(1 for (n, _), v in live if v == expected[n])
    deliveries = sum(len(v) for _, v in live)
    wanted = sum(len(expected[n]) for (n, _), _ in live)
    unique = sum(len(set(v) & set(expected[n])) for (n, _), v in live)
    depths, stress = tree_shape(ring, names)
    node_stress = [sum(len(g.children) for g in sim.apps["scribe"].groups.values())
                   for sim in ring.nodes.values()]
    forwarded = stats.counts["mcast_forwarded"] - forwarded_before
    await ring.stop()
    return {
        "nodes": nodes, "groups": groups, "members": len(received), "messages": messages,
        "crashed_forwarders": crashed,
        "exactly_once_in_order_fraction": round(exact / max(1, len(live)), 6),
        "delivered_fraction": round(unique / max(1, wanted), 6),
        # per subtree cut off by a crash: from the crash until its top node hangs from a live
        # parent again (0.1 s resolution); unrepaired ones are counted, not averaged in
        "orphaned_subtrees": len(orphans),
        "unrepaired_subtrees": unrepaired,
        "repair_p50_s": round(percentile(repair_times, 50), 2) if repair_times else 0.0,
        "repair_p99_s": round(percentile(repair_times, 99), 2) if repair_times else 0.0,
        "repair_max_s": round(max(repair_times), 2) if repair_times else 0.0,
        "depth_mean": round(statistics.mean(depths), 3), "depth_max": max(depths),
        "stress_mean": round(statistics.mean(stress), 3), "stress_max": max(stress),
        # Scribe's node stress: children-table entries per node over all groups (every node);
        # uplink stress: copies of one message a node sends at most (its children in one
        # tree), against the largest group's size for a root sending to every member itself
        "node_stress_mean": round(statistics.mean(node_stress), 3),
        "node_stress_max": max(node_stress),
        "uplink_stress_max": max(stress), "uplink_stress_unicast": max(sizes),
        "messages_per_delivery": round(forwarded / max(1, deliveries), 4),
        "delay_p50_ms": round(1000 * percentile(delays, 50), 2),
        "delay_p99_ms": round(1000 * percentile(delays, 99), 2),
        "delay_penalty_mean": round(statistics.mean(penalties), 3) if penalties else 0.0,
        # after the last send, until every live member had every message (bounded at 300 s)
        "settle_seconds": round(settle_seconds, 2),
        "virtual_seconds": round(loop.time(), 3),
    }


async def watch_repairs(ring: SimRing, orphans: set[tuple[str, str]], times: list[float],
                        limit: float = 300.0, step: float = 0.1) -> int:
    """Record, for each orphaned (group, node), how long until it has a path of live tree
    nodes up to the root again (none of them re-joining). Bounded by `limit`; returns how
    many were never repaired."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    waiting = set(orphans)
    while waiting and loop.time() - start < limit:
        for key in sorted(waiting):
            path, end = climb(ring, *key)
            if end == "gone":
                waiting.discard(key)  # the node or its membership is gone: nothing to repair
            elif end == "root" and not any(g.rejoining for g in path):
                times.append(loop.time() - start)
                waiting.discard(key)
        await asyncio.sleep(step)
    return len(waiting)


def climb(ring: SimRing, name: str, address: str) -> tuple[list[Any], str]:
    """Walk a group's tree from a node up through its parents: the group states passed and
    how the walk ended ("root", or why it stopped short: "gone", "detached", "dead parent",
    "cycle")."""
    states: list[Any] = []
    seen: set[str] = set()
    while True:
        sim = ring.nodes.get(address)
        g = sim.apps["scribe"].groups.get(name) if sim is not None else None
        if g is None:
            return states, "dead parent" if states else "gone"
        states.append(g)
        if g.is_root:
            return states, "root"
        if g.parent is None:
            return states, "detached"
        seen.add(address)
        address = g.parent.address
        if address in seen:
            return states, "cycle"


def tree_shape(ring: SimRing, names: list[str]) -> tuple[list[int], list[int]]:
    """Depth of every tree node (hops to its root) and children per tree node; asserts that
    every tree is cycle-free and connected to its root."""
    depths: list[int] = []
    stress: list[int] = []
    for name in names:
        for address, sim in ring.nodes.items():
            g = sim.apps["scribe"].groups.get(name)
            if g is None:
                continue
            stress.append(len(g.children))
            path, end = climb(ring, name, address)
            assert end == "root", f"{address} in {name}: {end} after {len(path) - 1} hops"
            depths.append(len(path) - 1)
    return depths, stress
