"""Many nodes in one process (`chordcast cluster`): each its own NodeServer, with its own
address, id, gRPC port and metrics, all sharing one event loop. For dev clusters and load tests.

The first node founds the ring (or joins the given seeds); the others join through nodes
already started, a bounded number at a time. On SIGINT or SIGTERM every node leaves gracefully,
one at a time in id order, so every leave notice hands over a successor list whose nodes are all
still there. (Leaving in concurrent rounds, every other node at once, took 0.5 s instead of 1.4 s
for 64 nodes but sometimes split the rest of the ring into two loops: a node whose whole
successor list left before it heard of the nodes behind them.)
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from chordcast.address import join_address, split_address
from chordcast.server import NodeOptions, NodeServer

log = logging.getLogger(__name__)

JOIN_CONCURRENCY = 8  # nodes joining at once
JOIN_SEEDS = 3  # already started nodes each newcomer may join through
LEAVE_DEADLINE = 10.0  # seconds for the whole cluster to leave, plus LEAVE_PER_NODE each
LEAVE_PER_NODE = 0.1  # a leave takes ~22 ms on an idle machine


@dataclass
class ClusterOptions:
    nodes: int
    listen: str  # the first node's address; node i gets port + i (port 0: a free port each)
    join: list[str] = field(default_factory=list)  # seeds of an existing ring (none: found one)
    metrics_port: int | None = None  # first metrics port, node i gets + i; 0: free ports
    node: NodeOptions = field(default_factory=lambda: NodeOptions(listen=""))  # the rest
    join_concurrency: int = JOIN_CONCURRENCY
    leave_deadline: float | None = None  # default: LEAVE_DEADLINE + LEAVE_PER_NODE * nodes


def node_options(options: ClusterOptions) -> list[NodeOptions]:
    """Every node's options (ValueError when the ports would run past 65535)."""
    host, first = split_address(options.listen)
    for seed in options.join:
        split_address(seed)
    if options.nodes < 1:
        raise ValueError("a cluster needs at least one node")
    for name, start in (("--listen", first), ("--metrics-port", options.metrics_port)):
        if start and start + options.nodes - 1 > 65535:
            raise ValueError(f"{options.nodes} nodes from {name} port {start} run past 65535")
    result = []
    for i in range(options.nodes):
        mport = options.metrics_port
        result.append(replace(
            options.node,
            listen=join_address(host, first + i if first else 0),
            advertise=None,
            join=list(options.join) if i == 0 else [],
            metrics_port=mport + i if mport else mport,
        ))
    return result


class Cluster:
    """The running nodes of one process."""

    def __init__(self, options: ClusterOptions,
                 announce: Callable[[str], None] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.options = options
        self.progress = progress
        self.plan = node_options(options)
        self.servers: list[NodeServer] = []  # started and in the ring
        self.announce = announce or (lambda line: print(line, flush=True))
        self.rng = random.Random()

    async def start(self) -> None:
        """Start every node; the first failure (or cancellation) stops those still starting
        and is raised (the started ones stay in `servers`, for `leave`)."""
        first, *rest = self.plan
        await self._start_one(first)
        slots = asyncio.Semaphore(self.options.join_concurrency)

        async def joiner(opts: NodeOptions) -> None:
            async with slots:
                started = [ns.node.me.address for ns in self.servers]
                seeds = self.rng.sample(started, min(JOIN_SEEDS, len(started)))
                await self._start_one(replace(opts, join=seeds + self.options.join,
                                              require_join=True))

        async with asyncio.TaskGroup() as group:
            for opts in rest:
                group.create_task(joiner(opts))

    async def _start_one(self, opts: NodeOptions) -> None:
        ns = NodeServer(opts)
        try:
            advertised = await ns.start()
        except BaseException:
            await _abandon(ns)
            raise
        self.servers.append(ns)
        metrics = (f" metrics on {ns.metrics_address} (live view: "
                   f"http://{ns.metrics_address}/)" if ns.metrics_address else "")
        self.announce(f"chordcast node {ns.space.format(ns.node.me.id)} listening on "
                      f"{advertised}{metrics}")
        if self.progress is not None:
            self.progress("nodes joined", len(self.servers), len(self.plan))

    async def leave(self) -> bool:
        """Every node leaves gracefully, one at a time in id order, within the deadline; False
        if some had to be stopped without a goodbye (the ring then repairs as after a crash)."""
        deadline = self.options.leave_deadline
        if deadline is None:
            deadline = LEAVE_DEADLINE + LEAVE_PER_NODE * len(self.servers)
        try:
            async with asyncio.timeout(deadline):
                for ns in sorted(self.servers, key=lambda ns: ns.node.me.id):
                    try:
                        await ns.leave()
                    except Exception as exc:
                        log.warning("%s: leaving failed: %s", ns.node.me.address, exc)
                    self.servers.remove(ns)
        except TimeoutError:
            await asyncio.gather(*(_abandon(ns) for ns in self.servers))
            self.servers.clear()
            return False
        return True


async def _abandon(ns: NodeServer) -> None:
    """Stop a node that is not (or no longer) taking part, without a goodbye."""
    await ns.server.stop(grace=None)
    await ns.transport.close()
    await ns.close_http()
    node = getattr(ns, "node", None)
    if node is not None:
        await node.stop()


async def run_cluster(options: ClusterOptions,
                      progress: Callable[[str, int, int], None] | None = None) -> int:
    """`chordcast cluster`: start the nodes, wait for SIGINT or SIGTERM, leave."""
    cluster = Cluster(options, progress=progress)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(cluster.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if not starting.done():  # stopped while starting: no more nodes, leave with those up
        starting.cancel()
    try:
        await starting
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        print(f"error: {_reason(exc)}", file=sys.stderr, flush=True)
        status = 1
    if status == 0 and not stop.is_set():
        print(f"cluster of {len(cluster.servers)} nodes ready", flush=True)
        await stopping
    stopping.cancel()
    logging.getLogger("chordcast").info("%d nodes leaving the ring", len(cluster.servers))
    if not await cluster.leave():
        print("warning: graceful leave did not finish in time", file=sys.stderr)
    return status


def _reason(exc: BaseException) -> str:
    """The first failure of a group of failed starts."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return str(exc)
