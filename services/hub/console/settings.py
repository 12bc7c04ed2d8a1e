"""Settings of the console, read from `HUB_CONSOLE_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.core.settings import Seconds

Role = Literal["viewer", "operator"]


class Operator(BaseModel):
    """One person who may sign in: the scrypt hash of their password and what they may do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    password_hash: SecretStr = Field(description="From `hub console hash-password`.")
    role: Role = Field(
        default="viewer",
        description="`viewer` reads and dry-runs; `operator` also replays, edits and purges.",
    )


class ConsoleSettings(BaseSettings):
    """Settings of `hub console serve`; each field can be set as `HUB_CONSOLE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="HUB_CONSOLE_", frozen=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the console listens on.")
    port: int = Field(default=8470, ge=0, le=65535, description="Port (0: any free one).")
    operators: dict[str, Operator] = Field(
        default_factory=dict,
        description='Who may sign in, as JSON: {"alice": {"password_hash": "scrypt$...", '
        '"role": "operator"}}. Nobody can sign in while it is empty.',
    )
    session_ttl_s: Seconds = Field(
        default=8 * 3600, gt=0, description="A session ends this long after sign-in."
    )
    secure_cookies: bool = Field(
        default=False,
        description="Mark the session cookie Secure: set it when the console is behind HTTPS.",
    )
    page_size: int = Field(default=50, ge=1, le=1000, description="Rows per page of a list.")
    refresh_s: Seconds = Field(
        default=1.0, gt=0, description="How often the dead-letter view reads new dead letters."
    )
    dry_run_rows: int = Field(
        default=500, ge=1, description="Rows of a dry-run shown on its page (the counts are all)."
    )
