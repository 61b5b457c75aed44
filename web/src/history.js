// This browser's recent executions, kept in localStorage so that they
// survive a reload. Only what the gateway cannot give back is kept (the
// code and stdin that were sent) with the last status seen; results are
// fetched again from the gateway when the page loads or an entry is opened.

export const HISTORY_KEY = 'sandrun.history.v1';
export const MAX_ENTRIES = 25;
/** Code and stdin longer than this are kept cut short. */
export const MAX_TEXT = 20_000;

const FINAL = new Set(['succeeded', 'failed', 'timed_out', 'cancelled']);

export function isFinal(status) {
  return FINAL.has(status);
}

export class History {
  /** @param {Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>} storage */
  constructor(storage) {
    this.storage = storage;
    this.entries = load(storage);
  }

  /** A new run goes first; the oldest beyond MAX_ENTRIES go. */
  add({ id, language, code, stdin, createdAt }) {
    this.entries = this.entries.filter((e) => e.id !== id);
    this.entries.unshift({
      id,
      language,
      code: cut(code),
      stdin: cut(stdin ?? ''),
      createdAt: createdAt ?? new Date().toISOString(),
      status: 'queued',
    });
    this.entries.length = Math.min(this.entries.length, MAX_ENTRIES);
    this.#save();
  }

  get(id) {
    return this.entries.find((e) => e.id === id);
  }

  /** Records what the gateway last said of a run; `expired` once it is gone. */
  update(id, fields) {
    const entry = this.get(id);
    if (!entry) return false;
    const next = { ...entry, ...pick(fields) };
    if (JSON.stringify(next) === JSON.stringify(entry)) return false;
    Object.assign(entry, next);
    this.#save();
    return true;
  }

  clear() {
    this.entries = [];
    this.storage.removeItem(HISTORY_KEY);
  }

  #save() {
    try {
      this.storage.setItem(HISTORY_KEY, JSON.stringify(this.entries));
    } catch {
      // Storage full or refused (private mode): the history lasts this page.
    }
  }
}

function pick({ status, exitCode, durationMillis }) {
  const out = {};
  if (status !== undefined) out.status = status;
  if (exitCode !== undefined) out.exitCode = exitCode;
  if (durationMillis !== undefined) out.durationMillis = durationMillis;
  return out;
}

function cut(text) {
  return typeof text === 'string' ? text.slice(0, MAX_TEXT) : '';
}

/** What was stored, less anything that is not an entry (another version's, or hand-edited). */
function load(storage) {
  let value;
  try {
    value = JSON.parse(storage.getItem(HISTORY_KEY) ?? '[]');
  } catch {
    return [];
  }
  if (!Array.isArray(value)) return [];
  return value
    .filter((e) => e && typeof e.id === 'string' && typeof e.language === 'string')
    .map((e) => ({ ...e, code: cut(e.code), stdin: cut(e.stdin) }))
    .slice(0, MAX_ENTRIES);
}
