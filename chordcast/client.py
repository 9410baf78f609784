"""A typed, blocking client for a node's NodeApi (what the CLI and scripts use)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from chord.ids import IdSpace
from chord.storage import MAX_VALUE_BYTES
from chordcast.address import split_address
from chordcast.v1 import chord_pb2, client_pb2_grpc
from chordcast.v1 import client_pb2 as cpb

MESSAGE_LIMIT = 8 << 20


class ClientError(Exception):
    """One clear line for the user: what failed and why."""


@dataclass(frozen=True)
class Peer:
    id: str        # lowercase hex, zero-padded to the id space's width
    address: str


@dataclass(frozen=True)
class NodeInfo:
    node: Peer
    predecessor: Peer | None
    successors: list[Peer]
    fingers: list[Peer]
    keys: int
    replicas: int
    id_bits: int


@dataclass(frozen=True)
class Lookup:
    key: str
    key_id: str
    owner: Peer
    hops: int
    path: list[str]


@dataclass(frozen=True)
class Value:
    key: str
    found: bool
    value: bytes
    version: int
    owner: Peer


class NodeClient:
    def __init__(self, address: str, timeout: float = 10.0) -> None:
        try:
            split_address(address)
        except ValueError as exc:
            raise ClientError(str(exc)) from None
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            address,
            options=[("grpc.max_send_message_length", MESSAGE_LIMIT),
                     ("grpc.max_receive_message_length", MESSAGE_LIMIT)],
        )
        self._stub = client_pb2_grpc.NodeApiStub(self._channel)
        self._space: IdSpace | None = None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: object) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
            if code == grpc.StatusCode.UNAVAILABLE and "connect" in details:
                raise ClientError(f"cannot reach node at {self.address}: {details}") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ClientError(
                    f"node at {self.address} did not answer within {self.timeout:g}s"
                ) from None
            raise ClientError(f"{self.address}: {details} ({code.name})") from None

    def _peer(self, msg: chord_pb2.Node) -> Peer:
        return Peer(self.space.format(int.from_bytes(msg.id, "big")), msg.address)

    @property
    def space(self) -> IdSpace:
        if self._space is None:
            reply = self._call("Info", cpb.NodeInfoRequest())
            self._space = IdSpace(reply.id_bits)
        return self._space

    def info(self) -> NodeInfo:
        r = self._call("Info", cpb.NodeInfoRequest())
        self._space = IdSpace(r.id_bits)
        return NodeInfo(
            node=self._peer(r.node),
            predecessor=self._peer(r.predecessor) if r.HasField("predecessor") else None,
            successors=[self._peer(s) for s in r.successors],
            fingers=[self._peer(f) for f in r.fingers],
            keys=r.keys,
            replicas=r.replicas,
            id_bits=r.id_bits,
        )

    def lookup(self, key: str | None = None, key_id: str | None = None,
               iterative: bool = False) -> Lookup:
        req = cpb.LookupRequest(iterative=iterative)
        if key_id is not None:
            req.key_id = self.space.to_bytes(self.space.parse(key_id))
        else:
            req.key = key or ""
        r = self._call("Lookup", req)
        return Lookup(
            key=key if key_id is None else "",
            key_id=self.space.format(int.from_bytes(r.key_id, "big")),
            owner=self._peer(r.owner),
            hops=r.hops,
            path=[p.address for p in r.path],
        )

    def put(self, key: str, value: bytes) -> tuple[Peer, int]:
        if len(value) > MAX_VALUE_BYTES:
            raise ClientError(
                f"value of {len(value)} bytes is larger than the 1 MiB limit ({MAX_VALUE_BYTES})"
            )
        r = self._call("Put", cpb.PutRequest(key=key, value=value))
        return self._peer(r.owner), r.version

    def get(self, key: str) -> Value:
        r = self._call("Get", cpb.GetRequest(key=key))
        return Value(key, r.found, r.value, r.version, self._peer(r.owner))

    def delete(self, key: str) -> tuple[bool, Peer]:
        r = self._call("Delete", cpb.DeleteRequest(key=key))
        return r.found, self._peer(r.owner)
