"""`chordcast cluster`: many nodes in one process form one real gRPC ring with node processes,
answer lookups as the oracle does, and leave gracefully on SIGTERM."""

from __future__ import annotations

import bisect
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chordcast.blocking import BlockingClient
from chordcast.localring import READY, LocalRing
from chordcast.results import ClientError

pytestmark = pytest.mark.slow

CLUSTER_NODES = 64
OTHER_NODES = 8
START_TIMEOUT = 40.0
EXIT_TIMEOUT = 20.0


def start_cluster(nodes: int, log: Path) -> tuple[subprocess.Popen[bytes], list[str]]:
    """A `chordcast cluster` process and its nodes' addresses, once it reports ready."""
    cmd = [sys.executable, "-m", "chordcast", "cluster", "--nodes", str(nodes),
           "--listen", "127.0.0.1:0"]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    out, deadline = b"", time.monotonic() + START_TIMEOUT
    ready = f"cluster of {nodes} nodes ready\n".encode()
    while not out.endswith(ready):
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
        chunk = os.read(proc.stdout.fileno(), 65536) if readable else b""
        if not chunk:
            proc.kill()
            proc.wait()
            pytest.fail(f"cluster not ready within {START_TIMEOUT:g}s: {out.decode()[-300:]}"
                        f"{log.read_text()[-1000:]}")
        out += chunk
    lines = out.decode().splitlines()
    assert len(lines) == nodes + 1
    addresses = []
    for line in lines[:-1]:
        match = READY.search(line)
        assert match is not None and line.startswith("chordcast node "), line
        addresses.append(match.group(1))
    assert len(set(addresses)) == nodes
    return proc, addresses


def oracle_order(ring: LocalRing, addresses: list[str]) -> list[str]:
    return [a for _, a in sorted((ring.space.hash_address(a), a) for a in addresses)]


def walk_matches(start: str, order: list[str]) -> bool:
    """The successor walk from `start` visits exactly the oracle's ring, in its order."""
    try:
        with BlockingClient(start, timeout=2.0) as client:
            walk = [info.node.address for info in client.ring()]
    except ClientError:
        return False
    at = order.index(start)
    return walk == order[at:] + order[:at]


def wait_for(check: Callable[[], bool], timeout: float, what: str,
             explain: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:g}s\n{explain()}")
        time.sleep(0.2)


def views(ring: LocalRing) -> str:
    """Every live node's predecessor and successors, in the oracle's order (for failures)."""
    lines = []
    order = oracle_order(ring, [n.address for n in ring.live()])
    with BlockingClient(order, timeout=2.0) as client:
        for address in order:
            try:
                info = client.node_info(address)
            except ClientError as exc:
                lines.append(f"{address}: {exc}")
                continue
            pred = info.predecessor.address if info.predecessor else None
            lines.append(f"{address}: pred {pred} succ {[s.address for s in info.successors]}")
    return "\n".join(lines)


def test_a_cluster_process_and_node_processes_form_one_ring_and_leave_cleanly() -> None:
    log = Path(tempfile.mkdtemp(prefix="chordcast-cluster-")) / "cluster.log"
    proc, cluster = start_cluster(CLUSTER_NODES, log)
    ring = LocalRing()
    try:
        others = [ring.spawn(join=random.sample(cluster, 2)) for _ in range(OTHER_NODES)]
        for node in others:
            ring.wait_ready(node)
        everyone = cluster + [n.address for n in others]
        order = oracle_order(ring, everyone)
        starts = [cluster[0], cluster[-1], others[0].address]
        wait_for(lambda: all(walk_matches(s, order) for s in starts), 30,
                 "the 72 nodes did not form the oracle's ring")

        ids = [ring.space.hash_address(a) for a in order]
        rng = random.Random(7)
        for via in [cluster[0], cluster[CLUSTER_NODES // 2], others[0].address,
                    others[-1].address]:
            with BlockingClient(via, timeout=5.0) as client:
                for _ in range(8):
                    key = rng.getrandbits(ring.space.bits)
                    owner = client.lookup(key_id=ring.space.format(key)).owner.address
                    assert owner == order[bisect.bisect_left(ids, key) % len(ids)]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=EXIT_TIMEOUT) == 0, log.read_text()[-2000:]
        wait_for(ring.converged, 30, "the other nodes did not re-form a correct ring",
                 lambda: views(ring))
        remaining = oracle_order(ring, [n.address for n in others])
        assert walk_matches(remaining[0], remaining)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        ring.stop()
    ring.check_logs()
    text = log.read_text()
    assert "Traceback" not in text, text[-2000:]
    assert "warning: graceful leave did not finish" not in text
