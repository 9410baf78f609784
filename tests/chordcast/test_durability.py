"""Data dirs over real processes (`chordcast node --data-dir`, metrics on, fixed addresses): a
ring SIGKILLed whole comes back with every acknowledged key and its groups' numbering and
archive; a node killed in a burst of writes loses none it acknowledged; a rolling restart
under load loses, duplicates and reorders nothing; a data dir that is not the node's own, is
corrupt or is in use is refused with one line and exit status 1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chordcast.client import Client, Subscription
from chordcast.localring import LocalRing, NodeProcess
from chordcast.results import ClientError
from tests.chordcast.ports import free_ports

pytestmark = pytest.mark.slow
NODES = 5


class DurableRing:
    """NODES node processes, each at a fixed address with its own data dir."""

    def __init__(self, root: Path) -> None:
        self.ring = LocalRing()
        self.addresses = [f"127.0.0.1:{p}" for p in free_ports(NODES)]
        self.dirs = [root / f"node{i}" for i in range(NODES)]
        for i, address in enumerate(self.addresses):
            node = self.ring.spawn(join=self.addresses[:i][:2], listen=address,
                                   extra=["--data-dir", str(self.dirs[i])])
            self.ring.wait_ready(node)
        self.ring.wait_converged(timeout=60)

    def node(self, address: str) -> NodeProcess:
        return next(n for n in self.ring.live() if n.address == address)

    def restart(self, node: NodeProcess) -> NodeProcess:
        again = self.ring.wait_ready(self.ring.respawn(node))
        assert again.address == node.address
        return again

    def restart_all(self, nodes: list[NodeProcess]) -> None:
        """All at once, as after a power cut: they must come back as one ring."""
        started = [self.ring.respawn(n) for n in nodes]
        for node, again in zip(nodes, started, strict=True):
            assert self.ring.wait_ready(again).address == node.address


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[DurableRing]:
    ring = DurableRing(tmp_path)
    try:
        yield ring
    finally:
        ring.ring.stop()
    ring.ring.check_logs()


async def put_all(client: Client, items: dict[str, bytes], parallel: int = 16) -> None:
    keys = list(items)
    for at in range(0, len(keys), parallel):
        await asyncio.gather(*(client.put(k, items[k]) for k in keys[at:at + parallel]))


async def read_back(client: Client, items: dict[str, bytes]) -> list[str]:
    """The keys that do not read back as written."""
    wrong = []
    for key, value in items.items():
        got = await client.get(key)
        if not got.found or got.value != value:
            wrong.append(key)
    return wrong


def test_a_ring_killed_at_once_comes_back_with_every_key_and_its_groups(
        durable: DurableRing) -> None:
    items = {f"key-{i}": f"value-{i}".encode() * (1 + i % 7) for i in range(200)}

    async def before() -> None:
        async with Client(durable.addresses) as client:
            await put_all(client, items)
            for gone in ("key-3", "key-77"):
                assert (await client.delete(gone)).found
                del items[gone]
            await client.create("news")
            for n in range(1, 51):
                assert await client.send("news", f"m{n}") == n

    asyncio.run(before())
    for node in durable.ring.live():  # every node at once, no goodbye
        durable.ring.kill(node)
    durable.restart_all(durable.ring.nodes[:NODES])
    durable.ring.wait_converged(timeout=60)

    async def after() -> None:
        async with Client(durable.addresses[2:]) as client:
            assert await read_back(client, items) == []
            for gone in ("key-3", "key-77"):
                assert not (await client.get(gone)).found
            assert (await client.info("news")).last_seq == 50
            assert await client.send("news", "m51") == 51
            async with client.join("news", resume_after=0) as sub:
                got = [await asyncio.wait_for(sub.__anext__(), 20) for _ in range(51)]
        assert [(m.kind, m.seq, m.payload) for m in got] == [
            ("message", n, f"m{n}".encode()) for n in range(1, 52)]

    asyncio.run(after())
    logs = "".join(n.log.read_text() for n in durable.ring.live())
    assert "stored items" in logs  # each came back from its data dir, not empty


def test_a_node_killed_in_a_burst_of_writes_loses_no_acknowledged_write(
        durable: DurableRing) -> None:
    acked: dict[str, bytes] = {}
    victim = durable.node(durable.addresses[3])

    async def burst() -> None:
        async with Client(durable.addresses[:2], timeout=3.0) as client:
            async def writer(w: int) -> None:
                for i in range(400):
                    key, value = f"w{w}-{i % 60}", f"{w}:{i}".encode()
                    try:
                        await client.put(key, value)
                    except ClientError:
                        continue  # not acknowledged: nothing is promised
                    acked[key] = value
                    if w == 0 and i == 100:
                        durable.ring.kill(victim)  # in the middle of the burst

            await asyncio.gather(*(writer(w) for w in range(4)))

    asyncio.run(burst())
    restarted = durable.restart(victim)
    durable.ring.wait_converged(timeout=60)
    assert "stored items" in restarted.log.read_text()

    async def check() -> None:
        async with Client(durable.addresses) as client:
            assert await read_back(client, acked) == []

    asyncio.run(check())


def test_a_rolling_restart_under_load_loses_duplicates_and_reorders_nothing(
        durable: DurableRing) -> None:
    acked: dict[str, bytes] = {}
    sent: list[int] = []
    got: list[tuple[int, bytes]] = []
    alone: list[tuple[int, bytes]] = []  # a member that knows one node, restarted first

    async def load(stop: asyncio.Event) -> None:
        async with Client(durable.addresses, timeout=3.0) as client, \
                Client(durable.addresses[0], timeout=3.0) as single:
            await client.create("feed")
            sub = client.join("feed", resume_after=0)
            await sub.open()
            lone = single.join("feed", resume_after=0)
            await lone.open()

            async def receive(sub: Subscription, into: list[tuple[int, bytes]]) -> None:
                async for m in sub:
                    assert m.kind == "message", m
                    into.append((m.seq, m.payload))
                    if m.payload == b"last":
                        return

            async def write() -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    with contextlib.suppress(ClientError):
                        await client.put(f"r{i % 80}", str(i).encode())
                        acked[f"r{i % 80}"] = str(i).encode()
                    with contextlib.suppress(ClientError):
                        seq = await client.send("feed", f"s{i}")
                        sent.append(seq)
                    await asyncio.sleep(0.01)

            receivers = [asyncio.create_task(receive(sub, got)),
                         asyncio.create_task(receive(lone, alone))]
            await write()
            sent.append(await client.send("feed", "last"))  # the ring is whole again
            await asyncio.wait_for(asyncio.gather(*receivers), 30)
            await sub.close()
            await lone.close()

    async def sends_past(count: int, task: asyncio.Task[None]) -> None:
        """Wait (bounded) until the load has had more than `count` sends acknowledged."""
        deadline = time.monotonic() + 30
        while len(sent) <= count:
            assert not task.done() and time.monotonic() < deadline, "the load stalled"
            await asyncio.sleep(0.05)

    async def roll() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(load(stop))
        await sends_past(5, task)  # under load before the first restart
        for address in durable.addresses:
            node = durable.node(address)
            await asyncio.to_thread(durable.ring.terminate, node)
            await asyncio.to_thread(durable.restart, node)
            await asyncio.to_thread(durable.ring.wait_converged, 60)
        await sends_past(len(sent) + 5, task)  # and after the last
        stop.set()
        await task

    asyncio.run(roll())
    assert sent, "no send went through"
    seqs = [s for s, _ in got]
    assert seqs == list(range(1, max(sent) + 1)), "lost, duplicated or out of order"
    assert alone == got  # its only node went away and came back: it waited, then resumed
    assert len(set(sent)) == len(sent)

    async def check() -> None:
        async with Client(durable.addresses) as client:
            assert await read_back(client, acked) == []

    asyncio.run(check())


def run_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chordcast", "node", "--discover", "none",
                           *args], capture_output=True, text=True, timeout=30)


def test_a_data_dir_that_is_not_the_nodes_own_is_refused_with_one_line(
        tmp_path: Path) -> None:
    ring = LocalRing()
    address, other = (f"127.0.0.1:{p}" for p in free_ports(2))
    mine = tmp_path / "mine"
    node = ring.wait_ready(ring.spawn(join=[], listen=address,
                                      extra=["--data-dir", str(mine)]))
    try:
        busy = run_node("--listen", other, "--data-dir", str(mine))
        assert (busy.returncode, busy.stderr.strip()) == (
            1, f"error: the data dir {mine} is in use by another chordcast process")
        ring.terminate(node)
        foreign = run_node("--listen", other, "--data-dir", str(mine))
        assert foreign.returncode == 1
        assert foreign.stderr.strip().startswith(
            f"error: the data dir {mine} holds the data of the node at {address}, not {other}")
        assert len(foreign.stderr.strip().splitlines()) == 1
        # The dir's ring is the one `address` founded; another ring's node is no seed for it.
        stranger = ring.wait_ready(ring.spawn(join=[], listen=other))
        elsewhere = run_node("--listen", address, "--data-dir", str(mine), "--join", other)
        errors = [ln for ln in elsewhere.stderr.splitlines() if ln.startswith("error:")]
        assert elsewhere.returncode == 1 and len(errors) == 1, elsewhere.stderr
        assert "Traceback" not in elsewhere.stderr, elsewhere.stderr
        assert "this node belongs to ring" in elsewhere.stderr
        assert f"the data dir {mine} holds the other ring's data" in elsewhere.stderr
        ring.terminate(stranger)
        corrupt = tmp_path / "corrupt"
        corrupt.mkdir()
        (corrupt / "chordcast.db").write_bytes(b"\x00garbage" * 1000)
        bad = run_node("--listen", other, "--data-dir", str(corrupt))
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
        assert "is corrupt or not a chordcast data dir" in bad.stderr
        # A real database damaged in place: the node's own, pages overwritten.
        db = mine / "chordcast.db"
        data = bytearray(db.read_bytes())
        data[100:] = b"\xff" * (len(data) - 100)
        db.write_bytes(bytes(data))
        damaged = run_node("--listen", address, "--data-dir", str(mine))
        assert damaged.returncode == 1 and len(damaged.stderr.strip().splitlines()) == 1
        assert "corrupt" in damaged.stderr
    finally:
        ring.stop()
    ring.check_logs()


def test_a_full_disk_refuses_writes_with_a_clear_error(tmp_path: Path) -> None:
    """A data dir on a tiny filesystem: once it is full, a put the node owns is refused with
    RESOURCE_EXHAUSTED naming the cause (never acknowledged), counted, and logged without a
    traceback; the node goes on serving reads."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) to make a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(small)],
                   check=True)
    ring = LocalRing()
    try:
        node = ring.wait_ready(ring.spawn(join=[], extra=["--data-dir", str(small / "d")]))

        async def fill() -> ClientError:
            async with Client(node.address) as client:
                await client.put("first", b"fits")
                for i in range(100):
                    try:
                        await client.put(f"big-{i}", os.urandom(64 << 10))
                    except ClientError as exc:
                        assert (await client.get("first")).value == b"fits"
                        return exc
            raise AssertionError("400 KiB took 6 MiB")

        refused = asyncio.run(fill())
        assert refused.code == "RESOURCE_EXHAUSTED", refused
        assert "cannot write to its data dir" in str(refused)
        assert "full" in str(refused)
        text = urllib.request.urlopen(f"http://{node.metrics}/metrics", timeout=5).read()
        assert b"chordcast_data_dir_write_errors_total 0.0" not in text
        assert b"chordcast_data_dir_write_errors_total" in text
    finally:
        ring.stop()
        subprocess.run(["umount", str(small)], check=False)
    ring.check_logs()
