"""`chordcast ring` (walk the ring) and `chordcast lookup` (who owns a key)."""

from __future__ import annotations

import argparse
from typing import Any

from chordcast.cli.common import (
    UsageError,
    add_client_command,
    print_json,
    print_table,
    short,
    vias,
    with_client,
)
from chordcast.cli.inputs import write_output
from chordcast.results import ClientError
from chordcast.survey import survey_ring
from chordcast.web.svg import ring_svg


def cmd_ring(args: argparse.Namespace) -> int:
    if args.svg:
        if args.svg == "-" and args.json:
            raise UsageError("--svg - writes the SVG to stdout; --json too: give one")
        s = with_client(args, lambda c: survey_ring(c, with_roles=False))
        try:
            write_output(args.svg, ring_svg(s).encode())
        except OSError as exc:
            raise ClientError(f"cannot write {args.svg}: {exc.strerror or exc}") from None
        if args.json:
            print_json({"svg": args.svg, "nodes": len(s.nodes), "up": len(s.up())})
        elif args.svg != "-":
            print(f"wrote the ring of {len(s.nodes)} node(s) to {args.svg}")
        return 0
    # (A node that does not answer within --timeout is listed down and the walk goes on.)
    s = with_client(args, lambda c: survey_ring(c, with_roles=False))
    if args.json:
        print_json({"size": len(s.nodes), "nodes": [
            {"id": n.id, "address": n.address, "state": n.state,
             "predecessor": n.info.predecessor.address if n.info and n.info.predecessor
             else None,
             "successors": [p.address for p in n.info.successors] if n.info else [],
             "keys": n.info.keys if n.info else 0}
            for n in s.nodes]})
        return 0
    start = s.nodes[0].address if s.nodes else vias(args)[0]
    down = sum(1 for n in s.nodes if n.state != "up")
    print(f"ring of {len(s.nodes)} node(s), walked from {start}"
          + (f"; {down} do not answer" if down else ""))
    print_table(
        ["id", "address", "predecessor", "successor", "keys"],
        [[short(n.id), n.address,
          (n.info.predecessor.address if n.info.predecessor else "-") if n.info else "",
          (n.info.successors[0].address if n.info.successors else "(self)") if n.info
          else "(does not answer)", n.info.keys if n.info else ""] for n in s.nodes],
    )
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    if (args.key is None) == (args.id is None):
        raise UsageError("give either KEY or --id HEX")
    try:
        r = with_client(args, lambda c: c.lookup(key=args.key, key_id=args.id,
                                                 iterative=args.iterative))
    except ClientError as exc:
        if args.id is not None and exc.code == "INVALID_ARGUMENT":
            raise UsageError(str(exc)) from None  # the --id given is not an id of this ring
        raise
    if args.json:
        print_json({"key": r.key, "key_id": r.key_id,
                    "owner": {"id": r.owner.id, "address": r.owner.address},
                    "hops": r.hops, "path": r.path})
        return 0
    print_table(["key", "key id", "owner", "owner id", "hops"],
                [[r.key or "-", short(r.key_id), r.owner.address, short(r.owner.id), r.hops]])
    print("path: " + " -> ".join(r.path))
    return 0


def register(sub: Any) -> None:
    rp = add_client_command(sub, "ring", cmd_ring, "walk the ring and list its nodes")
    rp.add_argument("--svg", metavar="FILE",
                    help="draw the ring as the live view does into FILE ('-': stdout) "
                    "instead of listing it (default: a table)")
    lk = add_client_command(sub, "lookup", cmd_lookup, "find the node that owns a key")
    lk.add_argument("key", nargs="?", help="the key (hashed with SHA-1)")
    lk.add_argument("--id", metavar="HEX", help="look up a raw identifier instead of a key "
                    "(full width, as `--json` output prints ids; no default)")
    lk.add_argument("--iterative", action="store_true", help="ask each hop in turn")
