"""Discovery over real UDP on loopback: broadcasts go to 127.255.255.255 only (derived from
loopback's own netmask), never to another network."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chord.ids import IdSpace
from chordcast.discovery.logic import Identity
from chordcast.discovery.net import interface_for
from chordcast.discovery.packet import NONCE_LEN, Codec
from chordcast.discovery.service import DiscoveryConfig, DiscoveryListener, probe
from chordcast.localring import LocalRing
from tests.chordcast.discovery.test_packet import hostile

SPACE = IdSpace(160)
LOOPBACK = interface_for("127.0.0.1")


def test_loopback_broadcast_address_is_derived_from_its_netmask() -> None:
    assert LOOPBACK.name == "lo" and LOOPBACK.broadcast == "127.255.255.255"
    assert DiscoveryConfig().target(LOOPBACK) == "127.255.255.255"


def identity(address: str) -> Identity:
    return Identity(address, SPACE.hash_address(address), 1, True)


async def test_listeners_share_the_port_and_all_answer(udp_port: int) -> None:
    config = DiscoveryConfig(port=udp_port, window=0.3)
    listeners = [DiscoveryListener(config, SPACE, LOOPBACK,
                                   lambda a=f"127.0.0.1:{7000 + i}": identity(a))
                 for i in range(3)]
    for listener in listeners:
        await listener.start()
    try:
        peers = await probe(config, SPACE, LOOPBACK, identity("127.0.0.1:6999"))
        assert [p.address for p in peers] == ["127.0.0.1:7000", "127.0.0.1:7001",
                                              "127.0.0.1:7002"]
        for listener in listeners:
            assert "127.0.0.1:6999" in listener.responder.view
    finally:
        for listener in listeners:
            listener.close()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(hostile, min_size=1, max_size=8))
def test_live_listener_survives_hostile_packets(udp_port: int, packets: list[bytes]) -> None:
    async def scenario() -> None:
        config = DiscoveryConfig(port=udp_port, window=0.2)
        listener = DiscoveryListener(config, SPACE, LOOPBACK, lambda: identity("127.0.0.1:7100"))
        await listener.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                s.bind(("127.0.0.1", 0))
                for data in packets:
                    if len(data) <= 65000:
                        s.sendto(data, (LOOPBACK.broadcast, udp_port))
            peers = await probe(config, SPACE, LOOPBACK, None)
            assert [p.address for p in peers] == ["127.0.0.1:7100"]
            r = listener.responder
            assert r.received >= len(packets) and r.answered >= 1
        finally:
            listener.close()

    asyncio.run(scenario())


async def test_cluster_key_unauthenticated_and_replayed_get_no_answer(udp_port: int) -> None:
    key = os.urandom(32)
    config = DiscoveryConfig(port=udp_port, window=0.3, key=key)
    listener = DiscoveryListener(config, SPACE, LOOPBACK, lambda: identity("127.0.0.1:7200"))
    await listener.start()
    try:
        assert await probe(DiscoveryConfig(port=udp_port, window=0.3), SPACE, LOOPBACK,
                           None) == []
        assert await probe(DiscoveryConfig(port=udp_port, window=0.3, key=os.urandom(32)),
                           SPACE, LOOPBACK, None) == []
        assert [p.address for p in await probe(config, SPACE, LOOPBACK, None)] == [
            "127.0.0.1:7200"]
        # Replay a captured, valid, signed query: no second answer.
        from chordcast.discovery.logic import make_message
        from chordcast.v1.discovery_pb2 import DiscoveryMessage

        packet = Codec(key).encode(make_message(DiscoveryMessage.QUERY, None, SPACE,
                                                time.time(), os.urandom(NONCE_LEN)))
        def send_twice() -> int:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                s.bind(("127.0.0.1", 0))
                s.settimeout(1.0)
                answers = 0
                for _ in range(2):
                    s.sendto(packet, (LOOPBACK.broadcast, udp_port))
                    try:
                        s.recvfrom(2048)
                        answers += 1
                    except TimeoutError:
                        pass
                return answers

        # In a thread: the listener answers on this test's event loop.
        answers = await asyncio.to_thread(send_twice)
        assert answers == 1
        dropped = listener.responder.dropped
        assert dropped["unauthenticated"] >= 1 and dropped["bad_mac"] >= 1
        assert dropped["replayed"] == 1
    finally:
        listener.close()


def test_node_processes_without_join_form_one_ring(udp_port: int) -> None:
    """Three `chordcast node` processes started at once with no --join share the discovery
    port, find each other by broadcast and build one ring; `chordcast discover` sees them."""
    ring = LocalRing(extra_args=["--discover", "broadcast", "--discovery-port", str(udp_port),
                                 "--discovery-window", "0.3", "--stabilize-interval", "0.2"])
    try:
        nodes = [ring.spawn(join=[]) for _ in range(3)]
        for node in nodes:
            ring.wait_ready(node)
        ring.wait_converged(timeout=30)
        out = subprocess.run(
            [sys.executable, "-m", "chordcast", "discover", "--discovery-port", str(udp_port),
             "--discovery-window", "0.5", "--json"],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        found = json.loads(out.stdout)["nodes"]
        assert sorted(n["address"] for n in found) == sorted(n.address for n in nodes)
        assert all(n["in_ring"] and n["ring_size"] == 3 for n in found)
    finally:
        ring.stop()
    ring.check_logs()


def test_join_dns_expands_every_record(udp_port: int) -> None:
    """`--join-dns localhost:PORT` resolves to 127.0.0.1 and ::1; the one that answers wins."""
    ring = LocalRing()
    try:
        first = ring.start_node(join=[])
        port = first.address.rsplit(":", 1)[1]
        second = ring.wait_ready(ring.spawn(join=[], extra=["--join-dns", f"localhost:{port}",
                                                            "--require-join"]))
        assert second.alive
        ring.wait_converged(timeout=30)
        lonely = ring.spawn(join=[], extra=["--join-dns", "no-such-host.invalid:1",
                                            "--require-join"])
        assert lonely.proc.wait(timeout=30) == 1
        assert "no address found" in lonely.log.read_text()
    finally:
        ring.stop()
    ring.check_logs()


def test_require_join_without_any_answer_is_a_clear_error(udp_port: int) -> None:
    ring = LocalRing(extra_args=["--discover", "broadcast", "--discovery-port", str(udp_port),
                                 "--discovery-window", "0.1", "--require-join"])
    try:
        lonely = ring.spawn(join=[])
        assert lonely.proc.wait(timeout=30) == 1
        assert "no ring answered broadcast discovery" in lonely.log.read_text()
    finally:
        ring.stop()
    ring.check_logs()
