// Operators see and steer it (issue 19): the data points the Worker writes to Workers Analytics
// Engine (M2M_METRICS, recorded), credentials read from the Secrets Store and rotated mid-run
// (Miniflare's secrets store API) against an IdP that then accepts only the new secret, and the
// status view through the RPC entrypoint, checked against every secret of the run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLIENTS } from './support/idp.mjs';
import { e2eStack, concurrently, statuses } from './support/stack.mjs';
import { summarise } from '../scripts/metrics.mjs';

const CACHE_KEY = 'e2e-operate-cache-key-0123456789abcdef0123';
const NEW_SECRET = 'Nx%+:/=&y-rotated-basic-5a4b3c2d1e0f';
const SHARED = 'e2e-operate-shared-secret-4242';
const STORE = { M2M_CLIENT_SECRET: { store_id: 'e2e-store', secret_name: 'billing-client-secret' } };

const stack = await e2eStack({ summary: 'operate token requests', secrets: [CACHE_KEY, NEW_SECRET, SHARED] });
const { idp, api, counts } = stack;

/** The recorded points of `w`, each as docs/operating.md ("Metrics") names its columns. */
async function points(w) {
  return (await w.points()).map(({ indexes, blobs, doubles }) => ({
    profile: indexes[0],
    kind: blobs[0], detail: blobs[1], place: blobs[2], held: blobs[3],
    count: doubles[0], latency: doubles[1], status: doubles[2], secs: doubles[3],
  }));
}

/** `points` as `kind/detail@place×count` strings, sorted: what happened, without timings. */
const shape = (pts) => pts.map((p) => `${p.kind}/${p.detail}@${p.place}${p.held ? `:${p.held}` : ''}×${p.count}`).sort();

test('metrics: tokens by source, hits from memory, a fallback and a refusal, checked by value', async () => {
  // The deployed shape: KV and the coordinator; every request's count written at once.
  const w = await stack.worker({
    bindings: stack.settings({ M2M_METRICS_INTERVAL_SECS: '0', TOKEN_CACHE_KEY: CACHE_KEY }),
    coordinator: true,
    metrics: true,
  });
  assert.deepEqual(await statuses([await w.fetch('/things')]), [200]);
  assert.deepEqual(await statuses([await w.fetch('/things'), await w.fetch('/things')]), [200, 200]);
  let pts = await points(w);
  assert.deepEqual(shape(pts), [
    'requests/coordinator@isolate×1', // the first request waited for the coordinator
    'requests/memory@isolate×1', // the next two found the token in memory (the hot path)
    'requests/memory@isolate×1',
    'requests/network@coordinator×1', // the coordinator's one ask, served by its token request
    'token/coordinator@isolate×1',
    'token/network@coordinator×1', // the one token minted
  ]);
  assert.ok(pts.every((p) => p.profile === '(default)'), 'the unprefixed configuration');
  const minted = pts.find((p) => p.kind === 'token' && p.detail === 'network');
  assert.ok(minted.latency > 0 && minted.secs > 3500 && minted.secs <= 3600, JSON.stringify(minted));
  assert.equal(idp.tokensIssued, 1);

  // An upstream rejects the token: evicted, one new token, the request replayed.
  api.revokeAll();
  await w.clearPoints();
  assert.deepEqual(await statuses([await w.fetch('/things')]), [200]);
  pts = await points(w);
  assert.ok(shape(pts).includes('eviction/evicted@isolate×1'), shape(pts).join(' '));
  const replay = pts.find((p) => p.kind === 'replay');
  assert.deepEqual([replay.detail, replay.status], ['replayed', 401]);
  assert.equal(pts.filter((p) => p.kind === 'token' && p.detail === 'network').length, 1, 'one new token');

  // A coordinator that fails: the isolate falls back to the token endpoint itself.
  const fleet = await stack.fleet({ bindings: stack.settings({ M2M_METRICS_INTERVAL_SECS: '0' }), isolates: 1, coordinator: 'broken', metrics: true });
  assert.deepEqual(await statuses([await fleet.fetch(0, '/things')]), [200]);
  assert.deepEqual(shape(await points(fleet)), [
    'fallback/unreachable@isolate×1',
    'requests/network@isolate×1',
    'token/network@isolate×1',
  ]);

  // A refusal: held down, and said with its status; the request counted as failed.
  idp.setFault('invalid_client');
  const refused = await stack.worker({ bindings: stack.settings({ M2M_METRICS_INTERVAL_SECS: '0' }), metrics: true });
  assert.deepEqual(await statuses([await refused.fetch('/things'), await refused.fetch('/things')]), [502, 502]);
  pts = await points(refused);
  assert.deepEqual(shape(pts), ['failure/invalid_client@isolate:held×1', 'requests/failed@isolate×1', 'requests/failed@isolate×1']);
  const failure = pts.find((p) => p.kind === 'failure');
  assert.ok(failure.status === 401 && failure.secs > 0, JSON.stringify(failure));

  // The figures of docs/operating.md, computed from these points as the SQL computes them from the dataset.
  const all = [...(await w.points()), ...(await fleet.points()), ...(await refused.points())];
  const figures = summarise(all);
  assert.deepEqual(figures.tokens.map((r) => r.tokens), [2]);
  assert.deepEqual(figures.errors.map((r) => [r.error, r.status, r.failures]), [['invalid_client', 401, 1]]);
  assert.deepEqual(figures.outages.map((r) => [r.fallbacks, r.holds]), [[1, 1]]);
  // No data point names the client or carries a credential or a token.
  const text = JSON.stringify(all);
  const tokens = api.seen.map((r) => (r.headers.authorization ?? '').replace(/^Bearer /, '')).filter((t) => t.length > 20);
  for (const secret of [CLIENTS.basic.id, CLIENTS.basic.secret, CACHE_KEY, ...tokens]) {
    assert.ok(!text.includes(secret), 'a data point carries the client id, a secret or a token');
  }
  counts.metrics = idp.tokenRequests;
});

test('metrics: counts are written once per interval, not per request', async () => {
  const w = await stack.worker({ bindings: stack.settings({ M2M_METRICS_INTERVAL_SECS: '1' }), metrics: true });
  await statuses(await concurrently(1, () => w.fetch('/things')));
  for (let i = 0; i < 20; i += 1) await statuses([await w.fetch('/things')]);
  await new Promise((r) => setTimeout(r, 1100));
  await statuses([await w.fetch('/things')]);
  const requests = (await points(w)).filter((p) => p.kind === 'requests');
  const total = requests.reduce((n, p) => n + p.count, 0);
  assert.ok(requests.length <= 3, `${requests.length} points for 22 requests`);
  assert.ok(total >= 21 && total <= 22, `counted ${total} of 22 (the last may wait for the next interval)`);
});

test('a client secret rotated in the Secrets Store mid-run: cached tokens stay, the next token uses the new secret, no request fails', async () => {
  const w = await stack.worker({
    bindings: stack.settings({ OAUTH_CLIENT_SECRET: 'secrets-store:M2M_CLIENT_SECRET', TOKEN_CACHE_KEY: CACHE_KEY, M2M_METRICS_INTERVAL_SECS: '0' }),
    coordinator: true,
    metrics: true,
    secretsStore: STORE,
  });
  await w.secret('M2M_CLIENT_SECRET', CLIENTS.basic.secret);
  const all = [];
  const round = async (n) => { const s = await statuses(await concurrently(n, () => w.fetch('/things'))); all.push(...s); return s; };
  await round(5);
  assert.equal(idp.tokensIssued, 1);
  // The security team rotates: the store holds the new secret, the IdP accepts only it.
  await w.secret('M2M_CLIENT_SECRET', NEW_SECRET);
  idp.rotateSecret(CLIENTS.basic.id, NEW_SECRET);
  await round(5);
  assert.equal(idp.tokenRequests, 1, 'the old secret\'s token is used until it is rejected');
  // The upstream rejects it: the coordinator asks with the secret it holds, is refused, reads
  // the store again at once and asks with the new one; the replayed requests all succeed.
  api.revokeAll();
  await round(5);
  await round(5);
  assert.deepEqual([...new Set(all)], [200], `every request succeeded: ${all.join(',')}`);
  assert.deepEqual(idp.answers.map((a) => [a.status, a.error]), [[200, null], [401, 'invalid_client'], [200, null]]);
  assert.equal(idp.tokensIssued, 2);
  const pts = await points(w);
  assert.ok(!pts.some((p) => p.kind === 'failure'), 'the refusal the rotation explains is not a failure');
  assert.ok(w.events({ outcome: 'credential_rotated' }).length >= 1);
  counts.rotation = idp.tokenRequests;
});

test('a credential that names a missing binding, or a secret the store lacks, is a configuration error naming the setting', async () => {
  const missing = await stack.worker({ bindings: stack.settings({ OAUTH_CLIENT_SECRET: 'secrets-store:NOT_BOUND', TOKEN_CACHE_KEY: CACHE_KEY }) });
  let r = await missing.fetch('/things');
  let body = await r.json();
  assert.equal(r.status, 500);
  assert.equal(body.error, 'configuration_error');
  assert.match(body.error_description, /OAUTH_CLIENT_SECRET: names the Secrets Store binding NOT_BOUND, which is not bound/);

  const empty = await stack.worker({ bindings: stack.settings({ OAUTH_CLIENT_SECRET: 'secrets-store:M2M_CLIENT_SECRET', TOKEN_CACHE_KEY: CACHE_KEY }), secretsStore: STORE });
  r = await empty.fetch('/things');
  body = await r.json();
  assert.equal(r.status, 500);
  assert.match(body.error_description, /OAUTH_CLIENT_SECRET: names the Secrets Store binding M2M_CLIENT_SECRET, whose secret could not be read/);

  const keyless = await stack.worker({ bindings: stack.settings({ OAUTH_CLIENT_SECRET: 'secrets-store:M2M_CLIENT_SECRET' }), secretsStore: STORE });
  await keyless.secret('M2M_CLIENT_SECRET', CLIENTS.basic.secret);
  r = await keyless.fetch('/things');
  body = await r.json();
  assert.match(body.error_description, /TOKEN_CACHE_KEY: must be set when the client credential is read from the Secrets Store/);
  assert.equal(idp.tokenRequests, 0);
});

test('the status view: where the token came from, the fleet\'s view, a hold-down and its cause; never a token or a credential', async () => {
  // `/` asks the unpinned binding, `/pinned` the one pinned to crm.
  const caller = `export default {
    async fetch(request, env) {
      const binding = new URL(request.url).pathname === '/pinned' ? env.PINNED : env.PROXY;
      try {
        return Response.json(await binding.status());
      } catch (e) {
        return Response.json({ thrown: String(e.message ?? e) }, { status: 403 });
      }
    },
  };`;
  const settings = {
    M2M_PROFILES: 'billing, crm',
    BILLING_OAUTH_TOKEN_URL: idp.tokenUrl,
    BILLING_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    BILLING_OAUTH_CLIENT_SECRET: 'secrets-store:M2M_CLIENT_SECRET',
    BILLING_OAUTH_SCOPE: 'read:things',
    BILLING_UPSTREAM_ORIGIN: api.origin,
    CRM_OAUTH_TOKEN_URL: idp.tokenUrl,
    CRM_OAUTH_CLIENT_ID: CLIENTS.post.id,
    CRM_OAUTH_CLIENT_SECRET: CLIENTS.post.secret,
    CRM_OAUTH_AUTH_METHOD: 'client_secret_post',
    CRM_OAUTH_SCOPE: 'read:things',
    CRM_UPSTREAM_ORIGIN: api.origin,
    CRM_PROXY_SHARED_SECRET: SHARED,
    TOKEN_CACHE_KEY: CACHE_KEY,
  };
  const w = await stack.worker({
    bindings: settings, coordinator: true, secretsStore: STORE, caller,
    callerBindings: { PROXY: { name: 'proxy', entrypoint: 'M2M' }, PINNED: { name: 'proxy', entrypoint: 'M2M', props: { profile: 'crm' } } },
  });
  await w.secret('M2M_CLIENT_SECRET', CLIENTS.basic.secret);
  assert.equal((await w.fetch('/billing/things')).status, 200);
  assert.equal((await w.fetch('/billing/things')).status, 200);
  idp.setFault('invalid_client');
  assert.equal((await w.fetch('/crm/things', { headers: { 'proxy-authorization': `Bearer ${SHARED}` } })).status, 502);

  const view = await (await w.callerFetch('/')).json();
  assert.deepEqual(view.map((s) => s.profile), ['billing', 'crm']);
  const [billing, crm] = view;
  assert.equal(billing.token.obtained_from, 'coordinator');
  assert.equal(billing.token.scheme, 'Bearer');
  assert.ok(billing.token.expires_at > billing.now && billing.token.refresh_at < billing.token.expires_at);
  assert.equal(billing.requests.coordinator, 1);
  assert.equal(billing.requests.memory, 1);
  assert.equal(billing.hold_down, null);
  // The fleet's view: the coordinator made the one token request.
  assert.equal(billing.coordinator.events.token_requests, 1);
  assert.ok(billing.coordinator.last_token_request >= billing.now - 60);
  assert.equal(billing.coordinator.failed_flights, 0);
  // crm has its own shared secret: an unpinned caller sees only why not.
  assert.deepEqual(Object.keys(crm), ['profile', 'error']);
  assert.match(crm.error, /pinned/);

  // Pinned to crm: its hold-down and cause, its last error.
  const [crmView] = await (await w.callerFetch('/pinned')).json();
  assert.equal(crmView.profile, 'crm');
  assert.equal(crmView.token, null);
  assert.equal(crmView.hold_down.code, 'invalid_client');
  assert.match(crmView.hold_down.cause, /invalid_client/);
  assert.ok(crmView.hold_down.until > crmView.now);
  assert.equal(crmView.requests.failed, 1);
  // The refusal came to the coordinator, which holds the fleet's last error; the isolate got
  // the fleet's hold with its cause.
  assert.equal(crmView.last_error, null);
  const fleet = crmView.coordinator;
  assert.deepEqual([fleet.last_error.code, fleet.last_error.status], ['invalid_client', 401]);
  assert.equal(fleet.hold_down.until, crmView.hold_down.until);
  assert.deepEqual([fleet.events.failures, fleet.events.token_requests], [1, 0]);
  const text = JSON.stringify([view, crmView]);
  const tokens = api.seen.map((r) => (r.headers.authorization ?? '').replace(/^Bearer /, '')).filter((t) => t.length > 20);
  for (const secret of [CLIENTS.basic.secret, CLIENTS.post.secret, encodeURIComponent(CLIENTS.basic.secret), CACHE_KEY, SHARED, ...tokens]) {
    assert.ok(!text.includes(secret), 'the status view carries a secret or a token');
  }
  assert.ok(!/Basic |"d"\s*:/.test(text));
});

test('a PROXY_SHARED_SECRET kept in the Secrets Store is what callers must present, on every path', async () => {
  const store = { M2M_SHARED: { store_id: 'e2e-store', secret_name: 'proxy-shared-secret' } };
  const w = await stack.worker({
    bindings: stack.settings({ PROXY_SHARED_SECRET: 'secrets-store:M2M_SHARED' }),
    secretsStore: store,
  });
  await w.secret('M2M_SHARED', SHARED);
  const as = (secret) => ({ headers: { 'proxy-authorization': `Bearer ${secret}` } });
  assert.equal((await w.fetch('/things', as(SHARED))).status, 200);
  // The reference itself is no secret: presenting it is presenting nothing.
  assert.equal((await w.fetch('/things', as('secrets-store:M2M_SHARED'))).status, 401);
  assert.equal((await w.fetch('/things')).status, 401);
  assert.equal(idp.tokenRequests, 1, 'refused callers cost no token');

  // An unrouted path: the same 401 for all but a caller who presents the value.
  const profiled = await stack.worker({
    bindings: {
      M2M_PROFILES: 'billing',
      BILLING_OAUTH_TOKEN_URL: idp.tokenUrl,
      BILLING_OAUTH_CLIENT_ID: CLIENTS.basic.id,
      BILLING_OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
      BILLING_UPSTREAM_ORIGIN: api.origin,
      PROXY_SHARED_SECRET: 'secrets-store:M2M_SHARED',
    },
    secretsStore: store,
  });
  await profiled.secret('M2M_SHARED', SHARED);
  assert.equal((await profiled.fetch('/hr/things', as(SHARED))).status, 404);
  assert.equal((await profiled.fetch('/hr/things', as('secrets-store:M2M_SHARED'))).status, 401);
  assert.equal((await profiled.fetch('/hr/things')).status, 401);
});
