// Drives the useRun page in headless Chromium (playwright-core from the repo's
// node_modules, Debian's chromium). Reports, one JSON line each:
//   streaming     the draft's text is on the page
//   reloaded      the connection dropped (the test killed the gateway): the page was reloaded
//   waiting       the page shows the run waiting for approval
//   done          the run completed: {state, restored, drops}
// or {"event": "failed", "error"}.
import { chromium } from "playwright-core";

const env = process.env;
const timeout = 60_000;
const report = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const browser = await chromium.launch({ executablePath: env.TIDINGS_CHROMIUM, args: JSON.parse(env.TIDINGS_CHROMIUM_ARGS) });
try {
  const page = await browser.newPage();
  const state = () => page.evaluate(() => JSON.parse(document.getElementById("state")?.textContent || "{}"));
  await page.goto(env.TIDINGS_PAGE);
  await page.waitForFunction(() => {
    const draft = document.querySelector('[data-step="draft"] p');
    return draft && draft.textContent.length > 0;
  }, null, { timeout });
  report("streaming", { state: await state() });
  await page.waitForFunction(() => window.__drops >= 2, null, { timeout }); // the first is the initial render
  await page.reload();
  report("reloaded", { restored: await page.evaluate(() => window.__restored) });
  await page.waitForSelector('main[data-status="WAITING"]', { timeout });
  report("waiting", { state: await state() });
  await page.waitForSelector('main[data-status="COMPLETED"]', { timeout });
  report("done", { state: await state(), restored: await page.evaluate(() => window.__restored) });
} catch (error) {
  report("failed", { error: String(error) });
} finally {
  await browser.close();
}
