"""Discovery on asyncio: the listener every node runs, and the newcomer's probe rounds."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from chord.ids import IdError, IdSpace
from chordcast.discovery import net
from chordcast.discovery.logic import (
    Identity,
    Peer,
    Responder,
    join_order,
    make_message,
    parse_peer,
    should_found,
)
from chordcast.discovery.packet import NONCE_LEN, Codec, Rejected
from chordcast.v1.discovery_pb2 import DiscoveryMessage

log = logging.getLogger(__name__)
MODES = ("broadcast", "multicast", "none")


MAX_KEY_FILE = 4096


@dataclass(frozen=True)
class DiscoveryConfig:
    mode: str = "broadcast"
    port: int = net.DEFAULT_PORT
    broadcast_address: str | None = None  # default: derived from the interface's netmask
    multicast_group: str = net.DEFAULT_GROUP
    ttl: int = 1
    key: bytes | tuple[bytes, ...] | None = None  # the cluster key, or a keyring (primary first)
    window: float = 0.5  # how long a probe collects answers
    attempts: int = 4

    def target(self, iface: net.Interface) -> str:
        if self.mode == "multicast":
            return net.check_multicast_group(self.multicast_group)
        if self.broadcast_address:
            return net.check_broadcast_address(self.broadcast_address)
        return iface.broadcast


def read_key_file(path: str) -> tuple[bytes, ...]:
    """The key, or keyring, in a key file. A text file of several lines is a keyring: one
    key per line, the primary (the one that signs) first, every one accepted. Anything else
    is one key, whatever bytes it holds (as before keyrings: a random binary key may hold
    line breaks)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise net.DiscoveryConfigError(f"cannot read cluster key {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise net.DiscoveryConfigError(f"cluster key file {path} is larger than "
                                       f"{MAX_KEY_FILE} bytes")
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    text = all(line.isascii() and line.decode().isprintable() for line in lines)
    keys = tuple(lines) if len(lines) > 1 and text else (data.strip(),)
    for n, key in enumerate(keys, 1):
        if len(key) < 16:
            which = f"key {n} in {path}" if len(keys) > 1 else f"the cluster key in {path}"
            raise net.DiscoveryConfigError(f"{which} is shorter than 16 bytes")
    return keys


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery socket error: %s", exc)


class DiscoveryListener:
    """Hears probes on the shared discovery port and answers each by unicast."""

    def __init__(self, config: DiscoveryConfig, space: IdSpace, iface: net.Interface,
                 identity: Callable[[], Identity]) -> None:
        self.config = config
        self.iface = iface
        # Broadcasts never leave the subnet, so neither do our answers; multicast may be
        # routed between subnets on purpose (TTL > 1), and the group is opt-in.
        allowed = (lambda ip: True) if config.mode == "multicast" else (
            lambda ip: _in_subnet(iface, ip))
        self.responder = Responder(Codec(config.key), space, identity, allowed=allowed)
        self._transports: list[asyncio.DatagramTransport] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ip = str(self.iface.address)
        recv = net.listener_socket(self.config.mode, self.config.port, ip,
                                   self.config.target(self.iface))
        reply = net.sender_socket("broadcast", ip, self.config.ttl)
        reply_transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(lambda d, a: None), sock=reply)
        self._reply = reply_transport

        def on_probe(data: bytes, addr: tuple[str, int]) -> None:
            answer = self.responder.handle(data, addr[0], time.time(), os.urandom(NONCE_LEN))
            if answer is not None:
                reply_transport.sendto(answer, addr)
            else:
                log.debug("dropped a discovery packet from %s: %s", addr[0],
                          self.responder.last_drop)

        recv_transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(on_probe), sock=recv)
        self._transports = [recv_transport, reply_transport]

    def close(self) -> None:
        for t in self._transports:
            t.close()
        self._transports = []


def _space_of(msg: DiscoveryMessage) -> IdSpace:
    try:
        return IdSpace(msg.id_bits)
    except IdError:
        raise Rejected("wrong_id_bits", str(msg.id_bits)) from None


def _in_subnet(iface: net.Interface, ip: str) -> bool:
    try:
        return ipaddress.IPv4Address(ip) in iface.network
    except ValueError:
        return False


async def probe(config: DiscoveryConfig, space: IdSpace, iface: net.Interface,
                me: Identity | None, codec: Codec | None = None) -> list[Peer]:
    """Send one PROBE (or, with no identity, a QUERY) and collect the answers for a window."""
    codec = codec or Codec(config.key)
    loop = asyncio.get_running_loop()
    inbox: list[bytes] = []
    sock = net.sender_socket(config.mode, str(iface.address), config.ttl)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Datagrams(lambda d, a: inbox.append(d) if len(inbox) < 10_000 else None),
        sock=sock)
    try:
        kind = DiscoveryMessage.PROBE if me else DiscoveryMessage.QUERY
        packet = codec.encode(make_message(kind, me, space, time.time(), os.urandom(NONCE_LEN)))
        transport.sendto(packet, (config.target(iface), config.port))
        await asyncio.sleep(config.window)  # the collection window itself
    finally:
        transport.close()
    peers: dict[str, Peer] = {}
    now = time.time()
    for data in inbox:
        try:
            msg = codec.decode(data, now)
            if msg.kind != DiscoveryMessage.ANSWER:
                raise Rejected("unexpected_kind")
            # A query (no identity of ours) accepts rings of any identifier size.
            peer = parse_peer(msg, space if me else _space_of(msg), now)
        except Rejected as exc:
            log.debug("dropped a discovery answer: %s", exc)
            continue
        if me is None or peer.address != me.address:
            peers[peer.address] = peer
    return sorted(peers.values(), key=lambda p: p.address)


async def find_ring(config: DiscoveryConfig, space: IdSpace, iface: net.Interface,
                    identity: Callable[[], Identity]) -> list[str]:
    """Probe until a ring member answers: its address first, closest to our id, then the rest.
    An empty list means: start a new ring (nobody answered, or we are the founding newcomer)."""
    codec = Codec(config.key)
    founder_rounds = 0
    for attempt in range(config.attempts):
        me = identity()
        peers = await probe(config, space, iface, me, codec)
        order = join_order(space, me.node_id, peers)
        if order:
            log.info("discovery: %d ring member(s) answered; joining via %s", len(order), order[0])
            return order
        # Found only after two rounds in a row agree: a newcomer whose listener started a
        # moment after our first probe gets a chance to be heard (and may have a lower id).
        founder_rounds = founder_rounds + 1 if peers and should_found(me.node_id, peers) else 0
        if founder_rounds >= 2:
            log.info("discovery: only newcomers answered and we have the lowest id: new ring")
            return []
        if attempt + 1 < config.attempts:
            await asyncio.sleep(min(2.0, 0.25 * 2**attempt))  # backoff between probe rounds
    log.info("discovery: no ring answered after %d probes: starting a new ring", config.attempts)
    return []


def query(config: DiscoveryConfig, space: IdSpace, bind_host: str) -> list[Peer]:
    """`chordcast discover`: who is out there?"""
    iface = net.interface_for(bind_host)
    return asyncio.run(probe(config, space, iface, None))

