"""Hostile input through real gRPC: every method of every service a node serves (Chord,
NodeApi, Multicast; unary calls, frames on the Link and Session streams, the Join stream) gets
malformed bytes and random well-formed messages (hypothesis). A node must answer each with a
status that says what was wrong — never UNKNOWN or INTERNAL, which mean a handler crashed —
keep serving valid requests, log no traceback, and keep its memory bounded.

The nodes run as users run them (`chordcast node`, metrics on), without TLS: the worst case,
where anyone reaching the port may call anything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chordcast.blocking import BlockingClient
from chordcast.localring import LocalRing
from chordcast.v1 import chord_pb2, client_pb2, link_pb2, mcast_pb2, storage_pb2

pytestmark = pytest.mark.slow

SERVICES = [chord_pb2.DESCRIPTOR.services_by_name["Chord"],
            client_pb2.DESCRIPTOR.services_by_name["NodeApi"],
            mcast_pb2.DESCRIPTOR.services_by_name["Multicast"]]
UNARY = [(f"/{s.full_name}/{m.name}", m) for s in SERVICES for m in s.methods
         if not m.client_streaming and not m.server_streaming]
SESSIONS = {"/chordcast.v1.Chord/Link": SERVICES[0], "/chordcast.v1.NodeApi/Session": SERVICES[1],
            "/chordcast.v1.Multicast/Session": SERVICES[2]}
# A handler that crashed, or a reply that could not be built: never an answer to bad input.
CRASHED = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
RSS_GROWTH_MIB = 64
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

_SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True),
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 20),
    FieldDescriptor.TYPE_STRING: st.one_of(
        st.text(max_size=40), st.sampled_from(["127.0.0.1:1", "[::1]:0", "g", "scribe",
                                               "x" * 300, "host:99999", ":"])),
    FieldDescriptor.TYPE_BYTES: st.one_of(st.binary(max_size=40), st.binary(min_size=20,
                                                                            max_size=20)),
}


def message(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Random field values for a message type (nested ones too, a few levels deep)."""
    fields = {}
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            one: Any = message(f.message_type, depth + 1)
        else:
            one = _SCALARS.get(f.type, st.none())
        fields[f.name] = st.lists(one, max_size=4) if f.is_repeated else one
    return st.fixed_dictionaries({}, optional=fields)


def build(desc: Descriptor, values: dict[str, Any]) -> Message:
    cls = _class(desc)
    msg = cls()
    for name, value in values.items():
        f = desc.fields_by_name[name]
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if f.is_repeated:
                for v in value:
                    getattr(msg, name).add().CopyFrom(build(f.message_type, v))
            else:
                getattr(msg, name).CopyFrom(build(f.message_type, value))
        elif f.is_repeated:
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg


def _class(desc: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


def body(method: Any) -> st.SearchStrategy[bytes]:
    """Malformed bytes, or a random well-formed request of the method's type."""
    structured = message(method.input_type).map(
        lambda v: build(method.input_type, v).SerializeToString())
    return st.one_of(st.binary(max_size=300), structured)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Target:
    """The ring under fuzzing, a channel to its first node, and that node's memory before
    anything was sent to it (the last test compares)."""

    ring: LocalRing
    channel: grpc.Channel
    rss_before: float


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    ring = LocalRing()
    with ring.running(2):
        node = ring.live()[0]
        channel = grpc.insecure_channel(node.address)
        try:
            yield Target(ring, channel, rss_mib(node.proc.pid))
        finally:
            channel.close()


def _unary(channel: grpc.Channel, path: str, payload: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        call(payload, timeout=3)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]


@FUZZ
@given(data=st.data())
def test_every_unary_method_answers_bad_input_with_a_status(
        target: Target, data: st.DataObject) -> None:
    channel = target.channel
    path, method = data.draw(st.sampled_from(UNARY))
    payload = data.draw(body(method))
    code = _unary(channel, path, payload)
    assert code not in CRASHED, (path, payload[:80], code)


@FUZZ
@given(data=st.data())
def test_every_stream_answers_bad_frames_with_a_status(
        target: Target, data: st.DataObject) -> None:
    channel = target.channel
    path = data.draw(st.sampled_from(sorted(SESSIONS)))
    service = SESSIONS[path]
    frames = []
    for i in range(data.draw(st.integers(1, 4))):
        m = data.draw(st.sampled_from(list(service.methods)))
        name = data.draw(st.one_of(st.just(m.name), st.text(max_size=12)))
        frames.append(link_pb2.Frame(id=data.draw(st.integers(0, 5)) or i + 1, method=name,
                                     body=data.draw(body(m))))
    stream = channel.stream_stream(path, request_serializer=link_pb2.Frames.SerializeToString,
                                   response_deserializer=link_pb2.Frames.FromString)
    answers = stream(iter([link_pb2.Frames(frames=frames)]), timeout=5)
    try:
        for reply in answers:
            for frame in reply.frames:
                assert grpc.StatusCode.UNKNOWN.value[0] != frame.code, (path, frame.detail)
                assert grpc.StatusCode.INTERNAL.value[0] != frame.code, (path, frame.detail)
    except grpc.RpcError as exc:
        assert exc.code() not in CRASHED, (path, exc.details())


# What the applications on KBR take from peers, inside AppCall, Route, Resolve and Spread.
APP_MESSAGES = {"scribe": [mcast_pb2.McastDirect, mcast_pb2.McastRouted],
                "storage": [storage_pb2.StorageSync, storage_pb2.StorageRequest]}


@FUZZ
@given(data=st.data())
def test_application_messages_from_a_peer_are_refused_not_crashed_on(
        target: Target, data: st.DataObject) -> None:
    ring, channel = target.ring, target.channel
    app = data.draw(st.sampled_from(sorted(APP_MESSAGES)))
    cls = data.draw(st.sampled_from(APP_MESSAGES[app]))
    payload = data.draw(st.one_of(st.binary(max_size=200), message(cls.DESCRIPTOR).map(
        lambda v: build(cls.DESCRIPTOR, v).SerializeToString())))
    peer = chord_pb2.Node(address=data.draw(st.sampled_from(
        [n.address for n in ring.live()] + ["127.0.0.1:1", "", "garbage"])))
    key = data.draw(st.binary(min_size=20, max_size=20))
    requests = {
        "AppCall": chord_pb2.AppCallRequest(app=app, payload=payload, sender=peer),
        "Resolve": chord_pb2.ResolveRequest(key=key, app=app, payload=payload, origin=peer),
        "Spread": chord_pb2.SpreadRequest(app=app, payload=payload, origin=peer, limit=key),
        "Route": chord_pb2.RouteRequest(request_id=1, key=key, app=app, payload=payload,
                                        origin=peer, budget_ms=500),
    }
    method = data.draw(st.sampled_from(sorted(requests)))
    code = _unary(channel, f"/chordcast.v1.Chord/{method}",
                  requests[method].SerializeToString())
    assert code not in CRASHED, (method, app, payload[:80], code)


@FUZZ
@given(values=message(mcast_pb2.JoinGroupRequest.DESCRIPTOR))
def test_the_join_stream_answers_bad_requests_with_a_status(
        target: Target, values: dict[str, Any]) -> None:
    channel = target.channel
    request = build(mcast_pb2.JoinGroupRequest.DESCRIPTOR, values).SerializeToString()
    join = channel.unary_stream("/chordcast.v1.Multicast/Join", request_serializer=None,
                                response_deserializer=None)
    events = join(request, timeout=2)
    try:
        for _ in events:
            break
    except grpc.RpcError as exc:
        assert exc.code() not in CRASHED, exc.details()
    finally:
        events.cancel()


def test_after_the_fuzzing_the_node_still_serves_and_its_memory_is_bounded(
        target: Target) -> None:
    ring, channel = target.ring, target.channel
    node = ring.live()[0]
    payload = b"\x0a\x05" + b"x" * 5  # a few hundred more bad calls of every kind
    for _ in range(3):
        for path, _method in UNARY:
            assert _unary(channel, path, payload) not in CRASHED
    deadline = time.monotonic() + 30
    while True:  # whatever the fuzzing did to its ring state, it repairs and serves again
        try:
            with BlockingClient([n.address for n in ring.live()], timeout=3) as client:
                client.put("after-fuzz", b"ok")
                assert client.get("after-fuzz").value == b"ok"
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert rss_mib(node.proc.pid) - target.rss_before < RSS_GROWTH_MIB
    assert not ring.tracebacks(), ring.tracebacks()
