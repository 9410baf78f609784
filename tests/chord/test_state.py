"""RingState: the successor-list rules and next-hop choice, checked against brute force."""

from __future__ import annotations

import bisect

from hypothesis import given
from hypothesis import strategies as st

from chord.ids import IdSpace, between
from chord.state import NodeRef, RingState

SPACE = IdSpace(8)
ids = st.integers(min_value=0, max_value=SPACE.size - 1)


def ref(i: int) -> NodeRef:
    return NodeRef(i, f"n{i}")


@given(ids, st.lists(ids, max_size=20), st.integers(min_value=1, max_value=8))
def test_adopted_lists_are_ordered_distinct_and_bounded(me: int, others: list[int], r: int) -> None:
    """Zave's OrderedSuccessorLists and NoDuplicates hold for whatever a peer reports."""
    state = RingState(SPACE, ref(me), r)
    head, *rest = [*others, me] if others else [me]
    state.adopt_successors(ref(head), [ref(x) for x in rest])
    got = [n.id for n in state.successors]
    assert len(got) <= r
    assert me not in got
    assert len(set(got)) == len(got)
    # In ring order after me... up to the first repeat/self in the reported list.
    if got and got[0] == head:
        expected = []
        for x in [head, *rest]:
            if x == me:
                break
            if x not in expected:
                expected.append(x)
        assert got == expected[:r]


@given(st.sets(ids, min_size=2, max_size=40), st.data())
def test_next_hop_from_a_correct_view_makes_progress(nodes: set[int], data: st.DataObject) -> None:
    """With correct successors and fingers, the first hop is the owner or strictly closer."""
    ring = sorted(nodes)
    me = data.draw(st.sampled_from(ring))
    key = data.draw(ids)
    state = RingState(SPACE, ref(me), 3)
    i = ring.index(me)
    state.adopt_successors(ref(ring[(i + 1) % len(ring)]),
                           [ref(ring[(i + k) % len(ring)]) for k in range(2, 4)])

    def successor(x: int) -> int:
        return ring[bisect.bisect_left(ring, x) % len(ring)]

    for f in range(SPACE.bits):
        s = successor(SPACE.finger_start(me, f))
        state.fingers[f] = ref(s) if s != me else None
    owner = successor(key)
    if owner == me:
        return  # the node delivers locally before asking for a next hop (RingState.owns)
    done, hops = state.next_hops(key)
    if done:
        assert hops[0].id == owner
    else:
        assert hops and between(hops[0].id, me, key)
        assert SPACE.distance(hops[0].id, key) < SPACE.distance(me, key)
