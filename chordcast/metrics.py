"""Prometheus metrics for one node: the protocol's Observer, RPC timing on both sides, and
gauges read from the node's state at scrape time.

Each node has its own registry (several nodes may share a process), served on
`--metrics-port` at /metrics. Label values are bounded: RPC method names, status codes and
fixed reason strings; never keys, node ids or group names.
"""

from __future__ import annotations

import platform
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chord.node import ChordNode
from chord.ports import Observer
from chord.storage import Storage
from chordcast.authz import REASONS as AUTH_REASONS
from chordcast.build import version
from chordcast.discovery.logic import Responder
from chordcast.discovery.packet import DROP_REASONS
from chordcast.web.http import Request, Response
from mcast.scribe import Scribe
from mcast.tree import TreeRole

RECENT_RPCS = 1024  # served RPC times kept for the p99 `chordcast status` shows
# Calls that last as long as work elsewhere (a broadcast's whole stretch, a stream's life):
# not in that p99, which is about how fast the node answers.
LONG_BY_DESIGN = frozenset({"Spread", "Broadcast", "Join", "Inbox", "Link", "Session"})
HOP_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class NodeMetrics(Observer):
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._served: deque[float] = deque(maxlen=RECENT_RPCS)  # seconds, newest last
        # The standard process_* and python_* series (what every Prometheus exporter has),
        # and which build this is.
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(standard)
        Gauge("chordcast_build_info", "This node's build: 1, with the versions as labels",
              ["version", "python", "grpcio"], registry=r).labels(
            version(), platform.python_version(), grpc.__version__).set(1)
        self.lookup_hops = Histogram("chordcast_lookup_hops", "Overlay hops of lookups and "
                                     "KBR routes started on this node", buckets=HOP_BUCKETS,
                                     registry=r)
        self.lookup_seconds = Histogram("chordcast_lookup_duration_seconds", "Time from "
                                        "starting a lookup to the owner's answer",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.lookup_failures = Counter("chordcast_lookup_failures_total", "Lookups that "
                                       "failed, by reason", ["reason"], registry=r)
        self.rpc_seconds = Histogram("chordcast_rpc_duration_seconds", "gRPC call latency "
                                     "by method and side", ["method", "side"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.rpc_errors = Counter("chordcast_rpc_errors_total", "gRPC calls that ended in an "
                                  "error, by method, side and status code",
                                  ["method", "side", "code"], registry=r)
        self.rpc_timeouts = Counter("chordcast_rpc_timeouts_total", "Outgoing calls whose "
                                    "deadline expired", ["method"], registry=r)
        self.stabilize_rounds = Counter("chordcast_stabilize_rounds_total",
                                        "Stabilization rounds", registry=r)
        self.repairs = Counter("chordcast_ring_repairs_total", "Dead nodes dropped from the "
                               "ring state, by pointer kind", ["pointer"], registry=r)
        self.fingers_checked = Counter("chordcast_fingers_checked_total", "Fingers checked "
                                       "by fix_fingers (confirmed by the node or compared "
                                       "with a fresh lookup)",
                                       registry=r)
        self.fingers_correct = Counter("chordcast_fingers_correct_total", "Sampled fingers "
                                       "that pointed at the right node", registry=r)
        self.mcast_events = Counter("chordcast_mcast_messages_total", "Multicast messages by "
                                    "event: stamped (root), forwarded (to children), "
                                    "delivered (to members), unproven (refused at the "
                                    "root: a send or destroy its named caller did not sign)",
                                    ["event"], registry=r)
        self.mcast_gaps = Counter("chordcast_mcast_gaps_total", "Stream holes by outcome: "
                                  "repaired, or lost (beyond the root's archive)",
                                  ["outcome"], registry=r)
        self.tree_repairs = Counter("chordcast_mcast_tree_repairs_total", "Re-joins after a "
                                    "tree parent stopped answering", registry=r)
        self.auth_refusals = Counter(
            "chordcast_auth_refusals_total", "Calls refused, by reason: no_identity (a "
            "CA-signed certificate without a chordcast identity), not_a_node (a client "
            "certificate on the node-to-node service), spoofed_sender (a message naming "
            "another node as its sender), peer_limit (a caller past --max-calls-per-peer)",
            ["reason"], registry=r)
        self.disk_writes = Histogram(
            "chordcast_data_dir_write_seconds", "Transactions of the data dir (--data-dir), "
            "commit and fsync: each holds every write queued meanwhile", registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
        self.disk_errors = Counter(
            "chordcast_data_dir_write_errors_total", "Data dir transactions that failed (a "
            "full disk, an I/O error): what they held was not acknowledged", registry=r)
        # Not named `mcast_latency`: that is the Observer method below, and an attribute of
        # that name once shadowed it, so every real node failed while forwarding.
        self.mcast_latency_seconds = Histogram(
            "chordcast_mcast_delivery_latency_seconds",
            "From the root's stamp to delivery to a member", buckets=LATENCY_BUCKETS, registry=r)
        # Every bounded label value exists from the start, so dashboards show zeros, not gaps.
        for reason in ("timeout", "no_route", "hop_limit", "error"):
            self.lookup_failures.labels(reason)
        for pointer in ("successor", "predecessor", "next_hop", "finger", "cache"):
            self.repairs.labels(pointer)
        for event in ("stamped", "forwarded", "delivered"):
            self.mcast_events.labels(event)
        for outcome in ("repaired", "lost"):
            self.mcast_gaps.labels(outcome)
        for reason in AUTH_REASONS:
            self.auth_refusals.labels(reason)

    # -- Observer (called by protocol code) -------------------------------------------------
    def lookup(self, hops: int, seconds: float) -> None:
        self.lookup_hops.observe(hops)
        self.lookup_seconds.observe(seconds)

    def lookup_failed(self, reason: str, seconds: float) -> None:
        self.lookup_failures.labels(reason).inc()

    def stabilized(self) -> None:
        self.stabilize_rounds.inc()

    def repaired(self, what: str) -> None:
        self.repairs.labels(what).inc()

    def finger_checked(self, correct: bool) -> None:
        self.fingers_checked.inc()
        if correct:
            self.fingers_correct.inc()

    def mcast(self, event: str, count: int = 1) -> None:
        if event == "tree_repair":
            self.tree_repairs.inc(count)
        elif event.startswith("gap_"):
            self.mcast_gaps.labels(event[4:]).inc(count)
        else:
            self.mcast_events.labels(event).inc(count)

    def mcast_latency(self, seconds: float) -> None:
        self.mcast_latency_seconds.observe(seconds)

    # -- RPCs (called by the transport and the server interceptor) --------------------------
    def disk(self, seconds: float, failed: bool) -> None:
        """A data dir transaction ended (called from its writer thread)."""
        self.disk_writes.observe(seconds)
        if failed:
            self.disk_errors.inc()

    def rpc(self, method: str, side: str, seconds: float, code: str) -> None:
        self.rpc_seconds.labels(method, side).observe(seconds)
        if side == "server" and method not in LONG_BY_DESIGN:
            self._served.append(seconds)
        if code != "OK":
            self.rpc_errors.labels(method, side, code).inc()
            if side == "client" and code == "DEADLINE_EXCEEDED":
                self.rpc_timeouts.labels(method).inc()

    def rpc_p99_ms(self) -> float:
        """The slowest 1% of the last RPCs this node served, in ms (0: none yet): what
        `chordcast status` shows; Prometheus has the histogram over any window."""
        if not self._served:
            return 0.0
        ordered = sorted(self._served)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000.0

    def refused(self, reason: str) -> None:
        """A call refused by authorization (chordcast.authz)."""
        self.auth_refusals.labels(reason).inc()

    # -- state read at scrape time ----------------------------------------------------------
    def watch(self, node: ChordNode, storage: Storage, scribe: Scribe,
              discovery: Callable[[], Responder | None]) -> None:
        """Gauges read from the protocol's state at scrape time, through its read-only
        accessors; `discovery` gives the discovery responder once it runs."""
        r = self.registry

        def gauge(name: str, doc: str, fn: Callable[[], float]) -> None:
            Gauge(name, doc, registry=r).set_function(fn)

        st = node.state  # one object for the node's life, mutated in place
        gauge("chordcast_successors", "Entries in the successor list",
              lambda: len(st.successors))
        gauge("chordcast_successors_wanted", "Configured successor list length (r)",
              lambda: st.r)
        gauge("chordcast_predecessor_known", "1 when the node has a predecessor",
              lambda: 1.0 if st.predecessor is not None else 0.0)
        gauge("chordcast_ring_size_estimate", "Ring size estimated from the successor list",
              st.estimate_size)
        gauge("chordcast_fingers", "Distinct nodes in the finger table",
              lambda: len(st.distinct_fingers()))
        gauge("chordcast_keys", "Stored items this node owns", storage.owned_count)
        gauge("chordcast_replica_keys", "Stored items held for other owners",
              storage.replica_count)
        gauge("chordcast_stored_bytes", "Bytes of stored values (owned and replicas)",
              storage.stored_bytes)
        roles = Gauge("chordcast_mcast_groups", "Groups this node takes part in, by role",
                      ["role"], registry=r)

        def groups_where(test: Callable[[TreeRole], bool]) -> Callable[[], float]:
            return lambda: sum(1 for g in scribe.roles() if test(g))

        roles.labels("root").set_function(groups_where(lambda g: g.is_root))
        roles.labels("forwarder").set_function(groups_where(lambda g: bool(g.children)))
        roles.labels("member").set_function(groups_where(lambda g: bool(g.members)))
        gauge("chordcast_mcast_children", "Children over all groups (node stress)",
              lambda: sum(len(g.children) for g in scribe.roles()))
        gauge("chordcast_mcast_children_max", "Most children in any one group",
              lambda: max((len(g.children) for g in scribe.roles()), default=0))
        gauge("chordcast_mcast_members", "Members attached to this node",
              lambda: sum(len(g.members) for g in scribe.roles()))
        r.register(_DiscoveryCollector(discovery))

    async def exposition(self, request: Request) -> Response:
        """GET /metrics: the registry in Prometheus' text format."""
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)


class _DiscoveryCollector:
    """The discovery listener counts packets itself (it is pure); report its counts."""

    def __init__(self, responder: Callable[[], Responder | None]) -> None:
        self.responder = responder

    def collect(self) -> Any:
        responder = self.responder()
        received = CounterMetricFamily("chordcast_discovery_packets_received",
                                       "Discovery datagrams received",
                                       value=responder.received if responder else 0)
        answered = CounterMetricFamily("chordcast_discovery_packets_answered",
                                       "Discovery datagrams answered",
                                       value=responder.answered if responder else 0)
        dropped = CounterMetricFamily("chordcast_discovery_packets_dropped",
                                      "Discovery datagrams dropped, by reason",
                                      labels=["reason"])
        for reason in DROP_REASONS:
            dropped.add_metric([reason], responder.dropped[reason] if responder else 0)
        return [received, answered, dropped]


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times every unary call the node serves, by method, with its status code."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]
        inner, metrics = handler.unary_unary, self.metrics

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, code = time.perf_counter(), "OK"
            try:
                return await inner(request, context)
            except Exception:
                status = context.code()
                code = status.name if status is not None else "UNKNOWN"
                raise
            finally:
                metrics.rpc(method, "server", time.perf_counter() - started, code)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
