"""The `hub` executable: the typer app, with every failure said in one line and an exit code.

Exit codes (docs/operations.md): 0 done, 1 refused or failed, 2 bad arguments or settings, or
nothing found, 3 replay interrupted, 4 Kafka unreachable or refusing the login or the TLS
handshake, 5 state store unreachable, 6 a partner unreachable, 70 an unexpected error (a bug: its
traceback is logged), 130 Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import NoReturn

import httpx
import structlog
import typer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError

# Typer vendors click; its UsageError (bad options, BadParameter) is not re-exported.
from typer._click.exceptions import UsageError

from hub.cli.main import app
from hub.core.connection import KafkaRefusedError, kafka_refusal
from hub.core.settings import HubSettings
from hub.core.store.base import StoreUnavailableError

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_KAFKA = 4
EXIT_STORE = 5
EXIT_PARTNER = 6
EXIT_SOFTWARE = 70
EXIT_INTERRUPTED = 130

log = structlog.get_logger("hub.cli")


def _bootstrap() -> str:
    try:
        return HubSettings().kafka_bootstrap_servers
    except ValueError:
        return "the configured bootstrap servers"


def _refusal() -> KafkaRefusedError | None:
    """Why the cluster refused us (TLS, login), when that is why it could not be reached."""
    try:
        return asyncio.run(kafka_refusal(HubSettings()))
    except ValueError:
        return None


def _long_running() -> bool:
    # `hub run` is a service: its lines are log events (JSON off a TTY); the rest are commands
    # whose one line of error is for a person.
    return sys.argv[1:2] == ["run"]


def _fail(code: int, message: str, **context: object) -> NoReturn:
    if _long_running() and structlog.is_configured():
        log.error("service_failed", error=message, exit_code=code, **context)
    else:
        print(f"hub: {message}", file=sys.stderr)
    raise SystemExit(code)


def _cause(error: BaseException) -> BaseException:
    """The first error in the chain that says which dependency failed."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(
            seen,
            (KafkaError, KafkaRefusedError, StoreUnavailableError, httpx.TransportError),
        ):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def _invalid_settings(error: ValidationError) -> str:
    """Every problem of the environment's settings, in one line (fields as configuration.md)."""
    problems = []
    for problem in error.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        field = ".".join(str(part) for part in problem["loc"])
        if not field:  # the model's own check: its input is every setting, secrets included
            problems.append(message)
        elif any(word in field for word in ("password", "secret", "token")):
            problems.append(f"{field}: {message}")
        else:
            problems.append(f"{field} ({problem['input']!r}): {message}")
    return "invalid settings: " + "; ".join(problems)


def _explain(error: Exception) -> NoReturn:
    """Exit with the documented code for an unreachable dependency; re-raise anything else."""
    if isinstance(error, ValidationError) and error.title.endswith("Settings"):
        _fail(EXIT_USAGE, _invalid_settings(error), dependency="settings")
    cause = _cause(error)
    if isinstance(cause, KafkaRefusedError):
        _fail(EXIT_KAFKA, str(cause), dependency="kafka")
    if isinstance(cause, KafkaConnectionError) and (refusal := _refusal()) is not None:
        # aiokafka says only "Unable to bootstrap": a failed handshake or login says more.
        _fail(EXIT_KAFKA, str(refusal), dependency="kafka")
    if isinstance(cause, KafkaConnectionError | KafkaError):
        _fail(EXIT_KAFKA, f"cannot reach Kafka at {_bootstrap()}: {cause}", dependency="kafka")
    if isinstance(cause, StoreUnavailableError):
        _fail(EXIT_STORE, f"cannot open the state store: {cause}", dependency="store")
    if isinstance(cause, httpx.TransportError):
        where = cause.request.url if cause._request is not None else "?"  # noqa: SLF001
        _fail(EXIT_PARTNER, f"cannot reach the partner at {where}: {cause!r}",
              dependency="partner")  # fmt: skip
    if _long_running() and structlog.is_configured():
        log.error("service_crashed", exit_code=EXIT_SOFTWARE, exc_info=error)
        raise SystemExit(EXIT_SOFTWARE) from None
    raise error


def main() -> None:
    """Run the `hub` command line."""
    if not _long_running() and os.environ.get("HUB_LOG_LEVEL", "").upper() != "DEBUG":
        # A command's failure is said once, below; aiokafka would first log each failed
        # connection attempt itself. A service keeps them: they are its history.
        logging.getLogger("aiokafka").disabled = True
    try:
        # Not standalone: typer would print a boxed panel or a traceback; we say one line.
        code = app(standalone_mode=False)
    except UsageError as error:
        command = error.ctx.command_path if error.ctx else "hub"
        if message := error.format_message():  # empty when the help was shown instead
            print(f"{command}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except typer.TyperException as error:
        print(f"hub: {error.format_message()}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        print("hub: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as error:  # noqa: BLE001 - said in one line with its exit code, or raised
        _explain(error)
    # A typer.Exit comes back as its code; a finished command as None.
    raise SystemExit(code if isinstance(code, int) else 0)
