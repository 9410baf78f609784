"""`make bench`: every figure in one run, side by side with the limit (a bare grpc.aio echo)
and the peer (PyPI `kademlia`), and the ratios the targets are stated in, each marked met or
not. Writes bench/results/latest.json (with the commit and the machine) and latest.md.

Figures are printed, never asserted: tests assert behaviour, this measures it. Loopback only;
every loop is bounded in count. `--smoke`: tiny counts, to prove the harness works (make test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cluster, dht, durability, echo, mcast
from chordcast.cli.progress import spinner

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE / ".venv-kademlia" / "bin" / "python"


def peer(nodes: int, gets: int) -> dict[str, float] | None:
    if not PEER_PYTHON.exists():
        return None
    out = subprocess.run([str(PEER_PYTHON), str(HERE / "peer_kademlia.py"), "measure",
                          str(nodes), str(gets), "16"], capture_output=True, text=True,
                         timeout=600, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def ratios(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets, each as figure / bound with met or not."""
    e, k = r["echo"], r.get("kademlia")
    rows = []
    for n, d in r["chordcast"].items():
        bound = 1.3 * (1 + d["hops_mean"]) * e["p50_ms"]
        rows.append({"target": f"N={n}: lookup p50 <= 1.3 x (1 + hops) x echo p50",
                     "value": d["lookup_p50_ms"], "bound": bound,
                     "met": d["lookup_p50_ms"] <= bound})
        if k is not None:
            rows.append({"target": f"N={n}: lookups/s through any node >= 1.2 x kademlia gets/s",
                         "value": d["lookups_per_s"], "bound": 1.2 * k["gets_per_s"],
                         "met": d["lookups_per_s"] >= 1.2 * k["gets_per_s"]})
            rows.append({"target": f"N={n}: client gets/s >= 2 x kademlia gets/s",
                         "value": d["client_gets_per_s"], "bound": 2 * k["gets_per_s"],
                         "met": d["client_gets_per_s"] >= 2 * k["gets_per_s"]})
        rows.append({"target": f"N={n}: idle CPU per node <= 0.5 %",
                     "value": d["idle_cpu_percent_per_node"], "bound": 0.5,
                     "met": d["idle_cpu_percent_per_node"] <= 0.5})
        rows.append({"target": f"N={n}: RSS per node <= 48 MiB",
                     "value": d["rss_mib_per_node"], "bound": 48,
                     "met": d["rss_mib_per_node"] <= 48})
    m = r.get("multicast")
    if m:
        b2b, b2b99, rate = m["b2b_p50_ms"], m["b2b_p99_ms"], m["delivered_all_per_s"]
        clean = m["lost"] == m["duplicates"] == m["out_of_order"] == m["send_failures"] == 0
        rows += [
            {"target": "multicast back-to-back all-7 p50 <= 4 x echo p50", "value": b2b,
             "bound": 4 * e["p50_ms"], "met": b2b <= 4 * e["p50_ms"]},
            {"target": "multicast back-to-back all-7 p99 <= 12 x echo p50", "value": b2b99,
             "bound": 12 * e["p50_ms"], "met": b2b99 <= 12 * e["p50_ms"]},
            {"target": f"multicast offered {m['rate_target']:.0f}/s: delivered to all >= "
             f"{0.95 * m['rate_target']:.0f}/s, no loss, duplicate or reordering",
             "value": rate, "bound": 0.95 * m["rate_target"],
             "met": clean and rate >= 0.95 * m["rate_target"]},
        ]
    c = r.get("cluster")
    if c:
        n = c["nodes"]
        single = min(d["rss_mib_per_node"] for d in r["chordcast"].values())
        per_extra = (c["rss_mib_per_process"] - single) / max(1, n / c["processes"] - 1)
        c["rss_mib_per_extra_node"] = per_extra
        rows += [
            {"target": f"{n} nodes: every lookup's owner is the oracle's", "value": c["wrong"],
             "bound": 0, "met": c["wrong"] == 0},
            {"target": f"{n} nodes: idle CPU of the whole ring < 0.5 cores",
             "value": c["idle_cores"], "bound": 0.5, "met": c["idle_cores"] < 0.5},
            {"target": f"{n} nodes: total RSS < 2 GiB (MiB)", "value": c["rss_mib_total"],
             "bound": 2048, "met": c["rss_mib_total"] < 2048},
            {"target": "RSS per extra node in a multi-node process <= 8 MiB",
             "value": per_extra, "bound": 8, "met": per_extra <= 8},
        ]
    return rows


def markdown(r: dict[str, Any]) -> str:
    e, k = r["echo"], r.get("kademlia")
    lines = [f"# make bench — {r['commit'][:10]} on {r['machine']['cpus']} cores, "
             f"{r['machine']['python']}, grpcio {r['machine']['grpcio']}", "",
             "| figure | echo | kademlia | " + " | ".join(
                 f"chordcast N={n}" for n in r["chordcast"]) + " |",
             "|---|---|---|" + "---|" * len(r["chordcast"])]

    def row(name: str, echo_v: str, peer_v: str, key: str, fmt: str = "{:.2f}") -> None:
        cells = [fmt.format(d[key]) for d in r["chordcast"].values()]
        lines.append(f"| {name} | {echo_v} | {peer_v} | " + " | ".join(cells) + " |")

    kp = (lambda key, fmt="{:.2f}": fmt.format(k[key])) if k else (lambda key, fmt="": "-")
    row("sequential p50, ms (lookup)", f"{e['p50_ms']:.2f}", kp("get_p50_ms"),
        "lookup_p50_ms")
    row("sequential p99, ms (lookup)", f"{e['p99_ms']:.2f}", kp("get_p99_ms"),
        "lookup_p99_ms")
    row("get p50 through a node, ms", "", "", "get_p50_ms")
    row("get p50 ring-aware client, ms", "", "", "client_get_p50_ms")
    row("lookups/s, 16 in flight", f"{e['calls_per_s']:.0f}", kp("gets_per_s", "{:.0f}"),
        "lookups_per_s", "{:.0f}")
    row("gets/s through a node", "", "", "gets_per_s", "{:.0f}")
    row("gets/s ring-aware client", "", "", "client_gets_per_s", "{:.0f}")
    row("mean hops", "", "", "hops_mean")
    row("one-hop fraction", "", "", "one_hop_fraction")
    row("idle CPU per node, %", "", "", "idle_cpu_percent_per_node")
    row("RSS per node, MiB", "", "", "rss_mib_per_node", "{:.1f}")
    c = r.get("cluster")
    if c:
        lines += ["", f"{c['nodes']} nodes in {c['processes']} `chordcast cluster` processes: "
                  f"formed in {c['formed_seconds']:.1f} s; {c['lookups']} lookups, "
                  f"{c['wrong']} wrong, mean hops {c['hops_mean']:.2f}, one-hop fraction "
                  f"{c['one_hop_fraction']:.2f}, p50 {c['lookup_p50_ms']:.2f} ms; idle "
                  f"{c['idle_cores']:.2f} cores in all; RSS {c['rss_mib_total']:.0f} MiB in "
                  f"all, {c['rss_mib_per_process']:.0f} MiB per process"]
    lines += ["", "| target | value | bound | met |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']:.2f} | {t['bound']:.2f} | "
              f"{'yes' if t['met'] else 'NO'} |" for t in r["ratios"]]
    if r.get("multicast"):
        m = r["multicast"]
        lines += ["", f"Multicast: 8 node processes, one group, {m['members']} subscribers on 7 "
                  "nodes (client library), the sender on the 8th, 1 KiB messages", "",
                  "| figure | chordcast | anchors (shared/reference/performance.md) |",
                  "|---|---|---|",
                  f"| back-to-back, all {m['members']} p50 / p99, ms | {m['b2b_p50_ms']:.2f} / "
                  f"{m['b2b_p99_ms']:.2f} | echo p50 {e['p50_ms']:.2f} this run; gossipsub "
                  "all-7 p50 12.1 |",
                  f"| offered / delivered to all {m['members']}, msg/s ({m['in_flight']} in "
                  f"flight) | {m['offered_per_s']:.0f} / {m['delivered_all_per_s']:.0f} | "
                  "gossipsub 50 zero-loss; unary fan-out 475; streaming fan-out 1,400 |",
                  f"| lost / duplicates / out of order | {m['lost']} / {m['duplicates']} / "
                  f"{m['out_of_order']} | gossipsub drops silently above 50 msg/s |",
                  f"| CPU per delivery, all processes, ms | {m['cpu_ms_per_delivery']:.2f} | "
                  "unary fan-out 0.74 (5.2 / 7), streaming 0.26 (1.8 / 7) |"]
    if r.get("durability"):
        mem, disk = r["durability"]["memory"], r["durability"]["data_dir"]
        lines += ["", "Puts, ring-aware client, 4 node processes (3 replicas each), without "
                  "and with `--data-dir` (SQLite WAL, synchronous=FULL, group commit)", "",
                  "| figure | memory only | --data-dir | cost |", "|---|---|---|---|",
                  f"| put p50 / p99, ms | {mem['put_p50_ms']:.2f} / {mem['put_p99_ms']:.2f} | "
                  f"{disk['put_p50_ms']:.2f} / {disk['put_p99_ms']:.2f} | "
                  f"{disk['put_p50_ms'] / mem['put_p50_ms']:.2f}x p50 |",
                  f"| puts/s, 16 in flight | {mem['puts_per_s']:.0f} | "
                  f"{disk['puts_per_s']:.0f} | {disk['puts_per_s'] / mem['puts_per_s']:.2f}x |"]
    if k is None:
        lines += ["", "kademlia: not measured (bench/.venv-kademlia missing; `make bench` "
                  "makes it)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny counts: prove the harness works")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--sizes", default="8,32", help="ring sizes (node processes)")
    args = ap.parse_args()
    count = 30 if args.smoke else 1000
    sizes = [3] if args.smoke else [int(s) for s in args.sizes.split(",")]
    started = time.monotonic()
    import grpc

    result: dict[str, Any] = {
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                 cwd=HERE).stdout.strip() or "unknown",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "grpcio": grpc.__version__},
        "smoke": args.smoke,
    }
    phases: list[tuple[str, str, Callable[[], Any]]] = [
        ("echo", "the bare grpc.aio echo (one hop's limit)",
         lambda: echo.measure(sequential=count, concurrent=2 * count)),
        ("kademlia", "the peer DHT (PyPI kademlia)",
         lambda: None if args.smoke else peer(32, count)),
        ("chordcast", f"rings of {', '.join(map(str, sizes))} node processes",
         lambda: {str(n): dht.measure(n, count, idle_seconds=2 if args.smoke else 10,
                                      settle_seconds=1 if args.smoke else 16)
                  for n in sizes}),
        ("cluster", "many nodes per process",
         lambda: cluster.measure(2, 4, 20, idle_seconds=1, settle_seconds=1) if args.smoke
         else cluster.measure(4, 64, 200)),
        ("multicast", "multicast throughput and latency",
         lambda: mcast.measure(back_to_back=5, rate=100, count=20, in_flight=8) if args.smoke
         else mcast.measure()),
        ("durability", "puts with and without --data-dir",
         lambda: durability.measure(nodes=3, count=30) if args.smoke
         else durability.measure()),
    ]
    for k, (name, what, measure) in enumerate(phases, 1):
        with spinner(f"bench {k}/{len(phases)}: {what}"):  # (quiet when piped)
            result[name] = measure()
    result["ratios"] = ratios(result)
    result["wall_seconds"] = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "latest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
