// One token request per token lifetime for the whole fleet (issue 9): several isolates in one
// workerd sharing a KV namespace and one TokenCoordinator Durable Object, against oidc-provider.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFleet } from './support/worker.mjs';
import { proxySettings } from './support/settings.mjs';
import { e2eStack, withIdpAndApi, withTempDir, statuses as statusesOf } from './support/stack.mjs';

const stack = await e2eStack({ summary: 'fleet token requests' });
const { idp, api, counts } = stack;

function fleet(opts) {
  return stack.fleet({ bindings: stack.settings(opts.extra), ...opts });
}

const settle = (ms) => new Promise((r) => setTimeout(r, ms));

/** `perIsolate` concurrent requests to each of the first `isolates` isolates: their statuses. */
function everyone(f, isolates, perIsolate, p = '/things') {
  const calls = [];
  for (let i = 0; i < isolates; i += 1) {
    for (let j = 0; j < perIsolate; j += 1) calls.push(f.fetch(i, p));
  }
  return Promise.all(calls).then(statusesOf);
}

test('4 cold isolates with 10 concurrent requests each make exactly 1 token request', async () => {
  const f = await fleet({ isolates: 4 });
  const statuses = await everyone(f, 4, 10);
  assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
  assert.equal(idp.tokenRequests, 1);
  await settle(300);
  // The coordinator wrote KV (the only writer); the isolates took their tokens from it.
  const keys = (await (await f.mf.getKVNamespace('TOKEN_CACHE', 'proxy-0')).list()).keys;
  assert.equal(keys.length, 1);
  assert.ok(f.events({ source: 'coordinator' }).length >= 1, 'tokens came from the coordinator');
  assert.equal(f.events({ outcome: 'coordinator_fallback' }).length, 0, 'no fallback');
  counts.cold = idp.tokenRequests;

  // The same cold start without a coordinator: every isolate asks the token endpoint itself.
  idp.resetCount();
  const alone = await fleet({ isolates: 4, coordinator: false });
  const again = await everyone(alone, 4, 10);
  assert.ok(again.every((s) => s === 200));
  counts.cold_without_coordinator = idp.tokenRequests;
  assert.ok(idp.tokenRequests > 1, `without a coordinator: ${idp.tokenRequests} token requests`);
});

test('an upstream rejecting the token in every isolate costs 1 new token', async () => {
  const f = await fleet({ isolates: 4 });
  await everyone(f, 4, 1);
  assert.equal(idp.tokenRequests, 1);
  api.revokeAll();
  const statuses = await everyone(f, 4, 3);
  assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
  assert.equal(idp.tokenRequests, 2, 'one eviction and one new token for the fleet');
  counts.revoked = idp.tokenRequests - 1;
});

test('isolates all in their refresh window refresh once', async () => {
  // 20 s tokens: refresh window from 10 s (plus each isolate's skew, at most 2.5 s), fresh
  // until 15 s.
  await withIdpAndApi({ tokenTtl: 20 }, async ({ idp: shortIdp, api: shortApi }) => {
    const f = await stack.fleet({ bindings: proxySettings({ idp: shortIdp, api: shortApi }), isolates: 4 });
    await everyone(f, 4, 2);
    assert.equal(shortIdp.tokenRequests, 1);
    await settle(13_000);
    // Each isolate's token is now due: each request answers at once and starts one background
    // refresh, which asks the coordinator.
    const statuses = await everyone(f, 4, 2);
    assert.ok(statuses.every((s) => s === 200));
    await settle(1_000);
    assert.equal(shortIdp.tokenRequests, 2, 'one refresh for the fleet');
    // Everyone uses the new token from memory now.
    const later = await everyone(f, 4, 2);
    assert.ok(later.every((s) => s === 200));
    assert.equal(shortIdp.tokenRequests, 2);
    counts.refresh = shortIdp.tokenRequests - 1;
  });
});

for (const mode of ['broken', 'hanging', false]) {
  test(`with the coordinator ${mode || 'unbound'}, every request still succeeds`, async () => {
    const f = await fleet({ isolates: 3, coordinator: mode, extra: { OAUTH_TIMEOUT_MS: '2000' } });
    const statuses = await everyone(f, 3, 5);
    assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
    assert.ok(idp.tokenRequests >= 1 && idp.tokenRequests <= 3, `${idp.tokenRequests} token requests`);
    const fallbacks = f.events({ outcome: 'coordinator_fallback' }).length;
    if (mode) assert.ok(fallbacks >= 1, 'the fallback is logged');
    else assert.equal(fallbacks, 0);
    counts[`coordinator_${mode || 'unbound'}`] = idp.tokenRequests;
  });
}

test('a restarted coordinator recovers its token from storage without a token request', async () => {
  await withTempDir('m2m-fleet-', async (dir) => {
    const first = await startFleet({ bindings: stack.settings(), isolates: 2, persist: dir });
    await everyone(first, 2, 2);
    assert.equal(idp.tokenRequests, 1);
    await settle(300);
    await first.dispose();
    const second = await stack.fleet({ bindings: stack.settings(), isolates: 2, persist: dir });
    // Empty KV, so the new isolates must ask the (restarted) coordinator.
    const kv = await second.mf.getKVNamespace('TOKEN_CACHE', 'proxy-0');
    for (const { name } of (await kv.list()).keys) await kv.delete(name);
    const statuses = await everyone(second, 2, 3);
    assert.ok(statuses.every((s) => s === 200));
    assert.equal(idp.tokenRequests, 1, 'the restarted coordinator answered from its storage');
    assert.ok(second.events({ source: 'coordinator' }).length >= 1);
    counts.restart = idp.tokenRequests - 1;
  });
});

test('the coordinator answers only asks for its own name, and its answer is sealed', async () => {
  const f = await fleet({ isolates: 2 });
  assert.equal((await f.fetch(0, '/things')).status, 200);
  assert.equal(idp.tokenRequests, 1);
  await settle(300);
  // The configuration's identity, as KV names its entries (`<identity>:token`).
  const kv = await f.mf.getKVNamespace('TOKEN_CACHE', 'proxy-0');
  const entry = (await kv.list()).keys.map((k) => k.name).find((n) => n.endsWith(':token'));
  const identity = entry.slice(0, -':token'.length);
  const ns = await f.mf.getDurableObjectNamespace('TOKEN_COORDINATOR', 'proxy-0');
  const ask = JSON.stringify({ name: identity, refresh: false, have: null, rejected: null });
  // Another object (anything that binds the class can make one) asked for this configuration.
  const other = ns.get(ns.idFromName('someone-elses-name'));
  const refused = await other.fetch('https://coordinator/token', { method: 'POST', body: ask });
  assert.equal(refused.status, 403);
  assert.equal(await refused.text(), "not this object's name");
  assert.equal(idp.tokenRequests, 1, 'no token for another object');
  // The configuration's own object answers, sealed: no token in the clear.
  const own = ns.get(ns.idFromName(identity));
  const answered = await own.fetch('https://coordinator/token', { method: 'POST', body: ask });
  assert.equal(answered.status, 200);
  const text = await answered.text();
  const token = api.seen.at(-1).headers.authorization.split(' ')[1];
  assert.ok(!text.includes(token) && !text.includes('access_token') && !text.includes('eyJ'), text.slice(0, 80));
  assert.equal(idp.tokenRequests, 1);
  counts.foreign_ask = idp.tokenRequests - 1;
});
