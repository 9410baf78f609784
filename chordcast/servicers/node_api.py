"""The NodeApi gRPC service: what clients call on any node for the ring and the storage.

Maps protocol errors to gRPC status codes. Info always answers; the ring operations only once
the node has joined a ring (`ready`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import grpc

from chord.ids import IdError
from chord.kbr import LookupFailed
from chord.node import ChordNode
from chord.storage import Storage, StorageError, StorageUnavailable
from chord.wire import node_to_pb, nodes_to_pb
from chordcast.v1 import client_pb2 as cpb
from chordcast.v1 import client_pb2_grpc


class NodeApiServicer(client_pb2_grpc.NodeApiServicer):
    def __init__(self, node: ChordNode, storage: Storage, ready: Callable[[], bool]) -> None:
        self.node = node
        self.storage = storage
        self.ready = ready  # has the node joined a ring?

    async def _require_ring(self, context: grpc.aio.ServicerContext) -> None:
        if not self.ready():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node has not joined a ring yet")

    async def Info(self, request: cpb.NodeInfoRequest, context: grpc.aio.ServicerContext
                   ) -> cpb.NodeInfoReply:
        node, space = self.node, self.node.space
        st = node.state
        return cpb.NodeInfoReply(
            node=node_to_pb(space, node.me),
            predecessor=node_to_pb(space, st.predecessor) if st.predecessor else None,
            successors=nodes_to_pb(space, st.successors),
            fingers=nodes_to_pb(space, st.distinct_fingers()),
            keys=self.storage.owned_count(),
            replicas=self.storage.replica_count(),
            id_bits=space.bits,
        )

    async def Lookup(self, request: cpb.LookupRequest, context: grpc.aio.ServicerContext
                     ) -> cpb.LookupReply:
        await self._require_ring(context)
        node, space = self.node, self.node.space
        try:
            key = space.from_bytes(request.key_id) if request.key_id else space.hash_key(
                request.key)
        except IdError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            result = await (node.lookup_iterative(key) if request.iterative else node.lookup(key))
        except LookupFailed as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"lookup failed: {exc}")
        return cpb.LookupReply(
            key_id=space.to_bytes(key),
            owner=node_to_pb(space, result.owner),
            hops=result.hops,
            path=nodes_to_pb(space, result.path),
        )

    async def Put(self, request: cpb.PutRequest, context: grpc.aio.ServicerContext
                  ) -> cpb.PutReply:
        await self._require_ring(context)
        try:
            owner, version = await self.storage.put(request.key, request.value)
        except StorageError as exc:
            await _abort_storage(context, exc)
        return cpb.PutReply(owner=node_to_pb(self.node.space, owner), version=version)

    async def Get(self, request: cpb.GetRequest, context: grpc.aio.ServicerContext
                  ) -> cpb.GetReply:
        await self._require_ring(context)
        try:
            r = await self.storage.get(request.key)
        except StorageError as exc:
            await _abort_storage(context, exc)
        return cpb.GetReply(found=r.found, value=r.value, version=r.version,
                            owner=node_to_pb(self.node.space, r.owner))

    async def Delete(self, request: cpb.DeleteRequest, context: grpc.aio.ServicerContext
                     ) -> cpb.DeleteReply:
        await self._require_ring(context)
        try:
            found, owner = await self.storage.delete(request.key)
        except StorageError as exc:
            await _abort_storage(context, exc)
        return cpb.DeleteReply(found=found, owner=node_to_pb(self.node.space, owner))


async def _abort_storage(context: grpc.aio.ServicerContext, exc: StorageError) -> NoReturn:
    code = (grpc.StatusCode.UNAVAILABLE if isinstance(exc, StorageUnavailable)
            else grpc.StatusCode.INVALID_ARGUMENT)
    await context.abort(code, str(exc))
    raise AssertionError("abort returns only by raising")
