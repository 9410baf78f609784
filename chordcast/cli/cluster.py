"""`chordcast cluster`: many nodes in one process, sharing one event loop (dev clusters, load
tests). Each node has its own address, id and gRPC port; see chordcast.cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from chordcast.cli.common import UsageError, address, at_least, listen_port
from chordcast.cli.progress import progress_bars
from chordcast.cluster import ClusterOptions, node_options, run_cluster
from chordcast.server import NodeOptions


def cmd_cluster(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    options = ClusterOptions(
        nodes=args.nodes, listen=args.listen, join=args.join or [],
        metrics_port=args.metrics_port,
        node=NodeOptions(listen="", stabilize_interval=args.stabilize_interval),
    )
    try:
        node_options(options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with progress_bars(until_done=True) as report:  # a bar while the nodes join, on a terminal only
        return asyncio.run(run_cluster(options, report))


def register(sub: Any) -> None:
    c = sub.add_parser("cluster", help="run many nodes in one process (dev clusters, load tests)",
                       description="Run many nodes in one process, sharing one event loop: "
                       "one line per node as it joins, then 'cluster of N nodes ready'. "
                       "SIGINT or SIGTERM: every node leaves gracefully.")
    c.add_argument("--nodes", type=at_least(int, 1), default=16, metavar="N",
                   help="how many nodes (default 16)")
    c.add_argument("--listen", type=address, default="127.0.0.1:0", metavar="HOST:PORT",
                   help="the first node's address; the next nodes count the port up (port 0: "
                        "a free port each; default 127.0.0.1:0)")
    c.add_argument("--join", type=address, action="append", metavar="HOST:PORT",
                   help="a member of an existing ring to join through (repeatable; default "
                        "none: the first node starts a new ring)")
    c.add_argument("--stabilize-interval", type=at_least(float, 0.01), default=0.5,
                   metavar="SECONDS", help="each node's stabilization interval (default 0.5)")
    c.add_argument("--metrics-port", type=listen_port, metavar="PORT",
                   help="serve each node's Prometheus metrics, the first on PORT and the next "
                        "counting up (0: a free port each; default: no metrics)")
    c.add_argument("--log-level", default="warning",
                   choices=["debug", "info", "warning", "error"],
                   help="log level of the process (default warning)")
    c.set_defaults(func=cmd_cluster)
