import assert from 'node:assert/strict';
import { test } from 'node:test';
import { History, HISTORY_KEY, isFinal, MAX_ENTRIES, MAX_TEXT } from '../../src/history.js';

function memoryStorage(initial = {}) {
  const data = new Map(Object.entries(initial));
  return {
    data,
    getItem: (k) => (data.has(k) ? data.get(k) : null),
    setItem: (k, v) => data.set(k, String(v)),
    removeItem: (k) => data.delete(k),
  };
}

test('runs are kept newest first, survive a reload, and are capped', () => {
  const storage = memoryStorage();
  const history = new History(storage);
  for (let i = 0; i < MAX_ENTRIES + 5; i++) history.add({ id: `run-${i}`, language: 'python', code: `print(${i})` });
  assert.equal(history.entries.length, MAX_ENTRIES);
  assert.equal(history.entries[0].id, `run-${MAX_ENTRIES + 4}`);
  assert.equal(history.entries[0].status, 'queued');

  const reloaded = new History(storage);
  assert.deepEqual(reloaded.entries, history.entries);
});

test('updates keep what the gateway said, and say whether anything changed', () => {
  const history = new History(memoryStorage());
  history.add({ id: 'a', language: 'bash', code: 'true', stdin: 'in' });
  assert.equal(history.update('a', { status: 'succeeded', exitCode: 0, durationMillis: 12, stdout: 'not kept' }), true);
  assert.equal(history.update('a', { status: 'succeeded', exitCode: 0, durationMillis: 12 }), false);
  assert.equal(history.update('missing', { status: 'failed' }), false);
  const entry = history.get('a');
  assert.equal(entry.stdout, undefined, 'results are fetched again, not stored');
  assert.deepEqual([entry.status, entry.exitCode, entry.durationMillis, entry.stdin], ['succeeded', 0, 12, 'in']);
});

test('the same id again moves to the top instead of doubling', () => {
  const history = new History(memoryStorage());
  history.add({ id: 'a', language: 'bash', code: '1' });
  history.add({ id: 'b', language: 'bash', code: '2' });
  history.add({ id: 'a', language: 'bash', code: '3' });
  assert.deepEqual(history.entries.map((e) => e.id), ['a', 'b']);
});

test('long code is cut; storage that is corrupt, foreign or full does not break the page', () => {
  const history = new History(memoryStorage());
  history.add({ id: 'a', language: 'python', code: 'x'.repeat(MAX_TEXT + 10) });
  assert.equal(history.get('a').code.length, MAX_TEXT);

  for (const stored of ['{not json', '"a string"', '[1, null, {"id": 3}, {"id": "ok", "language": "node"}]']) {
    const loaded = new History(memoryStorage({ [HISTORY_KEY]: stored }));
    assert.ok(loaded.entries.every((e) => typeof e.id === 'string'), stored);
  }
  assert.deepEqual(new History(memoryStorage({ [HISTORY_KEY]: '[{"id": "ok", "language": "node"}]' })).entries.map((e) => e.id), ['ok']);

  const full = memoryStorage();
  full.setItem = () => {
    throw new Error('QuotaExceededError');
  };
  const kept = new History(full);
  kept.add({ id: 'a', language: 'node', code: '1' });
  assert.equal(kept.entries.length, 1, 'kept for this page');
  kept.clear();
  assert.equal(kept.entries.length, 0);
});

test('final states', () => {
  assert.deepEqual(
    ['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'expired'].map(isFinal),
    [false, false, true, true, true, true, false],
  );
});
