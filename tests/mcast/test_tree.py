"""The pure per-group state of mcast/tree.py: a node's stream (GroupState), a local member's
exactly-once cursor (Member) and the root's counter and archive (RootState).

Plain unit tests of each behaviour, then hypothesis properties: a state machine drives a
GroupState and the members it feeds with random, reordered, duplicated batches from one
stream and the occasional unrecoverable loss, the way mcast/scribe.py does.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chord.ports import MAX_MESSAGE_BYTES
from chord.state import NodeRef
from chordcast.v1 import mcast_pb2 as mpb
from mcast.tree import (
    GAP,
    MESSAGE,
    Child,
    Event,
    GroupState,
    Member,
    RootState,
    chunks,
    message_event,
    take,
)

GROUP = "news"


def msg(seq: int, message_id: str = "") -> mpb.GroupMessage:
    return mpb.GroupMessage(seq=seq, payload=f"p{seq}".encode(), sender="s", ts_ms=1000 + seq,
                            message_id=message_id)


def msgs(*seqs: int) -> list[mpb.GroupMessage]:
    return [msg(s) for s in seqs]


def seqs(messages: Iterable[mpb.GroupMessage]) -> list[int]:
    return [m.seq for m in messages]


def recording_member(member_id: int = 1) -> tuple[Member, list[Event]]:
    events: list[Event] = []
    return Member(member_id, f"m{member_id}", events.append), events


def delivered(events: list[Event]) -> list[int]:
    return [e.seq for e in events if e.kind == MESSAGE]


def record(archive: int = 4) -> mpb.GroupRecord:
    return mpb.GroupRecord(name=GROUP, creator="alice", created_ms=1, archive=archive)


# ============================================================================ GroupState
def test_fresh_forwarder_starts_where_the_stream_is() -> None:
    g = GroupState(GROUP, 1)
    assert g.last is None and g.missing() is None
    assert seqs(g.accept(msgs(5))) == [5]
    assert g.last == 5
    assert g.accept(msgs(3, 4)) == []  # before our start: never deliverable
    assert g.ahead == {} and g.missing() is None


def test_accept_in_order() -> None:
    g = GroupState(GROUP, 1)
    assert seqs(g.accept(msgs(1, 2, 3))) == [1, 2, 3]
    assert seqs(g.accept(msgs(4))) == [4]
    assert g.last == 4 and g.ahead == {}
    assert seqs(g.recent) == [1, 2, 3, 4]


def test_out_of_order_is_held_ahead_then_released_in_order() -> None:
    g = GroupState(GROUP, 1)
    g.accept(msgs(1))
    assert g.accept(msgs(4, 3)) == []
    assert sorted(g.ahead) == [3, 4]
    assert seqs(g.accept(msgs(2))) == [2, 3, 4]
    assert g.ahead == {} and g.last == 4


def test_duplicates_are_dropped() -> None:
    g = GroupState(GROUP, 1)
    assert seqs(g.accept(msgs(1, 1, 2))) == [1, 2]
    assert g.accept(msgs(2, 1)) == []          # already accepted
    assert g.accept(msgs(5, 5)) == []          # held once
    assert list(g.ahead) == [5]
    assert seqs(g.accept(msgs(3, 4, 5, 3))) == [3, 4, 5]
    assert seqs(g.recent) == [1, 2, 3, 4, 5]


def test_missing_reports_the_first_hole() -> None:
    g = GroupState(GROUP, 1)
    g.accept(msgs(1))
    assert g.missing() is None
    g.accept(msgs(4, 7))
    assert g.missing() == (2, 3)
    g.accept(msgs(2, 3))
    assert g.missing() == (5, 6)
    g.accept(msgs(5, 6))
    assert g.missing() is None


def test_skip_to_releases_what_lies_beyond_a_lost_range() -> None:
    g = GroupState(GROUP, 1)
    g.accept(msgs(1, 4, 5, 7))
    assert g.missing() == (2, 3)
    assert seqs(g.skip_to(3)) == [4, 5]    # 2..3 lost for good
    assert g.last == 5 and g.missing() == (6, 6)
    assert seqs(g.skip_to(6)) == [7]
    assert g.last == 7 and g.ahead == {}


def test_skip_to_drops_what_it_skips_and_never_goes_back() -> None:
    g = GroupState(GROUP, 1)
    g.accept(msgs(1, 3, 6))
    assert g.skip_to(4) == []               # 3 is dropped with the lost range
    assert g.last == 4 and list(g.ahead) == [6]
    assert g.skip_to(2) == []               # behind us: nothing changes
    assert g.last == 4 and list(g.ahead) == [6]


def test_held_base_waits_for_the_position() -> None:
    """While our JOIN is in flight, messages wait; the answer sets where the stream starts."""
    g = GroupState(GROUP, 1, hold_base=True)
    assert g.accept(msgs(7, 5, 6)) == []
    assert g.last is None and sorted(g.ahead) == [5, 6, 7]
    assert g.missing() is None              # no base, so no hole yet
    g.hold_base = False
    assert seqs(g.skip_to(5)) == [6, 7]     # positioned at 5, as scribe's _position does
    assert g.ahead == {} and g.last == 7


def test_from_recent_is_bounded_by_recent_limit() -> None:
    g = GroupState(GROUP, 1, recent_limit=3)
    g.accept(msgs(1, 2, 3, 4, 5))
    assert seqs(g.recent) == [3, 4, 5]
    assert seqs(g.from_recent(1, 4)) == [3, 4]
    assert seqs(g.from_recent(5, 9)) == [5]
    assert g.from_recent(6, 9) == []


def test_idle_height_and_subtree_members() -> None:
    g = GroupState(GROUP, 1)
    assert g.idle and not g.in_tree
    assert g.height() == 1 and g.subtree_members() == 0
    g.members[1] = recording_member(1)[0]
    assert not g.idle and g.subtree_members() == 1
    g.children["a:1"] = Child(NodeRef(10, "a:1"), expires=5.0, members=3, height=2)
    g.children["b:1"] = Child(NodeRef(11, "b:1"), expires=5.0, members=2, height=4)
    assert g.height() == 5 and g.subtree_members() == 6
    g.members.clear()
    assert not g.idle  # still a forwarder
    g.children.clear()
    assert g.idle
    g.is_root = True
    assert not g.idle and g.in_tree
    g.is_root, g.parent = False, NodeRef(3, "p:1")
    assert g.in_tree


# ============================================================================ Member
def test_message_event_carries_the_message() -> None:
    assert message_event(GROUP, msg(3)) == Event(MESSAGE, GROUP, 3, b"p3", "s", 1003)


def test_member_delivers_in_order_exactly_once() -> None:
    member, events = recording_member()
    for m in msgs(1, 2, 2, 3, 1):
        member.offer(GROUP, m)
    assert delivered(events) == [1, 2, 3]
    assert member.cursor == 3 and member.pending == {}
    assert [e.payload for e in events] == [b"p1", b"p2", b"p3"]


def test_member_holds_out_of_order_messages() -> None:
    member, events = recording_member()
    member.offer(GROUP, msg(10))           # the first message sets the cursor
    assert delivered(events) == [10] and member.cursor == 10
    member.offer(GROUP, msg(13))
    member.offer(GROUP, msg(12))
    member.offer(GROUP, msg(12))
    assert delivered(events) == [10] and sorted(member.pending) == [12, 13]
    member.offer(GROUP, msg(11))
    assert delivered(events) == [10, 11, 12, 13] and member.pending == {}
    member.offer(GROUP, msg(9))            # behind the cursor: dropped
    assert delivered(events) == [10, 11, 12, 13] and member.pending == {}


def test_resumed_member_waits_for_its_backfill() -> None:
    member, events = recording_member()
    member.cursor = 4                       # resumed after 4
    member.offer(GROUP, msg(7))
    assert events == [] and list(member.pending) == [7]
    for m in msgs(5, 6):
        member.offer(GROUP, m)
    assert delivered(events) == [5, 6, 7]


def test_member_gap_is_reported_once_and_moves_the_cursor() -> None:
    member, events = recording_member()
    member.offer(GROUP, msg(1))
    member.offer(GROUP, msg(3))
    member.offer(GROUP, msg(6))
    member.gap(GROUP, 4)
    assert events[-1] == Event(GAP, GROUP, seq=2, last_seq=4)
    assert member.cursor == 4 and list(member.pending) == [6]   # 3 went with the gap
    member.gap(GROUP, 3)                                       # already behind us: silent
    member.gap(GROUP, 4)
    assert [e.kind for e in events] == [MESSAGE, GAP]
    member.offer(GROUP, msg(5))
    assert delivered(events) == [1, 5, 6]


def test_member_gap_before_any_message_is_silent() -> None:
    member, events = recording_member()
    member.gap(GROUP, 9)
    assert events == [] and member.cursor is None
    member.offer(GROUP, msg(12))
    assert delivered(events) == [12]


# A gap must also release what was held behind the lost range (found by this test).
def test_member_gap_releases_what_follows_the_lost_range() -> None:
    member, events = recording_member()
    member.offer(GROUP, msg(1))
    member.offer(GROUP, msg(4))
    member.gap(GROUP, 3)
    assert delivered(events) == [1, 4]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=60))
def test_member_offer_is_exactly_once_in_order(offers: list[int]) -> None:
    member, events = recording_member()
    for s in offers:
        member.offer(GROUP, msg(s))
    got = delivered(events)
    start = offers[0]
    run = start
    while run + 1 in offers:
        run += 1
    assert got == list(range(start, run + 1))       # consecutive, no duplicates, in order
    assert member.cursor == run
    assert sorted(member.pending) == sorted({s for s in offers if s > run})


# ============================================================================ RootState
def test_stamp_gives_consecutive_numbers() -> None:
    root = RootState(record())
    stamped = [root.stamp(b"x", "s", "", 10 + i) for i in range(3)]
    assert [(m.seq, fresh) for m, fresh in stamped] == [(1, True), (2, True), (3, True)]
    assert root.counter == 3
    first = stamped[0][0]
    assert (first.payload, first.sender, first.ts_ms) == (b"x", "s", 10)


def test_a_retried_message_is_stamped_once() -> None:
    root = RootState(record())
    m1, fresh1 = root.stamp(b"a", "s", "id-1", 1)
    root.stamp(b"b", "s", "id-2", 2)
    again, fresh2 = root.stamp(b"a", "s", "id-1", 3)
    assert (fresh1, fresh2) == (True, False)
    assert again.seq == m1.seq == 1 and again.ts_ms == 1
    assert root.counter == 2 and seqs(root.archive) == [1, 2]


def test_messages_without_an_id_are_never_deduplicated() -> None:
    root = RootState(record())
    assert [root.stamp(b"a", "s", "", 1)[0].seq for _ in range(2)] == [1, 2]


def test_archive_is_bounded_by_the_record() -> None:
    root = RootState(record(archive=3))
    for i in range(5):
        root.stamp(b"x", "s", f"id-{i}", i)
    assert seqs(root.archive) == [3, 4, 5]
    assert set(root.ids) == {"id-2", "id-3", "id-4"}
    # A retry of a message the archive no longer has gets a new number.
    m, fresh = root.stamp(b"x", "s", "id-0", 9)
    assert fresh and m.seq == 6


def test_archive_keeps_at_least_one_message() -> None:
    root = RootState(record(archive=0))
    root.stamp(b"x", "s", "", 1)
    root.stamp(b"y", "s", "", 2)
    assert seqs(root.archive) == [2]


def test_range_and_first_available_after_trimming() -> None:
    root = RootState(record(archive=3))
    assert root.first_available() == 1 and root.range(1, 10) == []
    for i in range(6):
        root.stamp(b"x", "s", "", i)
    root.committed = 5  # 6 is still on its way to the replicas: nobody may be given it yet
    assert root.first_available() == 4
    assert seqs(root.range(1, 5)) == [4, 5]
    assert seqs(root.range(5, 99)) == [5]
    root.committed = 6
    assert seqs(root.range(5, 99)) == [5, 6]
    assert root.range(7, 9) == []
    (op,) = root.to_replicas()
    assert seqs(op.messages) == [4, 5, 6]


def test_add_ignores_what_is_already_archived() -> None:
    root = RootState(record())
    root.add(msg(5, "a"))
    root.add(msg(5, "b"))
    root.add(msg(3, "c"))
    assert seqs(root.archive) == [5] and root.ids == {"a": 5}
    root.add(msg(8))
    assert root.counter == 8 and seqs(root.archive) == [5, 8]
    root.add(msg(6, "d"))  # batches copied to a replica may arrive out of order
    root.add(msg(6, "e"))
    assert seqs(root.archive) == [5, 6, 8] and root.ids == {"a": 5, "d": 6}


def test_batches_and_copies_stay_under_the_size_limit() -> None:
    big = [mpb.GroupMessage(seq=i, payload=b"x" * (1 << 20)) for i in range(1, 11)]
    assert [len(c) for c in chunks(big, 64)] == [4, 4, 2]  # 4 MiB of payload at most
    assert [len(c) for c in chunks(msgs(*range(1, 8)), 3)] == [3, 3, 1]
    assert seqs(take(big, 64)) == [1, 2, 3, 4] and take([], 5) == []
    huge = mpb.GroupMessage(seq=1, payload=b"x" * (5 << 20))
    assert take([huge, big[0]], 64) == [huge]  # one message always goes, alone
    root = RootState(record(archive=100))
    for m in big:
        root.add(m)
    root.committed = 10
    copies = root.to_replicas()
    assert [seqs(c.messages) for c in copies] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert all(c.record == root.record and c.counter == 10 for c in copies)
    assert all(c.ByteSize() < MAX_MESSAGE_BYTES for c in copies)


def test_replica_round_trip() -> None:
    root = RootState(record(archive=3))
    for i in range(5):
        root.stamp(f"m{i}".encode(), "s", f"id-{i}", i)
    (empty,) = root.to_replicas()
    assert empty.counter == 0 and not empty.messages  # nothing committed yet: nothing to copy
    root.committed = root.counter
    (op,) = root.to_replicas()
    assert op.name == GROUP and op.counter == 5 and seqs(op.messages) == [3, 4, 5]
    wire = mpb.ReplicaOp.FromString(op.SerializeToString())
    copy = RootState.from_replica(wire)
    assert copy.record == root.record and copy.record is not wire.record
    assert copy.counter == root.counter
    assert list(copy.archive) == list(root.archive)
    assert copy.archive.maxlen == root.archive.maxlen
    assert copy.ids == root.ids
    assert copy.first_available() == root.first_available()
    # The copy carries on where the root stopped, deduplication included.
    assert copy.stamp(b"m4", "s", "id-4", 99) == (root.archive[-1], False)
    assert copy.stamp(b"new", "s", "id-5", 6)[0].seq == 6


def test_replica_counter_survives_an_empty_archive() -> None:
    op = mpb.ReplicaOp(name=GROUP, record=record(), counter=41)
    state = RootState.from_replica(op)
    assert state.counter == 41 and state.first_available() == 42
    assert state.stamp(b"x", "s", "", 1)[0].seq == 42


@settings(max_examples=200, deadline=None)
@given(archive=st.integers(0, 4),
       ids=st.lists(st.sampled_from(["", "a", "b", "c", "d", "e"]), max_size=40))
def test_stamp_numbers_each_message_once(archive: int, ids: list[str]) -> None:
    root = RootState(record(archive))
    limit = max(1, archive)
    counter = 0
    for message_id in ids:
        kept = {m.message_id: m.seq for m in root.archive if m.message_id}
        m, fresh = root.stamp(b"x", "s", message_id, 0)
        if message_id in kept:
            assert not fresh and m.seq == kept[message_id] and root.counter == counter
        else:
            counter += 1
            assert fresh and m.seq == counter == root.counter
        assert seqs(root.archive) == list(range(max(1, counter - limit + 1), counter + 1))
        assert root.ids == {m.message_id: m.seq for m in root.archive if m.message_id}
        assert root.first_available() == (root.archive[0].seq if counter else 1)


# ============================================================================ state machine
N = 24  # the stream is 1..N


class StreamMachine(RuleBasedStateMachine):
    """A node's GroupState fed the way scribe.py feeds it: batches from the parent in any
    order with duplicates, a position answer when it joined with a held base, and losses
    (member.gap, then skip_to) that the root's archive can no longer repair. Members get every
    released message, the first from the start, others joining along the way."""

    def __init__(self) -> None:
        super().__init__()
        self.g = GroupState(GROUP, 1)
        self.members: list[tuple[Member, list[Event], int]] = []  # member, events, joined at
        self.seen: set[int] = set()       # every seq ever given to accept()
        self.released: list[int] = []     # every seq accept()/skip_to() returned, in order
        self.lost: set[int] = set()       # seqs skipped over by skip_to()
        self.base: int | None = None      # where the stream started (the first `last`)

    @initialize(hold_base=st.booleans(), recent_limit=st.integers(1, 8))
    def start(self, hold_base: bool, recent_limit: int) -> None:
        self.g = GroupState(GROUP, 1, recent_limit=recent_limit, hold_base=hold_base)
        self._add_member()

    def _add_member(self) -> None:
        member, events = recording_member(len(self.members) + 1)
        self.g.members[member.id] = member
        self.members.append((member, events, len(self.released)))

    def _release(self, before: int | None, out: list[mpb.GroupMessage]) -> None:
        """`out` must be exactly the run after `before` up to the new `last`."""
        got = seqs(out)
        assert self.g.last is not None or got == []
        if self.g.last is not None:
            start = (before if before is not None else self.base)
            assert start is not None
            assert got == list(range(self.g.last - len(got) + 1, self.g.last + 1))
            assert not got or got[0] > start
        for member, _, _ in self.members:
            for m in out:
                member.offer(GROUP, m)
        self.released.extend(got)

    @rule(batch=st.lists(st.integers(1, N), min_size=1, max_size=8))
    def deliver(self, batch: list[int]) -> None:
        before = self.g.last
        out = self.g.accept(msgs(*batch))
        if before is None and self.g.last is not None:
            assert not self.g.hold_base
            self.base = batch[0] - 1   # a fresh forwarder starts at the first message
        if before is not None:
            assert out == [] or out[0].seq == before + 1
        self.seen.update(batch)
        self._release(before, out)

    @precondition(lambda self: self.g.hold_base and self.g.last is None)
    @rule(seq=st.integers(0, N))
    def position(self, seq: int) -> None:
        """The JOIN's answer: our stream starts after `seq`."""
        self.g.hold_base = False
        out = self.g.skip_to(seq)
        self.base = seq
        assert out == [] or out[0].seq == seq + 1
        self._release(None, out)

    @rule(seq=st.integers(1, N))
    def lose(self, seq: int) -> None:
        """Everything up to `seq` is gone from the archive: tell members, move past it."""
        for member, _, _ in self.members:
            member.gap(GROUP, seq)
        before = self.g.last
        out = self.g.skip_to(seq)
        if before is None:
            self.base = seq
        elif seq > before:
            self.lost.update(range(before + 1, seq + 1))
        floor = seq if before is None else max(before, seq)
        assert out == [] or out[0].seq == floor + 1
        self._release(before, out)

    @precondition(lambda self: len(self.members) < 3)
    @rule()
    def join_member(self) -> None:
        self._add_member()

    # ---------------------------------------------------------------- invariants
    @invariant()
    def released_strictly_increasing(self) -> None:
        assert all(a < b for a, b in pairwise(self.released))
        assert set(self.released) <= self.seen
        assert not set(self.released) & self.lost

    @invariant()
    def base_to_last_is_released_or_lost(self) -> None:
        g = self.g
        assert (g.last is None) == (self.base is None)
        if g.last is not None and self.base is not None:
            assert g.last >= self.base
            assert set(self.released) | self.lost == set(range(self.base + 1, g.last + 1))

    @invariant()
    def ahead_holds_exactly_what_came_beyond_last(self) -> None:
        g = self.g
        assert set(g.ahead) == {s for s in self.seen if g.last is None or s > g.last}
        assert all(g.ahead[s].seq == s for s in g.ahead)

    @invariant()
    def missing_is_the_first_hole(self) -> None:
        g = self.g
        hole = g.missing()
        if g.last is None or not g.ahead:
            assert hole is None
            return
        assert hole == (g.last + 1, min(g.ahead) - 1)
        lo, hi = hole
        assert lo <= hi
        assert not any(lo <= s <= hi for s in self.seen)   # nothing we have is in the hole

    @invariant()
    def recent_is_the_tail_of_the_stream(self) -> None:
        g = self.g
        assert seqs(g.recent) == self.released[-g.recent_limit:]
        assert g.from_recent(1, N) == list(g.recent)

    @invariant()
    def members_deliver_exactly_the_accepted_stream(self) -> None:
        for member, events, joined_at in self.members:
            got = delivered(events)
            assert got == self.released[joined_at:]              # in order, exactly once
            assert len(set(got)) == len(got)
            assert member.pending == {}
            if member.cursor is not None:
                assert member.cursor == self.g.last
            # Messages and gaps tile the stream from the member's first event, without
            # overlap; what a gap covers was really lost.
            spans = [(e.seq, e.last_seq if e.kind == GAP else e.seq) for e in events]
            assert all(b[0] == a[1] + 1 for a, b in pairwise(spans))
            for e in events:
                if e.kind == GAP:
                    assert set(range(e.seq, e.last_seq + 1)) <= self.lost
                assert e.group == GROUP


StreamMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50,
                                           deadline=None)
test_stream_machine = StreamMachine.TestCase
