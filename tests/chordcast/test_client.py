"""The one client library: `BlockingClient` mirrors `Client` method for method, and both serve
the ring, storage and groups of a real ring, failing over past a dead address."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Iterator

import pytest

from chord.ids import IdSpace
from chordcast import BlockingClient, Client, ClientError
from chordcast.localring import LocalRing

SPACE = IdSpace(160)


def _public_coroutines(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(cls).items()
            if not name.startswith("_") and inspect.iscoroutinefunction(fn)}


def test_blocking_client_has_every_client_call_with_the_same_signature() -> None:
    calls = _public_coroutines(Client)
    assert {"ring", "lookup", "put", "get", "delete", "create", "send", "info",
            "list_groups", "anycast", "destroy", "broadcast", "unicast"} <= set(calls)
    for name, signature in calls.items():
        if name == "close":
            continue
        twin = getattr(BlockingClient, name, None)
        assert twin is not None, f"BlockingClient lacks {name}"
        assert not inspect.iscoroutinefunction(twin), name
        assert inspect.signature(twin).parameters.keys() == signature.parameters.keys(), name


def test_bad_addresses_are_refused_before_any_call() -> None:
    with pytest.raises(ClientError, match="not HOST:PORT"):
        Client("nonsense")
    with pytest.raises(ClientError, match="at least one"):
        Client([])


def _dead_address() -> str:
    with socket.socket() as s:  # a port nobody listens on once the socket is closed
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def ring() -> Iterator[LocalRing]:
    nodes = LocalRing(extra_args=["--stabilize-interval", "0.2", "--metrics-port", "0"])
    with nodes.running(3) as r:
        yield r


@pytest.mark.slow
def test_blocking_client_fails_over_and_serves_ring_storage_and_groups(
        ring: LocalRing) -> None:
    addresses = [_dead_address(), *(n.address for n in ring.live())]
    with BlockingClient(addresses, timeout=5) as c:
        assert {i.node.address for i in c.ring()} == {n.address for n in ring.live()}
        found = c.lookup("alpha")
        assert found.owner.address == ring.owner_of(SPACE.hash_key("alpha"))
        assert c.addresses[c.client.current] != addresses[0]  # moved past the dead node
        by_id = c.lookup(key_id=found.key_id)
        assert by_id.owner == found.owner and len(by_id.key_id) == 40
        stored = c.put("alpha", "one")
        assert c.get("alpha").value == b"one" and c.get("alpha").version == stored.version
        assert c.delete("alpha").found and not c.get("alpha").found
        with pytest.raises(ClientError) as bad:
            c.lookup(key_id="not-hex")
        assert bad.value.code == "INVALID_ARGUMENT"
        created = c.create("client-test")
        with c.join("client-test", member="m") as sub:
            seq = c.send("client-test", "hello")
            got = sub.next(timeout=10)
            assert got is not None and (got.seq, got.text) == (seq, "hello")
        assert c.info("client-test").last_seq == seq
        assert "client-test" in [g.group for g in c.list_groups()]
        c.destroy("client-test", created.token)


@pytest.mark.slow
def test_async_client_against_the_same_ring(ring: LocalRing) -> None:
    async def go() -> None:
        async with Client([n.address for n in ring.live()]) as c:
            await c.put("beta", b"\x00\x01")
            assert (await c.get("beta")).value == b"\x00\x01"
            with pytest.raises(ClientError) as missing:
                await c.info("no-such-group")
            assert missing.value.code == "NOT_FOUND"

    asyncio.run(go())


@pytest.mark.slow
def test_ring_aware_client_corrects_a_stale_view_and_never_returns_a_wrong_value() -> None:
    ring = LocalRing(extra_args=["--stabilize-interval", "0.2"])
    keys = [f"key-{i}" for i in range(30)]
    with ring.running(4), BlockingClient([n.address for n in ring.live()]) as c:
        for k in keys:
            assert c.put(k, k.upper()).owner.address == ring.owner_of(SPACE.hash_key(k))
        view = c.client._view
        assert view is not None and {a for _, a in view} == {n.address for n in ring.live()}

        def check_all() -> None:
            for k in keys:
                v = c.get(k)
                assert v.found and v.value == k.upper().encode(), k
                assert v.owner.address == ring.owner_of(SPACE.hash_key(k)), k

        newcomer = ring.start_node()  # a node joins: the view is stale
        ring.wait_converged(timeout=30)
        check_all()
        owns = any(ring.owner_of(SPACE.hash_key(k)) == newcomer.address for k in keys)
        assert owns == (newcomer.address in {a for _, a in c.client._view or []})
        owner = ring.owner_of(SPACE.hash_key(keys[0]))
        victim = next(n for n in ring.live() if n.address == owner)  # crashes: a dead entry
        ring.kill(victim)
        ring.wait_converged(timeout=30)
        check_all()
        assert victim.address not in {a for _, a in c.client._view or []}
    ring.check_logs()
