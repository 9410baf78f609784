"""Many publishers at once while the root's replicas and then the root itself crash: every
member sees one and the same sequence, every acknowledged message exactly once at the number
its sender was given, and no number ever names two messages. Sends that fail are retried with
their message id, as the client library does, and are stamped once."""

from __future__ import annotations

import asyncio

from chord.node import NodeConfig
from mcast.scribe import McastError, ScribeConfig
from mcast.tree import MESSAGE, Event
from tests.mcast.rings import grown_with_full_caches, scribe, scribe_ring

CONFIG = NodeConfig(successors=4, stabilize_interval=0.5, rpc_timeout=0.5, location_cache=64)
PUBLISHERS = 4
EACH = 40


def test_concurrent_publishers_survive_replica_and_root_crashes(run_virtual) -> None:
    async def scenario() -> None:
        ring = scribe_ring(CONFIG, 5, ScribeConfig(parent_timeout=2.0))
        sims = await grown_with_full_caches(ring, 16)
        await scribe(sims[0]).create("g")
        root = next(s for s in ring.nodes.values() if "g" in scribe(s).roots)
        _, successors = root.kbr.neighbors()
        doomed = [successors[0].address, successors[1].address, root.node.me.address]
        safe = [s for s in sims if s.node.me.address not in doomed]
        got: dict[str, list[Event]] = {}
        for sim in safe[:4]:
            await scribe(sim).join("g", got.setdefault(sim.node.me.address, []).append,
                                   member="m")
        acked: dict[bytes, int] = {}
        acked_at: list[float] = []
        crashed_at: list[float] = []
        loop = asyncio.get_running_loop()

        async def publisher(p: int) -> None:
            sim = safe[4 + p]
            for k in range(EACH):
                text = f"p{p}-{k}".encode()
                for _ in range(40):  # the client library's retry, with the same id
                    try:
                        acked[text] = await scribe(sim).send("g", text, message_id=text.decode())
                        acked_at.append(loop.time())
                        break
                    except McastError:
                        await asyncio.sleep(0.25)
                await asyncio.sleep(0.05)

        async def crashes() -> None:
            for address in doomed:  # mid-stream: the replicas first, then the root
                await asyncio.sleep(0.4)
                crashed_at.append(loop.time())
                await ring.crash(address)

        await asyncio.gather(crashes(), *(publisher(p) for p in range(PUBLISHERS)))
        assert len(acked) == PUBLISHERS * EACH  # every send was acknowledged in the end
        assert min(acked_at) < crashed_at[0] < crashed_at[-1] < max(acked_at)  # mid-stream
        last = max(acked.values())

        def streams() -> list[list[tuple[int, bytes]]]:
            return [[(e.seq, e.payload) for e in events if e.kind == MESSAGE]
                    for events in got.values()]

        assert await ring.wait_for(
            lambda: all(s and s[-1][0] >= last for s in streams()), 60, step=0.5)
        first, *others = streams()
        assert all(other == first for other in others)  # one sequence everywhere
        assert [seq for seq, _ in first] == list(range(1, len(first) + 1))  # no holes
        assert len({p for _, p in first}) == len(first)  # no message twice
        at = dict((p, seq) for seq, p in first)
        assert all(at[text] == seq for text, seq in acked.items())  # where its sender was told
        assert set(at) == set(acked)  # and nothing that nobody sent

    run_virtual(scenario())
