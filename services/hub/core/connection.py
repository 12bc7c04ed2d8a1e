"""Why a connection to Kafka failed, said in terms an operator can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed
from faststream.security import SASLScram512

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)

SCRAM_MECHANISM = "SCRAM-SHA-512"


class KafkaAuthenticationError(ConnectionError):
    """The cluster refused the configured SASL credentials."""


def scram_options(username: str, password: str) -> dict[str, Any]:
    """Aiokafka connection options for one SASL/SCRAM-SHA-512 user."""
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": SCRAM_MECHANISM,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


def kafka_security(settings: HubSettings) -> dict[str, Any]:
    """Aiokafka connection options for the configured authentication."""
    if settings.kafka_username is None or settings.kafka_password is None:
        return {}
    return scram_options(settings.kafka_username, settings.kafka_password.get_secret_value())


def faststream_security(settings: HubSettings) -> SASLScram512 | None:
    """The same authentication in FastStream's terms (its broker takes no aiokafka options)."""
    if settings.kafka_username is None or settings.kafka_password is None:
        return None
    return SASLScram512(settings.kafka_username, settings.kafka_password.get_secret_value())


async def raise_if_refused(settings: HubSettings) -> None:
    """After a failed bootstrap: raise KafkaAuthenticationError when the credentials are the cause.

    aiokafka only says it could not bootstrap; one direct connection tells a refused login
    apart from an unreachable cluster.
    """
    if settings.kafka_username is None:
        return
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")
    try:
        connection = await create_conn(host, int(port), request_timeout_ms=5000,
                                       **kafka_security(settings))  # fmt: skip
    except SaslAuthenticationFailed as error:
        log.error(  # noqa: TRY400 - the refusal is the message; its traceback says nothing more
            "kafka_authentication_refused",
            user=settings.kafka_username,
            mechanism=SCRAM_MECHANISM,
            bootstrap=settings.kafka_bootstrap_servers,
            hint="check HUB_KAFKA_USERNAME and HUB_KAFKA_PASSWORD",
        )
        raise KafkaAuthenticationError(
            f"Kafka at {settings.kafka_bootstrap_servers} refused user "
            f"{settings.kafka_username!r} ({SCRAM_MECHANISM}): check HUB_KAFKA_USERNAME and "
            "HUB_KAFKA_PASSWORD"
        ) from error
    except Exception:  # noqa: BLE001 - any other failure: the caller's own error says it best
        return
    connection.close()
