"""Centrifugo v6, built from the Go module proxy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.harness import (
    Server,
    server,
)
from bench.systems.base import (
    ALL_WORKLOADS,
    CACHE,
    System,
    collect,
    count_numbers,
    run_publisher,
)
from bench.wsclient import connect
from infra.ports import free_port

CENTRIFUGO_MODULE = "github.com/centrifugal/centrifugo/v6@v6.9.1"


def centrifugo_binary(say: Any = print) -> str:
    """The centrifugo binary: $CENTRIFUGO_BIN, on PATH, or built once with
    ``go install`` into bench/.cache/bin (from the Go module proxy)."""
    given = os.environ.get("CENTRIFUGO_BIN")
    if given:
        return given
    built = CACHE / "bin" / "centrifugo"
    if built.exists():
        return str(built)
    found = shutil.which("centrifugo")
    if found:
        return found
    go = shutil.which("go") or "/usr/local/go/bin/go"
    say(f"building centrifugo ({CENTRIFUGO_MODULE}) with go install; takes a few minutes once")
    built.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", CENTRIFUGO_MODULE],
        env={**os.environ, "GOBIN": str(built.parent), "GOFLAGS": "-mod=mod"},
        check=True,
        timeout=1500,
    )
    return str(built)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_jwt(secret: str, claims: dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(signature)}"


class Centrifugo(System):
    name = "centrifugo"
    title = "Centrifugo v6 (memory engine)"
    ready_marker = '"subscribe"'
    empty_ping = True
    workloads = ALL_WORKLOADS
    secret = "bench-hmac-secret-" + "x" * 16
    api_secret = "bench-api-key"

    def __init__(self, work: Path, binary: str) -> None:
        super().__init__(work)
        self.binary = binary
        self.token = hs256_jwt(self.secret, {"sub": "bench", "exp": int(time.time()) + 7200})

    def config(self) -> dict[str, Any]:
        # What bounds a recovery in Centrifugo v6 (centrifuge v0.38: client.go,
        # node.go, writer.go), each set so that D's 10,000 missed messages can
        # come back, as a user who needs that would configure it:
        # - channel history_size / history_ttl: the stream kept per channel;
        #   a gap older or longer than it cannot be recovered.
        # - client.recovery_max_publication_limit (default 300): recovery is
        #   all or nothing, so a gap longer than the limit gives
        #   ``recovered: false`` and no publications at all.
        # - client.queue_max_size (default 1 MiB): the recovered publications
        #   travel in the one subscribe reply (10,000 x ~300 B = ~3 MB here),
        #   and a client whose write queue holds more than this is closed
        #   with 3008 "slow" without flushing. Whether the writer had drained
        #   the reply first is a race: on an idle box it usually has, on a
        #   loaded one the socket closes and nothing arrives (the 10,000
        #   missing at full scale; 2,000 = ~0.6 MB fit). 16 MiB holds the
        #   reply with room; it only bounds memory for clients that lag.
        return {
            "log": {"level": "error"},
            "usage_stats": {"disabled": True},
            "http_server": {"address": "127.0.0.1", "port": self.port},
            "client": {
                "token": {"hmac_secret_key": self.secret},
                "allowed_origins": ["*"],
                "recovery_max_publication_limit": 100_000,
                "queue_max_size": 16 * 1024 * 1024,
            },
            "http_api": {"key": self.api_secret},
            "channel": {
                "without_namespace": {
                    "allow_subscribe_for_client": True,
                    "history_size": 20_000,
                    "history_ttl": "3600s",
                    "allow_recovery": True,
                    "force_recovery": True,
                }
            },
        }

    @contextmanager
    def running(self) -> Iterator[Server]:
        self.port = free_port()
        path = self.work / "centrifugo.json"
        path.write_text(json.dumps(self.config(), indent=2))
        argv = [self.binary, "--config", str(path)]
        env = {"GOMAXPROCS": str(os.cpu_count() or 2)}
        with server(argv, self.port, env, log=self.work / "centrifugo.log") as srv:
            self.server = srv
            yield srv

    def hello(self, channel: str, recover: dict[str, Any] | None = None) -> str:
        subscribe: dict[str, Any] = {"channel": channel}
        if recover:
            subscribe.update(recover)
        return (
            json.dumps({"id": 1, "connect": {"token": self.token}}, separators=(",", ":"))
            + "\n"
            + json.dumps({"id": 2, "subscribe": subscribe}, separators=(",", ":"))
        )

    def targets(self, channels: list[str]) -> list[tuple[str, str | None]]:
        return [("/connection/websocket", self.hello(ch)) for ch in channels]

    def publish(
        self, channels: list[str], count: int, rate: float, deadline: float
    ) -> dict[str, Any]:
        target = f"http://127.0.0.1:{self.port}"
        return run_publisher(
            "centrifugo", target, channels, count, rate, deadline, "--api-key", self.api_secret
        )

    def resume(self, events: int, timeout: float) -> dict[str, Any]:
        """Subscribe (history on), note epoch+offset, drop; publish; reconnect
        with ``recover: true`` from that position."""
        channel = "bench-resume-" + uuid.uuid4().hex[:6]

        async def go() -> dict[str, Any]:
            first, _ = await collect(
                self.port,
                "/connection/websocket",
                hello=self.hello(channel),
                ready_marker=b'"subscribe"',
                until=b'"subscribe"',
                expect=0,
                limit_s=30,
            )
            reply = next(
                json.loads(line) for p in first for line in p.split(b"\n") if b'"subscribe"' in line
            )["subscribe"]
            position = {
                "recover": True,
                "epoch": reply.get("epoch", ""),
                "offset": reply.get("offset", 0),
            }
            sent = await asyncio.to_thread(self.publish, [channel], events, 0, timeout)
            payloads, seconds, close_code = await self._recover(
                self.hello(channel, position), events, timeout
            )
            counted = count_numbers(payloads, events)
            out: dict[str, Any] = {
                **counted,
                "seconds": seconds,
                "sent": sent["sent"],
                "recovered_flag": any(b'"recovered":true' in p for p in payloads),
                "close_code": close_code,
            }
            if counted["missing"]:
                # Not a time to compare: say what stopped the recovery instead.
                out["seconds"] = None
                out["why"] = self._why_not(payloads, close_code, timeout)
            return out

        return asyncio.run(go())

    async def _recover(
        self, hello: str, expect: int, limit_s: float
    ) -> tuple[list[bytes], float, int | None]:
        """Like ``_collect``, but the wait also ends when the subscribe reply
        is in (recovered publications travel inside it, so nothing recovered
        comes later) or when the server closes the socket (a 3008 "slow" close
        would otherwise cost the whole timeout); the close code is returned."""
        payloads: list[bytes] = []
        numbered = 0
        done = asyncio.Event()
        finished_at = 0.0

        def keep(buf: bytes, start: int, end: int, _now: int) -> None:
            nonlocal numbered, finished_at
            payload = buf[start:end]
            payloads.append(payload)
            numbered += payload.count(b'"t_ns"')
            replied = payload.startswith(b'{"id":2') or b'\n{"id":2' in payload
            if (numbered >= expect or replied) and not done.is_set():
                finished_at = time.monotonic()
                done.set()

        started = time.monotonic()
        client = await connect(
            "127.0.0.1",
            self.port,
            "/connection/websocket",
            None,
            keep,
            open_timeout=limit_s,
            hello=hello,
            empty_ping=True,
        )
        arrived = asyncio.ensure_future(done.wait())
        ends: set[asyncio.Future[Any]] = {arrived, client.closed}
        await asyncio.wait(
            ends,
            timeout=max(0.01, started + limit_s - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        arrived.cancel()
        client.close()
        return payloads, (finished_at or time.monotonic()) - started, client.close_code

    @staticmethod
    def _why_not(payloads: list[bytes], close_code: int | None, timeout: float) -> str:
        reply = next(
            (line for p in payloads for line in p.split(b"\n") if line.startswith(b'{"id":2')),
            None,
        )
        if reply is None:
            if close_code == 3008:
                return (
                    "no subscribe reply: closed with 3008 slow, the recovery reply outgrew "
                    "client.queue_max_size"
                )
            if close_code is not None:
                return f"no subscribe reply: the server closed the socket with {close_code}"
            return f"no subscribe reply within {timeout:g} s"
        if reply.startswith(b'{"id":2,"error"'):
            return "subscribe failed: " + reply[:300].decode(errors="replace")
        if b'"recovered":true' not in reply:
            return (
                "recovered: false: the gap is not all in the channel history "
                "(history_size, history_ttl, recovery_max_publication_limit) or its epoch changed"
            )
        return f"recovered, but the socket ended early (close code {close_code})"
