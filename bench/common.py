"""Helpers every benchmark shares: percentiles, free ports, CPU and memory of processes."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_cpu_percent(pids: list[int], seconds: float) -> float:
    """Mean CPU of the processes over `seconds`, in percent of one core each."""
    before = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(seconds)
    used = sum(cpu_seconds(p) - b for p, b in zip(pids, before, strict=True))
    return 100 * used / (time.monotonic() - t0) / max(1, len(pids))


async def timed(op: Callable[[int], Awaitable[Any]], count: int) -> list[float]:
    """Seconds each of `count` sequential calls of `op` took."""
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        await op(i)
        times.append(time.perf_counter() - t0)
    return times


async def rate(op: Callable[[int], Awaitable[Any]], count: int, in_flight: int) -> float:
    """Calls per second of `count` calls of `op`, `in_flight` at a time."""
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await op(left)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return count / (time.perf_counter() - t0)
