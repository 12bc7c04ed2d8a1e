"""How every Kafka client reaches the cluster (TLS, login), and why a connection was refused."""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

if TYPE_CHECKING:
    from hub.core.settings import HubSettings

log = structlog.get_logger(__name__)

SCRAM_MECHANISM = "SCRAM-SHA-512"
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
PROBE_TIMEOUT_S = 5.0
# OpenSSL's verify codes for a certificate that does not name the host (X509_V_ERR_*_MISMATCH).
_NAME_MISMATCH = frozenset({62, 63, 64})
_FASTSTREAM_LOGINS: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


class KafkaRefusedError(ConnectionError):
    """The cluster answered but refused this client; the message says what to check."""

    event = "kafka_refused"

    def __init__(self, message: str, **context: str) -> None:
        super().__init__(message)
        self.context = context
        """Key-values for the log event (never a secret)."""


class KafkaAuthenticationError(KafkaRefusedError):
    """The cluster refused the configured SASL credentials."""

    event = "kafka_authentication_refused"


class KafkaTlsError(KafkaRefusedError):
    """TLS failed: an untrusted certificate, one naming another host, or TLS on one side only."""

    event = "kafka_tls_failed"


def scram_options(username: str, password: str) -> dict[str, Any]:
    """Aiokafka connection options for one SASL/SCRAM-SHA-512 user without TLS."""
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": SCRAM_MECHANISM,
        "sasl_plain_username": username,
        "sasl_plain_password": password,
    }


def tls_context(settings: HubSettings) -> ssl.SSLContext:
    """The TLS context of every client: the configured CA, a client certificate if any.

    Certificates are verified and, unless `kafka_ssl_check_hostname` is off, must name the
    address connected to; with a CA file only that CA is trusted, not the system's.
    """
    ca_file = settings.kafka_ssl_ca_file
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    if settings.kafka_ssl_cert_file is not None:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            settings.kafka_ssl_cert_file,
            settings.kafka_ssl_key_file,
            password=None if password is None else password.get_secret_value(),
        )
    if not settings.kafka_ssl_check_hostname:
        context.check_hostname = False  # verify_mode stays CERT_REQUIRED: the CA still counts
    return context


def kafka_security(settings: HubSettings) -> dict[str, Any]:
    """Aiokafka connection options (protocol, TLS context, login) for the configured cluster."""
    protocol = settings.kafka_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in TLS_PROTOCOLS:
        options["ssl_context"] = tls_context(settings)
    if settings.kafka_username is not None and settings.kafka_password is not None:
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_username,
            "sasl_plain_password": settings.kafka_password.get_secret_value(),
        }
    return options


def faststream_security(settings: HubSettings) -> BaseSecurity | None:
    """The same options in FastStream's terms (its broker takes no aiokafka options)."""
    protocol = settings.kafka_protocol
    context = tls_context(settings) if protocol in TLS_PROTOCOLS else None
    if settings.kafka_username is None or settings.kafka_password is None:
        return None if context is None else BaseSecurity(ssl_context=context)
    login = _FASTSTREAM_LOGINS[settings.kafka_sasl_mechanism]
    return login(
        settings.kafka_username, settings.kafka_password.get_secret_value(), ssl_context=context
    )


def _first_server(settings: HubSettings) -> tuple[str, int]:
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
    return host.strip("[]"), int(port)


def _tls_refusal(settings: HubSettings, error: Exception) -> KafkaTlsError:
    host, port = _first_server(settings)
    where = f"{host}:{port}"
    if isinstance(error, KafkaConnectionError):
        # TLS 1.3: the client's handshake is over before the broker checks the client's
        # certificate, so a missing or untrusted one shows as the first request going unanswered.
        reason = "the broker hung up on the first request"
        hint = (
            "if the listener requires a client certificate, set HUB_KAFKA_SSL_CERT_FILE and "
            "HUB_KAFKA_SSL_KEY_FILE"
            if settings.kafka_ssl_cert_file is None
            else "check that the broker trusts the CA of HUB_KAFKA_SSL_CERT_FILE"
        )
    elif not isinstance(error, ssl.SSLError):
        # A listener without TLS reads the ClientHello as a request, finds it absurd and hangs up.
        reason = "the broker hung up during the handshake"
        hint = "if that listener does not speak TLS, check HUB_KAFKA_SECURITY_PROTOCOL"
    elif isinstance(error, ssl.SSLCertVerificationError):
        reason = f"certificate verify failed: {error.verify_message}"
        if error.verify_code in _NAME_MISMATCH:
            hint = (
                "connect by a name the broker's certificate lists, or set "
                "HUB_KAFKA_SSL_CHECK_HOSTNAME=false"
            )
        else:
            hint = "check HUB_KAFKA_SSL_CA_FILE (the CA that signed the broker's certificate)"
    else:
        reason = error.reason or str(error)
        hint = "check HUB_KAFKA_SECURITY_PROTOCOL against the listener, and HUB_KAFKA_SSL_CERT_FILE"
    return KafkaTlsError(
        f"Kafka at {settings.kafka_bootstrap_servers}: TLS handshake with {where} failed "
        f"({reason}): {hint}",
        bootstrap=settings.kafka_bootstrap_servers,
        broker=where,
        reason=reason,
        hint=hint,
    )


def _refusal(settings: HubSettings, error: Exception) -> KafkaRefusedError | None:
    """What a failed direct connection says about this client's settings, if anything."""
    tls = settings.kafka_protocol in TLS_PROTOCOLS
    if isinstance(error, SaslAuthenticationFailed):
        hint = "check HUB_KAFKA_USERNAME and HUB_KAFKA_PASSWORD"
        return KafkaAuthenticationError(
            f"Kafka at {settings.kafka_bootstrap_servers} refused user "
            f"{settings.kafka_username!r} ({settings.kafka_sasl_mechanism}): {hint}",
            user=str(settings.kafka_username),
            mechanism=settings.kafka_sasl_mechanism,
            bootstrap=settings.kafka_bootstrap_servers,
            hint=hint,
        )
    closed = isinstance(error, KafkaConnectionError) and "closed" in str(error)
    if tls and (closed or isinstance(error, ssl.SSLError | ConnectionResetError)):
        return _tls_refusal(settings, error)
    if closed:
        # A TLS listener answers a request in clear with an alert and hangs up.
        where = "{}:{}".format(*_first_server(settings))
        hint = "if it is a TLS listener, set HUB_KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL"
        return KafkaTlsError(
            f"Kafka at {settings.kafka_bootstrap_servers}: {where} hung up on a request in "
            f"clear ({settings.kafka_protocol}): {hint}",
            bootstrap=settings.kafka_bootstrap_servers,
            broker=where,
            reason="hung up on a request without TLS",
            hint=hint,
        )
    return None  # unreachable, or slow: the caller's own error says it best


async def kafka_refusal(settings: HubSettings) -> KafkaRefusedError | None:
    """After a failed bootstrap: why the first server refused this client, if it did.

    aiokafka only says it could not bootstrap; one direct connection tells a failed TLS
    handshake, TLS on one side only, or a refused login apart from an unreachable cluster (None).
    """
    host, port = _first_server(settings)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            connection = await create_conn(
                host,
                port,
                request_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
                **kafka_security(settings),
            )
    except Exception as error:  # noqa: BLE001 - classified, never raised: a diagnosis only
        refusal = _refusal(settings, error)
        if refusal is not None:
            refusal.__cause__ = error
        return refusal
    connection.close()
    return None


async def raise_if_refused(settings: HubSettings) -> None:
    """After a failed bootstrap: log and raise the refusal when TLS or the login is the cause."""
    refusal = await kafka_refusal(settings)
    if refusal is None:
        return
    log.error(refusal.event, error=str(refusal), **refusal.context)
    raise refusal
