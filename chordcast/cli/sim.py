"""`chordcast sim ring|churn|mcast`: deterministic experiments in virtual time."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from typing import Any

from chordcast.cli.common import add_json_option, at_least, print_json, print_table
from chordcast.cli.progress import Report, progress_bars


def cmd_sim(args: argparse.Namespace) -> int:
    # Imported here: the simulator is not needed to run a node or a client command.
    from chord.sim import experiments

    with progress_bars(True if args.progress else None) as progress:
        try:
            result = experiments.run(experiment(args, progress))
        except experiments.InvariantViolation as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:  # (after the bars are gone)
        print_json(result)
    else:
        print_table(["figure", "value"], [[k, v] for k, v in result.items()])
    return 0


def experiment(args: argparse.Namespace, progress: Report | None
               ) -> Coroutine[Any, Any, dict[str, Any]]:
    from chord.sim import experiments
    from mcast import sim as mcast_sim

    if args.sim_command == "ring":
        return experiments.ring_experiment(
            args.nodes, args.seed, args.lookups, args.fail_fraction, args.successors,
            repair=not args.no_repair, stabilize=args.stabilize_interval,
            progress=progress, form=args.form, location_cache=args.location_cache)
    if args.sim_command == "churn":
        return experiments.churn_experiment(
            args.nodes, args.seed, args.rate, args.periods, args.lookups,
            location_cache=args.location_cache)
    sizes = [max(1, round(args.min_size * (args.max_size / args.min_size) **
                          (i / max(1, args.groups - 1)))) for i in range(args.groups)]
    return mcast_sim.mcast_experiment(
        args.nodes, args.seed, args.groups, sizes, args.messages, args.crash_fraction,
        progress=progress, parent_timeout=args.parent_timeout)


def register(sub: Any) -> None:
    sim = sub.add_parser("sim", help="deterministic simulation in virtual time")
    ssub = sim.add_subparsers(dest="sim_command", required=True)

    def sim_cmd(name: str, help: str) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = ssub.add_parser(name, help=help)
        c.add_argument("--nodes", type=at_least(int, 2), default=1000,
                       help="nodes in the simulated ring")
        c.add_argument("--seed", type=int, default=1,
                       help="the same seed gives the same run")
        add_json_option(c)
        c.add_argument("--progress", action="store_true",
                       help="progress on stderr even when it is not a terminal, as a line "
                       "every tenth of the way (default: bars on a terminal only)")
        c.set_defaults(func=cmd_sim)
        return c

    c = sim_cmd("ring", "build a ring, fail a fraction, repair, look up keys")
    c.add_argument("--lookups", type=at_least(int, 1), default=10_000,
                   help="lookups from random nodes to random keys")
    c.add_argument("--fail-fraction", type=float, default=0.0,
                   help="fraction of nodes that crash before the lookups")
    c.add_argument("--successors", type=at_least(int, 1), help="r (default 2*log2 N)")
    c.add_argument("--no-repair", action="store_true",
                   help="stop stabilization (the Chord paper's failure experiment)")
    c.add_argument("--stabilize-interval", type=at_least(float, 0.01), default=1.0,
                   help="virtual seconds between stabilization rounds")
    c.add_argument("--form", choices=["joins", "stable"], default="joins",
                   help="form the ring by joins (default) or start from the oracle's "
                        "stable base (faster; the Chord paper's setting)")
    cache_help = ("nodes each node's location cache holds for one-hop routing (default 0: "
                  "plain Chord, the paper's path lengths)")
    c.add_argument("--location-cache", type=at_least(int, 0), default=0, metavar="N",
                   help=cache_help)
    c = sim_cmd("churn", "Poisson joins and crashes while looking up keys")
    c.add_argument("--rate", type=float, default=1.0, help="events per stabilization period")
    c.add_argument("--periods", type=at_least(int, 1), default=10,
                   help="stabilization periods of churn")
    c.add_argument("--lookups", type=at_least(int, 50), default=2000,
                   help="lookups spread over the run")
    c.add_argument("--location-cache", type=at_least(int, 0), default=0, metavar="N",
                   help=cache_help)
    c = sim_cmd("mcast", "Scribe groups: tree shape, stress, delay penalty, repair")
    c.add_argument("--groups", type=at_least(int, 1), default=20, help="groups created")
    c.add_argument("--min-size", type=at_least(int, 1), default=10,
                   help="fewest members of a group")
    c.add_argument("--max-size", type=at_least(int, 1), default=100,
                   help="most members of a group")
    c.add_argument("--messages", type=at_least(int, 1), default=100,
                   help="messages sent to each group")
    c.add_argument("--crash-fraction", type=float, default=0.0,
                   help="fraction of nodes that crash while messages flow")
    c.add_argument("--parent-timeout", type=at_least(float, 0.1), default=30.0,
                   help="multicast soft-state timeout; children refresh every third of it, "
                        "which bounds how fast a crashed forwarder is noticed")
