"""Per-group state of one node in a Scribe tree, and of a group's root (pure, no I/O).

A node is a forwarder (it has children), a member (it has local members), or both; the root
also holds the group's record, its sequence counter and a bounded archive. Members deliver
each message exactly once and in the root's order: the node accepts messages in sequence
(buffering ahead of a gap), and each member keeps its own cursor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from chord.state import NodeRef
from chordcast.v1 import mcast_pb2 as mpb

MESSAGE = "message"
GAP = "gap"
ENDED = "ended"
ANYCAST = "anycast"
# Payload bytes one message between nodes may carry: half the transport's limit, so a batch of
# messages, its envelope and a frame around it always fit.
BATCH_BYTES = 4 << 20
RANGE_MESSAGES = 1024  # messages one range answer carries at most (the asker asks again)


@dataclass(frozen=True)
class Event:
    """What a member sees: a message, a gap that cannot be repaired, the end of the group, or
    an anycast delivered to it."""

    kind: str
    group: str
    seq: int = 0
    payload: bytes = b""
    sender: str = ""
    ts_ms: int = 0
    last_seq: int = 0  # for a gap: the missing range is seq..last_seq
    message_id: str = ""
    proof: mpb.Proof | None = None  # the sender's signature, passed on for the member


def message_event(group: str, m: mpb.GroupMessage) -> Event:
    return Event(MESSAGE, group, m.seq, m.payload, m.sender, m.ts_ms, 0, m.message_id,
                 m.proof if m.HasField("proof") else None)


@dataclass
class Member:
    """A local subscriber: an application on this node or an external client attached to it."""

    id: int
    name: str
    on_event: Callable[[Event], None]
    cursor: int | None = None  # last sequence number delivered; None: the next message starts
    pending: dict[int, mpb.GroupMessage] = field(default_factory=dict)

    def offer(self, group: str, m: mpb.GroupMessage) -> None:
        if self.cursor is None:
            self.cursor = m.seq - 1
        if m.seq <= self.cursor:
            return  # already delivered: exactly once
        self.pending[m.seq] = m
        self._release(group)

    def gap(self, group: str, upto: int) -> None:
        """Messages up to `upto` are lost for good: say so once, then go on after them (and
        deliver at once what was already held behind the lost range)."""
        if self.cursor is not None and upto > self.cursor:
            self.on_event(Event(GAP, group, self.cursor + 1, last_seq=upto))
            self.cursor = upto
        for seq in [s for s in self.pending if s <= upto]:
            del self.pending[seq]
        self._release(group)

    def _release(self, group: str) -> None:
        """Deliver the held messages that now follow the cursor without a hole."""
        while self.cursor is not None and self.cursor + 1 in self.pending:
            nxt = self.pending.pop(self.cursor + 1)
            self.cursor += 1
            self.on_event(message_event(group, nxt))


@dataclass
class Child:
    node: NodeRef
    expires: float
    members: int = 0   # members in its subtree, as it last reported
    height: int = 1    # height of its subtree


@dataclass(frozen=True)
class TreeRole:
    """What a node is in one group, as the node reports it (a read-only copy)."""

    name: str
    group_id: int
    is_root: bool
    parent: NodeRef | None
    children: tuple[NodeRef, ...]
    members: tuple[str, ...]  # names of members attached here
    last_seq: int | None      # highest sequence number accepted in order; None: not yet known


@dataclass
class GroupState:
    name: str
    group_id: int
    recent_limit: int = 1024
    parent: NodeRef | None = None
    is_root: bool = False
    children: dict[str, Child] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    last: int | None = None   # highest sequence number accepted in order
    ahead: dict[int, mpb.GroupMessage] = field(default_factory=dict)  # beyond a gap
    last_heard: float = 0.0   # when the parent last proved alive
    rejoining: bool = False
    rejoin_failures: int = 0  # re-joins in a row that failed (only the first is logged)
    repairing: bool = False  # a hole in the stream is being filled
    # Our parent was set by a JOIN we passed on and has not proved alive since (no data, no
    # answer): a JOIN met now must go on, not stop here, as we may hang from a dead node.
    parent_unconfirmed: bool = False
    moving_to: NodeRef | None = None  # asked to adopt us: its pushes are welcome already
    # While our own JOIN is in flight, the stream's start is the stopping node's position
    # (its answer), not whatever message happens to arrive first: hold messages until then.
    hold_base: bool = False

    def __post_init__(self) -> None:
        self.recent: deque[mpb.GroupMessage] = deque(maxlen=self.recent_limit)

    @property
    def in_tree(self) -> bool:
        return self.is_root or self.parent is not None

    @property
    def attached(self) -> bool:
        """In the tree as far as we know: the root, or hanging from a parent that proved
        alive. Only such a node may stop a JOIN."""
        return self.is_root or (self.parent is not None and not self.parent_unconfirmed)

    def accept(self, messages: list[mpb.GroupMessage]) -> list[mpb.GroupMessage]:
        """Take messages from the parent (any order, duplicates allowed); return the ones that
        are now deliverable, in order."""
        out: list[mpb.GroupMessage] = []
        for m in messages:
            if self.last is None and not self.hold_base:
                self.last = m.seq - 1  # a fresh forwarder starts where its parent's stream is
            if self.last is None or m.seq > self.last:
                self.ahead[m.seq] = m
        while self.last is not None and self.last + 1 in self.ahead:
            m = self.ahead.pop(self.last + 1)
            self.last += 1
            self.recent.append(m)
            out.append(m)
        return out

    def missing(self) -> tuple[int, int] | None:
        """The first hole in the stream: (from, to) inclusive, or None."""
        if self.last is None or not self.ahead:
            return None
        return self.last + 1, min(self.ahead) - 1

    def skip_to(self, seq: int) -> list[mpb.GroupMessage]:
        """Messages up to `seq` cannot be had any more: move past them."""
        if self.last is None or seq > self.last:
            self.last = seq
        for s in [s for s in self.ahead if s <= seq]:
            del self.ahead[s]
        return self.accept([])

    def from_recent(self, first: int, last: int) -> list[mpb.GroupMessage]:
        return [m for m in self.recent if first <= m.seq <= last]

    def subtree_members(self) -> int:
        return len(self.members) + sum(c.members for c in self.children.values())

    def height(self) -> int:
        return 1 + max((c.height for c in self.children.values()), default=0)

    @property
    def idle(self) -> bool:
        """Neither forwarder nor member: it should leave the tree."""
        return not self.is_root and not self.members and not self.children


def chunks(messages: Iterable[mpb.GroupMessage], count: int, size: int = BATCH_BYTES
           ) -> Iterator[list[mpb.GroupMessage]]:
    """`messages` cut, in order, into runs of at most `count` messages and `size` payload
    bytes (a single message larger than `size` goes alone: it is always under the limit)."""
    current: list[mpb.GroupMessage] = []
    total = 0
    for m in messages:
        if current and (len(current) >= count or total + len(m.payload) > size):
            yield current
            current, total = [], 0
        current.append(m)
        total += len(m.payload)
    if current:
        yield current


def take(messages: Iterable[mpb.GroupMessage], count: int, size: int = BATCH_BYTES
         ) -> list[mpb.GroupMessage]:
    """The first run `chunks` would cut (reading no further than one message past it)."""
    return next(chunks(messages, count, size), [])


@dataclass
class RootState:
    """A group's record, counter and archive: at the root, and as copies on its replicas."""

    record: mpb.GroupRecord
    counter: int = 0  # the last number stamped
    # The last number copied to the replicas: messages up to it may be disseminated, served
    # from the archive and copied on; those after it are still on their way there. A copy at
    # a replica holds only committed messages (`merge` keeps the two equal there).
    committed: int = 0
    frozen: bool = False  # handing the group over: stamp and commit nothing more

    def __post_init__(self) -> None:
        self.archive: deque[mpb.GroupMessage] = deque(maxlen=max(1, self.record.archive))
        self._seqs: set[int] = set()  # the numbers in the archive
        self.ids: dict[str, int] = {}

    def stamp(self, payload: bytes, sender: str, message_id: str, ts_ms: int,
              proof: mpb.Proof | None = None) -> tuple[mpb.GroupMessage, bool]:
        """The next message in the group's total order; a retried message keeps its number."""
        if message_id and message_id in self.ids:
            seq = self.ids[message_id]
            for m in self.archive:
                if m.seq == seq:
                    return m, False
        self.counter += 1
        m = mpb.GroupMessage(seq=self.counter, payload=payload, sender=sender, ts_ms=ts_ms,
                             message_id=message_id, proof=proof)
        self.add(m)
        return m, True

    def add(self, m: mpb.GroupMessage) -> None:
        """Archive a stamped message (at the root, or copied to a replica; copies may arrive
        out of order, several batches being on their way at once)."""
        archive = self.archive
        if m.seq in self._seqs or (archive and m.seq < archive[0].seq):
            return  # already here, or older than all the archive keeps
        if len(archive) == archive.maxlen:
            old = archive.popleft()
            self._seqs.discard(old.seq)
            self.ids.pop(old.message_id, None)
        at = len(archive)
        while at and archive[at - 1].seq > m.seq:  # in order: at the end (nearly always)
            at -= 1
        archive.insert(at, m)
        self._seqs.add(m.seq)
        if m.message_id:
            self.ids[m.message_id] = m.seq
        self.counter = max(self.counter, m.seq)

    def first_available(self) -> int:
        return self.archive[0].seq if self.archive else self.committed + 1

    def range(self, first: int, last: int) -> list[mpb.GroupMessage]:
        return [m for m in self.archive if first <= m.seq <= min(last, self.committed)]

    def after(self, seq: int) -> list[mpb.GroupMessage]:
        """The archived messages numbered after `seq`, read from the newest end (what waits
        for the replicas is there: reading it costs what waits, not the archive's size)."""
        tail: list[mpb.GroupMessage] = []
        for m in reversed(self.archive):
            if m.seq <= seq:
                break
            tail.append(m)
        return tail[::-1]

    def to_replicas(self) -> list[mpb.ReplicaOp]:
        """A full copy of what is committed (never a message still on its way to the
        replicas), in as many operations as the message size limit needs (at least one)."""
        committed = [m for m in self.archive if m.seq <= self.committed]
        ops = [mpb.ReplicaOp(name=self.record.name, record=self.record, counter=self.committed,
                             messages=chunk) for chunk in chunks(committed, len(committed))]
        return ops or [mpb.ReplicaOp(name=self.record.name, record=self.record,
                                     counter=self.committed)]

    @classmethod
    def from_replica(cls, op: mpb.ReplicaOp) -> RootState:
        record = mpb.GroupRecord()
        record.CopyFrom(op.record)
        state = cls(record, op.counter)
        state.merge(op)
        return state

    def merge(self, op: mpb.ReplicaOp) -> None:
        """Take a copy from the root. What a copy holds was committed by its root, so a
        replica's committed number is its counter (it answers a new root with all of it)."""
        for m in op.messages:
            self.add(m)
        self.counter = max(self.counter, op.counter)
        self.committed = self.counter

    def truncate(self) -> None:
        """Forget what was stamped but never committed (a root handing its group over):
        nobody was given those messages, and the next root numbers from `committed`."""
        while self.archive and self.archive[-1].seq > self.committed:
            dropped = self.archive.pop()
            self._seqs.discard(dropped.seq)
            self.ids.pop(dropped.message_id, None)
        self.counter = self.committed
