// The stream's own logic against a scripted socket (the real-stack tests are
// in tests/web/test_js_client.py): dedupe, acks, resume, rotation, 1013, typed errors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AuthError, StreamExpiredError, TidingsClient } from "../dist/index.js";

const event = (seq, type = "step.token") => ({
  schema: 1, id: `id-${seq}`, type, tenant: "demo", run_id: "r", step: "s", attempt: 1, seq, ts: "", data: { text: String(seq) },
});

// Each connection runs the next script: script(socket) sends frames / closes.
function scripted(scripts) {
  const opened = [];
  class FakeSocket {
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 1;
      this.sent = [];
      opened.push(this);
      const script = scripts[opened.length - 1];
      setTimeout(() => script(this), 0);
    }
    frame(value) { this.onmessage?.({ data: JSON.stringify(value) }); }
    send(data) { this.sent.push(JSON.parse(data)); }
    close(code = 1000, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.onclose?.({ code, reason }), 0);
    }
    drop(code, reason = "") { this.close(code, reason); }
  }
  return { FakeSocket, opened };
}

const noSleep = { waits: [], sleep(ms) { this.waits.push(ms); return Promise.resolve(); } };

async function collect(stream) {
  const seen = [];
  for await (const e of stream) seen.push(e.seq);
  return seen;
}

test("resumes across drops and replicas: nothing lost, nothing repeated, in order, acked", async () => {
  const { FakeSocket, opened } = scripted([
    (ws) => { ws.frame({ kind: "token", token: "t1" }); [1, 2, 3].forEach((n) => ws.frame({ kind: "event", cursor: `0:${n}`, event: event(n) })); ws.drop(1006); },
    (ws) => { ws.frame({ kind: "token", token: "t2" }); [3, 4].forEach((n) => ws.frame({ kind: "event", cursor: `0:${n}`, event: event(n) })); ws.drop(1001); },
    (ws) => { ws.frame({ kind: "token", token: "t3" }); [4, 5].forEach((n) => ws.frame({ kind: "event", cursor: `0:${n}`, event: event(n) })); ws.frame({ kind: "end", status: "COMPLETED" }); },
  ]);
  const sleeper = { ...noSleep, waits: [] };
  const client = new TidingsClient({ baseUrl: ["http://a", "http://b"], token: "rt", WebSocket: FakeSocket });
  const stream = client.stream("r", { sleep: sleeper.sleep.bind(sleeper) });
  assert.deepEqual(await collect(stream), [1, 2, 3, 4, 5]);
  assert.equal(stream.stats.duplicates, 2);
  assert.deepEqual(opened.map((ws) => ws.url.host), ["a", "b", "a"]);
  assert.equal(opened[0].url.searchParams.get("from"), "start");
  assert.equal(opened[0].url.searchParams.get("access_token"), "rt");
  assert.equal(opened[1].url.searchParams.get("resume"), "t1");
  assert.equal(opened[2].url.searchParams.get("resume"), "t2");
  assert.deepEqual(opened[2].sent.at(-1), { ack: "0:5" });
  assert.equal(sleeper.waits.length, 2);
  assert.ok(sleeper.waits.every((ms) => ms < 30_000));
});

test("1013 is waited out (at least half a second) and 4410 / 4403 are typed errors", async () => {
  const { FakeSocket } = scripted([
    (ws) => { ws.frame({ kind: "error", code: "rate_limited" }); ws.drop(1013, "full"); },
    (ws) => { ws.frame({ kind: "error", code: "token_expired" }); ws.drop(4410, "expired"); },
  ]);
  const sleeper = { ...noSleep, waits: [] };
  const client = new TidingsClient({ baseUrl: "http://a", token: "k", WebSocket: FakeSocket });
  const stream = client.stream("r", { sleep: sleeper.sleep.bind(sleeper) });
  await assert.rejects(collect(stream), (error) => error instanceof StreamExpiredError && error.status === 4410);
  assert.ok(sleeper.waits[0] >= 500);

  const refused = scripted([(ws) => { ws.frame({ kind: "error", code: "forbidden" }); ws.drop(4403, "not yours"); }]);
  const other = new TidingsClient({ baseUrl: "http://a", token: "k", WebSocket: refused.FakeSocket }).stream("r");
  await assert.rejects(collect(other), (error) => error instanceof AuthError && error.code === "forbidden");
});

test("a stored resume token is used and cleared when the run ends; close() ends the iteration", async () => {
  const store = new Map();
  const storage = { get: (k) => store.get(k) ?? null, set: (k, v) => store.set(k, v), delete: (k) => store.delete(k) };
  storage.set("r", "saved");
  const { FakeSocket, opened } = scripted([
    (ws) => { ws.frame({ kind: "token", token: "t9" }); ws.frame({ kind: "event", cursor: "0:9", event: event(9) }); ws.frame({ kind: "end" }); },
    (ws) => { ws.frame({ kind: "token", token: "u1" }); ws.frame({ kind: "event", cursor: "0:1", event: event(1) }); },
  ]);
  const client = new TidingsClient({ baseUrl: "http://a", token: "k", WebSocket: FakeSocket });
  assert.deepEqual(await collect(client.stream("r", { store: storage })), [9]);
  assert.equal(opened[0].url.searchParams.get("resume"), "saved");
  assert.equal(store.has("r"), false);

  const live = client.stream("r", { from: "now" });
  for await (const e of live) {
    assert.equal(e.seq, 1);
    live.close();
  }
  assert.equal(opened[1].url.searchParams.get("from"), "now");
});

test("reports each reconnect (close code, wait, attempt) and the catch-up, for status displays", async () => {
  const { FakeSocket } = scripted([
    (ws) => { ws.frame({ kind: "token", token: "t1" }); ws.drop(1006); },
    (ws) => { ws.drop(4408); },
    (ws) => { ws.frame({ kind: "token", token: "t2" }); ws.frame({ kind: "caught_up" }); ws.frame({ kind: "end", status: "COMPLETED" }); },
  ]);
  const sleeper = { ...noSleep, waits: [] };
  const retries = [];
  let caughtUp = 0;
  const client = new TidingsClient({ baseUrl: "http://a", token: "k", WebSocket: FakeSocket });
  const stream = client.stream("r", {
    sleep: sleeper.sleep.bind(sleeper),
    onRetry: (retry) => retries.push(retry),
    onCaughtUp: () => caughtUp++,
  });
  assert.deepEqual(await collect(stream), []);
  assert.deepEqual(retries.map((r) => [r.code, r.attempt]), [[1006, 1], [4408, 2]]);
  assert.deepEqual(retries.map((r) => r.delayMs), sleeper.waits);
  assert.equal(caughtUp, 1);
});
