"""A large real gRPC ring on this machine: `chordcast cluster` processes of many nodes each
(e.g. 4 x 64 = 256). Measures how long the ring takes to form (every successor pointer the
oracle's), lookups through random nodes checked against the oracle, hops, idle CPU of the whole
ring (in cores) and memory (total, and per extra node in a multi-node process).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import statistics
import time

from bench.common import idle_cpu_percent, percentile, rss_mib, timed
from bench.dht import SETTLE_SECONDS
from chordcast import Client
from chordcast.localring import LocalRing

FORM_TIMEOUT = 300.0


async def _walk(start: str, limit: int) -> list[str]:
    async with Client(start, timeout=5.0) as client:
        return [info.node.address for info in await client.ring(limit=limit + 1)]


async def _lookups(ring: LocalRing, order: list[str], count: int) -> dict[str, float]:
    """`count` lookups through random nodes, each compared with the oracle's owner."""
    ids = [ring.space.hash_address(a) for a in order]
    rng = random.Random(11)
    clients = {a: Client(a, timeout=10.0, ring_aware=False)
               for a in rng.sample(order, min(16, len(order)))}
    hops: list[int] = []
    wrong = 0

    async def lookup(_: int) -> None:
        nonlocal wrong
        key = rng.getrandbits(ring.space.bits)
        r = await rng.choice(list(clients.values())).lookup(key_id=ring.space.format(key))
        hops.append(r.hops)
        wrong += r.owner.address != order[bisect.bisect_left(ids, key) % len(ids)]

    await timed(lookup, 50)  # warm up channels
    hops.clear()
    wrong = 0
    times = await timed(lookup, count)
    for c in clients.values():
        await c.close()
    return {"lookups": count, "wrong": wrong, "hops_mean": statistics.mean(hops),
            "one_hop_fraction": sum(1 for h in hops if h <= 1) / len(hops),
            "lookup_p50_ms": 1000 * percentile(times, 50)}


def measure(processes: int = 4, per_process: int = 64, lookups: int = 200,
            idle_seconds: float = 10.0, settle_seconds: float = SETTLE_SECONDS
            ) -> dict[str, float]:
    """One event loop for the whole measurement: grpc.aio wants one per process."""
    return asyncio.run(_measure(processes, per_process, lookups, idle_seconds, settle_seconds))


async def _measure(processes: int, per_process: int, lookups: int, idle_seconds: float,
                   settle_seconds: float) -> dict[str, float]:
    ring = LocalRing(extra_args=["--log-level", "warning"])
    total = processes * per_process
    started = time.monotonic()
    try:
        first = ring.start_cluster(per_process, timeout=FORM_TIMEOUT)
        for _ in range(processes - 1):
            ring.start_cluster(per_process, join=random.sample(first.addresses, 3),
                               timeout=FORM_TIMEOUT)
        everyone = [a for c in ring.clusters for a in c.addresses]
        order = [a for _, a in sorted((ring.space.hash_address(a), a) for a in everyone)]
        deadline = started + FORM_TIMEOUT
        while True:
            start = order[0]
            walk = await _walk(start, total)
            if walk == order:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{total} nodes did not form the oracle's ring in "
                                   f"{FORM_TIMEOUT:g}s ({len(walk)} walked)")
            await asyncio.sleep(1.0)
        formed = time.monotonic() - started
        result: dict[str, float] = {"nodes": total, "processes": processes,
                                    "formed_seconds": formed}
        await asyncio.sleep(5)  # location caches fill
        result.update(await _lookups(ring, order, lookups))
        await asyncio.sleep(settle_seconds)
        pids = [c.proc.pid for c in ring.clusters]
        # (nothing else runs on this loop meanwhile: the blocking measurement is fine)
        result["idle_cores"] = idle_cpu_percent(pids, idle_seconds) * len(pids) / 100
        rss = [rss_mib(p) for p in pids]
        result["rss_mib_total"] = sum(rss)
        result["rss_mib_per_process"] = statistics.mean(rss)
    finally:
        ring.stop()
    ring.check_logs()
    return result
