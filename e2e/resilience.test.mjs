// When the identity provider, KV or the caller misbehave: bounded waits, no hammering, cached
// tokens that outlive an outage, revoked tokens replaced once, and clean refusals of bad input.
// The token endpoint's request count is asserted in every test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { rawRequest } from './support/raw.mjs';
import { e2eStack, withIdpAndApi, withTempDir, concurrently } from './support/stack.mjs';

const stack = await e2eStack({
  secrets: ['wrong-secret-value', 'proxy-shared-s3cret'],
  summary: 'token requests per fault test',
});
const { idp, api, worker, counts } = stack;
const settings = (extra) => stack.settings(extra);

/** A Worker listening on a port of its own (for requests written on a socket): the port. */
async function listeningWorker(bindings) {
  return (await worker({ bindings, port: 0 })).port;
}

test('a slow token endpoint with OAUTH_TIMEOUT_MS=1500 gives 503 with Retry-After, promptly', async () => {
  idp.setFault({ delayMs: 5000 });
  const w = await worker({ bindings: settings({ OAUTH_TIMEOUT_MS: '1500' }), kv: false });
  const started = Date.now();
  const r = await w.fetch('/things');
  const elapsed = Date.now() - started;
  assert.equal(r.status, 503);
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  assert.match((await r.json()).error_description, /timed out after/);
  // A bound, not a benchmark: the 1.5 s budget must not become a hang.
  assert.ok(elapsed < 8000, `answered after ${elapsed} ms`);
  counts.slow = idp.tokenRequests;
});

test('30 calls with a wrong secret, across two isolates sharing KV, make at most 2 token requests', async () => {
  await withTempDir('m2m-kv-', async (dir) => {
    const bindings = settings({ OAUTH_CLIENT_SECRET: 'wrong-secret-value' });
    const a = await worker({ bindings, kvPersist: dir });
    const b = await worker({ bindings, kvPersist: dir });
    const first = await concurrently(10, () => a.fetch('/things'));
    for (let i = 0; i < 10; i += 1) first.push(await a.fetch('/things'));
    for (let i = 0; i < 10; i += 1) first.push(await b.fetch('/things'));
    for (const r of first) {
      assert.equal(r.status, 502);
      assert.equal((await r.json()).error, 'invalid_client');
    }
    assert.ok(idp.tokenRequests <= 2, `token requests: ${idp.tokenRequests}`);
    counts.wrongSecret30 = idp.tokenRequests;
  });
});

test('a brief 503 with Retry-After: 1 is retried and succeeds', async () => {
  idp.setFault([{ status: 503, retryAfter: 1 }, 'ok']);
  const w = await worker({ bindings: settings(), kv: false });
  const r = await w.fetch('/things');
  assert.equal(r.status, 200);
  assert.equal(idp.tokenRequests, 2);
  counts.brief503 = idp.tokenRequests;
});

test('the provider going down while a token is cached changes nothing for callers', async () => {
  const w = await worker({ bindings: settings() });
  assert.equal((await w.fetch('/things')).status, 200);
  for (const fault of ['status503', 'html', 'invalid_client', { delayMs: 20000 }]) {
    idp.setFault(fault);
    const rs = await concurrently(10, () => w.fetch('/things'));
    assert.deepEqual(new Set(rs.map((r) => r.status)), new Set([200]));
  }
  assert.equal(idp.tokenRequests, 1);
  counts.downWhileCached = idp.tokenRequests;
});

test('a revoked token costs exactly one new token; the caller sees 200, bodies replayed intact', async () => {
  const w = await worker({ bindings: settings() });
  assert.equal((await w.fetch('/things')).status, 200);
  api.revokeAll();
  const payload = crypto.randomBytes(4096);
  const rs = await Promise.all([
    w.fetch('/things'),
    w.fetch('/echo', { method: 'POST', body: payload, headers: { 'content-length': String(payload.length) } }),
    ...Array.from({ length: 8 }, () => w.fetch('/things')),
  ]);
  assert.deepEqual(rs.map((r) => r.status), Array(10).fill(200));
  assert.ok(Buffer.from(await rs[1].arrayBuffer()).equals(payload), 'replayed body is byte-identical');
  assert.equal(idp.tokenRequests, 2, 'one token for the first call, exactly one after revocation');
  counts.revoked = idp.tokenRequests - 1;
  assert.ok(w.events().some((e) => e.event === 'replay'));
  // An upstream that keeps rejecting (every token revoked again): the 401 passes through and
  // no new token is fetched within the hold-down, so a request never becomes a token request.
  api.revokeAll();
  const again = await concurrently(5, () => w.fetch('/things'));
  for (const r of again) {
    assert.ok([200, 401].includes(r.status));
    await r.arrayBuffer();
  }
  assert.ok(idp.tokenRequests <= 3, `token requests: ${idp.tokenRequests}`);
});

test('a large streamed body is not replayed: the 401 passes through untouched', async () => {
  const w = await worker({ bindings: settings() });
  assert.equal((await w.fetch('/things')).status, 200);
  api.revokeAll();
  const big = crypto.randomBytes(200 * 1024);
  const r = await w.fetch('/echo', { method: 'POST', body: big });
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error, 'invalid_token');
  // The token was still evicted: the next request gets a fresh one and succeeds.
  assert.equal((await w.fetch('/things')).status, 200);
  assert.equal(idp.tokenRequests, 2);
});

test('a KV namespace whose every call throws still gives 200, once per token', async () => {
  const w = await worker({ bindings: settings(), kv: 'broken' });
  const rs = await concurrently(10, () => w.fetch('/things'));
  assert.deepEqual(new Set(rs.map((r) => r.status)), new Set([200]));
  assert.equal(idp.tokenRequests, 1);
  assert.ok(w.events().some((e) => e.event === 'cache' && e.outcome === 'read_error'));
});

test('a KV namespace that never answers costs at most its 1.5 s bound, once per token', async () => {
  const w = await worker({ bindings: settings(), kv: 'hanging' });
  const first = await concurrently(5, () => w.fetch('/things'));
  assert.deepEqual(new Set(first.map((r) => r.status)), new Set([200]));
  // Then memory serves: no KV call is even attempted.
  const later = await concurrently(10, () => w.fetch('/things'));
  assert.deepEqual(new Set(later.map((r) => r.status)), new Set([200]));
  assert.equal(idp.tokenRequests, 1);
  assert.ok(w.events().some((e) => e.event === 'cache' && /timed out after 1500 ms/.test(e.detail ?? '')));
});

test('KV values hold no readable token', async () => {
  const w = await worker({ bindings: settings() });
  assert.equal((await w.fetch('/things')).status, 200);
  const token = api.seen.at(-1).headers.authorization.replace(/^Bearer /, '');
  const kv = await w.mf.getKVNamespace('TOKEN_CACHE');
  const { keys } = await kv.list();
  assert.ok(keys.length >= 1);
  for (const { name } of keys) {
    const value = await kv.get(name);
    assert.match(value, /^m2m-gcm1\./);
    assert.ok(!value.includes(token) && !value.includes('eyJ') && !value.includes('access_token'));
  }
});

test('the proxy refuses bodies over PROXY_MAX_BODY_BYTES (413) and methods it cannot forward (405)', async () => {
  const w = await worker({ bindings: settings({ PROXY_MAX_BODY_BYTES: '1024' }) });
  const before = api.seen.length;
  // Declared too large: refused before anything is sent.
  const declared = await w.fetch('/echo', { method: 'POST', body: Buffer.alloc(2048), headers: { 'content-length': '2048' } });
  assert.equal(declared.status, 413);
  assert.equal((await declared.json()).error, 'request_too_large');
  // Unknown length (chunked): counted while streaming; past the limit the upstream request is
  // aborted (the upstream sees a broken body, never a truncated one that looks complete).
  const streamed = await w.fetch('/echo', { method: 'POST', body: Buffer.alloc(4096) });
  assert.equal(streamed.status, 413);
  assert.equal((await streamed.json()).error, 'request_too_large');
  assert.equal((await w.fetch('/echo', { method: 'POST', body: Buffer.alloc(1024) })).status, 200);
  // TRACE and CONNECT cannot be sent with fetch(); speak HTTP on a socket.
  const port = await listeningWorker(settings({ PROXY_MAX_BODY_BYTES: '1024' }));
  const trace = await rawRequest(port, 'TRACE /things HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n');
  assert.match(trace, /^HTTP\/1\.1 405/, trace.split('\r\n')[0]);
  assert.match(trace, /allow: GET, HEAD, POST/i);
  // Methods workerd itself does not know never reach the Worker (501), let alone the upstream.
  const track = await rawRequest(port, 'TRACK /things HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n');
  assert.match(track, /^HTTP\/1\.1 (405|501)/, track.split('\r\n')[0]);
  // Conflicting Content-Length headers (request smuggling) never reach the upstream. Here the
  // local HTTP front end refuses them before the Worker runs; a merged "5, 6" that does reach
  // the Worker gets a 400 from route::check_request (native tests).
  const smuggle = await rawRequest(port, 'POST /things HTTP/1.1\r\nHost: proxy\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!');
  assert.match(smuggle, /^HTTP\/1\.1 [45]\d\d/, smuggle.split('\r\n')[0]);
  assert.equal(api.seen.length, before + 1, 'only the one good request reached the API');
});

test('with PROXY_SHARED_SECRET, callers must present it; it never reaches the upstream', async () => {
  const w = await worker({ bindings: settings({ PROXY_SHARED_SECRET: 'proxy-shared-s3cret' }) });
  for (const header of [undefined, 'Bearer nope', 'Basic cHJveHk=', 'Bearer proxy-shared-s3cre']) {
    const r = await w.fetch('/things', { headers: header ? { 'proxy-authorization': header } : {} });
    assert.equal(r.status, 401, String(header));
    assert.equal((await r.json()).error, 'unauthorized');
  }
  assert.equal(idp.tokenRequests, 0, 'unauthenticated callers cost no token');
  const ok = await w.fetch('/things', { headers: { 'proxy-authorization': 'Bearer proxy-shared-s3cret' } });
  assert.equal(ok.status, 200);
  assert.equal(api.seen.at(-1).headers['proxy-authorization'], undefined);
});

test('a caller that disconnects mid token request does not block the next caller', async () => {
  idp.setFault({ delayMs: 1500 });
  const port = await listeningWorker(settings({ OAUTH_TIMEOUT_MS: '3000' }));
  // Caller 1 starts the token request, then hangs up.
  const sock = net.connect(port, '127.0.0.1');
  sock.write('GET /things HTTP/1.1\r\nHost: proxy\r\n\r\n');
  await new Promise((r) => setTimeout(r, 200));
  sock.destroy();
  idp.setFault('ok');
  // The token request it started runs on under waitUntil: the next caller gets 200.
  const head = await rawRequest(port, 'GET /things HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n');
  assert.match(head, /^HTTP\/1\.1 200/, head.split('\r\n')[0]);
  const later = await rawRequest(port, 'GET /things HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n');
  assert.match(later, /^HTTP\/1\.1 200/);
  // The one token request, which the caller who hung up started, served both later callers.
  assert.equal(idp.tokenRequests, 1, 'exactly one token request reached the token endpoint');
  counts.disconnect = idp.tokenRequests;
});

test('across a token expiry under concurrent load, with and without refresh ahead, every request succeeds', async () => {
  // 12 s tokens: fresh for 7 s (margin max(min(60, 12/4), 5) = 5 s: never handed out with 5 s
  // or less left), refresh window from 6 s.
  await withIdpAndApi({ tokenTtl: 12 }, async ({ idp: shortIdp, api: shortApi }) => {
    for (const ahead of ['false', 'true']) {
      const before = shortIdp.tokenRequests;
      const w = await worker({
        bindings: settings({ OAUTH_TOKEN_URL: shortIdp.tokenUrl, UPSTREAM_ORIGIN: shortApi.origin, OAUTH_REFRESH_AHEAD: ahead }),
        kv: false,
      });
      const statuses = [];
      let undrained = 0;
      const until = Date.now() + 10000;
      while (Date.now() < until) {
        const batch = await concurrently(16, () => w.fetch('/things'));
        for (const r of batch) {
          statuses.push(r.status);
          // Under the suite's load Miniflare once handed back a response whose body it had
          // already consumed (seen once in CI, not reproduced in 6 isolated runs); the status is
          // what this test is about, so a body that cannot be drained is counted, not fatal.
          try {
            await r.arrayBuffer();
          } catch (e) {
            if (!/Body is unusable/.test(e.message)) throw e;
            undrained += 1;
          }
        }
      }
      if (undrained) console.log(`# ${undrained} response bodies were already consumed by the harness`);
      assert.ok(statuses.every((s) => s === 200), `refresh ahead ${ahead}: statuses ${[...new Set(statuses)]}`);
      const fetched = shortIdp.tokenRequests - before;
      assert.ok(fetched >= 2 && fetched <= 3, `refresh ahead ${ahead}: ${fetched} token requests`);
      counts[`expiry_ahead_${ahead}`] = fetched;
    }
  });
});
