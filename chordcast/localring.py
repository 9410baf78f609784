"""A ring of real `chordcast node` processes on loopback (for the demo and multi-process tests).

Each node binds port 0 and reports the address it got on its first line of output, so no port
is ever guessed. Only processes started here are ever signalled, by PID.
"""

from __future__ import annotations

import bisect
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chord.ids import IdSpace
from chordcast.blocking import BlockingClient
from chordcast.results import ClientError

START_TIMEOUT = 15.0
READY = re.compile(r"listening on (\S+)(?: metrics on (\S+))?")


class RingError(Exception):
    pass


@dataclass
class NodeProcess:
    address: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics: str = ""  # host:port of /metrics, when the node serves it
    cmd: list[str] = field(default_factory=list)  # how it was started (see `respawn`)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class ClusterProcess:
    """A `chordcast cluster` process: many nodes, one process."""

    addresses: list[str]
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class LocalRing:
    """Node processes on loopback, started exactly as users start them (`chordcast node`,
    metrics on unless `metrics=False`), each logging to its own file."""

    extra_args: list[str] = field(default_factory=list)
    space: IdSpace = field(default_factory=IdSpace)
    host: str = "127.0.0.1"
    nodes: list[NodeProcess] = field(default_factory=list)
    clusters: list[ClusterProcess] = field(default_factory=list)
    metrics: bool = True

    def __post_init__(self) -> None:
        self._logdir = Path(tempfile.mkdtemp(prefix="chordcast-ring-"))

    # -- processes -------------------------------------------------------------------------
    def spawn(self, join: list[str] | None = None, listen: str | None = None,
              prefix: list[str] | None = None, extra: list[str] | None = None) -> NodeProcess:
        """Start a node process without waiting for it (see `wait_ready`). `prefix` wraps the
        command (e.g. `ip netns exec NS`); `join` defaults to up to three live nodes."""
        cmd = [*(prefix or []), sys.executable, "-m", "chordcast", "node",
               "--listen", listen or f"{self.host}:0", "--id-bits", str(self.space.bits),
               "--discover", "none", *self.extra_args, *(extra or [])]
        if self.metrics and "--metrics-port" not in cmd:
            cmd += ["--metrics-port", "0"]
        for seed in join if join is not None else [n.address for n in self.live()[:3]]:
            cmd += ["--join", seed]
        return self._run(cmd)

    def respawn(self, node: NodeProcess) -> NodeProcess:
        """The same node again (same command line: address, data dir, seeds), after it
        stopped; a new log. Wait for it with `wait_ready`."""
        assert not node.alive, "stop the node first"
        return self._run(node.cmd)

    def _run(self, cmd: list[str]) -> NodeProcess:
        log = self._logdir / f"node{len(self.nodes)}.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        node = NodeProcess("", proc, log, cmd=cmd)
        self.nodes.append(node)
        return node

    def wait_ready(self, node: NodeProcess, timeout: float = START_TIMEOUT) -> NodeProcess:
        """Read the node's "listening on ADDRESS" line, within a deadline."""
        assert node.proc.stdout is not None
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([node.proc.stdout], [], [], max(remaining, 0))
            if not ready:
                node.proc.kill()
                raise RingError(f"node did not start within {timeout:g}s; see {node.log}")
            chunk = os.read(node.proc.stdout.fileno(), 4096)
            if not chunk:
                node.proc.wait()
                raise RingError(f"node exited: {node.log.read_text()[-500:]}")
            line += chunk
        match = READY.search(line.decode())
        if match is None:
            raise RingError(f"unexpected first line from a node: {line.decode()!r}")
        node.address, node.metrics = match.group(1), match.group(2) or ""
        return node

    def start_cluster(self, nodes: int, join: list[str] | None = None,
                      timeout: float = 60.0) -> ClusterProcess:
        """A `chordcast cluster --nodes N` process, once it reports every node ready (each
        node's "listening on" line, then "cluster of N nodes ready")."""
        log = self._logdir / f"cluster{len(self.clusters)}.log"
        cmd = [sys.executable, "-m", "chordcast", "cluster", "--nodes", str(nodes),
               "--listen", f"{self.host}:0", *self.extra_args]
        for seed in join or []:
            cmd += ["--join", seed]
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        cluster = ClusterProcess([], proc, log)
        self.clusters.append(cluster)
        assert proc.stdout is not None
        out, deadline = b"", time.monotonic() + timeout
        ready = f"cluster of {nodes} nodes ready\n".encode()
        while not out.endswith(ready):
            readable, _, _ = select.select([proc.stdout], [], [],
                                           max(deadline - time.monotonic(), 0))
            chunk = os.read(proc.stdout.fileno(), 65536) if readable else b""
            if not chunk:
                proc.kill()
                proc.wait()
                raise RingError(f"cluster not ready within {timeout:g}s: "
                                f"{out.decode()[-300:]}{log.read_text()[-1000:]}")
            out += chunk
        for line in out.decode().splitlines()[:-1]:
            match = READY.search(line)
            if match is None or not line.startswith("chordcast node "):
                raise RingError(f"unexpected line from a cluster: {line!r}")
            cluster.addresses.append(match.group(1))
        return cluster

    def start_node(self, join: list[str] | None = None) -> NodeProcess:
        return self.wait_ready(self.spawn(join))

    def start(self, count: int) -> None:
        first = self.start_node(join=[])
        for _ in range(count - 1):
            self.start_node(join=[first.address])

    @contextmanager
    def running(self, count: int, timeout: float = 60.0) -> Iterator[LocalRing]:
        """Start `count` nodes, wait until they form one ring, stop them all afterwards."""
        try:
            self.start(count)
            self.wait_converged(timeout=timeout)
            yield self
        finally:
            self.stop()
        self.check_logs()

    def tracebacks(self) -> list[str]:
        """Every node log that holds a traceback, with the lines around its first one."""
        found = []
        logs = [(n.log, n.address) for n in self.nodes]
        logs += [(c.log, f"cluster of {len(c.addresses)}") for c in self.clusters]
        for log, who in logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            at = text.find("Traceback (most recent call last)")
            if at >= 0:
                start = text.rfind("\n", 0, max(0, at - 1)) + 1
                found.append(f"{log} ({who}):\n{text[start:start + 2000]}")
        return found

    def check_logs(self) -> None:
        """A node that logged a traceback failed somewhere, even if the ring recovered."""
        found = self.tracebacks()
        if found:
            raise RingError(f"{len(found)} node log(s) hold a traceback:\n" + "\n".join(found))

    def live(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.alive]

    def kill(self, node: NodeProcess) -> None:
        """Crash: SIGKILL, no goodbye."""
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)

    def terminate(self, node: NodeProcess, timeout: float = 10.0) -> int:
        """Graceful leave: SIGTERM, and the exit status."""
        node.proc.send_signal(signal.SIGTERM)
        return node.proc.wait(timeout=timeout)

    def stop(self) -> None:
        # A cluster's nodes leave one at a time: give it their whole leave deadline.
        procs = [(n.proc, 10.0) for n in self.nodes]
        procs += [(c.proc, 15.0 + 0.1 * len(c.addresses)) for c in self.clusters]
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, timeout in procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()

    # -- the oracle ------------------------------------------------------------------------
    def owner_of(self, key_id: int) -> str:
        live = sorted((self.space.hash_address(n.address), n.address) for n in self.live())
        ids = [i for i, _ in live]
        return live[bisect.bisect_left(ids, key_id) % len(live)][1]

    def converged(self, client: BlockingClient | None = None) -> bool:
        """Every live node's successor and predecessor are the oracle's (asked through
        `client`, or a client of its own)."""
        live = sorted((self.space.hash_address(n.address), n.address) for n in self.live())
        if client is None:
            with BlockingClient([a for _, a in live], timeout=2.0) as own:
                return all(self._agrees(own, live, i) for i in range(len(live)))
        return all(self._agrees(client, live, i) for i in range(len(live)))

    @staticmethod
    def _agrees(client: BlockingClient, live: list[tuple[int, str]], i: int) -> bool:
        address = live[i][1]
        try:
            info = client.node_info(address)
        except ClientError:
            return False
        succ = live[(i + 1) % len(live)][1]
        pred = live[i - 1][1]
        got_succ = info.successors[0].address if info.successors else address
        got_pred = info.predecessor.address if info.predecessor else None
        return got_succ == succ and (len(live) == 1 or got_pred == pred)

    def wait_converged(self, timeout: float = 30.0) -> None:
        # One client for the whole wait: a client per poll holds its event loop's descriptors
        # until the garbage collector comes by, and a minute of polls ran a test process out
        # of them (select() refused descriptors past 1024 in the tests after).
        deadline = time.monotonic() + timeout
        with BlockingClient([n.address for n in self.live()], timeout=2.0) as client:
            while not self.converged(client):
                if time.monotonic() > deadline:
                    raise RingError(f"ring did not converge within {timeout:g}s")
                time.sleep(0.2)
