"""The location cache: a bounded table of ring members this node has heard of, for one-hop
routing (after Gupta, Liskov and Rodrigues' one-hop DHT and Accordion).

It is only ever a guess, exactly as fingers are: a lookup asks the cached owner directly, and
that node answers only if it really owns the key. So an entry may be stale or dead without
harm — it costs one refused or failed call, and the entry is corrected or dropped. Entries are
learned from successor lists, fingers, routing paths, refusals' hints and neighbours' samples.
"""

from __future__ import annotations

import bisect
import random
from collections import OrderedDict
from collections.abc import Iterable

from chord.ids import IdSpace
from chord.state import NodeRef


class LocationCache:
    def __init__(self, space: IdSpace, me: NodeRef, capacity: int,
                 rng: random.Random | None = None) -> None:
        self.space = space
        self.me = me
        self.capacity = capacity
        self.rng = rng or random.Random(me.id)
        self._nodes: OrderedDict[int, NodeRef] = OrderedDict()  # least recently learned first
        self._ids: list[int] = []  # the same ids, sorted, for successor search

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def learn(self, nodes: Iterable[NodeRef | None]) -> int:
        """Remember these nodes; returns how many were new. Over capacity, the entry learned
        longest ago goes first."""
        new = 0
        if not self.enabled:
            return 0
        for node in nodes:
            if node is None or node.id == self.me.id:
                continue
            known = self._nodes.get(node.id)
            if known is not None:
                if known.address == node.address:
                    self._nodes.move_to_end(node.id)
                    continue
                self.forget(node.id)  # same id under another address: the newer wins
            self._nodes[node.id] = node
            bisect.insort(self._ids, node.id)
            new += 1
            if len(self._nodes) > self.capacity:
                oldest, _ = self._nodes.popitem(last=False)
                del self._ids[bisect.bisect_left(self._ids, oldest)]
        return new

    def forget(self, node_id: int) -> None:
        if self._nodes.pop(node_id, None) is not None:
            del self._ids[bisect.bisect_left(self._ids, node_id)]

    def owner_guess(self, key: int) -> NodeRef | None:
        """The first known node at or after `key` clockwise (its owner, if we know everyone
        between)."""
        if not self._ids:
            return None
        i = bisect.bisect_left(self._ids, key)
        return self._nodes[self._ids[i % len(self._ids)]]

    def nodes(self) -> list[NodeRef]:
        """Every node known, in id order."""
        return [self._nodes[i] for i in self._ids]

    def sample(self, count: int) -> list[NodeRef]:
        """Up to `count` known nodes, drawn at random (what a neighbour's gossip asks for)."""
        if count <= 0 or not self._nodes:
            return []
        ids = self.rng.sample(self._ids, min(count, len(self._ids)))
        return [self._nodes[i] for i in ids]
