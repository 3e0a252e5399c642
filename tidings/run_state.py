"""``reduce_run``: a run's events folded into the state a UI shows.

The same rules as the JavaScript client's ``reduceRun`` (clients/js/src/reduce.ts);
the shared recorded streams in ``clients/fixtures/`` keep the two in agreement.

- The discard rule (docs/protocol.md): once an attempt of a step is known to
  be replaced (``step.retrying``, or any event of a later attempt), its partial
  text is dropped and its late events are ignored.
- Repeats are harmless: tokens are deduplicated by their ``seq`` within the
  attempt, every other event is idempotent, and within an attempt a step's
  status only moves forward. So a client that restores a saved state and
  resumes from an earlier position converges on the same state.
- Agent steps (docs/protocol.md): ``step.thinking`` text is appended to the
  step's ``thinking`` (deduplicated by seq, as tokens are), ``step.tool_call``
  adds an entry to its ``tools`` list (once per ``call_id``) and
  ``step.tool_result`` fills that entry's ``content`` and ``truncated``. Both
  fields appear only on steps that had such events, and belong to the
  current attempt like its text.
- Sub-steps (docs/protocol.md): a step named ``<step>.<rest>`` (``ask.model-1``)
  is a sub-step of ``<step>`` (the name before the last dot; a fallback,
  ``draft.fallback``, is a step of its own, not a sub-step). It is
  reduced as any step (its own attempts and discard rule) and carries
  ``parent``; its parent lists it in ``substeps`` (in order of first sight)
  and shows its work: the parent's ``text`` is its own text followed by its
  sub-steps' kept text, in order, and its ``tools`` its own followed by
  theirs. A parent's own retry keeps its sub-steps (a retried delegating step
  attaches to the same workflow). ``own`` is bookkeeping, present once a run
  has sub-steps: a parent's own text and tools.
- Once the run is over (any terminal event: completed, failed, cancelled,
  terminated, timed out) its state is final.

Pure: the state given is never changed; a new one is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RunState = dict[str, Any]

_FINISHED = {
    "run.completed": "COMPLETED",
    "run.failed": "FAILED",
    "run.cancelled": "CANCELLED",
    # Temporal closed the run (docs/protocol.md, "Terminal events").
    "run.terminated": "TERMINATED",
    "run.timed_out": "TIMED_OUT",
}
_BOOKKEEPING = frozenset({"token_seq", "own"})
_OVER = frozenset(_FINISHED.values())
# Within one attempt a step's status only moves up this order.
_RANK = {"retrying": 0, "running": 1, "waiting": 1, "requested": 1, "completed": 2, "failed": 2}
_STEP_STATUS = {
    "step.started": "running",
    "step.progress": "running",
    "step.token": "running",
    "step.thinking": "running",
    "step.tool_call": "running",
    "step.tool_result": "running",
    "step.requested": "requested",
    "step.completed": "completed",
    "step.failed": "failed",
}


def initial_run_state() -> RunState:
    """Before any event. ``token_seq`` is bookkeeping (the last token applied per step)."""
    return {
        "status": "PENDING",
        "waiting": None,
        "steps": {},
        "output": None,
        "error": None,
        "token_seq": {},
    }


def visible(state: RunState) -> dict[str, Any]:
    """The state without its bookkeeping: what both clients agree on."""
    return {k: v for k, v in state.items() if k not in _BOOKKEEPING}


def reduce_run(state: RunState | None, event: Mapping[str, Any]) -> RunState:
    s = state if state is not None else initial_run_state()
    data = event.get("data") or {}
    over = s["status"] in _OVER
    kind = event.get("type")
    finished = _FINISHED.get(str(kind))
    if finished is not None:
        if over:
            return s
        return {
            **s,
            "status": finished,
            "waiting": None,
            "output": data.get("output") if finished == "COMPLETED" else s["output"],
            "error": _error(data) if finished in ("FAILED", "TERMINATED") else s["error"],
        }
    if kind == "run.started":
        return s if over or s["status"] != "PENDING" else {**s, "status": "RUNNING"}
    if kind == "run.waiting":
        step = data.get("step") if isinstance(data.get("step"), str) else event.get("step")
        known = s["steps"].get(step) if step else None
        if over or (known is not None and _RANK[known["status"]] == 2):
            return s
        return {**s, "status": "WAITING", "waiting": step or None}
    step_name = event.get("step")
    # A run that is over is final: a step's late events (an activity still
    # winding down after a termination) do not change it.
    return _reduce_step(s, step_name, event, data) if step_name and not over else s


def _error(data: Mapping[str, Any]) -> Any:
    for key in ("error", "message", "reason"):
        if data.get(key) is not None:
            return data[key]
    return None


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _with_tool(tools: list[dict[str, Any]], kind: Any, data: Mapping[str, Any]) -> Any:
    """``tools`` with a call added or its result filled in, keyed by ``call_id``
    (a repeat changes nothing; a result seen before its call still shows)."""
    call_id = data.get("call_id")
    known = next((t for t in tools if t["call_id"] == call_id), None)
    if kind == "step.tool_call":
        call = {"tool": data.get("tool"), "args": data.get("args")}
        if known is not None:
            return [{**t, **call} if t is known else t for t in tools]
        return [*tools, {"call_id": call_id, **call, "content": None, "truncated": False}]
    result = {"content": data.get("content"), "truncated": bool(data.get("truncated"))}
    if known is None:
        return [*tools, {"call_id": call_id, "tool": data.get("tool"), "args": None, **result}]
    return [{**t, **result} if t is known else t for t in tools]


def _reduce_step(
    s: RunState, name: str, event: Mapping[str, Any], data: Mapping[str, Any]
) -> RunState:
    prev: dict[str, Any] | None = s["steps"].get(name)
    own: dict[str, Any] | None = s.get("own", {}).get(name)
    if prev is not None and own is not None:
        # A parent's events apply to its own text and tools, not to the
        # sub-steps' shown with them.
        prev = _without_tools({**prev, "text": own["text"], "tools": own["tools"]})
    attempt = event.get("attempt") or 1
    seq: int = s["token_seq"].get(name, -1)
    kind = event.get("type")
    if kind == "step.retrying":
        failed = _number(data.get("discard_attempt"))
        failed = attempt if failed is None else failed
        following = _number(data.get("next_attempt"))
        following = failed + 1 if following is None else following
        if prev is not None and (prev["attempt"] > failed or _RANK[prev["status"]] == 2):
            return s
        new: dict[str, Any] = {
            "status": "retrying",
            "attempt": following,
            "text": "",
            "output": None,
        }
        seq = -1
    else:
        status = _STEP_STATUS.get(str(kind))
        if status is None or (prev is not None and attempt < prev["attempt"]):
            return s  # an unknown type, or a replaced attempt
        if kind == "step.started" and data.get("kind") == "approval":
            status = "waiting"
        fresh = prev is None or attempt > prev["attempt"]
        base: dict[str, Any] = (
            {"status": status, "attempt": attempt, "text": "", "output": None}
            if fresh or prev is None
            else prev
        )
        if fresh:
            seq = -1
        keep = _RANK[status] < _RANK[base["status"]]
        new = {**base, "status": base["status"] if keep else status}
        if kind in ("step.token", "step.thinking"):
            if event.get("seq", 0) <= seq:
                return s  # a repeat
            seq = event.get("seq", 0)
            if isinstance(data.get("text"), str):
                field = "text" if kind == "step.token" else "thinking"
                new[field] = base.get(field, "") + data["text"]
        if kind in ("step.tool_call", "step.tool_result"):
            new["tools"] = _with_tool(base.get("tools", []), kind, data)
        if kind == "step.completed":
            new["output"] = data.get("output")
    parent = parent_step(name)
    if parent is not None:
        new["parent"] = parent
    steps = {**s["steps"], name: new}
    owns = dict(s.get("own", {}))
    if prev is not None and "substeps" in prev:
        new["substeps"] = prev["substeps"]
        owns[name] = {"text": new["text"], "tools": new.get("tools")}
        steps[name] = _shown(new, owns[name], steps)
    if parent is not None:
        above = steps.get(parent) or {"status": "running", "attempt": 1, "text": "", "output": None}
        if parent not in owns:
            owns[parent] = {"text": above["text"], "tools": above.get("tools")}
        subs = above.get("substeps", [])
        steps[parent] = _shown(
            {**above, "substeps": subs if name in subs else [*subs, name]}, owns[parent], steps
        )
    ended = _RANK[new["status"]] == 2 and s["waiting"] == name
    return {
        **s,
        "steps": steps,
        # Only once there are sub-steps: a state without them keeps its old shape.
        **({"own": owns} if owns else {}),
        "token_seq": {**s["token_seq"], name: seq},
        "waiting": None if ended else s["waiting"],
        "status": "RUNNING" if ended and s["status"] == "WAITING" else s["status"],
    }


def parent_step(name: str) -> str | None:
    """The step a sub-step works for (docs/protocol.md, "Sub-steps").

    ``ask.model-1`` -> ``ask``; ``draft.fallback.model-2`` -> ``draft.fallback``;
    a plain step or a fallback (``draft.fallback``, a step of its own) -> None."""
    parent, dot, rest = name.rpartition(".")
    return parent if dot and parent and rest != "fallback" else None


def _without_tools(step: dict[str, Any]) -> dict[str, Any]:
    """``step`` without a ``tools`` field that is None (a step shows ``tools``
    only once it had a tool event)."""
    return (
        step if step.get("tools") is not None else {k: v for k, v in step.items() if k != "tools"}
    )


def _shown(
    parent: dict[str, Any], own: Mapping[str, Any], steps: Mapping[str, Any]
) -> dict[str, Any]:
    """A parent as clients show it: its own text and tools, then its sub-steps'."""
    subs = [steps[n] for n in parent["substeps"] if n in steps]
    tools = [*(own["tools"] or []), *(t for sub in subs for t in sub.get("tools", []))]
    shown = {k: v for k, v in parent.items() if k != "tools"}
    shown["text"] = own["text"] + "".join(sub["text"] for sub in subs)
    if own["tools"] is not None or tools:
        shown["tools"] = tools
    return shown
