"""DHT storage on the in-memory network: replicas, hand-over on join and leave, crash repair."""

from __future__ import annotations

import pytest

from chord.node import NodeConfig
from chord.sim.ring import SimRing
from chord.storage import MAX_VALUE_BYTES, StorageError

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
