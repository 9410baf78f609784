"""Multicast on a loopback ring: send() at one node -> delivery to 3 members attached to other
nodes through the client library (the full multicast table is issue 12's work)."""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.common import percentile
from chordcast import Client
from chordcast.localring import LocalRing


def measure(nodes: int, messages: int) -> dict[str, float]:
    """End-to-end latency: send() called at one node -> delivered to each of 3 members
    attached to other nodes (all processes on loopback)."""
    ring = LocalRing(extra_args=["--log-level", "warning"])

    async def run(addresses: list[str]) -> dict[str, float]:
        sender = Client(addresses[0])
        await sender.create("bench")
        clients = [Client(addresses[i]) for i in (1, 3, 5)]
        subs = [c.join("bench") for c in clients]
        for s in subs:
            await s.open()
        arrivals: list[dict[int, float]] = [{}, {}, {}]

        async def read(i: int) -> None:
            async for m in subs[i]:
                arrivals[i][m.seq] = time.perf_counter()
                if len(arrivals[i]) == messages:
                    return

        readers = [asyncio.ensure_future(read(i)) for i in range(3)]
        sent: dict[int, float] = {}
        for _ in range(messages):
            t0 = time.perf_counter()
            seq = await sender.send("bench", b"x" * 1024)
            sent[seq] = t0
            await asyncio.sleep(0.002)
        await asyncio.wait_for(asyncio.gather(*readers), 60)
        each = [a[s] - t for a in arrivals for s, t in sent.items()]
        all3 = [max(a[s] for a in arrivals) - t for s, t in sent.items()]
        for c in [sender, *clients]:
            await c.close()
        return {"members": 3, "messages": messages,
                "delivery_p50_ms": 1000 * statistics.median(each),
                "delivery_p99_ms": 1000 * percentile(each, 99),
                "all_members_p50_ms": 1000 * statistics.median(all3),
                "all_members_p99_ms": 1000 * percentile(all3, 99)}

    with ring.running(nodes):
        return asyncio.run(run([n.address for n in ring.live()]))
