"""`chordcast cluster`: many nodes in one process form one real gRPC ring with node processes,
answer lookups as the oracle does, and leave gracefully on SIGTERM."""

from __future__ import annotations

import bisect
import random
import signal
import time
from collections.abc import Callable

import pytest

from chordcast.blocking import BlockingClient
from chordcast.localring import LocalRing
from chordcast.results import ClientError

pytestmark = pytest.mark.slow

CLUSTER_NODES = 64
OTHER_NODES = 8
START_TIMEOUT = 40.0
EXIT_TIMEOUT = 20.0


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
    ring = LocalRing()
    started = ring.start_cluster(CLUSTER_NODES, timeout=START_TIMEOUT)
    proc, cluster, log = started.proc, started.addresses, started.log
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
        ring.stop()
    ring.check_logs()
    text = log.read_text()
    assert "Traceback" not in text, text[-2000:]
    assert "warning: graceful leave did not finish" not in text
