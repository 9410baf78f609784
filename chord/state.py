"""A node's view of the ring: successor list, predecessor, finger table, next-hop choice.

Pure data and decisions; the node protocol (`chord.node`) mutates it after talking to peers.
Following Zave's correct Chord, pointers are only stored for nodes that just answered, and the
successor list is always replaced whole.
"""

from __future__ import annotations

from typing import NamedTuple

from chord.ids import IdSpace, between_right


class NodeRef(NamedTuple):
    id: int
    address: str


class RingState:
    def __init__(self, space: IdSpace, me: NodeRef, successors_wanted: int) -> None:
        if successors_wanted < 1:
            raise ValueError("the successor list needs at least one entry")
        self.space = space
        self.me = me
        self.r = successors_wanted
        # Distinct nodes in ring order after `me`; empty means we are alone on the ring.
        self.successors: list[NodeRef] = []
        self.predecessor: NodeRef | None = None
        self.fingers: list[NodeRef | None] = [None] * space.bits

    # -- successors ----------------------------------------------------------------------
    @property
    def successor(self) -> NodeRef:
        return self.successors[0] if self.successors else self.me

    def adopt_successors(self, head: NodeRef, heads_list: list[NodeRef]) -> None:
        """succList := [head] + butLast(head.succList), cut where the ring wraps back to us."""
        merged: list[NodeRef] = []
        seen = {self.me.id}
        for node in [head, *heads_list]:
            if node.id in seen:
                if node.id == self.me.id:
                    break  # the ring closed: everything after repeats
                continue
            seen.add(node.id)
            merged.append(node)
            if len(merged) == self.r:
                break
        self.successors = merged

    # -- forgetting dead nodes -----------------------------------------------------------
    def forget(self, node_id: int) -> None:
        """A node did not answer: never keep a pointer to it (successors, fingers, predecessor)."""
        self.successors = [s for s in self.successors if s.id != node_id]
        self.fingers = [None if f is not None and f.id == node_id else f for f in self.fingers]
        if self.predecessor is not None and self.predecessor.id == node_id:
            self.predecessor = None

    # -- ownership and routing -----------------------------------------------------------
    def owns(self, key: int) -> bool:
        """key in (predecessor, me]. Alone on the ring we own everything; with an unknown
        predecessor but known successors we cannot tell, and say no."""
        if self.predecessor is None:
            return not self.successors
        return between_right(key, self.predecessor.id, self.me.id)

    def owner_among_successors(self, key: int) -> NodeRef | None:
        """The owner of key when it falls within the span of our successor list."""
        prev = self.me.id
        for node in self.successors:
            if between_right(key, prev, node.id):
                return node
            prev = node.id
        return None

    def preceding_candidates(self, key: int) -> list[NodeRef]:
        """Known nodes strictly between us and key, closest to key first (fallback order)."""
        # Inlined interval arithmetic: this runs on every hop of every lookup.
        me, size = self.me.id, self.space.size
        span = (key - me) % size or size  # (me, me) is the whole ring but me
        found: dict[int, NodeRef] = {}
        prev = None
        for node in (*self.fingers, *self.successors):
            if node is prev:
                continue  # fingers come in runs of one node
            prev = node
            if node is not None and 0 < (node.id - me) % size < span:
                found[node.id] = node
        return sorted(found.values(), key=lambda n: (key - n.id) % size)

    def next_hops(self, key: int) -> tuple[bool, list[NodeRef]]:
        """Where to send a message for key: (True, [owner, later successors...]) when the owner
        is in our successor list, else (False, [closest preceding nodes...]).

        When we are alone, the owner is us: (True, [me]).
        """
        if not self.successors:
            return True, [self.me]
        owner = self.owner_among_successors(key)
        if owner is not None:
            i = self.successors.index(owner)
            return True, self.successors[i:]
        return False, self.preceding_candidates(key) or self.successors[:]

    def estimate_size(self) -> int:
        """Ring size from the density of our successor list (exact when the list wraps)."""
        if len(self.successors) < self.r:
            return len(self.successors) + 1
        span = self.space.distance(self.me.id, self.successors[-1].id)
        return max(self.r + 1, round(self.r * self.space.size / max(span, 1)))

    # -- fingers ----------------------------------------------------------------------------
    def set_finger_run(self, i: int, node: NodeRef) -> int:
        """Set finger i to node and every later finger whose start node also covers.
        Returns the index of the next finger still to refresh."""
        bits = self.space.bits
        self.fingers[i] = node
        j = i + 1
        start = self.space.finger_start
        while j < bits and between_right(start(self.me.id, j), self.me.id, node.id):
            self.fingers[j] = node
            j += 1
        return j % bits

    def distinct_fingers(self) -> list[NodeRef]:
        out: list[NodeRef] = []
        for f in self.fingers:
            if f is not None and (not out or out[-1].id != f.id) and f not in out:
                out.append(f)
        return out
