"""`chordcast group ...`, `chordcast broadcast|unicast|inbox`: the multicast commands."""

from __future__ import annotations

import argparse
import base64
import sys
from typing import TYPE_CHECKING, Any

from chordcast.cli.common import (
    UsageError,
    add_client_command,
    at_least,
    console,
    positive,
    print_json,
    print_table,
    table,
    vias,
    with_client,
)
from chordcast.cli.inputs import CannotRead, TooLarge, text_or_file
from chordcast.client import Client
from chordcast.results import ClientError, GroupInfo, GroupMessage, TreeNode
from chordcast.survey import group_tree
from mcast.scribe import MAX_PAYLOAD

if TYPE_CHECKING:
    from rich.tree import Tree


def payload_fields(payload: bytes) -> dict[str, str]:
    """The payload as the UTF-8 text sent, or base64 (with "encoding") for binary."""
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "encoding": "base64"}


def read_payload(args: argparse.Namespace) -> bytes:
    try:
        return text_or_file(args.text, args.file, MAX_PAYLOAD, "TEXT", "payload")
    except CannotRead as exc:
        raise UsageError(str(exc)) from None
    except TooLarge as exc:
        raise ClientError(str(exc)) from None


def principals(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one or more names, comma-separated")
    return names


def cmd_create(args: argparse.Namespace) -> int:
    g = with_client(args, lambda c: c.create(args.name, publishers=args.publishers or (),
                                             subscribers=args.subscribers or ()))
    if args.json:
        print_json({"group": g.group, "group_id": g.group_id, "root": g.root, "token": g.token})
    else:
        print(f"created group {g.group!r} (id {g.group_id[:12]}…) with root {g.root}")
        print(f"token (destroys it; on a TLS ring the creator's certificate does too): "
              f"{g.token}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    async def go(client: Client) -> int:
        seen = 0
        after = None if args.from_seq is None else max(0, args.from_seq - 1)
        async with client.join(args.name, member=args.member or "", resume_after=after) as sub:
            if not args.json:
                print(f"joined {args.name!r} via {sub.access_node}; delivery starts after "
                      f"seq {sub.start_seq}", file=sys.stderr)
            async for m in sub:
                show_message(m, args.json)
                if m.kind == "ended":
                    return 0
                if m.kind == "message":
                    seen += 1
                    if args.count and seen >= args.count:
                        return 0
        return 0

    try:
        return int(with_client(args, go))
    except KeyboardInterrupt:
        return 0


def show_message(m: GroupMessage, as_json: bool) -> None:
    if as_json:
        doc: dict[str, Any] = {"group": m.group, "seq": m.seq, **payload_fields(m.payload),
                               "sender": m.sender, "ts": m.ts}
        if m.kind != "message":
            doc["kind"] = m.kind
        if m.kind == "gap":
            doc["last_seq"] = m.last_seq
        print_json(doc)
    elif m.kind == "message":
        text = payload_fields(m.payload)["payload"]
        print(f"[{m.seq}] {m.sender}: {text}", flush=True)
    elif m.kind == "gap":
        print(f"[gap] messages {m.seq}..{m.last_seq} are lost", flush=True)
    elif m.kind == "ended":
        print(f"[ended] group {m.group!r} was destroyed", flush=True)
    else:
        print(f"[anycast] {m.sender}: {payload_fields(m.payload)['payload']}", flush=True)


def cmd_send(args: argparse.Namespace) -> int:
    payload = read_payload(args)
    seq = with_client(args, lambda c: c.send(args.name, payload, args.sender or ""))
    if args.json:
        print_json({"group": args.name, "seq": seq})
    else:
        print(seq)
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    left = with_client(args, lambda c: c.detach(args.name, args.member))
    if args.json:
        print_json({"group": args.name, "member": args.member, "left": left})
    elif left:
        print(f"member {args.member!r} left {args.name!r}")
    if not left:
        print(f"error: no member {args.member!r} of {args.name!r} on {vias(args)[0]}",
              file=sys.stderr)
        return 1
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    with_client(args, lambda c: c.destroy(args.name, args.token))
    if args.json:
        print_json({"group": args.name, "destroyed": True})
    else:
        print(f"destroyed {args.name!r}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    async def go(client: Client) -> tuple[GroupInfo, list[TreeNode]]:
        g = await client.info(args.name)
        return g, await group_tree(g.group, g.root, client.roles)

    g, tree = with_client(args, go)
    members = [{"name": name, "node": t.address} for t in tree for name in t.members]
    doc = {"group": g.group, "group_id": g.group_id, "root": g.root, "creator": g.creator,
           "created": g.created, "last_seq": g.last_seq, "members": g.members, "depth": g.depth,
           "owner": g.owner, "publishers": list(g.publishers),
           "subscribers": list(g.subscribers), "member_names": members,
           "tree": [{"address": t.address, "parent": t.parent, "depth": t.depth,
                     "children": list(t.children), "members": list(t.members)} for t in tree]}
    if args.json:
        print_json(doc)
        return 0
    out = console()
    if args.tree:
        out.print(tree_picture(g, tree))
        return 0
    out.print(table(["group", "root", "members", "depth", "last seq", "creator", "publishers",
                     "subscribers"],
                    [[g.group, g.root, g.members, g.depth, g.last_seq, g.creator,
                      ",".join(g.publishers) or "anyone", ",".join(g.subscribers) or "anyone"]]))
    if members:
        out.print(table(["member", "attached at"], [[m["name"] or "(unnamed)", m["node"]]
                                                    for m in members]))
    return 0


def tree_picture(g: GroupInfo, tree: list[TreeNode]) -> Tree:
    """The tree as rich draws it: each node with its role and depth, its members by name."""
    from rich.markup import escape
    from rich.tree import Tree

    branches: dict[str, Tree] = {}
    picture = Tree(escape(f"group {g.group!r} (last seq {g.last_seq}, "
                          f"{sum(len(t.members) for t in tree)} members)"))
    for t in tree:
        role = "root" if t.root else ("forwarder" if t.children else "member node")
        label = f"[bold]{escape(t.address)}[/bold] {role}, depth {t.depth}"
        if t.members:
            label += " — members: " + escape(", ".join(m or "(unnamed)" for m in t.members))
        parent = branches.get(t.parent)
        branches[t.address] = (parent or picture).add(label)
    return picture


def cmd_list(args: argparse.Namespace) -> int:
    groups = with_client(args, lambda c: c.list_groups())
    if args.json:
        print_json({"groups": [{"group": g.group, "group_id": g.group_id, "root": g.root,
                              "creator": g.creator, "last_seq": g.last_seq} for g in groups]})
    else:
        print(f"{len(groups)} group(s)")
        print_table(["group", "root", "last seq", "creator"],
                    [[g.group, g.root, g.last_seq, g.creator] for g in groups])
    return 0


def cmd_anycast(args: argparse.Namespace) -> int:
    payload = read_payload(args)
    node = with_client(args, lambda c: c.anycast(args.name, payload, args.sender or ""))
    if args.json:
        print_json({"group": args.name, "delivered_at": node})
    else:
        print(f"delivered to a member at {node}")
    return 0


def cmd_broadcast(args: argparse.Namespace) -> int:
    payload = read_payload(args)
    reached = with_client(args, lambda c: c.broadcast(payload, args.sender or ""))
    if args.json:
        print_json({"broadcast": True, "reached": reached})
    else:
        print(f"delivered to the inbox of {reached} node(s)")
    return 0


def cmd_unicast(args: argparse.Namespace) -> int:
    payload = read_payload(args)
    owner = with_client(args, lambda c: c.unicast(args.key, payload, args.sender or ""))
    if args.json:
        print_json({"key": args.key, "owner": owner})
    else:
        print(f"delivered to {owner}, the owner of {args.key!r}")
    return 0


def cmd_inbox(args: argparse.Namespace) -> int:
    async def go(client: Client) -> int:
        seen = 0
        async for m in client.inbox():
            if args.json:
                print_json({"kind": m.kind, **payload_fields(m.payload), "sender": m.sender})
            else:
                print(f"[{m.kind}] {m.sender}: {payload_fields(m.payload)['payload']}",
                      flush=True)
            seen += 1
            if args.count and seen >= args.count:
                return 0
        return 0

    try:
        return int(with_client(args, go))
    except KeyboardInterrupt:
        return 0


def register(sub: Any) -> None:
    client_cmd = add_client_command
    group = sub.add_parser("group", help="multicast groups (Scribe)")
    gsub = group.add_subparsers(dest="group_command", required=True)

    def text_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("text", nargs="?", help="the payload as text")
        p.add_argument("--file", metavar="F", help="read the payload from a file, `-` for "
                       "standard input (up to 1 MiB; default: the TEXT argument)")
        p.add_argument("--sender", help="the sender name members see (default: the node; "
                       "on a ring with TLS, always the caller's certificate name)")

    p = client_cmd(gsub, "create", cmd_create, "create a group (prints its token)")
    p.add_argument("name")
    p.add_argument("--publishers", type=principals, metavar="A,B",
                   help="only these client-certificate names may send ('*': any certified "
                        "caller; default: anyone; needs TLS)")
    p.add_argument("--subscribers", type=principals, metavar="A,B",
                   help="only these may subscribe (same form; default: anyone)")
    p = client_cmd(gsub, "join", cmd_join, "join and print messages as they arrive")
    p.add_argument("name")
    p.add_argument("--member", help="a name for this member, shown in `group info` and used "
                   "by `group leave` (default: unnamed)")
    p.add_argument("--from-seq", type=at_least(int, 0), metavar="N",
                   help="deliver from message N on (from the group's archive; 0: all it "
                   "keeps; default: only messages sent from now)")
    p.add_argument("--count", type=positive(int), metavar="N",
                   help="exit after N messages (default: run until interrupted)")
    p = client_cmd(gsub, "send", cmd_send, "multicast a message; prints its sequence number")
    p.add_argument("name")
    text_args(p)
    p = client_cmd(gsub, "leave", cmd_leave, "detach a named member from a group")
    p.add_argument("name")
    p.add_argument("--member", required=True,
                   help="the name the member joined with (no default)")
    p = client_cmd(gsub, "destroy", cmd_destroy, "destroy a group (creator only)")
    p.add_argument("name")
    p.add_argument("--token", default="",
                   help="the token `group create` printed (default: none; not needed by the "
                        "creator's certificate on a TLS ring)")
    p = client_cmd(gsub, "info", cmd_info, "a group's root, members (by name) and depth")
    p.add_argument("name")
    p.add_argument("--tree", action="store_true",
                   help="draw the multicast tree, with each node's members (default: a table)")
    client_cmd(gsub, "list", cmd_list, "every group in the ring")
    p = client_cmd(gsub, "anycast", cmd_anycast, "deliver to one member")
    p.add_argument("name")
    text_args(p)

    p = client_cmd(sub, "broadcast", cmd_broadcast, "send to every ring node's inbox")
    text_args(p)
    p = client_cmd(sub, "unicast", cmd_unicast, "send to the inbox of a key's owner")
    p.add_argument("key")
    text_args(p)
    p = client_cmd(sub, "inbox", cmd_inbox, "print what arrives in a node's inbox")
    p.add_argument("--count", type=positive(int), metavar="N",
                   help="exit after N messages (default: run until interrupted)")
