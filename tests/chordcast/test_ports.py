"""One node per port: a second node on a busy gRPC or metrics port exits 1 with one clear error
line naming the address (gRPC's default SO_REUSEPORT once let both nodes listen)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from chordcast.localring import LocalRing
from tests.chordcast.ports import free_port

pytestmark = pytest.mark.slow

EXIT_TIMEOUT = 20.0


def run_node(*args: str) -> subprocess.CompletedProcess[str]:
    """A `chordcast node` that should fail at once: its exit status and output."""
    cmd = [sys.executable, "-m", "chordcast", "node", "--discover", "none", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=EXIT_TIMEOUT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def assert_one_error_line(result: subprocess.CompletedProcess[str], address: str,
                          what: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""  # never claimed to be listening
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == f"error: cannot {what} {address}: address already in use"


def test_a_second_node_on_a_busy_grpc_port_fails_naming_the_address() -> None:
    ring = LocalRing(metrics=False)
    address = f"127.0.0.1:{free_port()}"
    try:
        first = ring.wait_ready(ring.spawn(join=[], listen=address))
        assert first.address == address
        assert_one_error_line(run_node("--listen", address), address, "listen on")
        assert first.alive
    finally:
        ring.stop()
    ring.check_logs()


def test_a_busy_metrics_port_fails_naming_the_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_node("--listen", "127.0.0.1:0", "--metrics-port", str(port))
    assert_one_error_line(result, f"127.0.0.1:{port}", "serve metrics on")


def test_a_port_held_by_another_program_fails_naming_the_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = run_node("--listen", address)
    assert_one_error_line(result, address, "listen on")
