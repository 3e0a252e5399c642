"""A tiny stand-in gateway for developing and testing the dashboard page.

It serves the real page (``gateway.web.mount_dashboard``) and speaks the public
contract (docs/protocol.md) with scripted runs: REST (start, list, get,
signals) and the WebSocket stream with tokens, cursors, acks, resume and
``end``. Events are real envelopes (:class:`tidings.events.Event`). A resumed
socket restarts after the last *acked* cursor, so events sent but not acked
come again, as from a real gateway: the page must drop them by id.

Test controls (not part of the contract): ``POST /_fake/drop`` aborts every
WebSocket's TCP connection (the browser sees 1006), ``POST /_fake/expire``
forgets every resume session (the next resume gets 4410), ``GET /_fake/stats``.
Each run also closes its first socket that passes the middle of the draft
with 4408 (too slow), once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from gateway.web import CLIENT_DIR, mount_dashboard
from tests.support import free_port
from tidings.events import Event

API_KEYS = {"dev-key-demo": "demo"}
TEMPORAL_UI = "http://127.0.0.1:8233"
CLOSING_SEQ = 1_000_000
TOKEN_PACE = 0.015

FAILED_ATTEMPT_TOKENS = ["This ", "partial ", "draft ", "must ", "vanish ", "when ", "retried."]
# Markup-looking and non-ASCII text on purpose: it must show as text, unchanged.
ANSWER = (
    "Resume tokens <b>name</b> a position & a session: a client that drops comes back "
    "with its token and gets every event after its last ack, in order. Re-sent events "
    "carry the same id, so the client drops them — naïve clients repeat text, ours ✓ "
    "never does.\nSecond line: <script>alert(1)</script> stays text. [resume-tokens]"
)


THOUGHT = "I will search the corpus."
TOOL_CALL = {"call_id": "search-1", "tool": "search", "args": {"query": "resume <b>tokens</b>"}}
TOOL_RESULT = {
    "call_id": "search-1",
    "tool": "search",
    "content": '[{"doc": "resume-tokens", "text": "<b>not bold</b>"}]',
    "truncated": True,
}


# What the delegated step "cite" says, one part per sub-step.
CITE_TEXT = ("Cited: ", "resume-tokens.")


def answer_tokens() -> list[str]:
    words = ANSWER.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@dataclass
class FakeRun:
    run_id: str
    tenant: str
    pipeline: str
    input: dict[str, Any]
    started_at: float = field(default_factory=time.time)
    status: str = "RUNNING"
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    decision: asyncio.Future[str] | None = None
    waiting_for: str | None = None
    result: dict[str, Any] | None = None
    too_slow_at: int | None = None  # close the first socket passing this index with 4408
    finished: bool = False

    def emit(
        self, type_: str, step: str | None, attempt: int, seq: int, data: dict[str, Any]
    ) -> None:
        event = Event(type_, self.tenant, self.run_id, step, attempt, seq, data)
        self.events.append(event.to_dict())
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class Session:
    run_id: str
    next_index: int = 0  # after the last ack: where a resume starts
    max_sent: int = -1
    expired: bool = False


@dataclass
class Stats:
    connections: int = 0
    resumes: int = 0
    acks: int = 0
    resent: int = 0
    closes: list[int] = field(default_factory=list)
    bad_acks: int = 0


class FakeGateway:
    def __init__(self, client_dir: Path = CLIENT_DIR) -> None:
        self.client_dir = client_dir
        self.runs: dict[str, FakeRun] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.sessions: dict[str, Session] = {}
        self.stats = Stats()
        self.server: uvicorn.Server | None = None
        self._ids = itertools.count(1)
        self.app = self._build()

    # -- scripted run

    async def _script(self, run: FakeRun) -> None:
        question = str(run.input.get("question", ""))
        run.emit("run.started", None, 1, 0, {"pipeline": run.pipeline, "input": run.input})
        await asyncio.sleep(0.05)
        run.emit("step.started", "plan", 1, 0, {})
        run.emit("step.progress", "plan", 1, 1, {"sub_questions": [question]})
        run.emit("step.completed", "plan", 1, 2, {"output": {"sub_questions": [question]}})
        run.emit("step.started", "search[0]", 1, 0, {"branch": 0})
        run.emit("step.progress", "search[0]", 1, 1, {"hits": ["resume-tokens"]})
        run.emit("step.completed", "search[0]", 1, 2, {"output": {}})
        run.emit("step.started", "draft", 1, 0, {})
        for seq, token in enumerate(FAILED_ATTEMPT_TOKENS, start=1):
            run.emit("step.token", "draft", 1, seq, {"text": token})
            await asyncio.sleep(TOKEN_PACE)
        # Agent events of the attempt that fails: discarded with its text.
        after = len(FAILED_ATTEMPT_TOKENS) + 1
        run.emit("step.thinking", "draft", 1, after, {"text": "a wrong thought"})
        run.emit("step.tool_call", "draft", 1, after + 1, {**TOOL_CALL, "call_id": "dead"})
        run.emit(
            "step.retrying",
            "draft",
            1,
            CLOSING_SEQ,
            {"discard_attempt": 1, "next_attempt": 2},
        )
        run.emit("step.started", "draft", 2, 0, {})
        # An agent step thinks and calls a tool before its text (seqs 1-3).
        run.emit("step.thinking", "draft", 2, 1, {"text": THOUGHT})
        run.emit("step.tool_call", "draft", 2, 2, TOOL_CALL)
        run.emit("step.tool_result", "draft", 2, 3, TOOL_RESULT)
        tokens = answer_tokens()
        for seq, token in enumerate(tokens, start=4):
            if seq == len(tokens) // 2:
                run.too_slow_at = len(run.events)
            run.emit("step.token", "draft", 2, seq, {"text": token})
            await asyncio.sleep(TOKEN_PACE)
        text = "".join(tokens)
        run.emit("step.completed", "draft", 2, len(tokens) + 4, {"output": {"text": text}})
        # A delegated step: its work streams as sub-steps (docs/protocol.md), a
        # retried model request's partial text discarded by its own retry.
        run.emit("step.started", "cite", 1, 0, {})
        run.emit("step.started", "cite.model-1", 1, 0, {})
        run.emit("step.token", "cite.model-1", 1, 1, {"text": CITE_TEXT[0]})
        run.emit("step.tool_call", "cite.model-1", 1, 2, {**TOOL_CALL, "call_id": "cite"})
        run.emit("step.completed", "cite.model-1", 1, 3, {"output": None})
        run.emit("step.started", "cite.model-2", 1, 0, {})
        run.emit("step.token", "cite.model-2", 1, 1, {"text": "a wrong citation"})
        run.emit("step.retrying", "cite.model-2", 1, CLOSING_SEQ, {"discard_attempt": 1})
        run.emit("step.started", "cite.model-2", 2, 0, {})
        run.emit("step.token", "cite.model-2", 2, 1, {"text": CITE_TEXT[1]})
        run.emit("step.completed", "cite.model-2", 2, 2, {"output": None})
        run.emit("step.completed", "cite", 1, 1, {"output": {"text": "".join(CITE_TEXT)}})
        review: dict[str, Any] = {}
        if run.input.get("require_approval"):
            run.emit("step.started", "review", 1, 0, {"kind": "approval"})
            run.decision = asyncio.get_running_loop().create_future()
            run.waiting_for = "review"
            run.status = "WAITING"
            run.emit("run.waiting", None, 1, 1, {"step": "review", "signals": ["approve"]})
            decision = await run.decision
            run.waiting_for = None
            run.status = "RUNNING"
            if decision != "approve":
                run.emit("step.failed", "review", 1, CLOSING_SEQ + 1, {"error": "rejected"})
                run.status = "FAILED"
                run.emit("run.failed", None, 1, 2, {"error": "rejected by reviewer"})
                run.finished = True
                run.changed.set()
                return
            review = {"approved": True}
            run.emit("step.completed", "review", 1, 1, {"output": review})
        output = {
            "question": question,
            "answer": text,
            "sources": ["resume-tokens"],
            "provider": "fake",
            "reviewed": bool(review),
        }
        run.emit("step.started", "final", 1, 0, {})
        run.emit("step.completed", "final", 1, 1, {"output": output})
        run.result = output
        run.status = "COMPLETED"
        run.emit("run.completed", None, 1, 3, {"output": output})
        run.finished = True
        run.changed.set()

    # -- controls

    def drop_sockets(self) -> int:
        """Abort every WebSocket's TCP connection: no close frame, as a crash would."""
        assert self.server is not None
        dropped = 0
        for connection in list(self.server.server_state.connections):
            if "WebSocket" in type(connection).__name__:
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
                    dropped += 1
        return dropped

    # -- app

    def _tenant(self, request: Request) -> str | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return API_KEYS.get(key) if scheme.lower() == "bearer" else None

    def _detail(self, run: FakeRun, request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/").replace("http://", "ws://")
        return {
            "run_id": run.run_id,
            "pipeline": run.pipeline,
            "status": run.status,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started_at)),
            "closed_at": None,
            "waiting_for": run.waiting_for,
            "result": run.result,
            "error": None,
            "stream_url": f"{base}/v1/runs/{run.run_id}/stream",
            "temporal_ui_url": f"{TEMPORAL_UI}/namespaces/default/workflows/{run.run_id}",
        }

    def _build(self) -> FastAPI:
        app = FastAPI()
        mount_dashboard(app, self.client_dir)

        @app.post("/v1/runs")
        async def start(request: Request) -> JSONResponse:
            tenant = self._tenant(request)
            if tenant is None:
                return error(401, "unauthorized", "missing or invalid API key")
            body = await request.json()
            if body.get("pipeline") != "research":
                return error(400, "unknown_pipeline", "no such pipeline")
            key = request.headers.get("idempotency-key")
            if key is not None and (tenant, key) in self.by_key:
                run = self.runs[self.by_key[(tenant, key)]]
                return JSONResponse(self._detail(run, request), status_code=200)
            digest = hashlib.sha256(f"{tenant}{key}{next(self._ids)}".encode()).hexdigest()
            run = FakeRun(f"{tenant}-{digest[:32]}", tenant, "research", body.get("input") or {})
            self.runs[run.run_id] = run
            if key is not None:
                self.by_key[(tenant, key)] = run.run_id
            task = asyncio.create_task(self._script(run))
            task.add_done_callback(lambda _: None)
            app.state.tasks = [*getattr(app.state, "tasks", []), task]
            detail = self._detail(run, request)
            keep = ("run_id", "status", "stream_url", "temporal_ui_url")
            return JSONResponse({k: detail[k] for k in keep}, status_code=201)

        @app.get("/v1/runs")
        async def list_runs(request: Request) -> JSONResponse:
            tenant = self._tenant(request)
            if tenant is None:
                return error(401, "unauthorized", "missing or invalid API key")
            runs = sorted(self.runs.values(), key=lambda r: -r.started_at)
            items = [self._detail(r, request) for r in runs if r.tenant == tenant]
            return JSONResponse({"runs": items, "next_page": None})

        @app.get("/v1/runs/{run_id}")
        async def get_run(run_id: str, request: Request) -> JSONResponse:
            tenant = self._tenant(request)
            if tenant is None:
                return error(401, "unauthorized", "missing or invalid API key")
            run = self.runs.get(run_id)
            if run is None or run.tenant != tenant:
                return error(404, "not_found", "no such run")
            return JSONResponse(self._detail(run, request))

        @app.post("/v1/runs/{run_id}/signals/{name}")
        async def signal(run_id: str, name: str, request: Request) -> JSONResponse:
            tenant = self._tenant(request)
            if tenant is None:
                return error(401, "unauthorized", "missing or invalid API key")
            run = self.runs.get(run_id)
            if run is None or run.tenant != tenant:
                return error(404, "not_found", "no such run")
            if run.decision is None or run.decision.done():
                return error(409, "conflict", "the run is not waiting")
            run.decision.set_result(name)
            return JSONResponse({"run_id": run_id, "signal": name, "status": run.status}, 202)

        @app.post("/_fake/drop")
        async def drop() -> dict[str, int]:
            return {"dropped": self.drop_sockets()}

        @app.post("/_fake/expire")
        async def expire() -> dict[str, int]:
            for session in self.sessions.values():
                session.expired = True
            return {"expired": len(self.sessions)}

        @app.get("/_fake/stats")
        async def stats() -> dict[str, Any]:
            return self.stats.__dict__

        @app.websocket("/v1/runs/{run_id}/stream")
        async def stream(ws: WebSocket, run_id: str) -> None:
            await ws.accept()
            self.stats.connections += 1
            code = await self._serve(ws, run_id)
            self.stats.closes.append(code)
            with contextlib.suppress(Exception):
                await ws.close(code)

        return app

    async def _refuse(self, ws: WebSocket, code: int, name: str, message: str) -> int:
        await ws.send_text(json.dumps({"kind": "error", "code": name, "message": message}))
        return code

    async def _serve(self, ws: WebSocket, run_id: str) -> int:
        tenant = API_KEYS.get(ws.query_params.get("access_token", ""))
        if tenant is None:
            return await self._refuse(ws, 4401, "unauthorized", "missing or invalid API key")
        run = self.runs.get(run_id)
        if run is None or run.tenant != tenant:
            return await self._refuse(ws, 4404, "unknown_run", "unknown run")
        token = ws.query_params.get("resume")
        if token is not None:
            session = self.sessions.get(token.removeprefix("fake."))
            if session is None or session.expired or session.run_id != run_id:
                return await self._refuse(ws, 4410, "token_expired", "resume session expired")
            sid = token.removeprefix("fake.")
            self.stats.resumes += 1
        else:
            sid = f"s{next(self._ids)}"
            session = self.sessions[sid] = Session(run_id)
        await ws.send_text(json.dumps({"kind": "token", "token": f"fake.{sid}"}))
        position = session.next_index
        sent_max = -1
        acks = asyncio.create_task(self._read_acks(ws, session, lambda: sent_max))
        try:
            caught_up = False
            while True:
                if acks.done():
                    return acks.result()
                if position < len(run.events):
                    if position == run.too_slow_at:
                        run.too_slow_at = None
                        # Events still in flight when a gateway gives up on a slow
                        # reader: never acked, so the resume sends them again (a
                        # client that acks each event at once leaves nothing
                        # unacked to resend at a drop).
                        for index in range(position, min(position + 3, len(run.events))):
                            frame = {
                                "kind": "event",
                                "cursor": f"0:{index}",
                                "event": run.events[index],
                            }
                            await ws.send_text(json.dumps(frame))
                            session.max_sent = max(session.max_sent, index)
                        return await self._refuse(ws, 4408, "too_slow", "resume later")
                    if position <= session.max_sent:
                        self.stats.resent += 1  # sent before, never acked
                    frame = {
                        "kind": "event",
                        "cursor": f"0:{position}",
                        "event": run.events[position],
                    }
                    await ws.send_text(json.dumps(frame))
                    session.max_sent = max(session.max_sent, position)
                    sent_max = position
                    position += 1
                    continue
                if not caught_up:
                    caught_up = True
                    await ws.send_text(json.dumps({"kind": "caught_up"}))
                if run.finished:
                    await ws.send_text(json.dumps({"kind": "end", "status": run.status}))
                    return 1000
                changed = asyncio.create_task(run.changed.wait())
                await asyncio.wait({changed, acks}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return 1006
        finally:
            acks.cancel()
            with contextlib.suppress(BaseException):
                await acks

    async def _read_acks(self, ws: WebSocket, session: Session, sent_max: Any) -> int:
        while True:
            try:
                message = await ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return 1006
            try:
                cursor = str(json.loads(message)["ack"])
                index = int(cursor.split(":")[1])
            except (ValueError, KeyError, IndexError, TypeError):
                self.stats.bad_acks += 1
                return 4400
            if index > sent_max():
                self.stats.bad_acks += 1
                return 4400  # a cursor never sent on this socket
            self.stats.acks += 1
            session.next_index = max(session.next_index, index + 1)


@contextmanager
def serve_fake(client_dir: Path = CLIENT_DIR) -> Iterator[tuple[FakeGateway, str]]:
    """The fake on a free port, in uvicorn on its own thread and loop."""
    fake = FakeGateway(client_dir)
    port = free_port()
    config = uvicorn.Config(
        fake.app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    fake.server = server
    thread = threading.Thread(target=server.run, name=f"fake-gateway-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake gateway did not start")
        time.sleep(0.01)
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
