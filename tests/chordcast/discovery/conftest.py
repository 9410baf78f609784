from __future__ import annotations

import socket

import pytest


@pytest.fixture
def udp_port() -> int:
    """A free UDP port on loopback for this test's discovery traffic."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
