"""`make bench`'s harness works: a smoke run (tiny counts) writes every figure and the ratio
table. Never a timing assertion: the figures themselves are the benchmark's business."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_smoke_run_writes_all_figures(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["commit"] and result["machine"]["cpus"]
    assert {"p50_ms", "p99_ms", "calls_per_s"} <= result["echo"].keys()
    (ring,) = result["chordcast"].values()
    for figure in ("lookup_p50_ms", "get_p50_ms", "client_get_p50_ms", "lookups_per_s",
                   "gets_per_s", "client_gets_per_s", "hops_mean", "one_hop_fraction",
                   "idle_cpu_percent_per_node", "rss_mib_per_node"):
        assert ring[figure] >= 0, figure
    cluster = result["cluster"]
    assert cluster["nodes"] == 8 and cluster["wrong"] == 0 and cluster["rss_mib_total"] > 0
    multicast = result["multicast"]
    assert multicast["acknowledged"] == 20 and multicast["lost"] == multicast["duplicates"] == 0
    assert "| back-to-back, all 7 p50 / p99, ms |" in (tmp_path / "latest.md").read_text()
    assert result["ratios"] and all(isinstance(r["met"], bool) for r in result["ratios"])
    table = (tmp_path / "latest.md").read_text()
    assert "| target | value | bound | met |" in table
