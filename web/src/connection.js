// The page's WebSocket to the gateway: it connects, and when the socket
// drops it connects again by itself, waiting longer after each failure
// (with jitter, so that many pages do not come back at once).
//
// Its state, for the indicator:
//   connecting    the first try
//   connected     open
//   reconnecting  dropped, trying again soon
//   offline       several tries failed, or the browser says it is offline;
//                 still trying, less often
//
// What was in flight is the page's business: on every open it is told
// (`onOpen`), and subscribes again; the gateway answers a subscribe with
// the current state at once, so nothing that happened meanwhile is lost.

export const FIRST_DELAY_MS = 500;
export const MAX_DELAY_MS = 15_000;
/** Failed tries in a row after which the page calls itself offline. */
export const OFFLINE_AFTER = 3;
/** Open this long before the next drop counts as a first failure again. */
export const STABLE_MS = 3_000;

/** How long to wait before try number `attempt` (0 is the first retry). */
export function backoff(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
  // "Equal jitter": at least half the ceiling, at most all of it.
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export class Connection {
  /**
   * @param {object} options
   * @param {string} options.url
   * @param {() => string[]} options.protocols  asked on every try (the key may change)
   * @param {(state: string, detail: {retryInMs?: number, failures: number}) => void} options.onState
   * @param {(message: object) => void} options.onMessage
   * @param {() => void} [options.onOpen]
   * @param {typeof WebSocket} [options.WebSocket]
   * @param {{setTimeout: Function, clearTimeout: Function, now: () => number}} [options.clock]
   * @param {() => boolean} [options.online]  false when the browser knows it is offline
   * @param {() => number} [options.random]
   */
  constructor(options) {
    this.url = options.url;
    this.protocols = options.protocols;
    this.onState = options.onState;
    this.onMessage = options.onMessage;
    this.onOpen = options.onOpen ?? (() => {});
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.clock = options.clock ?? {
      setTimeout: (f, ms) => globalThis.setTimeout(f, ms),
      clearTimeout: (t) => globalThis.clearTimeout(t),
      now: () => Date.now(),
    };
    this.online = options.online ?? (() => true);
    this.random = options.random ?? Math.random;
    this.socket = null;
    this.state = 'idle';
    this.failures = 0;
    this.timer = null;
    this.openedAt = 0;
    this.stopped = true;
  }

  get connected() {
    return this.state === 'connected';
  }

  start() {
    this.stopped = false;
    if (!this.socket && this.timer === null) this.#connect();
  }

  /** Closes for good (until `start`), e.g. before the key changes. */
  stop() {
    this.stopped = true;
    this.#clearTimer();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onclose = socket.onmessage = socket.onerror = null;
      socket.close(1000, 'closed by the page');
    }
    this.#setState('idle', {});
  }

  /** Try now rather than at the end of the backoff (the browser came back online, say). */
  retryNow() {
    if (this.stopped || this.socket) return;
    this.#clearTimer();
    this.#connect();
  }

  /**
   * Gives up on the current socket and connects again, as after a drop: for
   * a socket that says nothing when it should (a dead network path can keep
   * one looking open for minutes).
   */
  drop() {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    socket.onopen = socket.onclose = socket.onmessage = socket.onerror = null;
    socket.close(4000, 'no answer');
    this.#dropped();
  }

  /** Sends a message if the socket is open; false if it is not. */
  send(message) {
    if (!this.socket || this.state !== 'connected') return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  #connect() {
    this.timer = null;
    if (this.state === 'idle') this.#setState('connecting', {});
    let socket;
    try {
      socket = new this.WebSocket(this.url, this.protocols());
    } catch {
      this.#dropped();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.openedAt = this.clock.now();
      this.#setState('connected', {});
      this.onOpen();
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
    };
    // An error is always followed by a close; the close decides.
    socket.onerror = () => {};
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.#dropped();
    };
  }

  #dropped() {
    if (this.stopped) return;
    // A socket that stayed open a while starts the count again; one that
    // drops as soon as it opens keeps the backoff growing.
    const wasStable = this.state === 'connected' && this.clock.now() - this.openedAt >= STABLE_MS;
    this.failures = wasStable ? 1 : this.failures + 1;
    const retryInMs = backoff(this.failures - 1, this.random);
    const offline = this.failures >= OFFLINE_AFTER || !this.online();
    this.#setState(offline ? 'offline' : 'reconnecting', { retryInMs });
    this.timer = this.clock.setTimeout(() => this.#connect(), retryInMs);
  }

  #clearTimer() {
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  #setState(state, detail) {
    this.state = state;
    this.onState(state, { ...detail, failures: this.failures });
  }
}
