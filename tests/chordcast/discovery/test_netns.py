"""Discovery across real network namespaces: four hosts on a private bridge find each other by
UDP broadcast (and by IP multicast) with no --join, form one ring, and route correctly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chord.ids import IdSpace
from chordcast.localring import LocalRing
from tests.chordcast.discovery.netns import Lan, NetnsUnavailable

pytestmark = pytest.mark.slow
SPACE = IdSpace(160)
CLIENT = str(Path(__file__).with_name("ns_client.py"))
PORT = 7000


@pytest.fixture
def lan() -> Iterator[Lan]:
    try:
        with Lan(4) as lan:
            yield lan
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")


def in_ns(lan: Lan, i: int, *args: str, timeout: float = 30) -> object:
    out = subprocess.run([*lan.prefix(i), sys.executable, CLIENT, *args], capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def oracle(addresses: list[str], key: str) -> str:
    ring = sorted((SPACE.hash_address(a), a) for a in addresses)
    k = SPACE.hash_key(key)
    return next((a for i, a in ring if i >= k), ring[0][1])


def wait_for_ring(lan: Lan, addresses: list[str], timeout: float = 30) -> None:
    """Walk the ring from inside the first namespace until it is the oracle's ring."""
    expected = sorted(addresses, key=SPACE.hash_address)
    successor = {a: expected[(i + 1) % len(expected)] for i, a in enumerate(expected)}
    deadline = time.monotonic() + timeout
    while True:
        walk = in_ns(lan, 0, "ring", addresses[0])
        if len(walk) == len(addresses) and all(successor.get(a) == s for a, s in walk):
            return
        assert time.monotonic() < deadline, f"ring did not form: {walk}"
        time.sleep(0.3)


@pytest.mark.parametrize("mode", ["broadcast", "multicast"])
def test_four_hosts_discover_each_other(lan: Lan, mode: str) -> None:
    ring = LocalRing(extra_args=["--discover", mode, "--discovery-window", "0.3",
                                 "--stabilize-interval", "0.2"])
    addresses = [f"{ip}:{PORT}" for ip in lan.addresses]
    try:
        # Three hosts start at once, none knowing any other.
        first = [ring.spawn(join=[], listen=addresses[i], prefix=lan.prefix(i))
                 for i in range(3)]
        for node in first:
            ring.wait_ready(node)
        wait_for_ring(lan, addresses[:3])

        # A newcomer arrives: time from its start to its first successful lookup.
        started = time.time()
        newcomer = ring.spawn(join=[], listen=addresses[3], prefix=lan.prefix(3))
        first_ok = in_ns(lan, 3, "first-lookup", addresses[3], "30",
                         oracle(addresses, "first-lookup-probe"))
        ring.wait_ready(newcomer)
        print(f"\n[{mode}] newcomer start -> first successful lookup: "
              f"{first_ok['t'] - started:.2f}s")  # type: ignore[index]
        wait_for_ring(lan, addresses)

        keys = [f"key-{i}" for i in range(25)]
        for i in range(4):
            owners = in_ns(lan, i, "lookups", addresses[i], *keys)
            assert owners == [oracle(addresses, k) for k in keys]
        assert "no ring answered" not in newcomer.log.read_text()
    finally:
        ring.stop()
    ring.check_logs()
