// Drives the dashboard in headless Chromium for the pytest tests in this folder.
//
// Run by tests/web/browser.py as `node tests/web/drive.mjs` with:
//   TIDINGS_URL          the gateway's base URL (the page is served at /)
//   TIDINGS_SCENARIO     run | bad-key | expired | missing-client
//   TIDINGS_KEY          API key to type into the page (optional)
//   TIDINGS_APPROVE      1: tick "require approval" and click Approve when asked
//   TIDINGS_WAIT_RETRY   1: report "streaming" only once attempt 2 streams
//   TIDINGS_RELOAD       1: after the run, reload the page (it replays the run)
//   TIDINGS_RUN_ID       bad-key: the run to open
//   TIDINGS_SCREENSHOT   where to save a full-page PNG at the end
//   TIDINGS_TIMEOUT_MS   deadline of each wait (default 30000)
//   TIDINGS_COLOR_SCHEME dark: render in dark mode (for looking at screenshots)
//   TIDINGS_CHROMIUM, TIDINGS_CHROMIUM_ARGS   the browser (infra/browser.py)
// It prints one JSON object per line on stdout: progress reports the test
// reacts to ({"event": "streaming"} -> drop the connection), then
// {"event": "done", ...} with what the page shows, or {"event": "failed"}.

import { chromium } from 'playwright-core';

const env = process.env;
const BASE = env.TIDINGS_URL;
const SCENARIO = env.TIDINGS_SCENARIO || 'run';
const TIMEOUT = Number(env.TIDINGS_TIMEOUT_MS || 30000);
const ARGS = env.TIDINGS_CHROMIUM_ARGS ? JSON.parse(env.TIDINGS_CHROMIUM_ARGS)
  : ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function report(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

// What the page shows now: read from the DOM, as a person would see it.
async function snapshot(page) {
  return page.evaluate(() => {
    const text = (sel) => document.querySelector(sel)?.textContent ?? null;
    const visible = (sel) => {
      const node = document.querySelector(sel);
      return Boolean(node && !node.hidden && node.offsetParent !== null);
    };
    // Whether a node is in the live-text box of a step.
    const inBox = (node, step) => node.closest('.stream')?.querySelector('.stream-text')?.dataset.step === step;
    const steps = {};
    for (const row of document.querySelectorAll('#steps .step')) {
      steps[row.dataset.step] = {
        state: row.dataset.state || '',
        attempts: row.querySelector('.step-attempts')?.textContent || '',
        detail: row.querySelector('.step-detail')?.textContent || '',
      };
    }
    return {
      run_id: text('#run-id'),
      status: document.querySelector('#run-status')?.dataset.status ?? null,
      draft: text('.stream-text[data-step="draft"]'),
      draft_note: text('.stream-note'),
      draft_thinking: [...document.querySelectorAll('.stream-thinking')].filter((p) => inBox(p, 'draft'))
        .map((p) => p.textContent),
      draft_tools: [...document.querySelectorAll('.tool-call')].filter((d) => inBox(d, 'draft')).map((d) => ({
        attempt: d.closest('.agent-attempt')?.dataset.attempt ?? null,
        open: d.open,
        summary: d.querySelector('summary').textContent,
        result: d.querySelector('.tool-result').textContent,
        result_visible: d.querySelector('.tool-result').checkVisibility(),
      })),
      // A delegated step's sub-steps: nested in its card, collapsed, its box
      // showing their text and tool calls.
      cite: text('.stream-text[data-step="cite"]'),
      cite_tools: [...document.querySelectorAll('.tool-call')].filter((d) => inBox(d, 'cite')).map((d) => ({ open: d.open, summary: d.querySelector('summary').textContent })),
      substeps: Object.fromEntries([...document.querySelectorAll('#steps .step > details.substeps')].map((d) => [
        d.closest('.step').dataset.step,
        {
          open: d.open,
          summary: d.querySelector('summary').textContent,
          steps: [...d.querySelectorAll('.step')].map((row) => row.dataset.step),
          shown: [...d.querySelectorAll('.step')].some((row) => row.checkVisibility()),
        },
      ])),
      answer: visible('#final') ? text('#answer') : null,
      connection: document.querySelector('#conn')?.dataset.state ?? null,
      connection_text: text('#conn-text'),
      connection_states: window.__connStates || [],
      stream_error: visible('#stream-error') ? text('#stream-error-text') : null,
      restart_offered: visible('#restart-stream'),
      runs_error: visible('#runs-error') ? text('#runs-error') : null,
      runs_listed: document.querySelectorAll('#runs button[data-run-id]').length,
      temporal_link: visible('#temporal-link') ? document.querySelector('#temporal-link').href : null,
      // Markup in event data must stay text: no element may come from it.
      injected_elements: document.querySelectorAll('#streams b, #streams script, #answer *').length,
      steps,
      stats: window.tidings ? { ...window.tidings.stats } : null,
      // The open run's state as the client's reduceRun made it.
      state: window.tidings ? window.tidings.state : null,
      client_missing: visible('#client-missing') ? text('#client-missing') : null,
    };
  });
}

async function waitFor(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: TIMEOUT, polling: 50 });
  } catch (err) {
    const seen = await snapshot(page).catch(() => null);
    throw new Error(`timed out after ${TIMEOUT} ms waiting for ${what}; page: ${JSON.stringify(seen)}`);
  }
}

// Records every connection-indicator state, to tell that a reconnect was shown.
function watchConnection() {
  window.__connStates = [];
  const box = document.querySelector('#conn');
  const record = () => {
    const states = window.__connStates;
    if (states[states.length - 1] !== box.dataset.state) states.push(box.dataset.state);
  };
  record();
  new MutationObserver(record).observe(box, { attributes: true, attributeFilter: ['data-state'] });
}

async function openDashboard(page) {
  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded' });
  await page.evaluate(watchConnection);
  // Typing before the page's module has run would race its own start-up.
  await waitFor(page, 'the page to start', () => document.body.dataset.ready === 'true');
  if (env.TIDINGS_KEY) {
    await page.fill('#api-key', env.TIDINGS_KEY);
    await page.click('#key-form button[type="submit"]');
  }
}

async function startRun(page) {
  if (env.TIDINGS_APPROVE === '1') await page.check('#require-approval');
  await page.click('#start');
  await waitFor(page, 'the run to open', () => Boolean(document.querySelector('#run-id')?.textContent));
  const runId = await page.textContent('#run-id');
  report('started', { run_id: runId });
  const wantRetry = env.TIDINGS_WAIT_RETRY === '1';
  await waitFor(page, 'draft tokens', (retry) => {
    const box = document.querySelector('.stream-text[data-step="draft"]');
    if (!box || !box.textContent) return false;
    return !retry || Boolean(box.querySelector('span[data-attempt="2"]')?.textContent);
  }, wantRetry);
  report('streaming', await snapshot(page));
  return runId;
}

async function finish(page) {
  if (env.TIDINGS_APPROVE === '1') {
    await waitFor(page, 'the approval request', () => {
      const box = document.querySelector('#approval');
      return box && !box.hidden && !document.querySelector('#approve').disabled;
    });
    report('waiting', await snapshot(page));
    if (env.TIDINGS_SCREENSHOT) {
      await page.screenshot({ path: env.TIDINGS_SCREENSHOT.replace(/\.png$/, '-waiting.png'), fullPage: true });
    }
    await page.click('#approve');
  }
  await waitFor(page, 'the final answer and the end of the stream', () => {
    const final = document.querySelector('#final');
    return final && !final.hidden && document.querySelector('#conn')?.dataset.state === 'ended';
  });
}

async function scenarioRun(page) {
  await openDashboard(page);
  await startRun(page);
  await finish(page);
  if (env.TIDINGS_RELOAD === '1') {
    // The URL names the run: a reload replays the finished run from its start.
    const first = await snapshot(page);
    report('finished', first);
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitFor(page, 'the replayed run', () => {
      const final = document.querySelector('#final');
      return final && !final.hidden && document.querySelector('#conn')?.dataset.state === 'ended';
    });
  }
}

async function scenarioExpired(page) {
  await openDashboard(page);
  await startRun(page);
  // The test now expires the session and drops the socket: the resume gets 4410.
  await waitFor(page, 'the token-expired offer', () => {
    const button = document.querySelector('#restart-stream');
    return button && !button.hidden;
  });
  report('expired', await snapshot(page));
  await page.click('#restart-stream');
  await finish(page);
}

async function scenarioBadKey(page) {
  await openDashboard(page);
  await page.evaluate((id) => { location.hash = `#run=${encodeURIComponent(id)}`; }, env.TIDINGS_RUN_ID);
  await waitFor(page, 'the refusal', () => {
    const box = document.querySelector('#stream-error');
    return box && !box.hidden && document.querySelector('#conn')?.dataset.state === 'error';
  });
  report('refused', await snapshot(page));
  // No reconnect may follow a 4401: the page must stay on one connection.
  await page.waitForTimeout(1500);
}

async function scenarioMissingClient(page) {
  await page.goto(BASE + '/', { waitUntil: 'domcontentloaded' });
  await waitFor(page, 'the missing-client message', () => {
    const box = document.querySelector('#client-missing');
    return box && !box.hidden;
  });
}

const SCENARIOS = {
  run: scenarioRun,
  expired: scenarioExpired,
  'bad-key': scenarioBadKey,
  'missing-client': scenarioMissingClient,
};

async function main() {
  const scenario = SCENARIOS[SCENARIO];
  if (!scenario) throw new Error(`unknown scenario ${SCENARIO}`);
  const browser = await chromium.launch({
    executablePath: env.TIDINGS_CHROMIUM || '/usr/bin/chromium',
    args: ARGS,
  });
  const problems = [];
  try {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 900 },
      colorScheme: env.TIDINGS_COLOR_SCHEME === 'dark' ? 'dark' : 'light',
    });
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/WebSocket|Failed to load resource/.test(msg.text())) {
        problems.push(`console: ${msg.text()}`);
      }
    });
    const origin = new URL(BASE).origin;
    page.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith(origin) && !url.startsWith(origin.replace('http', 'ws')) && !url.startsWith('data:')) {
        problems.push(`request outside the gateway: ${url}`);
      }
    });
    await scenario(page);
    const result = await snapshot(page);
    if (env.TIDINGS_SCREENSHOT) {
      await page.screenshot({ path: env.TIDINGS_SCREENSHOT, fullPage: true });
    }
    report('done', { ...result, problems });
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  report('failed', { error: String(err && err.stack || err) });
  process.exitCode = 1;
});
