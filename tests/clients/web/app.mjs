// A React page that watches one run with useRun from @tidings/client/react.
// Query: ?gateway=<url>&run=<id>&token=<read token>. It renders what a person
// sees (status, each step's text) and the reduced state as JSON in #state.
import { createElement as h, useEffect } from "react";
import { createRoot } from "react-dom/client";
import { sessionResumeStore } from "../../../clients/js/dist/index.js";
import { useRun } from "../../../clients/js/dist/react.js";

const params = new URLSearchParams(location.search);
const store = sessionResumeStore();
// Whether this load starts from a saved state and token (a reload mid-run).
window.__restored = Boolean(store.get(params.get("run")) && store.get(`state:${params.get("run")}`));
window.__drops = 0;

function RunView({ baseUrl, runId, token }) {
  const { state, connected, error } = useRun({ baseUrl, runId, token, store });
  useEffect(() => {
    if (!connected) window.__drops += 1;
  }, [connected]);
  const { tokenSeq, own, ...visible } = state;
  return h(
    "main",
    { "data-status": state.status, "data-connected": String(connected) },
    h("h1", null, `Run ${runId}: ${state.status}`),
    error ? h("p", { id: "error" }, `${error.name}: ${error.message}`) : null,
    ...Object.entries(state.steps).map(([name, step]) =>
      h("article", { key: name, "data-step": name }, h("h2", null, `${name} (${step.status})`), h("p", null, step.text)),
    ),
    h("pre", { id: "state" }, JSON.stringify(visible)),
  );
}

createRoot(document.getElementById("root")).render(
  h(RunView, { baseUrl: params.get("gateway"), runId: params.get("run"), token: params.get("token") }),
);
