/**
 * One run's event stream across reconnects: an AsyncIterable of envelopes.
 *
 * It resumes with the latest resume token after any drop (to the next
 * replica, after a full-jitter backoff capped at 30 s), acks what the consumer
 * has taken, drops repeats by id, waits out 1013, ends when the run ends (the
 * `end` frame), and throws AuthError (4401/4403/4404/4400) or
 * StreamExpiredError (4410) when a retry cannot help.
 */
import { backoffDelay, replicaFor, TRY_LATER_MS } from "./backoff.js";
import { AuthError, StreamExpiredError, TidingsError } from "./errors.js";
import type { TidingsEvent } from "./events.js";
import type { ResumeStore } from "./store.js";

/** The subset of the WebSocket API the stream uses (browsers', Node's, or `ws`'s). */
export interface SocketLike {
  readonly readyState: number;
  onmessage: ((message: { data: unknown }) => void) | null;
  onclose: ((close: { code: number; reason: string }) => void) | null;
  onerror: ((error: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = new (url: string) => SocketLike;

export interface StreamOptions {
  /** Where a new subscription starts: the run's first event (default), now, or after a cursor. */
  from?: "start" | "now" | string;
  /** Keeps the resume token (e.g. `sessionResumeStore()`), so a reload resumes. */
  store?: ResumeStore;
  /** Called with true when a connection is open (its token arrived), false when it drops. */
  onConnection?: (open: boolean) => void;
  /** Called when a connection has sent every stored event (`caught_up`): live from now on. */
  onCaughtUp?: () => void;
  /** Called before each reconnect: the close code that ended the connection, the wait, the attempt (1-based). */
  onRetry?: (retry: { code: number; delayMs: number; attempt: number }) => void;
}

export interface StreamConfig extends StreamOptions {
  baseUrls: readonly string[];
  runId: string;
  token: string;
  WebSocket: SocketFactory;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const OPEN = 1;
const FATAL = new Set([4400, 4401, 4403, 4404, 1009]);

export class RunStream implements AsyncIterable<TidingsEvent> {
  /** The latest resume token the gateway issued (null before the first). */
  resumeToken: string | null;
  /** Counters, for UIs and tests. */
  readonly stats = { connections: 0, duplicates: 0, acks: 0 };
  private readonly seen = new Set<string>();
  private socket: SocketLike | null = null;
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(private readonly config: StreamConfig) {
    this.resumeToken = config.store?.get(config.runId) ?? null;
  }

  /** Stop: the iteration ends (a pending `next()` resolves done). */
  close(): void {
    this.closed = true;
    this.socket?.close(1000);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<TidingsEvent, void, undefined> {
    const { random = Math.random, sleep = delay } = this.config;
    let failures = 0;
    let connection = 0;
    try {
      while (!this.closed) {
        const base = replicaFor(this.config.baseUrls, connection++);
        const outcome = yield* this.connect(base);
        if (outcome.ended || this.closed) return;
        if (outcome.progressed) failures = 0;
        const { code, reason } = outcome;
        if (code === 4410) {
          this.config.store?.delete(this.config.runId);
          throw new StreamExpiredError(reason || "the stream cannot resume where it was", "token_expired", code);
        }
        if (FATAL.has(code)) {
          const Error_ = code === 4401 || code === 4403 ? AuthError : TidingsError;
          throw new Error_(reason || `stream refused (${code})`, outcome.errorCode || String(code), code);
        }
        let wait = backoffDelay(failures++, random);
        if (code === 1013) wait = Math.max(wait, TRY_LATER_MS * (0.5 + random()));
        this.config.onRetry?.({ code, delayMs: wait, attempt: failures });
        await sleep(wait);
      }
    } finally {
      this.closed = true;
      this.socket?.close(1000);
    }
  }

  private url(base: string): string {
    const params = new URLSearchParams({ access_token: this.config.token });
    if (this.resumeToken) params.set("resume", this.resumeToken);
    else params.set("from", this.config.from ?? "start");
    const root = base.replace(/^http/, "ws").replace(/\/+$/, "");
    return `${root}/v1/runs/${encodeURIComponent(this.config.runId)}/stream?${params}`;
  }

  private async *connect(base: string) {
    const frames: string[] = [];
    let close: { code: number; reason: string } | null = null;
    let ended = false;
    let progressed = false;
    let errorCode = "";
    let cursor: string | null = null;
    let acked: string | null = null;
    const socket = (this.socket = new this.config.WebSocket(this.url(base)));
    this.stats.connections++;
    socket.onmessage = (message) => {
      frames.push(String(message.data));
      this.wake?.();
    };
    socket.onclose = (event) => {
      close = { code: event.code, reason: event.reason };
      this.wake?.();
    };
    socket.onerror = () => {};
    const ack = () => {
      if (cursor !== null && cursor !== acked && socket.readyState === OPEN) {
        socket.send(JSON.stringify({ ack: cursor }));
        acked = cursor;
        this.stats.acks++;
      }
    };
    while (!this.closed) {
      const raw = frames.shift();
      if (raw === undefined) {
        if (close) break;
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      let frame: Record<string, unknown>;
      try {
        frame = JSON.parse(raw);
      } catch {
        continue;
      }
      if (frame.kind === "token") {
        this.resumeToken = String(frame.token);
        this.config.onConnection?.(true);
        this.config.store?.set(this.config.runId, this.resumeToken);
      } else if (frame.kind === "event") {
        const event = frame.event as TidingsEvent;
        const at = String(frame.cursor);
        progressed = true;
        if (event.id && this.seen.has(event.id)) {
          this.stats.duplicates++;
        } else {
          if (event.id) this.seen.add(event.id);
          yield { ...event, cursor: at };
        }
        // The consumer has taken it: ackable. Acks go out once the queue is drained.
        cursor = at;
        if (!frames.length) ack();
      } else if (frame.kind === "caught_up") {
        progressed = true;
        this.config.onCaughtUp?.();
      } else if (frame.kind === "end") {
        ack();
        ended = true;
        this.config.store?.delete(this.config.runId);
        socket.close(1000);
        break;
      } else if (frame.kind === "error") {
        errorCode = String(frame.code ?? "");
      }
    }
    this.config.onConnection?.(false);
    const { code, reason } = (close ?? { code: 1000, reason: "" }) as { code: number; reason: string };
    return { ended, progressed, code, reason, errorCode };
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
