"""`chordcast status`: one line per node of the ring, like `nodetool status` or `consul
members` — whether it answers, its id and address, what it stores, its groups, and whether
its neighbours are the ones the ring says they should be. Exit 1 when any node is not well."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from chordcast.cli.common import add_client_command, print_json, print_table, short, with_client
from chordcast.client import MAX_RING_WALK, Client
from chordcast.results import ClientError, NodeInfo


@dataclass
class NodeStatus:
    state: str            # "up", or "down" (named by a neighbour, does not answer)
    id: str
    address: str
    keys: int = 0
    replicas: int = 0
    groups: int = 0       # groups whose tree the node is part of
    successors: int = 0   # the length of its successor list
    neighbours: str = ""  # "ok", or what is wrong with its successor or predecessor


async def survey(client: Client, limit: int = MAX_RING_WALK) -> list[NodeStatus]:
    """Walk the ring by successors from the node the client reaches; a successor that does
    not answer is listed as down and the walk goes on from the next one in the list."""
    first = await client.node_info()
    infos: list[NodeInfo] = [first]
    rows = [await _row(client, first)]
    seen = {first.node.address}
    while len(rows) < limit:
        nxt: NodeInfo | None = None
        for s in infos[-1].successors:
            if s.address in seen:
                break
            try:
                nxt = await client.node_info(s.address)
                break
            except ClientError:
                seen.add(s.address)
                rows.append(NodeStatus("down", s.id, s.address, neighbours="does not answer"))
        if nxt is None:
            break
        seen.add(nxt.node.address)
        infos.append(nxt)
        rows.append(await _row(client, nxt))
    _check_neighbours(infos, rows)
    return rows


async def _row(client: Client, info: NodeInfo) -> NodeStatus:
    try:
        groups = len(await client.roles(info.node.address))
    except ClientError:
        groups = 0
    return NodeStatus("up", info.node.id, info.node.address, info.keys, info.replicas, groups,
                      len(info.successors))


def _check_neighbours(infos: list[NodeInfo], rows: list[NodeStatus]) -> None:
    """Each live node's first successor should be the next live node of the walk, and its
    predecessor the previous one."""
    live = sorted(infos, key=lambda i: int(i.node.id, 16))
    by_address = {r.address: r for r in rows}
    for n, info in enumerate(live):
        want_succ = live[(n + 1) % len(live)].node.address
        want_pred = live[n - 1].node.address
        got_succ = info.successors[0].address if info.successors else info.node.address
        got_pred = info.predecessor.address if info.predecessor else None
        problems = []
        if len(live) > 1 and got_succ != want_succ:
            problems.append(f"successor {got_succ}, not {want_succ}")
        if len(live) > 1 and got_pred != want_pred:
            problems.append(f"predecessor {got_pred or 'unknown'}, not {want_pred}")
        by_address[info.node.address].neighbours = "; ".join(problems) or "ok"


def cmd_status(args: argparse.Namespace) -> int:
    rows = with_client(args, survey)
    healthy = all(r.state == "up" and r.neighbours == "ok" for r in rows)
    if args.json:
        print_json({"healthy": healthy, "nodes": [asdict(r) for r in rows]})
    else:
        up = sum(r.state == "up" for r in rows)
        print(f"{up} of {len(rows)} node(s) up; ring {'healthy' if healthy else 'NOT healthy'}")
        print_table(["state", "id", "address", "keys", "replicas", "groups", "successors",
                     "neighbours"],
                    [[r.state, short(r.id), r.address, r.keys, r.replicas, r.groups,
                      r.successors, r.neighbours] for r in rows])
    return 0 if healthy else 1


def register(sub: Any) -> None:
    add_client_command(sub, "status", cmd_status,
                       "one line per node: up or down, stored keys, groups, neighbours; "
                       "exit 1 unless every node is well")
