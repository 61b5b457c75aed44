// The playground: write a program, run it in a sandbox through the gateway,
// watch it go queued → running → done.
//
// Runs go over the WebSocket when it is up (`execute`, then an `update` on
// every change); when it is down, over REST (`POST ?wait=`, then polling).
// A run in flight when the socket drops is picked up again by `subscribe`
// once the socket is back (or by polling if it stays down). Program output
// is untrusted: it is only ever set as text, never as markup.

import { ApiError, restClient, wsProtocols, wsUrl } from './api.js';
import { Connection } from './connection.js';
import { createEditor } from './editor.js';
import { connectionLabel, firstLine, formatDuration, statusLabel } from './format.js';
import { History, isFinal } from './history.js';

const KEY_STORAGE = 'sandrun.key';
const DRAFT_STORAGE = 'sandrun.draft.v1';
/** How long a REST submit holds on for the result when the socket is down. */
const HTTP_WAIT = '30s';
const POLL_MS = 1500;
/** An `execute` not accepted within this long: the socket is taken for dead. */
const ACCEPT_WITHIN_MS = 15_000;

const SAMPLES = {
  python: 'import sys\n\nname = sys.stdin.read().strip() or "world"\nprint(f"hello, {name}, from Python {sys.version.split()[0]}")\n',
  node: 'const name = require("fs").readFileSync(0, "utf8").trim() || "world";\nconsole.log(`hello, ${name}, from Node.js ${process.version}`);\n',
  bash: 'read -r name || true\necho "hello, ${name:-world}, from bash $BASH_VERSION"\n',
};

const $ = (id) => document.getElementById(id);
const ui = {
  connection: $('connection'),
  connectionText: $('connection-text'),
  keyButton: $('key-button'),
  language: $('language'),
  run: $('run'),
  cancel: $('cancel'),
  stdin: $('stdin'),
  status: $('status'),
  duration: $('duration'),
  exit: $('exit'),
  exitCode: $('exit-code'),
  runId: $('run-id'),
  steps: $('steps'),
  message: $('message'),
  stdout: $('stdout'),
  stderr: $('stderr'),
  stdoutCut: $('stdout-cut'),
  stderrCut: $('stderr-cut'),
  history: $('history'),
  historyEmpty: $('history-empty'),
  clearHistory: $('clear-history'),
  keyDialog: $('key-dialog'),
  keyForm: $('key-form'),
  keyInput: $('key-input'),
  keyError: $('key-error'),
  keyForget: $('key-forget'),
  keyCancel: $('key-cancel'),
};

const storage = window.localStorage;
let key = storage.getItem(KEY_STORAGE);
const api = restClient(() => key);
const history = new History(storage);

/** The run the result panel shows. */
let shown = blankRun();
let nextRef = 1;
/** Runs sent over the socket and not yet accepted, by `ref`. */
const pending = new Map();
let pollTimer = null;
let ticker = null;

function blankRun() {
  return { id: null, ref: null, status: 'idle', startedAt: 0, seen: {}, cancelling: false, view: null };
}

const draft = loadDraft();
ui.language.value = draft.language;
ui.stdin.value = draft.stdin;
/** The language the editor highlights, to tell whether its code is still that language's sample. */
let editorLanguage = draft.language;
const editor = createEditor($('editor'), {
  doc: draft.code,
  language: draft.language,
  onRun: () => run(),
  label: 'Program source',
});

const connection = new Connection({
  url: wsUrl(window.location),
  protocols: () => wsProtocols(key ?? ''),
  onState: showConnection,
  onMessage: handleMessage,
  onOpen: () => {
    stopPolling();
    // Picks up a run that was in flight when the socket dropped: the
    // gateway answers with its state now, then every change.
    if (shown.id && !isFinal(shown.status)) connection.send({ type: 'subscribe', id: shown.id });
  },
  online: () => navigator.onLine !== false,
});

// --- the connection indicator ---

function showConnection(state, detail) {
  ui.connection.dataset.state = state;
  ui.connectionText.textContent = connectionLabel(state, detail);
  if (state === 'connected') return;
  if (state === 'idle') return;
  // Sent, but the socket went before the gateway said it took the run: it
  // may or may not have started, and sending again could run it twice.
  for (const [ref] of pending) {
    pending.delete(ref);
    if (shown.ref === ref) {
      showError('The connection dropped before the gateway confirmed the run. It may have started; press Run to try again.');
    }
  }
  // Down for a while: follow the shown run over REST until the socket is back.
  if (state === 'offline' && shown.id && !isFinal(shown.status)) startPolling();
  // A key the gateway refuses fails the socket's handshake, which a page
  // cannot tell from a network fault: ask REST.
  if (detail.failures === 2 && key) checkKey();
}

async function checkKey() {
  try {
    await api.probe();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) askForKey('The gateway refused the saved key. Enter it again.');
  }
}

// --- messages from the socket ---

function handleMessage(message) {
  switch (message.type) {
    case 'accepted': {
      const sent = pending.get(message.ref);
      if (!sent) return;
      pending.delete(message.ref);
      history.add({ id: message.id, language: sent.language, code: sent.code, stdin: sent.stdin });
      if (shown.ref === message.ref) {
        shown.id = message.id;
        ui.runId.textContent = message.id;
      }
      renderHistory();
      return;
    }
    case 'update': {
      const view = message.execution;
      if (history.update(view.id, summary(view))) renderHistory();
      if (view.id === shown.id) showView(view);
      if (isFinal(view.status)) connection.send({ type: 'unsubscribe', id: view.id });
      return;
    }
    case 'error': {
      if (message.ref && pending.has(message.ref)) pending.delete(message.ref);
      if (!message.ref || message.ref === shown.ref) showError(describe(message.error));
      return;
    }
    default:
  }
}

function summary(view) {
  return { status: view.status, exitCode: view.exitCode ?? null, durationMillis: view.durationMillis ?? null };
}

function describe(error) {
  if (!error) return 'The gateway refused the request.';
  const field = error.field ? ` (${error.field})` : '';
  return `${error.message}${field}`;
}

// --- running ---

async function run() {
  if (!key) {
    askForKey();
    return;
  }
  if (shown.status === 'submitting') return;
  saveDraft();
  const language = ui.language.value;
  const code = editor.code;
  const stdin = ui.stdin.value;
  const request = { language, code, ...(stdin ? { stdin } : {}) };
  stopPolling();
  shown = blankRun();
  shown.status = 'submitting';
  shown.startedAt = performance.now();
  showFresh();
  if (connection.connected) {
    const ref = `r${nextRef++}`;
    shown.ref = ref;
    pending.set(ref, { language, code, stdin });
    connection.send({ type: 'execute', ref, ...request });
    setTimeout(() => {
      if (pending.has(ref)) connection.drop();
    }, ACCEPT_WITHIN_MS);
    return;
  }
  await runOverHttp(request, { language, code, stdin });
}

/** The fallback: one POST that holds on for the result, then polling if it is not done. */
async function runOverHttp(request, sent) {
  const mine = shown;
  ui.status.dataset.transport = 'http';
  showNote('The WebSocket is down: waiting for the result over HTTP.');
  try {
    const { value } = await api.submitAndWait(request, HTTP_WAIT);
    history.add({ id: value.id, language: sent.language, code: sent.code, stdin: sent.stdin });
    history.update(value.id, summary(value));
    renderHistory();
    if (shown !== mine) return;
    shown.id = value.id;
    showNote(null);
    showView(value);
    if (!isFinal(value.status)) follow();
  } catch (error) {
    if (shown === mine) showError(errorText(error));
  }
}

/** Keeps the shown run up to date: over the socket if it is up, else by polling. */
function follow() {
  if (connection.connected) connection.send({ type: 'subscribe', id: shown.id });
  else startPolling();
}

function startPolling() {
  if (pollTimer !== null) return;
  const id = shown.id;
  const poll = async () => {
    pollTimer = null;
    if (shown.id !== id || isFinal(shown.status) || connection.connected) return;
    try {
      const { value } = await api.get(id);
      if (history.update(id, summary(value))) renderHistory();
      if (shown.id === id) showView(value);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return showError(errorText(error));
    }
    if (shown.id === id && !isFinal(shown.status) && !connection.connected) pollTimer = setTimeout(poll, POLL_MS);
  };
  pollTimer = setTimeout(poll, 0);
}

function stopPolling() {
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
}

async function cancel() {
  if (!shown.id || isFinal(shown.status)) return;
  const mine = shown;
  mine.cancelling = true;
  ui.cancel.disabled = true;
  ui.cancel.textContent = 'Cancelling…';
  try {
    const { value } = await api.cancel(mine.id);
    if (shown === mine) showView(value);
    if (!connection.connected) startPolling();
  } catch (error) {
    mine.cancelling = false;
    if (shown === mine) {
      showError(errorText(error));
      showView(mine.view);
    }
  }
}

// --- the result panel ---

/** Clears the panel for a new run. */
function showFresh() {
  ui.status.dataset.state = shown.status;
  ui.status.dataset.transport = 'ws';
  ui.status.textContent = statusLabel(shown.status);
  ui.duration.textContent = '';
  ui.exit.hidden = true;
  ui.exitCode.textContent = '';
  ui.runId.textContent = shown.id ?? '';
  ui.stdout.textContent = '';
  ui.stderr.textContent = '';
  ui.stdoutCut.hidden = ui.stderrCut.hidden = true;
  showNote(null);
  for (const step of ui.steps.children) {
    step.className = '';
    step.querySelector('.at').textContent = '';
  }
  ui.cancel.disabled = true;
  ui.cancel.textContent = 'Cancel';
  ui.run.disabled = shown.status === 'submitting';
  startTicker();
}

/** Shows what the gateway says of the shown run. Output only as text. */
function showView(view) {
  if (!view || view.id !== shown.id) return;
  // Answers can arrive out of order: the DELETE reply carries the state from
  // before the cancel and may land after the socket's final update. A final
  // state is never replaced by an earlier one.
  if (isFinal(shown.status) && shown.view && !isFinal(view.status)) return;
  shown.view = view;
  shown.status = view.status;
  const final = isFinal(view.status);
  const step = final ? 'done' : view.status;
  if (shown.seen[step] === undefined && shown.startedAt) shown.seen[step] = performance.now() - shown.startedAt;
  if (view.status === 'running' && shown.seen.queued === undefined) shown.seen.queued = shown.seen.running;

  ui.status.dataset.state = view.status;
  ui.status.textContent = statusLabel(view.status);
  ui.runId.textContent = view.id;
  ui.exit.hidden = view.exitCode === undefined || view.exitCode === null;
  ui.exitCode.textContent = ui.exit.hidden ? '' : String(view.exitCode);
  ui.stdout.textContent = view.stdout ?? '';
  ui.stderr.textContent = view.stderr ?? '';
  ui.stdoutCut.hidden = !view.stdoutTruncated;
  ui.stderrCut.hidden = !view.stderrTruncated;
  if (final) {
    const ran = formatDuration(view.durationMillis);
    ui.duration.textContent = ran ? `in ${ran}` : '';
    const why = [view.reason, view.message].filter(Boolean).join(': ');
    showNote(view.status === 'succeeded' || !why ? null : why);
  } else if (ui.message.dataset.kind !== 'error') {
    showNote(null);
  }
  renderSteps(view.status);
  ui.run.disabled = false;
  ui.cancel.disabled = final || shown.cancelling;
  ui.cancel.textContent = shown.cancelling && !final ? 'Cancelling…' : 'Cancel';
  if (final) stopTicker();
  else startTicker();
}

function renderSteps(status) {
  const order = ['queued', 'running', 'done'];
  const reached = isFinal(status) ? 3 : order.indexOf(status) + 1;
  order.forEach((name, i) => {
    const item = ui.steps.children[i];
    item.className = i < reached ? (i === reached - 1 ? 'current' : 'reached') : '';
    const at = shown.seen[name];
    item.querySelector('.at').textContent = typeof at === 'number' && i < reached ? `+${formatDuration(at)}` : '';
  });
}

/** While a run is on its way: the time since Run was pressed. */
function startTicker() {
  if (ticker !== null) return;
  ticker = setInterval(() => {
    if (isFinal(shown.status) || !shown.startedAt) return stopTicker();
    ui.duration.textContent = formatDuration(performance.now() - shown.startedAt);
  }, 100);
}

function stopTicker() {
  if (ticker !== null) clearInterval(ticker);
  ticker = null;
}

function showError(text) {
  if (shown.status === 'submitting') {
    shown.status = 'error';
    ui.status.dataset.state = 'error';
    ui.status.textContent = statusLabel('error');
    ui.duration.textContent = '';
    stopTicker();
  }
  ui.run.disabled = false;
  showNote(text, 'error');
}

function showNote(text, kind = 'note') {
  ui.message.hidden = !text;
  ui.message.textContent = text ?? '';
  ui.message.dataset.kind = text ? kind : '';
}

function errorText(error) {
  if (error instanceof ApiError) return `${error.message} (${error.status} ${error.code})`;
  return `Could not reach the gateway: ${error.message}`;
}

// --- history ---

function renderHistory() {
  ui.historyEmpty.hidden = history.entries.length > 0;
  ui.history.replaceChildren(
    ...history.entries.map((entry) => {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'entry';
      button.dataset.id = entry.id;
      if (entry.id === shown.id) button.setAttribute('aria-current', 'true');
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.state = entry.status;
      badge.textContent = statusLabel(entry.status);
      const language = document.createElement('span');
      language.className = 'lang';
      language.textContent = entry.language;
      const when = document.createElement('time');
      when.dateTime = entry.createdAt;
      when.textContent = new Date(entry.createdAt).toLocaleTimeString();
      const code = document.createElement('span');
      code.className = 'line';
      code.textContent = firstLine(entry.code) || '(empty)';
      const facts = document.createElement('span');
      facts.className = 'facts';
      const exit = entry.exitCode === null || entry.exitCode === undefined ? '' : `exit ${entry.exitCode}`;
      facts.textContent = [exit, formatDuration(entry.durationMillis)].filter(Boolean).join(' · ');
      button.append(badge, language, when, code, facts);
      button.addEventListener('click', () => open(entry.id));
      item.append(button);
      return item;
    }),
  );
}

/** Shows a run of the history: its code back in the editor, its result fetched again. */
async function open(id) {
  const entry = history.get(id);
  if (!entry) return;
  stopPolling();
  ui.language.value = entry.language;
  editor.setLanguage(entry.language);
  editorLanguage = entry.language;
  editor.code = entry.code;
  ui.stdin.value = entry.stdin ?? '';
  saveDraft();
  await show(id);
}

/** The panel follows run `id`, as the gateway has it now. */
async function show(id) {
  shown = blankRun();
  shown.id = id;
  shown.status = history.get(id)?.status ?? 'queued';
  showFresh();
  stopTicker();
  ui.status.textContent = 'loading…';
  renderHistory();
  try {
    const { value } = await api.get(id);
    if (shown.id !== id) return;
    history.update(id, summary(value));
    renderHistory();
    showView(value);
    if (!isFinal(value.status)) follow();
  } catch (error) {
    if (shown.id !== id) return;
    if (error instanceof ApiError && error.status === 404) {
      history.update(id, { status: 'expired' });
      renderHistory();
      shown.status = 'expired';
      ui.status.dataset.state = 'expired';
      ui.status.textContent = statusLabel('expired');
      showNote('The gateway no longer has this run: runs are deleted a while after they finish.');
    } else {
      showError(errorText(error));
    }
  }
}

/** Asks the gateway again for every run in the history (the stored status may be old). */
async function refreshHistory() {
  for (const entry of [...history.entries]) {
    if (entry.status === 'expired') continue;
    try {
      const { value } = await api.get(entry.id);
      history.update(entry.id, summary(value));
    } catch (error) {
      if (!(error instanceof ApiError)) return;
      if (error.status === 404) history.update(entry.id, { status: 'expired' });
      if (error.status === 401) return askForKey('The gateway refused the saved key. Enter it again.');
    }
    renderHistory();
  }
}

// --- the key ---

function askForKey(reason) {
  ui.keyInput.value = '';
  ui.keyError.hidden = !reason;
  ui.keyError.textContent = reason ?? '';
  ui.keyCancel.hidden = !key;
  if (!ui.keyDialog.open) ui.keyDialog.showModal();
  ui.keyInput.focus();
}

async function saveKey(candidate) {
  ui.keyError.hidden = true;
  try {
    await restClient(() => candidate).probe();
  } catch (error) {
    ui.keyError.hidden = false;
    ui.keyError.textContent =
      error instanceof ApiError && error.status === 401 ? 'The gateway refused this key.' : errorText(error);
    return;
  }
  key = candidate;
  storage.setItem(KEY_STORAGE, key);
  ui.keyDialog.close();
  startSession();
}

function startSession() {
  ui.keyButton.textContent = 'API key ✓';
  connection.stop();
  connection.start();
  refreshHistory().then(() => {
    // After a reload, the last run's result, fetched again.
    if (!shown.id && history.entries.length > 0) show(history.entries[0].id);
  });
}

// --- drafts ---

function loadDraft() {
  try {
    const value = JSON.parse(storage.getItem(DRAFT_STORAGE) ?? 'null');
    if (value && SAMPLES[value.language] !== undefined && typeof value.code === 'string') {
      return { language: value.language, code: value.code, stdin: typeof value.stdin === 'string' ? value.stdin : '' };
    }
  } catch {
    // start afresh
  }
  return { language: 'python', code: SAMPLES.python, stdin: '' };
}

function saveDraft() {
  try {
    storage.setItem(DRAFT_STORAGE, JSON.stringify({ language: ui.language.value, code: editor.code, stdin: ui.stdin.value }));
  } catch {
    // storage full or refused: the draft lasts this page
  }
}

// --- wiring ---

ui.language.addEventListener('change', () => {
  const next = ui.language.value;
  // The sample follows the language until it is edited.
  if (editor.code.trim() === '' || editor.code === SAMPLES[editorLanguage]) editor.code = SAMPLES[next];
  editor.setLanguage(next);
  editorLanguage = next;
  saveDraft();
});
ui.run.addEventListener('click', () => run());
ui.cancel.addEventListener('click', () => cancel());
ui.stdin.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    run();
  }
});
ui.clearHistory.addEventListener('click', () => {
  history.clear();
  renderHistory();
});
ui.keyButton.addEventListener('click', () => askForKey());
ui.keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const candidate = ui.keyInput.value.trim();
  if (!candidate) {
    ui.keyError.hidden = false;
    ui.keyError.textContent = 'Enter a key.';
    return;
  }
  saveKey(candidate);
});
ui.keyCancel.addEventListener('click', () => ui.keyDialog.close());
ui.keyDialog.addEventListener('cancel', (event) => {
  if (!key) event.preventDefault();
});
ui.keyForget.addEventListener('click', () => {
  key = null;
  storage.removeItem(KEY_STORAGE);
  connection.stop();
  ui.keyButton.textContent = 'API key';
  askForKey();
});
window.addEventListener('online', () => connection.retryNow());
window.addEventListener('pagehide', saveDraft);

renderHistory();
if (key) startSession();
else askForKey();
