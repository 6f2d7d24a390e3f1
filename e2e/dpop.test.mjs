// DPoP (RFC 9449) end to end: oidc-provider issues DPoP-bound tokens and requires nonces, the
// demo API checks every proof (signature, htm, htu, iat, jti, ath, cnf.jkt, nonce), and the proxy
// runs in workerd, in two isolates that share one KV namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader } from 'jose';
import { CLIENTS } from './support/idp.mjs';
import { e2eStack, withTempDir, concurrently } from './support/stack.mjs';

const keyPair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const DPOP_KEY = JSON.stringify(keyPair.privateKey.export({ format: 'jwk' }));

const stack = await e2eStack({ secrets: [CLIENTS.dpop.secret, JSON.parse(DPOP_KEY).d] });
const { idp, api } = stack;

function worker(extra = {}, options = {}) {
  return stack.worker({ bindings: stack.settings({ OAUTH_DPOP: 'true', ...extra }, CLIENTS.dpop), ...options });
}

/** The API's record of each request since `from`, with its token's claims and its proof's. */
function seenSince(from) {
  return api.seen.slice(from).map((r) => {
    const auth = r.headers.authorization ?? '';
    return {
      ...r,
      scheme: auth.split(' ')[0],
      token: decodeJwt(auth.split(' ')[1]),
      proof: r.headers.dpop ? decodeJwt(r.headers.dpop) : null,
      proofKey: r.headers.dpop ? decodeProtectedHeader(r.headers.dpop).jwk : null,
    };
  });
}

test('DPoP with nonces at the IdP and the API, across two isolates sharing KV', async () => {
  idp.requireNonce(true);
  api.requireNonce();
  await withTempDir('m2m-dpop-kv-', async (kvPersist) => {
    const from = api.seen.length;
    const first = await worker({}, { kvPersist });

    // Ten concurrent calls on a cold isolate: one token, after one nonce round trip at the IdP.
    const rs = await concurrently(10, (i) => first.fetch(`/things/${i}?q=${i}`));
    for (const r of rs) assert.equal(r.status, 200, await r.text());
    assert.equal(idp.tokensIssued, 1, 'one token for ten callers');
    assert.deepEqual(idp.answers.map((a) => [a.status, a.error]), [[400, 'use_dpop_nonce'], [200, null]]);
    const tokenProofs = idp.proofs.map((p) => decodeJwt(p));
    assert.equal(tokenProofs[0].nonce, undefined, 'the first proof has no nonce yet');
    assert.ok(tokenProofs[1].nonce, 'the retry carries the IdP nonce');
    for (const p of tokenProofs) {
      assert.equal(p.htm, 'POST');
      assert.equal(p.htu, idp.tokenUrl);
      assert.equal(p.ath, undefined, 'no ath on the token request');
    }

    // The API saw DPoP tokens bound to one key, each request with a proof of that key, and asked
    // for its nonce: every caller still got 200 (a GET is sent again with the nonce).
    const seen = seenSince(from);
    const jkt = seen[0].token.cnf.jkt;
    assert.ok(jkt, 'the access token is bound (cnf.jkt)');
    for (const r of seen) {
      assert.equal(r.scheme, 'DPoP');
      assert.equal(r.token.cnf.jkt, jkt);
      assert.equal(await calculateJwkThumbprint(r.proofKey), jkt);
      assert.match(r.proof.htu, /\/things\/\d$/, 'htu has no query');
    }
    const passed = seen.filter((r) => r.dpop.problem === null);
    assert.equal(passed.length, 10);
    assert.ok(seen.some((r) => r.dpop.problem === 'use_dpop_nonce'), 'the API asked for its nonce');
    assert.ok(seen.every((r) => r.dpop.problem === null || r.dpop.problem === 'use_dpop_nonce'), JSON.stringify(seen.map((r) => r.dpop)));
    assert.equal(new Set(seen.map((r) => r.proof.jti)).size, seen.length, 'every proof has its own jti');

    // A nonce rotated without grace: a POST gets 401 use_dpop_nonce, and is sent again with the
    // new nonce and its body intact.
    const newNonce = api.rotateNonce({ grace: false });
    const body = crypto.randomBytes(1024);
    const before = api.seen.length;
    const post = await first.fetch('/things', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) } });
    assert.equal(post.status, 200);
    const answer = await post.json();
    assert.equal(answer.body_sha256, crypto.createHash('sha256').update(body).digest('hex'));
    const posts = seenSince(before);
    assert.deepEqual(posts.map((r) => r.dpop.problem), ['use_dpop_nonce', null]);
    assert.equal(posts[1].proof.nonce, newNonce);

    // A graceful rotation: the API announces the next nonce on a 200; the following proof uses it
    // without any 401.
    const announced = api.rotateNonce({ grace: true });
    const n0 = api.seen.length;
    assert.equal((await first.fetch('/a')).status, 200);
    assert.equal((await first.fetch('/b')).status, 200);
    const graceful = seenSince(n0);
    assert.deepEqual(graceful.map((r) => r.dpop.problem), [null, null]);
    assert.equal(graceful[1].proof.nonce, announced, 'the latest nonce per origin is remembered');

    // A second isolate on the same KV: no token request, and proofs by the same key (read, sealed,
    // from KV with the token).
    const tokenRequests = idp.tokenRequests;
    const second = await worker({}, { kvPersist });
    const n1 = api.seen.length;
    const r2 = await second.fetch('/from-second');
    assert.equal(r2.status, 200, await r2.text());
    assert.equal(idp.tokenRequests, tokenRequests, 'the second isolate made no token request');
    const fromSecond = seenSince(n1);
    assert.equal(await calculateJwkThumbprint(fromSecond.at(-1).proofKey), jkt);
    assert.equal(fromSecond.at(-1).dpop.problem, null);

    // KV holds the token and its key sealed: neither is readable there.
    const kv = await second.mf.getKVNamespace('TOKEN_CACHE');
    const rawToken = api.seen.at(-1).headers.authorization.split(' ')[1];
    for (const { name } of (await kv.list()).keys) {
      const value = await kv.get(name);
      assert.ok(!value.includes(rawToken) && !value.includes('"d"') && !value.includes(jkt), name);
    }
  });
});

test('what the proxy cannot answer passes through, and costs no token', async () => {
  api.requireNonce();
  const w = await worker({ OAUTH_SCOPE: 'read:things write:things' });
  assert.equal((await w.fetch('/warm')).status, 200);
  idp.resetCount();

  // A streamed body (no Content-Length) is not kept, so a nonce challenge goes back as the 401;
  // the nonce is remembered and the next request carries it.
  const fresh = api.rotateNonce({ grace: false });
  const stream = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('streamed')); c.close(); } });
  const r1 = await w.fetch('/things', { method: 'POST', body: stream, duplex: 'half' });
  assert.equal(r1.status, 401);
  assert.match(r1.headers.get('www-authenticate'), /use_dpop_nonce/);
  assert.ok(w.events().some((e) => e.outcome === 'dpop_nonce_unanswered'));
  const n0 = api.seen.length;
  assert.equal((await w.fetch('/after')).status, 200);
  assert.equal(seenSince(n0)[0].proof.nonce, fresh);

  // A proof the API refuses (invalid_dpop_proof) is its answer to pass on: no eviction, no replay.
  api.failNextProof();
  const n1 = api.seen.length;
  const r2 = await w.fetch('/refused');
  assert.equal(r2.status, 401);
  assert.equal((await r2.json()).error, 'invalid_dpop_proof');
  assert.equal(api.seen.length - n1, 1, 'not replayed');
  assert.equal((await w.fetch('/still-good')).status, 200);
  assert.equal(idp.tokenRequests, 0, 'the token was kept');
});

test('OAUTH_DPOP_KEY: tokens are bound to the configured key', async () => {
  api.requireNonce();
  const from = api.seen.length;
  const w = await worker({ OAUTH_DPOP_KEY: DPOP_KEY, OAUTH_SCOPE: 'read:things write:things' });
  const r = await w.fetch('/configured');
  assert.equal(r.status, 200, await r.text());
  const [seen] = seenSince(from);
  const want = await calculateJwkThumbprint(keyPair.publicKey.export({ format: 'jwk' }));
  assert.equal(seen.token.cnf.jkt, want);
  assert.equal(idp.tokensIssued, 1);
});

test('a revoked DPoP token is replaced and the request replayed with a new proof', async () => {
  api.requireNonce();
  const w = await worker({ OAUTH_SCOPE: 'read:things' });
  assert.equal((await w.fetch('/warm')).status, 200);
  idp.resetCount();
  api.revokeAll();
  const from = api.seen.length;
  const body = 'replay me';
  const r = await w.fetch('/things', { method: 'PUT', body, headers: { 'content-length': String(body.length) } });
  assert.equal(r.status, 200);
  assert.equal((await r.json()).body_length, body.length);
  assert.equal(idp.tokensIssued, 1, 'exactly one new token');
  const [rejected, replayed] = seenSince(from).filter((x) => x.method === 'PUT');
  assert.notEqual(replayed.token.jti, rejected.token.jti);
  assert.notEqual(replayed.proof.ath, rejected.proof.ath, 'the new proof hashes the new token');
});

test('an IdP that answers a DPoP request with a Bearer token gets a clear 502', async () => {
  idp.setFault('bearer');
  const w = await worker({ OAUTH_SCOPE: 'write:things' });
  const r = await w.fetch('/things');
  assert.equal(r.status, 502);
  const err = await r.json();
  assert.match(err.error_description, /Bearer, not DPoP/);
  assert.equal(idp.tokenRequests, 1);
});

test('bad DPoP settings are 500s that name the setting', async () => {
  for (const [extra, name] of [
    [{ OAUTH_DPOP: 'maybe' }, 'OAUTH_DPOP'],
    [{ OAUTH_DPOP_KEY: '{"kty":"EC"' }, 'OAUTH_DPOP_KEY'],
    [{ OAUTH_DPOP: 'false', OAUTH_DPOP_KEY: DPOP_KEY }, 'OAUTH_DPOP_KEY'],
  ]) {
    const w = await worker(extra);
    const r = await w.fetch('/x');
    assert.equal(r.status, 500);
    const err = await r.json();
    assert.equal(err.error, 'configuration_error');
    assert.match(err.error_description, new RegExp(`^configuration error: ${name}:`));
    assert.ok(!err.error_description.includes(JSON.parse(DPOP_KEY).d));
  }
});
