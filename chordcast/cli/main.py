"""The `chordcast` command: run a node, inspect the ring, look up keys, store values, demo.

Human tables by default, `--json` for scripts. Every error is one line on stderr and a non-zero
exit status (1: the operation failed, 2: the command line was wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from chord.ids import MAX_BITS, MIN_BITS, IdError, IdSpace
from chord.storage import MAX_VALUE_BYTES
from chordcast.address import split_address
from chordcast.cli import groups as mcast_cli
from chordcast.cli.inputs import CannotRead, TooLarge, text_or_file
from chordcast.client import ClientError, NodeClient, NodeInfo
from chordcast.discovery.net import (
    DEFAULT_GROUP,
    DEFAULT_PORT,
    DiscoveryConfigError,
    check_broadcast_address,
    check_multicast_group,
)
from chordcast.discovery.service import MODES, DiscoveryConfig, query, read_key_file
from chordcast.mcast_client_tmp import McastClientError
from chordcast.server import NodeOptions, NodeServer
from mcast.scribe import ScribeConfig

LEAVE_DEADLINE = 5.0
MAX_RING_WALK = 100_000


class UsageError(Exception):
    pass


def _address(text: str) -> str:
    try:
        split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive(kind: type, low: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        return value

    return parse


def _port(text: str) -> int:
    value = _positive(int, 1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("must be a port number (1-65535)")
    return value


def _id_bits(text: str) -> int:
    value = _positive(int, MIN_BITS)(text)
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


# ------------------------------------------------------------------------------- commands
def cmd_node(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = NodeOptions(
        listen=args.listen, advertise=args.advertise, join=args.join or [],
        id_bits=args.id_bits, successors=args.successors, replicas=args.replicas,
        stabilize_interval=args.stabilize_interval, rpc_timeout=args.rpc_timeout,
        join_dns=args.join_dns or [], discovery=discovery_config(args),
        require_join=args.require_join,
        scribe=ScribeConfig(archive=args.archive, max_children=args.max_children,
                            parent_timeout=args.parent_timeout),
        metrics_port=args.metrics_port, metrics_host=args.metrics_host,
    )
    return asyncio.run(_run_node(options))


def discovery_config(args: argparse.Namespace) -> DiscoveryConfig:
    try:
        key = read_key_file(args.cluster_key_file) if args.cluster_key_file else None
        config = DiscoveryConfig(
            mode=args.discover, port=args.discovery_port,
            broadcast_address=args.broadcast_address, multicast_group=args.multicast_group,
            ttl=args.multicast_ttl, key=key, window=args.discovery_window,
        )
        if args.broadcast_address:
            check_broadcast_address(args.broadcast_address)
        if args.discover == "multicast":
            check_multicast_group(args.multicast_group)
    except DiscoveryConfigError as exc:
        raise UsageError(str(exc)) from None
    return config


def add_discovery_options(p: argparse.ArgumentParser, default_mode: str) -> None:
    p.add_argument("--discover", choices=MODES, default=default_mode,
                   help=f"how to find a ring without seeds (default {default_mode})")
    p.add_argument("--discovery-port", type=_port, default=DEFAULT_PORT, metavar="PORT")
    p.add_argument("--broadcast-address", metavar="IP",
                   help="default: the subnet broadcast of the advertised interface")
    p.add_argument("--multicast-group", default=DEFAULT_GROUP, metavar="IP",
                   help="administratively scoped group (239.0.0.0/8)")
    p.add_argument("--multicast-ttl", type=_positive(int, 1), default=1, metavar="N")
    p.add_argument("--cluster-key-file", metavar="F",
                   help="authenticate discovery packets with HMAC-SHA256 under this key")
    p.add_argument("--discovery-window", type=_positive(float, 0.05), default=0.5,
                   metavar="SECONDS", help="how long each probe collects answers")


async def _run_node(options: NodeOptions) -> int:
    ns = NodeServer(options)
    try:
        address = await ns.start()
    except (OSError, ValueError, IdError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        await ns.server.stop(grace=None)
        return 1
    except Exception as exc:  # e.g. JoinFailed: every seed was unreachable
        print(f"error: {exc}", file=sys.stderr)
        await ns.server.stop(grace=None)
        return 1
    metrics = f" metrics on {ns.metrics_address}" if ns.metrics_address else ""
    print(f"chordcast node {ns.space.format(ns.node.me.id)} listening on {address}{metrics}",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("chordcast").info("leaving the ring")
    try:
        await asyncio.wait_for(ns.leave(), LEAVE_DEADLINE)
    except TimeoutError:
        print("warning: graceful leave did not finish in time", file=sys.stderr)
    return 0


def walk_ring(via: str, limit: int = MAX_RING_WALK) -> list[NodeInfo]:
    """Follow successor pointers from `via` until the walk comes back (or stops advancing)."""
    infos: list[NodeInfo] = []
    seen: set[str] = set()
    address = via
    while address not in seen and len(infos) < limit:
        seen.add(address)
        with NodeClient(address) as client:
            info = client.info()
        infos.append(info)
        if not info.successors:
            break
        address = info.successors[0].address
    return infos


def cmd_ring(args: argparse.Namespace) -> int:
    infos = walk_ring(args.via)
    nodes = [
        {
            "id": i.node.id,
            "address": i.node.address,
            "predecessor": i.predecessor.address if i.predecessor else None,
            "successors": [s.address for s in i.successors],
            "keys": i.keys,
        }
        for i in infos
    ]
    if args.json:
        print_json({"size": len(nodes), "nodes": nodes})
        return 0
    print(f"ring of {len(nodes)} node(s), walked from {args.via}")
    print_table(
        ["id", "address", "predecessor", "successor", "keys"],
        [[short(n["id"]), n["address"], n["predecessor"] or "-",
          (n["successors"] or ["(self)"])[0], n["keys"]] for n in nodes],
    )
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    if (args.key is None) == (args.id is None):
        raise UsageError("give either KEY or --id HEX")
    with NodeClient(args.via) as client:
        try:
            r = client.lookup(key=args.key, key_id=args.id, iterative=args.iterative)
        except IdError as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print_json({"key": r.key, "key_id": r.key_id,
                    "owner": {"id": r.owner.id, "address": r.owner.address},
                    "hops": r.hops, "path": r.path})
        return 0
    print_table(["key", "key id", "owner", "owner id", "hops"],
                [[r.key or "-", short(r.key_id), r.owner.address, short(r.owner.id), r.hops]])
    print("path: " + " -> ".join(r.path))
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    try:
        value = text_or_file(args.value, args.file, MAX_VALUE_BYTES, "VALUE", "value")
    except CannotRead as exc:
        raise UsageError(str(exc)) from None
    except TooLarge as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with NodeClient(args.via) as client:
        owner, version = client.put(args.key, value)
    if args.json:
        print_json({"key": args.key, "owner": owner.address, "version": version})
    else:
        print(f"stored {args.key!r} ({len(value)} bytes) on {owner.address}, version {version}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with NodeClient(args.via) as client:
        v = client.get(args.key)
    if not v.found:
        if args.json:
            print_json({"key": args.key, "found": False, "owner": v.owner.address})
        print(f"error: key {args.key!r} not found (owner {v.owner.address})", file=sys.stderr)
        return 1
    try:
        text, encoding = v.value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        import base64

        text, encoding = base64.b64encode(v.value).decode("ascii"), "base64"
    if args.json:
        print_json({"key": args.key, "found": True, "value": text, "encoding": encoding,
                    "version": v.version, "owner": v.owner.address})
    else:
        print(text)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with NodeClient(args.via) as client:
        found, owner = client.delete(args.key)
    if args.json:
        print_json({"key": args.key, "deleted": found, "owner": owner.address})
    elif found:
        print(f"deleted {args.key!r} on {owner.address}")
    if not found:
        print(f"error: key {args.key!r} not found", file=sys.stderr)
        return 1
    return 0


def cmd_discover(args: argparse.Namespace) -> int:
    config = discovery_config(args)
    if config.mode == "none":
        raise UsageError("discover needs --discover broadcast or multicast")
    try:
        peers = query(config, IdSpace(MAX_BITS), args.bind)
    except (DiscoveryConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = [{"id": IdSpace(p.id_bits).format(p.node_id), "address": p.address,
             "ring_size": p.ring_size, "in_ring": p.in_ring} for p in peers]
    if args.json:
        print_json({"nodes": rows})
    else:
        print(f"{len(rows)} node(s) answered")
        print_table(["id", "address", "ring size", "in ring"],
                    [[short(r["id"]), r["address"], r["ring_size"], r["in_ring"]] for r in rows])
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from chord.sim import experiments as simulate
    from mcast import sim as mcast_sim

    try:
        if args.sim_command == "ring":
            result = simulate.run(simulate.ring_experiment(
                args.nodes, args.seed, args.lookups, args.fail_fraction, args.successors,
                repair=not args.no_repair, stabilize=args.stabilize_interval,
                progress=args.progress, form=args.form))
        elif args.sim_command == "churn":
            result = simulate.run(simulate.churn_experiment(
                args.nodes, args.seed, args.rate, args.periods, args.lookups))
        else:
            sizes = [max(1, round(args.min_size * (args.max_size / args.min_size) **
                                  (i / max(1, args.groups - 1)))) for i in range(args.groups)]
            result = simulate.run(mcast_sim.mcast_experiment(
                args.nodes, args.seed, args.groups, sizes, args.messages,
                args.crash_fraction, progress=args.progress,
                parent_timeout=args.parent_timeout))
    except simulate.InvariantViolation as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json(result)
    else:
        print_table(["figure", "value"], [[k, v] for k, v in result.items()])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from chordcast.demo import run_demo

    return run_demo(nodes=args.nodes)


# ------------------------------------------------------------------------------- parser
class _Output:
    json = staticmethod(print_json)
    table = staticmethod(print_table)


OUTPUT = _Output()


def add_client_command(sub: Any, name: str, func: Any, help: str) -> argparse.ArgumentParser:
    c = sub.add_parser(name, help=help)
    c.add_argument("--via", type=_address, required=True, metavar="HOST:PORT",
                   help="any node of the ring")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=func)
    return c


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chordcast", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    node = sub.add_parser("node", help="run a node in the foreground")
    node.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT",
                      help="address to bind (port 0 picks a free one)")
    node.add_argument("--advertise", type=_address, metavar="HOST:PORT",
                      help="address peers use to reach this node (its id is SHA-1 of it)")
    node.add_argument("--join", type=_address, action="append", metavar="HOST:PORT",
                      help="a ring member to join through (repeatable; none: start a new ring)")
    node.add_argument("--id-bits", type=_id_bits, default=MAX_BITS, metavar="M")
    node.add_argument("--successors", type=_positive(int, 1), default=8, metavar="R")
    node.add_argument("--replicas", type=_positive(int, 0), default=3, metavar="K")
    node.add_argument("--stabilize-interval", type=_positive(float, 0.01), default=0.5,
                      metavar="SECONDS")
    node.add_argument("--rpc-timeout", type=_positive(float, 0.01), default=1.0,
                      metavar="SECONDS")
    node.add_argument("--log-level", default="info",
                      choices=["debug", "info", "warning", "error"])
    node.add_argument("--join-dns", type=_address, action="append", metavar="NAME:PORT",
                      help="join through every A/AAAA record of NAME (repeatable)")
    node.add_argument("--require-join", action="store_true",
                      help="exit with an error instead of starting a new ring")
    add_discovery_options(node, "broadcast")
    node.add_argument("--archive", type=_positive(int, 1), default=1024, metavar="N",
                      help="messages a group's root keeps for repair")
    node.add_argument("--max-children", type=_positive(int, 1), default=16, metavar="N",
                      help="children per node per group before handing new ones down")
    node.add_argument("--parent-timeout", type=_positive(float, 0.05), default=3.0,
                      metavar="SECONDS", help="silence from a tree parent before re-joining")
    node.add_argument("--metrics-port", type=_positive(int, 0), metavar="PORT",
                      help="serve Prometheus metrics at http://HOST:PORT/metrics (0: any port)")
    node.add_argument("--metrics-host", metavar="HOST",
                      help="address for the metrics endpoint (default: the --listen host)")
    node.set_defaults(func=cmd_node)

    disc = sub.add_parser("discover", help="ask the LAN which nodes are out there")
    disc.add_argument("--bind", default="127.0.0.1", metavar="IP",
                      help="local address to probe from (its subnet is searched)")
    disc.add_argument("--json", action="store_true", help="machine-readable output")
    add_discovery_options(disc, "broadcast")
    disc.set_defaults(func=cmd_discover)

    def client_cmd(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        return add_client_command(sub, name, func, help)

    client_cmd("ring", cmd_ring, "walk the ring and list its nodes")
    lk = client_cmd("lookup", cmd_lookup, "find the node that owns a key")
    lk.add_argument("key", nargs="?", help="the key (hashed with SHA-1)")
    lk.add_argument("--id", metavar="HEX", help="look up a raw identifier instead of a key")
    lk.add_argument("--iterative", action="store_true", help="ask each hop in turn")
    put = client_cmd("put", cmd_put, "store a value")
    put.add_argument("key")
    put.add_argument("value", nargs="?")
    put.add_argument("--file", metavar="F", help="read the value from a file (up to 1 MiB)")
    get = client_cmd("get", cmd_get, "read a value")
    get.add_argument("key")
    de = client_cmd("delete", cmd_delete, "delete a value")
    de.add_argument("key")

    mcast_cli.add_commands(sub, lambda s, name, func, help: add_client_command(
        s, name, lambda args: func(args, OUTPUT), help))

    sim = sub.add_parser("sim", help="deterministic simulation in virtual time")
    ssub = sim.add_subparsers(dest="sim_command", required=True)

    def sim_cmd(name: str, help: str) -> argparse.ArgumentParser:
        c = ssub.add_parser(name, help=help)
        c.add_argument("--nodes", type=_positive(int, 2), default=1000)
        c.add_argument("--seed", type=int, default=1)
        c.add_argument("--json", action="store_true")
        c.add_argument("--progress", action="store_true", help="progress on stderr")
        c.set_defaults(func=cmd_sim)
        return c

    c = sim_cmd("ring", "build a ring, fail a fraction, repair, look up keys")
    c.add_argument("--lookups", type=_positive(int, 1), default=10_000)
    c.add_argument("--fail-fraction", type=float, default=0.0)
    c.add_argument("--successors", type=_positive(int, 1), help="r (default 2*log2 N)")
    c.add_argument("--no-repair", action="store_true",
                   help="stop stabilization (the Chord paper's failure experiment)")
    c.add_argument("--stabilize-interval", type=_positive(float, 0.01), default=1.0)
    c.add_argument("--form", choices=["joins", "stable"], default="joins",
                   help="form the ring by joins (default) or start from the oracle's "
                        "stable base (faster; the Chord paper's setting)")
    c = sim_cmd("churn", "Poisson joins and crashes while looking up keys")
    c.add_argument("--rate", type=float, default=1.0, help="events per stabilization period")
    c.add_argument("--periods", type=_positive(int, 1), default=10)
    c.add_argument("--lookups", type=_positive(int, 50), default=2000)
    c = sim_cmd("mcast", "Scribe groups: tree shape, stress, delay penalty, repair")
    c.add_argument("--groups", type=_positive(int, 1), default=20)
    c.add_argument("--min-size", type=_positive(int, 1), default=10)
    c.add_argument("--max-size", type=_positive(int, 1), default=100)
    c.add_argument("--messages", type=_positive(int, 1), default=100)
    c.add_argument("--crash-fraction", type=float, default=0.0)
    c.add_argument("--parent-timeout", type=_positive(float, 0.1), default=30.0,
                   help="multicast soft-state timeout; children refresh every third of it, "
                        "which bounds how fast a crashed forwarder is noticed")

    demo = sub.add_parser("demo", help="start a local ring and show it working")
    demo.add_argument("--nodes", type=_positive(int, 2), default=8)
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, mcast_cli.McastUsage) as exc:
        parser.error(str(exc))
    except (ClientError, McastClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
