"""`chordcast put|get|delete`: the DHT's key-value storage."""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

from chord.storage import MAX_VALUE_BYTES
from chordcast.cli.common import UsageError, add_client_command, print_json, with_client
from chordcast.cli.inputs import CannotRead, TooLarge, text_or_file, write_output


def cmd_put(args: argparse.Namespace) -> int:
    try:
        value = text_or_file(args.value, args.file, MAX_VALUE_BYTES, "VALUE", "value")
    except CannotRead as exc:
        raise UsageError(str(exc)) from None
    except TooLarge as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stored = with_client(args, lambda c: c.put(args.key, value))
    if args.json:
        print_json({"key": args.key, "owner": stored.owner.address, "version": stored.version})
    else:
        print(f"stored {args.key!r} ({len(value)} bytes) on {stored.owner.address}, "
              f"version {stored.version}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    if args.json and (args.raw or args.output):
        raise UsageError("--json prints the value in a JSON document; --raw and --output "
                         "write its bytes: give one")
    v = with_client(args, lambda c: c.get(args.key))
    if not v.found:
        if args.json:
            print_json({"key": args.key, "found": False, "owner": v.owner.address})
        print(f"error: key {args.key!r} not found (owner {v.owner.address})", file=sys.stderr)
        return 1
    if args.output:
        try:
            write_output(args.output, v.value)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
    if args.raw:  # byte-exact, nothing added: for pipes and files
        sys.stdout.buffer.write(v.value)
        sys.stdout.buffer.flush()
        return 0
    try:
        text, encoding = v.value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(v.value).decode("ascii"), "base64"
    if args.json:
        print_json({"key": args.key, "found": True, "value": text, "encoding": encoding,
                    "version": v.version, "owner": v.owner.address})
    elif not args.output:
        print(text)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    d = with_client(args, lambda c: c.delete(args.key))
    if args.json:
        print_json({"key": args.key, "deleted": d.found, "owner": d.owner.address})
    elif d.found:
        print(f"deleted {args.key!r} on {d.owner.address}")
    if not d.found:
        print(f"error: key {args.key!r} not found", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    put = add_client_command(sub, "put", cmd_put, "store a value")
    put.add_argument("key")
    put.add_argument("value", nargs="?", help="the value, as text (or give --file)")
    put.add_argument("--file", metavar="F", help="read the value from a file, `-` for "
                     "standard input (up to 1 MiB; default: the VALUE argument)")
    get = add_client_command(sub, "get", cmd_get, "read a value")
    get.add_argument("key")
    how = get.add_mutually_exclusive_group()
    how.add_argument("--raw", action="store_true", help="write the value's bytes exactly, "
                     "nothing added (default: text, or base64 when it is not UTF-8)")
    how.add_argument("--output", metavar="FILE", help="write the value's bytes to FILE "
                     "('-': stdout; default: print the value)")
    de = add_client_command(sub, "delete", cmd_delete, "delete a value")
    de.add_argument("key")
