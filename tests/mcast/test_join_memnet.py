"""A join that is cancelled before it attaches (the client hung up) leaves no member and no
tree state behind; a join for a group that does not exist creates nothing on the way."""

from __future__ import annotations

import asyncio

import pytest

from chord.node import NodeConfig
from chord.sim.ring import SimNode, SimRing
from chordcast.v1 import mcast_pb2 as mpb
from mcast.scribe import McastError, ScribeConfig
from tests.mcast.rings import scribe, scribe_ring

CONFIG = NodeConfig(successors=4, stabilize_interval=0.5, rpc_timeout=0.5)


async def ring_with_group() -> tuple[SimRing, list[SimNode]]:
    ring = scribe_ring(CONFIG, 9, ScribeConfig(parent_timeout=3.0))
    await ring.grow(20)
    assert await ring.converge()
    await asyncio.sleep(10)  # fingers settle: the cancel points below are placed on this ring
    sims = sorted(ring.nodes.values(), key=lambda s: s.node.me.address)
    await scribe(sims[0]).create("g")
    return ring, sims


@pytest.mark.parametrize("after", [0.0, 0.004, 0.012, 0.022])
def test_a_cancelled_join_leaves_no_member(run_virtual, after: float) -> None:
    async def scenario() -> None:
        ring, sims = await ring_with_group()
        joiner = next(s for s in sims if not scribe(s).roles())
        task = asyncio.ensure_future(scribe(joiner).join("g", lambda e: None, member="gone"))
        await asyncio.sleep(after)  # somewhere in the info request, the JOIN or the backfill
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        root = next(s for s in ring.nodes.values() if "g" in scribe(s).roots)

        def holders() -> list[str]:
            return [s.node.me.address for s in ring.nodes.values() if scribe(s).groups.get("g")]

        def nothing_left() -> bool:
            members = [m.name for s in ring.nodes.values() if (g := scribe(s).groups.get("g"))
                       for m in g.members.values()]
            return not members and holders() == [root.node.me.address]

        # In-flight replies land and any branch the join built is pruned: only the root keeps
        # state for a group nobody joined (longer than a parent timeout would be a leak).
        assert await ring.wait_for(nothing_left, 15, step=0.1), holders()

    run_virtual(scenario())


def test_joining_a_group_that_does_not_exist_creates_nothing(run_virtual) -> None:
    async def scenario() -> None:
        ring, sims = await ring_with_group()
        with pytest.raises(McastError) as refused:
            await scribe(sims[7]).join("nothing", lambda e: None)
        assert refused.value.code == "not_found"
        await asyncio.sleep(1)  # nothing can arrive later: a state made on the way would stay
        assert not any("nothing" in scribe(s).groups for s in ring.nodes.values())

    run_virtual(scenario())


def test_a_join_retried_past_a_dead_next_hop_goes_on_instead_of_stopping_here(
        run_virtual) -> None:
    """KBR tries another next hop when one does not answer, and calls the forward upcall
    again with the same JOIN. The first call made this node a forwarder hanging from the dead
    hop: the retry must go on through the live one (and hang us from it), not stop here."""

    async def scenario() -> None:
        ring, sims = await ring_with_group()
        root = next(s for s in sims if "g" in scribe(s).roots)
        node, child, dead, live = [s for s in sims if s is not root and not scribe(s).roles()
                                   ][:4]
        join = mpb.McastRouted(join=mpb.JoinOp(name="g", child=scribe(child)._core.pb(
            child.node.me)))
        payload = join.SerializeToString()
        await ring.crash(dead.node.me.address)  # (not yet noticed by `node`)
        first = await scribe(node).forward(0, payload, None, dead.node.me)
        assert not first.stop
        retry = await scribe(node).forward(0, payload, None, live.node.me)
        assert not retry.stop, "the retried JOIN stopped at a node hanging from a dead hop"
        g = scribe(node).groups["g"]
        assert g.parent is not None and g.parent.address == live.node.me.address
        assert child.node.me.address in g.children
        # Once its parent has proved alive, the node is in the tree: a JOIN stops here.
        scribe(node)._repair.on_data(mpb.DataOp(name="g"), live.node.me)
        again = await scribe(node).forward(0, payload, None, live.node.me)
        assert again.stop

    run_virtual(scenario())
