"""`chordcast demo --keep`: the demo runs, the ring stays up with its group for the live view
(whose address it prints), and Ctrl-C stops every node cleanly."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def test_demo_keep_serves_the_live_view_until_interrupted() -> None:
    demo = subprocess.Popen([sys.executable, "-m", "chordcast", "demo", "--nodes", "4",
                             "--keep"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        view = None
        while view is None:
            assert time.monotonic() < deadline, "".join(lines)
            line = demo.stdout.readline()
            assert line or demo.poll() is None, "".join(lines)
            lines.append(line)
            found = re.match(r"live view: (http://\S+/)", line)
            view = found.group(1) if found else None
        out = "".join(lines)
        assert "one line per node" in out and "4 of 4 node(s) up" in out  # status, before
        assert "members: member0" in out  # the group's tree
        snap = json.loads(DIRECT.open(view + "api/snapshot", timeout=30).read())
        group = next(g for g in snap["groups"] if g["name"] == "demo-room")
        assert sorted(m for t in group["tree"] for m in t["members"]) == [
            "member0", "member1", "member2"]
        assert len(snap["nodes"]) == 3  # the demo killed one of the four
    finally:
        demo.send_signal(signal.SIGTERM)  # (SIGINT too: both stop it)
        rest, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest + err
    assert "3 nodes exited with status [0]" in rest
    assert "Traceback" not in rest + err, err


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_sigterm_during_the_demo_stops_its_nodes() -> None:
    demo = subprocess.Popen([sys.executable, "-m", "chordcast", "demo", "--nodes", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert demo.stdout is not None
    try:
        deadline = time.monotonic() + 120
        while not demo.stdout.readline().startswith("ring of"):  # the nodes are up
            assert time.monotonic() < deadline and demo.poll() is None
        nodes = children(demo.pid)
        assert len(nodes) == 3
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.communicate(timeout=60)
    assert demo.returncode == 143  # 128 + SIGTERM, as shells report it
    assert not [p for p in nodes if Path(f"/proc/{p}").exists()
                and "zombie" not in Path(f"/proc/{p}/status").read_text()]
