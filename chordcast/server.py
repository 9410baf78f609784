"""A node as a gRPC service: the Chord service, the client-facing NodeApi, health and reflection.

This is the services layer: it wires the protocol objects (node, KBR, storage) to a grpc.aio
server and the gRPC transport, and maps protocol errors to gRPC status codes.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chord.ids import IdSpace
from chord.kbr import Kbr
from chord.node import ChordNode, ForeignRing, JoinFailed, NodeConfig
from chord.storage import SPACE as ITEMS
from chord.storage import TOMBSTONE_TTL, Storage
from chordcast import link
from chordcast.address import join_address, split_address
from chordcast.authz import AuthInterceptor, caller, claims_checker
from chordcast.discovery.logic import Identity, Responder
from chordcast.discovery.net import interface_for, resolve_seeds
from chordcast.discovery.service import DiscoveryConfig, DiscoveryListener, find_ring
from chordcast.metrics import MetricsInterceptor, NodeMetrics
from chordcast.proofs import ProofChecker
from chordcast.servicers.multicast import MulticastServicer
from chordcast.servicers.node_api import NodeApiServicer
from chordcast.tls import NODE, Credentials, TlsConfig, TlsError, identity_uri
from chordcast.transport import CHANNEL_OPTIONS, SERVICE_NAME, GrpcTransport, chord_handler
from chordcast.v1 import client_pb2 as cpb
from chordcast.v1 import client_pb2_grpc, mcast_pb2_grpc
from chordcast.v1 import mcast_pb2 as mpb
from chordcast.web.http import HttpServer
from chordcast.web.view import RingView
from mcast.disk import GROUPS
from mcast.scribe import Scribe, ScribeConfig

if TYPE_CHECKING:  # (sqlite3 is imported only by a node with a data dir)
    from chordcast.datadir import DataDir

log = logging.getLogger(__name__)

NODE_API = cpb.DESCRIPTOR.services_by_name["NodeApi"].full_name
MULTICAST = mpb.DESCRIPTOR.services_by_name["Multicast"].full_name
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# One node per port: with gRPC's default SO_REUSEPORT a second server binds a busy port and
# the kernel spreads connections over both.
SERVER_OPTIONS = [*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)]
ALIVE_EVERY = 60.0  # seconds between notes in the data dir that the node is up
PEERS_EVERY = 0.5  # seconds between looks at which peers to remember there (cheap: a
# write only when they changed; soon after a change, so a ring stopped right after a node
# joined still agrees on its lowest address)
MAX_PEERS = 4096
REJOIN_THROUGH = 16  # of the peers remembered, the first (its neighbours) it rejoins through
REJOIN_WAIT = 15.0  # seconds a restarted node tries the peers it remembers before founding


@dataclass
class NodeOptions:
    listen: str
    advertise: str | None = None
    join: list[str] = field(default_factory=list)
    id_bits: int = 160
    successors: int = 8
    replicas: int = 3
    stabilize_interval: float = 0.5
    rpc_timeout: float = 1.0
    lookup_timeout: float = 5.0
    location_cache: int = 4096  # one-hop routing for rings up to this size; 0: plain Chord
    idle_backoff: int = 8  # a settled ring stabilizes up to this many times less often
    join_dns: list[str] = field(default_factory=list)
    discovery: DiscoveryConfig = field(default_factory=lambda: DiscoveryConfig(mode="none"))
    require_join: bool = False
    scribe: ScribeConfig = field(default_factory=ScribeConfig)
    member_buffer: int = 16 << 20  # unread bytes a member stream may hold before it lags
    metrics_port: int | None = None  # None: no /metrics endpoint; 0: a free port
    metrics_host: str | None = None  # default: the listen host
    tls: TlsConfig | None = None  # mutual TLS with these files; None: no authentication
    max_calls: int = 20_000  # calls and streams served at once (member streams count)
    max_calls_per_peer: int = 2_000  # ... of them from one certificate (or one IP without TLS)
    max_stored_bytes: int | None = 1 << 30  # value bytes taken as owner of new writes
    # A plaintext port that serves grpc.health.v1 only (on the metrics host): probes that
    # cannot present a client certificate (kubelet's gRPC probe) still see the node's health.
    health_port: int | None = None
    # Where the node keeps its keys and group copies across restarts (None: memory only).
    data_dir: str | None = None
    tombstone_ttl: float = TOMBSTONE_TTL  # seconds a delete is remembered


class NodeServer:
    """One running node: bind, join, serve, and leave gracefully."""

    def __init__(self, options: NodeOptions) -> None:
        self.options = options
        self.space = IdSpace(options.id_bits)
        self.metrics = NodeMetrics()
        self.metrics_address = ""
        self.tls = Credentials(options.tls) if options.tls is not None else None
        self.transport = GrpcTransport(observe=self.metrics.rpc, tls=self.tls)
        self.server = grpc.aio.server(options=SERVER_OPTIONS,
                                      maximum_concurrent_rpcs=options.max_calls, interceptors=[
            AuthInterceptor(self.metrics.refused, options.max_calls_per_peer),
            MetricsInterceptor(self.metrics)])
        self.health = health.aio.HealthServicer()
        self.streams = link.Streams()  # the Link and Session streams this node answers on
        self.node: ChordNode
        self.kbr: Kbr
        self.storage: Storage
        self.listener: DiscoveryListener | None = None
        self.in_ring = False
        self.health_server: grpc.aio.Server | None = None
        self.health_address = ""
        self.data: DataDir | None = None
        self.http: HttpServer | None = None
        self.view: RingView | None = None

    async def start(self) -> str:
        """Bind, build the protocol objects, start serving, then join. Returns the address."""
        opts = self.options
        host, _port = split_address(opts.listen)
        for seed in [*opts.join, *opts.join_dns]:
            split_address(seed)
        bound = _bind(self.server, opts.listen, self.tls)
        if opts.advertise:
            split_address(opts.advertise)
            advertise = opts.advertise
        elif host in ("0.0.0.0", "::", ""):
            advertise = join_address(_host_address(), bound)
        else:
            advertise = join_address(host, bound)
        config = NodeConfig(
            successors=opts.successors,
            stabilize_interval=opts.stabilize_interval,
            rpc_timeout=opts.rpc_timeout,
            lookup_timeout=opts.lookup_timeout,
            location_cache=opts.location_cache,
            idle_backoff=opts.idle_backoff,
        )
        if self.tls is not None:
            _check_identity(self.tls.config, advertise)
        # The OS's entropy for request ids a peer echoes (no other may guess them).
        if opts.data_dir is not None:
            self.data = self._open_data_dir(opts.data_dir, advertise)
        self.node = ChordNode(self.space, advertise, self.transport, config,
                              observer=self.metrics, secure_rng=random.SystemRandom())
        self.kbr = Kbr(self.node)
        self.storage = Storage(self.kbr, replicas=opts.replicas,
                               max_bytes=opts.max_stored_bytes, durable=self.data,
                               tombstone_ttl=opts.tombstone_ttl)
        # Destroy tokens and message ids from the OS's entropy (as `secrets` draws them); the
        # protocol takes any rng, so the simulator stays reproducible with a seeded one.
        # With TLS, a group's root believes only what its principal signed (chordcast.proofs).
        self.scribe = Scribe(self.kbr, opts.scribe, random.SystemRandom(),
                             proofs=ProofChecker(self.tls) if self.tls is not None else None,
                             durable=self.data)
        self.node_api = NodeApiServicer(self.node, self.storage, lambda: self.in_ring,
                                        self.streams, self.metrics.rpc, self.metrics.rpc_p99_ms)
        self.server.add_generic_rpc_handlers(
            [chord_handler(self.node.handle, self.streams, self.metrics.rpc, self._authorize)])
        client_pb2_grpc.add_NodeApiServicer_to_server(
            self.node_api, self.server)
        mcast_pb2_grpc.add_MulticastServicer_to_server(
            MulticastServicer(self.scribe, lambda: self.in_ring, self.streams, self.metrics.rpc,
                              opts.member_buffer),
            self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, NODE_API, MULTICAST, HEALTH, reflection.SERVICE_NAME],
            self.server,
        )
        self.metrics.watch(self.node, self.storage, self.scribe, self.discovery_counts)
        if opts.metrics_port is not None:
            await self._serve_http(opts.metrics_host or host, opts.metrics_port, advertise)
        if opts.health_port is not None:
            self.health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            hhost = opts.metrics_host or host
            self.health_address = join_address(hhost, _bind(self.health_server, join_address(
                hhost, opts.health_port)))
            await self.health_server.start()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        if self.data is not None:
            self.node.ring_id = self.data.ring  # its data is that ring's: join no other
        try:
            await self._join_somewhere()
        except ForeignRing as exc:
            raise ForeignRing(f"{exc}: the data dir {opts.data_dir} holds the other ring's "
                              f"data (give this node an empty --data-dir to join this "
                              f"ring)") from None
        if self.data is not None and self.data.ring != self.node.ring_id:
            await self.data.belong_to(self.node.ring_id)
        successors = self.node.state.successors
        if successors:
            log.info("%s joined ring %s: successor %s", advertise, self.node.ring_id,
                     successors[0].address)
        else:
            log.info("%s founded ring %s", advertise, self.node.ring_id)
        self.in_ring = True
        self.node.start()
        self.storage.start()
        self.scribe.start()
        if self.data is not None:
            self.node.spawn(self._note_alive(self.data))
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        return advertise

    def _open_data_dir(self, path: str, advertise: str) -> DataDir:
        # (imported here: sqlite3 costs every node process memory, and most run without)
        from chordcast.datadir import open_data_dir

        data = open_data_dir(path, advertise, self.space.bits, on_write=self.metrics.disk)
        stored = len(data.load(ITEMS))
        groups = len(data.load(GROUPS))
        away = time.time() - data.last_alive_ms / 1000
        if not data.created and away > self.options.tombstone_ttl and stored:
            # If the rest of the ring ran meanwhile, deletes made then may be forgotten
            # already, and these copies could bring those keys back. Nothing is dropped
            # here: after a whole-ring outage these copies are all there is (Cassandra's
            # gc_grace rule, said the same way: the operator knows which case this is).
            log.warning("%s: the data dir %s was away for %s, longer than a delete is "
                        "remembered (--tombstone-ttl %s): if the rest of the ring kept "
                        "running, keys deleted meanwhile may come back; then stop this node "
                        "and move the data dir away to rejoin empty", advertise, path,
                        _duration(away), _duration(self.options.tombstone_ttl))
        log.info("%s: data dir %s (%s)", advertise, path, "new" if data.created else
                 f"{stored} stored items, {groups} groups")
        return data

    async def _note_alive(self, data: DataDir) -> None:
        """Keep the data dir's notes current: when the node was last up, and which nodes
        of its ring it knows (where it rejoins after a restart)."""
        every = min(ALIVE_EVERY, self.options.tombstone_ttl / 4)
        noted, remembered = -every, [""]
        while True:
            state = self.node.state
            # Neighbours first (where it rejoins), then every node its location cache knows
            # (so that, with the whole ring remembered, every node agrees on the lowest).
            known = [n.address for n in [*state.successors, state.predecessor, *state.fingers,
                                         *self.node.cache.nodes()]
                     if n is not None and n.address != self.node.me.address]
            peers = list(dict.fromkeys(known))[:MAX_PEERS]
            if peers and peers != remembered:
                await data.remember_peers(peers)
                remembered = peers
            if self.node.clock.now() - noted >= every:
                await data.alive()
                noted = self.node.clock.now()
            await self.node.clock.sleep(PEERS_EVERY)

    def _authorize(self, context: grpc.aio.ServicerContext
                   ) -> Callable[[str, Message], None] | None:
        """On a TLS connection from a node: refuse messages that name another node as their
        sender (the interceptor has refused everyone else already)."""
        principal = caller(context)
        if principal is None or principal.kind != NODE:
            return None
        return claims_checker(principal, self.metrics.refused)

    def discovery_counts(self) -> Responder | None:
        """The discovery responder's packet counts, once discovery runs."""
        return self.listener.responder if self.listener is not None else None

    def identity(self) -> Identity:
        node = self.node
        return Identity(node.me.address, node.me.id, node.state.estimate_size(), self.in_ring)

    async def _join_somewhere(self) -> None:
        """Static seeds and DNS names first (the first that answers wins), then discovery;
        nothing found: start a new ring, unless --require-join."""
        opts, disc = self.options, self.options.discovery
        if disc.mode != "none":
            host = split_address(self.node.me.address)[0]
            self.listener = DiscoveryListener(disc, self.space, interface_for(host),
                                              self.identity)
            await self.listener.start()
        seeds = [*opts.join, *await resolve_seeds(opts.join_dns)]
        remembered = self.data.peers() if self.data is not None else []
        if remembered and await self._rejoin(seeds, remembered):
            return
        failure = ""
        if seeds:
            try:
                await self.node.join(seeds)
                return
            except JoinFailed as exc:
                failure = str(exc)
                if self.listener is None:
                    raise
                log.warning("%s: %s; trying discovery", self.node.me.address, exc)
        elif opts.join_dns and self.listener is None:
            raise JoinFailed(f"no address found for {', '.join(opts.join_dns)}")
        if self.listener is not None:
            found = await find_ring(disc, self.space, self.listener.iface, self.identity)
            if found:
                await self.node.join(found)
                return
            failure = failure or f"no ring answered {disc.mode} discovery"
        if opts.require_join:
            raise JoinFailed(failure or "no seed to join through")
        await self.node.join([])  # found a new ring

    async def _rejoin(self, seeds: list[str], remembered: list[str]) -> bool:
        """A node restarted with its data dir goes back to its ring: through its seeds or
        the peers it remembers. When none answers, the ring may be restarting whole: the
        node with the lowest address founds it again at once, the others keep trying for
        REJOIN_WAIT (so a ring restarted at once comes back as one ring, not several).
        True: joined, or founded as the lowest; False: nobody answered for REJOIN_WAIT (the
        caller goes on as for a first start: its seeds, else a ring of its own)."""
        me = self.node.me.address
        first = min([me, *remembered], key=split_address) == me
        deadline = self.node.clock.now() + REJOIN_WAIT
        candidates = list(dict.fromkeys([*seeds, *remembered[:REJOIN_THROUGH]]))
        while True:
            try:
                await self.node.join(candidates)
                log.info("%s rejoined its ring", me)
                return True
            except ForeignRing:
                raise
            except JoinFailed:
                if first:
                    log.info("%s: none of the %d nodes it knows answers: founding its ring "
                             "again (the lowest address of them does)", me, len(candidates))
                    await self.node.join([])
                    return True
                if self.node.clock.now() >= deadline:
                    log.info("%s: none of the %d nodes it knows answered in %.0f s", me,
                             len(candidates), REJOIN_WAIT)
                    return False
            await self.node.clock.sleep(0.5)

    async def _serve_http(self, host: str, port: int, advertise: str) -> None:
        """The HTTP port: /metrics, and the live view at / with its JSON API at /api/."""
        self.view = RingView(advertise, self.options.tls, lambda: list(
            self.node_api.recent_lookups))
        self.http = HttpServer({"/metrics": self.metrics.exposition, **self.view.routes()})
        try:
            bound = await self.http.start(host, port)
        except OSError as exc:
            # (asyncio's message repeats the address; the errno's text is the reason.)
            reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            raise OSError(f"cannot serve metrics on {join_address(host, port)}: {reason}"
                          ) from None
        self.metrics_address = join_address(host, bound)

    async def close_http(self) -> None:
        if self.http is not None:  # first: no request may restart the view's surveys
            await self.http.close()
        if self.view is not None:
            await self.view.close()

    async def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME, NODE_API, MULTICAST):
            await self.health.set(service, status)

    async def leave(self) -> None:
        """Hand data over, tell the neighbours, stop serving."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.listener is not None:
            self.listener.close()
        try:
            await self.kbr.leave()
        finally:
            await self.streams.close(grace=1.0)
            await self.server.stop(grace=1.0)
            if self.health_server is not None:
                await self.health_server.stop(grace=None)
            await self.transport.close()
            await self.close_http()
            self.close_data()

    def close_data(self) -> None:
        """Flush and close the data dir (after serving stopped: nothing writes any more)."""
        if self.data is not None:
            self.data.close()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


def _check_identity(tls: TlsConfig, advertise: str) -> None:
    """A node serves only as the address its certificate was issued for."""
    from cryptography import x509  # (only with TLS: the library costs a node ~10 MiB)

    cert = x509.load_pem_x509_certificate(tls.read()[0])
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    wanted = identity_uri(NODE, advertise)
    if wanted not in uris:
        have = ", ".join(uris) or "none"
        raise TlsError(f"{tls.cert} is not a node certificate for {advertise} (its "
                       f"identities: {have}); issue one with `chordcast certs node "
                       f"{advertise}`")


def _bind(server: grpc.aio.Server, address: str, tls: Credentials | None = None) -> int:
    """Add the listening port; a busy (or otherwise unusable) address is an OSError naming it.

    The address is bound once first as gRPC will bind it (SO_REUSEADDR, no SO_REUSEPORT), so
    the usual failure comes with the system's reason and without gRPC's own log line."""
    host, port = split_address(address)
    if port != 0:
        _probe(address, host, port)
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, tls.server())
    except RuntimeError:  # lost a race for the port since the probe, or an unusable host
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    return int(bound)


def _probe(address: str, host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {address}: {exc.strerror}") from None
    failures: list[OSError] = []
    for family, kind, proto, _name, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
            except OSError as exc:
                failures.append(exc)
    if infos and len(failures) == len(infos):  # gRPC succeeds when any address binds
        first = next((f for f in failures if f.errno == errno.EADDRINUSE), failures[0])
        reason = (first.strerror or str(first)).lower()
        raise OSError(f"cannot listen on {address}: {reason}")


def _host_address() -> str:
    """This host's address as its own name resolves (what a container's peers reach)."""
    try:
        ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        ip = ""
    if not ip or ip.startswith("127."):
        raise ValueError("listening on a wildcard address: give --advertise HOST:PORT "
                         "(this host's name does not resolve to a reachable address)")
    return ip


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
