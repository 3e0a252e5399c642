/**
 * React hooks over the client (`@tidings/client/react`; react is an optional
 * peer dependency, needed only for this entry point).
 */
import { useCallback, useEffect, useRef, useState } from "react";
import { TidingsClient, type StartedRun } from "./client.js";
import type { TidingsEvent } from "./events.js";
import { initialRunState, reduceRun, type RunState } from "./reduce.js";
import type { SocketFactory } from "./stream.js";
import type { ResumeStore } from "./store.js";

export interface UseRunOptions {
  baseUrl: string | readonly string[];
  runId: string | null | undefined;
  /** A read token for the run (POST /v1/runs' stream_token), never an API key in a browser. */
  token: string;
  from?: "start" | "now" | string;
  /**
   * Keep the resume token and the reduced state here (e.g. `sessionResumeStore()`),
   * so a reload continues where it was instead of reading the run again.
   */
  store?: ResumeStore;
  WebSocket?: SocketFactory;
}

export interface UseRun {
  state: RunState;
  /** The events this page received (after a reload: those since it). */
  events: TidingsEvent[];
  connected: boolean;
  error: Error | null;
}

export function useRun({ baseUrl, runId, token, from, store, WebSocket }: UseRunOptions): UseRun {
  const key = Array.isArray(baseUrl) ? baseUrl.join(" ") : String(baseUrl);
  const [state, setState] = useState<RunState>(initialRunState);
  const [events, setEvents] = useState<TidingsEvent[]>([]);
  const [connected, setConnected] = useState(false);
  const [error, setError] = useState<Error | null>(null);

  useEffect(() => {
    if (!runId) return;
    const saved = store?.get(`state:${runId}`);
    let current: RunState = saved && store?.get(runId) ? (JSON.parse(saved) as RunState) : initialRunState();
    setState(current);
    setEvents([]);
    setError(null);
    const client = new TidingsClient({ baseUrl, token, WebSocket });
    const stream = client.stream(runId, { from, store, onConnection: setConnected });
    let live = true;
    (async () => {
      try {
        for await (const event of stream) {
          // Saved before the stream acks it (on its next pull): the saved state
          // always covers the saved token's position; repeats after a reload
          // are harmless to the reducer.
          current = reduceRun(current, event);
          store?.set(`state:${runId}`, JSON.stringify(current));
          if (!live) break;
          setState(current);
          setEvents((list) => [...list, event]);
        }
        store?.delete(`state:${runId}`);
      } catch (caught) {
        if (live) setError(caught as Error);
      } finally {
        if (live) setConnected(false);
      }
    })();
    return () => {
      live = false;
      stream.close();
    };
    // baseUrl is compared by value (key), not identity.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, runId, token, from, store, WebSocket]);

  return { state, events, connected, error };
}

export interface UseStartRun {
  startRun: (pipeline: string, input: unknown, options?: { idempotencyKey?: string }) => Promise<StartedRun>;
  run: StartedRun | null;
  pending: boolean;
  error: Error | null;
}

/** Start runs from a component. In a browser `token` must not be the API key: call your backend. */
export function useStartRun({ baseUrl, token }: { baseUrl: string | readonly string[]; token: string }): UseStartRun {
  const [run, setRun] = useState<StartedRun | null>(null);
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const client = useRef<TidingsClient | null>(null);
  const key = Array.isArray(baseUrl) ? baseUrl.join(" ") : String(baseUrl);
  const startRun = useCallback(
    async (pipeline: string, input: unknown, options?: { idempotencyKey?: string }) => {
      client.current = new TidingsClient({ baseUrl, token });
      setPending(true);
      setError(null);
      try {
        const started = await client.current.startRun(pipeline, input, options);
        setRun(started);
        return started;
      } catch (caught) {
        setError(caught as Error);
        throw caught;
      } finally {
        setPending(false);
      }
    },
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [key, token],
  );
  return { startRun, run, pending, error };
}
