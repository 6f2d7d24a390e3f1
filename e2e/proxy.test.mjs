// End to end: the built Worker in workerd (Miniflare) against oidc-provider and a protected API
// that verifies every token, all on loopback. The token endpoint's request count is the product's
// main promise, so most tests assert it exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { CLIENTS } from './support/idp.mjs';
import { startTrap } from './support/api.mjs';
import { e2eStack, withTempDir, concurrently } from './support/stack.mjs';

// Across the whole file: no log line of any Worker carries a secret or a token.
const stack = await e2eStack({ servers: { trap: startTrap }, secrets: ['caller-secret-token'] });
const { idp, api, trap, worker } = stack;

function settings(client = CLIENTS.basic, extra = {}) {
  return stack.settings(extra, client);
}

const networkFetches = (w) => w.events({ event: 'token', source: 'network' }).length;

test('client_secret_basic with a secret full of %+:/=& reaches the API', async () => {
  const w = await worker({ bindings: settings(CLIENTS.basic) });
  const r = await w.fetch('/things?x=1&y=%20z');
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.client_id, CLIENTS.basic.id);
  assert.equal(body.url, '/things?x=1&y=%20z');
  assert.equal(idp.tokenRequests, 1);
  assert.match(idp.authHeaders[0], /^Basic /);
});

test('client_secret_post sends the credentials in the body', async () => {
  const w = await worker({ bindings: settings(CLIENTS.post) });
  const r = await w.fetch('/things');
  assert.equal(r.status, 200);
  assert.equal((await r.json()).client_id, CLIENTS.post.id);
  assert.equal(idp.tokenRequests, 1);
  assert.equal(idp.authHeaders[0], null);
});

test('100 concurrent requests on a cold isolate make exactly 1 token request; a second isolate sharing KV makes 0', async () => {
  await withTempDir('m2m-kv-', async (dir) => {
    const first = await worker({ bindings: settings(), kvPersist: dir });
    const statuses = await concurrently(100, (i) => first.fetch(`/things?i=${i}`).then((r) => r.status));
    assert.deepEqual(new Set(statuses), new Set([200]));
    assert.equal(idp.tokenRequests, 1, 'token requests for 100 concurrent cold requests');
    assert.equal(networkFetches(first), 1);
    console.log(`# concurrency: 100 requests, ${idp.tokenRequests} token request(s)`);

    // The KV entry is keyed by a hash: no client id, no secret in the key.
    const kv = await first.mf.getKVNamespace('TOKEN_CACHE');
    const { keys } = await kv.list();
    assert.equal(keys.length, 1);
    assert.match(keys[0].name, /^m2m:v2:[A-Za-z0-9_-]{43}:token$/);
    assert.ok(!keys[0].name.includes(CLIENTS.basic.id));

    const second = await worker({ bindings: settings(), kvPersist: dir });
    const more = await concurrently(20, () => second.fetch('/things').then((r) => r.status));
    assert.deepEqual(new Set(more), new Set([200]));
    assert.equal(idp.tokenRequests, 1, 'the second isolate found the token in KV');
    assert.equal(second.events({ event: 'token', source: 'kv' }).length, 1);
  });
});

test('a corrupt KV value is a miss and gets overwritten', async () => {
  await withTempDir('m2m-kv-', async (dir) => {
    const first = await worker({ bindings: settings(), kvPersist: dir });
    assert.equal((await first.fetch('/things')).status, 200);
    const kv = await first.mf.getKVNamespace('TOKEN_CACHE');
    const [{ name }] = (await kv.list()).keys;
    await kv.put(name, '{"not":"ours"}');
    // A cold isolate reads the foreign value, treats it as a miss, and replaces it.
    const second = await worker({ bindings: settings(), kvPersist: dir });
    assert.equal((await second.fetch('/things')).status, 200);
    assert.equal(idp.tokenRequests, 2);
    const kv2 = await second.mf.getKVNamespace('TOKEN_CACHE');
    assert.match(await kv2.get(name), /^m2m-gcm1\./);
    // The foreign value fails to open (it is not sealed with our key): a miss, logged.
    assert.ok(second.events({ event: 'cache' }).some((e) => /not sealed/.test(e.detail ?? '')));
  });
});

test('bodies arrive byte-identical, in both directions', async () => {
  const w = await worker({ bindings: settings() });
  const payload = crypto.randomBytes(256 * 1024);
  const r = await w.fetch('/echo', { method: 'POST', body: payload, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(r.status, 200);
  assert.ok(Buffer.from(await r.arrayBuffer()).equals(payload));
  for (const method of ['PUT', 'PATCH', 'DELETE']) {
    const text = `{"m":"${method}","ü":"✓"}`;
    const res = await w.fetch('/things', { method, body: text });
    const body = await res.json();
    assert.equal(body.method, method);
    assert.equal(body.body_sha256, crypto.createHash('sha256').update(text).digest('hex'));
  }
});

test("the caller's Authorization and Proxy-Authorization never reach the upstream", async () => {
  const w = await worker({ bindings: settings() });
  const before = api.seen.length;
  const r = await w.fetch('/things', {
    headers: {
      authorization: 'Bearer caller-secret-token',
      'proxy-authorization': 'Basic Y2FsbGVyOnNlY3JldA==',
      'x-request-id': 'abc-123',
    },
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-demo-api'), 'yes', 'upstream response headers come back unchanged');
  const got = api.seen.slice(before);
  assert.equal(got.length, 1);
  assert.notEqual(got[0].headers.authorization, 'Bearer caller-secret-token');
  assert.match(got[0].headers.authorization, /^Bearer ey/);
  assert.equal(got[0].headers['proxy-authorization'], undefined);
  assert.equal(got[0].headers['x-request-id'], 'abc-123');
});

test('no path or header sends a request (or the token) to another origin', async () => {
  const w = await worker({ bindings: settings() });
  const evil = trap.host;
  const before = api.seen.length;
  const paths = [
    `//${evil}/x`,
    `/http://${evil}/x`,
    `/%2F%2F${evil}/x`,
    `/%2f%2f${evil}`,
    `/\\\\${evil}/x`,
    `/@${evil}/x`,
    `/..%2F..%2F${evil}`,
    `/a/../../${evil}`,
  ];
  for (const p of paths) {
    const r = await w.fetch(`http://proxy.internal${p}`, { headers: { host: evil, 'x-forwarded-host': evil, forwarded: `host=${evil}` } });
    await r.arrayBuffer();
    assert.ok([200, 401, 404].includes(r.status), `${p}: ${r.status}`);
  }
  assert.equal(trap.seen.length, 0, `trap reached: ${JSON.stringify(trap.seen.map((s) => s.url))}`);
  const hosts = new Set(api.seen.slice(before).map((s) => s.headers.host));
  assert.deepEqual(hosts, new Set([new URL(api.origin).host]));
});

// What callers see when the token endpoint misbehaves: an honest status and a JSON error,
// without a secret in the body.
// 5xx and 429 are retried within OAUTH_TIMEOUT_MS (1500 ms here); refusals and nonsense never.
const faults = [
  { fault: 'status500', status: 503, error: 'temporarily_unavailable', retryAfter: true, maxRequests: 6 },
  { fault: 'status503', status: 503, error: 'temporarily_unavailable', retryAfter: true, maxRequests: 6 },
  { fault: 'status429', status: 503, error: 'temporarily_unavailable', retryAfter: true, maxRequests: 6 },
  { fault: 'html', status: 502, error: 'invalid_token_response', match: /HTML/, maxRequests: 1 },
  { fault: 'truncated', status: 502, error: 'invalid_token_response', match: /truncated/, maxRequests: 1 },
  { fault: 'no_access_token', status: 502, error: 'invalid_token_response', match: /access_token/, maxRequests: 1 },
  { fault: 'invalid_client', status: 502, error: 'invalid_client', match: /client authentication failed/, maxRequests: 1 },
];
for (const f of faults) {
  test(`token endpoint fault ${f.fault} gives ${f.status} ${f.error}`, async () => {
    idp.setFault(f.fault);
    const w = await worker({ bindings: settings(CLIENTS.basic, { OAUTH_TIMEOUT_MS: '1500' }), kv: false });
    // Concurrent callers share the failing request and all get the same answer.
    const rs = await concurrently(10, () => w.fetch('/things'));
    for (const r of rs) {
      assert.equal(r.status, f.status);
      assert.match(r.headers.get('content-type'), /application\/json/);
      assert.equal(r.headers.has('retry-after'), !!f.retryAfter);
      const text = await r.text();
      const body = JSON.parse(text);
      assert.equal(body.error, f.error);
      assert.equal(typeof body.error_description, 'string');
      if (f.match) assert.match(body.error_description, f.match);
      assert.ok(!text.includes(CLIENTS.basic.secret));
    }
    // Ten concurrent callers share one flight (with its retries), then the hold-down answers.
    assert.ok(idp.tokenRequests >= 1 && idp.tokenRequests <= f.maxRequests, `token requests: ${idp.tokenRequests}`);
    const again = await w.fetch('/things');
    assert.equal(again.status, f.status);
    await again.arrayBuffer();
    assert.ok(idp.tokenRequests <= f.maxRequests, 'held down: no new token request');
  });
}

test('a token endpoint that is down gives 503 with Retry-After', async () => {
  const w = await worker({ bindings: settings({ ...CLIENTS.basic }, { OAUTH_TOKEN_URL: 'http://127.0.0.1:9/token', OAUTH_TIMEOUT_MS: '2000' }), kv: false });
  const r = await w.fetch('/things');
  assert.equal(r.status, 503);
  assert.ok(Number(r.headers.get('retry-after')) > 0);
  assert.equal((await r.json()).error, 'temporarily_unavailable');
});

test('a missing or malformed setting gives 500 naming it, never its value', async () => {
  const cases = [
    [{ OAUTH_CLIENT_ID: undefined }, 'OAUTH_CLIENT_ID'],
    [{ OAUTH_CLIENT_SECRET: undefined }, 'OAUTH_CLIENT_SECRET'],
    [{ OAUTH_TOKEN_URL: 'http://idp.example.com/token' }, 'OAUTH_TOKEN_URL'],
    [{ UPSTREAM_ORIGIN: undefined }, 'UPSTREAM_ORIGIN'],
    [{ UPSTREAM_ORIGIN: 'https://api.example.com/v1' }, 'UPSTREAM_ORIGIN'],
    [{ OAUTH_AUTH_METHOD: 'client_secret_jwt' }, 'OAUTH_AUTH_METHOD'],
  ];
  for (const [change, name] of cases) {
    const bindings = settings();
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) delete bindings[k];
      else bindings[k] = v;
    }
    const w = await worker({ bindings, kv: false });
    const r = await w.fetch('/things');
    assert.equal(r.status, 500, name);
    const text = await r.text();
    const body = JSON.parse(text);
    assert.equal(body.error, 'configuration_error');
    assert.match(body.error_description, new RegExp(name));
    assert.ok(!text.includes(CLIENTS.basic.secret));
  }
});
