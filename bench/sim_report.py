"""Regenerates docs/simulation.md and its plots from seeded simulator runs (`make sim-report`).

Every figure comes from `chord.sim.experiments` (and `mcast.sim`) with the seed printed next to it,
so anyone can rerun a single line with `chordcast sim ... --seed S`. Needs the `report` extra
(matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chord.sim import experiments
from chordcast.cli.progress import tenths
from mcast import sim as mcast_sim

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMG = DOCS / "img"
SEED = 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def path_length(max_exp: int, lookups: int) -> list[dict[str, Any]]:
    rows = []
    for e in range(4, max_exp + 1):
        n = 2**e
        log(f"path length: N = {n}")
        rows.append(experiments.run(experiments.ring_experiment(n, SEED, lookups, successors=8,
                                                          form="stable")))
    return rows


def failures(n: int, lookups: int) -> list[dict[str, Any]]:
    rows = []
    for f in (0.1, 0.2, 0.3, 0.4, 0.5):
        log(f"failure: {int(f * 100)}% of {n}")
        rows.append(experiments.run(experiments.ring_experiment(
            n, SEED, lookups, fail_fraction=f, repair=False, form="stable")))
    return rows


def churn(n: int, lookups: int) -> list[dict[str, Any]]:
    rows = []
    for rate in (1, 2, 4, 8, 12):
        log(f"churn: {rate} per period")
        rows.append(experiments.run(experiments.churn_experiment(n, SEED, rate, 10, lookups)))
    return rows


def scribe(n: int, groups: int, min_size: int, max_size: int, messages: int,
           crashes: tuple[float, ...] = (0.0, 0.2)) -> list[dict[str, Any]]:
    sizes = [max(1, round(min_size * (max_size / min_size) ** (i / max(1, groups - 1))))
             for i in range(groups)]
    rows = []
    for crash in crashes:
        log(f"scribe: {n} nodes, {groups} groups, crash {crash}")
        rows.append(experiments.run(mcast_sim.mcast_experiment(
            n, SEED, groups, sizes, messages, crash_fraction=crash, progress=tenths())))
    return rows


def big_run(n: int, lookups: int) -> dict[str, Any]:
    log(f"scale: {n} nodes formed by joins, {lookups} lookups")
    result = experiments.run(experiments.ring_experiment(n, SEED, lookups, progress=tenths()))
    # The high-water mark of this process, so run this section on its own (it is the largest).
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["command"] = (f"chordcast sim ring --nodes {n} --lookups {lookups} --seed {SEED} "
                         "--progress")
    return result


def code_version() -> str:
    """The commit the figures came from (marked if the working tree differed from it)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "chord", "mcast", "protos")
    return commit + ("+changes" if dirty else "")


def _node_stress(row: dict[str, Any]) -> str:
    if "node_stress_mean" not in row:
        return "-"  # measured since the flows (issue 12)
    return f"{row['node_stress_mean']}/{row['node_stress_max']}"


def _before_after(data: dict[str, Any]) -> list[str]:
    """The full-size run before issue 12's changes (kept from its commit) beside the current."""
    before = data.get("scribe_full_before")
    if not before or not data.get("scribe_full"):
        return []
    rows = [("before (" + before["code"] + ")", before["row"]),
            ("after (" + data["code"]["scribe_full"] + ")", data["scribe_full"][0])]
    return [
        "### Before and after issue 12 (10,000 nodes, 100 groups, no crash)",
        "",
        "Before: unary pushes with an answer each, one batch at a time to a new child; "
        "after: pushes on one-way ordered flows, a lost push re-sent at once, a hole asked "
        "for at once.",
        "",
        table(["run", "delay p50/p99 ms", "delay penalty", "depth mean/max",
               "children mean/max", "node stress mean/max", "msgs per delivery",
               "exactly-once in order"],
              [[name, f"{r['delay_p50_ms']}/{r['delay_p99_ms']}", r["delay_penalty_mean"],
                f"{r['depth_mean']}/{r['depth_max']}", f"{r['stress_mean']}/{r['stress_max']}",
                _node_stress(r), r["messages_per_delivery"],
                r["exactly_once_in_order_fraction"]] for name, r in rows]),
        "",
    ]


def plot(paths: list[dict[str, Any]], fails: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG.mkdir(parents=True, exist_ok=True)
    ns = [r["nodes"] for r in paths]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ns, [r["hops_mean"] for r in paths], "o-", label="mean hops (chordcast)")
    ax.fill_between(ns, [r["hops_p1"] for r in paths], [r["hops_p99"] for r in paths],
                    alpha=0.2, label="1st..99th percentile")
    ax.plot(ns, [0.5 * math.log2(n) for n in ns], "k--", label="½·log2 N (Chord paper)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("nodes N")
    ax.set_ylabel("hops")
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "path_length.png", dpi=110)
    fig, ax = plt.subplots(figsize=(6, 4))
    fs = [100 * r["fail_fraction"] for r in fails]
    ax.plot(fs, [r["hops_mean"] for r in fails], "o-", label="mean hops")
    ax.plot(fs, [r["timeouts_mean"] for r in fails], "s-", label="timeouts per lookup")
    ax.set_xlabel("nodes failed at once (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(IMG / "failures.png", dpi=110)
    return ["img/path_length.png", "img/failures.png"]


SECTIONS = ("path_length", "failures", "churn", "scribe", "scribe_full", "scribe_full_crash",
            "scale")


def run_section(name: str, quick: bool) -> Any:
    q = quick
    if name == "path_length":
        return path_length(8 if q else 14, 2000 if q else 10_000)
    if name == "failures":
        return failures(200 if q else 1000, 1000 if q else 10_000)
    if name == "churn":
        return churn(200 if q else 1000, 500 if q else 10_000)
    if name == "scribe":
        # Full size would be 10,000 nodes and 100 groups of 10..5,000 members; this machine
        # does 2,000 nodes and 50 groups of 10..1,000 in reasonable time (see the notes).
        return scribe(300 if q else 2_000, 5 if q else 50, 10, 100 if q else 1000,
                      20 if q else 100)
    if name in ("scribe_full", "scribe_full_crash"):  # each ~30 minutes on one core
        crash = 0.2 if name.endswith("crash") else 0.0
        return scribe(500 if q else 10_000, 10 if q else 100, 10, 200 if q else 5000,
                      20 if q else 100, crashes=(crash,))
    return big_run(1000 if q else 10_000, 5000 if q else 100_000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (for a smoke run)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="which experiments to (re)run; the others are kept from "
                         "docs/simulation.json")
    ap.add_argument("--merge", action="append", default=[], metavar="SECTION=FILE",
                    help="take a one-row section from the saved `chordcast sim ... --json` "
                         "output of the same run (e.g. the long Scribe runs, done in parallel)")
    args = ap.parse_args()
    started = time.time()
    store = DOCS / "simulation.json"
    data: dict[str, Any] = json.loads(store.read_text()) if store.exists() else {}
    data["seed"] = SEED
    data.setdefault("code", {})
    for spec in args.merge:
        name, _, path = spec.partition("=")
        if name not in SECTIONS:
            sys.exit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        row = json.loads(Path(path).read_text())
        data[name] = row if name == "scale" else [row]
        data["code"][name] = code_version()
        data.setdefault("minutes", {})[name] = round(row["wall_seconds"] / 60, 1)
    for name in [s for s in args.sections.split(",") if s]:
        if name not in SECTIONS:
            sys.exit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")
        data[name] = run_section(name, args.quick)
        data["code"][name] = code_version()
        DOCS.mkdir(exist_ok=True)
        store.write_text(json.dumps(data, indent=1) + "\n")  # keep what is done so far
    if args.sections:
        data.setdefault("minutes", {})[args.sections] = round((time.time() - started) / 60, 1)
    store.write_text(json.dumps(data, indent=1) + "\n")
    if any(name not in data for name in SECTIONS):
        log("some sections have not run yet: docs/simulation.md is written once all have")
        return
    paths, fails, churns = data["path_length"], data["failures"], data["churn"]
    scribes = data["scribe"] + data["scribe_full"] + data["scribe_full_crash"]
    big = data["scale"]
    images = plot(paths, fails)
    md = [
        "# Simulation report",
        "",
        "Generated by `make sim-report` (bench/sim_report.py) from the same protocol code the "
        "gRPC nodes run, on the in-memory network in virtual time. Seed "
        f"**{SEED}** for every run; each row can be rerun with `chordcast sim ... --seed "
        f"{SEED}`. Raw figures: `docs/simulation.json`. Wall time of the runs (minutes, "
        f"by section, on a 2-core machine): "
        + ", ".join(f"{k} {v}" for k, v in data["minutes"].items()) + ".",
        "",
        "Hops count every overlay hop, the last one to the owner included (the Chord paper "
        "counts the path to the owner's predecessor and adds one). A node that finds the "
        "owner in its successor list goes there directly, which shortens paths.",
        "",
        "## Scale",
        "",
        table(["nodes", "formed by", "formed at (virtual s)", "lookups", "hops mean",
               "1st/99th pct", "correct", "virtual s", "wall s", "max RSS MiB"],
              [[big["nodes"], f"{big['form']} ({big['join_failures']} retried)",
                big["formed_virtual_seconds"], big["lookups"], big["hops_mean"],
                f"{big['hops_p1']}/{big['hops_p99']}", big["correct_fraction"],
                big["virtual_seconds"], big["wall_seconds"], big["max_rss_mib"]]]),
        "",
        f"The same run from the command line: `{big['command']}`. The ring is formed by "
        "joins: one node founds it, then waves of concurrent joins through random members, "
        "each wave at most as large as the ring, the next one once every successor pointer "
        "is right, and after the last wave until the ring is ideal (every successor list "
        "full and right, every predecessor right); Zave's invariants are checked after "
        "every wave. A newcomer takes its "
        "successor's fingers as hints and confirms each with one call; r = 2·log2 N = 28, "
        "stabilization every 1 s, 1,000 lookups in flight.",
        "",
        "## Path length vs N (r = 8, stable ring, 10,000 lookups per size)",
        "",
        table(["N", "mean", "1st pct", "99th pct", "½·log2 N", "correct"],
              [[r["nodes"], r["hops_mean"], r["hops_p1"], r["hops_p99"],
                round(0.5 * math.log2(r["nodes"]), 2), r["correct_fraction"]] for r in paths]),
        "",
        f"![path length]({images[0]})",
        "",
        "## Simultaneous failures, stabilization stopped (N = 1000, r = 2·log2 N = 20)",
        "",
        "Chord paper (ToN 2003): at 50% failed, mean path 5.09 hops, 5.1 timeouts per lookup, "
        "every lookup correct. Here a node forgets a dead node after one timeout, for all its "
        "later lookups, so timeouts depend on how many lookups are in flight (1,000 here; "
        "with 200 at a time, 0.45 per lookup at 50%).",
        "",
        table(["failed", "hops mean", "1st/99th pct", "timeouts/lookup", "correct fraction",
               "failed lookups"],
              [[f"{int(100 * r['fail_fraction'])}%", r["hops_mean"],
                f"{r['hops_p1']}/{r['hops_p99']}", r["timeouts_mean"], r["correct_fraction"],
                r["failed_lookups"]] for r in fails]),
        "",
        f"![failures]({images[1]})",
        "",
        "## Churn (N ≈ 1000, stabilization every 30 s, joins and crashes half each)",
        "",
        "Chord paper: 1.5 events per period → 0 failed lookups per 10,000; 12 per period → 15.",
        "",
        table(["events per period", "joins", "crashes", "lookups", "failed per 10,000"],
              [[r["rate_per_period"], r["joins"], r["crashes"], r["lookups"],
                r["failed_per_10000"]] for r in churns]),
        "",
        "## Scribe (pair latencies 10-100 ms; group sizes log-spaced)",
        "",
        "Rows: 2,000 nodes with 50 groups of 10..1,000 members, without and with 20% of the "
        "forwarders crashing during traffic; then the full size, 10,000 nodes with 100 groups "
        "of 10..5,000 members (82,031 members), without and with 20% of the forwarders "
        "crashing. Multicast parent timeout 30 s (children refresh every ~10 s).",
        "",
        "Delay is from the root's stamp to delivery; the stamp comes before the root copies "
        "the message to its replicas, so every delay includes that round trip (the price of "
        "gap-free root failover). Delay penalty = delay / direct unicast latency root→member. "
        "Delivered = distinct expected messages that arrived / expected, over live members. "
        "Children per tree node in one group is the uplink stress: the copies of one "
        "message a node sends (a root sending to every member itself would send as many as "
        "the group has members, up to 5,000). Node stress, as in the Scribe paper: "
        "children-table entries per node over all groups, every node counted.",
        "",
        table(["nodes", "groups", "members", "forwarders crashed", "exactly-once in order",
               "delivered", "depth mean/max",
               "children mean/max", "node stress mean/max", "msgs per delivery",
               "delay p50/p99 ms", "delay penalty", "settle s"],
              [[r["nodes"], r["groups"], r["members"], r["crashed_forwarders"],
                r["exactly_once_in_order_fraction"], r.get("delivered_fraction", "-"),
                f"{r['depth_mean']}/{r['depth_max']}", f"{r['stress_mean']}/{r['stress_max']}",
                _node_stress(r), r["messages_per_delivery"],
                f"{r['delay_p50_ms']}/{r['delay_p99_ms']}",
                r["delay_penalty_mean"], r["settle_seconds"]] for r in scribes]),
        "",
        *_before_after(data),
        "### Tree repair after forwarder crashes",
        "",
        "Per subtree cut off by a crash (a live tree node whose parent crashed): the time "
        "from the crash until that node has a path of live tree nodes up to the root again "
        "(none of them re-joining), sampled every 0.1 virtual seconds. Detection waits for "
        "the next refresh to the parent (every ~10 s). A JOIN stops at the first tree node "
        "it meets, which may sit in a branch that is itself still cut off, so a subtree can "
        "wait for a second branch to notice.",
        "",
        "A member below a cut misses what was sent meanwhile. On re-attaching it fetches "
        "the gap up to the position the JOIN's stopping node reported, from its new parent "
        "or the root's archive, and passes it down its subtree; anything later that it "
        "still lacks it learns from its parent's answer to the next refresh. Nothing is "
        "lost: every live member ends with every message exactly once, in order. A shorter "
        "parent timeout repairs faster at the price of more refresh traffic (`chordcast sim "
        "mcast --parent-timeout`).",
        "",
        table(["nodes", "groups", "forwarders crashed", "subtrees cut off", "never repaired",
               "repair p50 s", "repair p99 s", "repair max s"],
              [[r["nodes"], r["groups"], r["crashed_forwarders"], r["orphaned_subtrees"],
                r["unrepaired_subtrees"], r["repair_p50_s"], r["repair_p99_s"],
                r["repair_max_s"]] for r in scribes if r["crashed_forwarders"]]),
        "",
        "## Reproducing",
        "",
        "Each section names the commit that produced it (`+changes`: the working tree had "
        "protocol changes not yet committed): "
        + ", ".join(f"{k} `{v}`" for k, v in data["code"].items())
        + ". Commits after a section's own only touch code that section does not run. Long "
        "sections can run in parallel from the command line and be merged with "
        "`python -m bench.sim_report --sections '' --merge SECTION=FILE`.",
        "",
    ]
    (DOCS / "simulation.md").write_text("\n".join(md))
    log(f"wrote {DOCS / 'simulation.md'}")


if __name__ == "__main__":
    main()
