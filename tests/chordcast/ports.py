"""Free loopback ports for tests that start servers at fixed addresses."""

from __future__ import annotations

import socket


def free_ports(count: int, kind: int = socket.SOCK_STREAM) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (held together while chosen, so
    no two are the same)."""
    socks = [socket.socket(socket.AF_INET, kind) for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    return free_ports(1, kind)[0]
