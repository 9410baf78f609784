"""chordcast's lookups and storage on a loopback ring of `chordcast node` processes: latency
(sequential), throughput (16 in flight), hops, idle CPU and memory per node.

Load comes from this process: through the NodeApi of random nodes (thin clients, the CLI), and
through the ring-aware `chordcast.Client` (straight to the key's owner).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

from bench.common import idle_cpu_percent, percentile, rate, rss_mib, timed
from chordcast import Client
from chordcast.localring import LocalRing


async def _load(addresses: list[str], count: int, in_flight: int) -> dict[str, float]:
    rng = random.Random(7)
    thin = [Client(a, ring_aware=False) for a in addresses]  # one per node, as a CLI would
    aware = Client(addresses)
    keys = [f"bench-{i}" for i in range(200)]
    for k in keys:
        await aware.put(k, b"v" * 100)
    hops: list[int] = []

    async def lookup(i: int) -> None:
        r = await rng.choice(thin).lookup(f"lookup-{rng.random()}")
        hops.append(r.hops)

    async def get_thin(i: int) -> None:
        await rng.choice(thin).get(rng.choice(keys))

    async def get_aware(i: int) -> None:
        await aware.get(rng.choice(keys))

    for op in (lookup, get_thin, get_aware):  # warm up channels and caches
        await timed(op, 50)
    hops.clear()
    lookups = await timed(lookup, count)
    gets = await timed(get_thin, count)
    aware_gets = await timed(get_aware, count)
    result = {
        "lookup_p50_ms": 1000 * percentile(lookups, 50),
        "lookup_p99_ms": 1000 * percentile(lookups, 99),
        "hops_mean": statistics.mean(hops),
        "one_hop_fraction": sum(1 for h in hops if h <= 1) / len(hops),
        "get_p50_ms": 1000 * percentile(gets, 50),
        "get_p99_ms": 1000 * percentile(gets, 99),
        "client_get_p50_ms": 1000 * percentile(aware_gets, 50),
        "client_get_p99_ms": 1000 * percentile(aware_gets, 99),
        "lookups_per_s": await rate(lookup, 2 * count, in_flight),
        "gets_per_s": await rate(get_thin, 2 * count, in_flight),
        "client_gets_per_s": await rate(get_aware, 2 * count, in_flight),
    }
    for c in [*thin, aware]:
        await c.close()
    return result


# Idle is measured once the ring has been quiet this long: the stabilization interval backs
# off (doubling every 4 quiet rounds, 0.5 s up to 4 s) in about 14 s after the last change.
SETTLE_SECONDS = 16.0


def measure(nodes: int, count: int, in_flight: int = 16, idle_seconds: float = 10.0,
            extra: list[str] | None = None, settle_seconds: float = SETTLE_SECONDS
            ) -> dict[str, float]:
    ring = LocalRing(extra_args=["--log-level", "warning", *(extra or [])])
    with ring.running(nodes, timeout=120):
        time.sleep(3)  # fingers and location caches fill
        result: dict[str, float] = {"nodes": nodes}
        result.update(asyncio.run(_load([n.address for n in ring.live()], count, in_flight)))
        time.sleep(settle_seconds)
        pids = [n.proc.pid for n in ring.live()]
        result["idle_cpu_percent_per_node"] = idle_cpu_percent(pids, idle_seconds)
        result["rss_mib_per_node"] = statistics.mean(rss_mib(p) for p in pids)
    return result
