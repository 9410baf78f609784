"""DHT storage: put/get/delete as an application on KBR.

An item lives on the owner of SHA-1(key) and on the owner's next `replicas` successors. Writes
are ordered by a per-key version the owner assigns: it serializes the writes of a key up to
the version (each gets a distinct one), then replicates to its successors in parallel and
answers with the version once they have it (or failed to answer). Copies are ranked by
(version, hash of the value), so even two nodes that both believed they owned a key (a join or
a crash in progress) cannot leave the replicas diverged: every node keeps the highest rank.

Copies move by three mechanisms, each of which would repair the others' misses: the owner
pushes to new replicas and to a node that joins in front of it (the `update` upcall), a leaving
node hands its items to its successor, and a periodic anti-entropy round compares digests with
the replicas (a replica holding a higher-ranked copy sends it back). Replicas are soft state: a
copy the owner stops confirming expires, so stale copies do not pile up. A node whose range
changed (its predecessor did) asks its replicas for each key, in parallel, before it first
serves or writes it again: a write the previous owner got to only some replicas is not lost.

With a data dir (the `Durable` port), every copy a node takes is on its disk before it says
so: the owner saves a write while the replicas save theirs, and answers once all are done, so
an acknowledged write survives the whole ring restarting. A restarted node starts from what
its disk holds and the same mechanisms bring it up to date (the newest copy wins). A delete
leaves a tombstone that outranks every older copy; the owner collects it after
`tombstone_ttl`, so a node must not come back with copies older than that (the node process
drops a data dir that has been away longer).

A small value rides in the routed request. A larger one is sent once: a small request routed
to the key finds the owner, then the value goes straight to it; a node that does not own the
key (any more) refuses, and the client locates the owner again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chord.ids import between, between_right
from chord.kbr import Forward, Kbr, LookupFailed, NeighborChange
from chord.ports import (
    DiskError,
    Durable,
    Forgetful,
    InvalidRequest,
    PeerUnavailable,
    RemoteError,
    Row,
)
from chord.state import NodeRef
from chordcast.v1 import storage_pb2 as spb

log = logging.getLogger(__name__)

APP = "dht"
MAX_VALUE_BYTES = 1 << 20
MAX_KEY_BYTES = 4096
BATCH_BYTES = 2 << 20  # stays well under gRPC's default 4 MiB message limit
# Larger values are not routed hop by hop: the owner is located first, then sent the value.
INLINE_VALUE_BYTES = 8 << 10
DIRECT_TRIES = 2  # owners located for one direct put before it falls back to routing the value
SPACE = "items"  # where copies live on a node's disk
TOMBSTONE_TTL = 7 * 24 * 3600.0  # seconds a delete is remembered (Cassandra's gc_grace: 10 days)


class StorageError(Exception):
    """A request that cannot be served: bad key, value too large."""


class StorageFull(StorageError):
    """The key's owner holds its limit of stored bytes (`max_bytes`)."""


class StorageUnavailable(StorageError):
    """The owner of the key could not be reached (the ring may be repairing: retry)."""


def value_hash(value: bytes, deleted: bool) -> bytes:
    return hashlib.blake2b((b"\x01" if deleted else b"\x00") + value, digest_size=8).digest()


@dataclass
class Record:
    key: str
    key_id: int
    value: bytes
    version: int
    deleted: bool
    touched: float  # last time the owner confirmed this copy (our own clock)
    hash: bytes  # value_hash(value, deleted): ranks copies with one version
    # The ownership epoch (see Storage.update) in which this node, as the owner, knew this to
    # be the newest copy; -1: it may not be (a replica's copy, or from before a range change).
    settled: int = -1
    written_ms: int = 0  # when the owner wrote this version (wall clock)

    @property
    def rank(self) -> tuple[int, bytes]:
        return self.version, self.hash

    def to_pb(self) -> spb.Item:
        return spb.Item(key=self.key, value=self.value, version=self.version, deleted=self.deleted,
                        written_ms=self.written_ms)

    def to_row(self) -> Row:
        return Row(self.key, self.version, self.hash, self.to_pb().SerializeToString())


class _KeyWrites:
    """The writes of one key in progress at its owner (dropped when the last one ends)."""

    __slots__ = ("lock", "repaired", "top", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # held from reading the version to reserving the next one
        self.users = 0
        self.top = 0  # the highest version given to a write still replicating
        self.repaired = -1  # the epoch in which a write here last asked the replicas


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


def _refused(exc: StorageError | DiskError) -> spb.StorageReply:
    """The owner's answer to a request it cannot serve. Its own full (or failing) disk is
    `full` too: the write is not acknowledged, and the caller hears RESOURCE_EXHAUSTED."""
    if isinstance(exc, DiskError):
        return spb.StorageReply(error=f"the owner cannot write to its data dir: {exc}",
                                full=True)
    return spb.StorageReply(error=str(exc), full=isinstance(exc, StorageFull))


class Storage:
    name = APP
    one_hop = True  # `forward` only passes messages on: the location cache may skip the hops

    def __init__(self, kbr: Kbr, replicas: int = 3, sync_interval: float = 5.0,
                 max_bytes: int | None = None, durable: Durable | None = None,
                 tombstone_ttl: float = TOMBSTONE_TTL) -> None:
        self.kbr = kbr
        self.durable: Durable = durable or Forgetful()
        self.tombstone_ttl = tombstone_ttl
        self.replicas = replicas
        # Value bytes this node takes as the owner of new writes, at most (None: no bound).
        # Copies from other owners are always kept (refusing them would lose replicas).
        self.max_bytes = max_bytes
        self._bytes = 0  # value bytes held, owned and replicas (kept as items change)
        self.sync_interval = sync_interval
        self.replica_ttl = 6 * sync_interval
        self.items: dict[str, Record] = {}
        self._writes: dict[str, _KeyWrites] = {}
        self._epoch = 0  # bumped whenever the predecessor (so the range we own) changes
        # Requests by kind: routed to the key's owner, and sent straight between peers.
        self._at_owner: dict[str, Callable[[Any], Awaitable[spb.StorageReply]]] = {
            "put": self._owner_put, "get": self._owner_get, "delete": self._owner_delete,
            "locate": self._owner_locate}
        self._from_peer: dict[str, Callable[[Any], spb.StorageSyncReply]] = {
            "digest": self._on_digest, "fetch": self._on_fetch}
        kbr.register(self)
        self._restore()

    def _restore(self) -> None:
        """Start from the copies on disk, each to be checked with the replicas before it is
        served (`settled` -1), as after any change of range."""
        for row in self.durable.load(SPACE):
            try:
                self._keep(self._record(spb.Item.FromString(row.value)))
            except Exception as exc:  # a row this version cannot read: say so, keep going
                log.warning("skipping stored item %r: %s", row.key, exc)

    # ================================================================ client operations
    async def put(self, key: str, value: bytes) -> tuple[NodeRef, int]:
        check_key(key)
        check_value(value)
        item = spb.Item(key=key, value=value)
        if len(value) > INLINE_VALUE_BYTES:
            done = await self._put_direct(key, item)
            if done is not None:
                return done
        reply, owner = await self._request(key, spb.StorageRequest(put=item))
        return owner, reply.version

    async def _put_direct(self, key: str, item: spb.Item) -> tuple[NodeRef, int] | None:
        """Find the owner with a small routed request, then send it the value. None: the
        located nodes refused (ownership moved) or did not answer; the caller then routes the
        value. A put whose answer was lost may so be applied twice: two versions, one value."""
        msg = spb.StorageSync(put=item).SerializeToString()
        for _ in range(DIRECT_TRIES):
            owner = await self._locate(key)
            try:
                reply = spb.StorageSyncReply.FromString(await self.kbr.send(owner, APP, msg))
            except (PeerUnavailable, RemoteError) as exc:
                log.debug("direct put of %r to %s failed: %s", key, owner.address, exc)
                return None
            if reply.refused:
                continue
            if reply.put.error:
                raise (StorageFull if reply.put.full else StorageError)(reply.put.error)
            return owner, reply.put.version
        return None

    async def _locate(self, key: str) -> NodeRef:
        return (await self._request(key, spb.StorageRequest(locate=key)))[1]

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
            raise (StorageFull if reply.full else StorageError)(reply.error)
        return reply, result.owner

    # ================================================================ counts (for operators)
    def owned_count(self) -> int:
        return sum(1 for r in self.items.values() if not r.deleted and self.kbr.owns(r.key_id))

    def replica_count(self) -> int:
        return sum(1 for r in self.items.values() if not r.deleted) - self.owned_count()

    def stored_bytes(self) -> int:
        """Bytes of the values held here, owned and replicas."""
        return self._bytes

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
        except (StorageError, DiskError) as exc:
            reply = _refused(exc)
        return reply.SerializeToString()

    async def _owner_get(self, key: str) -> spb.StorageReply:
        rec = await self._local_or_repair(key)
        found = rec is not None and not rec.deleted
        return spb.StorageReply(found=found, item=rec.to_pb() if rec is not None and found
                                else None)

    async def _owner_locate(self, key: str) -> spb.StorageReply:
        return spb.StorageReply()

    async def _owner_put(self, item: spb.Item) -> spb.StorageReply:
        check_key(item.key)
        check_value(item.value)
        if self.max_bytes is not None:
            held = self.items.get(item.key)
            grows = len(item.value) - (len(held.value) if held is not None else 0)
            if grows > 0 and self._bytes + grows > self.max_bytes:
                raise StorageFull(f"the owner of {item.key!r} holds its limit of "
                                  f"{self.max_bytes} stored bytes")
        found, version = await self._write(item.key, item.value, deleted=False)
        return spb.StorageReply(found=found, version=version)

    async def _owner_delete(self, key: str) -> spb.StorageReply:
        check_key(key)
        # A tombstone, so an old copy on a replica cannot bring the value back.
        found, version = await self._write(key, b"", deleted=True)
        return spb.StorageReply(found=found, version=version)

    async def _write(self, key: str, value: bytes, deleted: bool) -> tuple[bool, int]:
        """One write at the owner: (whether the key existed, the version given; 0 for the
        delete of a missing key, which writes nothing). Versions are given one at a time per
        key, after the replicas were asked when our copy may be stale; the copies then go to
        the replicas in parallel and, once they answered, become ours: a get here sees a
        write only when the replicas have it too. Writes of one key replicate concurrently;
        the highest version wins everywhere whatever order the copies arrive in."""
        writes = self._writes.get(key)
        if writes is None:
            writes = self._writes[key] = _KeyWrites()
        writes.users += 1
        try:
            async with writes.lock:
                epoch = self._epoch
                rec = self.items.get(key)
                if writes.repaired != epoch and (rec is None or rec.settled != epoch):
                    rec = await self._local_or_repair(key)
                    writes.repaired = epoch
                # A write still replicating counts as there: a delete then writes a tombstone.
                found = (rec is not None and not rec.deleted) or writes.top > 0
                if deleted and not found:
                    return False, 0
                version = max(rec.version if rec is not None else 0, writes.top) + 1
                writes.top = version
            new = Record(key, self.kbr.space.hash_key(key), value, version, deleted,
                         self.kbr.clock.now(), value_hash(value, deleted), epoch,
                         int(self.kbr.clock.wall() * 1000))
            if self.durable.keeps:  # on our disk while the replicas put it on theirs
                await asyncio.gather(self._replicate([new]), self._save([new]))
            else:
                await self._replicate([new])
            self._keep(new)
            return found, version
        finally:
            writes.users -= 1
            if writes.users == 0 and self._writes.get(key) is writes:
                del self._writes[key]

    async def direct(self, payload: bytes, sender: NodeRef) -> bytes:
        msg = spb.StorageSync.FromString(payload)
        op = msg.WhichOneof("op")
        if op == "put":
            return (await self._on_put(msg.put)).SerializeToString()
        if op == "store":
            return (await self._on_store(msg.store)).SerializeToString()
        handler = self._from_peer.get(op or "")
        if handler is None:
            raise InvalidRequest("empty storage sync message")
        return handler(getattr(msg, op or "")).SerializeToString()

    async def _on_put(self, item: spb.Item) -> spb.StorageSyncReply:
        """A put sent straight here: served only by the key's owner (as a routed put would be
        delivered here), refused otherwise."""
        if not item.key or not self.kbr.owns(self.kbr.space.hash_key(item.key)):
            return spb.StorageSyncReply(refused=True)
        try:
            reply = await self._owner_put(item)
        except (StorageError, DiskError) as exc:
            reply = _refused(exc)
        return spb.StorageSyncReply(put=reply)

    async def _on_store(self, store: spb.ItemBatch) -> spb.StorageSyncReply:
        """Copies from an owner: answered once they are on our disk (the owner's write is
        acknowledged after that)."""
        await self._save([rec for item in store.items if (rec := self._accept(item))])
        return spb.StorageSyncReply()

    def _on_digest(self, digest: spb.Digest) -> spb.StorageSyncReply:
        """An owner confirms what we hold for it; we ask for what is missing or ranks lower,
        and send back what ranks higher than the owner's copy."""
        wanted = spb.Digest()
        newer = spb.ItemBatch()
        size = 0
        now = self.kbr.clock.now()
        hashes = list(digest.hashes)
        for i, (key, version) in enumerate(zip(digest.keys, digest.versions, strict=False)):
            theirs = (version, hashes[i] if i < len(hashes) else b"")
            rec = self.items.get(key)
            if rec is None or rec.rank < theirs:
                wanted.keys.append(key)
                continue
            rec.touched = now
            if rec.rank > theirs and size < BATCH_BYTES:
                newer.items.append(rec.to_pb())
                size += len(rec.value) + len(rec.key) + 32
        return spb.StorageSyncReply(wanted=wanted, newer=newer)

    def _on_fetch(self, key: str) -> spb.StorageSyncReply:
        rec = self.items.get(key)
        if rec is None:
            return spb.StorageSyncReply(found=False)
        return spb.StorageSyncReply(found=True, item=rec.to_pb())

    def update(self, change: NeighborChange) -> None:
        me = self.kbr.me.id
        old_pred, new_pred = change.old_predecessor, change.new_predecessor
        if (old_pred.id if old_pred else None) != (new_pred.id if new_pred else None):
            self._epoch += 1  # our range changed: check each key with the replicas again
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
            digest = spb.StorageSync(digest=spb.Digest(
                keys=[r.key for r in owned], versions=[r.version for r in owned],
                hashes=[r.hash for r in owned],
            )).SerializeToString()
            keys = {r.key for r in owned}
            await asyncio.gather(*(self._sync_with(node, digest, keys)
                                   for node in self.kbr.replica_set(self.replicas)))
        pred, _ = self.kbr.neighbors()
        if pred is None:
            return  # we cannot tell what we own: expire nothing
        cutoff = self.kbr.clock.now() - self.replica_ttl
        gone = [k for k, r in self.items.items() if not self.kbr.owns(r.key_id)
                and r.touched < cutoff]
        # Tombstones old enough that no copy they outrank can still come back (see the
        # module's note): the owner stops confirming them, and its replicas let them expire.
        forgotten_ms = int((self.kbr.clock.wall() - self.tombstone_ttl) * 1000)
        gone += [r.key for r in owned if r.deleted and 0 < r.written_ms < forgotten_ms]
        for key in gone:
            self._bytes -= len(self.items.pop(key).value)
        if gone and self.durable.keeps:
            await self.durable.forget(SPACE, gone)

    async def _sync_with(self, node: NodeRef, digest: bytes, keys: set[str]) -> None:
        try:
            reply = spb.StorageSyncReply.FromString(await self.kbr.send(node, APP, digest))
        except (PeerUnavailable, RemoteError):
            return
        # A write we missed (two owners for a while): it wins.
        await self._save([rec for item in reply.newer.items
                          if item.key in keys and (rec := self._accept(item))])
        wanted = [self.items[k] for k in reply.wanted.keys if k in keys and k in self.items]
        if wanted:
            # A replica that lacked copies (new in the replica set, or back after a failure):
            # the repair an operator wants to see at info.
            log.info("%s: re-replicating %d item(s) to %s, which lacked them",
                     self.kbr.me.address, len(wanted), node.address)
            await self._push(node, wanted)

    # ================================================================ internals
    def _owned(self) -> list[Record]:
        pred, _ = self.kbr.neighbors()
        if pred is None and self.kbr.neighbors()[1]:
            return []
        return [r for r in self.items.values() if self.kbr.owns(r.key_id)]

    def _keep(self, new: Record) -> bool:
        """Hold `new` unless we hold a copy that ranks higher (equal: just confirm ours).
        Whether it is new here."""
        rec = self.items.get(new.key)
        if rec is None or new.rank > rec.rank:
            self._bytes += len(new.value) - (len(rec.value) if rec is not None else 0)
            self.items[new.key] = new
            return True
        if new.rank == rec.rank:
            rec.touched = new.touched
        return False

    def _record(self, item: spb.Item) -> Record:
        if not item.key or len(item.value) > MAX_VALUE_BYTES:
            raise InvalidRequest("malformed item")
        return Record(item.key, self.kbr.space.hash_key(item.key), item.value, item.version,
                      item.deleted, self.kbr.clock.now(), value_hash(item.value, item.deleted),
                      written_ms=item.written_ms)

    def _accept(self, item: spb.Item) -> Record | None:
        """Take a copy from another node if it ranks higher than ours: a newer version, or
        the same version with a higher value hash, so that every node picks the same one.
        The record when it was taken (to be saved), else None."""
        rec = self._record(item)
        return rec if self._keep(rec) else None

    async def _save(self, records: list[Record]) -> None:
        """On disk before we answer for them (nothing to do without a data dir)."""
        if records and self.durable.keeps:
            await self.durable.save(SPACE, [r.to_row() for r in records])

    async def _local_or_repair(self, key: str) -> Record | None:
        """Our copy when we know it is the newest; else (a join or a crash changed our range,
        or left us without one) the highest-ranked among ours and the replicas', asked in
        parallel."""
        rec = self.items.get(key)
        epoch = self._epoch
        if rec is not None and rec.settled == epoch:
            return rec
        fetch = spb.StorageSync(fetch=key).SerializeToString()

        async def ask(node: NodeRef) -> spb.Item | None:
            try:
                reply = spb.StorageSyncReply.FromString(await self.kbr.send(node, APP, fetch))
            except (PeerUnavailable, RemoteError):
                return None
            return reply.item if reply.found else None

        answers = await asyncio.gather(*(ask(n) for n in self.kbr.replica_set(self.replicas)))
        await self._save([rec for item in answers if item is not None
                          and (rec := self._accept(item))])
        rec = self.items.get(key)
        if rec is not None and self._epoch == epoch:
            rec.settled = epoch
        return rec

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
