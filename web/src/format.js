// Words and numbers as the page shows them.

export function formatDuration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return `${minutes} min ${seconds} s`;
}

const LABELS = {
  submitting: 'submitting',
  queued: 'queued',
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  timed_out: 'timed out',
  cancelled: 'cancelled',
  expired: 'expired',
  error: 'error',
  idle: 'ready',
};

export function statusLabel(status) {
  return LABELS[status] ?? String(status);
}

/** The indicator's words for a connection state. */
export function connectionLabel(state, detail = {}) {
  const seconds = detail.retryInMs ? Math.max(1, Math.round(detail.retryInMs / 1000)) : 0;
  switch (state) {
    case 'connected':
      return 'connected';
    case 'connecting':
      return 'connecting…';
    case 'reconnecting':
      return seconds ? `reconnecting in ${seconds} s…` : 'reconnecting…';
    case 'offline':
      return seconds ? `offline, retrying in ${seconds} s` : 'offline';
    default:
      return 'not connected';
  }
}

/** One line of code, for a history entry. */
export function firstLine(code, max = 48) {
  const line = (code ?? '').split('\n').find((l) => l.trim() !== '') ?? '';
  const trimmed = line.trim();
  return trimmed.length > max ? trimmed.slice(0, max - 1) + '…' : trimmed;
}
