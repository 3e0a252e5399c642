// The Tidings dashboard: start runs, list them, and watch one live.
//
// Built on the JavaScript client, @tidings/client (clients/js), compiled by
// `make deps` into ./client/ and served by the gateway: its TidingsClient for
// REST, its RunStream for the stream (resume with the latest token, acks,
// repeats dropped by id, reconnects with a capped full-jitter backoff, 1013
// waited out, typed errors) and its reduceRun for the run's state (the
// discard rule of docs/protocol.md). This file only renders: what each step
// shows comes from reduceRun; the event views below add details per event kind.
//
// The API key goes in an Authorization header only; the stream's URL carries a
// read token for that run (POST /v1/runs answers one, POST /v1/tokens mints one).
//
// Event data is only ever rendered with textContent: never as HTML.

const KEY_STORAGE = 'tidings.apiKey';
const DEFAULT_KEY = 'dev-key-demo';
const DEFAULT_INPUT = { question: 'How do resume tokens let a client recover after a dropped connection?' };
const LOG_LIMIT = 300;

// Close codes (docs/protocol.md) a retry cannot fix; RunStream throws them.
const REFUSED = new Map([
  [4400, 'The gateway refused a frame (4400).'],
  [4401, 'Not authorised: check the API key (4401).'],
  [4403, 'Not allowed to watch this run (4403).'],
  [4404, 'Unknown run (4404).'],
  [1009, 'A frame was too big (1009).'],
]);
const OVER = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TERMINATED', 'TIMED_OUT']);

const $ = (id) => document.getElementById(id);

// The client's modules: without them (the build is missing) the page says so
// instead of staying blank.
let tidings = null;
try {
  tidings = await import('./client/index.js');
} catch (err) {
  showMissingClient(err);
}

function showMissingClient(err) {
  const box = $('client-missing');
  $('client-missing-detail').textContent = String(err && err.message || err);
  box.hidden = false;
  $('conn').dataset.state = 'error';
  $('conn-text').textContent = 'Dashboard not built';
}

// ---------------------------------------------------------------- helpers

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || DEFAULT_KEY;
}

function randomKey() {
  // getRandomValues works outside secure contexts too (randomUUID does not).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return 'web-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function statusText(status) {
  return status ? String(status).toLowerCase().replace('_', ' ') : '–';
}

function show(node, visible) {
  node.hidden = !visible;
}

function safeHttpUrl(value) {
  try {
    const url = new URL(String(value), location.href);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

function summarise(value, limit = 160) {
  let text;
  if (typeof value === 'string') text = value;
  else {
    try { text = JSON.stringify(value); } catch { text = String(value); }
  }
  return text.length > limit ? text.slice(0, limit - 1) + '…' : text;
}

// REST through the client, with the key the user saved.
function rest() {
  return new tidings.TidingsClient({ baseUrl: location.origin, token: apiKey() });
}

function api(method, path, body, headers) {
  return rest().request(method, path, body, headers);
}

const runPath = (runId) => `/v1/runs/${encodeURIComponent(runId)}`;

// Resume tokens kept across this view's streams: a stream opened again with a
// fresh read token resumes where the last one was. Not kept across a reload,
// which replays the run from its start (the page's state is not stored).
function memoryStore() {
  const tokens = new Map();
  return {
    get: (key) => tokens.get(key) ?? null,
    set: (key, value) => { tokens.set(key, value); },
    delete: (key) => { tokens.delete(key); },
  };
}

// Exposed for tests and for curious people with a console: counters, and the
// open run's state as reduceRun made it.
const totals = { connections: 0, reconnects: 0, events: 0, duplicates: 0, acks: 0, lastClose: null };
window.tidings = {
  get stats() {
    const live = current && current.stream ? current.stream.stats : { connections: 0, duplicates: 0, acks: 0 };
    return {
      ...totals,
      connections: totals.connections + live.connections,
      duplicates: totals.duplicates + live.duplicates,
      acks: totals.acks + live.acks,
      events: totals.events + live.duplicates,
    };
  },
  get state() {
    return current ? current.state : null;
  },
};

// ---------------------------------------------------------------- connection status

function setConnection(state, text) {
  const box = $('conn');
  box.dataset.state = state;
  $('conn-text').textContent = text;
}

// ---------------------------------------------------------------- event views
//
// What an event adds to the page beyond the state reduceRun keeps (a step's
// status, attempt and text; the run's status, output and error): one function
// per event kind, called after the reducer with `applied` false when the
// reducer ignored the event (a repeat, a replaced attempt, a run already over).

const EVENT_VIEWS = {
  'run.started'(view, event, data) {
    if (data.pipeline) $('run-title').textContent = `Run of ${data.pipeline}`;
  },
  'step.progress'(view, event, data, applied) {
    if (applied) view.setDetail(event.step, progressText(data));
  },
  'step.retrying'(view, event, data, applied) {
    if (!applied) return;
    const failed = Number(data.discard_attempt) || Number(event.attempt) || 1;
    const next = Number(data.next_attempt) || failed + 1;
    view.setDetail(event.step, `Attempt ${failed} failed; retrying as attempt ${next}.`);
    view.noteDiscarded(event.step, failed, next);
  },
  'step.completed'(view, event, data, applied, before) {
    if (!applied) return;
    const output = data.output && typeof data.output === 'object' ? data.output : {};
    if (before.steps[event.step]?.status === 'waiting' && 'approved' in output) {
      view.setDetail(event.step, output.approved ? 'Approved.' : 'Not approved.');
    }
  },
  'step.failed'(view, event, data, applied) {
    if (applied) view.setDetail(event.step, `Failed: ${summarise(data.error || data, 300)}`);
  },
  'step.requested'(view, event, data, applied) {
    if (applied) view.setDetail(event.step, 'Handed to an external agent service.');
  },
  'alert.hot_loop'(view, event, data) {
    view.setDetail(event.step, `Hot loop: ${data.retries} retries in ${data.elapsed_seconds} s.`);
  },
};

function progressText(data) {
  if (Array.isArray(data.sub_questions)) return `Sub-questions: ${data.sub_questions.join(' · ')}`;
  if (Array.isArray(data.hits)) return data.hits.length ? `Found: ${data.hits.join(', ')}` : 'No passages found.';
  return summarise(data);
}

// What a step's badge says: the reducer's status, "streaming" while text arrives.
function stepLabel(step) {
  return step.status === 'running' && step.text ? 'streaming' : step.status;
}

// ---------------------------------------------------------------- the run view

class RunView {
  constructor(runId) {
    this.runId = runId;
    this.state = tidings.initialRunState();
    this.rows = new Map(); // step -> {row, stateEl, attemptsEl, detailEl}
    this.texts = new Map(); // step -> {box, note, text, span, attempt, length}
    this.shownWaiting = null;
    this.logCount = 0;
    this.stream = null;
    this.store = memoryStore();
    this.readToken = null;
    this.finished = false;

    $('run-id').textContent = runId;
    $('run-title').textContent = 'Run';
    $('steps').replaceChildren();
    $('streams').replaceChildren();
    $('log').replaceChildren();
    $('log-count').textContent = '';
    $('answer').textContent = '';
    $('sources').replaceChildren();
    show($('final'), false);
    show($('run-failure'), false);
    show($('approval'), false);
    show($('temporal-link'), false);
    this.hideStreamError();
    this.setStatus('');
    show($('run-empty'), false);
    show($('run-view'), true);
  }

  get over() {
    return OVER.has(this.state.status);
  }

  setStatus(status) {
    const badge = $('run-status');
    badge.dataset.status = status;
    badge.textContent = statusText(status);
  }

  setTemporalLink(url) {
    const href = url && safeHttpUrl(url);
    const link = $('temporal-link');
    if (href) link.href = href;
    show(link, Boolean(href));
  }

  // -- events

  apply(event) {
    const before = this.state;
    this.state = tidings.reduceRun(before, event);
    const applied = this.state !== before;
    this.log(event);
    const data = event.data && typeof event.data === 'object' ? event.data : {};
    const view = EVENT_VIEWS[event.type];
    // Unknown types are ignored (forward compatible); so are events without their step.
    if (view && (event.step || !event.type.startsWith('step.'))) view(this, event, data, applied, before);
    if (event.step && this.state.steps[event.step]) {
      // A sub-step's events change its parent too (its live text, its tool calls).
      const parent = this.state.steps[event.step].parent;
      if (parent && this.state.steps[parent]) this.renderStep(parent);
      this.renderStep(event.step);
    }
    this.renderRun();
  }

  // -- steps (from the reduced state)

  row(name) {
    let row = this.rows.get(name);
    if (!row) {
      const li = el('li', 'step');
      const head = el('div', 'step-head');
      const stateEl = el('span', 'badge');
      const attemptsEl = el('span', 'step-attempts');
      head.append(el('span', 'step-name', name), stateEl, attemptsEl);
      const detailEl = el('p', 'step-detail');
      detailEl.hidden = true;
      li.append(head, detailEl);
      li.dataset.step = name;
      const parent = this.state.steps[name]?.parent;
      (parent ? this.substepList(parent) : $('steps')).append(li);
      row = { row: li, stateEl, attemptsEl, detailEl, substeps: null };
      this.rows.set(name, row);
    }
    return row;
  }

  // A delegated step's sub-steps (docs/protocol.md): nested in its card,
  // collapsed by default; the parent's own text box shows their live text.
  substepList(parent) {
    const row = this.row(parent);
    if (!row.substeps) {
      const details = el('details', 'substeps');
      const summary = el('summary');
      const list = el('ol', 'substep-list');
      details.append(summary, list);
      row.row.append(details);
      row.substeps = { details, summary, list };
    }
    return row.substeps.list;
  }

  renderStep(name) {
    const step = this.state.steps[name];
    const row = this.row(name);
    const label = stepLabel(step);
    row.stateEl.textContent = label;
    row.stateEl.dataset.status = label;
    row.row.dataset.state = label;
    row.attemptsEl.textContent = step.attempt > 1 ? `attempt ${step.attempt}` : '';
    if (step.substeps) {
      const count = step.substeps.length;
      this.substepList(name);
      row.substeps.summary.textContent = `${count} sub-step${count === 1 ? '' : 's'}`;
    }
    // A sub-step's text and tool calls show in its parent's box.
    if (step.parent) return;
    if (step.text || this.texts.has(name)) this.renderText(name, step);
    if (step.thinking || step.tools || this.texts.get(name)?.agent) this.renderAgent(name, step);
  }

  setDetail(name, detail) {
    if (!name) return;
    const row = this.row(name);
    row.detailEl.textContent = detail;
    row.detailEl.hidden = !detail;
  }

  // -- streamed text: the current attempt's, as reduceRun keeps it

  textBox(name) {
    let box = this.texts.get(name);
    if (!box) {
      const section = el('section', 'stream');
      const note = el('p', 'hint stream-note');
      note.hidden = true;
      const text = el('p', 'stream-text');
      text.dataset.step = name;
      text.setAttribute('aria-live', 'off');
      section.append(el('h3', null, `${name}: live text`), note, text);
      $('streams').append(section);
      // agent: an agent step's reasoning and tool calls (renderAgent), above its text.
      box = { section, note, text, span: null, attempt: 0, length: 0, agent: null };
      this.texts.set(name, box);
    }
    return box;
  }

  renderText(name, step) {
    const box = this.textBox(name);
    // A parent's text is its sub-steps' (reduceRun): one of them retrying
    // changes it in the middle, so it is redrawn unless it only grew.
    const rewritten = step.substeps && !step.text.startsWith(box.span?.textContent ?? '');
    if (!box.span || box.attempt !== step.attempt || step.text.length < box.length || rewritten) {
      // A new attempt replaces the old one's partial text.
      box.span?.remove();
      box.span = el('span');
      box.span.dataset.attempt = String(step.attempt);
      box.text.append(box.span);
      box.attempt = step.attempt;
      box.length = 0;
    }
    // Within an attempt the text only grows: append what is new.
    if (step.text.length > box.length) {
      box.span.append(document.createTextNode(step.text.slice(box.length)));
      box.length = step.text.length;
    }
    box.text.classList.toggle('streaming', step.status === 'running');
  }

  // An agent step's reasoning and tool calls: the current attempt's, as reduceRun
  // keeps them (a retry starts them afresh). Tool calls are collapsed by default:
  // a summary line, the arguments and the result on a click.
  renderAgent(name, step) {
    const box = this.textBox(name);
    if (!box.agent || box.agent.attempt !== step.attempt) {
      box.agent?.root.remove();
      const root = el('div', 'agent-attempt');
      root.dataset.attempt = String(step.attempt);
      const thinking = el('p', 'stream-thinking');
      thinking.hidden = true;
      root.append(thinking);
      box.section.insertBefore(root, box.text);
      box.agent = { root, thinking, attempt: step.attempt, calls: new Map() };
    }
    const agent = box.agent;
    const thought = step.thinking ?? '';
    if (agent.thinking.textContent !== thought) agent.thinking.textContent = thought;
    agent.thinking.hidden = !thought;
    for (const call of step.tools ?? []) {
      const id = String(call.call_id ?? '');
      let view = agent.calls.get(id);
      if (!view) {
        const details = el('details', 'tool-call');
        details.dataset.callId = id;
        const summary = el('summary');
        const args = el('pre', 'tool-args');
        const result = el('pre', 'tool-result');
        result.hidden = true;
        details.append(summary, args, result);
        agent.root.append(details);
        view = { details, summary, args, result };
        agent.calls.set(id, view);
      }
      const tool = String(call.tool ?? 'tool');
      view.summary.textContent = call.args == null ? tool : `${tool}(${summarise(call.args, 80)})`;
      view.args.textContent = call.args == null ? '' : JSON.stringify(call.args, null, 2);
      if (call.content != null) {
        view.result.textContent = String(call.content) + (call.truncated ? '\n… (cut)' : '');
        view.result.hidden = false;
        view.details.dataset.state = 'returned';
      }
    }
  }

  noteDiscarded(name, failed, next) {
    const box = this.texts.get(name);
    if (!box) return;
    box.note.textContent = `Attempt ${failed} failed; its partial text was discarded` +
      (next ? ` (attempt ${next} streams below).` : '.');
    box.note.hidden = false;
  }

  // -- the run (from the reduced state)

  renderRun() {
    const { status, waiting, output, error } = this.state;
    if (status !== 'PENDING') this.setStatus(status);
    if (waiting !== this.shownWaiting) {
      if (waiting && !this.over) this.showApproval(waiting);
      else this.hideApproval();
    }
    if (status === 'COMPLETED') this.showResult(output);
    else if (status === 'FAILED') this.showFailure(`The run failed: ${summarise(error ?? 'no reason given', 400)}`);
    else if (status === 'CANCELLED') this.showFailure('The run was cancelled.');
    else if (status === 'TERMINATED') this.showFailure(`The run was terminated: ${summarise(error ?? 'no reason given', 400)}`);
    else if (status === 'TIMED_OUT') this.showFailure('The run timed out.');
  }

  log(event) {
    const list = $('log');
    const parts = [event.type, event.step || '', event.attempt > 1 ? `#${event.attempt}` : '',
      `seq ${event.seq}`];
    list.append(el('li', null, parts.filter(Boolean).join('  ')));
    while (list.childElementCount > LOG_LIMIT) list.firstElementChild.remove();
    this.logCount += 1;
    $('log-count').textContent = `(${this.logCount})`;
  }

  // -- approval

  showApproval(stepName) {
    this.shownWaiting = stepName;
    $('approval-step').textContent = stepName ? `on step “${stepName}”` : '';
    $('approval-note').textContent = '';
    $('approve').disabled = false;
    $('reject').disabled = false;
    show($('approval'), true);
  }

  hideApproval() {
    this.shownWaiting = null;
    show($('approval'), false);
  }

  async decide(signal) {
    $('approve').disabled = true;
    $('reject').disabled = true;
    $('approval-note').textContent = signal === 'approve' ? 'Approving…' : 'Rejecting…';
    try {
      const body = this.shownWaiting ? { step: this.shownWaiting } : {};
      await api('POST', `${runPath(this.runId)}/signals/${signal}`, body);
      $('approval-note').textContent = signal === 'approve' ? 'Approved: the run carries on.' : 'Rejected.';
    } catch (err) {
      $('approval-note').textContent = `Could not ${signal}: ${err.message}`;
      $('approve').disabled = false;
      $('reject').disabled = false;
    }
  }

  // -- outcome

  showResult(output) {
    if (output === undefined || output === null || !$('final').hidden) return;
    const answer = typeof output === 'object' && typeof output.answer === 'string'
      ? output.answer
      : JSON.stringify(output, null, 2);
    $('answer').textContent = answer;
    $('answer').classList.toggle('json', !(typeof output === 'object' && 'answer' in output));
    const sources = $('sources');
    sources.replaceChildren();
    if (output && Array.isArray(output.sources)) {
      for (const source of output.sources) sources.append(el('li', null, source));
    }
    show($('final'), true);
  }

  showFailure(message) {
    if (!$('run-failure').hidden) return;
    $('run-failure').textContent = message;
    show($('run-failure'), true);
    this.hideApproval();
  }

  showStreamError(message, { restart = false, retry = false } = {}) {
    $('stream-error-text').textContent = message;
    show($('restart-stream'), restart);
    show($('retry-stream'), retry);
    show($('stream-error'), true);
  }

  hideStreamError() {
    show($('stream-error'), false);
  }

  // -- lifecycle

  async load(started) {
    if (started) {
      this.setTemporalLink(started.temporalUiUrl);
      this.readToken = started.streamToken;
    }
    try {
      const run = await api('GET', runPath(this.runId));
      if (current !== this) return;
      this.setTemporalLink(run.temporal_ui_url);
      if (this.state.status === 'PENDING') this.setStatus(run.status);
      if (run.pipeline) $('run-title').textContent = `Run of ${run.pipeline}`;
    } catch (err) {
      if (current !== this) return;
      if (err.status === 404) {
        this.showStreamError(`Unknown run: ${err.message}`);
        setConnection('error', 'Unknown run');
        return;
      }
      // Not fatal: the stream may still work; say so and carry on.
      this.showStreamError(`Could not load the run: ${err.message}`);
    }
    this.watch();
  }

  // A read token for this run: the stream URL then carries a credential that
  // expires and reads only this run, never the API key (which the gateway
  // refuses in a query string when TIDINGS_ENV=production). A gateway without
  // POST /v1/tokens gets the key, as before.
  async mintReadToken() {
    try {
      this.readToken = (await api('POST', '/v1/tokens', { runs: [this.runId] })).token || null;
    } catch {
      this.readToken = null;
    }
  }

  async watch() {
    if (!this.readToken) await this.mintReadToken();
    if (current !== this) return;
    const usedReadToken = Boolean(this.readToken);
    const client = new tidings.TidingsClient({ baseUrl: location.origin, token: this.readToken || apiKey() });
    const mine = () => current === this && this.stream === stream;
    setConnection('connecting', this.store.get(this.runId) ? 'Resuming…' : 'Connecting…');
    const stream = client.stream(this.runId, {
      from: 'start',
      store: this.store,
      onConnection: (open) => {
        if (open && mine()) {
          setConnection('replaying', 'Catching up…');
          this.hideStreamError();
        }
      },
      onCaughtUp: () => { if (mine()) setConnection('live', 'Live'); },
      onRetry: ({ code, delayMs, attempt }) => {
        totals.reconnects += 1;
        totals.lastClose = code;
        if (mine()) {
          setConnection('reconnecting',
            `Reconnecting in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt}, closed ${code})`);
        }
      },
    });
    this.stream = stream;
    try {
      for await (const event of stream) {
        if (!mine()) break;
        totals.events += 1;
        this.apply(event);
      }
      if (mine()) this.ended();
    } catch (err) {
      if (!mine()) return;
      this.retire();
      this.failed(err, usedReadToken);
    }
  }

  // The stream's counters join the page's totals when it is replaced.
  retire() {
    if (!this.stream) return;
    const { connections, duplicates, acks } = this.stream.stats;
    totals.connections += connections;
    totals.duplicates += duplicates;
    totals.events += duplicates;
    totals.acks += acks;
    this.stream.close();
    this.stream = null;
  }

  failed(err, usedReadToken) {
    totals.lastClose = err.status ?? null;
    if (err instanceof tidings.AuthError && err.code === 'token_expired' && usedReadToken) {
      // The read token expired on a long watch: a new one, then resume (the store has the position).
      this.readToken = null;
      this.watch();
      return;
    }
    if (err instanceof tidings.StreamExpiredError) {
      setConnection('error', 'Token expired');
      this.showStreamError(
        `Token expired: the stream cannot resume where it was (4410). ${err.message}`.trim(), { restart: true });
      return;
    }
    const refused = REFUSED.get(err.status);
    setConnection('error', refused ? `Stopped (${err.status})` : 'Disconnected');
    const detail = err.message && !/^stream refused/.test(err.message) ? ` ${err.message}` : '';
    this.showStreamError(refused ? refused + detail : `The stream stopped: ${err.message || err}`,
      { retry: !refused });
  }

  // The run is over and every event was sent; the REST result is authoritative.
  async ended() {
    this.finished = true;
    setConnection('ended', 'Run finished: stream closed');
    this.hideApproval();
    loadRuns();
    try {
      const run = await api('GET', runPath(this.runId));
      if (current !== this) return;
      // Temporal may close the run a moment after its last event: keep the stream's status.
      this.setStatus(this.over ? this.state.status : run.status);
      this.setTemporalLink(run.temporal_ui_url);
      if (run.result) this.showResult(run.result);
      if (run.error) this.showFailure(`The run ended: ${run.error}`);
    } catch { /* the streamed outcome stands */ }
  }

  close() {
    this.retire();
  }
}

// ---------------------------------------------------------------- page wiring

let current = null;

function openRun(runId, started) {
  if (current) current.close();
  current = new RunView(runId);
  setConnection('idle', 'Not connected');
  const hash = `#run=${encodeURIComponent(runId)}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
  markSelected();
  current.load(started);
}

function markSelected() {
  for (const button of $('runs').querySelectorAll('button[data-run-id]')) {
    const selected = current !== null && button.dataset.runId === current.runId;
    button.setAttribute('aria-current', selected ? 'true' : 'false');
  }
}

async function loadRuns() {
  const list = $('runs');
  try {
    const page = await api('GET', '/v1/runs?limit=20');
    show($('runs-error'), false);
    list.replaceChildren();
    for (const run of page.runs || []) {
      const button = el('button', 'run-item');
      button.type = 'button';
      button.dataset.runId = run.run_id;
      const top = el('span', 'run-item-top');
      // The stream knows a run ended before Temporal's list does.
      const status = current && current.runId === run.run_id && current.over
        ? current.state.status : run.status || '';
      const badge = el('span', 'badge', statusText(status));
      badge.dataset.status = status;
      top.append(el('span', 'run-item-pipeline', run.pipeline || 'run'), badge);
      const started = run.started_at ? new Date(run.started_at).toLocaleString() : '';
      button.append(top, el('span', 'run-item-id', run.run_id), el('span', 'run-item-time', started));
      button.addEventListener('click', () => openRun(run.run_id));
      const item = el('li');
      item.append(button);
      list.append(item);
    }
    show($('runs-empty'), list.childElementCount === 0);
    markSelected();
  } catch (err) {
    $('runs-error').textContent = `Could not list runs: ${err.message}`;
    show($('runs-error'), true);
  }
}

function readInput() {
  const raw = $('input-json').value.trim();
  let input = {};
  if (raw) {
    try { input = JSON.parse(raw); } catch (err) {
      throw new Error(`The input is not valid JSON: ${err.message}`);
    }
    if (!input || typeof input !== 'object' || Array.isArray(input)) {
      throw new Error('The input must be a JSON object, like {"question": "..."}.');
    }
  }
  if ($('require-approval').checked) input.require_approval = true;
  else delete input.require_approval;
  return input;
}

async function startRun(event) {
  event.preventDefault();
  const error = $('input-error');
  show(error, false);
  const pipeline = $('pipeline').value.trim();
  let input;
  try {
    if (!pipeline) throw new Error('Name a pipeline.');
    input = readInput();
  } catch (err) {
    error.textContent = err.message;
    show(error, true);
    return;
  }
  const button = $('start');
  button.disabled = true;
  button.textContent = 'Starting…';
  try {
    // One key per click: a retried request never starts a second run.
    const started = await rest().startRun(pipeline, input, { idempotencyKey: randomKey() });
    openRun(started.runId, started);
    loadRuns();
    $('run').focus();
  } catch (err) {
    error.textContent = `Could not start the run: ${err.message}`;
    show(error, true);
  } finally {
    button.disabled = false;
    button.textContent = 'Start run';
  }
}

function init() {
  $('api-key').value = apiKey();
  $('input-json').value = JSON.stringify(DEFAULT_INPUT, null, 2);
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('api-key').value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    $('api-key').value = apiKey();
    $('key-hint').textContent = 'Saved in this browser.';
    loadRuns();
    if (current) openRun(current.runId);
  });
  $('start-form').addEventListener('submit', startRun);
  $('refresh-runs').addEventListener('click', loadRuns);
  $('approve').addEventListener('click', () => current && current.decide('approve'));
  $('reject').addEventListener('click', () => current && current.decide('reject'));
  // After 4410: the run again from its first event, on a fresh view.
  $('restart-stream').addEventListener('click', () => current && openRun(current.runId));
  $('retry-stream').addEventListener('click', () => {
    if (!current || current.stream) return;
    current.hideStreamError();
    current.watch();
  });
  window.addEventListener('hashchange', openFromHash);
  loadRuns();
  openFromHash();
  // The client module is loaded with a top-level await, which the
  // DOMContentLoaded event does not wait for: until here the forms have no
  // handlers, and a key typed earlier would be overwritten above. Say when
  // the page is live.
  document.body.dataset.ready = 'true';
}

function openFromHash() {
  const match = /^#run=(.+)$/.exec(location.hash);
  if (!match) return;
  const runId = decodeURIComponent(match[1]);
  if (!current || current.runId !== runId) openRun(runId);
}

if (tidings) init();
