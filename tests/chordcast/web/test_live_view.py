"""The live view over a real ring: its JSON API, its HTTP edges, and the page in a real
browser (headless Chromium) showing every node and a group's tree."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from chordcast import BlockingClient
from chordcast.blocking import BlockingSubscription
from chordcast.localring import LocalRing

pytestmark = pytest.mark.slow
GROUP = "view-group"
MEMBERS = ["alice", "bob", "<i>eve</i>"]  # the last one's markup must stay text
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with DIRECT.open(url, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def eventually(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture(scope="module")
def ring() -> Iterator[tuple[LocalRing, list[BlockingSubscription]]]:
    nodes = LocalRing(extra_args=["--stabilize-interval", "0.2"])
    with nodes.running(8) as r:
        r.wait_converged()
        live = r.live()
        with BlockingClient(live[0].address) as c:
            c.create(GROUP)
        subs = [BlockingClient(live[k].address).join(GROUP, member=name)
                for k, name in zip((2, 5, 7), MEMBERS, strict=True)]
        yield r, subs
        for s in subs:
            s.close()
    nodes.check_logs()


def snapshot(node_metrics: str) -> dict[str, Any]:
    status, _h, body = get(f"http://{node_metrics}/api/snapshot")
    assert status == 200, body
    return dict(json.loads(body))


def settled(node_metrics: str, ring: LocalRing) -> dict[str, Any]:
    """The view once it shows the whole ring, healthy, and the group with its 3 members."""
    def check() -> dict[str, Any]:
        s = snapshot(node_metrics)
        assert {n["address"] for n in s["nodes"]} == {n.address for n in ring.live()}
        assert s["health"]["healthy"]
        # Every other node in each successor list (it holds 8): stabilization is done.
        assert all(len(n["successors"]) == 7 for n in s["nodes"])
        group = next(g for g in s["groups"] if g["name"] == GROUP)
        assert sorted(m for t in group["tree"] for m in t["members"]) == sorted(MEMBERS)
        return s

    return dict(eventually(check))


def test_api_describes_the_ring_the_groups_and_lookups(ring: Any) -> None:
    r, _subs = ring
    live = r.live()
    view = live[3].metrics
    s = settled(view, r)
    assert s["me"] == live[3].address and s["health"]["nodes"] == 8
    by_address = {n["address"]: n for n in s["nodes"]}
    for n in s["nodes"]:
        assert n["state"] == "up" and n["neighbours"] == "ok"
        nxt = s["nodes"][n["successors"][0]]
        # Ring order: each node's first successor is the next one in the list.
        assert s["nodes"].index(nxt) == (s["nodes"].index(n) + 1) % 8
        assert s["nodes"][n["predecessor"]]["successors"][0] == s["nodes"].index(n)
    group = next(g for g in s["groups"] if g["name"] == GROUP)
    tree = {t["address"]: t for t in group["tree"]}
    root = [t for t in group["tree"] if t["root"]]
    assert len(root) == 1 and root[0]["address"] == group["root"] and root[0]["depth"] == 0
    for t in group["tree"]:  # each node's parent lists it as a child, one level up
        if not t["root"]:
            assert t["address"] in tree[t["parent"]]["children"]
            assert t["depth"] == tree[t["parent"]]["depth"] + 1
    attached = {m: t["address"] for t in group["tree"] for m in t["members"]}
    assert attached == {MEMBERS[0]: live[2].address, MEMBERS[1]: live[5].address,
                        MEMBERS[2]: live[7].address}
    assert all(a in by_address for a in tree)

    status, _h, body = get(f"http://{view}/api/lookup?key=some-key")
    assert status == 200, body
    lk = json.loads(body)
    assert lk["path"][0] == live[3].address and lk["path"][-1] == lk["owner"]
    assert lk["hops"] == len(lk["path"]) - 1
    _s, _h, body = get(f"http://{view}/api/lookups")
    assert lk in json.loads(body)["lookups"]
    for part in ("ring", "groups"):
        status, _h, body = get(f"http://{view}/api/{part}")
        assert (status == 200 and part in json.loads(body)) or "nodes" in json.loads(body)


def test_http_edges_are_refused_cleanly(ring: Any) -> None:
    r, _subs = ring
    view = r.live()[0].metrics
    status, headers, body = get(f"http://{view}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b"")  # no outside
    assert get(f"http://{view}/nothing")[0] == 404
    assert get(f"http://{view}/api/lookup")[0] == 400
    status, _h, body = get(f"http://{view}/metrics")
    assert status == 200 and b"chordcast_build_info" in body
    host, port = view.rsplit(":", 1)
    for raw in (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xff\xfe garbage\r\n\r\n",
                b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n"):
        with socket.create_connection((host, int(port)), timeout=15) as s:
            s.sendall(raw)
            if raw.endswith(b"\r\n\r\n"):
                answer = s.recv(200)
                assert answer.split(b" ")[1] in (b"400", b"405", b"413"), answer
            else:
                s.shutdown(socket.SHUT_WR)  # a head that never ends: closed, no answer
                assert s.recv(200) == b""
    assert get(f"http://{view}/api/ring")[0] == 200  # and the node still serves
    # A page elsewhere that points its own name at the node (DNS rebinding) is refused; the
    # node's address, localhost and IP addresses are not; /metrics is for any scraper.
    for named, code in (("rebind.example:80", b"403"), (f"localhost:{port}", b"200"),
                        (f"{host}:{port}", b"200"), ("[::1]:80", b"200")):
        for path in ("/api/ring", "/"):
            with socket.create_connection((host, int(port)), timeout=15) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {named}\r\n\r\n".encode())
                assert s.recv(20).split(b" ")[1] == code, (named, path)
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: rebind.example\r\n\r\n")
        assert s.recv(20).split(b" ")[1] == b"200"


class DomScan(HTMLParser):
    """The elements the page's DOM contract names, from Chromium's --dump-dom."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, str] = {}
        self.tree: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if "data-node-id" in a:
            self.nodes[str(a["data-node-id"])] = str(a.get("data-address"))
        if "data-tree-node" in a:
            self.tree.append((str(a["data-tree-node"]), str(a.get("data-group"))))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium missing: install the Debian package `chromium` (make test "
                    "does, as root)")
    # Flags as this machine needs them: no sandbox as root, and no background connections
    # (the network beyond loopback is closed). The virtual-time budget lets the page's
    # polling run before the DOM is dumped.
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=8000",
         *args], capture_output=True, text=True, timeout=120)


def test_the_page_in_a_real_browser_shows_the_ring_and_the_tree(ring: Any,
                                                               tmp_path: Path) -> None:
    r, _subs = ring
    live = r.live()
    view = live[1].metrics
    s = settled(view, r)
    url = f"http://{view}/"
    dump = chromium("--dump-dom", url, profile=tmp_path / "profile")
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = DomScan()
    dom.feed(dump.stdout)
    assert dom.nodes == {n["id"]: n["address"] for n in s["nodes"]}
    assert len(dom.nodes) == 8
    group = next(g for g in s["groups"] if g["name"] == GROUP)
    assert sorted(dom.tree) == sorted((t["address"], GROUP) for t in group["tree"])
    text = "".join(dom.text)
    for name in MEMBERS:
        assert name in text  # as text: "<i>eve</i>" did not become an element
    assert "i" not in dom.tags  # the member named "<i>eve</i>"
    assert "healthy" in text and "ring of 8 node(s)" in text
    shot = tmp_path / "live-view.png"
    taken = chromium(f"--screenshot={shot}", "--window-size=1400,900", url,
                     profile=tmp_path / "profile2")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_a_node_that_fails_is_listed_as_gone(ring: Any) -> None:
    """(Last in this module: it kills a node.) The ring repairs around it within a second;
    the view still says which node went, and when."""
    r, _subs = ring
    view = r.live()[0].metrics
    settled(view, r)
    victim = r.live()[4]  # not a member's node
    r.kill(victim)

    def gone() -> dict[str, Any]:
        status, _h, body = get(f"http://{view}/api/ring")
        doc = json.loads(body)
        assert status == 200 and victim.address in {g["address"] for g in doc["gone"]}
        assert victim.address not in {n["address"] for n in doc["nodes"]}
        return dict(doc)

    doc = eventually(gone)
    assert doc["health"]["gone"] == 1 and len(doc["nodes"]) == 7
