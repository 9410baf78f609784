"""The survey's pure parts: a group's tree walked from its root, and the ring's health."""

from __future__ import annotations

import asyncio

from chordcast.results import ClientError, GroupRole, NodeInfo, Peer
from chordcast.survey import NodeView, RingSurvey, _check_neighbours, group_tree, survey_ring


def role(group: str, children: tuple[str, ...] = (), members: tuple[str, ...] = (),
         root: bool = False) -> GroupRole:
    return GroupRole(group, root, "", len(children), len(members), 0, children, members)


def test_tree_is_walked_breadth_first_with_members_and_depths() -> None:
    roles = {"r": [role("g", ("a", "b"), root=True), role("other", ("x",))],
             "a": [role("g", ("c",), ("ann",))], "b": [role("g", (), ("ben", "cy"))],
             "c": [role("g", (), ("dee",))]}

    async def roles_of(address: str) -> list[GroupRole]:
        return roles[address]

    tree = asyncio.run(group_tree("g", "r", roles_of))
    assert [(t.address, t.parent, t.depth) for t in tree] == [
        ("r", "", 0), ("a", "r", 1), ("b", "r", 1), ("c", "a", 2)]
    assert tree[0].root and not any(t.root for t in tree[1:])
    assert {t.address: t.members for t in tree} == {"r": (), "a": ("ann",),
                                                     "b": ("ben", "cy"), "c": ("dee",)}


def test_a_silent_child_is_listed_empty_and_a_loop_is_walked_once() -> None:
    async def roles_of(address: str) -> list[GroupRole]:
        if address == "dead":
            raise ClientError("does not answer", "UNAVAILABLE", unreachable=True)
        return {"r": [role("g", ("a", "dead"), root=True)],
                "a": [role("g", ("r",))]}[address]  # a names the root as its child

    tree = asyncio.run(group_tree("g", "r", roles_of))
    assert [t.address for t in tree] == ["r", "a", "dead"]
    assert tree[2].children == () and tree[2].members == ()


def info(n: int, succ: int, pred: int | None) -> NodeInfo:
    def p(k: int) -> Peer:
        return Peer(f"{k:02x}", f"h:{k}")

    return NodeInfo(p(n), p(pred) if pred is not None else None, [p(succ), p(succ % 3 + 1)][
        : 1 if n == 2 else 2], [], 0, 0, 8)


def test_health_counts_and_wrong_neighbours_are_named() -> None:
    views = [NodeView("up", f"{k:02x}", f"h:{k}", info(k, s, pr))
             for k, s, pr in ((1, 2, 3), (2, 3, 1), (3, 1, None))]
    views.append(NodeView("down", "04", "h:4", neighbours="does not answer"))
    _check_neighbours(views)
    s = RingSurvey(8, views)
    assert [v.neighbours for v in views[:3]] == [
        "ok", "successor list 1 of 2", "predecessor unknown, not h:2"]
    assert s.health() == {"nodes": 4, "up": 3, "full_successor_lists": 2,
                          "predecessor_known": 2, "neighbours_ok": 1, "healthy": False}


def test_a_stale_successor_list_does_not_hide_a_node_that_just_joined() -> None:
    """The first node's list skips 2 (it joined a moment ago); 1 already names it first."""
    succ = {0: [1, 3], 1: [2, 3], 2: [3, 0], 3: [0, 1]}

    class Fake:
        async def node_info(self, address: str | None = None) -> NodeInfo:
            k = 0 if address is None else int(address.split(":")[1])
            return NodeInfo(Peer(f"{k:02x}", f"h:{k}"),
                            Peer(f"{(k - 1) % 4:02x}", f"h:{(k - 1) % 4}"),
                            [Peer(f"{s:02x}", f"h:{s}") for s in succ[k]], [], 0, 0, 8)

        async def roles(self, address: str) -> list[GroupRole]:
            return []

    survey = asyncio.run(survey_ring(Fake()))  # type: ignore[arg-type]
    assert [n.address for n in survey.nodes] == ["h:0", "h:1", "h:2", "h:3"]
    assert survey.healthy


def test_a_node_that_does_not_answer_is_listed_down_and_the_walk_goes_on() -> None:
    succ = {0: [1, 2], 1: [2, 3], 2: [3, 0], 3: [0, 1]}

    class Fake:
        async def node_info(self, address: str | None = None) -> NodeInfo:
            k = 0 if address is None else int(address.split(":")[1])
            if k == 1:
                raise ClientError("h:1 does not answer", "UNAVAILABLE", unreachable=True)
            return NodeInfo(Peer(f"{k:02x}", f"h:{k}"), None,
                            [Peer(f"{s:02x}", f"h:{s}") for s in succ[k]], [], 0, 0, 8)

        async def roles(self, address: str) -> list[GroupRole]:
            return []

    survey = asyncio.run(survey_ring(Fake()))  # type: ignore[arg-type]
    assert [(n.address, n.state) for n in survey.nodes] == [
        ("h:0", "up"), ("h:1", "down"), ("h:2", "up"), ("h:3", "up")]
    assert not survey.healthy and survey.complete
