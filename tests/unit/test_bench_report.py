"""The bench summary: same-round ratios, targets marked met or missed, peaks, table and JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console

from lab.bench.report import summarise, table, write_json
from lab.bench.runner import BenchOptions, BenchRun, Sample
from lab.bench.worker import CaseClock

if TYPE_CHECKING:
    from pathlib import Path

RATES = {
    "raw-batch": (8000.0, 10000.0),
    "raw-single": (900.0, 1000.0),
    "faststream-batch": (6000.0, 7000.0),
    "faststream-single": (600.0, 700.0),
    "hub": (4800.0, 3000.0),
    "replay": (4500.0, 3000.0),
    "dlq-replay": (9000.0, 12000.0),
    "kafka-perf": (40000.0, 44000.0),
}


def e2e(rate: float, p99_ms: float) -> dict[str, Any]:
    return {
        "offered_rate": rate,
        "achieved_rate": rate,
        "duration_s": 60.0,
        "sent": int(rate * 60),
        "received": int(rate * 60) - 5,
        "in_time": int(rate * 50),
        "deadline_ms": 1000.0,
        "p50_ms": 20.0,
        "p95_ms": 80.0,
        "p99_ms": p99_ms,
        "max_ms": p99_ms * 2,
    }


def a_run() -> BenchRun:
    run = BenchRun(BenchOptions(rounds=2), "127.0.0.1:9092", broker_started_here=True)
    for variant, rates in RATES.items():
        for round_, rate in enumerate(rates):
            result: dict[str, Any] = {"variant": variant, "rate": rate, "complete": True}
            if variant == "kafka-perf":
                result |= {"mb_per_s": 40.0, "p50_ms": 3.0, "p95_ms": 9.0, "p99_ms": 20.0}
            if variant == "dlq-replay":
                result["cpu_us_per_letter"] = 90.0 + round_ * 20
            service = variant in {"hub", "replay"}
            run.samples.append(
                Sample(variant, round_, result, 120.0 if service else 70.0, service=service)
            )
    run.samples.append(Sample("e2e", 0, e2e(200, 90.0), 80.0, {"intake": 100, "dispatch": 110}))
    run.samples.append(Sample("e2e", 1, e2e(1000, 4000.0), 85.0, {"intake": 140, "dispatch": 160}))
    run.broker_peak_rss_mb = 500.0
    return run


def test_ratios_are_taken_round_by_round_and_their_median_is_judged() -> None:
    summary = summarise(a_run())
    assert summary["ratios"]["hub_over_raw_batch"] == {"median": 0.45, "per_round": [0.6, 0.3]}
    assert summary["ratios"]["replay_over_hub"]["per_round"] == [0.938, 1.0]
    targets = summary["targets"]
    assert targets["hub_over_raw_batch"]["met"] is False
    assert targets["hub_over_faststream_batch"]["measured"] == 0.615  # median of 0.8, 0.429
    assert targets["hub_over_faststream_batch"]["met"] is False
    assert targets["replay_over_hub"]["met"] is True
    assert (targets["dlq_replay_rate"]["measured"], targets["dlq_replay_rate"]["met"]) == (
        10500.0,
        True,
    )
    # For context only: no target, so not among the targets.
    assert summary["info_ratios"]["dlq_replay_over_raw_batch"]["per_round"] == [1.125, 1.2]
    assert "dlq_replay_over_raw_batch" not in targets
    assert summary["variants"]["dlq-replay"]["cpu_us_per_letter"] == 100.0


def test_each_e2e_rate_and_every_service_process_has_its_target() -> None:
    summary = summarise(a_run())
    assert [entry["offered_rate"] for entry in summary["e2e"]] == [200, 1000]
    assert summary["e2e"][1]["peak_rss_mb"] == {"load": 85.0, "intake": 140, "dispatch": 160}
    targets = summary["targets"]
    assert targets["e2e_p99_ms@200"]["met"] is True
    # At 1,000/s the goal is a second, and every case in time.
    assert targets["e2e_p99_ms@1000"]["target"] == 1000.0
    assert targets["e2e_p99_ms@1000"]["met"] is False
    assert targets["e2e_in_time@1000"] == {
        "target": 60_000,
        "measured": 50_000,
        "met": False,
        "at_most": False,
    }
    assert "e2e_in_time@200" not in targets
    assert summary["service_peak_rss_mb"] == {
        "hub": 120.0,
        "replay": 120.0,
        "e2e@200 intake": 100,
        "e2e@200 dispatch": 110,
        "e2e@1000 intake": 140,
        "e2e@1000 dispatch": 160,
    }
    assert targets["service_peak_rss_mb"] == {
        "target": 150.0,
        "measured": 160,
        "met": False,
        "at_most": True,
    }


def test_a_variant_left_out_is_not_measured_rather_than_missed() -> None:
    run = a_run()
    run.samples = [s for s in run.samples if s.variant not in {"faststream-batch", "dlq-replay"}]
    summary = summarise(run)
    assert summary["ratios"]["hub_over_faststream_batch"] is None
    assert summary["targets"]["hub_over_faststream_batch"]["met"] is None
    assert summary["targets"]["dlq_replay_rate"]["met"] is None


def test_the_table_shows_every_row_and_the_json_holds_the_summary(tmp_path: Path) -> None:
    run = a_run()
    summary = summarise(run)
    console = Console(width=250, record=True)
    console.print(table(run, summary))
    text = console.export_text()
    for label in (
        "raw aiokafka, batches",
        "1 at a time (ref.)",
        "FastStream batch subscriber",
        "hub dlq replay",
        "e2e request -> pickup order @ 200/s",
        "e2e request -> pickup order @ 1,000/s",
        "target hub_over_raw_batch",
        "ratio dlq_replay_over_raw_batch",
        "CPU 100 us a letter",
        "MISSED",
        "met",
    ):
        assert label in text
    path = tmp_path / "results.json"
    write_json(run, summary, path)
    document = json.loads(path.read_text())
    assert document["summary"]["targets"]["replay_over_hub"]["met"] is True
    assert document["options"]["rates"] == [200.0, 1000.0]
    assert len(document["samples"]) == len(run.samples)


def ingress_result(closed_rate: float, p99_ms: float) -> dict[str, Any]:
    return {
        "variant": "ingress",
        "open": {
            "offered_rate": 1000.0,
            "sent": 20000,
            "achieved_rate": 990.0,
            "p50_ms": 4.0,
            "p95_ms": 12.0,
            "p99_ms": p99_ms,
            "max_ms": 90.0,
        },
        "closed": {
            "connections": 64,
            "answered": 30000,
            "rate": closed_rate,
            "p50_ms": 30.0,
            "p99_ms": 80.0,
        },
        "refused": {"503": 2},
        "requests": 50000,
        "ingress_cpu_us_per_request": 410.0,
        "ingress_peak_rss_mb": 95.0,
    }


def test_the_ingress_row_has_its_two_targets_and_its_process_is_a_service() -> None:
    run = a_run()
    run.samples.append(Sample("ingress", 0, ingress_result(1450.0, 61.5), 95.0, service=True))
    summary = summarise(run)
    targets = summary["targets"]
    assert targets["ingress_requests_per_s"]["measured"] == 1450.0
    assert targets["ingress_requests_per_s"]["met"] is True
    assert targets["ingress_p99_ms@1000"] == {
        "target": 50.0,
        "measured": 61.5,
        "met": False,
        "at_most": True,
    }
    assert summary["service_peak_rss_mb"]["ingress"] == 95.0
    console = Console(width=250, record=True)
    console.print(table(run, summary))
    text = console.export_text()
    assert "8 HTTP front door" in text
    assert "990 @ 1,000 offered, 2 refused" in text
    assert "p99 61.5" in text
    assert "CPU 410 us a request" in text


def test_without_an_ingress_sample_there_is_no_ingress_target() -> None:
    summary = summarise(a_run())
    assert summary["ingress"] is None
    assert not [name for name in summary["targets"] if name.startswith("ingress")]


def test_e2e_latency_splits_into_legs_at_each_hops_send() -> None:
    clock = CaseClock()
    for number in range(100):
        case = f"CASE-{number}"
        clock.scheduled[case] = 10.0
        clock.passed(case, 10.010)
        clock.passed(case, 10.500)  # a later output of the same case: not the first hop's send
        clock.seen(case, 10.052 + number / 1000, sent_at=10.050 + number / 1000)
    clock.scheduled["CASE-lost"] = 10.0  # never arrived: no legs of its own

    legs = clock.legs_ms([*clock.scheduled])

    assert legs["to_first_send"] == {"p50": 10.0, "p99": 10.0}
    assert legs["between_sends"] == {"p50": 89.0, "p99": 138.0}
    assert legs["to_arrival"] == {"p50": 2.0, "p99": 2.0}
