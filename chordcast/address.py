"""Parsing "host:port" addresses (pure)."""

from __future__ import annotations


def split_address(address: str) -> tuple[str, int]:
    """'host:port' (IPv6 as '[::1]:port') -> (host, port); anything else is a ValueError."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {address!r} is not HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"address {address!r} has an unclosed IPv6 bracket")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"IPv6 address {address!r} must be written as [addr]:port")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"address {address!r} has no valid port (0-65535)")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"address {address!r} has no valid host")
    return host, int(port_text)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
