"""The bench figures: a summary (medians over rounds, same-round ratios), a table and JSON."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.table import Table

from lab.bench.runner import ROTATION, BenchRun, Sample, machine

if TYPE_CHECKING:
    from pathlib import Path

RATIOS: dict[str, tuple[str, str, float]] = {
    "hub_over_raw_batch": ("hub", "raw-batch", 0.5),
    "hub_over_faststream_batch": ("hub", "faststream-batch", 0.9),
    "replay_over_hub": ("replay", "hub", 0.9),
}
"""name: (numerator, denominator, target): same-round ratios of two variants' rates."""
INFO_RATIOS: dict[str, tuple[str, str]] = {
    "dlq_replay_over_raw_batch": ("dlq-replay", "raw-batch"),
}
"""Ratios shown for context, with no target: a replay reads each letter twice, sends it once."""
DLQ_REPLAY_TARGET = 10_000.0
"""Letters a second `hub dlq replay` sends with no --rate."""
E2E_P99_TARGET_MS = 150.0
"""p99 from storefront request to pickup order, at the lower offered rates."""
E2E_HIGH_RATE = 1000.0
E2E_P99_AT_HIGH_RATE_MS = 1000.0
"""At `E2E_HIGH_RATE` cases a second and above: p99 under a second, and every case in time."""
INGRESS_RATE_TARGET = 1000.0
"""Requests a second `hub run ingress` answers 202 (closed loop)."""
INGRESS_P99_TARGET_MS = 50.0
"""p99 of a request at the offered rate (open loop), from its scheduled send time."""
SERVICE_RSS_TARGET_MB = 150.0
"""Peak RSS of each process that runs a service (hub and replay workers, e2e intake/dispatch)."""
LABELS = {
    "raw-batch": "1 raw aiokafka, batches (client's limit)",
    "raw-single": "1r raw aiokafka, 1 at a time (ref.)",
    "faststream-batch": "2 bare FastStream batch subscriber",
    "faststream-single": "2r bare FastStream, 1 at a time (ref.)",
    "hub": "3 hub hop (intake via ServiceRuntime)",
    "replay": "5 replay topic -> group (kernel path)",
    "dlq-replay": "7 `hub dlq replay` sending (letters/s)",
    "kafka-perf": "6 Kafka ProducerPerformance (ref.)",
}
E2E_SERVICES = ("intake", "dispatch")
RATIO_LIKE = 10.0


def _rates(run: BenchRun, variant: str) -> dict[int, float]:
    return {s.round: float(s.result["rate"]) for s in run.samples if s.variant == variant}


def _ratio(run: BenchRun, numerator: str, denominator: str) -> dict[str, Any] | None:
    """numerator/denominator per round (same round, so machine drift cancels), and the median."""
    top, base = _rates(run, numerator), _rates(run, denominator)
    per_round = [round(top[r] / base[r], 3) for r in sorted(top) if base.get(r)]
    if not per_round:
        return None
    return {"median": round(statistics.median(per_round), 3), "per_round": per_round}


def _service_peaks(samples: list[Sample]) -> dict[str, float]:
    """Peak RSS of every process that ran a service, by name."""
    peaks: dict[str, float] = {}
    for sample in samples:
        if sample.service and sample.variant == "ingress":
            peaks["ingress"] = sample.peak_rss_mb
        elif sample.service:
            name = sample.variant
            peaks[name] = max(peaks.get(name, 0.0), sample.peak_rss_mb)
        if sample.variant == "e2e":
            rate = f"{float(sample.result['offered_rate']):g}"
            for service in E2E_SERVICES:
                if service in sample.processes:
                    peaks[f"e2e@{rate} {service}"] = sample.processes[service]
    return peaks


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
        if variant == "dlq-replay":
            entry["cpu_us_per_letter"] = statistics.median(
                float(s.result.get("cpu_us_per_letter", math.nan)) for s in samples
            )
        variants[variant] = entry
    e2e = [
        {**s.result, "peak_rss_mb": {"load": s.peak_rss_mb, **s.processes}}
        for s in run.samples
        if s.variant == "e2e"
    ]
    summary: dict[str, Any] = {
        "variants": variants,
        "ratios": {
            name: _ratio(run, numerator, denominator)
            for name, (numerator, denominator, _) in RATIOS.items()
        },
        "info_ratios": {
            name: _ratio(run, numerator, denominator)
            for name, (numerator, denominator) in INFO_RATIOS.items()
        },
        "e2e": e2e,
        "ingress": next((s.result for s in run.samples if s.variant == "ingress"), None),
        "service_peak_rss_mb": _service_peaks(run.samples),
        "broker_peak_rss_mb": run.broker_peak_rss_mb,
    }
    summary["targets"] = _targets(summary)
    return summary


def _target(goal: float, measured: float | None, *, at_most: bool = False) -> dict[str, Any]:
    met = None if measured is None else (measured <= goal if at_most else measured >= goal)
    return {"target": goal, "measured": measured, "met": met, "at_most": at_most}


def _targets(summary: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, Any] = {
        name: _target(goal, (summary["ratios"][name] or {}).get("median"))
        for name, (_, _, goal) in RATIOS.items()
    }
    targets["dlq_replay_rate"] = _target(
        DLQ_REPLAY_TARGET, summary["variants"].get("dlq-replay", {}).get("rate_median")
    )
    for entry in summary["e2e"]:
        rate = entry["offered_rate"]
        high = rate >= E2E_HIGH_RATE
        goal = E2E_P99_AT_HIGH_RATE_MS if high else E2E_P99_TARGET_MS
        targets[f"e2e_p99_ms@{rate:g}"] = _target(goal, entry["p99_ms"], at_most=True)
        if high:
            targets[f"e2e_in_time@{rate:g}"] = _target(entry["sent"], entry["in_time"])
    ingress = summary["ingress"]
    if ingress is not None:
        targets["ingress_requests_per_s"] = _target(INGRESS_RATE_TARGET, ingress["closed"]["rate"])
        targets[f"ingress_p99_ms@{ingress['open']['offered_rate']:g}"] = _target(
            INGRESS_P99_TARGET_MS, ingress["open"]["p99_ms"], at_most=True
        )
    peaks: dict[str, float] = summary["service_peak_rss_mb"]
    targets["service_peak_rss_mb"] = _target(
        SERVICE_RSS_TARGET_MB, max(peaks.values()) if peaks else None, at_most=True
    )
    return targets


def _figure(value: float | None) -> str:
    """A ratio with 3 significant digits, a rate or a size in whole units."""
    if value is None:
        return ""
    return f"{value:.3g}" if abs(value) < RATIO_LIKE else f"{value:,.0f}"


def _e2e_row(grid: Table, e2e: dict[str, Any]) -> None:
    rss = ", ".join(f"{name} {value:.0f}" for name, value in e2e["peak_rss_mb"].items())
    grid.add_row(
        f"4 e2e request -> pickup order @ {e2e['offered_rate']:,.0f}/s",
        f"{e2e['achieved_rate']:,.0f}",
        f"{e2e['received']}/{e2e['sent']} arrived, "
        f"{e2e['in_time']} <= {e2e['deadline_ms']:,.0f} ms",
        f"p50 {e2e['p50_ms']:,.0f} / p95 {e2e['p95_ms']:,.0f} / p99 {e2e['p99_ms']:,.0f} "
        f"/ max {e2e['max_ms']:,.0f} ms",
        rss,
    )
    if legs := e2e.get("legs_ms"):
        grid.add_row(
            "  its legs (p50 / p99 ms)",
            "",
            "",
            "; ".join(
                f"{leg.replace('_', ' ')} {v['p50']:,.0f} / {v['p99']:,.0f}"
                for leg, v in legs.items()
            ),
            "",
        )


def _ingress_row(grid: Table, ingress: dict[str, Any]) -> None:
    opened, closed = ingress["open"], ingress["closed"]
    refused = sum(ingress["refused"].values())
    grid.add_row(
        "8 HTTP front door (`hub run ingress`), requests/s",
        f"{closed['rate']:,.0f}",
        f"{opened['achieved_rate']:,.0f} @ {opened['offered_rate']:,.0f} offered"
        + (f", {refused} refused" if refused else "")
        + (f", {ingress['resent']} sent again" if ingress.get("resent") else ""),
        f"p50 {opened['p50_ms']:,.1f} / p95 {opened['p95_ms']:,.1f} / p99 {opened['p99_ms']:,.1f}"
        f" / max {opened['max_ms']:,.0f} ms; CPU {ingress['ingress_cpu_us_per_request']:,.0f} us"
        " a request",
        f"{ingress['ingress_peak_rss_mb']:.0f}",
    )


def _variant_rows(grid: Table, variants: dict[str, Any]) -> None:
    for variant, entry in variants.items():
        latency = ""
        if variant == "kafka-perf":
            latency = " / ".join(f"{p} {entry[f'{p}_ms']:.0f}" for p in ("p50", "p95", "p99"))
            latency += " ms"
        if variant == "dlq-replay":
            latency = f"CPU {entry['cpu_us_per_letter']:.0f} us a letter"
        grid.add_row(
            LABELS[variant] + ("" if entry["complete"] else " (INCOMPLETE)"),
            f"{entry['rate_median']:,.0f}",
            f"{entry['rate_min']:,.0f}..{entry['rate_max']:,.0f}",
            latency,
            f"{entry['peak_rss_mb']:.0f}",
        )


def table(run: BenchRun, summary: dict[str, Any]) -> Table:
    """The figures as one table for the terminal."""
    rounds = run.options.rounds
    grid = Table(
        title=f"hub bench: {rounds} round(s) x {run.options.count} records of "
        f"{run.record_bytes} B (batches of <= {run.options.max_records}), "
        f"{run.options.dlq_letters} dead letters, broker {run.broker}",
        title_justify="left",
    )
    for column in ("variant", "msg/s (median)", "min..max", "latency", "peak RSS MiB"):
        grid.add_column(
            column,
            justify="left" if column in {"variant", "latency"} else "right",
            no_wrap=column == "variant",
        )
    _variant_rows(grid, summary["variants"])
    for e2e in summary["e2e"]:
        _e2e_row(grid, e2e)
    if summary["ingress"] is not None:
        _ingress_row(grid, summary["ingress"])
    if summary["broker_peak_rss_mb"] is not None:
        grid.add_row("Kafka broker (JVM)", "", "", "", f"{summary['broker_peak_rss_mb']:.0f}")
    grid.add_section()
    for name, ratio in summary["info_ratios"].items():
        if ratio is not None:
            grid.add_row(
                f"ratio {name}", _figure(ratio["median"]), "", f"per round {ratio['per_round']}", ""
            )
    for name, target in summary["targets"].items():
        mark = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        measured = target["measured"]
        ratio = summary["ratios"].get(name)
        grid.add_row(
            f"target {name}",
            _figure(measured),
            f"{'<=' if target['at_most'] else '>='} {target['target']:,}",
            mark + (f" (per round {ratio['per_round']})" if ratio else ""),
            "",
        )
    return grid


def write_json(run: BenchRun, summary: dict[str, Any], path: Path) -> None:
    """Every sample and the summary, for scripts and for comparing runs."""
    document = {
        "machine": machine(),
        "broker": {"bootstrap": run.broker, "started_here": run.broker_started_here},
        "options": {
            **asdict(run.options),
            "skip": sorted(run.options.skip),
            "profile": sorted(run.options.profile),
        },
        "record_bytes": run.record_bytes,
        "started_at": run.started_at,
        "notes": {
            "raw-batch": "getmany(max_records), every output sent, then every ack awaited "
            "(acks=all, enable_idempotence), then one commit: per partition highest offset + 1",
            "faststream-batch": "broker.subscriber(batch=True, max_records, AckPolicy.MANUAL): "
            "publisher.publish(no_confirm=True) per record, the futures awaited together, then "
            "message.ack() (one commit of the consumer's positions)",
            "single": "raw-single and faststream-single: one record at a time, produce, wait "
            "for the ack, commit offset+1 (references)",
            "hub_timing": "hub and replay are timed through ServiceRuntime's public API only: "
            "from the first handler call to the moment the group's committed offsets cover every "
            "record (admin client, polled every 2 ms once each record reached a handler)",
            "replay": "variant 5 measures the kernel's replay path: dead-letter records "
            "(x-hub-origin-*, x-hub-error-*, x-hub-replay-* headers) preloaded on "
            "`<group>.replay` and processed by the group",
            "dlq-replay": "Ops.plan_replay + Ops.replay, as `hub dlq replay --group G` (no "
            "--rate) runs them: the scan of the dead-letter topic (a second one when the letters "
            "outgrow HUB_REPLAY_MEMORY_MB), the sends, every "
            "checkpoint and the audit event; the producer is connected before the clock starts",
            "e2e_latency": "from the scheduled send time of a storefront request to the arrival "
            "of its pickup order on courier.<code>.pickup-orders (no coordinated omission); "
            "fresh intake and dispatch processes for each rate",
            "ingress": "`hub run ingress` as deployed (its own process, fresh SQLite store, "
            "production logging); binary-mode storefront requests over kept-alive aiohttp "
            "connections, each a new ce-id: an open-loop phase at the offered rate (latency "
            "from the scheduled send time to the 202), then a closed loop of N clients (the "
            "most it answers a second); CPU per request from /proc over both phases",
        },
        "summary": summary,
        "samples": [asdict(sample) for sample in run.samples],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
