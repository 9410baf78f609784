"""The node's small HTTP server: routes, refusals, and its bound on connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from chordcast.web import http
from chordcast.web.http import HttpServer, Request, Response


async def hello(request: Request) -> Response:
    return Response(200, f"hello {request.query.get('who', '')}".encode())


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


async def until(holds: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the server until `holds()` is true, within a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not holds():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def ask(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_routes_queries_head_and_refusals() -> None:
    server = HttpServer({"/hi": hello, "/bug": broken})
    port = await server.start("127.0.0.1", 0)
    try:
        ok = await ask(port, b"GET /hi?who=you HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nhello you")
        assert b"Content-Length: 9\r\n" in ok
        head = await ask(port, b"HEAD /hi HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
        assert (await ask(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await ask(port, b"PUT /hi HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await ask(port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await ask(port, b"GET /" + b"x" * 20_000 + b"\r\n\r\n")
                ).startswith(b"HTTP/1.1 413")
        assert (await ask(port, b"GET /bug HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 500")
    finally:
        await server.close()


async def test_connections_past_the_bound_are_answered_busy(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 3)
    server = HttpServer({"/hi": hello})
    port = await server.start("127.0.0.1", 0)
    stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        await until(lambda: server._open == 3)  # each being served, waiting for its head
        assert (await ask(port, b"GET /hi HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 503")
        for _reader, writer in stalled:
            writer.close()
        await until(lambda: server._open == 0)
        assert (await ask(port, b"GET /hi HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
    finally:
        await server.close()
