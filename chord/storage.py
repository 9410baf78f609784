"""DHT storage: put/get/delete as an application on KBR.

An item lives on the owner of SHA-1(key) and on the owner's next `replicas` successors. Writes
are ordered by a per-key version the owner assigns. Copies move by three mechanisms, each of
which would repair the others' misses: the owner pushes to new replicas and to a node that
joins in front of it (the `update` upcall), a leaving node hands its items to its successor, and
a periodic anti-entropy round compares digests with the replicas. Replicas are soft state: a
copy the owner stops confirming expires, so stale copies do not pile up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chord.ids import between, between_right
from chord.kbr import Forward, Kbr, LookupFailed, NeighborChange
from chord.ports import InvalidRequest, PeerUnavailable, RemoteError
from chord.state import NodeRef
from chordcast.v1 import storage_pb2 as spb

log = logging.getLogger(__name__)

APP = "dht"
MAX_VALUE_BYTES = 1 << 20
MAX_KEY_BYTES = 4096
BATCH_BYTES = 2 << 20  # stays well under gRPC's default 4 MiB message limit


class StorageError(Exception):
    """A request that cannot be served: bad key, value too large."""


class StorageUnavailable(StorageError):
    """The owner of the key could not be reached (the ring may be repairing: retry)."""


@dataclass
class Record:
    key: str
    key_id: int
    value: bytes
    version: int
    deleted: bool
    touched: float  # last time the owner confirmed this copy (our own clock)

    def to_pb(self) -> spb.Item:
        return spb.Item(key=self.key, value=self.value, version=self.version, deleted=self.deleted)


@dataclass(frozen=True)
class GetResult:
    found: bool
    value: bytes
    version: int
    owner: NodeRef


def check_key(key: str) -> None:
    if not key:
        raise StorageError("the key must not be empty")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise StorageError(f"the key is longer than {MAX_KEY_BYTES} bytes")


def check_value(value: bytes) -> None:
    if len(value) > MAX_VALUE_BYTES:
        raise StorageError(
            f"value of {len(value)} bytes is larger than the {MAX_VALUE_BYTES}-byte limit (1 MiB)"
        )


class Storage:
    name = APP

    def __init__(self, kbr: Kbr, replicas: int = 3, sync_interval: float = 5.0) -> None:
        self.kbr = kbr
        self.replicas = replicas
        self.sync_interval = sync_interval
        self.replica_ttl = 6 * sync_interval
        self.items: dict[str, Record] = {}
        # Requests by kind: routed to the key's owner, and sent straight between peers.
        self._at_owner: dict[str, Callable[[Any], Awaitable[spb.StorageReply]]] = {
            "put": self._owner_put, "get": self._owner_get, "delete": self._owner_delete}
        self._from_peer: dict[str, Callable[[Any], spb.StorageSyncReply]] = {
            "store": self._on_store, "digest": self._on_digest, "fetch": self._on_fetch}
        kbr.register(self)

    # ================================================================ client operations
    async def put(self, key: str, value: bytes) -> tuple[NodeRef, int]:
        check_key(key)
        check_value(value)
        reply = await self._request(key, spb.StorageRequest(put=spb.Item(key=key, value=value)))
        return reply[1], reply[0].item.version

    async def get(self, key: str) -> GetResult:
        check_key(key)
        reply, owner = await self._request(key, spb.StorageRequest(get=key))
        return GetResult(reply.found, reply.item.value, reply.item.version, owner)

    async def delete(self, key: str) -> tuple[bool, NodeRef]:
        check_key(key)
        reply, owner = await self._request(key, spb.StorageRequest(delete=key))
        return reply.found, owner

    async def _request(self, key: str, req: spb.StorageRequest) -> tuple[spb.StorageReply, NodeRef]:
        try:
            result = await self.kbr.route(
                self.kbr.space.hash_key(key), APP, req.SerializeToString()
            )
        except LookupFailed as exc:
            raise StorageUnavailable(f"could not reach the owner of {key!r}: {exc}") from None
        reply = spb.StorageReply.FromString(result.payload)
        if reply.error:
            raise StorageError(reply.error)
        return reply, result.owner

    # ================================================================ counts (for operators)
    def owned_count(self) -> int:
        return sum(1 for r in self.items.values() if not r.deleted and self.kbr.owns(r.key_id))

    def replica_count(self) -> int:
        return sum(1 for r in self.items.values() if not r.deleted) - self.owned_count()

    def stored_bytes(self) -> int:
        """Bytes of the values held here, owned and replicas."""
        return sum(len(r.value) for r in self.items.values())

    # ================================================================ upcalls
    async def forward(
        self, key: int, payload: bytes, prev_hop: NodeRef | None, next_hop: NodeRef
    ) -> Forward:
        return Forward(payload)

    async def deliver(self, key: int, payload: bytes, origin: NodeRef) -> bytes:
        req = spb.StorageRequest.FromString(payload)
        op = req.WhichOneof("op")
        handler = self._at_owner.get(op or "")
        if handler is None:
            raise InvalidRequest("empty storage request")
        try:
            reply = await handler(getattr(req, op or ""))
        except StorageError as exc:
            reply = spb.StorageReply(error=str(exc))
        return reply.SerializeToString()

    async def _owner_get(self, key: str) -> spb.StorageReply:
        rec = await self._local_or_repair(key)
        found = rec is not None and not rec.deleted
        return spb.StorageReply(found=found, item=rec.to_pb() if rec is not None and found
                                else None)

    async def _owner_put(self, item: spb.Item) -> spb.StorageReply:
        check_key(item.key)
        check_value(item.value)
        rec = await self._local_or_repair(item.key)
        version = (rec.version if rec else 0) + 1
        stored = self._store(item.key, item.value, version, deleted=False)
        await self._replicate([stored])
        return spb.StorageReply(found=rec is not None and not rec.deleted, item=stored.to_pb())

    async def _owner_delete(self, key: str) -> spb.StorageReply:
        check_key(key)
        rec = await self._local_or_repair(key)
        if rec is None or rec.deleted:
            return spb.StorageReply(found=False)
        # A tombstone, so an old copy on a replica cannot bring the value back.
        stored = self._store(key, b"", rec.version + 1, deleted=True)
        await self._replicate([stored])
        return spb.StorageReply(found=True, item=stored.to_pb())

    async def direct(self, payload: bytes, sender: NodeRef) -> bytes:
        msg = spb.StorageSync.FromString(payload)
        op = msg.WhichOneof("op")
        handler = self._from_peer.get(op or "")
        if handler is None:
            raise InvalidRequest("empty storage sync message")
        return handler(getattr(msg, op or "")).SerializeToString()

    def _on_store(self, store: spb.ItemBatch) -> spb.StorageSyncReply:
        for item in store.items:
            self._accept(item)
        return spb.StorageSyncReply()

    def _on_digest(self, digest: spb.Digest) -> spb.StorageSyncReply:
        """An owner confirms what we hold for it; we ask for what is missing or older."""
        wanted = spb.Digest()
        now = self.kbr.clock.now()
        for key, version in zip(digest.keys, digest.versions, strict=False):
            rec = self.items.get(key)
            if rec is not None and rec.version >= version:
                rec.touched = now
            else:
                wanted.keys.append(key)
        return spb.StorageSyncReply(wanted=wanted)

    def _on_fetch(self, key: str) -> spb.StorageSyncReply:
        rec = self.items.get(key)
        if rec is None:
            return spb.StorageSyncReply(found=False)
        return spb.StorageSyncReply(found=True, item=rec.to_pb())

    def update(self, change: NeighborChange) -> None:
        me = self.kbr.me.id
        old_pred, new_pred = change.old_predecessor, change.new_predecessor
        if new_pred is not None and (old_pred is None or between(new_pred.id, old_pred.id, me)):
            # A node joined in front of us: it owns (old_pred, new_pred] now. Send what we hold
            # outside our new range; we keep our copies, as its first replica.
            handover = [
                r for r in self.items.values() if not between_right(r.key_id, new_pred.id, me)
            ]
            if handover:
                self.kbr.spawn(self._push(new_pred, handover))
        old_reps = {n.id for n in change.old_successors[: self.replicas]}
        fresh = [n for n in change.new_successors[: self.replicas] if n.id not in old_reps]
        if fresh:
            owned = self._owned()
            if owned:
                for node in fresh:
                    self.kbr.spawn(self._push(node, owned))

    async def leaving(self) -> None:
        _, successors = self.kbr.neighbors()
        owned = [r for r in self.items.values() if self.kbr.owns(r.key_id)] or list(
            self.items.values()
        )
        for node in successors[:1]:
            await self._push(node, owned)

    # ================================================================ maintenance
    def start(self) -> None:
        self.kbr.spawn(self._maintain())

    async def _maintain(self) -> None:
        while True:
            await self.kbr.clock.sleep(self.sync_interval)
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("storage anti-entropy round failed")

    async def sync_once(self) -> None:
        """Confirm our items with our replicas (sending what they lack) and expire copies that
        their owner no longer confirms."""
        owned = self._owned()
        if owned:
            digest = spb.StorageSync(
                digest=spb.Digest(keys=[r.key for r in owned], versions=[r.version for r in owned])
            ).SerializeToString()
            by_key = {r.key: r for r in owned}
            for node in self.kbr.replica_set(self.replicas):
                try:
                    reply = spb.StorageSyncReply.FromString(await self.kbr.send(node, APP, digest))
                except (PeerUnavailable, RemoteError):
                    continue
                wanted = [by_key[k] for k in reply.wanted.keys if k in by_key]
                if wanted:
                    await self._push(node, wanted)
        pred, _ = self.kbr.neighbors()
        if pred is None:
            return  # we cannot tell what we own: expire nothing
        cutoff = self.kbr.clock.now() - self.replica_ttl
        for key in [k for k, r in self.items.items() if not self.kbr.owns(r.key_id)
                    and r.touched < cutoff]:
            del self.items[key]

    # ================================================================ internals
    def _owned(self) -> list[Record]:
        pred, _ = self.kbr.neighbors()
        if pred is None and self.kbr.neighbors()[1]:
            return []
        return [r for r in self.items.values() if self.kbr.owns(r.key_id)]

    def _store(self, key: str, value: bytes, version: int, deleted: bool) -> Record:
        rec = Record(key, self.kbr.space.hash_key(key), value, version, deleted,
                     self.kbr.clock.now())
        self.items[key] = rec
        return rec

    def _accept(self, item: spb.Item) -> None:
        """Take a copy from another node if it is newer than ours (equal: just confirm ours)."""
        if not item.key or len(item.value) > MAX_VALUE_BYTES:
            raise InvalidRequest("malformed item")
        rec = self.items.get(item.key)
        if rec is None or item.version > rec.version:
            self._store(item.key, item.value, item.version, item.deleted)
        elif item.version == rec.version:
            rec.touched = self.kbr.clock.now()

    async def _local_or_repair(self, key: str) -> Record | None:
        """Our copy, or (when a join or a crash left us without one) the newest replica's."""
        rec = self.items.get(key)
        if rec is not None:
            return rec
        fetch = spb.StorageSync(fetch=key).SerializeToString()
        best: spb.Item | None = None
        for node in self.kbr.replica_set(self.replicas):
            try:
                reply = spb.StorageSyncReply.FromString(await self.kbr.send(node, APP, fetch))
            except (PeerUnavailable, RemoteError):
                continue
            if reply.found and (best is None or reply.item.version > best.version):
                best = reply.item
        if best is None:
            return None
        self._accept(best)
        return self.items[key]

    async def _replicate(self, records: list[Record]) -> None:
        await asyncio.gather(
            *(self._push(n, records) for n in self.kbr.replica_set(self.replicas))
        )

    async def _push(self, node: NodeRef, records: list[Record]) -> None:
        """Send records to node in batches under the message size limit; failures are left to
        the next anti-entropy round."""
        batch: list[spb.Item] = []
        size = 0
        for rec in [*records, None]:
            if rec is not None:
                batch.append(rec.to_pb())
                size += len(rec.value) + len(rec.key) + 32
            if batch and (rec is None or size >= BATCH_BYTES):
                msg = spb.StorageSync(store=spb.ItemBatch(items=batch)).SerializeToString()
                batch, size = [], 0
                try:
                    await self.kbr.send(node, APP, msg)
                except (PeerUnavailable, RemoteError) as exc:
                    log.debug("push to %s failed: %s", node.address, exc)
                    return
