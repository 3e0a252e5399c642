"""How every Kafka client connects: bootstrap servers, security protocol, SASL
and TLS, from one :class:`~tidings.settings.KafkaSettings`.

Producers, consumers, admin and metadata clients all take
``**client_options(kafka)``, so a secured cluster needs no per-client code.
:func:`check_security` runs when the settings are built (at an entry point):
a bad combination stops the process there, naming the variables.
:func:`verify` then opens one connection, so a wrong password or an untrusted
certificate is reported at start as what it is, not later as "unable to
bootstrap".
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
from typing import TYPE_CHECKING, Any

from tidings.errors import ConfigError

if TYPE_CHECKING:
    from tidings.settings import KafkaSettings

_P = "TIDINGS_KAFKA_"


def _uses_ssl(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def _set(kafka: KafkaSettings, fields: tuple[str, ...]) -> list[str]:
    """The variables among ``fields`` given a value (explicitly or non-empty)."""
    found = []
    for field in fields:
        value = getattr(kafka, field)
        secret = getattr(value, "get_secret_value", None)
        empty = value is None or (secret() if secret else value) == ""
        if field in kafka.model_fields_set and not (empty and field != "sasl_mechanism"):
            found.append(f"{_P}{field.upper()}")
    return found


_SSL_FIELDS = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password")
_SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_oauth_token_provider")


def check_security(kafka: KafkaSettings) -> Any:
    """Refuse a contradictory or incomplete security setup; return the loaded
    OAUTHBEARER token provider (or ``None``). Messages name variables only."""
    protocol = f"{_P}SECURITY_PROTOCOL={kafka.security_protocol}"
    if not _uses_ssl(kafka) and (stray := _set(kafka, _SSL_FIELDS)):
        raise ValueError(f"{', '.join(stray)} set but {protocol} does not use TLS")
    if not _uses_sasl(kafka) and (stray := _set(kafka, _SASL_FIELDS)):
        raise ValueError(f"{', '.join(stray)} set but {protocol} does not use SASL")
    if _uses_ssl(kafka):
        _check_files(kafka)
    if not _uses_sasl(kafka):
        return None
    mechanism = f"{_P}SASL_MECHANISM={kafka.sasl_mechanism}"
    if kafka.sasl_mechanism == "OAUTHBEARER":
        if not kafka.sasl_oauth_token_provider:
            raise ValueError(f"{mechanism} needs {_P}SASL_OAUTH_TOKEN_PROVIDER (module:callable)")
        if kafka.sasl_username or kafka.sasl_password.get_secret_value():
            raise ValueError(
                f"{mechanism} takes its token from {_P}SASL_OAUTH_TOKEN_PROVIDER; "
                f"unset {_P}SASL_USERNAME and {_P}SASL_PASSWORD"
            )
        return _load_provider(kafka.sasl_oauth_token_provider)
    if kafka.sasl_oauth_token_provider:
        raise ValueError(f"{_P}SASL_OAUTH_TOKEN_PROVIDER is only for OAUTHBEARER, not {mechanism}")
    missing = [
        f"{_P}{name}"
        for name, value in (
            ("SASL_USERNAME", kafka.sasl_username),
            ("SASL_PASSWORD", kafka.sasl_password.get_secret_value()),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"{protocol} with {mechanism} needs {' and '.join(missing)}")
    return None


def _check_files(kafka: KafkaSettings) -> None:
    if (kafka.ssl_cert_file is None) != (kafka.ssl_key_file is None):
        raise ValueError(f"a client certificate needs both {_P}SSL_CERT_FILE and {_P}SSL_KEY_FILE")
    if kafka.ssl_key_password.get_secret_value() and kafka.ssl_key_file is None:
        raise ValueError(f"{_P}SSL_KEY_PASSWORD set without {_P}SSL_KEY_FILE")
    for field in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        path = getattr(kafka, field)
        if path is not None and not path.is_file():
            raise ValueError(f"{_P}{field.upper()}: no such file {path}")
    try:
        ssl_context(kafka)
    except (ssl.SSLError, OSError) as exc:
        # Which file is bad, and the library's reason (never a key's contents).
        raise ValueError(
            f"{_P}SSL_CA_FILE / {_P}SSL_CERT_FILE / {_P}SSL_KEY_FILE (or the key "
            f"password) cannot be loaded: {exc.__class__.__name__}: {exc}"
        ) from None


def _load_provider(target: str) -> Any:
    from aiokafka.abc import AbstractTokenProvider

    variable = f"{_P}SASL_OAUTH_TOKEN_PROVIDER"
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{variable} must be module:callable, got {target!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{variable}: cannot load {target!r} ({exc})") from None
    provider = factory()
    if not isinstance(provider, AbstractTokenProvider):
        raise ValueError(
            f"{variable}: {target!r} returned {type(provider).__name__}, "
            "not an aiokafka AbstractTokenProvider"
        )
    return provider


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name, against the CA file
    if one is set, else the system's trust store."""
    ca = str(kafka.ssl_ca_file) if kafka.ssl_ca_file is not None else None
    context = ssl.create_default_context(cafile=ca)
    if kafka.ssl_cert_file is not None and kafka.ssl_key_file is not None:
        password = kafka.ssl_key_password.get_secret_value() or None
        context.load_cert_chain(kafka.ssl_cert_file, kafka.ssl_key_file, password)
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin,
    ``AIOKafkaClient``): where the brokers are and how to log in."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": str(kafka.security_protocol),
    }
    if _uses_ssl(kafka):
        options["ssl_context"] = ssl_context(kafka)
    if _uses_sasl(kafka):
        options["sasl_mechanism"] = str(kafka.sasl_mechanism)
        if kafka.sasl_mechanism == "OAUTHBEARER":
            options["sasl_oauth_token_provider"] = kafka.token_provider
        else:
            options["sasl_plain_username"] = kafka.sasl_username
            options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


async def verify(kafka: KafkaSettings) -> None:
    """Log in to the first bootstrap server that answers and raise
    :class:`ConfigError` if TLS or SASL refuse us; an unreachable cluster is
    left to the clients' own retries (it may be on its way up).

    Without TLS or SASL there is nothing to verify, and nothing is done.
    """
    if kafka.security_protocol == "PLAINTEXT":
        return
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    options = client_options(kafka)
    del options["bootstrap_servers"]
    for server in kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            async with asyncio.timeout(kafka.request_timeout_ms / 1000):
                conn = await create_conn(
                    host, int(port), request_timeout_ms=kafka.request_timeout_ms, **options
                )
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"Kafka at {server}: the broker's certificate is not trusted "
                f"({exc.verify_message}); check {_P}SSL_CA_FILE"
            ) from None
        except ssl.SSLError as exc:
            raise ConfigError(f"Kafka at {server}: TLS handshake failed ({exc.reason})") from None
        except KafkaError as exc:
            if _is_auth_failure(exc):
                raise ConfigError(
                    f"Kafka at {server} refused the SASL login ({kafka.sasl_mechanism}) of "
                    f"user {kafka.sasl_username!r}: {exc.__class__.__name__}; check "
                    f"{_P}SASL_USERNAME, {_P}SASL_PASSWORD and {_P}SASL_MECHANISM"
                ) from None
            continue
        except (OSError, TimeoutError):
            continue
        conn.close()
        return


def _is_auth_failure(exc: BaseException) -> bool:
    from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError

    return isinstance(exc, SaslAuthenticationFailed | UnsupportedSaslMechanismError)
