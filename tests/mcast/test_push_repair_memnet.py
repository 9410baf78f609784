"""A push down the tree that does not land is repaired at once, in virtual time: a parent
whose flow to a child broke re-sends its newest messages on a new flow with the next push, and
a child that then sees a hole asks for it immediately. Neither waits for the refresh timer
(a third of the parent timeout: ten seconds here), and the tree itself is never repaired."""

from __future__ import annotations

import asyncio

import pytest

from chord.node import NodeConfig
from mcast import children
from mcast.scribe import ScribeConfig
from mcast.tree import MESSAGE, Event
from tests.mcast.rings import Counted, grown_with_full_caches, scribe, scribe_ring, settled

NODES = 8
LINK = 0.005  # the in-memory network's fixed one-way latency
CONFIG = NodeConfig(successors=4, stabilize_interval=0.5, rpc_timeout=0.5, location_cache=256)
TAIL = 64  # the re-sent tail, smaller than one commit batch, so a burst can outgrow it


@pytest.mark.parametrize("burst", [TAIL // 2, TAIL + 40])
def test_a_lost_push_is_resent_and_a_hole_filled_without_waiting_for_a_timer(
        run_virtual, monkeypatch: pytest.MonkeyPatch, burst: int) -> None:
    monkeypatch.setattr(children, "RESEND", TAIL)

    async def scenario() -> None:
        observer = Counted()
        ring = scribe_ring(CONFIG, 11, ScribeConfig(parent_timeout=30.0), observer)
        sims = await grown_with_full_caches(ring, NODES)
        await scribe(sims[0]).create("g")
        root = next(s for s in sims if "g" in scribe(s).roots)
        child = next(s for s in sims if s is not root)
        sender = next(s for s in sims if s not in (root, child))
        loop = asyncio.get_running_loop()
        got: list[tuple[int, float]] = []

        def record(e: Event) -> None:
            if e.kind == MESSAGE:
                got.append((e.seq, loop.time()))

        await scribe(child).join("g", record, member="m")

        def parent_of_child() -> str | None:
            parent = scribe(child).groups["g"].parent
            return parent.address if parent else None

        assert await settled(parent_of_child, hold=2.0, timeout=30.0)
        assert parent_of_child() == root.node.me.address  # one level: the root pushes
        observer.events.clear()

        # The link from the root to the child drops everything for a moment (as when the
        # connection under a flow is replaced): a burst sent then is lost.
        ring.net.cut(root.node.me.address, child.node.me.address)
        seqs = await asyncio.gather(*(scribe(sender).send("g", f"m{k}".encode())
                                      for k in range(burst)))
        assert sorted(seqs) == list(range(1, burst + 1))
        assert got == []
        ring.net.heal()

        # The next message finds the flow broken: a new one carries the newest TAIL again,
        # and the child asks its parent for any hole before them.
        sent_at = loop.time()
        last = await scribe(sender).send("g", b"after")
        assert await ring.wait_for(lambda: len(got) == last, 5.0, step=0.001)
        assert [s for s, _ in got] == list(range(1, last + 1))
        took = max(t for _, t in got) - sent_at
        assert took < 12 * LINK, f"repaired in {took * 1000:.0f} ms: a timer, not at once"
        assert observer.events["gap_repaired"] == (burst > TAIL)
        assert observer.events["tree_repair"] == 0, observer.events

    run_virtual(scenario())
