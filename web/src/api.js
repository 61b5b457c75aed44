// The gateway's REST API, with the API key as `Authorization: Bearer`.
// Every call names the gateway that served the page: the same origin.

/** An answer that was not 2xx, with the gateway's `{error: {code, message}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {() => string | null} getKey
 * @param {typeof fetch} [fetchImpl]
 */
export function restClient(getKey, fetchImpl = (...args) => fetch(...args)) {
  async function call(method, path, body) {
    const headers = { Authorization: `Bearer ${getKey() ?? ''}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetchImpl(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
    const text = await response.text();
    let value = null;
    try {
      value = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: said below
    }
    if (!response.ok) {
      const error = value?.error;
      throw new ApiError(response.status, error?.code ?? 'http_' + response.status, error?.message ?? (text || response.statusText));
    }
    return { status: response.status, value };
  }
  return {
    /** Submits and holds on up to `wait` for the result (the fallback when there is no socket). */
    submitAndWait: (request, wait = '30s') => call('POST', `/v1/executions?wait=${encodeURIComponent(wait)}`, request),
    get: (id) => call('GET', `/v1/executions/${encodeURIComponent(id)}`),
    cancel: (id) => call('DELETE', `/v1/executions/${encodeURIComponent(id)}`),
    /** Whether the key works: a list of one. */
    probe: () => call('GET', '/v1/executions?limit=1'),
  };
}

/** The subprotocols that carry `key` to the WebSocket (browsers cannot set its headers). */
export function wsProtocols(key) {
  return ['sandrun.v1', 'sandrun.bearer.' + base64url(key)];
}

/** base64url of the UTF-8 bytes, without padding: an HTTP token, as a subprotocol must be. */
export function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

/** The socket's URL on the page's own host: ws: or wss: as the page is http: or https:. */
export function wsUrl(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/v1/ws`;
}
