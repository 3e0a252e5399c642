// Follows one run with @tidings/client and prints one JSON line per event,
// then {"done": ...} with the reduced state (or {"error": ...}). Run with
// `node --experimental-websocket` on Node 20: the client uses the global WebSocket.
import { TidingsClient, initialRunState, reduceRun } from "../../clients/js/dist/index.js";

const [baseUrls, runId, token] = process.argv.slice(2);
const client = new TidingsClient({ baseUrl: baseUrls.split(","), token });
const stream = client.stream(runId);
let state = initialRunState();
try {
  for await (const event of stream) {
    state = reduceRun(state, event);
    console.log(JSON.stringify({ event }));
  }
  console.log(JSON.stringify({ done: true, state, stats: stream.stats }));
} catch (error) {
  console.log(JSON.stringify({ error: error.name, code: error.code, status: error.status }));
  process.exitCode = 1;
}
