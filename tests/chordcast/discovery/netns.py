"""A private LAN of network namespaces for discovery tests: a hub namespace holding a bridge,
and one namespace per host with a veth `eth0` in a private test subnet. Nothing is added to the
machine's own namespace; everything is removed on exit, also when a test fails."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from types import TracebackType


class NetnsUnavailable(Exception):
    pass


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {result.stderr.strip()}")


class Lan:
    def __init__(self, hosts: int) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
        rng = random.Random()
        self.tag = f"cc{os.getpid() % 100000}x{rng.randrange(1000)}"
        self.subnet = f"10.{rng.randrange(100, 250)}.{rng.randrange(1, 250)}"
        self.hub = f"{self.tag}-hub"
        self.hosts = [f"{self.tag}-h{i}" for i in range(hosts)]
        self.addresses = [f"{self.subnet}.{i + 2}" for i in range(hosts)]
        self.broadcast = f"{self.subnet}.255"

    def __enter__(self) -> Lan:
        try:
            _ip("netns", "add", self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            for i, (ns, addr) in enumerate(zip(self.hosts, self.addresses, strict=True)):
                _ip("netns", "add", ns)
                _ip("-n", self.hub, "link", "add", f"v{i}", "type", "veth",
                    "peer", "name", "eth0", "netns", ns)
                _ip("-n", self.hub, "link", "set", f"v{i}", "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "brd", "+", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()

    def remove(self) -> None:
        for ns in [*self.hosts, self.hub]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[i]]
