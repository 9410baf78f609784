"""DHT storage on the in-memory network: replicas, hand-over on join and leave, crash repair."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
from google.protobuf.message import Message

from chord.node import NodeConfig
from chord.sim.memnet import MemoryTransport
from chord.sim.ring import SimRing
from chord.state import NodeRef
from chord.storage import (
    INLINE_VALUE_BYTES,
    MAX_VALUE_BYTES,
    GetResult,
    Storage,
    StorageError,
    StorageFull,
    value_hash,
)
from chordcast.v1 import storage_pb2 as spb

CONFIG = NodeConfig(successors=6, stabilize_interval=0.5, rpc_timeout=0.5)


def holders(ring: SimRing, key: str) -> list[str]:
    return sorted(a for a, s in ring.nodes.items()
                  if key in s.storage.items and not s.storage.items[key].deleted)


def replica_addresses(ring: SimRing, key: str, copies: int) -> list[str]:
    """The oracle: the owner of the key and the next `copies - 1` live nodes."""
    ids = ring.sorted_ids()
    by_id = {s.node.me.id: a for a, s in ring.nodes.items()}
    start = ids.index(ring.owner_of(ring.space.hash_key(key)))
    return sorted(by_id[ids[(start + i) % len(ids)]] for i in range(copies))


async def put_all(ring: SimRing, items: dict[str, bytes]) -> None:
    client = next(iter(ring.nodes.values())).storage
    for k, v in items.items():
        await client.put(k, v)


async def assert_all_readable(ring: SimRing, items: dict[str, bytes]) -> None:
    for sim in list(ring.nodes.values())[:3]:
        for k, v in items.items():
            got = await sim.storage.get(k)
            assert got.found and got.value == v, k
            assert got.owner.id == ring.owner_of(ring.space.hash_key(k))


def test_values_live_on_owner_and_replicas_and_survive_churn(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=21, replicas=3, sync_interval=2.0)
        await ring.grow(20)
        assert await ring.converge()
        items = {f"k{i}": f"v{i}".encode() for i in range(60)}
        await put_all(ring, items)
        for k in items:
            assert holders(ring, k) == replica_addresses(ring, k, 4), k

        # Joins: new owners receive their keys (the old owner hands them over).
        for _ in range(5):
            await ring.add()
        assert await ring.converge()

        def unowned() -> list[str]:
            """Keys their (new) owner does not hold yet; checked before any read, since a
            read would repair the owner's copy itself."""
            by_id = {s.node.me.id: s for s in ring.nodes.values()}
            return [k for k in items
                    if k not in by_id[ring.owner_of(ring.space.hash_key(k))].storage.items]

        assert await ring.wait_for(lambda: not unowned(), 30), unowned()
        await assert_all_readable(ring, items)

        # Graceful leaves hand keys to the successor.
        for address in sorted(ring.nodes)[:4]:
            await ring.leave(address)
        await assert_all_readable(ring, items)

        # Crash 3 nodes at once (fewer than the 4 copies): nothing is lost; copies are re-made
        # and stale extra copies expire, back to exactly owner + 3 successors.
        for address in sorted(ring.nodes)[5:8]:
            await ring.crash(address)
        assert await ring.converge()
        await assert_all_readable(ring, items)
        ok = await ring.wait_for(
            lambda: all(holders(ring, k) == replica_addresses(ring, k, 4) for k in items),
            timeout=120,
        )
        assert ok, [k for k in items if holders(ring, k) != replica_addresses(ring, k, 4)]
        await ring.stop()

    run_virtual(scenario())


def test_versions_overwrite_delete_and_limits(run_virtual) -> None:
    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=2)
        await ring.grow(6)
        assert await ring.converge()
        st = next(iter(ring.nodes.values())).storage
        _, v1 = await st.put("a", b"1")
        _, v2 = await st.put("a", b"2")
        assert (v1, v2) == (1, 2)
        assert (await st.get("a")).value == b"2"
        assert (await st.delete("a"))[0] is True
        assert (await st.get("a")).found is False
        assert (await st.delete("a"))[0] is False
        _, v4 = await st.put("a", b"3")
        assert v4 == 4  # the tombstone kept the version counting
        await st.put("max", b"x" * MAX_VALUE_BYTES)
        with pytest.raises(StorageError, match="1 MiB"):
            await st.put("big", b"x" * (MAX_VALUE_BYTES + 1))
        with pytest.raises(StorageError, match="empty"):
            await st.put("", b"x")
        await ring.stop()

    run_virtual(scenario())


# ==================================================================== concurrent writes
def copies(ring: SimRing, key: str) -> dict[str, tuple[int, bytes] | None]:
    """What each node of the key's replica set (owner + `replicas` successors, by the
    oracle) holds for it: (version, value), None when it has no copy."""
    out: dict[str, tuple[int, bytes] | None] = {}
    for address in replica_addresses(ring, key, ring.replicas + 1):
        rec = ring.nodes[address].storage.items.get(key)
        out[address] = None if rec is None else (rec.version, rec.value)
    return out


def short(held: tuple[int, bytes] | None) -> str:
    return "-" if held is None else f"v{held[0]}={held[1][:10]!r}"


@pytest.mark.parametrize("size", [16, 64 * 1024], ids=["small", "large"])
@pytest.mark.parametrize("existing", [False, True], ids=["new-key", "existing-key"])
@pytest.mark.parametrize("writers", [2, 20])
def test_concurrent_writers_get_distinct_versions_and_replicas_converge(
    run_virtual, writers: int, existing: bool, size: int
) -> None:
    """Writers put one key at once through random nodes: the owner gives each a distinct
    version, a get after an acknowledged put sees it (or a newer one), and once quiet every
    replica holds what the owner acknowledged last. (Two writers of a new key: both used to
    pass the owner's read before either stored, both got version 1, the owner kept the last
    and the replicas the first, and the digest, comparing versions only, never noticed.)"""

    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=5, replicas=3, sync_interval=2.0)
        await ring.grow(12)
        assert await ring.converge()
        rng = random.Random(7)
        key = "contended"
        base = 0
        if existing:
            _, base = await ring.nodes[rng.choice(sorted(ring.nodes))].storage.put(key, b"old")
            assert await ring.wait_for(lambda: len(set(copies(ring, key).values())) == 1, 30)
        clients = [ring.nodes[rng.choice(sorted(ring.nodes))].storage for _ in range(writers)]
        readers = [ring.nodes[rng.choice(sorted(ring.nodes))].storage for _ in range(writers)]

        async def writer(i: int) -> tuple[int, bytes, GetResult]:
            value = f"writer-{i:02d}:".encode().ljust(size, b".")
            _, version = await clients[i].put(key, value)
            return version, value, await readers[i].get(key)

        results = await asyncio.gather(*(writer(i) for i in range(writers)))
        problems: list[str] = []
        versions = sorted(v for v, _, _ in results)
        if len(set(versions)) != len(versions):
            problems.append(f"versions acknowledged more than once: {versions}")
        if versions[0] <= base:
            problems.append(f"a write was acknowledged with version {versions[0]} <= {base}")
        for version, value, got in results:
            if not got.found or got.version < version or (
                    got.version == version and got.value != value):
                problems.append(f"get after the ack of v{version} returned "
                                f"{short((got.version, got.value)) if got.found else 'nothing'}")
        last = max((v, value) for v, value, _ in results)  # acknowledged last by the owner
        settled = await ring.wait_for(lambda: set(copies(ring, key).values()) == {last}, 60)
        if not settled:
            held = {a: short(h) for a, h in copies(ring, key).items()}
            problems.append(f"after 60 s the replicas hold {held}, not {short(last)}")
        assert not problems, problems
        await ring.stop()

    run_virtual(scenario())


def test_owner_crash_during_writes_loses_no_acknowledged_write(run_virtual) -> None:
    """Writers keep putting (each its own keys, small and large values, each key's last
    write retried until acknowledged) while the owner of half of the keys crashes in the
    middle of replicating a write: that write reaches only the owner's last replica (the
    other pushes die with it), and its client hears nothing. At once another client
    overwrites that key, with a value that would lose a tie against the lost write. After
    the ring repairs, every key reads back as its last acknowledged write, acknowledged
    versions are distinct (the new owner never gives out the lost write's version again),
    and the replicas agree."""

    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=11, replicas=3, sync_interval=2.0)
        await ring.grow(12)
        assert await ring.converge()
        rng = random.Random(3)
        victim = rng.choice(sorted(ring.nodes))
        victim_id = ring.nodes[victim].node.me.id
        theirs = [k for k in (f"key-{i}" for i in range(2000))
                  if ring.owner_of(ring.space.hash_key(k)) == victim_id][:16]
        others = [k for k in (f"key-{i}" for i in range(200))
                  if ring.owner_of(ring.space.hash_key(k)) != victim_id][:16]
        assert len(theirs) == 16
        writers, rounds = 8, 6
        keys = {w: theirs[2 * w: 2 * w + 2] + others[2 * w: 2 * w + 2] for w in range(writers)}
        acked: dict[str, list[tuple[int, bytes]]] = {k: [] for ks in keys.values() for k in ks}
        armed = asyncio.Event()  # half of the writes are acknowledged
        lost: list[spb.Item] = []  # the write the crash cut short
        crashed = asyncio.Event()
        crashing: list[asyncio.Future[None]] = []

        # The victim's replication of a routed write not acknowledged yet: the push to its
        # last replica goes out, the others never do; a moment later the victim is gone.
        kbr = ring.nodes[victim].kbr
        send = kbr.send

        async def send_then_crash(node: NodeRef, app: str, payload: bytes) -> bytes:
            msg = spb.StorageSync.FromString(payload) if app == "dht" else spb.StorageSync()
            items = list(msg.store.items) if msg.WhichOneof("op") == "store" else []
            if armed.is_set() and not lost and len(items) == 1 and items[0].key in theirs and (
                    len(items[0].value) <= INLINE_VALUE_BYTES) and items[0].version > max(
                    (v for v, _ in acked[items[0].key]), default=0):
                lost.append(items[0])

                async def crash_soon() -> None:
                    await asyncio.sleep(0.02)
                    await ring.crash(victim)
                    crashed.set()

                crashing.append(asyncio.ensure_future(crash_soon()))
            if lost and items and items[0] == lost[0] and (
                    node.address != kbr.replica_set(ring.replicas)[-1].address):
                await asyncio.sleep(60)  # never sent: the victim is gone by then
            return await send(node, app, payload)

        kbr.send = send_then_crash  # type: ignore[method-assign]

        def client() -> Storage:
            # Never the victim: a caller of the crashed node's objects would go on running
            # there, and hear answers no real client could.
            return ring.nodes[rng.choice(sorted(set(ring.nodes) - {victim}))].storage

        async def put(key: str, value: bytes, until_acked: bool) -> None:
            for _ in range(100):
                try:
                    _, version = await client().put(key, value)
                except StorageError:
                    if not until_acked:
                        return  # failed (routed to the victim as it crashed): move on
                    await asyncio.sleep(0.25)
                    continue
                acked[key].append((version, value))
                if sum(map(len, acked.values())) >= writers * rounds * 2:
                    armed.set()
                return
            raise AssertionError(f"put of {key} never acknowledged")

        async def writer(w: int) -> None:
            for j in range(rounds):
                for n, key in enumerate(keys[w]):
                    if lost and key == lost[0].key:
                        continue  # the overwriter has it now
                    size = 20_000 if (j + n) % 2 else 10
                    value = f"{key}/{j}:".encode().ljust(size, b"#")
                    await put(key, value, until_acked=j == rounds - 1)

        async def overwriter() -> None:
            await crashed.wait()
            item = lost[0]
            # A value that, given the lost write's version, would lose the tie to it.
            value = next(v for v in (f"{item.key}/over-{i}".encode() for i in range(100))
                         if value_hash(v, False) < value_hash(item.value, False))
            await put(item.key, value, until_acked=True)

        await asyncio.gather(overwriter(), *(writer(w) for w in range(writers)))
        problems: list[str] = []
        over_version = acked[lost[0].key][-1][0]
        if over_version <= lost[0].version:
            problems.append(f"{lost[0].key}: the write lost at v{lost[0].version} left its "
                            f"version to be given again (v{over_version})")
        assert await ring.converge()
        for key, acks in acked.items():
            versions = [v for v, _ in acks]
            if versions != sorted(set(versions)):
                problems.append(f"{key}: acknowledged versions {versions}")
            last_version, last_value = acks[-1]
            got = await client().get(key)
            if not got.found or got.version < last_version or got.value != last_value:
                problems.append(f"{key}: read {short((got.version, got.value))}, last "
                                f"acknowledged {short(acks[-1])}")
        assert not problems, problems

        def diverged() -> list[str]:
            return [k for k in acked if len(set(copies(ring, k).values())) != 1]

        assert await ring.wait_for(lambda: not diverged(), 120), {
            k: {a: short(h) for a, h in copies(ring, k).items()} for k in diverged()}
        await ring.stop()

    run_virtual(scenario())


def test_large_value_travels_once_and_a_node_that_does_not_own_the_key_refuses_it(
    run_virtual, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large put routes a small request to find the owner, then sends it the value: the
    value crosses the network once to the owner and once to each replica, and no reply
    carries it back. A node that does not own the key refuses it, and the client locates
    the owner again."""

    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=4, replicas=3, sync_interval=2.0)
        await ring.grow(12)
        assert await ring.converge()
        key, value = "large", b"v" * (INLINE_VALUE_BYTES * 8)
        owner = ring.owner_of(ring.space.hash_key(key))
        client = next(s for s in ring.nodes.values() if s.node.me.id != owner)
        carried: list[str] = []  # the messages at least as large as the value
        call = MemoryTransport.call

        async def counting(self: MemoryTransport, address: str, method: str,
                           request: Message, timeout: float) -> Message:
            if request.ByteSize() >= len(value):
                carried.append(f"{method} {self.address} -> {address}")
            reply = await call(self, address, method, request, timeout)
            if reply.ByteSize() >= len(value):
                carried.append(f"reply to {method} {address} -> {self.address}")
            return reply

        monkeypatch.setattr(MemoryTransport, "call", counting)
        got_owner, version = await client.storage.put(key, value)
        assert got_owner.id == owner and version == 1
        assert len(carried) == 1 + ring.replicas, carried
        assert all(c.startswith("AppCall") for c in carried), carried
        assert sum(1 for c in carried if c.startswith(f"AppCall {client.node.me.address}")) == 1

        # A stale view of the owner: the first node located is not the owner; it refuses,
        # keeps nothing, and the put goes to the owner located next.
        holding = replica_addresses(ring, key, ring.replicas + 1)
        wrong = next(s for a, s in ring.nodes.items() if a not in holding)
        locate = client.storage._locate
        located: list[NodeRef] = []

        async def stale_once(k: str) -> NodeRef:
            located.append(wrong.node.me if not located else await locate(k))
            return located[-1]

        monkeypatch.setattr(client.storage, "_locate", stale_once)
        got_owner, version = await client.storage.put(key, b"w" * len(value))
        assert [n.id for n in located] == [wrong.node.me.id, owner]
        assert got_owner.id == owner and version == 2
        assert key not in wrong.storage.items
        assert (await client.storage.get(key)).value == b"w" * len(value)
        refusal = spb.StorageSyncReply.FromString(await wrong.storage.direct(
            spb.StorageSync(put=spb.Item(key=key, value=b"x")).SerializeToString(),
            client.node.me))
        assert refusal.refused and key not in wrong.storage.items
        await ring.stop()

    run_virtual(scenario())


def test_copies_with_one_version_and_different_values_converge(run_virtual) -> None:
    """Two nodes that both took themselves for the owner (a join or a crash in progress) can
    leave a replica with the owner's version and another value, or with a newer version:
    anti-entropy compares (version, value hash) and brings every copy to the same one, the
    owner included."""

    async def scenario() -> None:
        ring = SimRing(config=CONFIG, seed=8, replicas=3, sync_interval=2.0)
        await ring.grow(12)
        assert await ring.converge()
        st = next(iter(ring.nodes.values())).storage
        for key in ("tie", "ahead"):
            await st.put(key, b"owner's")
        for key, version in (("tie", 1), ("ahead", 2)):
            owner = ring.owner_of(ring.space.hash_key(key))
            replica = next(ring.nodes[a].storage for a in replica_addresses(ring, key, 4)
                           if ring.nodes[a].node.me.id != owner)
            # Forced in, even where it ranks below the owner's copy.
            replica.items[key] = dataclasses.replace(
                replica.items[key], value=b"other", version=version,
                hash=value_hash(b"other", False))
        assert await ring.wait_for(
            lambda: all(len(set(copies(ring, k).values())) == 1 for k in ("tie", "ahead")), 30
        ), {k: copies(ring, k) for k in ("tie", "ahead")}
        tie = next(iter(copies(ring, "tie").values()))
        assert tie == (1, max((b"owner's", b"other"), key=lambda v: value_hash(v, False)))
        assert next(iter(copies(ring, "ahead").values())) == (2, b"other")
        assert (await st.get("ahead")).value == b"other"
        await ring.stop()

    run_virtual(scenario())


def test_an_owner_refuses_new_bytes_past_its_limit_and_counts_what_it_holds(
        run_virtual) -> None:
    async def scenario() -> None:
        # No copies: an owner's bytes are its own writes (copies for other owners count too,
        # but are never refused; the running count below is checked with them elsewhere).
        ring = SimRing(config=CONFIG, seed=22, replicas=0, sync_interval=2.0)
        await ring.grow(4)
        assert await ring.converge()
        for sim in ring.nodes.values():
            sim.storage.max_bytes = 3000  # an owner takes ~3 values of 1,000 bytes
        node = next(iter(ring.nodes.values())).storage
        stored: dict[str, bytes] = {}
        with pytest.raises(StorageFull, match="limit of 3000 stored bytes"):
            for i in range(100):
                await node.put(f"big{i}", bytes([i]) * 1000)
                stored[f"big{i}"] = bytes([i]) * 1000
        refused = f"big{len(stored)}"
        assert len(stored) >= 4  # some owner filled up; the others took theirs until then
        await assert_all_readable(ring, stored)
        # A write that does not grow the owner's bytes still goes (an overwrite, a delete),
        # and what a delete frees the owner takes again.
        full_owner = ring.owner_of(ring.space.hash_key(refused))
        same_owner = [k for k in stored
                      if ring.owner_of(ring.space.hash_key(k)) == full_owner]
        assert len(same_owner) >= 3  # it filled up with its own writes
        await node.put(same_owner[0], b"small")
        await node.delete(same_owner[1])
        await node.put(refused, b"x" * 1000)  # the overwrite and the delete made room
        # The running count is what a full recount gives, on every node.
        for sim in ring.nodes.values():
            held = sum(len(r.value) for r in sim.storage.items.values())
            assert sim.storage.stored_bytes() == held

    run_virtual(scenario())
