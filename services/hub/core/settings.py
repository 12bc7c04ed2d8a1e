"""Typed settings of every hub process, read from environment variables at start-up.

Every variable the code reads is a field of one of the models here; `docs/configuration.md` is
generated from them (`hub settings doc`). The one exception is a partner's credentials and URL:
their variable names come from `deploy/partners.yaml` (`*_env`), so they are read by name.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    FilePath,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
"""Kafka's `security.protocol`: a login (SASL) or none, over TLS (SSL) or not."""

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_ISO_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def parse_duration(text: str) -> timedelta:
    """Parse `250ms`, `10s`, `1m` or `2h` into a timedelta."""
    for unit in ("ms", "s", "m", "h"):
        number = text.removesuffix(unit)
        if number != text and number.replace(".", "", 1).isdigit():
            return timedelta(seconds=float(number) * _DURATION_UNITS[unit])
    raise ValueError(f"not a duration: {text!r} (expected e.g. 250ms, 10s, 1m, 2h)")


def _as_timedelta(value: object) -> object:
    """`10s`, `1m`, `PT10S` or a number of seconds, as a timedelta; anything else unchanged."""
    if isinstance(value, str):
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return timedelta(seconds=float(text))
        if text[-1:].isalpha() and not text.startswith("P"):
            return parse_duration(text)
        try:
            return _ISO_DURATION.validate_python(text)
        except ValidationError:
            raise ValueError(
                f"not a duration: {value!r} (expected e.g. 250ms, 10s, 1m, 2h, PT10S or seconds)"
            ) from None
    return value


def _as_seconds(value: object) -> object:
    """A duration given as text (`10s`, `PT10S`) in seconds; a plain number stays as it is."""
    if isinstance(value, str) and not value.strip().replace(".", "", 1).isdigit():
        duration = _as_timedelta(value)
        if isinstance(duration, timedelta):
            return duration.total_seconds()
    return value


Duration = Annotated[timedelta, BeforeValidator(_as_timedelta)]
"""A duration: `250ms`, `10s`, `1m`, `2h`, ISO 8601 (`PT10S`) or a number of seconds."""
Seconds = Annotated[float, BeforeValidator(_as_seconds)]
"""Seconds as a float; the environment may also say `250ms`, `10s`, `1m`, `2h` or `PT10S`."""


def shipped(name: str) -> Path:
    """A data file the hub ships inside its package (partner table, SLA table, schemas)."""
    return Path(str(files("hub") / "data" / name))


class HubSettings(BaseSettings):
    """Settings shared by every service; each field can be set as `HUB_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="HUB_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("HUB_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated.",
    )
    kafka_security_protocol: KafkaProtocol | None = Field(
        default=None,
        description="How clients reach Kafka: `PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or "
        "`SASL_SSL` (a login over TLS, as managed Kafka and Strimzi's TLS listeners ask). "
        "Unset: `SASL_PLAINTEXT` when `kafka_username` is set, `PLAINTEXT` otherwise.",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism of the login (`SASL_*` protocols): Strimzi's `scram-sha-512` "
        "users, Aiven's SCRAM-SHA-256, Confluent Cloud's PLAIN (over TLS only).",
    )
    kafka_username: str | None = Field(
        default=None, description="SASL user name; unset: no login (PLAINTEXT or SSL)."
    )
    kafka_password: SecretStr | None = Field(
        default=None, description="SASL password for `kafka_username`; never logged."
    )
    kafka_ssl_ca_file: FilePath | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates (Strimzi: the "
        "cluster CA's `ca.crt`); only these are trusted. Unset: the system's trust store.",
    )
    kafka_ssl_cert_file: FilePath | None = Field(
        default=None,
        description="Client certificate (PEM) for mutual TLS (Strimzi `type: tls` users: the "
        "KafkaUser secret's `user.crt`); unset: the client shows none.",
    )
    kafka_ssl_key_file: FilePath | None = Field(
        default=None,
        description="Private key (PEM) of `kafka_ssl_cert_file` (`user.key`); unset: the key is "
        "in the certificate file.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted `kafka_ssl_key_file`; never logged."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description="Check that a broker's certificate names the address the client connected "
        "to. `false` keeps the encryption and the CA check but accepts any name: only for a "
        "certificate that cannot be fixed.",
    )
    database_url: str | None = Field(
        default=None,
        description="State store: unset or sqlite:///path (SQLite), postgresql://... (Postgres).",
    )
    state_dir: str = Field(
        default=".hub/state", description="Directory of the default SQLite state files."
    )
    partners_file: str | None = Field(
        default=None,
        description="The partner table (YAML); unset, the one the hub ships "
        "(`deploy/partners.yaml` in the repository).",
    )
    sla_file: str | None = Field(
        default=None,
        description="The SLA table (YAML); unset, the one the hub ships "
        "(`deploy/sla.yaml` in the repository).",
    )
    refund_policy_file: str | None = Field(
        default=None,
        description="The express-refund policy (YAML: request types, categories, amount "
        "limits); unset, the one the hub ships (`deploy/refunds.yaml` in the repository).",
    )
    schemas_dir: str | None = Field(
        default=None,
        description="The JSON Schemas `hub schemas check` compares with; unset, the ones the "
        "hub ships (`schemas/` in the repository).",
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
    log_level: str = Field(
        default="INFO",
        description="Minimum log level. Unset, `hub dlq`, the demo, the fault suite and the "
        "bench's workers log only WARNING and above, so their own output stays readable.",
    )
    http_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of `hub run`'s /metrics, /healthz and /readyz; 0 picks a free one "
        "(logged as `http_serving`): set it where Prometheus scrapes.",
    )
    http_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - Prometheus scrapes from another host or container
        description="Address the HTTP endpoints listen on.",
    )
    metrics: bool = Field(
        default=True,
        description="Collect Prometheus metrics (false: /metrics shows only the process's own).",
    )
    tracing: Literal["off", "otlp"] = Field(
        default="off", description="OpenTelemetry traces: `otlp` exports a span per record."
    )
    tracing_sample_ratio: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Share of cases traced when `tracing` is on, decided by trace id: a case is "
        "traced in every service or in none. 1 traces all (two spans a record cost about a "
        "fifth of the hop's CPU; one in ten, about 5 %).",
    )
    otlp_endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        description="OTLP/HTTP traces endpoint used when `tracing` is `otlp`.",
    )
    # NoDecode: the environment gives `10s,1m,10m`, not JSON. Kept as text: each tier names
    # its topic (`<topic>.<group>.retry.10s`), so `retry_delays` gives the durations.
    retry_tiers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("10s", "1m", "10m"),
        description="Delays of the retry topics, in order, comma separated (`250ms`, `10s`, "
        "`1m`, `2h`); each names its topic. The last tier is reused.",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        description="Failed handling rounds (in-process retries included) before a dead letter.",
    )
    inline_attempts: int = Field(
        default=3, ge=1, description="Attempts in process before a message goes to a retry topic."
    )
    inline_deadline_s: Seconds = Field(
        default=5.0, gt=0, description="Total time budget of the in-process retries of one message."
    )
    inline_backoff_s: Seconds = Field(
        default=0.2,
        gt=0,
        description="First back-off of the in-process retries (doubles, jittered).",
    )
    partner_concurrency: int = Field(
        default=32,
        ge=1,
        description="Keys whose records a group that calls partners handles at once within a "
        "poll (records of one key stay in order); 1 handles a poll one record at a time.",
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
        default=20,
        ge=1,
        # FastStream sleeps as long again after an empty poll: a record arriving then waits.
        description="How long a poll waits for records when none are there yet (and, after an "
        "empty poll, before the next).",
    )
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        # aiokafka sends no fetch to a node while one is in flight there: a partition drained
        # meanwhile waits for that fetch to come back, up to this long with nothing new on the
        # others. At Kafka's 500 ms the e2e bench at 200 cases/s had p99s over a second.
        description="Longest time the broker holds a fetch for records that have not come yet "
        "(the longest a record may wait to be fetched).",
    )
    outage_backoff_max_s: Seconds = Field(
        default=30.0,
        gt=0,
        description="Longest pause of a partition whose store or broker is failing (doubles "
        "from 0.5 s, jittered); other partitions go on.",
    )
    shutdown_grace_s: Seconds = Field(
        default=15.0, gt=0, description="How long SIGTERM waits for in-flight messages to finish."
    )
    inbox_retention: Duration = Field(
        default=timedelta(hours=720),
        description="How long processed ids are kept for duplicate detection: at least as long "
        "as dead letters are kept (30 days), so a replay repeated late is still recognised.",
    )
    courier_score_window: Duration = Field(
        default=timedelta(days=7),
        description="The sliding window of a courier's scorecard: observations older than this "
        "no longer count (a suspended courier recovers as its failures age out).",
    )
    courier_score_interval: Duration = Field(
        default=timedelta(minutes=10),
        description="How often a courier with observations in its window is scored again, so "
        "that old ones leave it even when nothing new happens.",
    )
    courier_score_min_change: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="A scorecard is published when the score moved at least this much since "
        "the last one, or the courier's standing changed.",
    )
    courier_score_floor: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="Below this score a courier is suspended: dispatch offers it no new orders.",
    )
    courier_score_recover: float = Field(
        default=0.75,
        ge=0.0,
        le=1.0,
        description="A suspended courier is offered orders again once its score is back at "
        "this mark (above the floor, so that it does not flap).",
    )
    courier_pickup_grace: Duration = Field(
        default=timedelta(hours=2),
        description="A pickup this long past the end of its window (or the request, without "
        "one) still counts as on time in the courier's score.",
    )
    dispatch_weight_score: float = Field(
        default=1.0,
        ge=0.0,
        description="Dispatch ranks couriers by score x this, minus the cost and SLA terms.",
    )
    dispatch_weight_cost: float = Field(
        default=0.5,
        ge=0.0,
        description="Weight of a courier's price, relative to the dearest eligible courier.",
    )
    dispatch_weight_sla: float = Field(
        default=1.0,
        ge=0.0,
        description="Weight of a courier's pickup SLA hours, relative to the slowest eligible one.",
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

    @model_validator(mode="after")
    def _check_courier_floor(self) -> Self:
        if self.courier_score_recover < self.courier_score_floor:
            raise ValueError(
                "HUB_COURIER_SCORE_RECOVER must not be below HUB_COURIER_SCORE_FLOOR "
                f"({self.courier_score_recover} < {self.courier_score_floor})"
            )
        return self

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Self:
        protocol = self.kafka_protocol
        login = self.kafka_username is not None and self.kafka_password is not None
        if protocol.startswith("SASL_") and not login:
            raise ValueError(
                f"the Kafka security protocol {protocol} needs HUB_KAFKA_USERNAME and "
                "HUB_KAFKA_PASSWORD"
            )
        if not protocol.startswith("SASL_") and self.kafka_username is not None:
            raise ValueError(
                f"HUB_KAFKA_USERNAME is set but the Kafka security protocol {protocol} sends no "
                "login: use SASL_PLAINTEXT or SASL_SSL"
            )
        if self.kafka_ssl_key_file is not None and self.kafka_ssl_cert_file is None:
            raise ValueError("HUB_KAFKA_SSL_KEY_FILE needs HUB_KAFKA_SSL_CERT_FILE")
        return self

    @property
    def kafka_protocol(self) -> KafkaProtocol:
        """The security protocol in force: the one set, else derived from the login."""
        if self.kafka_security_protocol is not None:
            return self.kafka_security_protocol
        return "PLAINTEXT" if self.kafka_username is None else "SASL_PLAINTEXT"

    @property
    def retry_delays(self) -> tuple[timedelta, ...]:
        """The retry tiers as durations."""
        return tuple(parse_duration(tier) for tier in self.retry_tiers)


class NotifySenderSettings(BaseSettings):
    """Where `hub run notify-sender` delivers: the SMS and push gateways and the SMTP relay."""

    # An empty variable means unset, as it did when these were read with os.environ.get.
    model_config = SettingsConfigDict(
        env_prefix="HUB_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    sms_gateway_url: str | None = Field(
        default=None, description="SMS gateway (HTTP); notify-sender needs it."
    )
    push_gateway_url: str | None = Field(
        default=None, description="App push gateway (HTTP); notify-sender needs it."
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP relay for e-mail; notify-sender needs it."
    )
    smtp_port: int | None = Field(
        default=None, ge=1, le=65535, description="Port of the SMTP relay; notify-sender needs it."
    )
    mail_from: str = Field(
        default="售后服务 <service@aftersales-hub.local>",
        description="From address of notification e-mails.",
    )

    def missing(self) -> list[str]:
        """The variables notify-sender needs that are not set."""
        required = ("sms_gateway_url", "push_gateway_url", "smtp_host", "smtp_port")
        return [f"HUB_{name.upper()}" for name in required if not getattr(self, name)]


class OperatorSettings(BaseSettings):
    """Who an operator is, for the audit trail of `hub dlq`."""

    # An empty variable means unset, as it did when these were read with os.environ.get.
    model_config = SettingsConfigDict(
        env_prefix="HUB_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    operator: str | None = Field(
        default=None,
        description="Name recorded as `actor` of `hub dlq` actions when `--by` is not given; "
        "unset: the login name.",
    )
    replay_memory_mb: int = Field(
        default=64,
        ge=0,
        description="A replay reads its dead letters twice (the newest generation of each "
        "message first, then the letters to send) unless they fit in this many MiB of record "
        "bytes: then they are kept from the first read. Python holds them in about three times "
        "that; `0` always reads twice.",
    )


class HarnessSettings(BaseSettings):
    """The local broker, and the external services tests, demo, bench and chaos may use instead."""

    # An empty variable means unset, as it did when these were read with os.environ.get.
    model_config = SettingsConfigDict(
        env_prefix="HUB_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="A running cluster for `make test`, `make demo` and `make bench` to use "
        "instead of starting a local broker; services read it too (see above).",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where the Kafka jars (and class-data archives) are cached, outside the "
        "repository; unset: `~/.cache/aftersales-hub`. The Makefile reads it too.",
    )
    test_broker: Literal["harness", "container", "external"] | None = Field(
        default=None,
        description="The broker the test session runs against: `harness` (a local node from the "
        "cached jars), `container` (a node in a container of the image `make kafka-image` "
        "builds, through a Docker-compatible API) or `external` (KAFKA_BOOTSTRAP_SERVERS); "
        "unset: `external` when KAFKA_BOOTSTRAP_SERVERS is set, else `harness`.",
    )
    docker_host: str | None = Field(
        default=None,
        validation_alias="DOCKER_HOST",
        description="The Docker-compatible engine for `HUB_TEST_BROKER=container` "
        "(`unix:///run/docker.sock`, `tcp://...`); unset: the tests start podman's API service "
        "on a private socket and stop it at the end.",
    )
    kafka_cds: bool = Field(
        default=True,
        description="Start local brokers with a class-data sharing archive (half the start "
        "time); `0` starts them without.",
    )
    test_postgres_url: str | None = Field(
        default=None,
        description="PostgreSQL server for the state-store tests (each session makes its own "
        "database); unset: the local server `deploy/postgres/ensure-postgres.sh` starts.",
    )
    test_prometheus_dir: str | None = Field(
        default=None,
        description="Directory holding `prometheus` and `promtool` for the observability tests; "
        "unset: `deploy/prometheus/ensure-prometheus.sh` installs Debian's package if needed.",
    )
