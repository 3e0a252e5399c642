// The Tidings dashboard: start runs, list them, and watch one live.
//
// A plain client of the public contract (docs/protocol.md): REST with
// `Authorization: Bearer <key>`, and the run's WebSocket stream with
// `?access_token=<read token>`, a token for that run only (POST /v1/tokens),
// so the key itself never lands in a URL. The stream keeps the latest resume token, acks the
// cursors it has processed, reconnects with `?resume=<token>` after a drop
// (exponential backoff with jitter, bounded) and drops re-sent events by id,
// so the streamed text is never lost nor repeated.
//
// Event data is only ever rendered with textContent: never as HTML.

const KEY_STORAGE = 'tidings.apiKey';
const DEFAULT_KEY = 'dev-key-demo';
const DEFAULT_INPUT = { question: 'How do resume tokens let a client recover after a dropped connection?' };

const ACK_INTERVAL_MS = 1000;
const ACK_EVERY_EVENTS = 50;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 8000;
const MAX_RECONNECTS = 12; // consecutive failed attempts before giving up
const LOG_LIMIT = 300;

// Close codes (DESIGN.md): refusals a retry cannot fix, and the expired token.
const FATAL = new Map([
  [4400, 'The gateway refused a frame (4400).'],
  [4401, 'Not authorised: check the API key (4401).'],
  [4403, 'Not allowed to watch this run (4403).'],
  [4404, 'Unknown run (4404).'],
  [1009, 'A frame was too big (1009).'],
]);
const TOKEN_EXPIRED = 4410;

const $ = (id) => document.getElementById(id);

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

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body, extraHeaders = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}`, ...extraHeaders };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, 'unreachable', `The gateway is unreachable (${err.message}).`);
  }
  let data = null;
  try { data = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || String(response.status),
      error.message || `HTTP ${response.status}`);
  }
  return data;
}

const runPath = (runId) => `/v1/runs/${encodeURIComponent(runId)}`;

// Exposed for tests and for curious people with a console: counters only.
const stats = { connections: 0, reconnects: 0, events: 0, duplicates: 0, acks: 0, lastClose: null };
window.tidings = { stats };

// ---------------------------------------------------------------- connection status

function setConnection(state, text) {
  const box = $('conn');
  box.dataset.state = state;
  $('conn-text').textContent = text;
}

// ---------------------------------------------------------------- the stream

// One subscription to one run's stream, across reconnects.
class RunStream {
  constructor(runId, onEvent, callbacks) {
    this.runId = runId;
    this.onEvent = onEvent;
    this.cb = callbacks; // {onEnd(status), onFatal(message, code), onStatus(state, text)}
    this.token = null;
    this.seen = new Set();
    this.ws = null;
    this.failures = 0;
    this.timer = null;
    this.ackTimer = null;
    this.ended = false;
    this.stopped = false;
    this.readToken = null;
    this.resetConnectionState();
  }

  resetConnectionState() {
    // A cursor can only be acked on the connection that sent it.
    this.ackable = null;
    this.acked = null;
    this.unacked = 0;
    this.lastError = null;
    this.caughtUp = false;
  }

  async start() {
    await this.mintReadToken();
    this.connect();
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

  // Open again from the run's first event (after 4410). Already seen events are dropped by id.
  restartFromStart() {
    this.token = null;
    this.failures = 0;
    this.stopped = false;
    this.connect();
  }

  retry() {
    this.failures = 0;
    this.stopped = false;
    this.connect();
  }

  // The network is back: skip the rest of the backoff.
  nudge() {
    if (this.timer !== null && !this.ws && !this.stopped && !this.ended) this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.ackTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try { ws.close(1000, 'closed by the page'); } catch { /* already closed */ }
    }
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const params = new URLSearchParams({ access_token: this.readToken || apiKey() });
    if (this.token) params.set('resume', this.token);
    else params.set('from', 'start');
    return `${scheme}//${location.host}${runPath(this.runId)}/stream?${params}`;
  }

  connect() {
    if (this.stopped || this.ended) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.resetConnectionState();
    const resuming = Boolean(this.token);
    this.cb.onStatus('connecting', resuming ? 'Resuming…' : 'Connecting…');
    const ws = new WebSocket(this.url());
    this.ws = ws;
    stats.connections += 1;
    ws.onmessage = (message) => {
      if (this.ws === ws) this.frame(ws, message.data);
    };
    ws.onclose = (close) => {
      if (this.ws === ws) this.closed(close.code, close.reason);
    };
    clearInterval(this.ackTimer);
    this.ackTimer = setInterval(() => {
      if (this.ws === ws) this.flushAcks(ws);
    }, ACK_INTERVAL_MS);
  }

  frame(ws, raw) {
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    switch (frame.kind) {
      case 'token':
        this.token = String(frame.token);
        this.cb.onStatus(this.caughtUp ? 'live' : 'replaying', this.caughtUp ? 'Live' : 'Catching up…');
        break;
      case 'event': {
        const event = frame.event || {};
        stats.events += 1;
        this.failures = 0; // a working connection: the backoff starts over
        if (event.id && this.seen.has(event.id)) {
          stats.duplicates += 1;
        } else {
          if (event.id) this.seen.add(event.id);
          this.onEvent(event);
        }
        this.processed(ws, String(frame.cursor));
        break;
      }
      case 'caught_up':
        this.caughtUp = true;
        this.failures = 0;
        this.cb.onStatus('live', 'Live');
        break;
      case 'end':
        this.flushAcks(ws);
        this.ended = true;
        clearInterval(this.ackTimer);
        this.cb.onStatus('ended', 'Run finished: stream closed');
        this.cb.onEnd(String(frame.status || ''));
        break;
      case 'error':
        this.lastError = { code: String(frame.code || ''), message: String(frame.message || '') };
        break;
      default:
        break; // unknown frame kinds are ignored (forward compatible)
    }
  }

  processed(ws, cursor) {
    this.ackable = cursor;
    this.unacked += 1;
    if (this.unacked >= ACK_EVERY_EVENTS) this.flushAcks(ws);
  }

  flushAcks(ws) {
    if (!this.ackable || this.ackable === this.acked || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ ack: this.ackable }));
    this.acked = this.ackable;
    this.unacked = 0;
    stats.acks += 1;
  }

  closed(code, reason) {
    this.ws = null;
    clearInterval(this.ackTimer);
    stats.lastClose = code;
    if (this.ended || this.stopped) return;
    const detail = (this.lastError && this.lastError.message) || reason || '';
    if (code === 4401 && this.readToken && this.lastError?.code === 'token_expired') {
      // The read token expired on a long watch: a new one, then resume.
      this.readToken = null;
      this.start();
      return;
    }
    if (FATAL.has(code)) {
      this.stopped = true;
      this.cb.onStatus('error', `Stopped (${code})`);
      this.cb.onFatal(detail ? `${FATAL.get(code)} ${detail}` : FATAL.get(code), code);
      return;
    }
    if (code === TOKEN_EXPIRED) {
      this.stopped = true;
      this.cb.onStatus('error', 'Token expired');
      this.cb.onFatal(`Token expired: the stream cannot resume where it was (4410). ${detail}`.trim(), code);
      return;
    }
    // 1001 going away, 1006 dropped, 1011 internal error, 4408 too slow, 1000
    // without an end: nothing is lost, resume with the token.
    this.failures += 1;
    if (this.failures > MAX_RECONNECTS) {
      this.stopped = true;
      this.cb.onStatus('error', 'Disconnected');
      this.cb.onFatal(`Could not reach the gateway after ${MAX_RECONNECTS} attempts.`, code);
      return;
    }
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (this.failures - 1));
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    stats.reconnects += 1;
    this.cb.onStatus('reconnecting',
      `Reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${this.failures}, closed ${code})`);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

// ---------------------------------------------------------------- the run view

class RunView {
  constructor(runId) {
    this.runId = runId;
    this.steps = new Map(); // name -> {row, state, attempt, parts}
    this.streams = new Map(); // step -> {box, text, attempts: Map<attempt, span>}
    // step -> Set of attempts a step.retrying replaced, also before the step streams any text.
    this.discarded = new Map();
    this.waitingStep = null;
    this.finalStatus = null; // set by the stream's end frame
    this.logCount = 0;
    this.stream = null;

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

  // -- steps

  step(name) {
    let step = this.steps.get(name);
    if (!step) {
      const row = el('li', 'step');
      const head = el('div', 'step-head');
      const title = el('span', 'step-name', name);
      const state = el('span', 'badge');
      const attempts = el('span', 'step-attempts');
      head.append(title, state, attempts);
      const detail = el('p', 'step-detail');
      detail.hidden = true;
      row.append(head, detail);
      row.dataset.step = name;
      $('steps').append(row);
      step = { row, stateEl: state, attemptsEl: attempts, detailEl: detail, attempt: 1, state: '' };
      this.steps.set(name, step);
    }
    return step;
  }

  setStep(name, state, attempt, detail) {
    const step = this.step(name);
    if (state) {
      step.state = state;
      step.stateEl.textContent = state;
      step.stateEl.dataset.status = state;
      step.row.dataset.state = state;
    }
    if (attempt && attempt >= step.attempt) {
      step.attempt = attempt;
      step.attemptsEl.textContent = attempt > 1 ? `attempt ${attempt}` : '';
    }
    if (detail !== undefined) {
      step.detailEl.textContent = detail;
      step.detailEl.hidden = !detail;
    }
  }

  // -- streamed text

  textOf(name) {
    let stream = this.streams.get(name);
    if (!stream) {
      const box = el('section', 'stream');
      const heading = el('h3', null, `${name}: live text`);
      const note = el('p', 'hint stream-note');
      note.hidden = true;
      const text = el('p', 'stream-text');
      text.dataset.step = name;
      text.setAttribute('aria-live', 'off');
      box.append(heading, note, text);
      $('streams').append(box);
      stream = { box, note, text, attempts: new Map() };
      this.streams.set(name, stream);
    }
    return stream;
  }

  token(name, attempt, text) {
    if (this.discarded.get(name)?.has(attempt)) return; // a late token of a replaced attempt
    const stream = this.textOf(name);
    let span = stream.attempts.get(attempt);
    if (!span) {
      span = el('span');
      span.dataset.attempt = String(attempt);
      stream.attempts.set(attempt, span);
      stream.text.append(span);
    }
    span.append(document.createTextNode(text));
    stream.text.classList.add('streaming');
  }

  // Idempotent: attempt N re-announces every earlier attempt (repeats are also dropped by id).
  discard(name, attempt, nextAttempt) {
    if (!this.discarded.has(name)) this.discarded.set(name, new Set());
    this.discarded.get(name).add(attempt);
    const stream = this.streams.get(name);
    if (!stream) return;
    const span = stream.attempts.get(attempt);
    if (span) span.remove();
    stream.attempts.delete(attempt);
    stream.note.textContent = `Attempt ${attempt} failed; its partial text was discarded` +
      (nextAttempt ? ` (attempt ${nextAttempt} streams below).` : '.');
    stream.note.hidden = false;
  }

  endStreaming(name) {
    const stream = this.streams.get(name);
    if (stream) stream.text.classList.remove('streaming');
  }

  // -- events

  apply(event) {
    this.log(event);
    const data = event.data && typeof event.data === 'object' ? event.data : {};
    const step = event.step;
    const attempt = Number(event.attempt) || 1;
    switch (event.type) {
      case 'run.started':
        this.setStatus('RUNNING');
        if (data.pipeline) $('run-title').textContent = `Run of ${data.pipeline}`;
        break;
      case 'run.waiting':
        this.setStatus('WAITING');
        this.showApproval(data.step || step || '');
        break;
      case 'run.completed':
        this.setStatus('COMPLETED');
        this.showResult(data.output);
        break;
      case 'run.failed':
        this.setStatus('FAILED');
        this.showFailure(`The run failed: ${summarise(data.error || data.message || data, 400)}`);
        break;
      case 'run.cancelled':
        this.setStatus('CANCELLED');
        this.showFailure('The run was cancelled.');
        break;
      case 'run.continued':
        break;
      case 'step.started':
        if (step) this.setStep(step, data.kind === 'approval' ? 'waiting' : 'running', attempt);
        break;
      case 'step.progress':
        if (step) this.setStep(step, null, attempt, progressText(data));
        break;
      case 'step.token':
        if (step && typeof data.text === 'string') {
          this.token(step, attempt, data.text);
          if (this.steps.get(step)?.state !== 'streaming') this.setStep(step, 'streaming', attempt);
        }
        break;
      case 'step.retrying': {
        if (!step) break;
        const failed = Number(data.discard_attempt) || attempt;
        const next = Number(data.next_attempt) || failed + 1;
        this.discard(step, failed, next);
        this.setStep(step, 'retrying', next, `Attempt ${failed} failed; retrying as attempt ${next}.`);
        break;
      }
      case 'step.completed':
        if (step) {
          this.setStep(step, 'completed', attempt, completedText(data, this.steps.get(step)));
          this.endStreaming(step);
          if (step === this.waitingStep) this.hideApproval();
        }
        break;
      case 'step.failed':
        if (step) {
          this.setStep(step, 'failed', attempt, `Failed: ${summarise(data.error || data, 300)}`);
          this.endStreaming(step);
          if (step === this.waitingStep) this.hideApproval();
        }
        break;
      case 'step.requested':
        if (step) this.setStep(step, 'requested', attempt, 'Handed to an external agent service.');
        break;
      case 'alert.hot_loop':
        if (step) this.setStep(step, null, attempt,
          `Hot loop: ${data.retries} retries in ${data.elapsed_seconds} s.`);
        break;
      default:
        break; // unknown types are ignored (forward compatible)
    }
  }

  log(event) {
    const list = $('log');
    const parts = [event.type, event.step || '', event.attempt > 1 ? `#${event.attempt}` : '',
      `seq ${event.seq}`];
    const item = el('li', null, parts.filter(Boolean).join('  '));
    list.append(item);
    while (list.childElementCount > LOG_LIMIT) list.firstElementChild.remove();
    this.logCount += 1;
    $('log-count').textContent = `(${this.logCount})`;
  }

  // -- approval

  showApproval(stepName) {
    this.waitingStep = stepName;
    $('approval-step').textContent = stepName ? `on step “${stepName}”` : '';
    $('approval-note').textContent = '';
    $('approve').disabled = false;
    $('reject').disabled = false;
    show($('approval'), true);
  }

  hideApproval() {
    this.waitingStep = null;
    show($('approval'), false);
  }

  async decide(signal) {
    $('approve').disabled = true;
    $('reject').disabled = true;
    $('approval-note').textContent = signal === 'approve' ? 'Approving…' : 'Rejecting…';
    try {
      const body = this.waitingStep ? { step: this.waitingStep } : {};
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
    if (output === undefined || output === null) return;
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
    if (started) this.setTemporalLink(started.temporal_ui_url);
    if (started && started.status) this.setStatus(started.status);
    try {
      const run = await api('GET', runPath(this.runId));
      if (current !== this) return;
      this.setTemporalLink(run.temporal_ui_url);
      if (!this.steps.size) this.setStatus(run.status);
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
    this.subscribe();
  }

  subscribe() {
    this.stream = new RunStream(this.runId, (event) => this.apply(event), {
      onStatus: (state, text) => {
        if (current !== this) return;
        setConnection(state, text);
        if (state === 'live' || state === 'replaying') this.hideStreamError();
      },
      onEnd: (status) => {
        if (current !== this) return;
        if (status) this.setStatus(status);
        this.finalStatus = status || null;
        this.hideApproval();
        this.refreshOutcome();
        loadRuns();
      },
      onFatal: (message, code) => {
        if (current !== this) return;
        this.showStreamError(message, { restart: code === TOKEN_EXPIRED, retry: !FATAL.has(code) && code !== TOKEN_EXPIRED });
      },
    });
    this.stream.start();
  }

  // The end frame means every event was sent; the REST result is authoritative.
  async refreshOutcome() {
    try {
      const run = await api('GET', runPath(this.runId));
      if (current !== this) return;
      // Temporal may close the run a moment after its last event: keep the stream's status.
      this.setStatus(this.finalStatus || run.status);
      this.setTemporalLink(run.temporal_ui_url);
      if (run.result && !$('answer').textContent) this.showResult(run.result);
      if (run.error && $('run-failure').hidden) this.showFailure(`The run ended: ${run.error}`);
    } catch { /* the streamed outcome stands */ }
  }

  close() {
    if (this.stream) this.stream.stop();
  }
}

function completedText(data, step) {
  const output = data.output && typeof data.output === 'object' ? data.output : {};
  if (step && step.state === 'waiting' && 'approved' in output) {
    return output.approved ? 'Approved.' : 'Not approved.';
  }
  return step ? step.detailEl.textContent : '';
}

function progressText(data) {
  if (Array.isArray(data.sub_questions)) return `Sub-questions: ${data.sub_questions.join(' · ')}`;
  if (Array.isArray(data.hits)) return data.hits.length ? `Found: ${data.hits.join(', ')}` : 'No passages found.';
  return summarise(data);
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
      const status = current && current.runId === run.run_id && current.finalStatus
        ? current.finalStatus : run.status || '';
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
    const started = await api('POST', '/v1/runs', { pipeline, input }, { 'Idempotency-Key': randomKey() });
    openRun(started.run_id, started);
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
  $('restart-stream').addEventListener('click', () => {
    if (!current || !current.stream) return;
    current.hideStreamError();
    current.stream.restartFromStart();
  });
  $('retry-stream').addEventListener('click', () => {
    if (!current || !current.stream) return;
    current.hideStreamError();
    current.stream.retry();
  });
  window.addEventListener('hashchange', openFromHash);
  window.addEventListener('online', () => current && current.stream && current.stream.nudge());
  loadRuns();
  openFromHash();
}

function openFromHash() {
  const match = /^#run=(.+)$/.exec(location.hash);
  if (!match) return;
  const runId = decodeURIComponent(match[1]);
  if (!current || current.runId !== runId) openRun(runId);
}

init();
