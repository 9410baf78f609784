"""The Scribe simulator experiment at 1,000 nodes: forwarders crash while messages flow."""

from __future__ import annotations

import pytest

from chord.sim.experiments import run
from mcast.sim import mcast_experiment


@pytest.mark.slow
def test_1000_nodes_20_groups_forwarders_crash_during_traffic() -> None:
    sizes = [10 + 20 * i for i in range(20)]
    result = run(mcast_experiment(1000, seed=3, groups=20, sizes=sizes, messages=100,
                                  crash_fraction=0.2))
    assert result["crashed_forwarders"] > 0
    assert result["exactly_once_in_order_fraction"] == 1.0
    assert result["delivered_fraction"] == 1.0
    assert result["orphaned_subtrees"] > 0 and result["unrepaired_subtrees"] == 0
    assert 0 < result["repair_p50_s"] <= result["repair_max_s"] < 300
