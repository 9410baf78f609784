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
