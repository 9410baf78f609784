"""Scribe on the in-memory network: many groups and members, exactly-once in-order delivery,
no cycles, and the same under forwarder crashes and root failure."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import defaultdict

import pytest

from chord.node import NodeConfig
from chord.sim.ring import SimNode, SimRing
from mcast.scribe import McastError, ScribeConfig
from mcast.tree import MESSAGE, Event
from tests.mcast.rings import scribe, scribe_ring

CONFIG = NodeConfig(successors=8, stabilize_interval=0.5, rpc_timeout=0.5)
SCRIBE = ScribeConfig(max_children=16, parent_timeout=3.0)


async def build(nodes: int, seed: int, config: ScribeConfig = SCRIBE) -> SimRing:
    ring = scribe_ring(CONFIG, seed, config)
    await ring.grow(nodes)
    assert await ring.converge()
    await asyncio.sleep(30)  # fingers
    return ring


async def eventually(ring: SimRing, check, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Advance virtual time until `check` stops raising AssertionError (bounded), then run it
    once more so a failure shows its own message."""

    def holds() -> bool:
        try:
            check()
        except AssertionError:
            return False
        return True

    await ring.wait_for(holds, timeout, step=0.5)
    check()


class Members:
    """Members spread over the ring; each records what it delivered."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, int], list[Event]] = defaultdict(list)
        self.host: dict[tuple[str, int], str] = {}

    async def add(self, sim: SimNode, group: str, i: int) -> None:
        key = (group, i)
        self.host[key] = sim.node.me.address
        await scribe(sim).join(group, self.events[key].append, member=f"m{i}")

    def live(self, ring: SimRing) -> list[tuple[str, int]]:
        return [k for k, host in self.host.items() if host in ring.nodes]


def root_of(ring: SimRing, group: str) -> SimNode:
    return next(s for s in ring.nodes.values() if group in scribe(s).roots)


def check_trees(ring: SimRing, groups: list[str]) -> dict[str, float]:
    """No cycles; every tree node reaches the root along parent pointers. Returns stress."""
    children_counts, depths = [], []
    for group in groups:
        for sim in ring.nodes.values():
            g = scribe(sim).groups.get(group)
            if g is None:
                continue
            children_counts.append(len(g.children))
            node, seen = sim, set()
            while True:
                state = scribe(node).groups[group]
                assert node.node.me.address not in seen, f"cycle in {group}"
                seen.add(node.node.me.address)
                if state.is_root:
                    break
                assert state.parent is not None, f"{node.node.me.address} detached in {group}"
                node = ring.nodes[state.parent.address]
            depths.append(len(seen) - 1)
    return {"max_children": max(children_counts), "mean_children": statistics.mean(children_counts),
            "max_depth": max(depths), "tree_nodes": len(children_counts)}


def check_delivery(ring: SimRing, members: Members, groups: list[str]) -> int:
    """Every live member has exactly 1..counter of its group's root, in order, same payloads."""
    total = 0
    for group in groups:
        root = scribe(root_of(ring, group)).roots[group]
        expected = list(range(1, root.counter + 1))
        by_seq = {m.seq: m.payload for m in root.archive}
        for key in members.live(ring):
            if key[0] != group:
                continue
            got = [e for e in members.events[key] if e.kind == MESSAGE]
            assert [e.seq for e in got] == expected, f"member {key}: {[e.seq for e in got]}"
            assert all(by_seq[e.seq] == e.payload for e in got)
            total += len(got)
    return total


def test_200_nodes_20_groups_500_members(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(200, seed=1)
        rng = random.Random(1)
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        groups = [f"group-{i}" for i in range(20)]
        for name in groups:
            await scribe(rng.choice(nodes)).create(name)
        members = Members()
        for i in range(500):
            await members.add(rng.choice(nodes), rng.choice(groups), i)
        for k in range(100):
            group = groups[k % len(groups)]
            await scribe(rng.choice(nodes)).send(group, f"{group}:{k}".encode())
        await eventually(ring, lambda: check_delivery(ring, members, groups))
        delivered = check_delivery(ring, members, groups)
        assert delivered == sum(5 for k in members.live(ring))
        stress = check_trees(ring, groups)
        print(f"\n200 nodes, 20 groups, 500 members: {stress}")
        assert stress["max_children"] <= SCRIBE.max_children + 1
        info = await scribe(nodes[0]).info(groups[0])
        assert info.members == sum(1 for k in members.host if k[0] == groups[0])
        await ring.stop()

    run_virtual(scenario())


async def traffic(ring: SimRing, groups: list[str], count: int, rng: random.Random,
                  gap: float) -> int:
    sent = 0
    for k in range(count):
        sender = ring.nodes[rng.choice(sorted(ring.nodes))]
        try:
            await scribe(sender).send(groups[k % len(groups)], f"t{k}".encode())
            sent += 1
        except McastError:
            pass  # the ring is repairing; the member check below uses what the root stamped
        await asyncio.sleep(gap)
    return sent


def test_forwarder_crashes_and_root_failover_while_messages_flow(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(120, seed=7)
        rng = random.Random(7)
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        groups = [f"g{i}" for i in range(5)]
        for name in groups:
            await scribe(rng.choice(nodes)).create(name)
        members = Members()
        for i in range(200):
            await members.add(rng.choice(nodes), rng.choice(groups), i)

        flow = asyncio.ensure_future(traffic(ring, groups, 150, rng, gap=0.2))
        await asyncio.sleep(3)
        # 20% of the forwarders (tree nodes that are not roots) crash during the traffic,
        # at most two neighbours at a time, within the successor lists' failure assumption.
        forwarders = sorted({a for a, s in ring.nodes.items()
                             if any(g.children and not g.is_root
                                    for g in scribe(s).groups.values())})
        victims = rng.sample(forwarders, k=len(forwarders) // 5)
        for address in victims:
            await ring.crash(address)
            await asyncio.sleep(0.5)
        # And the root of one group.
        root = root_of(ring, groups[0])
        await ring.crash(root.node.me.address)
        sent = await flow
        assert sent > 100
        await ring.wait_for(lambda: ring.wrong_successors() == 0, 120)
        await eventually(ring, lambda: check_delivery(ring, members, groups), timeout=120)
        check_trees(ring, groups)
        assert root_of(ring, groups[0]).node.me.address != root.node.me.address
        await ring.stop()

    run_virtual(scenario())


def test_errors_destroy_anycast_leave(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(30, seed=3)
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        a, b, c = (scribe(n) for n in nodes[:3])
        with pytest.raises(McastError) as exc:
            await a.join("missing", lambda e: None)
        assert exc.value.code == "not_found"
        token, _ = await a.create("room")
        with pytest.raises(McastError) as exc:
            await b.create("room")
        assert exc.value.code == "exists"
        seen: dict[str, list[Event]] = defaultdict(list)
        mb, _ = await b.join("room", seen["b"].append)
        await c.join("room", seen["c"].append)
        assert await a.send("room", b"1") == 1
        got = await a.anycast("room", b"any")
        assert got in (nodes[1].node.me, nodes[2].node.me)
        await b.leave("room", mb)
        assert await a.send("room", b"2") == 2
        await ring.wait_for(lambda: [e.seq for e in seen["c"] if e.kind == MESSAGE] == [1, 2], 30)
        assert [e.seq for e in seen["c"] if e.kind == MESSAGE] == [1, 2]
        assert [e.seq for e in seen["b"] if e.kind == MESSAGE] == [1]
        with pytest.raises(McastError) as exc:
            await b.destroy("room", "not-the-token")
        assert exc.value.code == "denied"
        with pytest.raises(McastError, match="1 MiB"):
            await a.send("room", b"x" * ((1 << 20) + 1))
        await a.destroy("room", token)
        await ring.wait_for(lambda: seen["c"][-1].kind == "ended", 30)
        assert seen["c"][-1].kind == "ended"
        with pytest.raises(McastError):
            await a.send("room", b"3")
        await ring.stop()

    run_virtual(scenario())


def test_ring_broadcast_and_unicast(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(64, seed=5)
        inbox: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for address, sim in ring.nodes.items():
            scribe(sim).inbox.append(lambda k, p, s, a=address: inbox[a].append((k, p)))
        origin = scribe(ring.nodes[sorted(ring.nodes)[0]])
        before = ring.net.calls["Spread"]
        await origin.broadcast(b"hello all")
        await ring.wait_for(lambda: all(inbox[a] for a in ring.nodes), 30)
        assert all(inbox[a] == [("broadcast", b"hello all")] for a in ring.nodes)
        assert ring.net.calls["Spread"] - before == len(ring.nodes) - 1  # N-1 messages
        owner = await origin.unicast("some-key", b"just you")
        assert owner.id == ring.owner_of(ring.space.hash_key("some-key"))
        await ring.wait_for(lambda: len(inbox[owner.address]) == 2, 30)
        assert inbox[owner.address][-1] == ("unicast", b"just you")
        await ring.stop()

    run_virtual(scenario())


def covered(events: list[Event]) -> list[int]:
    """The sequence numbers a member's events account for, in order: delivered or lost."""
    out: list[int] = []
    for e in events:
        if e.kind == MESSAGE:
            out.append(e.seq)
        elif e.kind == "gap":
            out.extend(range(e.seq, e.last_seq + 1))
    return out


def test_member_behind_the_archive_gets_a_gap_event(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(20, seed=9, config=ScribeConfig(archive=5, recent=5,
                                                           parent_timeout=3.0))
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        sender = scribe(nodes[0])
        await sender.create("small")
        root = root_of(ring, "small")
        events: dict[str, list[Event]] = defaultdict(list)
        for host in nodes[1:]:
            if host is not root:
                await scribe(host).join("small", events[host.node.me.address].append)
        await sender.send("small", b"first")
        await asyncio.sleep(1)

        def parent(address: str) -> str:
            p = scribe(ring.nodes[address]).groups["small"].parent
            return p.address if p else ""

        def neighbours(a: str, b: str) -> bool:
            return any(x.address == b for x in ring.nodes[a].node.state.successors) or any(
                x.address == a for x in ring.nodes[b].node.state.successors)

        lagging = next(a for a in sorted(events) if parent(a) and not neighbours(a, parent(a)))
        # One member's link to its parent breaks while 20 messages go by (the archive keeps 5).
        ring.net.cut(parent(lagging), lagging)
        for k in range(20):
            await sender.send("small", f"m{k}".encode())
        await asyncio.sleep(40)
        ring.net.heal()

        def all_covered() -> None:
            for address, evs in events.items():
                assert covered(evs) == list(range(1, 22)), (address, evs)

        await eventually(ring, all_covered)
        assert any(e.kind == "gap" for e in events[lagging])
        await ring.stop()

    run_virtual(scenario())


def test_resuming_member_beyond_the_archive_gets_a_gap_then_the_rest(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(10, seed=4, config=ScribeConfig(archive=5, recent=5))
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        await scribe(nodes[0]).create("r")
        for k in range(12):
            await scribe(nodes[0]).send("r", f"m{k}".encode())
        events: list[Event] = []
        await scribe(nodes[3]).join("r", events.append, resume_after=2)
        await asyncio.sleep(1)
        assert [(e.kind, e.seq) for e in events] == [("gap", 3)] + [
            ("message", s) for s in range(8, 13)]
        assert events[0].last_seq == 7
        await ring.stop()

    run_virtual(scenario())


def taking_over(ring: SimRing, group: str, count: int) -> list[str]:
    """Addresses whose ids land in [group id, current root): their nodes own the group id."""
    gid = ring.space.hash_key(group)
    span = ring.space.distance(gid, root_of(ring, group).node.me.id)
    candidates = (f"10.9.{i >> 8}.{i & 255}:4000" for i in range(1, 1_000_000))
    return [a for a in candidates
            if ring.space.distance(gid, ring.space.hash_address(a)) < span][:count]


def test_new_node_taking_over_the_group_id_becomes_root_without_gap(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(30, seed=11)
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        await scribe(nodes[0]).create("moving")
        members = Members()
        for i in range(10):
            await members.add(nodes[(i * 3 + 1) % len(nodes)], "moving", i)
        for k in range(10):
            await scribe(nodes[0]).send("moving", f"a{k}".encode())
        address = taking_over(ring, "moving", 1)[0]
        flow = asyncio.ensure_future(traffic(ring, ["moving"], 40, random.Random(2), gap=0.1))
        await asyncio.sleep(1)
        newcomer = await ring.add(address)
        await flow
        await ring.converge()
        await eventually(ring, lambda: check_delivery(ring, members, ["moving"]))
        assert root_of(ring, "moving") is newcomer
        check_trees(ring, ["moving"])
        await ring.stop()

    run_virtual(scenario())


def test_two_nodes_taking_over_the_group_id_at_once_leave_one_root_and_no_cycle(
        run_virtual) -> None:
    """Two nodes join at once in front of the root, both owning the group id in turn (the
    first for a moment): one root in the end, every member gets every message, no cycle
    (seen over real gRPC: the first newcomer stayed root of a tree nobody sent to, and the
    old root re-joined under its own child)."""
    async def scenario(seed: int) -> None:
        ring = await build(12, seed=seed)
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        await scribe(nodes[0]).create("race")
        members = Members()
        for i in range(8):
            await members.add(nodes[(i * 5 + 1) % len(nodes)], "race", i)
        for k in range(5):
            await scribe(nodes[0]).send("race", f"a{k}".encode())
        gid = ring.space.hash_key("race")
        addresses = taking_over(ring, "race", 2)
        flow = asyncio.ensure_future(traffic(ring, ["race"], 30, random.Random(seed),
                                             gap=0.2))
        await asyncio.sleep(1)
        await asyncio.gather(*(ring.add(a) for a in addresses))
        await flow
        await ring.converge()
        roots = lambda: [s for s in ring.nodes.values()  # noqa: E731
                         if "race" in scribe(s).roots]
        await eventually(ring, lambda: check_delivery(ring, members, ["race"]))
        await eventually(ring, lambda: check_trees(ring, ["race"]))
        await eventually(ring, lambda: [r.node.me.id for r in roots()] == [
            ring.owner_of(gid)] or None)
        assert [r.node.me.id for r in roots()] == [ring.owner_of(gid)]
        await ring.stop()

    for seed in (11, 12, 13, 14):
        run_virtual(scenario(seed))


def test_roles_report_what_each_node_is_in_each_group(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(12, seed=13)
        nodes = [ring.nodes[a] for a in sorted(ring.nodes)]
        for name in ("beta", "alpha"):
            await scribe(nodes[0]).create(name)
        hosts = [n for n in nodes[1:6] if n is not root_of(ring, "alpha")]
        for i, host in enumerate(hosts):
            await scribe(host).join("alpha", lambda e: None, member=f"m{i}")
        await scribe(hosts[0]).join("beta", lambda e: None, member="b0")
        for k in range(3):
            await scribe(nodes[0]).send("alpha", f"a{k}".encode())
        await asyncio.sleep(2)

        roles = {s.node.me.address: scribe(s).roles() for s in ring.nodes.values()}
        assert [r.name for r in roles[hosts[0].node.me.address]] == ["alpha", "beta"]
        by_node = {(a, r.name): r for a, rs in roles.items() for r in rs}
        root = by_node[(root_of(ring, "alpha").node.me.address, "alpha")]
        assert root.is_root and root.parent is None and root.last_seq == 3
        assert root.group_id == ring.space.hash_key("alpha")
        for i, host in enumerate(hosts):
            role = by_node[(host.node.me.address, "alpha")]
            assert f"m{i}" in role.members and not role.is_root and role.last_seq == 3
        for (address, name), role in by_node.items():
            assert isinstance(role.children, tuple) and isinstance(role.members, tuple)
            if role.parent is not None:  # each link is seen from both ends
                parent = by_node[(role.parent.address, name)]
                assert address in [c.address for c in parent.children]
        with pytest.raises(AttributeError):
            root.is_root = False  # type: ignore[misc]
        await ring.stop()

    run_virtual(scenario())


def test_listen_inbox_until_removed(run_virtual) -> None:
    async def scenario() -> None:
        ring = await build(10, seed=15)
        got: dict[str, list[tuple[str, bytes, str]]] = defaultdict(list)
        removers = [scribe(sim).listen_inbox(
            lambda k, p, s, a=address: got[a].append((k, p, s)))
            for address, sim in ring.nodes.items()]
        origin = scribe(ring.nodes[sorted(ring.nodes)[0]])
        owner = await origin.unicast("inbox-key", b"hello", sender="me")
        await ring.wait_for(lambda: bool(got[owner.address]), 30)
        assert got == {owner.address: [("unicast", b"hello", "me")]}
        for remove in removers:
            remove()
        removers[0]()  # removing twice is harmless
        assert all(not scribe(sim).inbox for sim in ring.nodes.values())
        await origin.unicast("inbox-key", b"again")
        await origin.broadcast(b"everyone")
        await asyncio.sleep(5)
        assert got == {owner.address: [("unicast", b"hello", "me")]}
        await ring.stop()

    run_virtual(scenario())
