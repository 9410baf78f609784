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
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from chord.ids import IdSpace
from chord.memnet import MemoryNetwork, VirtualTimeLoop
from chord.node import LookupFailed, NodeConfig
from chord.ports import Observer
from chord.sim import SimRing

TRACE_TAIL = 40


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
                  progress: bool = False) -> dict[str, Any]:
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
        if progress and (done // concurrency) % 10 == 0:
            print(f"  {done}/{count} lookups", file=sys.stderr, flush=True)
    timeouts = (stats.counts["repaired_next_hop"] - before) if stats else 0
    return {
        "lookups": count,
        "hops_mean": round(statistics.mean(hops), 4) if hops else float("nan"),
        "hops_p1": percentile([float(h) for h in hops], 1),
        "hops_p99": percentile([float(h) for h in hops], 99),
        "correct_fraction": round(outcome["correct"] / count, 6),
        "failed_lookups": outcome["failed"] + outcome["wrong"],
        "timeouts_mean": round(timeouts / count, 4),
    }


def new_ring(nodes: int, seed: int, successors: int, stabilize: float, bits: int = 160,
             latency: Callable[[str, str, random.Random], float] | None = None,
             trace: bool = False, **kw: Any) -> SimRing:
    net = MemoryNetwork(seed=seed, latency=latency, copy_messages=False)
    if trace:
        net.trace = []
    config = NodeConfig(successors=successors, stabilize_interval=stabilize, rpc_timeout=0.5,
                        lookup_timeout=30.0, max_hops=256)
    return SimRing(space=IdSpace(bits), config=config, net=net, seed=seed,
                   with_storage=False, observer=SimStats(), **kw)


async def ring_experiment(nodes: int, seed: int, lookup_count: int, fail_fraction: float = 0.0,
                          successors: int | None = None, repair: bool = True,
                          stabilize: float = 1.0, progress: bool = False,
                          form: str = "joins") -> dict[str, Any]:
    """Form a ring (by joins, or form="stable": the oracle's stable base), optionally fail a
    fraction of it at once, let it repair (or, with repair=False, stop stabilization as in the
    Chord paper's failure experiment), then look up."""
    r = successors or max(3, 2 * math.ceil(math.log2(max(nodes, 2))))
    rng = random.Random(seed)
    ring = new_ring(nodes, seed, r, stabilize, trace=True)
    loop = asyncio.get_running_loop()
    join_failures = 0
    if form == "joins":
        def report(n: int) -> None:
            assert ring.net.trace is not None
            del ring.net.trace[:-TRACE_TAIL]  # keep memory flat; the tail is what replays
            check(ring, seed)
            if progress:
                print(f"  {n} nodes joined (t={loop.time():.0f}s)", file=sys.stderr, flush=True)

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
    result = await lookups(ring, lookup_count, rng, progress=progress)
    await ring.stop()
    return {"nodes": nodes, "successors": r, "fail_fraction": fail_fraction,
            "form": form, "formed_virtual_seconds": round(formed_at, 3),
            "join_failures": join_failures,
            # check() raises on the first violation, so a finished run had none
            "repair": repair, **result, "invariant_violations": 0,
            "messages": ring.net.messages,
            "virtual_seconds": round(asyncio.get_running_loop().time(), 3)}


async def churn_experiment(nodes: int, seed: int, rate_per_period: float, periods: int,
                           lookup_count: int, stabilize: float = 30.0) -> dict[str, Any]:
    """Poisson joins and crashes (half each) at `rate_per_period` events per stabilization
    period, with lookups spread over the run; failed = no answer or a wrong owner."""
    rng = random.Random(seed)
    r = 2 * math.ceil(math.log2(nodes))
    ring = new_ring(nodes, seed, r, stabilize)
    ring.build_stable(nodes)
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
    gap = periods * stabilize / max(1, lookup_count // 50)
    done = 0
    while done < lookup_count:
        res = await lookups(ring, 50, rng, concurrency=50)
        failed += res["failed_lookups"]
        done += 50
        await asyncio.sleep(gap)
    churner.cancel()
    await asyncio.gather(churner, return_exceptions=True)
    await ring.stop()
    return {"nodes": nodes, "rate_per_period": rate_per_period, "periods": periods,
            "lookups": done, "failed_per_10000": round(10_000 * failed / done, 2), **events,
            "virtual_seconds": round(loop.time(), 3)}


async def mcast_experiment(nodes: int, seed: int, groups: int, sizes: list[int],
                           messages: int, crash_fraction: float = 0.0,
                           progress: bool = False, parent_timeout: float = 30.0
                           ) -> dict[str, Any]:
    """Scribe: `groups` groups with the given member counts (one member per node), messages
    from random senders, optionally crashing a fraction of the forwarders while they flow."""
    from mcast.scribe import McastError, Scribe, ScribeConfig
    from mcast.tree import MESSAGE

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
        if progress:
            print(f"  {min(start + 1000, len(order))}/{len(order)} members joined",
                  file=sys.stderr, flush=True)
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
