"""The page at 1,000 nodes (a made-up snapshot served as a node serves it): every node drawn,
a 200-node tree listed, in a real browser."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from chordcast.web.http import HttpServer, Request, Response
from tests.chordcast.web.test_live_view import DomScan, chromium

NODES = 1000


def snapshot() -> dict[str, Any]:
    ids = sorted(hashlib.sha1(f"n{k}".encode()).hexdigest() for k in range(NODES))
    nodes = [{"id": i, "address": f"10.0.{k // 250}.{k % 250}:7000", "state": "up",
              "neighbours": "ok", "predecessor": (k - 1) % NODES,
              "successors": [(k + d) % NODES for d in range(1, 9)],
              "fingers": sorted({(k + 2 ** j) % NODES for j in range(10)}), "keys": k % 7,
              "replicas": 3, "rpc_p99_ms": 0.4, "groups": 1} for k, i in enumerate(ids)]
    tree = [{"address": nodes[0]["address"], "parent": "", "depth": 0,
             "children": [nodes[k]["address"] for k in range(1, 200)], "members": [],
             "root": True}]
    tree += [{"address": nodes[k]["address"], "parent": nodes[0]["address"], "depth": 1,
              "children": [], "members": [f"m{k}"], "root": False} for k in range(1, 200)]
    return {"taken": 0, "me": nodes[0]["address"], "id_bits": 160,
            "health": {"nodes": NODES, "up": NODES, "full_successor_lists": NODES,
                       "predecessor_known": NODES, "neighbours_ok": NODES, "healthy": True},
            "nodes": nodes, "groups": [{"name": "big", "root": nodes[0]["address"],
                                        "last_seq": 5, "tree": tree}],
            "lookups": [{"at": 1, "key": "k", "key_id": ids[500], "owner": nodes[500]["address"],
                         "hops": 2, "path": [nodes[0]["address"], nodes[256]["address"],
                                             nodes[500]["address"]]}]}


@pytest.fixture
def served() -> Iterator[str]:
    body = json.dumps(snapshot()).encode()
    page = resources.files("chordcast.web").joinpath("page.html").read_bytes()

    async def page_of(request: Request) -> Response:
        return Response(200, page, "text/html; charset=utf-8")

    async def snap(request: Request) -> Response:
        return Response(200, body, "application/json")

    loop = asyncio.new_event_loop()
    server = HttpServer({"/": page_of, "/api/snapshot": snap})
    port = loop.run_until_complete(server.start("127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_thousand_nodes_and_a_200_node_tree_are_all_drawn(served: str,
                                                             tmp_path: Path) -> None:
    dump = chromium("--dump-dom", served, profile=tmp_path / "profile")
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = DomScan()
    dom.feed(dump.stdout)
    assert len(dom.nodes) == NODES
    assert len(dom.tree) == 200 and {g for _a, g in dom.tree} == {"big"}
    assert "ring of 1000 node(s)" in "".join(dom.text)
