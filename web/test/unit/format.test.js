import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectionLabel, firstLine, formatDuration, statusLabel } from '../../src/format.js';

test('durations', () => {
  assert.equal(formatDuration(82), '82 ms');
  assert.equal(formatDuration(1234), '1.23 s');
  assert.equal(formatDuration(12_345), '12.3 s');
  assert.equal(formatDuration(125_000), '2 min 5 s');
  assert.equal(formatDuration(undefined), '');
  assert.equal(formatDuration(-1), '');
});

test('labels', () => {
  assert.equal(statusLabel('timed_out'), 'timed out');
  assert.equal(connectionLabel('connected'), 'connected');
  assert.equal(connectionLabel('reconnecting', { retryInMs: 1900 }), 'reconnecting in 2 s…');
  assert.equal(connectionLabel('offline', { retryInMs: 8000 }), 'offline, retrying in 8 s');
  assert.equal(connectionLabel('idle'), 'not connected');
});

test('a history line is the first line with something on it, cut short', () => {
  assert.equal(firstLine('\n\n  import sys\nprint(1)'), 'import sys');
  assert.equal(firstLine('x'.repeat(100), 10), 'xxxxxxxxx…');
  assert.equal(firstLine(''), '');
});
