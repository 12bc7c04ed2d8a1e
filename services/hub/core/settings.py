"""Typed settings of every hub process, read from `HUB_*` environment variables at start-up."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse `250ms`, `10s`, `1m` or `2h` into a timedelta."""
    for unit in ("ms", "s", "m", "h"):
        number = text.removesuffix(unit)
        if number != text and number.replace(".", "", 1).isdigit():
            return timedelta(seconds=float(number) * _DURATION_UNITS[unit])
    raise ValueError(f"not a duration: {text!r} (expected e.g. 250ms, 10s, 1m, 2h)")


class HubSettings(BaseSettings):
    """Settings shared by every service; each field can be set as `HUB_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="HUB_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("HUB_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated (or KAFKA_BOOTSTRAP_SERVERS).",
    )
    kafka_username: str | None = Field(
        default=None, description="SASL/SCRAM user name; None means PLAINTEXT without auth."
    )
    kafka_password: SecretStr | None = Field(
        default=None, description="SASL/SCRAM password for `kafka_username`; never logged."
    )
    database_url: str | None = Field(
        default=None,
        description="State store: unset or sqlite:///path (SQLite), postgresql://... (Postgres).",
    )
    state_dir: str = Field(
        default=".hub/state", description="Directory of the default SQLite state files."
    )
    source: str = Field(
        default="urn:aftersales-hub",
        description="CloudEvents `ce_source` prefix of events this process emits.",
    )
    code_version: str = Field(
        default="dev", description="Version of the running code, stamped on dead letters."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="Log renderer: JSON when not a TTY in `auto` mode."
    )
    log_level: str = Field(default="INFO", description="Minimum log level.")
    # NoDecode: the environment gives `10s,1m,10m`, not JSON.
    retry_tiers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("10s", "1m", "10m"),
        description="Delays of the retry topics, in order; the last tier is reused.",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        description="Failed handling rounds (in-process retries included) before a dead letter.",
    )
    inline_attempts: int = Field(
        default=3, ge=1, description="Attempts in process before a message goes to a retry topic."
    )
    inline_deadline_s: float = Field(
        default=5.0, gt=0, description="Total time budget of the in-process retries of one message."
    )
    inline_backoff_s: float = Field(
        default=0.2,
        gt=0,
        description="First back-off of the in-process retries (doubles, jittered).",
    )
    batch_max_records: int = Field(
        default=500,
        ge=1,
        description="Most records handled as one unit of work (one store round trip, one "
        "produce, one commit); a poll returns at most this many.",
    )
    batch_max_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="Most bytes (keys and values) of one partition's unit of work.",
    )
    batch_wait_ms: int = Field(
        default=100,
        ge=1,
        description="How long a poll waits for records when none are there yet.",
    )
    outage_backoff_max_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest pause of a partition whose store or broker is failing (doubles "
        "from 0.5 s, jittered); other partitions go on.",
    )
    shutdown_grace_s: float = Field(
        default=15.0, gt=0, description="How long SIGTERM waits for in-flight messages to finish."
    )
    inbox_retention: str = Field(
        default="720h",
        description="How long processed ids are kept for duplicate detection: at least as long "
        "as dead letters are kept (30 days), so a replay repeated late is still recognised.",
    )
    partitions: int = Field(
        default=3, ge=1, description="Partitions of topics declared by the hub."
    )
    replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of topics declared by the hub."
    )
    min_insync_replicas: int = Field(
        default=1, ge=1, description="min.insync.replicas of topics declared by the hub."
    )

    @field_validator("retry_tiers", mode="before")
    @classmethod
    def _split_tiers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("retry_tiers")
    @classmethod
    def _check_tiers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one retry tier is needed")
        for tier in value:
            parse_duration(tier)
        return value

    @property
    def retry_delays(self) -> tuple[timedelta, ...]:
        """The retry tiers as durations."""
        return tuple(parse_duration(tier) for tier in self.retry_tiers)
