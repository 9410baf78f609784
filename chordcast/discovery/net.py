"""Every socket and interface call of discovery: broadcast address derivation, listener and
sender sockets for broadcast and IP multicast, DNS expansion of seed names."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass

from chordcast.address import join_address, split_address

DEFAULT_PORT = 5972
DEFAULT_GROUP = "239.255.59.72"
SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B


class DiscoveryConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Interface:
    name: str
    network: ipaddress.IPv4Network
    address: ipaddress.IPv4Address

    @property
    def broadcast(self) -> str:
        return str(self.network.broadcast_address)


def _ioctl_ipv4(sock: socket.socket, request: int, name: str) -> str:
    packed = fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name.encode()[:15]))
    return socket.inet_ntoa(packed[20:24])


def interfaces() -> list[Interface]:
    """IPv4 interfaces with their primary address and netmask (Linux ioctls)."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                addr = _ioctl_ipv4(s, SIOCGIFADDR, name)
                mask = _ioctl_ipv4(s, SIOCGIFNETMASK, name)
            except OSError:
                continue  # no IPv4 address
            net = ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)
            found.append(Interface(name, net, ipaddress.IPv4Address(addr)))
    return found


def interface_for(host: str) -> Interface:
    """The interface whose subnet holds `host` (an IPv4 address or a name resolving to one)."""
    try:
        ip = ipaddress.IPv4Address(socket.gethostbyname(host))
    except (OSError, ValueError):
        raise DiscoveryConfigError(
            f"cannot resolve {host!r} to an IPv4 address for discovery") from None
    for iface in interfaces():
        if ip in iface.network:
            return Interface(iface.name, iface.network, ip)
    raise DiscoveryConfigError(
        f"no interface has {ip} in its subnet: give --broadcast-address (or use --join)"
    )


def _reuse(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):  # absent on Windows; sharing the port then needs it less
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        except OSError:
            pass


def listener_socket(mode: str, port: int, iface_ip: str, target: str) -> socket.socket:
    """A socket that receives probes: bound to the broadcast address (so only broadcasts to
    our subnet arrive) or to the multicast group joined on our interface. Shared by every
    node on the host through SO_REUSEADDR/SO_REUSEPORT."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _reuse(sock)
        sock.bind((target, port))
        if mode == "multicast":
            mreq = socket.inet_aton(target) + socket.inet_aton(iface_ip)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def sender_socket(mode: str, iface_ip: str, ttl: int) -> socket.socket:
    """An ephemeral socket on our interface: sends probes and receives the unicast answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((iface_ip, 0))
        if mode == "multicast":
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface_ip))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def check_multicast_group(group: str) -> str:
    try:
        ip = ipaddress.IPv4Address(group)
    except ValueError:
        raise DiscoveryConfigError(f"multicast group {group!r} is not an IPv4 address") from None
    if ip not in ipaddress.IPv4Network("239.0.0.0/8"):
        raise DiscoveryConfigError(
            f"multicast group {group} is not administratively scoped (239.0.0.0/8)")
    return group


def check_broadcast_address(address: str) -> str:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise DiscoveryConfigError(f"broadcast address {address!r} is not IPv4") from None
    return address


async def resolve_seeds(names: list[str], timeout: float = 5.0) -> list[str]:
    """Expand each NAME:PORT to one address per A/AAAA record (a headless Service gives one
    per pod). Names that do not resolve are skipped; the caller decides if none is fatal."""
    loop = asyncio.get_running_loop()
    seeds: list[str] = []
    for name in names:
        host, port = split_address(name)
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
        except (OSError, TimeoutError):
            continue
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                address = join_address(str(sockaddr[0]), port)
                if address not in seeds:
                    seeds.append(address)
    return seeds
