/** The event envelope of docs/protocol.md (schema 1). Unknown types must be ignored. */
export interface TidingsEvent {
  schema: number;
  /** Deterministic: the same logical event has the same id on every redelivery. */
  id: string;
  type: string;
  tenant: string;
  run_id: string;
  step: string | null;
  /** The activity attempt that produced the event (1-based). */
  attempt: number;
  /** Monotonic within (run, step, attempt). */
  seq: number;
  ts: string;
  data: Record<string, unknown>;
  /** The event's position in the run's log, as the stream sent it. */
  cursor?: string;
}
