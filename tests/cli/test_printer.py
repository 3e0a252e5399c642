"""How ``tidings watch`` renders a run: plain lines off a terminal, a redrawn
progress bar on one, steps done inferred for fan-outs and skipped steps."""

from __future__ import annotations

import io

import pytest

from cli.watch import HeldTokens, Printer, Progress, base_step
from tidings.events import Event

pytestmark = pytest.mark.unit

RUN = "t-run"
STAGES = [["plan"], ["search"], ["draft"], ["review"], ["final"]]


def run_events() -> list[Event]:
    def ev(type_: str, step: str | None = None, seq: int = 0, **data: object) -> Event:
        return Event(type_, "t", RUN, step, 1, seq, dict(data))

    return [
        ev("run.started", pipeline="research", steps=[s[0] for s in STAGES], stages=STAGES),
        ev("step.started", "plan"),
        ev("step.completed", "plan", 1),
        ev("step.started", "search[0]"),
        ev("step.started", "search[1]"),
        ev("step.completed", "search[1]", 1),
        ev("step.completed", "search[0]", 1),
        ev("step.started", "draft"),
        ev("step.token", "draft", 1, text="Hello "),
        ev("step.token", "draft", 2, text="world."),
        ev("step.completed", "draft", 3),
        ev("step.started", "final"),
        ev("step.completed", "final", 1),
        ev("run.completed", seq=1),
    ]


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    printer = Printer(out, as_json=False)
    for event in run_events():
        printer.show(event)
    printer.finish("COMPLETED")
    assert out.getvalue().splitlines() == [
        "run started: research, 5 steps",
        "step plan started (attempt 1)",
        "step plan completed (attempt 1) [1/5]",
        "step search[0] started (attempt 1)",
        "step search[1] started (attempt 1)",
        "step search[1] completed (attempt 1)",
        "step search[0] completed (attempt 1)",
        "step search completed [2/5]",
        "step draft started (attempt 1)",
        "  draft | Hello world.",
        "step draft completed (attempt 1) [3/5]",
        "step review skipped [4/5]",
        "step final started (attempt 1)",
        "step final completed (attempt 1) [5/5]",
        "run completed [5/5 steps]",
    ]


def test_a_terminal_gets_a_bar_that_never_mixes_with_tokens() -> None:
    out = io.StringIO()
    printer = Printer(out, as_json=False, tty=True, color=True)
    events = run_events()
    for event in events[:8]:
        printer.show(event)
    drawn = out.getvalue()
    # The bar is the last line, redrawn in place: 2 of 5 done, draft running.
    assert drawn.endswith("\x1b[2K\r[" + "#" * 10 + "." * 14 + "] 2/5  draft")
    printer.show(events[8])  # a token: the bar is wiped first, the text goes inline
    assert out.getvalue()[len(drawn) :] == "\r\x1b[2K  draft | Hello "
    for event in events[9:]:
        printer.show(event)
    printer.finish("COMPLETED")
    text = out.getvalue()
    assert "\x1b[32mcompleted\x1b[0m" in text and "\x1b[2mskipped\x1b[0m" in text
    assert text.endswith("\r\x1b[2Krun completed [5/5 steps]\n")


def test_json_is_one_envelope_per_line() -> None:
    out = io.StringIO()
    printer = Printer(out, as_json=True, tty=True)
    for event in run_events():
        printer.show(event)
    printer.finish("COMPLETED")
    lines = out.getvalue().splitlines()
    assert len(lines) == len(run_events())
    assert all(line.startswith('{"schema": 1') for line in lines)


def test_progress_without_a_plan_counts_what_it_sees() -> None:
    progress = Progress()
    progress.update(Event("step.started", "t", RUN, "a", 1, 0))
    progress.update(Event("step.completed", "t", RUN, "a", 1, 1))
    assert progress.total is None and progress.count() == "1"


def test_base_step() -> None:
    assert base_step("search[12]") == "search"
    assert base_step("draft.fallback") == "draft"
    assert base_step("search[0].fallback") == "search"
    assert base_step("plain") == "plain"


def test_held_tokens_keep_only_the_output_of_steps_in_flight() -> None:
    def ev(type_: str, step: str | None, attempt: int = 1, seq: int = 0, **data: object) -> Event:
        return Event(type_, "t", RUN, step, attempt, seq, dict(data))

    held = HeldTokens()
    history = [
        ev("step.started", "plan"),
        ev("step.token", "plan", text="done "),
        ev("step.completed", "plan", seq=2),
        ev("step.started", "draft"),
        ev("step.token", "draft", text="lost "),
        ev("step.retrying", "draft", seq=2, discard_attempt=1, next_attempt=2),
        ev("step.started", "draft", 2),
        ev("step.token", "draft", 2, 1, text="Hello "),
        ev("step.token", "other", 1, 1, text="side "),
        ev("step.failed", "other", seq=2),
        ev("step.token", "draft", 2, 2, text="wor"),
    ]
    passed = [event for event in history if not held.hold(event)]
    assert all(event.type != "step.token" for event in passed)
    assert [t.data["text"] for t in held.release()] == ["Hello ", "wor"]
    assert held.release() == []
    held.hold(ev("step.token", "draft", text="x"))
    held.hold(ev("run.cancelled", None))
    assert held.release() == []


def test_a_watch_joining_mid_step_prints_the_step_from_its_start() -> None:
    events = run_events()
    out = io.StringIO()
    printer = Printer(out, as_json=False)
    held = HeldTokens()
    draft_token = next(i for i, e in enumerate(events) if e.type == "step.token")
    for event in events[: draft_token + 1]:  # history: up to the draft's first token
        if not held.hold(event):
            printer.show(event)
    for token in held.release():  # caught_up
        printer.show(token)
    for event in events[draft_token + 1 :]:  # live
        printer.show(event)
    assert "  draft | Hello world." in out.getvalue().splitlines()


def test_a_waiting_run_names_the_commands_that_answer_it() -> None:
    out = io.StringIO()
    waiting = Event(
        "run.waiting", "t", RUN, None, 1, 0, {"step": "review", "signals": ["approve", "reject"]}
    )
    Printer(out, as_json=False).show(waiting)
    assert out.getvalue().splitlines() == [
        f"run waiting: review needs approve or reject (tidings approve|reject {RUN})"
    ]


def test_an_agent_step_shows_its_thinking_tool_calls_collapsed_results_and_text() -> None:
    def ev(type_: str, seq: int, **data: object) -> Event:
        return Event(type_, "t", RUN, "answer", 1, seq, dict(data))

    long_result = '[{"doc": "resume-tokens",\n "text": "' + "x" * 300 + '"}]'
    out = io.StringIO()
    printer = Printer(out, as_json=False)
    for event in [
        ev("step.started", 0),
        ev("step.thinking", 1, text="I will "),
        ev("step.thinking", 2, text="search."),
        ev("step.tool_call", 3, call_id="c1", tool="search", args={"query": "why?"}),
        ev("step.tool_result", 4, call_id="c1", tool="search", content=long_result, truncated=True),
        ev("step.token", 5, text="Because "),
        ev("step.token", 6, text="of tokens."),
        ev("step.completed", 7),
    ]:
        printer.show(event)
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "step answer started (attempt 1)",
        "  answer (thinking) | I will search.",
        'step answer calls search({"query": "why?"})',
    ]
    # One line, at most 100 characters of content, marked as cut.
    assert lines[3].startswith('step answer got search: [{"doc": "resume-tokens", "text": "xxx')
    assert lines[3].endswith("... (cut)") and len(lines[3]) == len("step answer got search: ") + 106
    assert lines[4:] == ["  answer | Because of tokens.", "step answer completed (attempt 1) [1]"]


def test_history_thinking_is_held_like_tokens() -> None:
    held = HeldTokens()
    thought = Event("step.thinking", "t", RUN, "answer", 1, 1, {"text": "hmm"})
    assert held.hold(thought)
    assert held.release() == [thought]


def test_sub_steps_print_indented_under_their_step_and_do_not_count() -> None:
    def ev(type_: str, step: str | None, seq: int = 0, **data: object) -> Event:
        return Event(type_, "t", RUN, step, 1, seq, dict(data))

    out = io.StringIO()
    printer = Printer(out, as_json=False)
    for event in [
        ev("run.started", None, pipeline="openai", steps=["ask"], stages=[["ask"]]),
        ev("step.started", "ask"),
        ev("step.started", "ask.model-1"),
        ev("step.tool_call", "ask.model-1", 1, call_id="c1", tool="search", args={"q": "dune"}),
        ev("step.completed", "ask.model-1", 2),
        ev("step.started", "ask.tools-2"),
        ev("step.tool_result", "ask.tools-2", 1, call_id="c1", tool="search", content="Herbert"),
        ev("step.completed", "ask.tools-2", 2),
        ev("step.started", "ask.model-3"),
        ev("step.token", "ask.model-3", 1, text="Frank "),
        ev("step.token", "ask.model-3", 2, text="Herbert."),
        ev("step.completed", "ask.model-3", 3),
        ev("step.completed", "ask", 1),
        ev("run.completed", None, 1),
    ]:
        printer.show(event)
    printer.finish("COMPLETED")
    assert out.getvalue().splitlines() == [
        "run started: openai, 1 steps",
        "step ask started (attempt 1)",
        "  step ask.model-1 started (attempt 1)",
        '  step ask.model-1 calls search({"q": "dune"})',
        "  step ask.model-1 completed (attempt 1)",
        "  step ask.tools-2 started (attempt 1)",
        "  step ask.tools-2 got search: Herbert",
        "  step ask.tools-2 completed (attempt 1)",
        "  step ask.model-3 started (attempt 1)",
        "    ask.model-3 | Frank Herbert.",
        "  step ask.model-3 completed (attempt 1)",
        "step ask completed (attempt 1) [1/1]",
        "run completed [1/1 steps]",
    ]
    assert printer.progress.running == [] and printer.progress.done == {"ask"}
