"""Benchmarks: lookup hops and latency on a real loopback ring, and hops on an in-memory ring.

Figures are printed, never asserted (tests assert behaviour; this measures it).
Usage: python bench/run.py [--nodes 10] [--lookups 500] [--sim-nodes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import time

from chord.node import NodeConfig
from chord.sim.memnet import MemoryNetwork, VirtualTimeLoop
from chord.sim.ring import SimRing
from chordcast import BlockingClient, Client
from chordcast.localring import LocalRing


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def bench_loopback(nodes: int, lookups: int) -> dict[str, float]:
    ring = LocalRing(extra_args=["--stabilize-interval", "0.2", "--log-level", "warning"])
    with ring.running(nodes):
        time.sleep(3)  # let fix_fingers fill the tables before measuring
        rng = random.Random(1)
        clients = [BlockingClient(n.address) for n in ring.live()]
        latencies, hops = [], []
        for _ in range(lookups):
            client = rng.choice(clients)
            t0 = time.perf_counter()
            r = client.lookup(f"bench-{rng.random()}")
            latencies.append(time.perf_counter() - t0)
            hops.append(r.hops)
        for c in clients:
            c.close()
    return {
        "nodes": nodes,
        "lookups": lookups,
        "hops_mean": statistics.mean(hops),
        "latency_p50_ms": 1000 * statistics.median(latencies),
        "latency_p99_ms": 1000 * percentile(latencies, 99),
    }


def bench_multicast(nodes: int, messages: int) -> dict[str, float]:
    """End-to-end latency: send() called at one node -> delivered to each of 3 members
    attached to other nodes (all processes on loopback)."""
    ring = LocalRing(extra_args=["--stabilize-interval", "0.2", "--log-level", "warning"])

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


def bench_memnet(nodes: int, lookups: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        cfg = NodeConfig(successors=8, stabilize_interval=0.5, rpc_timeout=0.5)
        ring = SimRing(config=cfg, net=MemoryNetwork(seed=11), seed=11)
        t0 = time.perf_counter()
        await ring.grow(nodes)
        await ring.converge()
        await asyncio.sleep(40)
        rng = random.Random(5)
        hops = []
        for _ in range(lookups):
            origin = ring.nodes[rng.choice(sorted(ring.nodes))].node
            hops.append((await origin.lookup(rng.randrange(ring.space.size))).hops)
        await ring.stop()
        return {"nodes": nodes, "lookups": lookups, "hops_mean": statistics.mean(hops),
                "half_log2_n": 0.5 * math.log2(nodes), "wall_seconds": time.perf_counter() - t0}

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(run())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--sim-nodes", type=int, default=200)
    args = ap.parse_args()
    print(json.dumps({"loopback": bench_loopback(args.nodes, args.lookups)}))
    print(json.dumps({"multicast": bench_multicast(8, 300)}))
    print(json.dumps({"memnet": bench_memnet(args.sim_nodes, 1000)}))


if __name__ == "__main__":
    main()
