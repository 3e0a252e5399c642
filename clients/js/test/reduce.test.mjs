// The reducer against the shared recorded streams (clients/fixtures), which
// tidings/client.py's reduce_run must agree with too (tests/unit/test_client_reducer.py).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { initialRunState, reduceRun } from "../dist/index.js";

const dir = new URL("../../fixtures/", import.meta.url);
const fixtures = readdirSync(dir).filter((name) => name.endsWith(".json"));

const visible = ({ status, waiting, steps, output, error }) => ({ status, waiting, steps, output, error });

test("there are fixtures", () => assert.ok(fixtures.length >= 5));

for (const name of fixtures) {
  test(`fixture ${name}`, () => {
    const { events, expected } = JSON.parse(readFileSync(new URL(name, dir), "utf8"));
    const state = events.reduce(reduceRun, initialRunState());
    assert.deepEqual(visible(state), expected);
  });
}

test("the reducer is pure: it never changes the state it is given", () => {
  const { events } = JSON.parse(readFileSync(new URL("discard.json", dir), "utf8"));
  let state = initialRunState();
  for (const event of events) {
    const before = JSON.stringify(state);
    const next = reduceRun(state, event);
    assert.equal(JSON.stringify(state), before);
    state = next;
  }
});

test("feeding every event twice in a row changes nothing (repeats)", () => {
  for (const name of fixtures) {
    const { events, expected } = JSON.parse(readFileSync(new URL(name, dir), "utf8"));
    const doubled = events.flatMap((event) => [event, event]);
    assert.deepEqual(visible(doubled.reduce(reduceRun, initialRunState())), expected, name);
  }
});

test("a resume re-sending a suffix after a reload changes nothing", () => {
  for (const name of fixtures) {
    const { events, expected } = JSON.parse(readFileSync(new URL(name, dir), "utf8"));
    for (let cut = 0; cut <= events.length; cut++) {
      // The page saved its state after `cut` events; the gateway re-sends from an earlier ack.
      const saved = JSON.parse(JSON.stringify(events.slice(0, cut).reduce(reduceRun, initialRunState())));
      const from = Math.max(0, cut - 3);
      assert.deepEqual(visible(events.slice(from).reduce(reduceRun, saved)), expected, `${name} cut ${cut}`);
    }
  }
});
