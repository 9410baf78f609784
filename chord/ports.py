"""The two ports through which protocol code reaches the outside world: a transport to peers
and a clock. gRPC (`chordcast.transport`) and the in-memory network (`chord.sim.memnet`) implement
the transport; both run on asyncio, so one clock serves real and virtual time alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from google.protobuf.message import Message

# The largest message (request or reply) a transport carries, as gRPC is configured here; a
# bigger one is refused with RESOURCE_EXHAUSTED. Protocol code keeps batches well below it.
MAX_MESSAGE_BYTES = 8 << 20


class PeerUnavailable(Exception):
    """The peer did not answer in time or could not be reached. Its pointer must be dropped."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


class RemoteError(Exception):
    """The peer answered with an error (bad request, refused operation)."""

    def __init__(self, address: str, code: str, detail: str) -> None:
        super().__init__(f"{address}: {code}: {detail}")
        self.address = address
        self.code = code
        self.detail = detail


class InvalidRequest(Exception):
    """Raised by a handler for a request it must reject; the transport reports it to the caller."""


class DiskError(Exception):
    """The node's data dir could not take a write (full, an I/O error): what needed it is
    not done, and the caller hears UNAVAILABLE (another node, or later, may do)."""


def refusal_status(exc: BaseException | None) -> str | None:
    """The status (a gRPC status name) every transport reports for a handler's refusal;
    None: not a refusal, a failure of the handler (INTERNAL)."""
    if isinstance(exc, InvalidRequest):
        return "INVALID_ARGUMENT"
    if isinstance(exc, DiskError):
        return "UNAVAILABLE"
    return None


# Server side: one callable per node answers every method of the Chord service.
Handler = Callable[[str, Message], Awaitable[Message]]


class Flow(Protocol):
    """One-way messages to one method of one peer, as a stream carries them: handled by the
    peer in the order sent, one after the other, never answered. A flow is one stream's life:
    once it breaks (the peer died, the connection dropped, the peer read too slowly for too
    long), every later `send` raises, and what was sent is delivered only up to some point
    (a prefix: never a message after one that was lost). Whoever needs more opens a new flow."""

    async def send(self, request: Message, timeout: float) -> None:
        """Queue `request` behind those sent before. Waits while the flow is full (the peer
        handles them slower than they come), at most `timeout`. Raises PeerUnavailable (or
        RemoteError for a request the transport refuses, e.g. too big) when the flow is or
        becomes broken; then the message may or may not have been queued."""
        ...


class Transport(Protocol):
    async def call(self, address: str, method: str, request: Message, timeout: float) -> Message:
        """Send `request` to the Chord service at `address`.

        Raises PeerUnavailable (no answer in time) or RemoteError (the peer refused it)."""
        ...

    def flow(self, address: str, method: str) -> Flow:
        """A new flow to `method` of the Chord service at `address` (the method's handler
        takes each message; its reply is dropped). Opening one costs nothing on the wire."""
        ...

    async def watch(self, address: str) -> None:
        """Return when the connection to `address` is lost (the peer's process ended, its
        socket closed); may never return while it lives. It lets an idle node notice a dead
        neighbour at once instead of at its next, backed-off, stabilization round."""
        ...


class Observer:
    """Measurement hooks the protocol calls; this default records nothing. The services layer
    supplies one backed by Prometheus, so protocol code never imports a metrics library."""

    def lookup(self, hops: int, seconds: float) -> None:
        """A lookup or KBR route started here reached its owner."""

    def lookup_failed(self, reason: str, seconds: float) -> None:
        """reason: "timeout", "no_route", "hop_limit" or "error"."""

    def stabilized(self) -> None:
        """One stabilization round finished."""

    def repaired(self, what: str) -> None:
        """A dead node was dropped: what = "successor", "predecessor" or "next_hop"."""

    def finger_checked(self, correct: bool) -> None:
        """fix_fingers checked a finger: confirmed by the node itself or compared with a fresh
        lookup (a free correctness sample)."""

    def mcast(self, event: str, count: int = 1) -> None:
        """event: "stamped", "forwarded", "delivered", "gap_repaired", "gap_lost",
        "tree_repair"."""

    def mcast_latency(self, seconds: float) -> None:
        """From the root's stamp to delivery to a member."""


class Clock:
    """Time as the protocol sees it: the running event loop's clock (virtual in the simulator)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps people read (not for measuring intervals)."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock(Clock):
    """In the simulator even timestamps come from virtual time, so runs are reproducible."""

    def wall(self) -> float:
        return self.now()


@dataclass(frozen=True)
class Row:
    """One thing a node keeps on disk: under `key`, the `value` whose (rank, tiebreak) is the
    highest written (a copy's version and value hash, a group's counter, a message's number),
    so copies saved in any order leave the newest, as the node's memory does."""

    key: str
    rank: int
    tiebreak: bytes
    value: bytes


class Durable(Protocol):
    """Where a node keeps what must outlive its process (a data dir). `save` returns once
    the rows are on disk: a write is acknowledged only after it. Rows live in named spaces
    (one per kind of thing); `load` is for a node starting, before it serves."""

    async def save(self, space: str, rows: Sequence[Row]) -> None: ...

    async def forget(self, space: str, keys: Sequence[str]) -> None: ...

    def load(self, space: str) -> list[Row]: ...

    @property
    def keeps(self) -> bool:
        """False for a node that keeps nothing (no data dir): callers skip the work."""
        ...


class Forgetful:
    """A node without a data dir: everything lives in memory only, and a restart loses it."""

    keeps = False

    async def save(self, space: str, rows: Sequence[Row]) -> None:
        return None

    async def forget(self, space: str, keys: Sequence[str]) -> None:
        return None

    def load(self, space: str) -> list[Row]:
        return []


class MemoryDisk:
    """A data dir in memory, for the simulator: give a restarted node the same one."""

    keeps = True

    def __init__(self) -> None:
        self.spaces: dict[str, dict[str, Row]] = {}

    async def save(self, space: str, rows: Sequence[Row]) -> None:
        held = self.spaces.setdefault(space, {})
        for row in rows:
            old = held.get(row.key)
            if old is None or (row.rank, row.tiebreak) > (old.rank, old.tiebreak):
                held[row.key] = row

    async def forget(self, space: str, keys: Sequence[str]) -> None:
        held = self.spaces.get(space, {})
        for key in keys:
            held.pop(key, None)

    def load(self, space: str) -> list[Row]:
        return sorted(self.spaces.get(space, {}).values(), key=lambda r: r.key)
