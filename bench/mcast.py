"""Multicast on a loopback ring of 8 `chordcast node` processes: one group, 7 subscribers
attached through the client library to 7 different nodes, a sender attached to the 8th,
1 KiB messages (the setup of the figures in issue 12).

- back-to-back: each send right after the previous message reached all 7; all-7 latency;
- offered load: sends started at a fixed rate, up to 64 in flight; the rate at which messages
  reached all 7, with loss, duplicates and order checked at every member;
- CPU per delivery over every process (the nodes and this one) during the offered load.
"""

from __future__ import annotations

import asyncio
import os
import time

from bench.common import cpu_seconds, percentile
from chordcast import Client, Subscription
from chordcast.localring import LocalRing

MEMBERS = 7
PAYLOAD = b"x" * 1024
DRAIN_TIMEOUT = 30.0


class Members:
    """What the 7 members received: arrival times per sequence number, duplicates, and
    whether each member's stream stayed in order without holes."""

    def __init__(self, subs: list[Subscription]) -> None:
        self.subs = subs
        self.arrivals: dict[int, list[float]] = {}
        self.duplicates = 0
        self.out_of_order = 0
        self.complete: dict[int, asyncio.Event] = {}
        self._last = [0] * len(subs)

    def waiter(self, seq: int) -> asyncio.Event:
        event = self.complete.setdefault(seq, asyncio.Event())
        if len(self.arrivals.get(seq, ())) == len(self.subs):
            event.set()
        return event

    async def read(self, i: int) -> None:
        async for m in self.subs[i]:
            now = time.perf_counter()
            if m.kind != "message":
                self.out_of_order += 1  # a gap: messages this member will never see
                continue
            if m.seq <= self._last[i]:
                self.duplicates += 1
                continue
            if m.seq != self._last[i] + 1 and self._last[i]:
                self.out_of_order += 1
            self._last[i] = m.seq
            times = self.arrivals.setdefault(m.seq, [])
            times.append(now)
            if len(times) == len(self.subs):
                self.waiter(m.seq).set()


async def _back_to_back(sender: Client, members: Members, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        seq = await sender.send("bench", PAYLOAD)
        await asyncio.wait_for(members.waiter(seq).wait(), DRAIN_TIMEOUT)
        latencies.append(max(members.arrivals[seq]) - started)
    return latencies


async def _offered(sender: Client, members: Members, rate: float, count: int,
                   in_flight: int) -> dict[str, float]:
    slots = asyncio.Semaphore(in_flight)
    seqs: list[int] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        try:
            seqs.append(await sender.send("bench", PAYLOAD))
        except Exception:
            failed += 1
        finally:
            slots.release()

    tasks = []
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.ensure_future(one()))
    offered = count / (time.perf_counter() - started)
    await asyncio.gather(*tasks)
    waits = [members.waiter(s).wait() for s in seqs]
    try:
        await asyncio.wait_for(asyncio.gather(*waits), DRAIN_TIMEOUT)
    except TimeoutError:
        pass
    done = [s for s in seqs if len(members.arrivals.get(s, ())) == MEMBERS]
    last = max((max(members.arrivals[s]) for s in done), default=started)
    return {"offered_per_s": offered, "sent": count, "acknowledged": len(seqs),
            "send_failures": failed, "lost": len(seqs) - len(done),
            "delivered_all_per_s": len(done) / max(1e-9, last - started)}


def measure(back_to_back: int = 200, rate: float = 1000.0, count: int = 3000,
            in_flight: int = 64) -> dict[str, float]:
    ring = LocalRing(extra_args=["--log-level", "warning"])

    async def run(addresses: list[str], pids: list[int]) -> dict[str, float]:
        sender = Client(addresses[MEMBERS])
        await sender.create("bench")
        clients = [Client(addresses[i]) for i in range(MEMBERS)]
        subs = [c.join("bench") for c in clients]
        for s in subs:
            await s.open()
        members = Members(subs)
        readers = [asyncio.ensure_future(members.read(i)) for i in range(MEMBERS)]
        for _ in range(20):  # warm up: channels, streams, the root's cache entry
            await _back_to_back(sender, members, 1)
        b2b = await _back_to_back(sender, members, back_to_back)
        me = os.getpid()
        cpu_before = sum(cpu_seconds(p) for p in [*pids, me])
        load = await _offered(sender, members, rate, count, in_flight)
        cpu = sum(cpu_seconds(p) for p in [*pids, me]) - cpu_before
        deliveries = (load["acknowledged"] - load["lost"]) * MEMBERS
        for r in readers:
            r.cancel()
        for c in [sender, *clients]:
            await c.close()
        return {"members": MEMBERS, "back_to_back": back_to_back,
                "b2b_p50_ms": 1000 * percentile(b2b, 50),
                "b2b_p99_ms": 1000 * percentile(b2b, 99),
                **load, "rate_target": rate, "in_flight": in_flight,
                "duplicates": members.duplicates, "out_of_order": members.out_of_order,
                "cpu_ms_per_delivery": 1000 * cpu / max(1, deliveries)}

    with ring.running(MEMBERS + 1):
        live = ring.live()
        return asyncio.run(run([n.address for n in live], [n.proc.pid for n in live]))
