"""The NodeApi gRPC service: what clients call on any node for the ring and the storage.

Each method is one coroutine from request to reply that refuses with `link.Refusal`; it is
served both as a unary call (thin clients, the CLI, grpcurl) and as frames on a Session stream
(the client library). Info always answers; the ring operations only once the node has joined a
ring (`ready`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc

from chord.ids import IdError
from chord.kbr import LookupFailed
from chord.node import ChordNode
from chord.storage import Storage, StorageError, StorageFull, StorageUnavailable
from chord.wire import node_to_pb, nodes_to_pb
from chordcast import link
from chordcast.results import Lookup, Peer
from chordcast.transport import RpcObserver, served_by
from chordcast.v1 import client_pb2 as cpb
from chordcast.v1 import client_pb2_grpc

RECENT_LOOKUPS = 32


class NodeApiServicer(client_pb2_grpc.NodeApiServicer):
    def __init__(self, node: ChordNode, storage: Storage, ready: Callable[[], bool],
                 streams: link.Streams, observe: RpcObserver | None = None,
                 rpc_p99_ms: Callable[[], float] = lambda: 0.0) -> None:
        self.node = node
        self.rpc_p99_ms = rpc_p99_ms
        # The lookups clients made through this node, newest last (the live view draws
        # their paths): (wall time, the lookup).
        self.recent_lookups: deque[tuple[float, Lookup]] = deque(maxlen=RECENT_LOOKUPS)
        self.streams = streams
        self.storage = storage
        self.ready = ready  # has the node joined a ring?
        self.observe = observe
        self.methods: link.Methods = {
            "Info": (cpb.NodeInfoRequest, self.info),
            "Lookup": (cpb.LookupRequest, self.lookup),
            "Put": (cpb.PutRequest, self.put),
            "Get": (cpb.GetRequest, self.get),
            "Delete": (cpb.DeleteRequest, self.delete),
        }

    # -- the methods ------------------------------------------------------------------------
    def _require_ring(self) -> None:
        if not self.ready():
            raise link.Refusal(grpc.StatusCode.UNAVAILABLE, "node has not joined a ring yet")

    async def info(self, request: cpb.NodeInfoRequest) -> cpb.NodeInfoReply:
        node, space = self.node, self.node.space
        st = node.state
        return cpb.NodeInfoReply(
            node=node_to_pb(space, node.me),
            predecessor=node_to_pb(space, st.predecessor) if st.predecessor else None,
            successors=nodes_to_pb(space, st.successors),
            fingers=nodes_to_pb(space, st.distinct_fingers()),
            keys=self.storage.owned_count(),
            replicas=self.storage.replica_count(),
            id_bits=space.bits, rpc_p99_ms=self.rpc_p99_ms(),
        )

    async def lookup(self, request: cpb.LookupRequest) -> cpb.LookupReply:
        self._require_ring()
        node, space = self.node, self.node.space
        try:
            key = space.from_bytes(request.key_id) if request.key_id else space.hash_key(
                request.key)
        except IdError as exc:
            raise link.Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        try:
            result = await (node.lookup_iterative(key) if request.iterative else node.lookup(key))
        except LookupFailed as exc:
            raise link.Refusal(grpc.StatusCode.UNAVAILABLE, f"lookup failed: {exc}") from None
        self.recent_lookups.append((time.time(), Lookup(
            request.key, space.format(key), Peer(space.format(result.owner.id),
                                                 result.owner.address),
            result.hops, [n.address for n in result.path])))
        return cpb.LookupReply(
            key_id=space.to_bytes(key),
            owner=node_to_pb(space, result.owner),
            hops=result.hops,
            path=nodes_to_pb(space, result.path),
        )

    async def put(self, request: cpb.PutRequest) -> cpb.PutReply:
        self._require_ring()
        try:
            owner, version = await self.storage.put(request.key, request.value)
        except StorageError as exc:
            raise _storage_refusal(exc) from None
        return cpb.PutReply(owner=node_to_pb(self.node.space, owner), version=version)

    async def get(self, request: cpb.GetRequest) -> cpb.GetReply:
        self._require_ring()
        try:
            r = await self.storage.get(request.key)
        except StorageError as exc:
            raise _storage_refusal(exc) from None
        return cpb.GetReply(found=r.found, value=r.value, version=r.version,
                            owner=node_to_pb(self.node.space, r.owner))

    async def delete(self, request: cpb.DeleteRequest) -> cpb.DeleteReply:
        self._require_ring()
        try:
            found, owner = await self.storage.delete(request.key)
        except StorageError as exc:
            raise _storage_refusal(exc) from None
        return cpb.DeleteReply(found=found, owner=node_to_pb(self.node.space, owner))

    # -- as unary calls ---------------------------------------------------------------------
    async def Info(self, request: cpb.NodeInfoRequest, context: grpc.aio.ServicerContext
                   ) -> cpb.NodeInfoReply:
        return await link.unary(self.info, request, context)

    async def Lookup(self, request: cpb.LookupRequest, context: grpc.aio.ServicerContext
                     ) -> cpb.LookupReply:
        return await link.unary(self.lookup, request, context)

    async def Put(self, request: cpb.PutRequest, context: grpc.aio.ServicerContext
                  ) -> cpb.PutReply:
        return await link.unary(self.put, request, context)

    async def Get(self, request: cpb.GetRequest, context: grpc.aio.ServicerContext
                  ) -> cpb.GetReply:
        return await link.unary(self.get, request, context)

    async def Delete(self, request: cpb.DeleteRequest, context: grpc.aio.ServicerContext
                     ) -> cpb.DeleteReply:
        return await link.unary(self.delete, request, context)

    # -- as frames on a stream --------------------------------------------------------------
    async def Session(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self.streams.serve(context, link.dispatcher("NodeApi", self.methods),
                                 served_by(self.observe))


def _storage_refusal(exc: StorageError) -> link.Refusal:
    code = (grpc.StatusCode.UNAVAILABLE if isinstance(exc, StorageUnavailable)
            else grpc.StatusCode.RESOURCE_EXHAUSTED if isinstance(exc, StorageFull)
            else grpc.StatusCode.INVALID_ARGUMENT)
    return link.Refusal(code, str(exc))
