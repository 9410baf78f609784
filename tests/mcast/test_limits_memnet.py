"""Big messages never make a message bigger than the transport carries (the in-memory network
refuses one over MAX_MESSAGE_BYTES as gRPC does): 64 sends of 1 MiB in flight at once reach
every member exactly once, in order; the root then crashes and its successor takes over the
group from a copy; a member that resumes from the start gets the whole archive back."""

from __future__ import annotations

import asyncio

from chord.node import NodeConfig
from chord.ports import MAX_MESSAGE_BYTES
from mcast.core import MAX_PAYLOAD
from mcast.scribe import ScribeConfig
from mcast.tree import MESSAGE, Event
from tests.mcast.rings import grown_with_full_caches, scribe, scribe_ring

CONFIG = NodeConfig(successors=4, stabilize_interval=0.5, rpc_timeout=2.0, location_cache=64)
MESSAGES = 64


def payload(i: int) -> bytes:
    return bytes([i % 256]) * MAX_PAYLOAD


def test_64_messages_of_1_mib_in_flight_then_a_root_crash_and_a_full_resume(run_virtual
                                                                              ) -> None:
    assert MESSAGES * MAX_PAYLOAD > 4 * MAX_MESSAGE_BYTES  # all at once would never fit

    async def scenario() -> None:
        ring = scribe_ring(CONFIG, 3, ScribeConfig(max_children=2, parent_timeout=3.0))
        sims = await grown_with_full_caches(ring, 12)
        await scribe(sims[0]).create("big")
        got: dict[int, list[Event]] = {}
        for i, sim in enumerate(sims[1:5]):
            events = got.setdefault(i, [])
            await scribe(sim).join("big", events.append, member=f"m{i}")

        seqs = await asyncio.gather(*(scribe(sims[5 + i % 5]).send("big", payload(i))
                                      for i in range(MESSAGES)))
        assert sorted(seqs) == list(range(1, MESSAGES + 1))
        by_seq = {seq: payload(i) for i, seq in enumerate(seqs)}

        def delivered(events: list[Event]) -> list[int]:
            return [e.seq for e in events if e.kind == MESSAGE]

        assert await ring.wait_for(
            lambda: all(len(delivered(e)) >= MESSAGES for e in got.values()), 60, step=0.5)
        for events in got.values():
            assert delivered(events) == list(range(1, MESSAGES + 1))
            assert all(e.payload == by_seq[e.seq] for e in events if e.kind == MESSAGE)

        root = next(s for s in ring.nodes.values() if "big" in scribe(s).roots)
        await ring.crash(root.node.me.address)
        assert await ring.converge()
        survivor = next(s for s in sims[1:5] if s.node.me.address in ring.nodes)
        late: list[Event] = []
        await scribe(survivor).join("big", late.append, member="late", resume_after=0)
        assert await ring.wait_for(lambda: len(delivered(late)) >= MESSAGES, 60, step=0.5)
        assert delivered(late) == list(range(1, MESSAGES + 1))
        assert all(e.payload == by_seq[e.seq] for e in late if e.kind == MESSAGE)
        assert await scribe(survivor).send("big", b"after") == MESSAGES + 1

    run_virtual(scenario())
