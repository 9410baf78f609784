"""What every `chordcast` command shares: argument types, output (tables and JSON), the
usage error, and running one client call against `--via`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from chord.ids import MAX_BITS, MIN_BITS
from chordcast.address import split_address
from chordcast.client import Client
from chordcast.tls import TlsConfig

if TYPE_CHECKING:  # rich is imported where output is made: a node process never loads it
    from rich.console import Console
    from rich.table import Table

T = TypeVar("T")
Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """The command line was wrong (exit 2)."""


VIA_ENV = "CHORDCAST_VIA"
DEFAULT_TIMEOUT = 10.0


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help already says it (options
    whose absence means something other than a value say so in their own words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or action.default is None or action.default is False
                or action.default in ("", argparse.SUPPRESS)):
            return text
        if text.endswith(")"):  # one parenthesis, not two in a row
            return f"{text[:-1]}; default: %(default)s)"
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line that names the command (`chordcast put: the
    following arguments are required: key`) and exit status 2, as the help says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        usage_error(self.prog, message)
        sys.exit(2)


def usage_error(prog: str, message: str) -> None:
    """The one line a wrong command line gets (whether argparse or a command found it)."""
    print(f"{prog}: {message} (see {prog} --help)", file=sys.stderr)


# ------------------------------------------------------------------------------- arguments
def address(text: str) -> str:
    try:
        split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def at_least(kind: Callable[[str], T], low: float) -> Callable[[str], T]:
    return _number(kind, lambda v: v >= low, f"must be at least {low}")


def positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    """A number above zero (a count or a duration: 0 and negatives mean nothing sensible)."""
    return _number(kind, lambda v: v > 0, "must be above 0")


def _number(kind: Callable[[str], T], fits: Callable[[Any], bool], rule: str
            ) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not fits(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value

    return parse


def port(text: str) -> int:
    value = at_least(int, 1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("must be a port number (1-65535)")
    return value


def listen_port(text: str) -> int:
    """A port to listen on: 0 picks a free one."""
    value = at_least(int, 0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("must be a port number (0-65535; 0: a free one)")
    return value


def id_bits(text: str) -> int:
    value = at_least(int, MIN_BITS)(text)
    if value > MAX_BITS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_BITS} and {MAX_BITS}")
    return value


# ------------------------------------------------------------------------------- output
def console(stderr: bool = False) -> Console:
    """rich's console for stdout (or stderr): on a terminal, its width and colours; piped,
    plain text with no width limit, so a row stays one line for grep and awk."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False, emoji=False)
    return Console(file=stream, width=100_000, no_color=True, highlight=False, emoji=False,
                   soft_wrap=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], wrap_last: bool = False
          ) -> Table:
    """Columns never wrap (a cell stays pasteable), but the last may with `wrap_last` (free
    text, so a narrow terminal still shows every column)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold",
              collapse_padding=True)
    for k, h in enumerate(headers):
        t.add_column(h, no_wrap=not (wrap_last and k == len(headers) - 1))
    for row in rows:
        t.add_row(*(escape(str(c)) for c in row))
    return t


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    console().print(table(headers, rows))


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False), flush=True)


def short(ident: str) -> str:
    return ident if len(ident) <= 12 else ident[:12] + "…"


# ------------------------------------------------------------------------------- client calls
def with_client(args: argparse.Namespace, call: Callable[[Client], Awaitable[T]]) -> T:
    """Run `call` with a client of the nodes given by `--via` or CHORDCAST_VIA, in that
    order of preference, the next tried when one does not answer (errors: `ClientError`)."""

    async def go() -> T:
        async with Client(vias(args), timeout=args.timeout, tls=tls_config(args)) as client:
            return await call(client)

    return asyncio.run(go())


def vias(args: argparse.Namespace) -> list[str]:
    """The nodes to talk to: every --via (each may list several, comma-separated), else
    CHORDCAST_VIA. Checked here, so a bad one is a usage error that names it."""
    given = (args.via or []) + (getattr(args, "via_after", None) or []) or [
        os.environ.get(VIA_ENV, "")]
    out = [a.strip() for v in given for a in v.split(",") if a.strip()]
    if not out:
        raise UsageError(f"give --via HOST:PORT (any node of the ring), or set {VIA_ENV}")
    for a in out:
        try:
            split_address(a)
        except ValueError as exc:
            raise UsageError(f"--via {a}: {exc}") from None
    return out


def add_client_command(sub: Any, name: str, func: Command, help: str) -> argparse.ArgumentParser:
    """A command that talks to a ring: the shared --via, --timeout and --json options."""
    c: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    add_connection_options(c, argparse.SUPPRESS)
    add_json_option(c)
    add_tls_options(c, "a client certificate (`chordcast certs client`)")
    c.set_defaults(func=func, prog=c.prog)  # (named in usage errors found after parsing)
    return c


def add_connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--via and --timeout, accepted before the command (`chordcast --via A put k v`) and
    after it; after the command, SUPPRESS keeps an absent one from undoing the first."""
    # After the command, a dest of its own: argparse copies a subcommand's values over the
    # top level's, and both lists count.
    parser.add_argument("--via", action="append", metavar="HOST:PORT", default=default,
                        dest="via" if default is None else "via_after",
                        help=f"a node of the ring; repeat it (or give a comma-separated list) "
                        f"for nodes to fall back on (default: ${VIA_ENV})")
    parser.add_argument("--timeout", type=positive(float), metavar="SECONDS",
                        default=DEFAULT_TIMEOUT if default is None else default,
                        help=f"deadline of each call (default: {DEFAULT_TIMEOUT:g})")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: `chordcast --json put …` (the top-level flag) is not undone by its absence
    # after the command.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output (also before the command)")


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
