"""The peer DHT: PyPI `kademlia` 2.2.3 (k=20, alpha=3), N nodes in 2 processes on loopback.

Runs in its own venv (bench/.venv-kademlia, made by `make bench`); it imports nothing of ours.
`python peer_kademlia.py measure N GETS IN_FLIGHT` prints one JSON line: gets p50/p99
(sequential) and gets/s with IN_FLIGHT in flight, from the measuring process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import subprocess
import sys
import time

from kademlia.network import Server
from kademlia.storage import ForgetfulStorage


class _Keeps_nothing(ForgetfulStorage):
    """The querying node holds no values, so every get is a real network lookup (else, with
    k=20 of 32 nodes holding each value, most gets would be answered from local memory)."""

    def __setitem__(self, key: bytes, value: object) -> None:
        pass


def _ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def _start(ports: list[int], seed: int | None) -> list[Server]:
    servers = []
    for port in ports:
        server = Server(ksize=20, alpha=3)
        await server.listen(port, interface="127.0.0.1")
        if seed is not None and port != seed:
            await server.bootstrap([("127.0.0.1", seed)])
        servers.append(server)
    return servers


async def _host(ports: list[int], seed: int) -> None:
    await _start(ports, seed)
    print("ready", flush=True)
    await asyncio.Event().wait()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _measure(n: int, gets: int, in_flight: int) -> dict[str, float]:
    ports = _ports(n)
    mine, theirs = ports[: n // 2], ports[n // 2:]
    servers = await _start(mine, mine[0])
    other = subprocess.Popen([sys.executable, __file__, "host", str(mine[0]),  # noqa: ASYNC220
                              *map(str, theirs)], stdout=subprocess.PIPE)
    try:
        assert other.stdout is not None
        await asyncio.get_running_loop().run_in_executor(None, other.stdout.readline)
        for s in servers:  # refresh routing tables now that everyone is up
            await s.bootstrap([("127.0.0.1", theirs[0])])
        rng = random.Random(1)
        keys = [f"key-{i}" for i in range(200)]
        client = servers[0]
        client.storage = _Keeps_nothing()
        for k in keys:
            await rng.choice(servers[1:]).set(k, "v" * 100)
        times = []
        for _ in range(gets):
            t0 = time.perf_counter()
            found = await client.get(rng.choice(keys))
            times.append(time.perf_counter() - t0)
            assert found is not None
        left = gets

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.get(rng.choice(keys))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        rate = gets / (time.perf_counter() - t0)
    finally:
        other.terminate()
        other.wait(timeout=10)
    return {"nodes": n, "get_p50_ms": 1000 * _pct(times, 50),
            "get_p99_ms": 1000 * _pct(times, 99), "gets_per_s": rate}


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    if sys.argv[1] == "host":
        asyncio.run(_host([int(p) for p in sys.argv[3:]], int(sys.argv[2])))
    else:
        n, gets, in_flight = (int(a) for a in sys.argv[2:5])
        print(json.dumps(asyncio.run(_measure(n, gets, in_flight))))
