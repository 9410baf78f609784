"""The node as a gRPC service: health (SERVING only once in a ring), server reflection, and
each caller held to its share of the calls served at once."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from chordcast.localring import LocalRing
from chordcast.v1 import client_pb2 as cpb
from chordcast.v1 import mcast_pb2 as mpb
from chordcast.v1.client_pb2_grpc import NodeApiStub
from chordcast.v1.mcast_pb2_grpc import MulticastStub
from tests.chordcast.ports import free_port

pytestmark = pytest.mark.slow


def status(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2)
        except grpc.RpcError as exc:
            return exc.code().name  # type: ignore[attr-defined]
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_health_is_serving_only_after_joining_and_reflection_lists_services() -> None:
    ring = LocalRing()
    address = f"127.0.0.1:{free_port()}"
    # Discovery with nobody to answer keeps the node out of a ring for a few seconds.
    node = ring.spawn(join=[], listen=address, extra=[
        "--discover", "broadcast", "--discovery-port", str(free_port(socket.SOCK_DGRAM)),
        "--discovery-window", "1.0"])
    try:
        seen = set()
        deadline = time.monotonic() + 15
        while not seen & {"NOT_SERVING"} and time.monotonic() < deadline:
            seen.add(status(address))
            time.sleep(0.05)
        assert "NOT_SERVING" in seen
        ring.wait_ready(node, timeout=30)
        for service in ("", "chordcast.v1.Chord", "chordcast.v1.NodeApi",
                        "chordcast.v1.Multicast"):
            assert status(address, service) == "SERVING"
        with grpc.insecure_channel(address) as ch:
            services = set(ProtoReflectionDescriptorDatabase(ch).get_services())
        assert {"chordcast.v1.Chord", "chordcast.v1.NodeApi", "chordcast.v1.Multicast",
                "grpc.health.v1.Health"} <= services
    finally:
        ring.stop()
    ring.check_logs()


def test_every_node_method_still_answers_as_a_plain_unary_call() -> None:
    """The client library talks over streams (Session, Link); thin clients and tools like
    grpcurl call the same methods one by one, with the same answers and status codes."""
    from chordcast.v1 import chord_pb2, chord_pb2_grpc, client_pb2, client_pb2_grpc

    ring = LocalRing()
    with ring.running(3):
        address = ring.live()[0].address
        with grpc.insecure_channel(address) as ch:
            api = client_pb2_grpc.NodeApiStub(ch)
            info = api.Info(client_pb2.NodeInfoRequest(), timeout=5)
            assert info.node.address == address and info.successors
            put = api.Put(client_pb2.PutRequest(key="k", value=b"v"), timeout=5)
            got = api.Get(client_pb2.GetRequest(key="k"), timeout=5)
            assert (got.found, got.value, got.version) == (True, b"v", put.version)
            looked = api.Lookup(client_pb2.LookupRequest(key="k"), timeout=5)
            assert looked.owner.address == got.owner.address == put.owner.address
            assert api.Delete(client_pb2.DeleteRequest(key="k"), timeout=5).found
            assert not api.Get(client_pb2.GetRequest(key="k"), timeout=5).found
            with pytest.raises(grpc.RpcError) as bad:
                api.Lookup(client_pb2.LookupRequest(key_id=b"\x01"), timeout=5)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            pong = chord_pb2_grpc.ChordStub(ch).Ping(chord_pb2.PingRequest(), timeout=5)
            assert pong.node.address == address
    ring.check_logs()


def test_one_caller_gets_only_its_share_of_the_calls_at_once() -> None:
    """--max-calls-per-peer: a caller (here one IP: no TLS) with that many calls and streams
    open gets RESOURCE_EXHAUSTED for the next, counted; once one ends it is served again."""
    ring = LocalRing()
    node = ring.spawn(join=[], extra=["--max-calls-per-peer", "3"])
    try:
        ring.wait_ready(node, timeout=30)

        async def go() -> None:
            async with grpc.aio.insecure_channel(node.address) as ch:
                inbox = MulticastStub(ch).Inbox
                streams = [inbox(mpb.InboxRequest()) for _ in range(3)]
                ping = NodeApiStub(ch).Info
                deadline = time.monotonic() + 10
                while True:  # the streams are served once each has started on the node
                    try:
                        await ping(cpb.NodeInfoRequest(), timeout=2)
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        assert "too many calls in flight from 127.0.0.1" in str(exc.details())
                        break
                    assert time.monotonic() < deadline, "the fourth call was served"
                    await asyncio.sleep(0.05)
                streams[0].cancel()
                deadline = time.monotonic() + 10
                while True:
                    try:
                        await ping(cpb.NodeInfoRequest(), timeout=2)
                        break
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        assert time.monotonic() < deadline, "a freed share was not given back"
                        await asyncio.sleep(0.05)
                for s in streams[1:]:
                    s.cancel()

        asyncio.run(go())
        text = urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5).read()
        counted = re.search(rb'chordcast_auth_refusals_total\{reason="peer_limit"\} (\S+)', text)
        assert counted is not None and float(counted.group(1)) >= 1
        # The standard series every exporter has, and the build.
        for series in (b"process_resident_memory_bytes ", b"python_info{",
                       b"python_gc_collections_total{", b"chordcast_build_info{grpcio="):
            assert series in text, series
    finally:
        ring.stop()
    ring.check_logs()
