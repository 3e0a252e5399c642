/** Reconnect delays: "full jitter" exponential backoff, capped (30 s by default). */
export const BACKOFF_BASE_MS = 250;
export const BACKOFF_CAP_MS = 30_000;
/** After 1013 (try again later) the next attempt waits at least this long. */
export const TRY_LATER_MS = 1_000;

/** The delay before reconnect number `attempt` (0-based): uniform in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  baseMs = BACKOFF_BASE_MS,
  capMs = BACKOFF_CAP_MS,
): number {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30)));
}

/** The replica to use for connection number `attempt`: each retry goes to the next one. */
export function replicaFor<T>(replicas: readonly T[], attempt: number): T {
  return replicas[attempt % replicas.length] as T;
}
