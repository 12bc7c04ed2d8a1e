"""Every variable the code reads is a settings field, and docs/configuration.md says so today."""

from __future__ import annotations

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli.main import app
from hub.core.settings import HarnessSettings, HubSettings, NotifySenderSettings
from hub.messages import CATALOGUE
from hub.ops.audit import operator
from hub.settings_doc import DOC_PATH, SETTINGS_MODELS, render_configuration
from notify.bootstrap import sender_runtime

ROOT = Path(__file__).parents[2]
# A variable name in quotes or after `$`: how code reads, sets or mentions one.
VARIABLE = re.compile(r"""["'$]((?:HUB_[A-Z0-9_]*[A-Z0-9])|KAFKA_BOOTSTRAP_SERVERS)\b""")


def python_files() -> list[Path]:
    return sorted(
        path
        for folder in ("services", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if ".egg-info" not in str(path)
    )


def test_the_committed_document_is_what_the_models_generate() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render_configuration(), (
        "docs/configuration.md is stale: run `hub settings doc`"
    )


def test_the_check_command_fails_on_a_stale_document(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n", encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["settings", "doc", "--check", "--output", str(stale)]).exit_code == 1
    assert runner.invoke(app, ["settings", "doc", "--output", str(stale)]).exit_code == 0
    assert runner.invoke(app, ["settings", "doc", "--check", "--output", str(stale)]).exit_code == 0


def test_every_settings_model_in_the_code_is_in_the_document() -> None:
    documented = {section.model.__name__ for section in SETTINGS_MODELS}
    declared = {
        f"{path.relative_to(ROOT)}:{node.name}"
        for path in python_files()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(getattr(base, "id", None) == "BaseSettings" for base in node.bases)
    }
    missing = sorted(name for name in declared if name.split(":")[1] not in documented)
    assert not missing, f"add these to hub.settings_doc.SETTINGS_MODELS: {missing}"


def test_every_variable_named_in_the_code_is_documented() -> None:
    document = DOC_PATH.read_text(encoding="utf-8")
    named = {
        f"{name} ({path.relative_to(ROOT)})"
        for path in python_files()
        for name in VARIABLE.findall(path.read_text(encoding="utf-8"))
    }
    undocumented = sorted(entry for entry in named if f"`{entry.split()[0]}`" not in document)
    assert not undocumented, f"read but not a settings field: {undocumented}"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 5.0), ("2.5", 2.5), ("250ms", 0.25), ("10s", 10.0), ("1m", 60.0), ("PT1M30S", 90.0)],
)
def test_seconds_fields_read_numbers_as_before_and_durations_too(
    monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("HUB_SHUTDOWN_GRACE_S", text)
    monkeypatch.setenv("HUB_INBOX_RETENTION", text)
    settings = HubSettings()
    assert settings.shutdown_grace_s == seconds
    assert settings.inbox_retention == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["soon", "10 parsecs", "-"])
def test_a_duration_that_does_not_parse_is_refused(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("HUB_INBOX_RETENTION", text)
    with pytest.raises(ValueError, match="duration"):
        HubSettings()


def test_notify_sender_names_the_variables_it_still_needs() -> None:
    sender = NotifySenderSettings(sms_gateway_url="http://127.0.0.1:1/sms", smtp_port=25)
    with pytest.raises(ValueError, match="HUB_PUSH_GATEWAY_URL, HUB_SMTP_HOST in the environment"):
        sender_runtime(HubSettings(), CATALOGUE, sender)


def test_the_operator_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_OPERATOR", "alice")
    assert operator() == "alice"


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HUB_CACHE_DIR", "HUB_KAFKA_CDS", "HUB_SMTP_PORT", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.setenv(name, "")
    harness = HarnessSettings()
    assert harness.cache_dir is None
    assert harness.kafka_cds
    assert harness.kafka_bootstrap_servers is None
    assert NotifySenderSettings().smtp_port is None
