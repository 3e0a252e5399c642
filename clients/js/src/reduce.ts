/**
 * `reduceRun`: a run's events folded into the state a UI shows. Pure: it never
 * mutates its input, so it suits React's useReducer.
 *
 * It applies the discard rule of docs/protocol.md: once an attempt of a step
 * is known to be replaced (`step.retrying`, or any event of a later attempt),
 * that attempt's partial text is dropped and its late events are ignored. It
 * tolerates what a resumed stream or a reload can deliver: repeats (tokens
 * are deduplicated by their seq within the attempt; every other event is
 * idempotent and a step's status only moves forward within an attempt) and
 * out-of-phase events (a later attempt seen before the retry announcement).
 * Sub-steps (docs/protocol.md): a step named `<step>.<rest>` (`ask.model-1`)
 * is a sub-step of `<step>` (the name before the last dot; a fallback,
 * `draft.fallback`, is a step of its own, not a sub-step). It is
 * reduced as any step and carries `parent`; its parent lists it in `substeps`
 * and shows its work: the parent's `text` is its own text followed by its
 * sub-steps' kept text, in order, and its `tools` its own followed by theirs.
 * Once the run is over (any terminal event) its state is final.
 * tidings/client.py's `reduce_run` implements the same rules; the shared
 * fixtures in clients/fixtures/ keep them in agreement.
 */
import type { TidingsEvent } from "./events.js";

export type RunStatus =
  | "PENDING"
  | "RUNNING"
  | "WAITING"
  | "COMPLETED"
  | "FAILED"
  | "CANCELLED"
  | "TERMINATED"
  | "TIMED_OUT";
export type StepStatus = "running" | "waiting" | "requested" | "retrying" | "completed" | "failed";

/** One tool call of an agent step and, once it returned, its (possibly cut) result. */
export interface ToolCallState {
  call_id: unknown;
  tool: unknown;
  args: unknown;
  content: unknown;
  truncated: boolean;
}

export interface StepState {
  status: StepStatus;
  /** The newest attempt seen; `text`, `output`, `thinking` and `tools` are that attempt's. */
  attempt: number;
  text: string;
  output: unknown;
  /** Agent steps only: the reasoning streamed so far (`step.thinking`). */
  thinking?: string;
  /** Agent steps only: tool calls in order, with their results (`step.tool_call`, `step.tool_result`). */
  tools?: ToolCallState[];
  /** Delegated steps only: the sub-steps that did its work, in order of first sight. */
  substeps?: string[];
  /** Sub-steps only: the step whose work this is (the name before the last dot). */
  parent?: string;
}

/** A parent's own text and tools, before its sub-steps' are added to them. */
interface Own {
  text: string;
  tools: ToolCallState[] | null;
}

export interface RunState {
  status: RunStatus;
  /** The step a run waits on (an approval), else null. */
  waiting: string | null;
  steps: Record<string, StepState>;
  output: unknown;
  error: unknown;
  /** The seq of the last token applied to each step's current attempt (dedupe). */
  tokenSeq: Record<string, number>;
  /** Each parent's own text and tools (bookkeeping: its shown ones include its
   * sub-steps'); present once a run has sub-steps. */
  own?: Record<string, Own>;
}

export function initialRunState(): RunState {
  return { status: "PENDING", waiting: null, steps: {}, output: null, error: null, tokenSeq: {} };
}

const FINISHED: Record<string, RunStatus> = {
  "run.completed": "COMPLETED",
  "run.failed": "FAILED",
  "run.cancelled": "CANCELLED",
  // Temporal closed the run (docs/protocol.md, "Terminal events").
  "run.terminated": "TERMINATED",
  "run.timed_out": "TIMED_OUT",
};
// Within one attempt a step's status only moves up this order.
const RANK: Record<StepStatus, number> = {
  retrying: 0,
  running: 1,
  waiting: 1,
  requested: 1,
  completed: 2,
  failed: 2,
};
const STEP_STATUS: Record<string, StepStatus> = {
  "step.started": "running",
  "step.progress": "running",
  "step.token": "running",
  "step.thinking": "running",
  "step.tool_call": "running",
  "step.tool_result": "running",
  "step.requested": "requested",
  "step.completed": "completed",
  "step.failed": "failed",
};

const isOver = (status: RunStatus) => status !== "PENDING" && status !== "RUNNING" && status !== "WAITING";
const num = (value: unknown): number | undefined => (typeof value === "number" ? value : undefined);

export function reduceRun(state: RunState | undefined, event: TidingsEvent): RunState {
  const s = state ?? initialRunState();
  const data = (event.data ?? {}) as Record<string, unknown>;
  const over = isOver(s.status);
  const finished = FINISHED[event.type];
  if (finished) {
    if (over) return s;
    return {
      ...s,
      status: finished,
      waiting: null,
      output: finished === "COMPLETED" ? (data.output ?? null) : s.output,
      error:
        finished === "FAILED" || finished === "TERMINATED"
          ? (data.error ?? data.message ?? data.reason ?? null)
          : s.error,
    };
  }
  if (event.type === "run.started") {
    return over || s.status !== "PENDING" ? s : { ...s, status: "RUNNING" };
  }
  if (event.type === "run.waiting") {
    const step = typeof data.step === "string" ? data.step : event.step;
    const known = step ? s.steps[step] : undefined;
    if (over || (known && RANK[known.status] === 2)) return s;
    return { ...s, status: "WAITING", waiting: step ?? null };
  }
  // A run that is over is final: a step's late events (an activity still
  // winding down after a termination) do not change it.
  return event.step && !over ? reduceStep(s, event.step, event, data) : s;
}

/** `tools` with a call added or its result filled in, keyed by `call_id` (a repeat
 * changes nothing; a result seen before its call still shows). */
function withTool(tools: ToolCallState[], kind: string, data: Record<string, unknown>): ToolCallState[] {
  const callId = data.call_id ?? null;
  const known = tools.find((t) => t.call_id === callId);
  if (kind === "step.tool_call") {
    const call = { tool: data.tool ?? null, args: data.args ?? null };
    if (known) return tools.map((t) => (t === known ? { ...t, ...call } : t));
    return [...tools, { call_id: callId, ...call, content: null, truncated: false }];
  }
  const result = { content: data.content ?? null, truncated: Boolean(data.truncated) };
  if (!known) return [...tools, { call_id: callId, tool: data.tool ?? null, args: null, ...result }];
  return tools.map((t) => (t === known ? { ...t, ...result } : t));
}

/** `ask.model-1` -> `ask`; `draft.fallback.model-2` -> `draft.fallback`; a plain
 * step or a fallback (`draft.fallback`, a step of its own) -> undefined. */
function parentOf(name: string): string | undefined {
  const dot = name.lastIndexOf(".");
  return dot > 0 && name.slice(dot + 1) !== "fallback" ? name.slice(0, dot) : undefined;
}

/** `step` without its `tools` field when that is unset (a step shows `tools` only once it had a tool event). */
function withoutNullTools(step: StepState): StepState {
  if (step.tools !== undefined) return step;
  const { tools: _dropped, ...rest } = step;
  return rest;
}

/** A parent as clients show it: its own text and tools, then its sub-steps'. */
function shown(parent: StepState, own: Own, steps: Record<string, StepState>): StepState {
  const subs = (parent.substeps ?? []).filter((n) => n in steps).map((n) => steps[n]);
  const tools = [...(own.tools ?? []), ...subs.flatMap((sub) => sub.tools ?? [])];
  const { tools: _dropped, ...rest } = parent;
  const result: StepState = { ...rest, text: own.text + subs.map((sub) => sub.text).join("") };
  if (own.tools !== null || tools.length > 0) result.tools = tools;
  return result;
}

function reduceStep(s: RunState, name: string, event: TidingsEvent, data: Record<string, unknown>): RunState {
  const ownBefore = s.own?.[name];
  // A parent's events apply to its own text and tools, not to the sub-steps'
  // shown with them.
  const prev =
    s.steps[name] && ownBefore
      ? withoutNullTools({ ...s.steps[name], text: ownBefore.text, tools: ownBefore.tools ?? undefined })
      : s.steps[name];
  const attempt = event.attempt || 1;
  let next: StepState;
  let seq = s.tokenSeq[name] ?? -1;
  if (event.type === "step.retrying") {
    const failed = num(data.discard_attempt) ?? attempt;
    const following = num(data.next_attempt) ?? failed + 1;
    if (prev && (prev.attempt > failed || RANK[prev.status] === 2)) return s;
    next = { status: "retrying", attempt: following, text: "", output: null };
    seq = -1;
  } else {
    let status = STEP_STATUS[event.type];
    if (!status || (prev && attempt < prev.attempt)) return s; // unknown type, or a replaced attempt
    if (event.type === "step.started" && data.kind === "approval") status = "waiting";
    const fresh = !prev || attempt > prev.attempt;
    const base: StepState = fresh ? { status, attempt, text: "", output: null } : prev;
    if (fresh) seq = -1;
    next = { ...base, status: RANK[status] >= RANK[base.status] ? status : base.status };
    if (event.type === "step.token" || event.type === "step.thinking") {
      if (event.seq <= seq) return s; // a repeat
      seq = event.seq;
      if (typeof data.text === "string") {
        if (event.type === "step.token") next.text = base.text + data.text;
        else next.thinking = (base.thinking ?? "") + data.text;
      }
    }
    if (event.type === "step.tool_call" || event.type === "step.tool_result") {
      next.tools = withTool(base.tools ?? [], event.type, data);
    }
    if (event.type === "step.completed") next.output = data.output ?? null;
  }
  const parent = parentOf(name);
  if (parent !== undefined) next.parent = parent;
  const steps = { ...s.steps, [name]: next };
  const own = { ...(s.own ?? {}) };
  if (prev?.substeps) {
    next.substeps = prev.substeps;
    own[name] = { text: next.text, tools: next.tools ?? null };
    steps[name] = shown(next, own[name], steps);
  }
  if (parent !== undefined) {
    const above: StepState = steps[parent] ?? { status: "running", attempt: 1, text: "", output: null };
    if (!(parent in own)) own[parent] = { text: above.text, tools: above.tools ?? null };
    const subs = above.substeps ?? [];
    steps[parent] = shown({ ...above, substeps: subs.includes(name) ? subs : [...subs, name] }, own[parent], steps);
  }
  const tokenSeq = { ...s.tokenSeq, [name]: seq };
  const ended = RANK[next.status] === 2 && s.waiting === name;
  return {
    ...s,
    steps,
    tokenSeq,
    // Only once there are sub-steps: a state without them keeps its old shape.
    ...(Object.keys(own).length > 0 ? { own } : {}),
    waiting: ended ? null : s.waiting,
    status: ended && s.status === "WAITING" ? "RUNNING" : s.status,
  };
}
