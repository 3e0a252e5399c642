"""Keep secrets out of server logs.

Browsers pass the API key as ``?access_token=`` on the WebSocket URL, and
uvicorn logs every request's path *with* its query string (access log, and
the ``"WebSocket /path?query" [accepted]`` lines). This filter rewrites such
records before any handler sees them. The gateway's own log lines name the
path only, never the query or a header.
"""

from __future__ import annotations

import logging

from tidings.observability import REDACTED, redact_credentials

__all__ = ["LOGGERS", "REDACTED", "RedactSecrets", "install", "redact"]

LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def redact(text: str) -> str:
    """Credential query parameters (any name ending in ``token``, ``resume``,
    ``api_key`` …) and resume tokens under any name (``from=``, ``after=``)."""
    return redact_credentials(text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install(loggers: tuple[str, ...] = LOGGERS) -> None:
    """Attach the filter to uvicorn's loggers (after uvicorn configured logging)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
