// The fleet under pressure (issue 17), in workerd against oidc-provider: the coordinator keeps the
// fleet's token fresh in KV by its alarm, the fleet backs off as one while the token endpoint is
// down and recovers within one pause after it is back, and a refresh lead longer than an outage
// keeps callers from seeing it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { proxySettings } from './support/settings.mjs';
import { e2eStack, withIdpAndApi, statuses as statusesOf } from './support/stack.mjs';

const stack = await e2eStack({ summary: 'outage token requests' });
const { counts } = stack;

const settle = (ms) => new Promise((r) => setTimeout(r, ms));

/** Requests from each of the first `isolates` isolates, every `everyMs`, for `forMs`: statuses in order. */
async function traffic(f, isolates, everyMs, forMs) {
  const statuses = [];
  const end = Date.now() + forMs;
  while (Date.now() < end) {
    const round = [];
    for (let i = 0; i < isolates; i += 1) round.push(f.fetch(i, '/things'));
    statuses.push(...(await statusesOf(await Promise.all(round))));
    await settle(everyMs);
  }
  return statuses;
}

test('with no traffic, the coordinator refreshes the token by its alarm and a new isolate finds it in KV', async () => {
  // 90 s tokens refreshed 80 s before expiry: the refresh point is 10 s after issue, and the new
  // token stays fresh long enough (68 s) to be written to KV.
  await withIdpAndApi({ tokenTtl: 90 }, async ({ idp, api }) => {
    const f = await stack.fleet({
      bindings: proxySettings({ idp, api, extra: { OAUTH_REFRESH_LEAD_SECS: '80' } }),
      isolates: 2,
    });
    assert.equal((await f.fetch(0, '/things')).status, 200);
    assert.equal(idp.tokenRequests, 1);
    await settle(14_000);
    assert.equal(idp.tokenRequests, 2, 'the alarm refreshed the token without a request');
    const asked = f.events({ source: 'coordinator' }).length;
    const started = Date.now();
    assert.equal((await f.fetch(1, '/things')).status, 200);
    const tookMs = Date.now() - started;
    assert.equal(idp.tokenRequests, 2, 'the new isolate made no token request');
    assert.equal(f.events({ source: 'coordinator' }).length, asked, 'nor asked the coordinator');
    assert.ok(f.events({ source: 'kv' }).length >= 1, 'it took the token from KV');
    counts.alarm_refresh = idp.tokenRequests - 1;
    counts.new_isolate_ms = tookMs;
  });
});

test('while the IdP answers 503, four isolates under traffic make a few token requests, and recover within one pause', async () => {
  await withIdpAndApi({}, async ({ idp, api }) => {
    const f = await stack.fleet({
      bindings: proxySettings({ idp, api, extra: { OAUTH_TIMEOUT_MS: '2000' } }),
      isolates: 4,
    });
    idp.setFault('status503');
    // 4 isolates, a request each every 250 ms, for 20 s: 320 requests without a token.
    const during = await traffic(f, 4, 250, 20_000);
    const inOutage = idp.tokenRequests;
    assert.ok(during.every((s) => s === 503), `statuses ${[...new Set(during)]}`);
    // The first flight retries within its 2 s budget; after that one attempt per pause of the
    // outage schedule (5, 10, 20 s ...), for the whole fleet.
    assert.ok(inOutage <= 8, `${inOutage} token requests in a 20 s outage`);
    const fallbacks = f.events({ outcome: 'coordinator_fallback' }).length;
    assert.equal(fallbacks, 0, 'no isolate asked the endpoint itself');
    idp.setFault('ok');
    const back = Date.now();
    let recovered = null;
    while (Date.now() - back < 25_000) {
      const s = await statusesOf(await Promise.all([0, 1, 2, 3].map((i) => f.fetch(i, "/things"))));
      if (s.every((x) => x === 200)) {
        recovered = Date.now() - back;
        break;
      }
      await settle(250);
    }
    assert.ok(recovered !== null, 'the fleet recovered');
    // The pause in force when the IdP came back is at most 20 s at this point of the schedule.
    assert.ok(recovered <= 21_000, `recovered after ${recovered} ms`);
    assert.equal(idp.tokenRequests - inOutage, 1, 'one token request brought the fleet back');
    counts.outage_20s = inOutage;
    counts.recovered_ms = recovered;
  });
});

test('a refresh lead longer than the outage: no caller sees an error', async () => {
  // 40 s tokens (fresh for 30 s), refreshed 30 s before expiry (10 s after issue); the IdP is down
  // from 5 s to 20 s, within the token's fresh life: it keeps serving until a refresh succeeds.
  await withIdpAndApi({ tokenTtl: 40 }, async ({ idp, api }) => {
    const f = await stack.fleet({
      bindings: proxySettings({ idp, api, extra: { OAUTH_REFRESH_LEAD_SECS: '30', OAUTH_TIMEOUT_MS: '2000' } }),
      isolates: 3,
    });
    assert.equal((await f.fetch(0, '/things')).status, 200);
    const start = Date.now();
    setTimeout(() => idp.setFault('status503'), 5_000);
    setTimeout(() => idp.setFault('ok'), 20_000);
    const statuses = await traffic(f, 3, 300, 28_000);
    assert.ok(Date.now() - start >= 28_000);
    assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
    assert.ok(idp.tokenRequests >= 2, 'the token was refreshed after the outage');
    counts.lead_outage_errors = statuses.filter((s) => s !== 200).length;
  });
});
