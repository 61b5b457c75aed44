// The playground in a real browser against a real gateway: Debian's
// headless Chromium driven by Playwright (playwright-core, which downloads
// no browser), programs run in the cluster's sandboxes.
//
//   SANDRUN_URL          the gateway, e.g. http://10.96.0.20:80 (hack/test-web.sh sets it)
//   SANDRUN_KEY          an API key for it
//   SANDRUN_SCREENSHOTS  a directory for the screenshots of docs/playground.md (optional)
//   CHROMIUM             the browser (default /usr/bin/chromium)
//
// Where a test cuts the WebSocket, Playwright's routeWebSocket stands
// between page and gateway: it forwards each connection to the real
// gateway (the page still talks to it) and can close one, or refuse new
// ones, on the test's word.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

const BASE = (process.env.SANDRUN_URL ?? 'http://127.0.0.1:8090').replace(/\/$/, '');
const KEY = process.env.SANDRUN_KEY;
const SHOTS = process.env.SANDRUN_SCREENSHOTS;
const RUN_TIMEOUT = 90_000;
const WS_ROUTE = /\/v1\/ws$/;

if (!KEY) throw new Error('set SANDRUN_KEY to an API key of the gateway at SANDRUN_URL');

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    // This machine's network is closed: Chromium's own background traffic
    // would only fail, noisily.
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh browser context (no stored key, no history) with the page open. */
async function open(t, setup = async () => {}) {
  const context = await browser.newContext({ baseURL: BASE, viewport: { width: 1360, height: 780 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.text().startsWith('CSP violation')) problems.push(message.text());
  });
  // Anything the Content-Security-Policy blocks is a defect of the page.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`),
    );
    // Every status the page shows, in order, to check it went queued → running → done.
    window.__states = [];
    document.addEventListener('DOMContentLoaded', () => {
      const status = document.getElementById('status');
      new MutationObserver(() => {
        const state = status.dataset.state;
        if (window.__states.at(-1) !== state) window.__states.push(state);
      }).observe(status, { attributes: true, attributeFilter: ['data-state'] });
    });
  });
  await setup(page, context);
  const response = await page.goto('/');
  assert.equal(response.status(), 200);
  t.after(() => assert.deepEqual(problems, [], 'no page errors, no CSP violations'));
  return { page, context };
}

async function enterKey(page) {
  await page.locator('#key-dialog').waitFor({ state: 'visible' });
  await page.fill('#key-input', KEY);
  await page.click('#key-save');
  await page.locator('#key-dialog').waitFor({ state: 'hidden' });
}

async function waitForState(page, selector, states, timeout = RUN_TIMEOUT) {
  const wanted = Array.isArray(states) ? states : [states];
  try {
    await page.waitForFunction(
      ([selector, wanted]) => wanted.includes(document.querySelector(selector)?.dataset.state),
      [selector, wanted],
      { timeout, polling: 50 },
    );
  } catch (error) {
    throw new Error(`${selector} never became ${wanted.join(' or ')}: ${await panel(page)}`, { cause: error });
  }
  return page.locator(selector).getAttribute('data-state');
}

/** What the page shows, for a failure's message. */
async function panel(page) {
  return JSON.stringify(
    await page.evaluate(() => {
      const text = (id) => document.getElementById(id)?.textContent;
      return {
        connection: document.getElementById('connection').dataset.state,
        status: document.getElementById('status').dataset.state,
        statuses: window.__states,
        id: text('run-id'),
        exit: text('exit-code'),
        message: text('message'),
        stdout: text('stdout'),
        stderr: text('stderr'),
      };
    }),
  );
}

/** Runs the editor's program and waits for its end; the state it ended in. */
async function runToEnd(page) {
  await page.click('#run');
  const state = await waitForState(page, '#status', ['succeeded', 'failed', 'timed_out', 'cancelled', 'error']);
  return { state, shown: await panel(page) };
}

/** Replaces the editor's text by typing into it, as a person would paste. */
async function setCode(page, code) {
  await page.click('.cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(code);
  const shown = await page.locator('.cm-line').allTextContents();
  assert.equal(shown.join('\n'), code, 'the editor holds the code');
}

async function text(page, selector) {
  return page.locator(selector).textContent();
}

async function screenshot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name) });
}

/** The execution as the gateway has it, asked with Node's own fetch. */
async function fromGateway(id) {
  const response = await fetch(`${BASE}/v1/executions/${id}`, { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(response.status, 200);
  return response.json();
}

test('asks for the key once, runs a Python program with stdin and shows its stdout, live', { timeout: 180_000 }, async (t) => {
  const { page } = await open(t);
  await enterKey(page);
  await waitForState(page, '#connection', 'connected', 15_000);
  await page.selectOption('#language', 'python');
  await setCode(
    page,
    'import sys, time\n\nname = sys.stdin.read().strip()\ntime.sleep(1)\nprint(f"hello, {name}")\nprint("sum", sum(range(10)))\n',
  );
  await page.fill('#stdin', 'playwright');
  const { state, shown } = await runToEnd(page);
  assert.equal(state, 'succeeded', shown);
  assert.equal(await text(page, '#stdout'), 'hello, playwright\nsum 45\n');
  assert.equal(await text(page, '#stderr'), '');
  assert.equal(await text(page, '#exit-code'), '0');
  assert.match(await text(page, '#duration'), /^in \d/);
  assert.equal(await page.locator('.via-http').isVisible(), false, 'it went over the WebSocket');
  const states = await page.evaluate(() => window.__states);
  assert.deepEqual(states.filter((s) => s !== 'submitting'), ['queued', 'running', 'succeeded'], `statuses shown: ${states}`);
  const steps = await page.locator('#steps li').evaluateAll((items) => items.map((i) => i.className));
  assert.deepEqual(steps, ['reached', 'reached', 'current']);
  const id = await text(page, '#run-id');
  assert.match(id, /^[a-z0-9-]+$/);
  assert.equal(await page.locator('#history .entry').first().getAttribute('data-id'), id);
  await screenshot(page, 'playground.png');

  // A reload keeps the key (no dialog), the history, and shows the
  // result again, fetched from the gateway.
  const fetched = page.waitForResponse((r) => r.url().endsWith(`/v1/executions/${id}`) && r.status() === 200);
  await page.reload();
  await fetched;
  await waitForState(page, '#connection', 'connected', 15_000);
  assert.equal(await page.locator('#key-dialog').isVisible(), false, 'the key is asked once');
  assert.equal(await waitForState(page, '#status', 'succeeded', 15_000), 'succeeded');
  assert.equal(await text(page, '#stdout'), 'hello, playwright\nsum 45\n');
  assert.equal(await page.locator('#history .entry').first().getAttribute('data-id'), id);
  assert.equal(await page.locator('#history .entry .badge').first().textContent(), 'succeeded');
  assert.equal(await page.inputValue('#stdin'), 'playwright', 'the draft survives too');
});

test('a program that fails shows its stderr and exit code', { timeout: 180_000 }, async (t) => {
  const { page } = await open(t);
  await enterKey(page);
  await waitForState(page, '#connection', 'connected', 15_000);
  await setCode(
    page,
    'import json, sys\n\nprint("reading the config")\nconfig = json.loads("{not json")\n',
  );
  const { state, shown } = await runToEnd(page);
  assert.equal(state, 'failed', shown);
  assert.equal(await text(page, '#exit-code'), '1', shown);
  assert.equal(await text(page, '#stdout'), 'reading the config\n');
  const stderr = await text(page, '#stderr');
  assert.match(stderr, /Traceback/);
  assert.match(stderr, /json\.decoder\.JSONDecodeError/);
  await screenshot(page, 'playground-error.png');

  // And an exit code of the program's own choosing.
  await setCode(page, 'import sys\nprint("bad input", file=sys.stderr)\nsys.exit(3)\n');
  const second = await runToEnd(page);
  assert.equal(second.state, 'failed', second.shown);
  assert.equal(await text(page, '#exit-code'), '3', second.shown);
  assert.equal(await text(page, '#stderr'), 'bad input\n');
  assert.equal(await page.locator('#history .entry').count(), 2);
});

test('the language picker runs Node.js and Bash', { timeout: 180_000 }, async (t) => {
  const { page } = await open(t);
  await enterKey(page);
  await waitForState(page, '#connection', 'connected', 15_000);
  for (const [language, says] of [
    ['node', /^hello, sandrun, from Node\.js v\d+/],
    ['bash', /^hello, sandrun, from bash \d/],
  ]) {
    // The sample follows the language while it is untouched.
    await page.selectOption('#language', language);
    await page.fill('#stdin', 'sandrun');
    const { state, shown } = await runToEnd(page);
    assert.equal(state, 'succeeded', `${language}: ${shown}`);
    assert.match(await text(page, '#stdout'), says, language);
    assert.equal(await page.locator('#history .entry .lang').first().textContent(), language);
  }
});

test('the socket is cut mid-run: the page reconnects and still shows the result', { timeout: 180_000 }, async (t) => {
  const links = [];
  let refusing = false;
  const { page } = await open(t, async (page) => {
    await page.routeWebSocket(WS_ROUTE, (ws) => {
      if (refusing) {
        ws.close({ code: 1011, reason: 'refused by the test' });
        return;
      }
      const link = { ws, fromGateway: [] };
      links.push(link);
      link.server = ws.connectToServer();
      link.server.onMessage((message) => {
        link.fromGateway.push(String(message));
        ws.send(message);
      });
      ws.onMessage((message) => link.server.send(message));
    });
  });
  await enterKey(page);
  await waitForState(page, '#connection', 'connected', 15_000);
  await setCode(
    page,
    'import time\n\nprint("before the cut", flush=True)\ntime.sleep(10)\nprint("after the cut")\n',
  );
  await page.click('#run');
  // Accepted, and far from done (it sleeps 10 s).
  await page.waitForFunction(() => document.getElementById('run-id').textContent !== '', null, { timeout: 30_000 });
  await waitForState(page, '#status', ['queued', 'running']);
  // Cut it while running if the cluster says so in time; queued is cut too.
  await waitForState(page, '#status', 'running', 8_000).catch(() => {});
  assert.ok(['queued', 'running'].includes(await page.locator('#status').getAttribute('data-state')));
  const id = await text(page, '#run-id');

  // Cut: the gateway's end of the socket closes, and for 2 s every new
  // socket is refused.
  refusing = true;
  const cut = links.at(-1);
  // (A browser's socket may close only with 1000 or 3000-4999.)
  await cut.server.close({ code: 4000, reason: 'cut by the test' });
  assert.equal(await waitForState(page, '#connection', ['reconnecting', 'offline'], 5_000), 'reconnecting');
  await screenshot(page, 'playground-reconnecting.png');
  await page.waitForTimeout(2_000);
  refusing = false;

  await waitForState(page, '#connection', 'connected', 20_000);
  const ended = await waitForState(page, '#status', ['succeeded', 'failed', 'timed_out', 'cancelled']);
  assert.equal(ended, 'succeeded', await panel(page));
  assert.equal(await text(page, '#stdout'), 'before the cut\nafter the cut\n');
  assert.equal(await text(page, '#run-id'), id);
  assert.ok(links.length >= 2, `a new socket to the gateway (${links.length})`);
  // The result came over the new socket: the page subscribed again.
  const resumed = links.at(-1);
  assert.ok(resumed !== cut);
  const updates = resumed.fromGateway.map((m) => JSON.parse(m)).filter((m) => m.type === 'update');
  assert.ok(
    updates.some((m) => m.execution.id === id && m.execution.status === 'succeeded'),
    `the final update over the new socket: ${JSON.stringify(updates)}`,
  );
});

test('Cancel stops a running program', { timeout: 180_000 }, async (t) => {
  const { page } = await open(t);
  await enterKey(page);
  await waitForState(page, '#connection', 'connected', 15_000);
  await setCode(page, 'import time\n\nprint("started", flush=True)\ntime.sleep(120)\nprint("never")\n');
  await page.click('#run');
  await waitForState(page, '#status', 'running');
  assert.equal(await page.isEnabled('#cancel'), true);
  const id = await text(page, '#run-id');
  const asked = Date.now();
  await page.click('#cancel');
  const ended = await waitForState(page, '#status', ['succeeded', 'failed', 'timed_out', 'cancelled'], 60_000);
  assert.equal(ended, 'cancelled', await panel(page));
  assert.ok(Date.now() - asked < 60_000);
  assert.equal(await page.isEnabled('#cancel'), false);
  assert.doesNotMatch(await text(page, '#stdout'), /never/);
  assert.equal((await fromGateway(id)).status, 'cancelled');
  assert.equal(await page.locator('#history .entry .badge').first().textContent(), 'cancelled');
});

test('with the socket down, a run falls back to POST ?wait= and shows its result', { timeout: 180_000 }, async (t) => {
  let attempts = 0;
  const { page } = await open(t, async (page) => {
    await page.routeWebSocket(WS_ROUTE, (ws) => {
      attempts += 1;
      ws.close({ code: 1011, reason: 'refused by the test' });
    });
  });
  await enterKey(page);
  assert.equal(await waitForState(page, '#connection', 'offline', 20_000), 'offline');
  assert.ok(attempts >= 3, `it kept trying (${attempts})`);
  await setCode(page, 'print("over HTTP")\n');
  const posted = page.waitForRequest((r) => r.method() === 'POST' && /\/v1\/executions\?wait=/.test(r.url()));
  await page.click('#run');
  await posted;
  const ended = await waitForState(page, '#status', ['succeeded', 'failed', 'timed_out', 'cancelled', 'error']);
  assert.equal(ended, 'succeeded', await panel(page));
  assert.equal(await page.locator('#status').getAttribute('data-transport'), 'http');
  assert.equal(await page.locator('.via-http').isVisible(), true);
  assert.equal(await text(page, '#stdout'), 'over HTTP\n');
  assert.equal(await page.locator('#connection').getAttribute('data-state'), 'offline');
  await screenshot(page, 'playground-offline.png');
});

test('a wrong key is refused at the dialog', { timeout: 60_000 }, async (t) => {
  const { page } = await open(t);
  await page.locator('#key-dialog').waitFor({ state: 'visible' });
  await page.fill('#key-input', 'not-a-key-0123456789');
  await page.click('#key-save');
  await page.locator('#key-error').waitFor({ state: 'visible' });
  assert.equal(await text(page, '#key-error'), 'The gateway refused this key.');
  assert.equal(await page.locator('#key-dialog').isVisible(), true);
  assert.equal(await page.evaluate(() => localStorage.getItem('sandrun.key')), null);
});
