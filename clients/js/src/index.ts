export { TidingsClient, type ClientOptions, type StartedRun } from "./client.js";
export { RunStream, type SocketFactory, type SocketLike, type StreamOptions, type StreamConfig } from "./stream.js";
export { reduceRun, initialRunState, type RunState, type RunStatus, type StepState, type StepStatus, type ToolCallState } from "./reduce.js";
export { TidingsError, AuthError, StreamExpiredError } from "./errors.js";
export { backoffDelay, replicaFor, BACKOFF_CAP_MS, TRY_LATER_MS } from "./backoff.js";
export { sessionResumeStore, type ResumeStore } from "./store.js";
export type { TidingsEvent } from "./events.js";
