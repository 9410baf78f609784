"""Ten real node processes started through the CLI, talking gRPC on loopback."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from xml.etree import ElementTree

import grpc
import pytest

from chord.ids import IdSpace
from chordcast import BlockingClient, ClientError
from chordcast.localring import LocalRing, NodeProcess
from chordcast.v1 import client_pb2, client_pb2_grpc
from tests.chordcast.ports import free_port

pytestmark = pytest.mark.slow
SPACE = IdSpace(160)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chordcast", *args], capture_output=True,
                          text=True, timeout=60)


def eventually(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    """Retry `check` until it returns without raising, within a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ring() -> Iterator[LocalRing]:
    nodes = LocalRing(extra_args=["--stabilize-interval", "0.2", "--rpc-timeout", "0.5"])
    with nodes.running(10) as r:
        yield r


def test_cli_lookups_agree_with_sha1_oracle(ring: LocalRing) -> None:
    rng = random.Random(1)
    addresses = [n.address for n in ring.live()]
    for i in range(8):
        key = f"key-{i}"
        out = cli("lookup", key, "--via", rng.choice(addresses), "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        key_id = SPACE.hash_key(key)
        assert doc["key"] == key and doc["key_id"] == SPACE.format(key_id)
        assert doc["owner"]["address"] == ring.owner_of(key_id)
        assert doc["owner"]["id"] == SPACE.format(SPACE.hash_address(doc["owner"]["address"]))
        assert doc["hops"] == len(doc["path"]) - 1 and doc["path"][-1] == doc["owner"]["address"]

    out = cli("ring", "--via", addresses[0], "--json")
    doc = json.loads(out.stdout)
    assert doc["size"] == 10
    assert sorted(n["address"] for n in doc["nodes"]) == sorted(addresses)


def test_many_lookups_recursive_and_iterative(ring: LocalRing) -> None:
    rng = random.Random(2)
    addresses = [n.address for n in ring.live()]
    for mode in (False, True):
        for _i in range(100):
            key = f"k{rng.random()}"
            with BlockingClient(rng.choice(addresses)) as client:
                r = client.lookup(key, iterative=mode)
            assert r.owner.address == ring.owner_of(SPACE.hash_key(key)), (mode, key)


def test_lookup_by_raw_id_and_garbage_id(ring: LocalRing) -> None:
    via = ring.live()[0].address
    target = SPACE.hash_address(ring.live()[3].address)
    out = cli("lookup", "--id", SPACE.format(target), "--via", via, "--json")
    assert json.loads(out.stdout)["owner"]["address"] == ring.live()[3].address
    bad = cli("lookup", "--id", "not-hex", "--via", via)
    assert bad.returncode == 2 and "not a hexadecimal identifier" in bad.stderr
    big = cli("lookup", "--id", "f" * 41, "--via", via)
    assert big.returncode == 2 and "outside" in big.stderr


def test_storage_survives_graceful_leave_and_crash(ring: LocalRing) -> None:
    via = ring.live()[0].address
    values = {f"item-{i}": f"value-{i}".encode() for i in range(40)}
    with BlockingClient(via) as client:
        for k, v in values.items():
            client.put(k, v)
    assert cli("get", "item-3", "--via", via).stdout.strip() == "value-3"

    def all_readable(through: str) -> None:
        with BlockingClient(through) as client:
            for k, v in values.items():
                got = client.get(k)
                assert got.found and got.value == v, k

    def busiest_owner() -> NodeProcess:
        owners = Counter(ring.owner_of(SPACE.hash_key(k)) for k in values)
        return max(ring.live()[1:], key=lambda n: owners[n.address])

    # Graceful leave of the node owning the most items: exit 0 within 5 s, nothing lost.
    leaver = busiest_owner()
    started = time.monotonic()
    assert ring.terminate(leaver) == 0
    assert time.monotonic() - started < 5.0
    all_readable(via)  # immediately: the keys were handed over before it exited
    ring.wait_converged(timeout=30)

    # Crash of another owner: the first replica takes over.
    victim = busiest_owner()
    ring.kill(victim)
    eventually(lambda: all_readable(via), timeout=20)
    ring.wait_converged(timeout=30)
    all_readable(ring.live()[-1].address)

    # Overwrite and delete still work on the repaired ring.
    with BlockingClient(via) as client:
        version = client.put("item-1", b"new").version
        assert version == 2 and client.get("item-1").value == b"new"
        assert client.delete("item-2").found is True
        assert client.get("item-2").found is False
    missing = cli("get", "item-2", "--via", via)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_lookup_during_repair_succeeds_or_fails_cleanly(ring: LocalRing) -> None:
    victim = ring.live()[-1]
    via = ring.live()[0].address
    ring.kill(victim)
    rng = random.Random(3)
    outcomes = {"ok": 0, "error": 0}
    with BlockingClient(via, timeout=15) as client:
        for _ in range(30):
            key = f"r{rng.random()}"
            started = time.monotonic()
            try:
                client.lookup(key)
                outcomes["ok"] += 1
            except ClientError as exc:
                assert str(exc)
                outcomes["error"] += 1
            assert time.monotonic() - started < 10.0  # bounded: never hangs
    assert outcomes["ok"] > 0
    ring.wait_converged(timeout=30)
    with BlockingClient(via) as client:
        for i in range(50):
            key = f"after-{i}"
            assert client.lookup(key).owner.address == ring.owner_of(SPACE.hash_key(key))


def test_oversized_value_over_grpc(ring: LocalRing) -> None:
    with BlockingClient(ring.live()[0].address) as client:
        with pytest.raises(ClientError, match="1 MiB"):
            client.put("big", b"x" * ((1 << 20) + 1))
        client.put("exactly-1mib", b"y" * (1 << 20))
        assert client.get("exactly-1mib").value == b"y" * (1 << 20)
    # A client that skips the check is refused by the node itself.
    with grpc.insecure_channel(ring.live()[1].address, options=[
            ("grpc.max_send_message_length", 8 << 20)]) as channel:
        stub = client_pb2_grpc.NodeApiStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.Put(client_pb2.PutRequest(key="big", value=b"x" * (2 << 20)), timeout=10)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "1 MiB" in exc.value.details()
        with pytest.raises(grpc.RpcError) as exc:
            stub.Put(client_pb2.PutRequest(key="", value=b"v"), timeout=10)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_node_restarted_at_its_old_address_rejoins_at_once() -> None:
    """gRPC channels to one address shared one connection and its reconnect back-off, so a
    node SIGKILLed and started again on the same address could not be answered (its join
    timed out every time); now each channel has its own, and a failed one is replaced."""
    ring = LocalRing()
    with ring.running(3):
        seed = ring.live()[0].address
        node = ring.live()[2]
        address = node.address
        for _ in range(3):
            ring.kill(node)
            ring.wait_converged(timeout=30)  # the others notice; their channels back off
            node = ring.wait_ready(ring.spawn(join=[seed], listen=address), timeout=15)
            ring.wait_converged(timeout=30)


def test_cli_conventions_over_a_live_ring(ring: LocalRing, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Values byte-exact in and out (stdin, --raw, --output), fail-over over several --via
    (and CHORDCAST_VIA), and full-width ids only."""
    via = ring.live()[1].address
    dead = f"127.0.0.1:{free_port()}"
    value = bytes(range(256)) * 3  # not UTF-8: printed as base64 unless --raw
    put = subprocess.run([sys.executable, "-m", "chordcast", "put", "bin", "--file", "-",
                          "--via", dead, "--via", via], input=value, capture_output=True,
                         timeout=60)
    assert put.returncode == 0, put.stderr
    raw = subprocess.run([sys.executable, "-m", "chordcast", "get", "bin", "--raw"],
                         capture_output=True, timeout=60,
                         env={**os.environ, "CHORDCAST_VIA": f"{dead},{via}"})
    assert raw.returncode == 0 and raw.stdout == value, raw.stderr
    out = tmp_path / "bin.out"
    saved = cli("get", "bin", "--output", str(out), "--via", via)
    assert saved.returncode == 0 and saved.stdout == "" and out.read_bytes() == value
    short_id = cli("lookup", "--id", "3fa9", "--via", via)
    assert short_id.returncode == 2 and "has 4" in short_id.stderr
    assert len(short_id.stderr.strip().splitlines()) == 1


def test_status_lists_every_node_and_fails_while_one_is_down() -> None:
    ring = LocalRing(extra_args=["--stabilize-interval", "5", "--idle-backoff", "1"])
    with ring.running(4) as r:
        via = r.live()[0].address
        with BlockingClient(via) as client:
            client.create("status-group")
        def healthy() -> subprocess.CompletedProcess[str]:
            # (Stabilization every 5 s: predecessors may still be settling at first.)
            out = cli("status", "--via", via, "--json")
            assert out.returncode == 0, out.stdout + out.stderr
            return out

        ok = eventually(healthy, timeout=30)
        report = json.loads(ok.stdout)
        assert report["healthy"] and len(report["nodes"]) == 4
        assert {n["address"] for n in report["nodes"]} == {n.address for n in r.live()}
        assert all(n["state"] == "up" and n["neighbours"] == "ok" for n in report["nodes"])
        assert sum(n["groups"] for n in report["nodes"]) >= 1  # the group's root
        victim = r.live()[2]
        # Hung, not killed: a killed node's connections close and its neighbours drop it at
        # once; a hung one stays in their lists until stabilization (every 5 s) gives up on it.
        os.kill(victim.proc.pid, signal.SIGSTOP)
        try:
            down = cli("status", "--via", via, "--timeout", "1")
            walked = cli("ring", "--via", via, "--timeout", "1")
        finally:
            os.kill(victim.proc.pid, signal.SIGCONT)
        r.kill(victim)
        assert down.returncode == 1, down.stdout + down.stderr
        assert "NOT healthy" in down.stdout
        assert any(line.startswith("down") and victim.address in line
                   for line in down.stdout.splitlines())
        # `ring` walks on past it (it used to show nothing but an error), listing it as not
        # answering while the others still name it (stabilization may have dropped it).
        assert walked.returncode == 0, walked.stderr
        assert sum(n.address in walked.stdout for n in r.live()) == 3
        assert all("(does not answer)" in line for line in walked.stdout.splitlines()
                   if victim.address in line.split()[:2])
    r.check_logs()


def test_pictures_in_the_terminal(ring: LocalRing, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`ring --svg` draws every node, `group info --tree` names the members where they are
    attached, `broadcast` says how many nodes it reached, `status --watch` refreshes."""
    live = ring.live()
    via = live[0].address
    svg = tmp_path / "ring.svg"
    drawn = cli("ring", "--svg", str(svg), "--via", via)
    assert drawn.returncode == 0, drawn.stderr
    root = ElementTree.parse(svg).getroot()
    circles = [e for e in root.iter("{http://www.w3.org/2000/svg}circle")
               if "data-node-id" in e.attrib]
    assert {c.attrib["data-address"] for c in circles} == {n.address for n in live}
    assert {c.attrib["data-node-id"] for c in circles} == {
        SPACE.format(SPACE.hash_address(n.address)) for n in live}

    with BlockingClient(via) as c:
        c.create("pictures")
    subs = [BlockingClient(live[k].address).join("pictures", member=name)
            for k, name in ((3, "ann"), (6, "ben"), (6, "cy"))]
    try:
        tree = cli("group", "info", "pictures", "--tree", "--via", via)
        assert tree.returncode == 0, tree.stderr
        lines = tree.stdout.splitlines()
        assert lines[0].startswith("group 'pictures'") and "3 members" in lines[0]
        assert sum("root" in line for line in lines) == 1
        ann = next(line for line in lines if "ann" in line)
        assert live[3].address in ann
        bc = next(line for line in lines if "ben" in line)
        assert live[6].address in bc and "cy" in bc
        info = json.loads(cli("group", "info", "pictures", "--json", "--via", via).stdout)
        assert sorted((m["name"], m["node"]) for m in info["member_names"]) == sorted(
            [("ann", live[3].address), ("ben", live[6].address), ("cy", live[6].address)])
    finally:
        for s in subs:
            s.close()

    sent = cli("broadcast", "hello all", "--via", via)
    assert sent.returncode == 0 and sent.stdout.strip() == (
        f"delivered to the inbox of {len(live)} node(s)"), sent.stdout + sent.stderr

    watch = subprocess.Popen([sys.executable, "-m", "chordcast", "status", "--watch",
                              "--interval", "0.3", "--via", via], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        seen = 0
        deadline = time.monotonic() + 30
        assert watch.stdout is not None
        while seen < 3 and time.monotonic() < deadline:
            line = watch.stdout.readline()
            seen += line.startswith(f"{len(live)} of {len(live)} node(s) up")
        assert seen == 3  # three reports, one after another, while piped
    finally:
        watch.send_signal(signal.SIGINT)
        _out, err = watch.communicate(timeout=30)
    assert "Traceback" not in err, err
