"""`chordcast node` (run a node in the foreground) and `chordcast discover` (who is on the LAN)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from chord.ids import MAX_BITS, IdSpace
from chordcast.cli.common import (
    UsageError,
    add_json_option,
    add_tls_options,
    address,
    at_least,
    id_bits,
    listen_port,
    port,
    print_json,
    print_table,
    short,
    tls_config,
)
from chordcast.discovery.net import (
    DEFAULT_GROUP,
    DEFAULT_PORT,
    DiscoveryConfigError,
    check_broadcast_address,
    check_multicast_group,
)
from chordcast.discovery.service import MODES, DiscoveryConfig, query, read_key_file
from chordcast.server import NodeOptions, NodeServer
from chordcast.web.http import DEFAULT_PORT as DEFAULT_HTTP_PORT
from mcast.scribe import ScribeConfig

LEAVE_DEADLINE = 5.0


def cmd_node(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    tls = tls_config(args)
    options = NodeOptions(
        listen=args.listen, advertise=args.advertise, join=args.join or [],
        id_bits=args.id_bits, successors=args.successors, replicas=args.replicas,
        stabilize_interval=args.stabilize_interval, rpc_timeout=args.rpc_timeout,
        location_cache=args.location_cache, idle_backoff=args.idle_backoff,
        join_dns=args.join_dns or [], discovery=discovery_config(args, tls is not None),
        require_join=args.require_join,
        scribe=ScribeConfig(archive=args.archive, max_children=args.max_children,
                            parent_timeout=args.parent_timeout, max_groups=args.max_groups,
                            max_groups_per_owner=args.max_groups_per_client,
                            max_members=args.max_members),
        max_calls=args.max_calls, max_calls_per_peer=args.max_calls_per_peer,
        health_port=args.health_port,
        max_stored_bytes=args.max_stored_bytes,
        member_buffer=args.member_buffer,
        metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        tls=tls, data_dir=args.data_dir, tombstone_ttl=args.tombstone_ttl,
    )
    return asyncio.run(_run_node(options))


async def _run_node(options: NodeOptions) -> int:
    ns = NodeServer(options)
    try:
        advertised = await ns.start()
    except Exception as exc:  # a bad address or port, or JoinFailed: no seed answered
        print(f"error: {exc}", file=sys.stderr)
        # The streams a seed opened back to us end first (stopped under them, gRPC logs
        # each as an unhandled error).
        await ns.streams.close(grace=0.5)
        await ns.server.stop(grace=0.5)
        if ns.health_server is not None:
            await ns.health_server.stop(grace=None)
        await ns.close_http()
        ns.close_data()
        return 1
    metrics = (f" metrics on {ns.metrics_address} (live view: http://{ns.metrics_address}/)"
               if ns.metrics_address else "")
    if ns.health_address:
        metrics += f" health on {ns.health_address}"
    print(f"chordcast node {ns.space.format(ns.node.me.id)} listening on {advertised}{metrics}",
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


def discovery_config(args: argparse.Namespace, tls: bool = False) -> DiscoveryConfig:
    try:
        key = read_key_file(args.cluster_key_file) if args.cluster_key_file else None
        mode = args.discover or args.discover_default
        if mode != "none" and key is None and tls:
            if args.discover:
                # Anyone on the LAN could answer and steer a new node to their ring.
                raise UsageError("discovery with TLS needs --cluster-key-file (an HMAC key "
                                 "that authenticates discovery packets)")
            mode = "none"
        config = DiscoveryConfig(
            mode=mode, port=args.discovery_port,
            broadcast_address=args.broadcast_address, multicast_group=args.multicast_group,
            ttl=args.multicast_ttl, key=key, window=args.discovery_window,
        )
        if args.broadcast_address:
            check_broadcast_address(args.broadcast_address)
        if mode == "multicast":
            check_multicast_group(args.multicast_group)
    except DiscoveryConfigError as exc:
        raise UsageError(str(exc)) from None
    return config


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
                    [[short(str(r["id"])), r["address"], r["ring_size"], r["in_ring"]]
                     for r in rows])
    return 0


def add_discovery_options(p: argparse.ArgumentParser, default_mode: str) -> None:
    p.add_argument("--discover", choices=MODES,
                   help=f"how to find a ring without seeds (default {default_mode}; none "
                        f"with TLS unless a cluster key is given)")
    p.set_defaults(discover_default=default_mode)
    p.add_argument("--discovery-port", type=port, default=DEFAULT_PORT, metavar="PORT",
                   help="UDP port discovery probes and answers use")
    p.add_argument("--broadcast-address", metavar="IP",
                   help="default: the subnet broadcast of the advertised interface")
    p.add_argument("--multicast-group", default=DEFAULT_GROUP, metavar="IP",
                   help="administratively scoped group (239.0.0.0/8)")
    p.add_argument("--multicast-ttl", type=at_least(int, 1), default=1, metavar="N",
                   help="routers a multicast probe may cross (1: this subnet only)")
    p.add_argument("--cluster-key-file", metavar="F",
                   help="authenticate discovery packets with HMAC-SHA256 under this key "
                   "(default: none; needed for discovery on a ring with TLS)")
    p.add_argument("--discovery-window", type=at_least(float, 0.05), default=0.5,
                   metavar="SECONDS", help="how long each probe collects answers")


def register(sub: Any) -> None:
    node = sub.add_parser("node", help="run a node in the foreground")
    node.add_argument("--listen", type=address, required=True, metavar="HOST:PORT",
                      help="address to bind (port 0 picks a free one; no default)")
    node.add_argument("--advertise", type=address, metavar="HOST:PORT",
                      help="address peers use to reach this node (its id is SHA-1 of it; "
                      "default: --listen, or this host's address when it listens on all)")
    node.add_argument("--join", type=address, action="append", metavar="HOST:PORT",
                      help="a ring member to join through (repeatable; default: discovery, "
                      "else start a new ring)")
    add_tls_options(node, "this node's certificate (`chordcast certs node`)")
    node.add_argument("--id-bits", type=id_bits, default=MAX_BITS, metavar="M",
                      help="width of node and key ids; every node of a ring must agree")
    node.add_argument("--successors", type=at_least(int, 1), default=8, metavar="R",
                      help="length of the successor list (the ring survives R-1 neighbours "
                      "failing at once)")
    node.add_argument("--replicas", type=at_least(int, 0), default=3, metavar="K",
                      help="copies of each stored key on the owner's successors")
    node.add_argument("--stabilize-interval", type=at_least(float, 0.01), default=0.5,
                      metavar="SECONDS", help="how often the node checks its neighbours")
    node.add_argument("--rpc-timeout", type=at_least(float, 0.01), default=1.0,
                      metavar="SECONDS", help="deadline of a call to another node")
    node.add_argument("--location-cache", type=at_least(int, 0), default=4096, metavar="N",
                      help="nodes remembered for one-hop lookups (default 4096; 0: plain Chord "
                           "routing)")
    node.add_argument("--idle-backoff", type=at_least(int, 1), default=8, metavar="F",
                      help="while nothing changes, stabilize up to F times less often "
                           "(default 8; 1: a fixed interval); a neighbour's connection "
                           "closing brings it back at once")
    node.add_argument("--log-level", default="info",
                      choices=["debug", "info", "warning", "error"],
                      help="info says when it joined, which neighbours failed, what was "
                      "repaired")
    node.add_argument("--join-dns", type=address, action="append", metavar="NAME:PORT",
                      help="join through every A/AAAA record of NAME (repeatable; default: "
                      "none)")
    node.add_argument("--require-join", action="store_true",
                      help="exit with an error instead of starting a new ring")
    add_discovery_options(node, "broadcast")
    node.add_argument("--archive", type=at_least(int, 1), default=1024, metavar="N",
                      help="messages a group's root keeps for repair")
    node.add_argument("--max-children", type=at_least(int, 1), default=16, metavar="N",
                      help="children per node per group before handing new ones down")
    node.add_argument("--health-port", type=listen_port, metavar="PORT",
                      help="also serve grpc.health.v1 alone, in plaintext, on this port of "
                           "the metrics host (for probes that cannot do TLS; 0: a free port; "
                           "default: none)")
    node.add_argument("--max-groups", type=at_least(int, 1), default=10_000, metavar="N",
                      help="groups this node may be the root of (default 10000); past it a "
                           "create is RESOURCE_EXHAUSTED")
    node.add_argument("--max-groups-per-client", type=at_least(int, 1), default=1_000,
                      metavar="N", help="of those, created by one certificate (default 1000; "
                      "a ring with TLS)")
    node.add_argument("--max-members", type=at_least(int, 1), default=10_000, metavar="N",
                      help="subscribers attached to this node (default 10000)")
    node.add_argument("--max-stored-bytes", type=at_least(int, 1), default=1 << 30,
                      metavar="BYTES", help="value bytes this node holds before it refuses "
                      "new writes as their owner (default 1 GiB; RESOURCE_EXHAUSTED)")
    node.add_argument("--max-calls", type=at_least(int, 16), default=20_000, metavar="N",
                      help="calls and streams served at once (default 20000); past it gRPC "
                           "answers RESOURCE_EXHAUSTED")
    node.add_argument("--max-calls-per-peer", type=at_least(int, 1), default=2_000,
                      metavar="N", help="of those, from one certificate (or, without TLS, one "
                      "IP address) at once (default 2000); past it RESOURCE_EXHAUSTED")
    node.add_argument("--parent-timeout", type=at_least(float, 0.05), default=3.0,
                      metavar="SECONDS", help="silence from a tree parent before re-joining")
    node.add_argument("--member-buffer", type=at_least(int, 1024), default=16 << 20,
                      metavar="BYTES", help="unread payload a subscriber may fall behind by "
                      "before it is told it lagged and resumes from the archive (default: 16 MiB)")
    node.add_argument("--data-dir", metavar="DIR",
                      help="keep stored keys and group state here across restarts (SQLite; "
                      "one per node, same --listen/--advertise every time; default: memory "
                      "only, a restart loses what the node held)")
    node.add_argument("--tombstone-ttl", type=at_least(float, 1.0), default=7 * 24 * 3600.0,
                      metavar="SECONDS", help="how long a delete is remembered (default 7 "
                      "days); a data dir away longer comes back without its keys")
    node.add_argument("--metrics-port", type=listen_port, metavar="PORT", nargs="?",
                      const=DEFAULT_HTTP_PORT,
                      help="serve Prometheus metrics at http://HOST:PORT/metrics and the live "
                      f"view at http://HOST:PORT/ (given alone: {DEFAULT_HTTP_PORT}; 0: any "
                      "port; default: not served)")
    node.add_argument("--metrics-host", metavar="HOST",
                      help="address for the metrics endpoint (default: the --listen host)")
    node.set_defaults(func=cmd_node)

    disc = sub.add_parser("discover", help="ask the LAN which nodes are out there")
    disc.add_argument("--bind", default="127.0.0.1", metavar="IP",
                      help="local address to probe from (its subnet is searched)")
    add_json_option(disc)
    add_discovery_options(disc, "broadcast")
    disc.set_defaults(func=cmd_discover)
