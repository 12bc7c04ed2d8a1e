"""The soak's verdict: flat memory after the warm-up, lag back to zero soon after the load."""

from __future__ import annotations

from lab.soak import SoakPlan, SoakReport


def _report(end_rss: float, lag: list[tuple[float, int]]) -> SoakReport:
    report = SoakReport(plan=SoakPlan(), cases=100, offered_seconds=10.0, load_stopped_at=100.0)
    report.peak_rss_after_warm_up_mib = {"intake#0": 100.0, "dispatch#0": 100.0}
    report.peak_rss_at_end_mib = {"intake#0": 105.0, "dispatch#0": end_rss}
    report.lag = lag
    return report


def test_memory_within_a_tenth_and_lag_gone_in_time_passes() -> None:
    report = _report(110.0, [(50.0, 900), (101.0, 40), (104.5, 0)])

    assert report.passed
    assert report.max_lag == 900
    assert report.caught_up_after_s == 4.5
    assert "verdict               PASS" in report.lines()[-1]


def test_a_process_whose_peak_grew_more_than_a_tenth_fails() -> None:
    report = _report(111.0, [(101.0, 0)])

    assert not report.passed
    assert any(line.startswith("dispatch#0") and "+11.0%" in line for line in report.lines())


def test_lag_that_reaches_zero_late_or_never_fails() -> None:
    assert not _report(100.0, [(101.0, 5), (111.0, 0)]).passed
    never = _report(100.0, [(101.0, 5)])
    assert never.caught_up_after_s is None
    assert any(line.startswith("lag back to zero      never") for line in never.lines())
