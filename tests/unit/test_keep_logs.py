from pathlib import Path

from lab.cli import keep_logs


def test_a_failed_runs_logs_are_copied_under_a_new_directory(tmp_path: Path) -> None:
    logs = tmp_path / "work" / "logs"
    logs.mkdir(parents=True)
    (logs / "dispatch#0.log").write_text('{"event": "message_dead_lettered"}\n')
    kept = keep_logs(logs, tmp_path / "kept")
    assert kept is not None
    assert kept.parent == tmp_path / "kept"
    assert (kept / "dispatch#0.log").read_text() == '{"event": "message_dead_lettered"}\n'


def test_a_run_without_logs_keeps_nothing(tmp_path: Path) -> None:
    assert keep_logs(tmp_path / "missing", tmp_path / "kept") is None
    assert not (tmp_path / "kept").exists()
