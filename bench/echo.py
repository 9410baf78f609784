"""The limit of one hop here: a bare grpc.aio unary echo between two processes.

`python -m bench.echo serve PORT` runs the server; `measure(...)` starts it, then times
sequential calls and calls with 16 in flight from this process.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc

from bench.common import free_port, percentile, rate, timed, wait_port

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

        async def once(_: int) -> None:
            await call(payload)

        times = await timed(once, sequential)
        calls_per_s = await rate(once, concurrent, in_flight)
    return {"p50_ms": 1000 * percentile(times, 50), "p99_ms": 1000 * percentile(times, 99),
            "calls_per_s": calls_per_s}


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
