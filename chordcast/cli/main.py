"""The `chordcast` command: run nodes, inspect the ring, look up keys, store values, groups.

It also simulates and demos.

Human tables by default, `--json` for scripts. Every error is one line on stderr and a non-zero
exit status (1: the operation failed, 2: the command line was wrong). Each command family lives
in its own module and registers its subcommands here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from chordcast.build import version
from chordcast.cli import certs, cluster, groups, node, ring, sim, status, storage
from chordcast.cli.common import (
    Parser,
    UsageError,
    add_connection_options,
    at_least,
    usage_error,
)
from chordcast.results import ClientError
from chordcast.tls import TlsError


def cmd_demo(args: argparse.Namespace) -> int:
    from chordcast.demo import run_demo

    return run_demo(nodes=args.nodes, keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="chordcast", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--version", action="version", version=f"chordcast {version()}")
    p.add_argument("--json", action="store_true", default=False,
                   help="machine-readable output (before or after the command)")
    add_connection_options(p, None)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    node.register(sub)
    cluster.register(sub)
    ring.register(sub)
    status.register(sub)
    storage.register(sub)
    groups.register(sub)
    sim.register(sub)
    certs.register(sub)
    demo = sub.add_parser("demo", help="start a local ring and show it working")
    demo.add_argument("--nodes", type=at_least(int, 2), default=8,
                      help="nodes of the local ring")
    demo.add_argument("--keep", action="store_true",
                      help="leave the ring and its group running for the live view and the "
                      "CLI until Ctrl-C (default: stop at the end)")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        usage_error(getattr(args, "prog", f"chordcast {args.command}"), str(exc))
        return 2
    except (ClientError, TlsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`chordcast get k | head -c 10`): end quietly, as Unix tools
        # do, and keep Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
