"""Replays started from the console: run in the background, watched by polling, stoppable."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from hub.ops.actions import Ops

if TYPE_CHECKING:
    from hub.core.outbound import RecordSink
    from hub.core.settings import HubSettings
    from hub.ops.replay import Checkpoint

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Run:
    """One replay run of this console process and its latest checkpoint."""

    checkpoint: Checkpoint
    actor: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        """Whether the run is still sending."""
        return self.task is not None and not self.task.done()

    @property
    def state(self) -> str:
        """`running`, `done`, `stopped` (resumable) or `failed`."""
        if self.running:
            return "running"
        if self.error is not None:
            return "failed"
        return "done" if self.checkpoint.done else "stopped"


class Runs:
    """The replays this console started; each goes through `Ops.replay`, audited as its actor."""

    def __init__(self, settings: HubSettings, sink: RecordSink) -> None:
        self._settings = settings
        self._sink = sink
        self._runs: dict[str, Run] = {}

    def get(self, replay_id: str) -> Run | None:
        """The run of `replay_id`, if this process started or resumed it."""
        return self._runs.get(replay_id)

    def running(self) -> list[Run]:
        """Runs still sending."""
        return [run for run in self._runs.values() if run.running]

    def start(self, checkpoint: Checkpoint, *, actor: str, reason: str) -> Run:
        """Run (or resume) `checkpoint` in the background; refuses a run already going."""
        known = self._runs.get(checkpoint.replay_id)
        if known is not None and known.running:
            raise ValueError(f"replay {checkpoint.replay_id} is running already")
        run = Run(checkpoint=checkpoint, actor=actor)
        run.task = asyncio.create_task(
            self._run(run, reason), name=f"replay-{checkpoint.replay_id}"
        )
        self._runs[checkpoint.replay_id] = run
        return run

    async def _run(self, run: Run, reason: str) -> None:
        def progress(checkpoint: Checkpoint) -> None:
            run.checkpoint = checkpoint

        try:
            async with Ops(self._settings, actor=run.actor, reason=reason, sink=self._sink) as ops:
                run.checkpoint = await ops.replay(run.checkpoint, stop=run.stop, progress=progress)
        except Exception as error:  # the page shows it; the checkpoint allows a resume
            run.error = f"{type(error).__name__}: {error}"
            log.exception("console_replay_failed", replay_id=run.checkpoint.replay_id)

    async def close(self) -> None:
        """Stop every run at its next chunk boundary (checkpoints saved) and wait for them."""
        for run in self._runs.values():
            run.stop.set()
        for run in self._runs.values():
            if run.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await run.task
