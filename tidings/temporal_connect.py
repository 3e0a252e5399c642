"""The one way a Tidings process connects its Temporal client, from :class:`TemporalSettings`.

Worker, gateway, CLI (``tidings replay``), healthchecks and the bench all call
:func:`connect_temporal`, so TLS with a client certificate (mTLS) and Temporal
Cloud's API keys work for all of them at once.

With TLS on, a short TLS handshake is tried first: a plaintext port (the
usual mistake: an API key pointed at a local dev server) or a certificate the
server refuses then stops the process at start with a message naming the
variables, instead of a gRPC transport error later. A port that does not
answer at all is not an error here (the gateway connects lazily, and reports
Temporal down on ``/readyz`` until it is up).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, Interceptor
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from tidings.errors import ConfigError, Unavailable
from tidings.settings import TemporalSettings

PROBE_TIMEOUT_SECONDS = 5.0
# After the handshake, how long to listen for the server's alert: in TLS 1.3 a
# server refuses a missing or untrusted client certificate only after the
# client's handshake is done.
_ALERT_WAIT_SECONDS = 0.5

TLS_VARIABLES = (
    "TIDINGS_TEMPORAL_TLS, TIDINGS_TEMPORAL_TLS_CA_FILE, TIDINGS_TEMPORAL_TLS_CERT_FILE, "
    "TIDINGS_TEMPORAL_TLS_KEY_FILE, TIDINGS_TEMPORAL_TLS_SERVER_NAME, TIDINGS_TEMPORAL_API_KEY"
)


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """What ``Client.connect(tls=...)`` takes: False, True (system CAs) or the files."""
    if not settings.uses_tls:
        return False
    if not (settings.tls_ca_file or settings.tls_cert_file or settings.tls_server_name):
        return True
    return TLSConfig(
        server_root_ca_cert=settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None,
        client_cert=settings.tls_cert_file.read_bytes() if settings.tls_cert_file else None,
        client_private_key=settings.tls_key_file.read_bytes() if settings.tls_key_file else None,
        domain=settings.tls_server_name or None,
    )


async def connect_temporal(
    settings: TemporalSettings,
    *,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
    lazy: bool = False,
) -> Client:
    """A client for ``TIDINGS_TEMPORAL_ADDRESS`` in ``TIDINGS_TEMPORAL_NAMESPACE``.

    Raises :class:`ConfigError` when TLS is on and the server does not speak
    it or refuses this client's certificate; :class:`Unavailable` when a
    non-lazy connection fails otherwise.
    """
    if settings.uses_tls:
        await probe_tls(settings)
    options: dict[str, Any] = {
        "namespace": settings.namespace,
        "interceptors": list(interceptors),
        "tls": tls_config(settings),
        "lazy": lazy,
        "runtime": runtime,
    }
    if settings.api_key.get_secret_value():
        options["api_key"] = settings.api_key.get_secret_value()
    try:
        return await Client.connect(settings.address, **options)
    except RuntimeError as exc:
        # The SDK's message names the address and the cause, never the key.
        hint = f"; TLS is on, check {TLS_VARIABLES}" if settings.uses_tls else ""
        raise Unavailable(f"cannot reach Temporal at {settings.address}: {exc}{hint}") from None


def _ssl_context(settings: TemporalSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    context.set_alpn_protocols(["h2"])
    if settings.tls_cert_file and settings.tls_key_file:
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    return context


async def probe_tls(settings: TemporalSettings) -> None:
    """One TLS handshake with the frontend; see the module's docstring."""
    host, _, port = settings.address.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"TIDINGS_TEMPORAL_ADDRESS must be host:port, got {settings.address!r}")
    try:
        context = _ssl_context(settings)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files ({TLS_VARIABLES}): {exc}") from None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), PROBE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError):
        return  # not up (yet): the client's own connect reports it
    try:
        await asyncio.wait_for(
            writer.start_tls(context, server_hostname=settings.tls_server_name or host.strip("[]")),
            PROBE_TIMEOUT_SECONDS,
        )
        # A timeout: the server waits for our HTTP/2 preface, the handshake was accepted.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(1), _ALERT_WAIT_SECONDS)
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"Temporal at {settings.address} has a certificate this process does not trust "
            f"({exc.verify_message}); check TIDINGS_TEMPORAL_TLS_CA_FILE and "
            "TIDINGS_TEMPORAL_TLS_SERVER_NAME"
        ) from None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"Temporal at {settings.address} refused TLS ({_reason(exc)}): a plaintext port, "
            f"or a client certificate it does not accept; check {TLS_VARIABLES}"
        ) from None
    finally:
        # Not close(): after a failed handshake, waiting for a clean TLS close
        # can hang; a probe owes the server nothing.
        writer.transport.abort()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return type(exc).__name__ if not str(exc) else str(exc)
