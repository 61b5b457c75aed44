// The socket's reconnect logic, with a fake WebSocket and a fake clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoff, Connection, FIRST_DELAY_MS, MAX_DELAY_MS, OFFLINE_AFTER, STABLE_MS } from '../../src/connection.js';

class FakeSocket {
  static made = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.closed = null;
    FakeSocket.made.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closed = { code, reason };
  }
  // what the network does
  open() {
    this.onopen?.();
  }
  receive(value) {
    this.onmessage?.({ data: typeof value === 'string' ? value : JSON.stringify(value) });
  }
  drop() {
    this.onerror?.();
    this.onclose?.({ code: 1006 });
  }
}

function fakeClock() {
  const clock = {
    t: 0,
    timers: [],
    setTimeout(f, ms) {
      const timer = { at: clock.t + ms, f };
      clock.timers.push(timer);
      return timer;
    },
    clearTimeout(timer) {
      clock.timers = clock.timers.filter((t) => t !== timer);
    },
    now: () => clock.t,
    /** Runs the next timer; returns how long it waited. */
    next() {
      clock.timers.sort((a, b) => a.at - b.at);
      const timer = clock.timers.shift();
      assert.ok(timer, 'a timer is set');
      const waited = timer.at - clock.t;
      clock.t = timer.at;
      timer.f();
      return waited;
    },
  };
  return clock;
}

function connection(overrides = {}) {
  FakeSocket.made = [];
  const clock = fakeClock();
  const states = [];
  const messages = [];
  let opens = 0;
  let key = 'k1';
  const c = new Connection({
    url: 'ws://gateway/v1/ws',
    protocols: () => ['sandrun.v1', `key-${key}`],
    onState: (state, detail) => states.push({ state, ...detail }),
    onMessage: (m) => messages.push(m),
    onOpen: () => opens++,
    WebSocket: FakeSocket,
    clock,
    random: () => 1,
    ...overrides,
  });
  return { c, clock, states, messages, opens: () => opens, setKey: (k) => (key = k) };
}

test('backoff doubles from the first delay up to the cap, with jitter in the upper half', () => {
  assert.equal(backoff(0, () => 1), FIRST_DELAY_MS);
  assert.equal(backoff(1, () => 1), 2 * FIRST_DELAY_MS);
  assert.equal(backoff(3, () => 1), 8 * FIRST_DELAY_MS);
  assert.equal(backoff(30, () => 1), MAX_DELAY_MS);
  assert.equal(backoff(0, () => 0), FIRST_DELAY_MS / 2);
  for (let attempt = 0; attempt < 10; attempt++) {
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
    const d = backoff(attempt);
    assert.ok(d >= ceiling / 2 && d <= ceiling, `${attempt}: ${d}`);
  }
});

test('connects, passes messages on, and sends only while open', () => {
  const { c, states, messages, opens } = connection();
  c.start();
  assert.deepEqual(states.map((s) => s.state), ['connecting']);
  const socket = FakeSocket.made[0];
  assert.deepEqual(socket.protocols, ['sandrun.v1', 'key-k1']);
  assert.equal(c.send({ type: 'subscribe', id: 'x' }), false, 'not open yet');
  socket.open();
  assert.equal(c.connected, true);
  assert.equal(opens(), 1);
  assert.equal(c.send({ type: 'subscribe', id: 'x' }), true);
  assert.deepEqual(socket.sent, [{ type: 'subscribe', id: 'x' }]);
  socket.receive({ type: 'update', execution: { id: 'x' } });
  socket.receive('not json');
  assert.deepEqual(messages, [{ type: 'update', execution: { id: 'x' } }]);
});

test('reconnects by itself with growing waits, says offline after a few failures, and recovers', () => {
  const { c, clock, states, opens, setKey } = connection();
  c.start();
  FakeSocket.made[0].open();
  clock.t = 10; // dropped at once: not a stable connection
  FakeSocket.made[0].drop();
  assert.equal(c.state, 'reconnecting');
  const waits = [];
  for (let i = 1; i <= OFFLINE_AFTER + 2; i++) {
    waits.push(clock.next());
    FakeSocket.made.at(-1).drop();
  }
  assert.deepEqual(waits, [1, 2, 4, 8, 16].map((n) => n * FIRST_DELAY_MS));
  const seen = states.map((s) => s.state);
  assert.equal(seen.indexOf('offline'), seen.indexOf('reconnecting') + OFFLINE_AFTER - 1, seen.join(' '));
  assert.equal(c.state, 'offline');
  assert.ok(states.at(-1).retryInMs > 0);

  // The key changed meanwhile: the next try carries the new one.
  setKey('k2');
  clock.next();
  const socket = FakeSocket.made.at(-1);
  assert.deepEqual(socket.protocols, ['sandrun.v1', 'key-k2']);
  socket.open();
  assert.equal(c.state, 'connected');
  assert.equal(opens(), 2, 'told on every open, to subscribe again');

  // Open long enough: the next drop starts the backoff afresh.
  clock.t += STABLE_MS;
  socket.drop();
  assert.equal(c.state, 'reconnecting');
  assert.equal(clock.next(), FIRST_DELAY_MS);
});

test('the browser saying offline makes it offline at the first failure', () => {
  const { c } = connection({ online: () => false });
  c.start();
  FakeSocket.made[0].drop();
  assert.equal(c.state, 'offline');
});

test('retryNow skips the wait; stop closes and stays closed', () => {
  const { c, clock } = connection();
  c.start();
  FakeSocket.made[0].drop();
  assert.equal(clock.timers.length, 1);
  c.retryNow();
  assert.equal(clock.timers.length, 0, 'the pending retry is dropped');
  assert.equal(FakeSocket.made.length, 2);
  const socket = FakeSocket.made[1];
  socket.open();
  c.stop();
  assert.deepEqual(socket.closed, { code: 1000, reason: 'closed by the page' });
  assert.equal(c.state, 'idle');
  socket.drop(); // late events of the closed socket change nothing
  assert.equal(clock.timers.length, 0);
  c.retryNow();
  assert.equal(FakeSocket.made.length, 2, 'no new socket after stop');
});

test('a constructor that throws (a malformed URL, say) counts as a failure', () => {
  let tries = 0;
  class Throwing {
    constructor() {
      tries++;
      throw new Error('SyntaxError');
    }
  }
  const { c, clock } = connection({ WebSocket: Throwing });
  c.start();
  assert.equal(c.state, 'reconnecting');
  clock.next();
  assert.equal(tries, 2);
});

test('drop gives up on a silent socket and connects again', () => {
  const { c, clock } = connection();
  c.start();
  const silent = FakeSocket.made[0];
  silent.open();
  c.drop();
  assert.deepEqual(silent.closed, { code: 4000, reason: 'no answer' });
  assert.equal(c.state, 'reconnecting');
  silent.drop(); // its late close event is not a second failure
  assert.equal(clock.timers.length, 1);
  clock.next();
  assert.equal(FakeSocket.made.length, 2);
});
