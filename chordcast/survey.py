"""What `chordcast status`, `ring --svg` and the live view show: the ring walked by successor
lists (a share of the successors asked at once), every node's view and its part in each group,
the ring's health, and each group's tree walked down from its root.

Read through the client library only, so a script can do the same; nothing here prints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chordcast.client import MAX_RING_WALK, Client
from chordcast.results import ClientError, GroupRole, NodeInfo, TreeNode

PARALLEL = 32         # nodes asked at once during a walk
MAX_TREE = 100_000    # tree nodes walked (a bound, should a tree's pointers loop)


@dataclass
class NodeView:
    state: str                   # "up", or "down" (named by a neighbour, does not answer)
    id: str
    address: str
    info: NodeInfo | None = None
    roles: list[GroupRole] = field(default_factory=list)
    neighbours: str = ""         # "ok", or what is wrong with its successor or predecessor


@dataclass
class RingSurvey:
    id_bits: int
    nodes: list[NodeView]        # in ring order from the node the client reached
    complete: bool = True        # the walk came back to where it started

    @property
    def healthy(self) -> bool:
        return all(n.state == "up" and n.neighbours == "ok" for n in self.nodes)

    def up(self) -> list[NodeView]:
        return [n for n in self.nodes if n.state == "up"]

    def health(self) -> dict[str, int | bool]:
        """Counts for a glance: nodes up, with full successor lists, with the right
        predecessor, with the right neighbours."""
        up = self.up()
        full = full_list(up)
        return {"nodes": len(self.nodes), "up": len(up),
                "full_successor_lists": sum(1 for n in up if n.info and
                                            len(n.info.successors) >= full),
                "predecessor_known": sum(1 for n in up if n.info and n.info.predecessor),
                "neighbours_ok": sum(1 for n in up if n.neighbours == "ok"),
                "healthy": self.healthy}

    def roots(self) -> dict[str, list[str]]:
        """Each group's root addresses as the nodes report them, by group name (more than
        one: a hand-over in progress, or a fault worth seeing)."""
        found: dict[str, list[str]] = {}
        for n in self.up():
            for r in n.roles:
                if r.root:
                    found.setdefault(r.group, []).append(n.address)
        return dict(sorted(found.items()))


async def survey_ring(client: Client, limit: int = MAX_RING_WALK, with_roles: bool = True
                      ) -> RingSurvey:
    """Walk the ring from the node the client reaches, by first successors: the nodes of the
    current node's successor list are asked at once (a guess at the next ones), and kept up
    to the first whose predecessor in the walk does not name it as its first successor (a
    list gone stale while nodes join); the walk goes on from the last node kept. One that
    does not answer is listed down and the walk goes on past it. Stops where it comes back."""
    gate = asyncio.Semaphore(PARALLEL)

    async def visit(node_id: str, address: str | None) -> NodeView:
        async with gate:
            try:
                info = await client.node_info(address)
                roles = await client.roles(info.node.address) if with_roles else []
            except ClientError:
                return NodeView("down", node_id, address or "", neighbours="does not answer")
        return NodeView("up", info.node.id, info.node.address, info, roles)

    first = await visit("", None)
    if first.info is None:
        await client.node_info()  # raises the reason the first node did not answer
        raise ClientError("the node did not answer")
    nodes, seen, cursor = [first], {first.address}, first.info
    while len(nodes) < limit:
        batch = []
        for s in cursor.successors:
            if s.address in seen:
                break  # around the ring
            seen.add(s.address)
            batch.append(s)
        batch = batch[:limit - len(nodes)]
        if not batch:
            break
        views = await asyncio.gather(*(visit(s.id, s.address) for s in batch))
        kept = _chained(cursor, views)
        for v in views[len(kept):]:
            seen.discard(v.address)  # (guessed too far: met again in its place)
        nodes.extend(kept)
        live = [v.info for v in kept if v.info is not None]
        if not live:
            break
        cursor = live[-1]
    _check_neighbours(nodes)
    last = next((n.info for n in reversed(nodes) if n.info is not None), first.info)
    complete = (bool(last.successors) and last.successors[0].address == first.address) or (
        len(nodes) == 1 and not first.info.successors)
    return RingSurvey(first.info.id_bits, nodes, complete)


def _chained(cursor: NodeInfo, views: list[NodeView]) -> list[NodeView]:
    """The prefix of `views` (asked in the order of `cursor`'s successor list) in which each
    live node is the first successor of the live node before it; down nodes are kept where
    the list put them (nobody can say more about them)."""
    kept: list[NodeView] = []
    before, past_down = cursor, False
    for v in views:
        if (kept and not past_down and before.successors
                and before.successors[0].address != v.address):
            break  # `before` knows a nearer successor than the list did
        if v.info is None:
            past_down = True  # the node after it may rightly be named by nobody we asked
        else:
            before, past_down = v.info, False
        kept.append(v)
    return kept


def full_list(up: list[NodeView]) -> int:
    """How long a full successor list is here: the longest any node has (the nodes' own
    setting, unknown to a client), but no longer than the other live nodes are many."""
    longest = max((len(n.info.successors) for n in up if n.info), default=0)
    return min(longest, max(0, len(up) - 1))


def _check_neighbours(nodes: list[NodeView]) -> None:
    """Each live node's first successor should be the next live node around the ring, its
    predecessor the previous one, and its successor list as long as the longest (a short
    one: the node survives fewer failures at once; it fills as stabilization goes on) and
    naming only live nodes."""
    live = sorted((n for n in nodes if n.info is not None), key=lambda n: int(n.id, 16))
    full = full_list(live)
    up = {n.address for n in live}
    for k, n in enumerate(live):
        assert n.info is not None
        want_succ = live[(k + 1) % len(live)].address
        want_pred = live[k - 1].address
        got_succ = n.info.successors[0].address if n.info.successors else n.address
        got_pred = n.info.predecessor.address if n.info.predecessor else None
        problems = []
        if len(live) > 1 and got_succ != want_succ:
            problems.append(f"successor {got_succ}, not {want_succ}")
        if len(live) > 1 and got_pred != want_pred:
            problems.append(f"predecessor {got_pred or 'unknown'}, not {want_pred}")
        if len(n.info.successors) < full:
            problems.append(f"successor list {len(n.info.successors)} of {full}")
        stale = [s.address for s in n.info.successors if s.address not in up]
        if stale:  # (a node that failed, still named until stabilization reaches here)
            problems.append(f"successor list names {', '.join(stale)} (down or gone)")
        n.neighbours = "; ".join(problems) or "ok"


RolesOf = Callable[[str], Awaitable[list[GroupRole]]]


async def group_tree(group: str, root: str, roles_of: RolesOf) -> list[TreeNode]:
    """The group's tree, breadth first from its root, as each node names its children (a
    child that does not answer is listed with nothing below it). A level's nodes are asked
    at once (PARALLEL at a time), so a silent one costs one timeout per level, not each."""
    gate = asyncio.Semaphore(PARALLEL)

    async def role_at(address: str) -> GroupRole | None:
        async with gate:
            try:
                roles = await roles_of(address)
            except ClientError:
                return None
        return next((r for r in roles if r.group == group), None)

    out: list[TreeNode] = []
    level: list[tuple[str, str]] = [(root, "")]
    seen, depth = {root}, 0
    while level and len(out) < MAX_TREE:
        level = level[:MAX_TREE - len(out)]
        found = await asyncio.gather(*(role_at(address) for address, _ in level))
        below: list[tuple[str, str]] = []
        for (address, parent), role in zip(level, found, strict=True):
            children = role.child_addresses if role else ()
            out.append(TreeNode(address, parent, depth, children,
                                role.member_names if role else (), bool(role and role.root)))
            for child in children:
                if child not in seen:
                    seen.add(child)
                    below.append((child, address))
        level, depth = below, depth + 1
    return out
