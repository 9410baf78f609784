"""The Grafana dashboard's queries, evaluated by a real Prometheus scraping a live local ring
that does lookups, storage and multicast. Every query must be valid and return data."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chordcast import BlockingClient
from chordcast.localring import LocalRing
from tests.chordcast.ports import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "chordcast.json"
LOCAL = ROOT / "deploy" / "prometheus" / "local.yml"


def dashboard_queries() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p["targets"]]


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with DIRECT.open(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 400: the expression is invalid
        return json.loads(exc.read())
    except urllib.error.URLError:
        return {}  # not listening yet


@pytest.fixture
def ring() -> Iterator[LocalRing]:
    nodes = LocalRing(extra_args=["--stabilize-interval", "0.2", "--metrics-port", "0",
                                  "--parent-timeout", "1.0"])
    with nodes.running(4) as r:
        yield r


def traffic(ring: LocalRing, stop: threading.Event) -> None:
    """Lookups, storage and multicast, until told to stop."""
    addresses = [n.address for n in ring.live()]
    with BlockingClient(addresses) as mc:
        mc.create("dash")
        subs = [BlockingClient(addresses[i]).join("dash") for i in (1, 2)]
        k = 0
        while not stop.is_set():
            with BlockingClient(addresses[k % len(addresses)]) as c:
                c.lookup(f"key-{k}")
                c.put(f"key-{k % 20}", b"v" * 100)
            mc.send("dash", f"message {k}")
            for s in subs:
                s.next(timeout=2)
            k += 1
            stop.wait(0.1)


def test_every_dashboard_query_returns_data_from_a_real_prometheus(ring: LocalRing) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus missing: install the Debian package `prometheus` "
                    "(make test does, as root)")
    targets = [n.metrics for n in ring.live()]
    assert all(targets)
    workdir = Path(tempfile.mkdtemp(prefix="chordcast-prom-"))
    config = workdir / "prometheus.yml"
    # The loopback config users run (deploy/prometheus/local.yml), with this ring's free
    # ports for its fixed ones and a faster scrape.
    doc = yaml.safe_load(LOCAL.read_text())
    doc["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    doc["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
    config.write_text(json.dumps(doc))  # JSON is YAML
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(workdir / "prometheus.log").open("wb"))
    stop = threading.Event()
    load = threading.Thread(target=traffic, args=(ring, stop), daemon=True)
    load.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            up = query(base, 'sum(up{job="chordcast"})') if proc.poll() is None else {}
            result = up.get("data", {}).get("result", [])
            if result and float(result[0]["value"][1]) == len(targets):
                break
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus never scraped every node"
            time.sleep(0.5)

        pending = dashboard_queries()
        deadline = time.monotonic() + 60
        while pending:
            still = []
            for title, expr in pending:
                reply = query(base, expr.replace("$__rate_interval", "20s"))
                assert reply.get("status") == "success", f"{title}: {expr}: {reply}"
                if not reply["data"]["result"]:
                    still.append((title, expr))
            pending = still
            if pending:
                assert time.monotonic() < deadline, f"no data for: {pending}"
                time.sleep(1)
        print(f"\n{len(dashboard_queries())} dashboard queries verified against Prometheus")
    finally:
        stop.set()
        load.join(timeout=10)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_local_config_is_valid_and_scrapes_only_loopback() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing: install the Debian package `prometheus` "
                    "(make test does, as root)")
    checked = subprocess.run([promtool, "check", "config", str(LOCAL)], capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    doc = yaml.safe_load(LOCAL.read_text())
    targets = [t for c in doc["scrape_configs"] for s in c["static_configs"]
               for t in s["targets"]]
    assert targets == [f"127.0.0.1:{7080 + i}" for i in range(8)]
    # The README's command for it runs the nodes on exactly those ports.
    assert "--metrics-port 7080" in LOCAL.read_text()
