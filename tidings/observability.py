"""Logs and traces, set up the same way by every entry point (worker, gateway).

Logs: one JSON object per line — ``ts``, ``level``, ``logger``, ``message``
and, where known, ``run_id``, ``tenant``, ``trace_id`` (and ``exc`` for a
traceback) — so a log shipper needs no parsing rules, and a run's lines can
be found by its id. A filter on the handler redacts every configured secret
(API keys, token secrets, the model key, the Redis password) and
credential-shaped text (``Bearer …``, ``access_token=…``) from every record,
whoever logged it.

Traces: W3C trace context. The REST call opens a span; Temporal's tracing
interceptor carries it through the workflow into each activity; the emitter
writes ``traceparent`` into each Kafka record's headers; a gateway that sends
the record on a socket opens a child span with :func:`span_from_headers`.

This module imports no plane: entry points call it, planes use its helpers.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tidings.settings import Settings, TracingSettings

TRACER_NAME: Final = "tidings"
REDACTED: Final = "[redacted]"

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tidings_run_id", default=None)
_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tidings_tenant", default=None)

# Credential-shaped text, whatever its value: bearer tokens, credential query
# parameters (``resume_token=`` as well as ``token=``: a name *ending* in one),
# the password in a URL's userinfo, and a resume token itself under any name
# (``from=``, ``after=``, a message quoting it): base64url of its JSON claims
# (so ``eyJ``, the encoding of ``{"``), a dot, base64url of its HMAC
# (gateway/stream/tokens.py). A JWT has the same head and is hidden too.
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
    re.compile(
        r"(?i)((?<![a-z0-9])[a-z0-9_]*(?:access_token|api_key|apikey|token|resume|password)=)"
        r"[^&\s\"']+"
    ),
    re.compile(r"(://[^:/@\s]*:)[^@\s]+(@)"),
    re.compile(r"()eyJ[A-Za-z0-9_-]{8,}(?:\.|%2[Ee])[A-Za-z0-9_-]{16,}"),
)


def redact_credentials(text: str) -> str:
    """``text`` without credential-shaped parts (the patterns above)."""
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + REDACTED + (m.group(2) if m.re.groups > 1 else ""), text
        )
    return text


# ----------------------------------------------------------------- logging --


def bind_log_context(*, run_id: str | None = None, tenant: str | None = None) -> None:
    """Name the run and tenant in every log line of the current task from here on."""
    if run_id is not None:
        _run_id.set(run_id)
    if tenant is not None:
        _tenant.set(tenant)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in (
            ("run_id", getattr(record, "run_id", None) or _run_id.get()),
            ("tenant", getattr(record, "tenant", None) or _tenant.get()),
            ("trace_id", current_trace_id()),
        ):
            if value:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # already rendered (and redacted) by RedactingFilter
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback) without any secret in it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole;
        # very short values would redact ordinary words, so they are skipped.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return redact_credentials(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            record.exc_info = None  # the formatter prints exc_text, now clean
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold, for :class:`RedactingFilter`."""
    values = list(settings.tenants.api_keys)
    values.append(settings.gateway.token_secret.get_secret_value())
    values += [s.get_secret_value() for s in settings.gateway.token_secrets_previous]
    values.append(settings.model.api_key.get_secret_value())
    values.append(settings.redis.password.get_secret_value())
    values.append(settings.temporal.api_key.get_secret_value())
    redis_url = settings.redis.url.get_secret_value()
    match = re.search(r"://[^:/@]*:([^@]+)@", redis_url)
    if match:
        values.append(match.group(1))
    return [value for value in values if value]


def setup_logging(settings: Settings, *, stream: Any = None) -> logging.Handler:
    """Replace the root logger's handlers with one that writes ``TIDINGS_LOG_FORMAT``
    lines to stderr through the redacting filter; returns that handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.runtime.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets_of(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.runtime.log_level.upper())
    return handler


# ----------------------------------------------------------------- tracing --


def setup_tracing(settings: TracingSettings, service: str) -> TracerProvider:
    """Install the process's tracer provider (once; later calls return it).

    Without ``TIDINGS_TRACING_OTLP_ENDPOINT`` spans are still made, so trace
    ids reach logs and headers, but nothing is exported.
    """
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        return existing
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    if settings.otlp_endpoint:
        # Imported here: only a process that exports pays for the exporter.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint))
        )
    trace.set_tracer_provider(provider)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextlib.contextmanager
def start_span(
    name: str, *, kind: trace.SpanKind = trace.SpanKind.INTERNAL, **attributes: str
) -> Iterator[trace.Span]:
    """A span, current for the ``with`` body; attributes are prefixed ``tidings.``."""
    with tracer().start_as_current_span(
        name, kind=kind, attributes={f"tidings.{k}": v for k, v in attributes.items()}
    ) as span:
        yield span


_HEADERS_CACHE: dict[tuple[int, int, int], list[tuple[str, bytes]]] = {}
_HEADERS_CACHE_MAX = 1024


def trace_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka headers (``traceparent``, ``tracestate``).

    Cached by span: an activity streams thousands of tokens under one span, and
    the propagator's formatting is most of an emit's overhead otherwise.
    """
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return []
    key = (span.trace_id, span.span_id, int(span.trace_flags))
    cached = _HEADERS_CACHE.get(key)
    if cached is None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        cached = [(name, value.encode()) for name, value in carrier.items()]
        if len(_HEADERS_CACHE) >= _HEADERS_CACHE_MAX:
            _HEADERS_CACHE.clear()  # spans end; old entries are never asked for again
        _HEADERS_CACHE[key] = cached
    return list(cached)


def _carrier(headers: Sequence[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers or ():
        if value is None:
            continue
        out[key.lower()] = value.decode("latin-1") if isinstance(value, bytes) else value
    return out


@contextlib.contextmanager
def span_from_headers(
    headers: Sequence[tuple[str, bytes | str | None]] | None,
    name: str,
    *,
    kind: trace.SpanKind = trace.SpanKind.CONSUMER,
    **attributes: str,
) -> Iterator[trace.Span]:
    """A span whose parent is the trace context in a Kafka record's headers
    (e.g. ``ConsumerRecord.headers``), current for the ``with`` body.

    For the stream plane's socket send: ``with span_from_headers(record.headers,
    "ws.send", tenant=t, run_id=r): await send(frame)``. A record without
    ``traceparent`` yields a span that starts a new trace.
    """
    parent = propagate.extract(_carrier(headers))
    token = otel_context.attach(parent)
    try:
        with start_span(name, kind=kind, **attributes) as span:
            yield span
    finally:
        otel_context.detach(token)
