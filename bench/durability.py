"""What keeping data on disk costs: puts on a loopback ring of `chordcast node` processes
without and with `--data-dir` (SQLite, fsync per group commit), measured back to back in one
run: sequential put latency and puts/s with 16 in flight, through the ring-aware client (each
put goes to the key's owner, which waits for its replicas and its own disk)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.common import percentile, rate, timed
from chordcast import Client
from chordcast.localring import LocalRing


async def _puts(addresses: list[str], count: int, in_flight: int) -> dict[str, float]:
    async with Client(addresses) as client:
        value = b"v" * 100

        async def put(i: int) -> None:
            await client.put(f"durable-{i % 500}", value)

        await timed(put, 50)  # warm up channels and the client's view of the ring
        latencies = await timed(put, count)
        return {"put_p50_ms": 1000 * percentile(latencies, 50),
                "put_p99_ms": 1000 * percentile(latencies, 99),
                "puts_per_s": await rate(put, 2 * count, in_flight)}


def _ring(nodes: int, count: int, in_flight: int, data: Path | None) -> dict[str, float]:
    ring = LocalRing(extra_args=["--log-level", "warning"])
    try:
        for i in range(nodes):
            extra = ["--data-dir", str(data / f"node{i}")] if data is not None else []
            ring.wait_ready(ring.spawn(extra=extra))
        ring.wait_converged(timeout=60)
        return asyncio.run(_puts([n.address for n in ring.live()], count, in_flight))
    finally:
        ring.stop()


def measure(nodes: int = 4, count: int = 1000, in_flight: int = 16) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="chordcast-bench-data-") as tmp:
        return {"memory": _ring(nodes, count, in_flight, None),
                "data_dir": _ring(nodes, count, in_flight, Path(tmp))}
