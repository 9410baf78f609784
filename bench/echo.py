"""The limit of one hop here: a bare grpc.aio unary echo between two processes.

`python -m bench.echo serve PORT` runs the server; `measure(...)` starts it, then times
sequential calls and calls with 16 in flight from this process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from bench.common import free_port, percentile, wait_port

METHOD = "/bench.Echo/Echo"


async def _serve(port: int) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers([handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _measure(address: str, sequential: int, concurrent: int, in_flight: int
                   ) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(METHOD)
        payload = b"x" * 64
        for _ in range(50):  # warm up
            await call(payload)
        times = []
        for _ in range(sequential):
            t0 = time.perf_counter()
            await call(payload)
            times.append(time.perf_counter() - t0)
        left = concurrent

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await call(payload)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        rate = concurrent / (time.perf_counter() - t0)
    return {"p50_ms": 1000 * percentile(times, 50), "p99_ms": 1000 * percentile(times, 99),
            "calls_per_s": rate}


def measure(sequential: int = 2000, concurrent: int = 4000, in_flight: int = 16
            ) -> dict[str, float]:
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen([sys.executable, "-m", "bench.echo", "serve", str(port)], cwd=root)
    try:
        wait_port(port)
        return asyncio.run(_measure(f"127.0.0.1:{port}", sequential, concurrent, in_flight))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(_serve(int(sys.argv[2])))
