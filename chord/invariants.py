"""Zave's invariants of a correct Chord ring, checked on a global snapshot (pure).

The snapshot maps every live member to its successor list (ids). A member's *best successor*
is the first live entry of its list. Then (Zave, "How to Make Chord Correct"):

- AtLeastOneRing: following best successors from some member comes back to it (a cycle).
- AtMostOneRing: there is only one such cycle: from any ring member, the walk visits all ring
  members.
- OrderedRing: on the ring, no ring member lies strictly between a member and its best
  successor.
- ConnectedAppendages: every member that is not on the ring reaches it by best successors.
- OrderedSuccessorLists: each list is in ring order starting after its owner.
- NoDuplicates: no list repeats a node or holds its owner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chord.ids import IdSpace

NAMES = ("AtLeastOneRing", "AtMostOneRing", "OrderedRing", "ConnectedAppendages",
         "OrderedSuccessorLists", "NoDuplicates")


def check(space: IdSpace, lists: Mapping[int, Sequence[int]]) -> list[str]:
    """Violations as "Invariant: detail" lines; empty when all hold."""
    violations: list[str] = []
    live = set(lists)
    if not live:
        return violations
    fmt = space.format

    for n, succs in lists.items():
        if n in succs or len(set(succs)) != len(succs):
            violations.append(f"NoDuplicates: {fmt(n)} has {[fmt(s) for s in succs]}")
        dists = [space.distance(n, s) for s in succs]
        if dists != sorted(dists):
            violations.append(f"OrderedSuccessorLists: {fmt(n)} has "
                              f"{[fmt(s) for s in succs]}")

    def best(n: int) -> int | None:
        return next((s for s in lists[n] if s in live), None)

    if len(live) == 1:
        (only,) = live
        if lists[only]:
            violations.append(f"AtLeastOneRing: the only member {fmt(only)} points at others")
        return violations

    # Find the cycles of the best-successor graph (a functional graph on live members).
    state: dict[int, int] = {}  # 0 visiting, 1 done
    on_cycle: set[int] = set()
    cycles = 0
    for start in sorted(live):
        path: list[int] = []
        walker: int | None = start
        while walker is not None and walker not in state:
            state[walker] = 0
            path.append(walker)
            walker = best(walker)
        if walker is not None and state.get(walker) == 0:
            cycle = path[path.index(walker):]
            on_cycle.update(cycle)
            cycles += 1
        for p in path:
            state[p] = 1
    if cycles == 0:
        violations.append("AtLeastOneRing: no member's best successors lead back to it")
        return violations
    if cycles > 1:
        violations.append(f"AtMostOneRing: {cycles} disjoint rings")
    ring = sorted(on_cycle)
    for i, n in enumerate(ring):
        # In id order, the next ring member must be n's best successor: nothing skipped.
        expected, s = ring[(i + 1) % len(ring)], best(n)
        if s != expected:
            violations.append(f"OrderedRing: {fmt(n)} -> {fmt(s or 0)} skips {fmt(expected)}")
            break
    for n in live - on_cycle:
        seen: set[int] = set()
        m: int | None = n
        while m is not None and m not in on_cycle and m not in seen:
            seen.add(m)
            m = best(m)
        if m is None or m not in on_cycle:
            violations.append(f"ConnectedAppendages: {fmt(n)} does not reach the ring")
    return violations
