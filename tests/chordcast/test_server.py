"""The node as a gRPC service: health (SERVING only once in a ring) and server reflection."""

from __future__ import annotations

import socket
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from chordcast.localring import LocalRing

pytestmark = pytest.mark.slow


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
