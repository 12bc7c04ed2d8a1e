"""`hub dlq`: the commands exist, and bad input is refused before anything touches Kafka."""

from __future__ import annotations

from typer.testing import CliRunner

from hub.cli.dlq import dlq_app

runner = CliRunner()


def test_every_command_is_there_with_json_output() -> None:
    result = runner.invoke(dlq_app, ["--help"])
    assert result.exit_code == 0
    for command in ("list", "groups", "show", "replay", "edit", "purge", "audit"):
        assert command in result.output
        help_text = runner.invoke(dlq_app, [command, "--help"]).output
        assert "--json" in help_text, command


def test_replay_refuses_a_malformed_reference() -> None:
    result = runner.invoke(dlq_app, ["replay", "--ref", "not-a-ref", "--dry-run"])
    assert result.exit_code == 2
    assert "not a dead-letter reference" in result.output


def test_edit_needs_a_change() -> None:
    result = runner.invoke(dlq_app, ["edit", "t.g.dlq:0:1"])
    assert result.exit_code == 2
    assert "--set" in result.output


def test_edit_refuses_bad_json() -> None:
    result = runner.invoke(dlq_app, ["edit", "t.g.dlq:0:1", "--set-json", "seq={oops"])
    assert result.exit_code == 2
    assert "--set-json" in result.output
