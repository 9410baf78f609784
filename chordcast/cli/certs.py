"""`chordcast certs init|node|client`: the ring's CA and the certificates it issues."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chordcast.cli.common import add_json_option, address, at_least, print_json, print_table
from chordcast.tls import CA_DAYS, LEAF_DAYS

# chordcast.certs (and the cryptography library under it, ~10 MiB) is imported only when a
# certs command runs: every `chordcast node` process parses this module's options.


def cmd_init(args: argparse.Namespace) -> int:
    from chordcast import certs

    return _report(args, lambda: certs.init_ca(Path(args.dir), days=args.days or CA_DAYS,
                                               force=args.force))


def cmd_node(args: argparse.Namespace) -> int:
    from chordcast import certs

    return _report(args, lambda: certs.issue_node(
        Path(args.dir), args.address, name=args.name, dns=tuple(args.dns or ()),
        days=args.days or LEAF_DAYS, force=args.force))


def cmd_client(args: argparse.Namespace) -> int:
    from chordcast import certs

    return _report(args, lambda: certs.issue_client(Path(args.dir), args.name,
                                                    days=args.days or LEAF_DAYS,
                                                    force=args.force))


def _report(args: argparse.Namespace, make: Any) -> int:
    from chordcast.certs import CertError

    try:
        issued = make()
    except (CertError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    row = {"identity": issued.identity, "cert": str(issued.cert), "key": str(issued.key)}
    if args.json:
        print_json(row)
    else:
        print_table(["identity", "certificate", "key"], [list(row.values())])
    return 0


def register(sub: Any) -> None:
    certs = sub.add_parser("certs", help="make the ring's CA and its node and client "
                                         "certificates (mutual TLS)")
    kinds = certs.add_subparsers(dest="certs_command", required=True)

    def common(p: argparse.ArgumentParser, days: int) -> None:
        p.add_argument("--dir", required=True, metavar="DIR",
                       help="where the CA lives and the files are written (no default)")
        p.add_argument("--days", type=at_least(int, 1), metavar="N",
                       help=f"validity in days (default: {days})")
        p.add_argument("--force", action="store_true", help="replace existing files")
        add_json_option(p)

    init = kinds.add_parser("init", help="a new CA: DIR/ca.pem and DIR/ca.key (keep the key "
                                         "offline; nodes need only ca.pem)")
    common(init, CA_DAYS)
    init.set_defaults(func=cmd_init)

    node = kinds.add_parser("node", help="a node certificate, valid only for the node "
                                         "that advertises HOST:PORT")
    node.add_argument("address", type=address, metavar="HOST:PORT",
                      help="the node's advertised address (its --advertise, or --listen)")
    node.add_argument("--name", metavar="N",
                      help="file name: DIR/N.pem and DIR/N.key (default: node-HOST-PORT)")
    node.add_argument("--dns", action="append", metavar="NAME",
                      help="another DNS name for standard tools (repeatable; default: "
                      "none)")
    common(node, LEAF_DAYS)
    node.set_defaults(func=cmd_node)

    client = kinds.add_parser("client", help="a client certificate for the principal NAME")
    client.add_argument("name", metavar="NAME", help="the principal (letters, digits, . _ -)")
    common(client, LEAF_DAYS)
    client.set_defaults(func=cmd_client)
