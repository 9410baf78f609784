"""What every `chordcast` command shares: argument types, output (tables and JSON), the
usage error, and running one client call against `--via`."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from chord.ids import MAX_BITS, MIN_BITS
from chordcast.address import split_address
from chordcast.client import Client
from chordcast.tls import TlsConfig

T = TypeVar("T")
Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """The command line was wrong (exit 2)."""


# ------------------------------------------------------------------------------- arguments
def address(text: str) -> str:
    try:
        split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def at_least(kind: Callable[[str], T], low: float) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        return value

    return parse


def port(text: str) -> int:
    value = at_least(int, 1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("must be a port number (1-65535)")
    return value


def id_bits(text: str) -> int:
    value = at_least(int, MIN_BITS)(text)
    if value > MAX_BITS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_BITS} and {MAX_BITS}")
    return value


# ------------------------------------------------------------------------------- output
def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False), flush=True)


def short(ident: str) -> str:
    return ident if len(ident) <= 12 else ident[:12] + "…"


# ------------------------------------------------------------------------------- client calls
def with_client(args: argparse.Namespace, call: Callable[[Client], Awaitable[T]]) -> T:
    """Run `call` with a client of the node given by `--via` (errors: `ClientError`)."""

    async def go() -> T:
        async with Client(args.via, tls=tls_config(args)) as client:
            return await call(client)

    return asyncio.run(go())


def add_client_command(sub: Any, name: str, func: Command, help: str) -> argparse.ArgumentParser:
    """A command that talks to a ring: the shared --via and --json options."""
    c: argparse.ArgumentParser = sub.add_parser(name, help=help)
    c.add_argument("--via", type=address, required=True, metavar="HOST:PORT",
                   help="any node of the ring")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    add_tls_options(c, "a client certificate (`chordcast certs client`)")
    c.set_defaults(func=func)
    return c


def add_tls_options(parser: argparse.ArgumentParser, what: str) -> None:
    g = parser.add_argument_group("mutual TLS (each also from its CHORDCAST_TLS_* variable)")
    g.add_argument("--tls-cert", metavar="FILE", help=f"{what}; default: $CHORDCAST_TLS_CERT")
    g.add_argument("--tls-key", metavar="FILE",
                   help="the certificate's private key; default: $CHORDCAST_TLS_KEY")
    g.add_argument("--tls-ca", metavar="FILE",
                   help="the ring's CA certificate; default: $CHORDCAST_TLS_CA")


def tls_config(args: argparse.Namespace) -> TlsConfig | None:
    """The TLS files given on the command line or in the environment (None: no TLS)."""
    return TlsConfig.from_options(args.tls_cert, args.tls_key, args.tls_ca)
