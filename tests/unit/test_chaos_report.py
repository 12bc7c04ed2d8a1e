"""What the fault suite's report says about cases that never ended."""

from pathlib import Path

from lab.chaos import LAST_WORDS, ChaosReport, last_words


def test_the_last_log_lines_naming_a_case_that_never_ended_are_quoted(tmp_path: Path) -> None:
    (tmp_path / "dispatch#0.log").write_text(
        "".join(f'{{"event": "message_handled", "case_id": "AS1", "n": {n}}}\n' for n in range(9))
        + '{"event": "message_handled", "case_id": "AS2"}\n'
    )
    (tmp_path / "repair#0.log").write_text('{"event": "message_parked", "case_id": "AS1"}\n')

    quoted = last_words(tmp_path, ["AS1"])

    assert len(quoted) == LAST_WORDS
    assert quoted[-1] == '  repair#0: {"event": "message_parked", "case_id": "AS1"}'
    assert all("AS1" in line for line in quoted)
    assert '"n": 5' in quoted[0]  # the last ones, the services' logs read in name order


def test_the_report_names_unended_cases_and_dead_letters() -> None:
    report = ChaosReport(cases=3)
    report.ended.update(closed=2)
    report.unended = {"AS9": "aftersales.pickup.requested.v1"}
    report.dead_letters.update({"courier.jd.events.dispatch.dlq": 2})

    lines = report.lines()

    assert "lost                  1" in lines
    assert "never ended           {'AS9': 'aftersales.pickup.requested.v1'}" in lines
    assert "dead letters          2 {'courier.jd.events.dispatch.dlq': 2}" in lines
