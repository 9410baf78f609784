"""A small HTTP/1.1 server on asyncio for a node's HTTP port: `/metrics`, the live view and its
JSON API. GET and HEAD only, one request per connection.

Why not prometheus_client's threaded server: the view's answers are read from the node's
state, which belongs to the event loop; serving on the loop reads it where it lives (the
metrics' gauges too). Everything is bounded: the request head's size, the time a client may
take to send it, and the connections served at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

DEFAULT_PORT = 7080        # `--metrics-port` given alone (node_exporter has 9100)
MAX_HEAD = 16 * 1024      # bytes of request line and headers
HEAD_TIMEOUT = 10.0       # seconds a client has to send them
MAX_CONNECTIONS = 64      # served at once; one more is answered 503 and closed
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


@dataclass
class Request:
    path: str
    query: dict[str, str]
    host: str = ""  # the Host header, without its port


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serves `routes` (exact paths) on one address until `close`."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self._server: asyncio.Server | None = None
        self._open = 0  # connections being served

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (0 picks a free one)."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS:
                response, head_only = Response(503, b"too many connections\n"), False
            else:
                response, head_only = await self._answer(reader)
            writer.write(_encode(response, head_only))
            await asyncio.wait_for(writer.drain(), HEAD_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            return Response(413, b"request head too large\n"), False
        except asyncio.IncompleteReadError:
            raise ConnectionError("closed before the request head ended") from None
        if len(head) > MAX_HEAD:
            return Response(413, b"request head too large\n"), False
        try:
            method, target, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            return Response(400, b"malformed request line\n"), False
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", headers={"Allow": "GET, HEAD"}), False
        url = urlsplit(target)
        handler = self.routes.get(url.path)
        if handler is None:
            return Response(404, f"no page {url.path}\n".encode()), method == "HEAD"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            return await handler(Request(url.path, query, _host(head))), method == "HEAD"
        except Exception:
            log.exception("HTTP %s failed", url.path)
            return Response(500, b"internal error (see the node's log)\n"), method == "HEAD"


def _host(head: bytes) -> str:
    """The Host header's name or address, without a port (IPv6 keeps its brackets off)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"host":
            text = value.strip().decode("latin-1")
            if text.startswith("["):
                return text[1:text.find("]")] if "]" in text else text
            return text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return ""


def _encode(r: Response, head_only: bool) -> bytes:
    headers = {"Content-Type": r.content_type, "Content-Length": str(len(r.body)),
               "Connection": "close", "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff", **r.headers}
    head = f"HTTP/1.1 {r.status} {REASONS.get(r.status, 'Status')}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + (b"" if head_only else r.body)
