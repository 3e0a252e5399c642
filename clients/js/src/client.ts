/** `TidingsClient`: REST calls and streams against one gateway or a list of replicas. */
import { TidingsError, AuthError } from "./errors.js";
import { RunStream, type SocketFactory, type StreamOptions } from "./stream.js";

export interface ClientOptions {
  /** The gateway, or its replicas: REST fails over and streams rotate across them. */
  baseUrl: string | readonly string[];
  /** An API key (servers) or a read token (browsers: see docs/clients.md). */
  token: string;
  /** A WebSocket class where there is no global one (Node 20 without --experimental-websocket). */
  WebSocket?: SocketFactory;
  fetch?: typeof fetch;
}

export interface StartedRun {
  runId: string;
  /** A read token for this run only: hand it to a browser instead of the API key. */
  streamToken: string | null;
  streamUrl: string;
  temporalUiUrl: string;
}

export class TidingsClient {
  readonly baseUrls: readonly string[];
  private readonly options: ClientOptions;

  constructor(options: ClientOptions) {
    this.baseUrls = typeof options.baseUrl === "string" ? [options.baseUrl] : [...options.baseUrl];
    if (!this.baseUrls.length) throw new TypeError("baseUrl is empty");
    this.options = options;
  }

  /** Start a run; the same `idempotencyKey` always answers the same run. */
  async startRun(pipeline: string, input: unknown, options: { idempotencyKey?: string } = {}): Promise<StartedRun> {
    const headers: Record<string, string> = {};
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    const body = (await this.request("POST", "/v1/runs", { pipeline, input }, headers)) as Record<string, string>;
    return {
      runId: body.run_id as string,
      streamToken: body.stream_token ?? null,
      streamUrl: body.stream_url as string,
      temporalUiUrl: body.temporal_ui_url as string,
    };
  }

  /** GET/POST any route of docs/protocol.md; errors become TidingsError (AuthError on 401/403). */
  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<unknown> {
    const fetch_ = this.options.fetch ?? fetch;
    const init: RequestInit = { method, headers: { ...headers, Authorization: `Bearer ${this.options.token}` } };
    if (body !== undefined) {
      (init.headers as Record<string, string>)["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let lastError: unknown;
    // A replica that cannot be reached is skipped; an answer, even an error, is final.
    for (const base of this.baseUrls) {
      let response: Response;
      try {
        response = await fetch_(base.replace(/\/+$/, "") + path, init);
      } catch (error) {
        lastError = error;
        continue;
      }
      const data = (await response.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
      if (response.ok) return data;
      const { code = String(response.status), message = `HTTP ${response.status}` } = data?.error ?? {};
      const Error_ = response.status === 401 || response.status === 403 ? AuthError : TidingsError;
      throw new Error_(message, code, response.status);
    }
    throw new TidingsError(`no gateway reachable (${String(lastError)})`, "unreachable", 0);
  }

  /** The run's events as an AsyncIterable (see RunStream). */
  stream(runId: string, options: StreamOptions = {}): RunStream {
    const WebSocket_ = this.options.WebSocket ?? (globalThis as { WebSocket?: SocketFactory }).WebSocket;
    if (!WebSocket_) {
      throw new TypeError("no WebSocket: pass one in the options, or run Node 20 with --experimental-websocket");
    }
    return new RunStream({ ...options, baseUrls: this.baseUrls, runId, token: this.options.token, WebSocket: WebSocket_ });
  }
}
