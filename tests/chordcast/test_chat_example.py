"""examples/chat.py: two participants on different nodes talk through a room."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chordcast.localring import LocalRing

pytestmark = pytest.mark.slow
CHAT = str(Path(__file__).resolve().parents[2] / "examples" / "chat.py")


def read_until(proc: subprocess.Popen[bytes], text: str, timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"did not see {text!r}; got {seen.decode()!r}"
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"exited before {text!r}: {seen.decode()!r}"
            seen += chunk
    return seen.decode()


def test_two_people_chat_through_a_room() -> None:
    ring = LocalRing(extra_args=["--stabilize-interval", "0.2"])
    people: list[subprocess.Popen[bytes]] = []
    try:
        ring.start(3)
        ring.wait_converged(timeout=30)
        for i, nick in enumerate(["alice", "bob"]):
            people.append(subprocess.Popen(
                [sys.executable, CHAT, "--via", ring.nodes[i].address, "--room", "lobby",
                 "--nick", nick],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"}))
            read_until(people[-1], f"{nick} joined 'lobby'")
        alice, bob = people
        read_until(alice, "* bob joined")
        assert alice.stdin is not None and bob.stdin is not None
        alice.stdin.write(b"hi bob\n")
        alice.stdin.flush()
        read_until(bob, "<alice> hi bob")
        bob.stdin.write(b"hello alice\n")
        bob.stdin.flush()
        read_until(alice, "<bob> hello alice")
        bob.stdin.close()  # end of input: bob leaves
        assert bob.wait(timeout=20) == 0
        read_until(alice, "* bob left")
        alice.stdin.close()
        assert alice.wait(timeout=20) == 0
    finally:
        for p in people:
            if p.poll() is None:
                p.kill()
                p.wait()
        ring.stop()
    ring.check_logs()
