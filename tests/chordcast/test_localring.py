"""LocalRing's log check: a traceback in any node's log fails the test that ran the ring."""

from __future__ import annotations

import subprocess

import pytest

from chordcast.localring import LocalRing, NodeProcess, RingError


def _finished_node(ring: LocalRing, log_text: str) -> NodeProcess:
    log = ring._logdir / f"node{len(ring.nodes)}.log"
    log.write_text(log_text)
    proc = subprocess.Popen(["true"], stdout=subprocess.PIPE)
    proc.wait()
    node = NodeProcess("127.0.0.1:1", proc, log)
    ring.nodes.append(node)
    return node


def test_a_clean_log_passes_and_a_traceback_fails_with_the_log_named() -> None:
    ring = LocalRing()
    _finished_node(ring, "INFO chordcast: leaving the ring\n")
    ring.check_logs()
    bad = _finished_node(ring, "ERROR x: failed\nTraceback (most recent call last):\n"
                               "  File \"m.py\", line 1\nTypeError: 'Histogram' object is not "
                               "callable\n")
    with pytest.raises(RingError, match="1 node log") as exc:
        ring.check_logs()
    assert str(bad.log) in str(exc.value) and "Histogram" in str(exc.value)
    ring.stop()
