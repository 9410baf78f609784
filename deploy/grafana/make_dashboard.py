"""Writes deploy/grafana/dashboards/chordcast.json (run: python deploy/grafana/make_dashboard.py).

Kept as code so every panel is built the same way; tests/chordcast/deploy checks every query
against a real Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "chordcast-prometheus"}
RI = "$__rate_interval"


def rate(metric: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({metric}[{RI}]))"


def quantile(q: float, metric: str, by: str = "") -> str:
    extra = f", {by}" if by else ""
    return f"histogram_quantile({q}, sum by (le{extra}) (rate({metric}_bucket[{RI}])))"


PANELS: list[tuple[str, str, str, list[tuple[str, str]], str]] = [
    # title, description, type, [(expr, legend)], unit
    ("Lookup hops (distribution)", "How many overlay hops lookups take, all nodes.",
     "bargauge", [(f"sum by (le) (increase(chordcast_lookup_hops_bucket[{RI}]))", "≤ {{le}}")],
     "none"),
    ("Mean hops vs log2 N", "Mean hops per lookup next to ½·log2 N (the Chord paper's figure), "
     "with N from the nodes' ring-size estimates.", "timeseries",
     [(f"{rate('chordcast_lookup_hops_sum')} / {rate('chordcast_lookup_hops_count')}",
       "mean hops"),
      ("0.5 * log2(max(chordcast_ring_size_estimate))", "½·log2 N")], "none"),
    ("Lookup latency", "Time from starting a lookup to the owner's answer.", "timeseries",
     [(quantile(0.5, "chordcast_lookup_duration_seconds"), "p50"),
      (quantile(0.99, "chordcast_lookup_duration_seconds"), "p99")], "s"),
    ("Lookup failures", "Failed lookups per second, by reason.", "timeseries",
     [(rate("chordcast_lookup_failures_total", "reason"), "{{reason}}")], "ops"),
    ("RPC latency p99 by method", "Client-side gRPC latency per method.", "timeseries",
     [(quantile(0.99, "chordcast_rpc_duration_seconds", "method") .replace(
         "_bucket[", "_bucket{side=\"client\"}["), "{{method}}")], "s"),
    ("RPC error ratio by method", "Share of calls ending in an error, client and server.",
     "timeseries",
     [(f"({rate('chordcast_rpc_errors_total', 'method')} or "
       f"{rate('chordcast_rpc_duration_seconds_count', 'method')} * 0) / "
       f"{rate('chordcast_rpc_duration_seconds_count', 'method')}", "{{method}}")],
     "percentunit"),
    ("RPC timeouts", "Outgoing calls whose deadline expired.", "timeseries",
     [(f"({rate('chordcast_rpc_timeouts_total', 'method')} or "
       f"{rate('chordcast_rpc_duration_seconds_count', 'method')} * 0)", "{{method}}")],
     "ops"),
    ("Ring size", "Nodes reporting, and the largest ring-size estimate.", "timeseries",
     [("count(chordcast_successors)", "nodes scraped"),
      ("max(chordcast_ring_size_estimate)", "estimate")], "none"),
    ("Ring repairs", "Dead nodes dropped from ring state per second, by pointer kind.",
     "timeseries", [(rate("chordcast_ring_repairs_total", "pointer"), "{{pointer}}")], "ops"),
    ("Ring health", "Successor lists filled, predecessors known, stabilization rate.",
     "timeseries",
     [("min(chordcast_successors / chordcast_successors_wanted)", "min successor list fill"),
      ("sum(chordcast_predecessor_known) / count(chordcast_predecessor_known)",
       "predecessor known"),
      (rate("chordcast_stabilize_rounds_total"), "stabilize rounds/s")], "none"),
    ("Correct fingers (sampled)", "Share of fingers that fix_fingers found pointing at the "
     "right node.", "timeseries",
     [(f"{rate('chordcast_fingers_correct_total')} / {rate('chordcast_fingers_checked_total')}",
       "correct")], "percentunit"),
    ("Stored keys", "Items owned, copies held for others, and bytes.", "timeseries",
     [("sum(chordcast_keys)", "owned"), ("sum(chordcast_replica_keys)", "replicas"),
      ("sum(chordcast_stored_bytes)", "bytes")], "none"),
    ("Multicast throughput", "Messages stamped by roots, forwarded down trees and delivered "
     "to members, per second.", "timeseries",
     [(rate("chordcast_mcast_messages_total", "event"), "{{event}}")], "ops"),
    ("Multicast delivery latency", "From the root's stamp to delivery to a member.",
     "timeseries",
     [(quantile(0.5, "chordcast_mcast_delivery_latency_seconds"), "p50"),
      (quantile(0.99, "chordcast_mcast_delivery_latency_seconds"), "p99")], "s"),
    ("Tree stress", "Children per node (all groups, and the most in one group), and groups "
     "by role.", "timeseries",
     [("max(chordcast_mcast_children_max)", "max children in a group"),
      ("max(chordcast_mcast_children)", "max children on a node"),
      ("sum by (role) (chordcast_mcast_groups)", "{{role}}")], "none"),
    ("Gaps and tree repairs", "Stream holes repaired or lost, and re-joins after a parent "
     "failed.", "timeseries",
     [(rate("chordcast_mcast_gaps_total", "outcome"), "gaps {{outcome}}"),
      (rate("chordcast_mcast_tree_repairs_total"), "tree repairs")], "ops"),
    ("Discovery", "Discovery packets received, answered and dropped (by reason).",
     "timeseries",
     [(rate("chordcast_discovery_packets_received_total"), "received"),
      (rate("chordcast_discovery_packets_answered_total"), "answered"),
      (rate("chordcast_discovery_packets_dropped_total", "reason"), "dropped {{reason}}")],
     "pps"),
]


def build() -> dict[str, object]:
    panels = []
    for i, (title, desc, kind, targets, unit) in enumerate(PANELS):
        panels.append({
            "id": i + 1,
            "type": kind,
            "title": title,
            "description": desc,
            "datasource": DS,
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"refId": chr(65 + j), "datasource": DS, "expr": expr,
                         "legendFormat": legend} for j, (expr, legend) in enumerate(targets)],
        })
    return {
        "uid": "chordcast",
        "title": "chordcast",
        "tags": ["chordcast", "chord", "multicast"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "panels": panels,
        "templating": {"list": []},
        "annotations": {"list": []},
    }


if __name__ == "__main__":
    out = Path(__file__).parent / "dashboards" / "chordcast.json"
    out.write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
