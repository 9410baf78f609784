"""chordcast: a Chord DHT with Scribe multicast over gRPC — the node program and the client
library.

    from chordcast import Client, BlockingClient, ClientError, TlsConfig

The names are loaded on first use: protocol code imports the generated `chordcast.v1`
messages, and that must not pull grpc and the client into the simulator's processes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chordcast.blocking import BlockingClient, BlockingSubscription
    from chordcast.client import Client, Subscription
    from chordcast.results import (
        ClientError,
        CreatedGroup,
        Deleted,
        GroupInfo,
        GroupMessage,
        GroupRole,
        InboxMessage,
        Lookup,
        NodeInfo,
        Peer,
        Stored,
        Value,
    )
    from chordcast.tls import TlsConfig

_WHERE = {
    "BlockingClient": "chordcast.blocking",
    "BlockingSubscription": "chordcast.blocking",
    "Client": "chordcast.client",
    "Subscription": "chordcast.client",
    "TlsConfig": "chordcast.tls",
    **{name: "chordcast.results" for name in (
        "ClientError", "CreatedGroup", "Deleted", "GroupInfo", "GroupMessage", "GroupRole",
        "InboxMessage", "Lookup", "NodeInfo", "Peer", "Stored", "Value")},
}
__all__ = [
    "BlockingClient",
    "BlockingSubscription",
    "Client",
    "ClientError",
    "CreatedGroup",
    "Deleted",
    "GroupInfo",
    "GroupMessage",
    "GroupRole",
    "InboxMessage",
    "Lookup",
    "NodeInfo",
    "Peer",
    "Stored",
    "Subscription",
    "TlsConfig",
    "Value",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'chordcast' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
