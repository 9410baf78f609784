"""`chordcast group ...`, `chordcast broadcast|unicast|inbox`: the multicast commands."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Callable
from typing import Any

from chordcast.cli.inputs import CannotRead, TooLarge, text_or_file
from chordcast.mcast_client_tmp import Client, GroupMessage, McastClientError
from mcast.scribe import MAX_PAYLOAD


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
        raise McastUsage(str(exc)) from None
    except TooLarge as exc:
        raise McastClientError(str(exc)) from None


class McastUsage(Exception):
    pass


def run(coro_fn: Callable[[Client], Any], via: str) -> Any:
    async def go() -> Any:
        async with Client(via) as client:
            return await coro_fn(client)

    return asyncio.run(go())


def cmd_create(args: argparse.Namespace, out: Any) -> int:
    g = run(lambda c: c.create(args.name), args.via)
    if args.json:
        out.json({"group": g.group, "group_id": g.group_id, "root": g.root, "token": g.token})
    else:
        print(f"created group {g.group!r} (id {g.group_id[:12]}…) with root {g.root}")
        print(f"token (needed to destroy it): {g.token}")
    return 0


def cmd_join(args: argparse.Namespace, out: Any) -> int:
    async def go(client: Client) -> int:
        seen = 0
        async with client.join(args.name, member=args.member or "") as sub:
            if not args.json:
                print(f"joined {args.name!r} via {sub.access_node}; delivery starts after "
                      f"seq {sub.start_seq}", file=sys.stderr)
            async for m in sub:
                show_message(m, args.json, out)
                if m.kind == "ended":
                    return 0
                if m.kind == "message":
                    seen += 1
                    if args.count and seen >= args.count:
                        return 0
        return 0

    try:
        return int(run(go, args.via))
    except KeyboardInterrupt:
        return 0


def show_message(m: GroupMessage, as_json: bool, out: Any) -> None:
    if as_json:
        doc: dict[str, Any] = {"group": m.group, "seq": m.seq, **payload_fields(m.payload),
                               "sender": m.sender, "ts": m.ts}
        if m.kind != "message":
            doc["kind"] = m.kind
        if m.kind == "gap":
            doc["last_seq"] = m.last_seq
        out.json(doc)
    elif m.kind == "message":
        text = payload_fields(m.payload)["payload"]
        print(f"[{m.seq}] {m.sender}: {text}", flush=True)
    elif m.kind == "gap":
        print(f"[gap] messages {m.seq}..{m.last_seq} are lost", flush=True)
    elif m.kind == "ended":
        print(f"[ended] group {m.group!r} was destroyed", flush=True)
    else:
        print(f"[anycast] {m.sender}: {payload_fields(m.payload)['payload']}", flush=True)


def cmd_send(args: argparse.Namespace, out: Any) -> int:
    payload = read_payload(args)
    seq = run(lambda c: c.send(args.name, payload, args.sender or ""), args.via)
    if args.json:
        out.json({"group": args.name, "seq": seq})
    else:
        print(seq)
    return 0


def cmd_leave(args: argparse.Namespace, out: Any) -> int:
    left = run(lambda c: c.detach(args.name, args.member), args.via)
    if args.json:
        out.json({"group": args.name, "member": args.member, "left": left})
    elif left:
        print(f"member {args.member!r} left {args.name!r}")
    if not left:
        print(f"error: no member {args.member!r} of {args.name!r} on {args.via}",
              file=sys.stderr)
        return 1
    return 0


def cmd_destroy(args: argparse.Namespace, out: Any) -> int:
    run(lambda c: c.destroy(args.name, args.token), args.via)
    if args.json:
        out.json({"group": args.name, "destroyed": True})
    else:
        print(f"destroyed {args.name!r}")
    return 0


def cmd_info(args: argparse.Namespace, out: Any) -> int:
    g = run(lambda c: c.info(args.name), args.via)
    doc = {"group": g.group, "group_id": g.group_id, "root": g.root, "creator": g.creator,
           "created": g.created, "last_seq": g.last_seq, "members": g.members, "depth": g.depth}
    if args.json:
        out.json(doc)
    else:
        out.table(["group", "root", "members", "depth", "last seq", "creator"],
                  [[g.group, g.root, g.members, g.depth, g.last_seq, g.creator]])
    return 0


def cmd_list(args: argparse.Namespace, out: Any) -> int:
    groups = run(lambda c: c.groups(), args.via)
    if args.json:
        out.json({"groups": [{"group": g.group, "group_id": g.group_id, "root": g.root,
                              "creator": g.creator, "last_seq": g.last_seq} for g in groups]})
    else:
        print(f"{len(groups)} group(s)")
        out.table(["group", "root", "last seq", "creator"],
                  [[g.group, g.root, g.last_seq, g.creator] for g in groups])
    return 0


def cmd_anycast(args: argparse.Namespace, out: Any) -> int:
    payload = read_payload(args)
    node = run(lambda c: c.anycast(args.name, payload, args.sender or ""), args.via)
    if args.json:
        out.json({"group": args.name, "delivered_at": node})
    else:
        print(f"delivered to a member at {node}")
    return 0


def cmd_broadcast(args: argparse.Namespace, out: Any) -> int:
    payload = read_payload(args)
    run(lambda c: c.broadcast(payload, args.sender or ""), args.via)
    if args.json:
        out.json({"broadcast": True})
    return 0


def cmd_unicast(args: argparse.Namespace, out: Any) -> int:
    payload = read_payload(args)
    owner = run(lambda c: c.unicast(args.key, payload, args.sender or ""), args.via)
    if args.json:
        out.json({"key": args.key, "owner": owner})
    else:
        print(f"delivered to {owner}, the owner of {args.key!r}")
    return 0


def cmd_inbox(args: argparse.Namespace, out: Any) -> int:
    async def go(client: Client) -> int:
        seen = 0
        async for m in client.inbox():
            if args.json:
                out.json({"kind": m.kind, **payload_fields(m.payload), "sender": m.sender})
            else:
                print(f"[{m.kind}] {m.sender}: {payload_fields(m.payload)['payload']}",
                      flush=True)
            seen += 1
            if args.count and seen >= args.count:
                return 0
        return 0

    try:
        return int(run(go, args.via))
    except KeyboardInterrupt:
        return 0


def add_commands(sub: Any, client_cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the multicast commands; `client_cmd(subparsers, name, func, help)` adds the
    shared --via and --json options."""
    group = sub.add_parser("group", help="multicast groups (Scribe)")
    gsub = group.add_subparsers(dest="group_command", required=True)

    def text_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("text", nargs="?", help="the payload as text")
        p.add_argument("--file", metavar="F", help="read the payload from a file (up to 1 MiB)")
        p.add_argument("--sender", help="the sender name members see (default: the node)")

    p = client_cmd(gsub, "create", cmd_create, "create a group (prints its token)")
    p.add_argument("name")
    p = client_cmd(gsub, "join", cmd_join, "join and print messages as they arrive")
    p.add_argument("name")
    p.add_argument("--member", help="a name for this member (for `group leave`)")
    p.add_argument("--count", type=int, default=0, help="exit after N messages")
    p = client_cmd(gsub, "send", cmd_send, "multicast a message; prints its sequence number")
    p.add_argument("name")
    text_args(p)
    p = client_cmd(gsub, "leave", cmd_leave, "detach a named member from a group")
    p.add_argument("name")
    p.add_argument("--member", required=True)
    p = client_cmd(gsub, "destroy", cmd_destroy, "destroy a group (creator only)")
    p.add_argument("name")
    p.add_argument("--token", required=True)
    p = client_cmd(gsub, "info", cmd_info, "a group's root, members and depth")
    p.add_argument("name")
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
    p.add_argument("--count", type=int, default=0, help="exit after N messages")
