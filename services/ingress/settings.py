"""Settings of `hub run ingress`, read from `HUB_INGRESS_*` environment variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.core.settings import Seconds

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Backend(BaseModel):
    """One platform backend: the SHA-256 of its bearer token and the `ce_source`s it may use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_sha256: Sha256Hex = Field(description="From `hub ingress new-token`; never the token.")
    sources: tuple[str, ...] = Field(
        min_length=1, description="The `ce_source` values this backend's events may carry."
    )


class IngressSettings(BaseSettings):
    """Settings of `hub run ingress`; each field can be set as `HUB_INGRESS_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="HUB_INGRESS_", frozen=True, extra="ignore")

    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - backends call it from other hosts
        description="Address the front door (and its /metrics, /healthz, /readyz) listens on.",
    )
    port: int = Field(default=8480, ge=0, le=65535, description="Port (0: any free one).")
    backends: dict[str, Backend] = Field(
        default_factory=dict,
        description='Who may post events, as JSON: {"shop": {"token_sha256": "<64 hex>", '
        '"sources": ["urn:storefront:shop"]}}. Merged with `backends_file`; nobody may post '
        "while both are empty.",
    )
    backends_file: Path | None = Field(
        default=None,
        description="A JSON file holding the same mapping as `backends` (e.g. a mounted secret).",
    )
    case_group: str = Field(
        default="tracker",
        description="The group whose state store holds case snapshots for GET /cases/{id}: "
        "its SQLite file under `HUB_STATE_DIR`, or `HUB_DATABASE_URL`.",
    )
    send_timeout_s: Seconds = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for the broker's acknowledgement before a 503 "
        "(the backend sends again with the same ce-id; a late record is not doubled downstream).",
    )
    keep_alive_s: Seconds = Field(
        default=75.0,
        gt=0,
        description="How long an idle kept-alive connection stays open: longer than the idle "
        "timeout of the load balancer in front (60 s is common), so that it closes first.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body accepted (413 beyond)."
    )

    def all_backends(self) -> dict[str, Backend]:
        """`backends` and those of `backends_file`; ValueError naming a bad file."""
        found = dict(self.backends)
        if self.backends_file is not None:
            try:
                document = json.loads(self.backends_file.read_text(encoding="utf-8"))
                found |= {name: Backend.model_validate(b) for name, b in document.items()}
            except (OSError, ValueError, AttributeError) as error:
                raise ValueError(
                    f"HUB_INGRESS_BACKENDS_FILE {self.backends_file}: {error}"
                ) from error
        return found
