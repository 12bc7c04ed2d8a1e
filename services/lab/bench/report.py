"""The bench figures: a summary (medians over rounds, same-round ratios), a table and JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.table import Table

from lab.bench.runner import ROTATION, BenchRun, machine

if TYPE_CHECKING:
    from pathlib import Path

TARGETS = {
    "hub_over_raw": 0.6,
    "hub_over_faststream": 0.9,
    "e2e_p99_ms": 150.0,
    "replay_rate": 5000.0,
}
LABELS = {
    "raw": "1 raw aiokafka passthrough",
    "faststream": "2 bare FastStream passthrough",
    "hub": "3 hub hop (intake via ServiceRuntime)",
    "replay": "5 replay topic -> group (kernel path)",
    "kafka-perf": "6 Kafka ProducerPerformance (ref.)",
}


def _rates(run: BenchRun, variant: str) -> dict[int, float]:
    return {s.round: float(s.result["rate"]) for s in run.samples if s.variant == variant}


def _ratio(run: BenchRun, over: str) -> dict[str, Any] | None:
    """hub/`over` per round (same round, so machine drift cancels), and their median."""
    hub, base = _rates(run, "hub"), _rates(run, over)
    per_round = [hub[r] / base[r] for r in sorted(hub) if base.get(r)]
    if not per_round:
        return None
    return {"median": round(statistics.median(per_round), 3), "per_round": per_round}


def summarise(run: BenchRun) -> dict[str, Any]:
    """Medians, spreads and peaks per variant, the ratios, latency, and targets."""
    variants: dict[str, Any] = {}
    for variant in ROTATION:
        samples = [s for s in run.samples if s.variant == variant]
        if not samples:
            continue
        rates = [float(s.result["rate"]) for s in samples]
        entry: dict[str, Any] = {
            "rate_median": round(statistics.median(rates), 1),
            "rate_min": min(rates),
            "rate_max": max(rates),
            "peak_rss_mb": max(s.peak_rss_mb for s in samples),
            "complete": all(s.result.get("complete", True) for s in samples),
        }
        if variant == "kafka-perf":
            entry |= {
                key: statistics.median(float(s.result[key]) for s in samples)
                for key in ("mb_per_s", "p50_ms", "p95_ms", "p99_ms")
            }
        variants[variant] = entry
    e2e = next((s for s in run.samples if s.variant == "e2e"), None)
    summary: dict[str, Any] = {
        "variants": variants,
        "hub_over_raw": _ratio(run, "raw"),
        "hub_over_faststream": _ratio(run, "faststream"),
        "e2e": {**e2e.result, "peak_rss_mb": {"load": e2e.peak_rss_mb, **e2e.processes}}
        if e2e
        else None,
        "broker_peak_rss_mb": run.broker_peak_rss_mb,
    }
    summary["targets"] = _targets(summary)
    return summary


def _targets(summary: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, float | None] = {
        "hub_over_raw": (summary["hub_over_raw"] or {}).get("median"),
        "hub_over_faststream": (summary["hub_over_faststream"] or {}).get("median"),
        "e2e_p99_ms": (summary["e2e"] or {}).get("p99_ms"),
        "replay_rate": summary["variants"].get("replay", {}).get("rate_median"),
    }
    targets: dict[str, Any] = {}
    for name, goal in TARGETS.items():
        value = found[name]
        met = None if value is None else (value < goal if name == "e2e_p99_ms" else value >= goal)
        targets[name] = {"target": goal, "measured": value, "met": met}
    return targets


def table(run: BenchRun, summary: dict[str, Any]) -> Table:
    """The figures as one table for the terminal."""
    rounds = run.options.rounds
    grid = Table(
        title=f"hub bench: {rounds} round(s) x {run.options.count} records of "
        f"{run.record_bytes} B, broker {run.broker}",
        title_justify="left",
    )
    for column in ("variant", "msg/s (median)", "min..max", "latency", "peak RSS MiB"):
        grid.add_column(column, justify="left" if column in {"variant", "latency"} else "right")
    for variant, entry in summary["variants"].items():
        latency = ""
        if variant == "kafka-perf":
            latency = " / ".join(f"{p} {entry[f'{p}_ms']:.0f}" for p in ("p50", "p95", "p99"))
            latency += " ms"
        grid.add_row(
            LABELS[variant] + ("" if entry["complete"] else " (INCOMPLETE)"),
            f"{entry['rate_median']:,.0f}",
            f"{entry['rate_min']:,.0f}..{entry['rate_max']:,.0f}",
            latency,
            f"{entry['peak_rss_mb']:.0f}",
        )
    if (e2e := summary["e2e"]) is not None:
        rss = ", ".join(f"{name} {value:.0f}" for name, value in e2e["peak_rss_mb"].items())
        grid.add_row(
            f"4 e2e request -> pickup order @ {e2e['offered_rate']:.0f}/s",
            f"{e2e['achieved_rate']:,.0f}",
            f"{e2e['received']}/{e2e['sent']} in time",
            f"p50 {e2e['p50_ms']:.0f} / p95 {e2e['p95_ms']:.0f} / p99 {e2e['p99_ms']:.0f} "
            f"/ max {e2e['max_ms']:.0f} ms",
            rss,
        )
    if summary["broker_peak_rss_mb"] is not None:
        grid.add_row("Kafka broker (JVM)", "", "", "", f"{summary['broker_peak_rss_mb']:.0f}")
    grid.add_section()
    for name, target in summary["targets"].items():
        mark = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        measured = target["measured"]
        grid.add_row(
            f"target {name}",
            "" if measured is None else f"{measured:,.3g}",
            f"{'<' if name == 'e2e_p99_ms' else '>='} {target['target']:,}",
            mark,
            "",
        )
    return grid


def write_json(run: BenchRun, summary: dict[str, Any], path: Path) -> None:
    """Every sample and the summary, for scripts and for comparing runs."""
    document = {
        "machine": machine(),
        "broker": {"bootstrap": run.broker, "started_here": run.broker_started_here},
        "options": {**asdict(run.options), "skip": sorted(run.options.skip)},
        "record_bytes": run.record_bytes,
        "started_at": run.started_at,
        "notes": {
            "commit_policy": "variants 1-3 and 5: one record at a time, produce with acks=all "
            "and enable_idempotence, wait for the ack, then commit offset+1",
            "replay": "`hub dlq replay` does not exist yet: variant 5 measures the kernel's "
            "replay path, dead-letter records (with x-hub-origin-*, x-hub-error-*, "
            "x-hub-replay-* headers) preloaded on `<group>.replay` and processed by the group",
            "e2e_latency": "from the scheduled send time of a storefront request to the arrival "
            "of its pickup order on courier.<code>.pickup-orders (no coordinated omission)",
        },
        "summary": summary,
        "samples": [asdict(sample) for sample in run.samples],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
