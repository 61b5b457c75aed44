import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiError, base64url, restClient, wsProtocols, wsUrl } from '../../src/api.js';

test('the key travels as a base64url subprotocol beside sandrun.v1', () => {
  assert.equal(base64url('key/with+odd=chars'), 'a2V5L3dpdGgrb2RkPWNoYXJz');
  assert.equal(base64url('é'), 'w6k');
  const [protocol, bearer] = wsProtocols('7764ce586b1ce0');
  assert.equal(protocol, 'sandrun.v1');
  assert.equal(Buffer.from(bearer.slice('sandrun.bearer.'.length), 'base64url').toString(), '7764ce586b1ce0');
  // A subprotocol must be an HTTP token.
  for (const key of ['a+b/c==', 'ключ', ' spaced key ']) {
    assert.match(wsProtocols(key)[1], /^[A-Za-z0-9._-]+$/, key);
  }
});

test('the socket is on the page own host, wss when the page is https', () => {
  assert.equal(wsUrl({ protocol: 'http:', host: '10.0.0.1:8080' }), 'ws://10.0.0.1:8080/v1/ws');
  assert.equal(wsUrl({ protocol: 'https:', host: 'run.example' }), 'wss://run.example/v1/ws');
});

test('REST calls carry the key and turn error bodies into ApiErrors', async () => {
  const calls = [];
  const answers = [
    { status: 200, body: '{"id": "run-1", "status": "succeeded"}' },
    { status: 401, body: '{"error": {"code": "unauthorized", "message": "missing or unknown API key"}}' },
    { status: 502, body: 'Bad Gateway' },
  ];
  const fake = async (path, init) => {
    calls.push({ path, init });
    const { status, body } = answers.shift();
    return { ok: status < 300, status, statusText: 'x', text: async () => body };
  };
  const api = restClient(() => 'the-key', fake);
  const { status, value } = await api.submitAndWait({ language: 'python', code: '1' }, '30s');
  assert.equal(status, 200);
  assert.equal(value.id, 'run-1');
  assert.equal(calls[0].path, '/v1/executions?wait=30s');
  assert.equal(calls[0].init.method, 'POST');
  assert.equal(calls[0].init.headers.Authorization, 'Bearer the-key');
  assert.deepEqual(JSON.parse(calls[0].init.body), { language: 'python', code: '1' });

  await assert.rejects(api.get('run/1'), (e) => e instanceof ApiError && e.status === 401 && e.code === 'unauthorized');
  assert.equal(calls[1].path, '/v1/executions/run%2F1');
  await assert.rejects(api.cancel('x'), (e) => e instanceof ApiError && e.status === 502 && e.message === 'Bad Gateway');
  assert.equal(calls[2].init.method, 'DELETE');
});
