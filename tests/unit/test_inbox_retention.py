"""The inbox keeps processed ids for `inbox_retention`, then forgets them."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from probe import REGISTRY, FaultPlan, probe_service

from hub.core.service import ServiceRuntime
from hub.core.settings import HubSettings
from hub.core.store.base import EventId
from hub.core.store.sqlite import SqliteStateStore
from hub.core.topics import Subscription, dead_letter_topic, declare

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


async def runtime_with(retention: timedelta, tmp_path: Path) -> ServiceRuntime:
    settings = HubSettings(inbox_retention=retention, state_dir=str(tmp_path))
    service = probe_service("probe", "test.in", "test.out", FaultPlan())
    store = SqliteStateStore(tmp_path / "probe.db")
    await store.open()
    await store.record_processed("probe", EventId("urn:test", "e-1"))
    await store.record_processed("probe", EventId("urn:test", "e-2"))
    await store.record_processed("other-group", EventId("urn:test", "e-1"))
    return ServiceRuntime(service, settings, registry=REGISTRY, store=store)


async def test_ids_older_than_the_retention_are_forgotten_and_only_this_groups(
    tmp_path: Path,
) -> None:
    runtime = await runtime_with(timedelta(0), tmp_path)
    assert await runtime.purge_inbox() == 2
    assert not await runtime.store.is_processed("probe", EventId("urn:test", "e-1"))
    assert await runtime.store.is_processed("other-group", EventId("urn:test", "e-1"))
    await runtime.store.close()


async def test_ids_within_the_retention_are_kept(tmp_path: Path) -> None:
    runtime = await runtime_with(timedelta(hours=720), tmp_path)
    assert await runtime.purge_inbox() == 0
    assert await runtime.store.inbox_size("probe") == 2
    await runtime.store.close()


def test_processed_ids_outlive_the_dead_letters_an_operator_may_replay() -> None:
    settings = HubSettings()
    letters = {spec.name: spec for spec in declare(settings, [Subscription("g", ("t",))])}
    kept_ms = int(letters[dead_letter_topic("t", "g")].configs["retention.ms"])
    assert settings.inbox_retention >= timedelta(milliseconds=kept_ms)


def test_the_retention_reads_the_duration_formats_the_environment_gave_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for text, expected in (("720h", 720 * 3600), ("90m", 5400), ("PT2H", 7200), ("60", 60)):
        monkeypatch.setenv("HUB_INBOX_RETENTION", text)
        assert HubSettings().inbox_retention == timedelta(seconds=expected)
