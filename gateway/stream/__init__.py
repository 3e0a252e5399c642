"""The WebSocket stream: stateless fan-out of a run's events with Redis-backed resume.

See ``service.py`` for how an app mounts it and ``README.md`` beside it for
the protocol choices beyond docs/protocol.md.
"""

from gateway.cursor import Cursor, CursorError

from .directory import RunDirectory, RunInfo
from .metrics import StreamMetrics
from .run_index import RunIndex
from .service import StreamService
from .tokens import Claims, TokenSigner

__all__ = [
    "Claims",
    "Cursor",
    "CursorError",
    "RunDirectory",
    "RunIndex",
    "RunInfo",
    "StreamMetrics",
    "StreamService",
    "TokenSigner",
]
