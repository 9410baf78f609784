"""What of a group a node keeps on its disk (the `Durable` port): the root state it holds, as
the root or as one of its replicas — the record (name, creator, access lists), the last
committed number, and the archive — so a ring that restarts whole goes on numbering where it
stopped and still serves the archive.

A copy is saved when it becomes committed where it is: at a replica when the root's copy
arrives (that is what the replica acknowledges), at the root once a replica took the batch
(before the senders are told). A number is so never on a disk unless it was committed, and a
node that comes back holds no message its group's next root could number differently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from chord.ports import Durable, Row
from chordcast.v1 import mcast_pb2 as mpb
from mcast.tree import RootState

log = logging.getLogger(__name__)

GROUPS = "groups"             # name -> ReplicaOp(record, counter), ranked by the counter
MESSAGES = "group_messages"   # "name#seq" -> GroupMessage


def _key(name: str, seq: int) -> str:
    return f"{name}#{seq:020d}"


class GroupDisk:
    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        # Per group, the lowest message number that may be on disk: what the archive drops
        # after it is forgotten on disk as well.
        self._oldest: dict[str, int] = {}

    async def save(self, state: RootState, committed: int,
                   messages: Sequence[mpb.GroupMessage]) -> None:
        """The group's record, its number `committed` here, and `messages` (its newest)."""
        if not self.durable.keeps:
            return
        name = state.record.name
        meta = mpb.ReplicaOp(name=name, record=state.record, counter=committed)
        kept = [m for m in messages if m.seq <= committed]
        saves = [self.durable.save(GROUPS, [Row(name, committed, b"",
                                                meta.SerializeToString())])]
        if kept:
            saves.append(self.durable.save(MESSAGES, [
                Row(_key(name, m.seq), m.seq, b"", m.SerializeToString()) for m in kept]))
            self._oldest.setdefault(name, kept[0].seq)
        await asyncio.gather(*saves)
        first = state.first_available()
        oldest = self._oldest.get(name)
        if oldest is not None and oldest < first:
            self._oldest[name] = first
            await self.durable.forget(MESSAGES, [_key(name, s) for s in range(oldest, first)])

    async def drop(self, name: str, state: RootState | None) -> None:
        """The group was destroyed (or is no longer ours to keep)."""
        if not self.durable.keeps:
            return
        seqs = {m.seq for m in state.archive} if state is not None else set()
        oldest = self._oldest.pop(name, None)
        if oldest is not None and seqs:
            seqs.update(range(oldest, min(seqs)))
        await self.durable.forget(GROUPS, [name])
        await self.durable.forget(MESSAGES, [_key(name, s) for s in sorted(seqs)])

    def load(self) -> list[RootState]:
        """Every group copy on disk, with the committed messages of its archive."""
        messages: dict[str, list[mpb.GroupMessage]] = {}
        for row in self.durable.load(MESSAGES):
            name, _, _ = row.key.rpartition("#")
            messages.setdefault(name, []).append(mpb.GroupMessage.FromString(row.value))
        states = []
        for row in self.durable.load(GROUPS):
            try:
                op = mpb.ReplicaOp.FromString(row.value)
            except Exception as exc:  # a row this version cannot read: say so, keep going
                log.warning("skipping stored group %r: %s", row.key, exc)
                continue
            held = sorted((m for m in messages.get(op.name, []) if m.seq <= op.counter),
                          key=lambda m: m.seq)
            op.messages.extend(held)
            states.append(RootState.from_replica(op))
            if held:
                self._oldest[op.name] = held[0].seq
        return states
