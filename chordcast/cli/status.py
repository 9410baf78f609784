"""`chordcast status`: one line per node of the ring, like `nodetool status` or `consul
members` — whether it answers, its id and address, what it stores, its groups, its successor
list, how slow its slowest RPCs are, and whether its neighbours are the ones the ring says they
should be. Exit 1 when any node is not well; `--watch` refreshes in place."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any

from chordcast.cli.common import (
    add_client_command,
    console,
    positive,
    print_json,
    short,
    table,
    with_client,
)
from chordcast.client import Client
from chordcast.results import ClientError
from chordcast.survey import NodeView, RingSurvey, full_list, survey_ring

if TYPE_CHECKING:
    from rich.console import Group


def node_doc(n: NodeView) -> dict[str, Any]:
    info = n.info
    return {"state": n.state, "id": n.id, "address": n.address,
            "keys": info.keys if info else 0, "replicas": info.replicas if info else 0,
            "groups": len(n.roles), "successors": len(info.successors) if info else 0,
            "rpc_p99_ms": round(info.rpc_p99_ms, 3) if info else None,
            "neighbours": n.neighbours}


def render(s: RingSurvey, taken: float) -> Group:
    from rich.console import Group
    from rich.text import Text

    h = s.health()
    full = full_list(s.up())
    title = Text(f"{h['up']} of {h['nodes']} node(s) up; ring "
                 f"{'healthy' if s.healthy else 'NOT healthy'}; "
                 f"{h['full_successor_lists']} with full successor lists, "
                 f"{h['predecessor_known']} know a predecessor "
                 f"({time.strftime('%H:%M:%S', time.localtime(taken))})",
                 style="green" if s.healthy else "bold red")
    rows: list[list[Any]] = []
    for n in s.nodes:
        d = node_doc(n)
        rows.append([d["state"], short(n.id), n.address, d["keys"], d["replicas"], d["groups"],
                     f"{d['successors']}/{full}" if n.info else "-",
                     f"{d['rpc_p99_ms']:.2f}" if n.info else "-", n.neighbours])
    t = table(["state", "id", "address", "keys", "repl", "groups", "succ", "p99 ms",
                      "neighbours"], rows, wrap_last=True)
    return Group(title, t)


def cmd_status(args: argparse.Namespace) -> int:
    async def go(client: Client) -> int:
        if args.watch:
            return await watch(client, args)
        s = await survey_ring(client)
        if args.json:
            print_json({"healthy": s.healthy, "health": s.health(),
                        "nodes": [node_doc(n) for n in s.nodes]})
        else:
            console().print(render(s, time.time()))
        return 0 if s.healthy else 1

    return with_client(args, go)


async def watch(client: Client, args: argparse.Namespace) -> int:
    """Survey again every interval until interrupted: in place on a terminal, one report
    after another (or one JSON line each) when piped."""
    from rich.live import Live
    from rich.text import Text

    out = console()
    live = Live(console=out, auto_refresh=False) if out.is_terminal and not args.json else None
    healthy = True
    try:
        if live is not None:
            live.start()
        while True:
            try:
                s = await survey_ring(client)
            except ClientError as exc:  # (the --via node restarting, say): said, and again
                healthy = False
                note = f"{time.strftime('%H:%M:%S')} cannot survey the ring: {exc}"
                if args.json:
                    print_json({"healthy": False, "error": str(exc), "time": time.time()})
                elif live is not None:
                    live.update(Text(note, style="bold red"), refresh=True)
                else:
                    out.print(note)
                await asyncio.sleep(args.interval)
                continue
            healthy = s.healthy
            if args.json:
                print_json({"healthy": s.healthy, "health": s.health(), "time": time.time(),
                            "nodes": [node_doc(n) for n in s.nodes]})
            elif live is not None:
                live.update(render(s, time.time()), refresh=True)
            else:
                out.print(render(s, time.time()))
                out.print()  # (a blank line between reports)
                out.file.flush()
            await asyncio.sleep(args.interval)
    except asyncio.CancelledError:
        pass
    finally:
        if live is not None:
            live.stop()
    return 0 if healthy else 1


def register(sub: Any) -> None:
    p = add_client_command(sub, "status", cmd_status,
                           "one line per node: up or down, stored keys, groups, successor "
                           "list, RPC p99, neighbours; exit 1 unless every node is well")
    p.add_argument("--watch", action="store_true",
                   help="refresh in place until interrupted (default: once)")
    p.add_argument("--interval", type=positive(float), default=2.0, metavar="SECONDS",
                   help="seconds between refreshes with --watch (default 2)")
