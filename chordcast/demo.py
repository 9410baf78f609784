"""`chordcast demo`: a local ring of node processes on loopback, shown working, then stopped."""

from __future__ import annotations

import signal
import statistics
import sys
import threading
import time

from chordcast.blocking import BlockingClient
from chordcast.cli.common import console, print_table, short
from chordcast.cli.groups import tree_picture
from chordcast.cli.progress import spinner
from chordcast.cli.status import render
from chordcast.localring import LocalRing, RingError
from chordcast.results import ClientError
from chordcast.survey import group_tree, survey_ring

KEYS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]


def banner(text: str) -> None:
    print(f"\n== {text}")


def show_ring(via: str) -> None:
    with BlockingClient(via) as client:
        infos = client.ring()
    print(f"ring of {len(infos)} nodes (walked from {via} along successor pointers)")
    print_table(
        ["id", "address", "predecessor", "successor", "keys", "replicas"],
        [[short(i.node.id), i.node.address, i.predecessor.address if i.predecessor else "-",
          i.successors[0].address if i.successors else "-", i.keys, i.replicas] for i in infos],
    )


def show_multicast(ring: LocalRing, kept: list[BlockingClient] | None = None) -> int:
    """The group's demo. `kept`: leave the group and its members up, their clients added
    there (closed by the caller, before the ring stops)."""
    addresses = [n.address for n in ring.live()]
    banner("multicast: a group with three members attached to different nodes")
    with BlockingClient(addresses) as admin:
        created = admin.create("demo-room", creator="demo")
        print(f"created 'demo-room' (root {created.root}); token {created.token[:8]}…")
        members = [BlockingClient(addresses[i:] + addresses[:i]) for i in (1, 3, 5)]
        if kept is not None:
            kept.extend(members)
        subs = [c.join("demo-room", member=f"member{i}") for i, c in enumerate(members)]
        for i, s in enumerate(subs):
            print(f"member{i} joined via {s.access_node}")
        for text in ["hello, group", "ordered by the root", "exactly once"]:
            seq = admin.send("demo-room", text, sender="demo")
            print(f"sent {text!r} -> seq {seq}")
        ok = True
        for i, s in enumerate(subs):
            got = [s.next(timeout=10) for _ in range(3)]
            line = ", ".join(f"{m.seq}:{m.text!r}" for m in got if m is not None)
            print(f"member{i} received {line}")
            ok = ok and [m.seq if m else None for m in got] == [1, 2, 3]
        info = admin.info("demo-room")
        print(f"group info: root {info.root}, {info.members} member(s), depth {info.depth}, "
              f"last seq {info.last_seq}; its tree (`chordcast group info demo-room --tree`):")
        console().print(tree_picture(info, admin.run(group_tree(
            info.group, info.root, admin.client.roles))))
        if kept is not None:  # the group and its members stay, for the live view
            return 0 if ok else _missed()
        admin.destroy("demo-room", created.token)
        ended = [s.next(timeout=10) for s in subs]
        print(f"destroyed: {sum(1 for e in ended if e and e.kind == 'ended')} member(s) told "
              "the group ended")
        for c in members:
            c.close()
    return 0 if ok else _missed()


def _missed() -> int:
    print("error: a member missed a message", file=sys.stderr)
    return 1


def show_status(via: str, settle: float = 30.0) -> None:
    """What `chordcast status` prints for the ring, once it is healthy (successor lists
    fill a few stabilization rounds after the ring has formed; bounded by `settle`)."""
    with BlockingClient(via) as client, spinner("waiting for full successor lists"):
        deadline = time.monotonic() + settle
        survey = client.run(survey_ring(client.client))
        while not survey.healthy and time.monotonic() < deadline:
            time.sleep(0.2)
            survey = client.run(survey_ring(client.client))
    console().print(render(survey, time.time()))


def keep_running(ring: LocalRing) -> None:
    """Leave the ring up for a look (the live view, the CLI) until Ctrl-C or SIGTERM (both
    handled here: started in the background by a script, SIGINT would be ignored, and an
    unhandled SIGTERM would leave the nodes running)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # (before saying how to stop it)
        signal.signal(sig, lambda _sig, _frame: stop.set())
    banner("the ring keeps running; Ctrl-C stops it")
    print(f"live view: http://{ring.live()[0].metrics}/ (each node serves one on its "
          "metrics port)")
    print(f"the CLI:   export CHORDCAST_VIA={ring.live()[0].address}; . .venv/bin/activate; "
          "chordcast status", flush=True)
    while not stop.wait(1.0):
        pass
    print()


def _terminated(_sig: int, _frame: object) -> None:
    raise SystemExit(128 + signal.SIGTERM)  # (through every `finally`: the nodes stop)


def run_demo(nodes: int = 8, keep: bool = False) -> int:
    ring = LocalRing(extra_args=["--stabilize-interval", "0.2", "--log-level", "warning"])
    # SIGTERM from the start: whenever it comes, the nodes are stopped (`finally`).
    signal.signal(signal.SIGTERM, _terminated)
    try:
        banner(f"starting {nodes} node processes on 127.0.0.1 (free ports)")
        with spinner(f"waiting for {nodes} nodes to start and settle into one ring"):
            ring.start(nodes)
            ring.wait_converged(timeout=60)
        via = ring.nodes[0].address
        show_ring(via)
        banner("status (`chordcast status`): one line per node")
        show_status(via)

        banner("lookups (recursive routing; hops = overlay hops to the owner)")
        time.sleep(1.5)  # give fix_fingers a few rounds so routes use the finger table
        rows, hops = [], []
        with BlockingClient(via) as client:
            for key in KEYS:
                r = client.lookup(key)
                expected = ring.owner_of(int(r.key_id, 16))
                rows.append([key, short(r.key_id), r.owner.address, r.hops,
                             "yes" if r.owner.address == expected else "NO"])
                hops.append(r.hops)
        print_table(["key", "key id", "owner", "hops", "matches oracle"], rows)
        print(f"mean hops {statistics.mean(hops):.2f} over {len(hops)} lookups")

        banner("put / get (each value on its owner and 3 successors)")
        with BlockingClient(via) as client:
            for key in KEYS[:5]:
                stored = client.put(key, f"value of {key}".encode())
                print(f"put {key!r:9} -> {stored.owner.address} (version {stored.version})")
        with BlockingClient(ring.nodes[-1].address) as client:
            for key in KEYS[:5]:
                v = client.get(key)
                print(f"get {key!r:9} <- {v.owner.address}: {v.value.decode()!r}")

        with BlockingClient(via) as client:
            victim_address = client.get(KEYS[0]).owner.address
        victim = next(n for n in ring.nodes if n.address == victim_address)
        banner(f"crash: SIGKILL the owner of {KEYS[0]!r} ({victim.address})")
        ring.kill(victim)
        started = time.monotonic()
        with spinner("waiting for the ring to repair"):
            ring.wait_converged(timeout=60)
        print(f"ring repaired in {time.monotonic() - started:.1f}s")
        survivor = ring.live()[0].address
        show_ring(survivor)
        with BlockingClient(survivor) as client:
            for key in KEYS[:5]:
                v = client.get(key)
                print(f"get {key!r:9} <- {v.owner.address}: "
                      f"{v.value.decode() if v.found else 'MISSING'!r}")
                if not v.found:
                    print("error: a value was lost", file=sys.stderr)
                    return 1

        kept: list[BlockingClient] = []
        if show_multicast(ring, kept if keep else None) != 0:
            return 1
        if keep:
            keep_running(ring)
            for member in kept:  # (before the nodes stop: they would try to reconnect)
                member.close()

        banner("stopping every node gracefully (SIGTERM)")
    except (RingError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        ring.stop()
    codes = [n.proc.returncode for n in ring.nodes if n is not victim]
    print(f"{len(codes)} nodes exited with status {sorted(set(codes))}")
    return 0 if all(c == 0 for c in codes) else 1
