"""The simulator's experiments: the same protocol code as the gRPC nodes, on the in-memory
network in virtual time, seeded and deterministic.

Each experiment returns a flat dict of figures; the same seed gives the same figures
(`wall_seconds` aside). Zave's invariants are checked at chosen instants; a violation stops the
run with an `InvariantViolation` carrying the seed and the last events, to replay it.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from chord.ids import IdSpace
from chord.kbr import LookupFailed
from chord.node import NodeConfig
from chord.ports import Observer
from chord.sim.memnet import MemoryNetwork, VirtualTimeLoop
from chord.sim.ring import SimRing

TRACE_TAIL = 40

# What a long experiment says as it goes: (what is being done, how many done, of how many).
# The caller decides how to show it (a progress bar on a terminal, nothing when piped).
Progress = Callable[[str, int, int], None]


class InvariantViolation(Exception):
    def __init__(self, seed: int, when: float, violations: list[str],
                 trace: list[tuple[float, str, str, str]]) -> None:
        lines = "\n".join(f"  {t:.3f} {src} -> {dst} {method}" for t, src, dst, method in trace)
        super().__init__(f"seed {seed}: invariant violated at t={when:.3f}s: "
                         f"{violations[:3]}\nlast events:\n{lines}")
        self.seed = seed
        self.violations = violations


class SimStats(Observer):
    """Counts what the experiments report (shared by every node of a run)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def repaired(self, what: str) -> None:
        self.counts[f"repaired_{what}"] += 1

    def mcast(self, event: str, count: int = 1) -> None:
        self.counts[f"mcast_{event}"] += count


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))])


def pair_latency(seed: int, low: float, high: float) -> Callable[[str, str, random.Random],
                                                                 float]:
    """A fixed latency per pair of nodes, drawn uniformly once (deterministic for the seed):
    the latency model behind the delay-penalty figures."""

    def latency(src: str, dst: str, rng: random.Random) -> float:
        a, b = sorted((src, dst))
        h = zlib.crc32(f"{seed}|{a}|{b}".encode()) / 0xFFFFFFFF
        return low + (high - low) * h

    return latency


def run(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        result = runner.run(coro)
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    return result


def check(ring: SimRing, seed: int) -> None:
    violations = ring.check_invariants()
    if violations:
        trace = (ring.net.trace or [])[-TRACE_TAIL:]
        raise InvariantViolation(seed, asyncio.get_running_loop().time(), violations, trace)


async def lookups(ring: SimRing, count: int, rng: random.Random, concurrency: int = 1000,
                  progress: Progress | None = None) -> dict[str, Any]:
    """`count` lookups of random keys from random live nodes, `concurrency` at a time. A
    lookup is correct when it returns the live owner (the oracle at its completion)."""
    addresses = sorted(ring.nodes)
    hops: list[int] = []
    outcome: Counter[str] = Counter()
    stats = ring.observer if isinstance(ring.observer, SimStats) else None
    before = stats.counts["repaired_next_hop"] if stats else 0

    async def one() -> None:
        key = rng.randrange(ring.space.size)
        origin = ring.nodes[rng.choice(addresses)].node
        try:
            result = await origin.lookup(key)
        except LookupFailed:
            outcome["failed"] += 1
            return
        hops.append(result.hops)
        outcome["correct" if result.owner.id == ring.owner_of(key) else "wrong"] += 1

    done = 0
    while done < count:
        batch = min(concurrency, count - done)
        await asyncio.gather(*(one() for _ in range(batch)))
        done += batch
        if progress is not None:
            progress("lookups", done, count)
    timeouts = (stats.counts["repaired_next_hop"] - before) if stats else 0
    return {
        "lookups": count,
        "hops_mean": round(statistics.mean(hops), 4) if hops else float("nan"),
        "hops_p1": percentile([float(h) for h in hops], 1),
        "hops_p99": percentile([float(h) for h in hops], 99),
        "one_hop_fraction": round(sum(1 for h in hops if h <= 1) / len(hops), 4) if hops else 0.0,
        "correct_fraction": round(outcome["correct"] / count, 6),
        "failed_lookups": outcome["failed"] + outcome["wrong"],
        "timeouts_mean": round(timeouts / count, 4),
    }


def new_ring(nodes: int, seed: int, successors: int, stabilize: float, bits: int = 160,
             latency: Callable[[str, str, random.Random], float] | None = None,
             trace: bool = False, location_cache: int = 0, **kw: Any) -> SimRing:
    net = MemoryNetwork(seed=seed, latency=latency, copy_messages=False)
    if trace:
        net.trace = []
    config = NodeConfig(successors=successors, stabilize_interval=stabilize, rpc_timeout=0.5,
                        lookup_timeout=30.0, max_hops=256, location_cache=location_cache)
    return SimRing(space=IdSpace(bits), config=config, net=net, seed=seed,
                   with_storage=False, observer=SimStats(), **kw)


async def ring_experiment(nodes: int, seed: int, lookup_count: int, fail_fraction: float = 0.0,
                          successors: int | None = None, repair: bool = True,
                          stabilize: float = 1.0, progress: Progress | None = None,
                          form: str = "joins", location_cache: int = 0) -> dict[str, Any]:
    """Form a ring (by joins, or form="stable": the oracle's stable base), optionally fail a
    fraction of it at once, let it repair (or, with repair=False, stop stabilization as in the
    Chord paper's failure experiment), then look up. `location_cache` > 0: one-hop routing
    from caches of that size, warmed by gossip for 40 stabilization periods first."""
    r = successors or max(3, 2 * math.ceil(math.log2(max(nodes, 2))))
    rng = random.Random(seed)
    ring = new_ring(nodes, seed, r, stabilize, trace=True, location_cache=location_cache)
    loop = asyncio.get_running_loop()
    join_failures = 0
    if form == "joins":
        def report(n: int) -> None:
            assert ring.net.trace is not None
            del ring.net.trace[:-TRACE_TAIL]  # keep memory flat; the tail is what replays
            check(ring, seed)
            if progress is not None:
                progress("nodes joined", n, nodes)

        join_failures = await ring.form(nodes, report)
        if not repair:
            for sim in ring.nodes.values():
                sim.node.running = False  # stabilization stops; lookups go on
    elif form == "stable":
        ring.build_stable(nodes, maintain=repair)
    else:
        raise ValueError(f"form must be 'joins' or 'stable', not {form!r}")
    formed_at = loop.time()
    ring.net.trace = ring.net.trace[-10_000:] if ring.net.trace else []
    check(ring, seed)
    if fail_fraction > 0:
        for address in rng.sample(sorted(ring.nodes), k=int(fail_fraction * nodes)):
            await ring.crash(address)
        if repair:
            deadline = asyncio.get_running_loop().time() + 120 * stabilize
            while ring.wrong_successors() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(stabilize)
                check(ring, seed)
                if ring.net.trace is not None and len(ring.net.trace) > 100_000:
                    del ring.net.trace[:-TRACE_TAIL]
            await asyncio.sleep(10 * stabilize)  # fingers catch up
            check(ring, seed)
    ring.net.trace = None
    if location_cache and repair:
        await asyncio.sleep(40 * stabilize)  # gossip warms the caches
    result = await lookups(ring, lookup_count, rng, progress=progress)
    await ring.stop()
    return {"nodes": nodes, "successors": r, "fail_fraction": fail_fraction,
            "location_cache": location_cache,
            "form": form, "formed_virtual_seconds": round(formed_at, 3),
            "join_failures": join_failures,
            # check() raises on the first violation, so a finished run had none
            "repair": repair, **result, "invariant_violations": 0,
            "messages": ring.net.messages,
            "virtual_seconds": round(asyncio.get_running_loop().time(), 3)}


async def churn_experiment(nodes: int, seed: int, rate_per_period: float, periods: int,
                           lookup_count: int, stabilize: float = 30.0,
                           location_cache: int = 0) -> dict[str, Any]:
    """Poisson joins and crashes (half each) at `rate_per_period` events per stabilization
    period, with lookups spread over the run; failed = no answer or a wrong owner."""
    rng = random.Random(seed)
    r = 2 * math.ceil(math.log2(nodes))
    ring = new_ring(nodes, seed, r, stabilize, location_cache=location_cache)
    ring.build_stable(nodes)
    if location_cache:
        await asyncio.sleep(40 * stabilize)  # gossip warms the caches before churn starts
    loop = asyncio.get_running_loop()
    end = loop.time() + periods * stabilize
    events = {"joins": 0, "crashes": 0}

    async def churn() -> None:
        while True:
            await asyncio.sleep(rng.expovariate(rate_per_period / stabilize))
            if loop.time() >= end:
                return
            if rng.random() < 0.5 and len(ring.nodes) > nodes // 2:
                await ring.crash(rng.choice(sorted(ring.nodes)))
                events["crashes"] += 1
            else:
                try:
                    await ring.add()
                    events["joins"] += 1
                except Exception:
                    pass  # the join's bootstrap node crashed meanwhile

    churner = asyncio.ensure_future(churn())
    failed = 0
    one_hop = 0.0
    gap = periods * stabilize / max(1, lookup_count // 50)
    done = 0
    while done < lookup_count:
        res = await lookups(ring, 50, rng, concurrency=50)
        failed += res["failed_lookups"]
        one_hop += res["one_hop_fraction"] * 50
        done += 50
        await asyncio.sleep(gap)
    churner.cancel()
    await asyncio.gather(churner, return_exceptions=True)
    await ring.stop()
    return {"nodes": nodes, "rate_per_period": rate_per_period, "periods": periods,
            "lookups": done, "failed_per_10000": round(10_000 * failed / done, 2), **events,
            "location_cache": location_cache, "one_hop_fraction": round(one_hop / done, 4),
            "virtual_seconds": round(loop.time(), 3)}
