"""Group access control in the protocol, on the in-memory network: the root refuses a send
from a principal the group's publishers do not name, whichever node it enters through; a
subscribe is checked against the root's record before anything is attached; only the owner
(or the token) destroys. The principal is what the access node authenticated (a TLS caller's
certificate name); "" (no TLS) passes only groups without access lists."""

from __future__ import annotations

import pytest

from chord.node import NodeConfig
from mcast.core import allowed
from mcast.scribe import McastError, ScribeConfig
from mcast.tree import MESSAGE, Event
from tests.mcast.rings import scribe, scribe_ring

CONFIG = NodeConfig(successors=4, stabilize_interval=0.5, rpc_timeout=0.5)


def test_who_an_access_list_lets_in() -> None:
    assert allowed([], "") and allowed([], "anyone")
    assert allowed(["alice"], "alice") and not allowed(["alice"], "bob")
    assert allowed(["*"], "bob") and allowed(["alice", "*"], "node:10.0.0.1:4000")
    assert not allowed(["*"], "") and not allowed(["alice"], "")  # unauthenticated


def test_the_root_and_the_access_nodes_enforce_a_groups_access_lists(run_virtual) -> None:
    async def scenario() -> None:
        ring = scribe_ring(CONFIG, 5, ScribeConfig(parent_timeout=3.0))
        await ring.grow(8)
        assert await ring.converge()
        sims = sorted(ring.nodes.values(), key=lambda s: s.node.me.address)
        token, _ = await scribe(sims[0]).create("acl", owner="alice", publishers=["alice"],
                                                subscribers=["alice", "bob"])
        root = next(s for s in sims if "acl" in scribe(s).roots)
        others = [s for s in sims if s is not root]

        # Refused at the root, through every access node (the root itself included).
        for access in [root, *others[:3]]:
            for who in ("bob", ""):
                with pytest.raises(McastError) as refused:
                    await scribe(access).send("acl", b"x", principal=who)
                assert refused.value.code == "denied"
                assert "permission denied" in str(refused.value)
        with pytest.raises(McastError) as anycast:
            await scribe(others[0]).anycast("acl", b"x", principal="bob")
        assert anycast.value.code == "denied"

        # Subscribers: carol is refused before any state is made; bob gets alice's message.
        with pytest.raises(McastError) as no_sub:
            await scribe(others[1]).join("acl", lambda e: None, principal="carol")
        assert no_sub.value.code == "denied"
        assert "acl" not in scribe(others[1]).groups or not scribe(others[1]).groups[
            "acl"].members
        got: list[Event] = []
        await scribe(others[2]).join("acl", got.append, principal="bob")
        seq = await scribe(others[3]).send("acl", b"hello", sender="alice", principal="alice")
        assert await ring.wait_for(lambda: any(e.seq == seq for e in got), 10, step=0.05)
        assert [(e.kind, e.payload) for e in got] == [(MESSAGE, b"hello")]
        info = await scribe(others[4]).info("acl")
        assert (info.owner, info.publishers, info.subscribers) == (
            "alice", ("alice",), ("alice", "bob"))

        # Destroy: not bob without the token; alice by her certificate alone.
        with pytest.raises(McastError) as no_destroy:
            await scribe(others[0]).destroy("acl", "", principal="bob")
        assert no_destroy.value.code == "denied"
        await scribe(others[0]).destroy("acl", "", principal="alice")
        with pytest.raises(McastError):
            await scribe(others[0]).info("acl")
        # A group without access lists keeps today's rules: anyone sends, the token destroys.
        token, _ = await scribe(sims[0]).create("open")
        assert await scribe(others[0]).send("open", b"x") == 1
        await scribe(others[1]).destroy("open", token)

    run_virtual(scenario())


def test_a_node_bounds_groups_per_owner_and_in_all_and_the_members_it_holds(run_virtual
                                                                              ) -> None:
    async def scenario() -> None:
        config = ScribeConfig(parent_timeout=3.0, max_groups=3, max_members=2,
                              max_groups_per_owner=2)
        ring = scribe_ring(CONFIG, 6, config)
        await ring.grow(1)  # one node: it is the root of everything
        node = scribe(next(iter(ring.nodes.values())))
        for i in range(2):
            await node.create(f"g{i}", owner="alice")
        with pytest.raises(McastError) as hers:  # alice has her share; bob still has room
            await node.create("g2", owner="alice")
        assert hers.value.code == "exhausted" and "alice's limit of 2" in str(hers.value)
        await node.create("g2", owner="bob")
        with pytest.raises(McastError) as full:
            await node.create("g3")
        assert full.value.code == "exhausted" and "limit of 3 groups" in str(full.value)
        for _ in range(2):
            await node.join("g0", lambda e: None)
        with pytest.raises(McastError) as crowded:
            await node.join("g1", lambda e: None)
        assert crowded.value.code == "exhausted"
        assert not node.groups["g1"].members  # nothing was attached

    run_virtual(scenario())
