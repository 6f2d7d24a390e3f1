// One token request per token lifetime for the whole fleet (issue 9): several isolates in one
// workerd sharing a KV namespace and one TokenCoordinator Durable Object, against oidc-provider.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startIdp, API_AUDIENCE } from './support/idp.mjs';
import { startApi } from './support/api.mjs';
import { startFleet } from './support/worker.mjs';
import { assertNoSecretsInLogs } from './support/secrets.mjs';
import { proxySettings } from './support/settings.mjs';

let idp;
let api;
const fleets = [];
const counts = {};

before(async () => {
  idp = await startIdp();
  api = await startApi({ issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: API_AUDIENCE });
});

after(async () => {
  const lines = assertNoSecretsInLogs(fleets, api);
  console.log(`# fleet token requests: ${JSON.stringify(counts)}; ${lines} log lines checked for secrets`);
  await Promise.all(fleets.map((f) => f.dispose()));
  await api.close();
  await idp.close();
});

async function fleet(opts) {
  const f = await startFleet({ bindings: proxySettings({ idp, api, extra: opts.extra ?? {} }), ...opts });
  fleets.push(f);
  return f;
}

const settle = (ms) => new Promise((r) => setTimeout(r, ms));

async function everyone(f, isolates, perIsolate, p = '/things') {
  const calls = [];
  for (let i = 0; i < isolates; i += 1) {
    for (let j = 0; j < perIsolate; j += 1) calls.push(f.fetch(i, p));
  }
  const responses = await Promise.all(calls);
  const statuses = await Promise.all(responses.map(async (r) => { await r.arrayBuffer(); return r.status; }));
  return statuses;
}

test('4 cold isolates with 10 concurrent requests each make exactly 1 token request', async () => {
  idp.setFault('ok');
  idp.resetCount();
  const f = await fleet({ isolates: 4 });
  const statuses = await everyone(f, 4, 10);
  assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
  assert.equal(idp.tokenRequests, 1);
  await settle(300);
  // The coordinator wrote KV (the only writer); the isolates took their tokens from it.
  const keys = (await (await f.mf.getKVNamespace('TOKEN_CACHE', 'proxy-0')).list()).keys;
  assert.equal(keys.length, 1);
  const events = f.events();
  assert.ok(events.filter((e) => e.source === 'coordinator').length >= 1, 'tokens came from the coordinator');
  assert.ok(!events.some((e) => e.outcome === 'coordinator_fallback'), 'no fallback');
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
  idp.setFault('ok');
  idp.resetCount();
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
  const shortIdp = await startIdp({ tokenTtl: 20 });
  const shortApi = await startApi({ issuer: shortIdp.issuer, jwksUrl: shortIdp.jwksUrl, audience: API_AUDIENCE });
  try {
    const f = await startFleet({
      bindings: proxySettings({ idp: shortIdp, api: shortApi }),
      isolates: 4,
    });
    fleets.push(f);
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
  } finally {
    await shortApi.close();
    await shortIdp.close();
  }
});

for (const mode of ['broken', 'hanging', false]) {
  test(`with the coordinator ${mode || 'unbound'}, every request still succeeds`, async () => {
    idp.setFault('ok');
    idp.resetCount();
    const f = await fleet({ isolates: 3, coordinator: mode, extra: { OAUTH_TIMEOUT_MS: '2000' } });
    const statuses = await everyone(f, 3, 5);
    assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
    assert.ok(idp.tokenRequests >= 1 && idp.tokenRequests <= 3, `${idp.tokenRequests} token requests`);
    const fallbacks = f.events().filter((e) => e.outcome === 'coordinator_fallback').length;
    if (mode) assert.ok(fallbacks >= 1, 'the fallback is logged');
    else assert.equal(fallbacks, 0);
    counts[`coordinator_${mode || 'unbound'}`] = idp.tokenRequests;
  });
}

test('a restarted coordinator recovers its token from storage without a token request', async () => {
  idp.setFault('ok');
  idp.resetCount();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'm2m-fleet-'));
  try {
    const first = await startFleet({ bindings: proxySettings({ idp, api }), isolates: 2, persist: dir });
    await everyone(first, 2, 2);
    assert.equal(idp.tokenRequests, 1);
    await settle(300);
    await first.dispose();
    const second = await startFleet({ bindings: proxySettings({ idp, api }), isolates: 2, persist: dir });
    fleets.push(second);
    // Empty KV, so the new isolates must ask the (restarted) coordinator.
    const kv = await second.mf.getKVNamespace('TOKEN_CACHE', 'proxy-0');
    for (const { name } of (await kv.list()).keys) await kv.delete(name);
    const statuses = await everyone(second, 2, 3);
    assert.ok(statuses.every((s) => s === 200));
    assert.equal(idp.tokenRequests, 1, 'the restarted coordinator answered from its storage');
    assert.ok(second.events().some((e) => e.source === 'coordinator'));
    counts.restart = idp.tokenRequests - 1;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
