import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffDelay, BACKOFF_CAP_MS, replicaFor } from "../dist/index.js";

test("full jitter: uniform below an exponential ceiling", () => {
  assert.equal(backoffDelay(0, () => 0), 0);
  assert.equal(backoffDelay(0, () => 0.999999), 249);
  assert.equal(backoffDelay(3, () => 0.5), 1000);
  for (let attempt = 0; attempt < 12; attempt++) {
    for (let i = 0; i < 50; i++) {
      const delay = backoffDelay(attempt);
      assert.ok(delay >= 0 && delay < Math.min(BACKOFF_CAP_MS, 250 * 2 ** attempt));
    }
  }
});

test("the cap is 30 s however many attempts failed", () => {
  assert.equal(BACKOFF_CAP_MS, 30_000);
  assert.equal(backoffDelay(1000, () => 0.999999), 29_999);
});

test("each reconnect goes to the next replica, round robin", () => {
  const replicas = ["a", "b", "c"];
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => replicaFor(replicas, n)), ["a", "b", "c", "a", "b"]);
});
