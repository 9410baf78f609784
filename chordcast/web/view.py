"""The live view a node serves on its HTTP port: the page at `/` and the JSON API under
`/api/` that the page (and any script) reads.

- `/api/snapshot`: the whole picture in one document (what the page polls each second):
  the ring (every node in ring order, with its predecessor, successor list and fingers as
  indices into the node list, so 1,000 nodes stay ~100 KB), its health, every group's tree,
  and the lookups clients made through this node with their hop paths.
- `/api/ring`, `/api/groups`, `/api/lookups`: its parts.
- `/api/lookup?key=K`: look a key up through this node (it then shows among the lookups).

The ring is surveyed through the client library against this node, in the background while
someone is watching (a request in the last `IDLE_AFTER` seconds) and at most once per
`PERIOD`, so an unwatched node does no work for the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from chordcast.address import split_address
from chordcast.results import ClientError, Lookup
from chordcast.tls import TlsConfig
from chordcast.web.http import Handler, Request, Response

log = logging.getLogger(__name__)

PERIOD = 1.0            # seconds between surveys while watched (the page's promise: <= 1 s)
IDLE_AFTER = 30.0       # seconds without a request after which surveys stop
FIRST_WAIT = 15.0       # seconds a request waits for the first survey
MAX_NODES = 10_000      # nodes a survey walks
MAX_GROUPS = 64         # groups whose trees a snapshot carries (by name)
CALL_TIMEOUT = 2.0      # seconds per call of a survey: a hung node must not stall the view
GONE_FOR = 300.0        # seconds a node that left the ring stays listed as gone

if TYPE_CHECKING:  # imported when first watched: a node nobody watches does without them
    from chordcast.client import Client
    from chordcast.survey import RingSurvey

RecentLookups = Callable[[], list[tuple[float, Lookup]]]


class RingView:
    """Surveys the ring while watched and answers the view's HTTP requests."""

    def __init__(self, address: str, tls: TlsConfig | None, lookups: RecentLookups) -> None:
        self.address = address
        self.tls = tls
        self.lookups = lookups
        self._client: Client | None = None
        self._latest: dict[str, Any] | None = None
        self._fresh = asyncio.Event()
        self._watched = 0.0
        self._task: asyncio.Task[None] | None = None
        # Nodes the last survey saw, and those seen before but not since (a ring repairs
        # around a crash in a second; the view still says who went, and when).
        self._present: dict[str, str] = {}  # address -> id
        self._gone: dict[str, dict[str, Any]] = {}
        self._closed = False

    def routes(self) -> dict[str, Handler]:
        routes = {"/": self._page, "/index.html": self._page, "/api/snapshot": self._snapshot,
                  "/api/ring": self._part("ring"), "/api/groups": self._part("groups"),
                  "/api/lookups": self._lookups, "/api/lookup": self._lookup}
        return {path: self._guarded(handler) for path, handler in routes.items()}

    def _guarded(self, handler: Handler) -> Handler:
        """Only for a Host that is an IP address, localhost or this node's own name: a web
        page elsewhere that points a name of its own at this address (DNS rebinding) must not
        read the ring through a visitor's browser."""
        async def answer(request: Request) -> Response:
            if not _trusted_host(request.host, self.address):
                return _json(403, {"error": f"host {request.host!r} not accepted: open the "
                                   "view by the node's address, an IP address or localhost"})
            return await handler(request)

        return answer

    async def close(self) -> None:
        """(After the HTTP server stopped: no request can start a survey again.)"""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close_client()

    async def _close_client(self) -> None:
        # Its channels and streams reach every node it surveyed: closed while nobody
        # watches, so nodes that left long ago are not held on to.
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- surveys ----------------------------------------------------------------------------
    def _client_of_node(self) -> Client:
        if self._client is None:
            from chordcast.client import Client

            self._client = Client([self.address], timeout=CALL_TIMEOUT, ring_aware=False,
                                  tls=self.tls)
        return self._client

    async def latest(self) -> dict[str, Any]:
        """The newest survey (waiting for the first one), and keeps surveys going."""
        self._watched = time.monotonic()
        if self._closed:
            return {"error": "the node is stopping", "taken": time.time()}
        if self._task is None or self._task.done():
            # Surveys had stopped (nobody watched): what is kept is old, wait for a new one.
            self._fresh.clear()
            self._latest = None
            self._present = {}  # (so nodes gone while nobody watched are not "gone now")
            self._task = asyncio.create_task(self._survey_while_watched())
        if self._latest is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fresh.wait(), FIRST_WAIT)
        return self._latest or {"error": "no survey of the ring yet", "taken": time.time()}

    async def _survey_while_watched(self) -> None:
        try:
            await self._surveys()
        finally:
            await self._close_client()

    async def _surveys(self) -> None:
        while time.monotonic() - self._watched < IDLE_AFTER:
            started = time.monotonic()
            try:
                self._latest = await self._survey()
            except ClientError as exc:
                self._latest = {"error": f"cannot survey the ring: {exc}", "taken": time.time()}
            except Exception:
                log.exception("the live view's survey of the ring failed")
                self._latest = {"error": "the survey failed (see the node's log)",
                                "taken": time.time()}
            self._fresh.set()
            await asyncio.sleep(max(0.0, PERIOD - (time.monotonic() - started)))

    async def _survey(self) -> dict[str, Any]:
        from chordcast.survey import survey_ring

        taken = time.time()
        s = await survey_ring(self._client_of_node(), limit=MAX_NODES)
        gone = self._note_departures(s, taken)
        return {"taken": taken, "me": self.address, "id_bits": s.id_bits,
                "health": {**s.health(), "gone": len(gone)}, "nodes": _nodes(s),
                "gone": gone, "groups": await _groups(s)}

    def _note_departures(self, s: RingSurvey, now: float) -> list[dict[str, Any]]:
        """Nodes up in the last whole walk and not in this one (a walk that did not come
        back to its start says nothing about the nodes it did not reach)."""
        if not s.complete:
            return sorted(self._gone.values(), key=lambda g: -g["since"])
        present = {n.address: n.id for n in s.up()}
        for address, node_id in self._present.items():
            if address not in present:
                self._gone[address] = {"id": node_id, "address": address, "since": now}
        for address in present:
            self._gone.pop(address, None)  # back
        self._present = present
        for address in [a for a, g in self._gone.items() if now - g["since"] > GONE_FOR]:
            del self._gone[address]
        return sorted(self._gone.values(), key=lambda g: -g["since"])

    # -- handlers ---------------------------------------------------------------------------
    async def _page(self, request: Request) -> Response:
        page = resources.files("chordcast.web").joinpath("page.html").read_bytes()
        return Response(200, page, "text/html; charset=utf-8",
                        {"Content-Security-Policy": "default-src 'self'; "
                         "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})

    async def _snapshot(self, request: Request) -> Response:
        doc = dict(await self.latest())
        doc["lookups"] = self._lookup_docs()
        return _json(503 if "error" in doc else 200, doc)

    def _part(self, name: str) -> Handler:
        async def answer(request: Request) -> Response:
            doc = await self.latest()
            if "error" in doc:
                return _json(503, doc)
            if name == "ring":
                return _json(200, {k: doc[k] for k in ("taken", "me", "id_bits", "health",
                                                       "nodes", "gone")})
            return _json(200, {"taken": doc["taken"], name: doc[name]})

        return answer

    async def _lookups(self, request: Request) -> Response:
        return _json(200, {"lookups": self._lookup_docs()})

    async def _lookup(self, request: Request) -> Response:
        key = request.query.get("key", "")
        if not key:
            return _json(400, {"error": "give ?key=K"})
        try:
            found = await self._client_of_node().lookup(key=key)
        except ClientError as exc:
            return _json(503, {"error": str(exc)})
        # The node recorded it as it answered; the newest record of that key is this one.
        mine = [d for d in self._lookup_docs() if d["key_id"] == found.key_id]
        return _json(200, mine[-1] if mine else _lookup_doc(time.time(), found))

    def _lookup_docs(self) -> list[dict[str, Any]]:
        return [_lookup_doc(at, lk) for at, lk in self.lookups()]


def _nodes(s: RingSurvey) -> list[dict[str, Any]]:
    index = {n.address: k for k, n in enumerate(s.nodes)}

    def at(addresses: list[str]) -> list[int]:
        return [index[a] for a in addresses if a in index]

    out = []
    for n in s.nodes:
        i = n.info
        out.append({
            "id": n.id, "address": n.address, "state": n.state, "neighbours": n.neighbours,
            "predecessor": index.get(i.predecessor.address, -1) if i and i.predecessor else -1,
            "successors": at([p.address for p in i.successors]) if i else [],
            "fingers": at([p.address for p in i.fingers]) if i else [],
            "keys": i.keys if i else 0, "replicas": i.replicas if i else 0,
            "rpc_p99_ms": round(i.rpc_p99_ms, 3) if i else 0,
            "groups": len(n.roles)})
    return out


async def _groups(s: RingSurvey) -> list[dict[str, Any]]:
    from chordcast.survey import group_tree

    roles = {n.address: n.roles for n in s.nodes}
    last_seq = {r.group: r.last_seq for n in s.nodes for r in n.roles if r.root}

    async def roles_of(address: str) -> Any:
        return roles.get(address, [])

    out = []
    for name, roots in list(s.roots().items())[:MAX_GROUPS]:
        tree = await group_tree(name, roots[0], roles_of)
        out.append({"name": name, "root": roots[0], "roots": roots,
                    "last_seq": last_seq.get(name, 0),
                    "tree": [{"address": t.address, "parent": t.parent, "depth": t.depth,
                              "children": list(t.children), "members": list(t.members),
                              "root": t.root} for t in tree]})
    return out


def _lookup_doc(at: float, lk: Lookup) -> dict[str, Any]:
    return {"at": at, "key": lk.key, "key_id": lk.key_id, "owner": lk.owner.address,
            "hops": lk.hops, "path": lk.path}


def _trusted_host(host: str, advertise: str) -> bool:
    if host in ("", "localhost") or host == split_address(advertise)[0]:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _json(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc, separators=(",", ":")).encode(),
                    "application/json")
