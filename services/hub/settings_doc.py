"""`docs/configuration.md`, generated from the settings models and the partner table."""

from __future__ import annotations

import types
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Union, get_args, get_origin

from pydantic import AliasChoices, SecretStr

from dispatch.partners import load_partners
from hub.console.settings import ConsoleSettings
from hub.core.settings import (
    HarnessSettings,
    HubSettings,
    NotifySenderSettings,
    OperatorSettings,
    Seconds,
)
from ingress.settings import IngressSettings

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@dataclass(frozen=True)
class Section:
    """One settings model and the part of the document that describes it."""

    title: str
    model: type[BaseSettings]
    intro: str


SETTINGS_MODELS = (
    Section(
        "Every service and every `hub` command",
        HubSettings,
        "Read by `hub run <service>` and by every `hub` command that talks to Kafka or a "
        "state store.",
    ),
    Section(
        "notify-sender",
        NotifySenderSettings,
        "Read by `hub run notify-sender`, which refuses to start while one of the first four is "
        "unset.",
    ),
    Section("`hub dlq`", OperatorSettings, "Read by the on-call commands (`hub dlq ...`)."),
    Section(
        "`hub console`",
        ConsoleSettings,
        "Read by `hub console serve`, the on-call web console; it also reads every variable of "
        "the first section.",
    ),
    Section(
        "`hub run ingress`",
        IngressSettings,
        "Read by the HTTP front door, which also reads every variable of the first section "
        "(broker, state store, `HUB_STATE_DIR`). `hub ingress new-token` makes a backend's entry.",
    ),
    Section(
        "Local broker, tests, demo, bench and chaos",
        HarnessSettings,
        "Read by the local Kafka harness, `make test`, `make demo`, `make bench` and "
        "`make chaos`; not by a deployed service.",
    ),
)
"""Every settings model, in the order of the document; a new model must be added here."""

SCRIPT_VARIABLES: tuple[tuple[str, str, str, str], ...] = (
    ("HUB_PG_PORT", "integer", "54329", "Port on 127.0.0.1 of the tests' PostgreSQL server."),
    (
        "HUB_PG_DATA",
        "path",
        "/var/tmp/aftersales-hub-pg",  # noqa: S108 - the script's default, quoted, not used
        "Cluster directory of the tests' PostgreSQL server, without spaces.",
    ),
)
"""Variables read by `deploy/postgres/ensure-postgres.sh` (a shell script, so no model)."""

HEADER = """\
# Configuration

Every environment variable the hub reads, generated from the settings models in
`services/hub/core/settings.py` and from the partner table `deploy/partners.yaml`. Do not edit
this file: change a model's `Field(description=...)` and run `hub settings doc`; a unit test
fails while this file is stale.

Durations: a field of type *duration* takes `250ms`, `10s`, `1m`, `2h`, ISO 8601 (`PT10S`) or a
number of seconds; a field of type *seconds* holds a number of seconds and takes the same
forms. Lists are comma separated. Names are case-insensitive.
"""

PARTNER_INTRO = (
    "Their names are not fixed in code: each partner's entry in `deploy/partners.yaml` names "
    "them (`api_url_env`, `partner_id_env`, `checkword_env`, `webhook_secret_env`, "
    "`secret_env`), so a new "
    "partner brings its own variables and no secret is ever in the repository. A gateway "
    "refuses to start, naming what is missing, when one is unset. Today's table names:"
)
SIMULATOR_NOTE = (
    "The SF simulator (`python -m lab.simulators.sf_courier`) reads the same partner id and "
    "checkword, so that it accepts the gateway's signed requests; the insurer simulator "
    "(`python -m lab.simulators.insurer --code <code>`) reads `HUB_INSURER_<CODE>_SECRET`."
)


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _duration_text(value: timedelta) -> str:
    """A timedelta the way the environment would say it: `720h`, `1m`, `10s`, `250ms`."""
    milliseconds = round(value.total_seconds() * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds and milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def type_name(annotation: object, metadata: list[object] | tuple[object, ...] = ()) -> str:
    """A reader's name for a field's type."""
    if annotation is float and any(item in metadata for item in get_args(Seconds)[1:]):
        return "seconds"
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return type_name(inner, [*metadata, *extra])
    if origin in (Union, types.UnionType):
        names = [type_name(arg, metadata) for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(names)
    if origin is Literal:
        return " \\| ".join(f"`{arg}`" for arg in get_args(annotation))
    if origin is tuple:
        return f"list of {type_name(get_args(annotation)[0], metadata)}"
    plain: dict[object, str] = {
        str: "text",
        int: "integer",
        float: "number",
        bool: "boolean",
        timedelta: "duration",
        Path: "path",
        SecretStr: "secret",
    }
    return plain.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(field: FieldInfo) -> str:
    """A field's default as it would be written in the environment; `unset` for none."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, timedelta):
        text = _duration_text(value)
    elif isinstance(value, bool):
        text = "1" if value else "0"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, tuple):
        text = ",".join(str(item) for item in value)
    else:
        text = str(value)
    return f"`{text}`"


def variable_names(model: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set one field, preferred name first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{model.model_config.get('env_prefix', '')}{name}".upper()]


def model_table(model: type[BaseSettings]) -> list[str]:
    """One table row per field of `model`."""
    lines = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        names = " or ".join(f"`{variable}`" for variable in variable_names(model, name, field))
        kind = type_name(field.annotation, field.metadata)
        description = _cell(field.description or "")
        lines.append(f"| {names} | {kind} | {default_text(field)} | {description} |")
    return lines


def partner_rows(table: Path | None = None) -> list[str]:
    """The variables the partner table names, one row each."""
    partners = load_partners(table)
    lines = ["| variable | partner | read by | holds |", "|---|---|---|---|"]
    for courier in partners.couriers:
        holds = (
            (courier.api_url_env, "base URL of the partner API"),
            (courier.partner_id_env, "partner id (secret)"),
            (courier.checkword_env, "checkword that signs requests (secret)"),
        )
        lines += [
            f"| `{env}` | courier `{courier.code}` | `hub run gateway-{courier.code}` | {what} |"
            for env, what in holds
            if env
        ]
    for center in partners.repair_centers:
        center_holds = (
            (center.api_url_env, "base URL of the center's API"),
            (center.webhook_secret_env, "key of the HMAC-SHA256 signing its pushes (secret)"),
        )
        lines += [
            f"| `{env}` | repair center `{center.code}` | "
            f"`hub run gateway-center-{center.code}` | {what} |"
            for env, what in center_holds
            if env
        ]
    for insurer in partners.insurers:
        insurer_holds = (
            (insurer.api_url_env, "base URL of the insurer's claim API"),
            (insurer.secret_env, "key of the HMAC-SHA256 signing the hub's claims (secret)"),
        )
        lines += [
            f"| `{env}` | insurer `{insurer.code}` | `hub run insurance` | {what} |"
            for env, what in insurer_holds
        ]
    return lines


def render_configuration(table: Path | None = None) -> str:
    """The whole of `docs/configuration.md`."""
    lines = [HEADER]
    for section in SETTINGS_MODELS:
        model = section.model
        lines += [f"## {section.title}", "", f"{section.intro} Model: `{model.__name__}`.", ""]
        lines += [*model_table(model), ""]
    lines += [
        "## Partner credentials and URLs",
        "",
        PARTNER_INTRO,
        "",
        *partner_rows(table),
        "",
        SIMULATOR_NOTE,
        "",
        "## Scripts",
        "",
        "Read by `deploy/postgres/ensure-postgres.sh`, which `make test` runs:",
        "",
        "| variable | type | default | description |",
        "|---|---|---|---|",
        *(
            f"| `{name}` | {kind} | `{default}` | {_cell(text)} |"
            for name, kind, default, text in SCRIPT_VARIABLES
        ),
        "",
    ]
    return "\n".join(lines)
