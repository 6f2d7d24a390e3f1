// `make demo`: a local authorization server (oidc-provider), a protected API that verifies every
// token, and the proxy Worker in workerd; real calls through it, and what happened.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startIdp, CLIENTS, API_AUDIENCE } from '../e2e/support/idp.mjs';
import { startApi } from '../e2e/support/api.mjs';
import { startWorker, startFleet } from '../e2e/support/worker.mjs';
import { summarise, printSummary } from './metrics.mjs';

const say = (s = '') => console.log(s);

const idp = await startIdp();
const api = await startApi({ issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: API_AUDIENCE });
const kvDir = fs.mkdtempSync(path.join(os.tmpdir(), 'm2m-demo-kv-'));
const bindings = {
  OAUTH_TOKEN_URL: idp.tokenUrl,
  OAUTH_CLIENT_ID: CLIENTS.basic.id,
  OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
  OAUTH_SCOPE: 'read:things',
  UPSTREAM_ORIGIN: api.origin,
  // Every request's count written at once (the default, 60 s, aggregates a minute's worth:
  // longer than this demo), so the figures at the end add up to the rows.
  M2M_METRICS_INTERVAL_SECS: '0',
};

say('worker-m2m demo');
say(`  authorization server  ${idp.issuer}  (oidc-provider, client ${CLIENTS.basic.id}, client_secret_basic)`);
say(`  protected API         ${api.origin}  (verifies JWT signature, issuer, audience ${API_AUDIENCE}, scope read:things)`);

// Metrics go to a recording M2M_METRICS dataset: the demo prints the figures the
// queries give in production.
const worker = await startWorker({ bindings, kvPersist: kvDir, metrics: true });
say(`  proxy Worker          in workerd (Miniflare)  -> ${api.origin}`);
say();

async function cleanup() {
  await worker.dispose();
  await api.close();
  await idp.close();
  fs.rmSync(kvDir, { recursive: true, force: true });
}

const rows = [];
async function call(label, w, p, init) {
  const before = idp.tokenRequests;
  const r = await w.fetch(p, init);
  const text = await r.text();
  let note = text.length > 90 ? `${text.slice(0, 87)}...` : text;
  try {
    const j = JSON.parse(text);
    note = j.ok ? `API accepted token of ${j.client_id}` : `${j.error}: ${j.error_description ?? ''}`;
  } catch { /* echo bodies are not JSON */ }
  rows.push([label, r.status, idp.tokenRequests - before, note]);
  return { r, text };
}

await call('GET /things (cold isolate)', worker, '/things');
for (let i = 1; i <= 4; i += 1) await call(`GET /things?page=${i}`, worker, `/things?page=${i}`);
const payload = 'a body that must arrive byte for byte: ✓ %+:/=&';
const echo = await call('POST /echo', worker, '/echo', { method: 'POST', body: payload });
rows[rows.length - 1][3] = echo.text === payload ? 'body echoed back byte-identical' : 'BODY CHANGED';
await call('GET with caller Authorization', worker, '/things', { headers: { authorization: 'Bearer not-for-upstream' } });
await call('GET with X-Forwarded-User, Cf-Access-*', worker, '/things', {
  headers: { 'x-forwarded-user': 'admin', 'cf-access-authenticated-user-email': 'admin@example.com', 'x-auth-request-user': 'admin' },
});
{
  const got = api.seen.at(-1).headers;
  const leaked = ['x-forwarded-user', 'cf-access-authenticated-user-email', 'x-auth-request-user'].filter((h) => got[h] !== undefined);
  rows[rows.length - 1][3] = leaked.length ? `LEAKED ${leaked.join(', ')}` : 'identity headers dropped before the API';
}
await call('GET //evil.example/steal', worker, 'http://proxy.internal//evil.example/steal');
rows[rows.length - 1][3] = `stayed on UPSTREAM_ORIGIN: the API got ${api.seen.at(-1).url}`;
const firstIsolateCalls = rows.length + 50;

const before = idp.tokenRequests;
const statuses = await Promise.all(Array.from({ length: 50 }, () => worker.fetch('/things').then((r) => r.status)));
rows.push(['50 concurrent GET /things', [...new Set(statuses)].join(','), idp.tokenRequests - before, 'served from isolate memory']);

const second = await startWorker({ bindings, kvPersist: kvDir });
await call('GET /things (second isolate, shared KV)', second, '/things');
const wrong = await startWorker({ bindings: { ...bindings, OAUTH_CLIENT_SECRET: 'wrong-secret' }, kv: false });
await call('GET /things (wrong client secret)', wrong, '/things');
idp.setFault('status503');
// A 2 s budget keeps the demo short: the 503s are retried with backoff until it is spent.
const down = await startWorker({ bindings: { ...bindings, OAUTH_TIMEOUT_MS: '2000' }, kv: false });
await call('GET /things (IdP 503s, 2 s of retries)', down, '/things');
idp.setFault('ok');

// DPoP (RFC 9449), as Okta API-services apps may require it: nonces at the IdP and the API.
idp.requireNonce(true);
api.requireNonce();
const dpop = await startWorker({
  bindings: { ...bindings, OAUTH_CLIENT_ID: CLIENTS.dpop.id, OAUTH_CLIENT_SECRET: CLIENTS.dpop.secret, OAUTH_DPOP: 'true' },
  kv: false,
});
for (const label of ['GET /things (DPoP, cold: IdP nonce + token)', 'GET /things (DPoP, warm)']) {
  const { r } = await call(label, dpop, '/things');
  const seen = api.seen.at(-1);
  if (r.status === 200) rows[rows.length - 1][3] = `proof checked by the API, token bound to key ${seen.dpop.jkt.slice(0, 10)}...`;
}
idp.requireNonce(false);

// Several APIs from one Worker: profiles (M2M_PROFILES), each with its own client, method,
// scope and upstream; the first path segment picks the profile.
const crmApi = await startApi({ issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: API_AUDIENCE });
const profiled = await startWorker({
  bindings: {
    M2M_PROFILES: 'billing,crm,broken',
    BILLING_OAUTH_TOKEN_URL: idp.tokenUrl,
    BILLING_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    BILLING_OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
    BILLING_OAUTH_SCOPE: 'read:things',
    BILLING_UPSTREAM_ORIGIN: api.origin,
    CRM_OAUTH_TOKEN_URL: idp.tokenUrl,
    CRM_OAUTH_CLIENT_ID: CLIENTS.post.id,
    CRM_OAUTH_AUTH_METHOD: 'client_secret_post',
    CRM_OAUTH_CLIENT_SECRET: CLIENTS.post.secret,
    CRM_OAUTH_SCOPE: 'read:things write:things',
    CRM_UPSTREAM_ORIGIN: crmApi.origin,
    BROKEN_OAUTH_TOKEN_URL: idp.tokenUrl,
    BROKEN_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    BROKEN_OAUTH_CLIENT_SECRET: 'wrong-secret',
    BROKEN_UPSTREAM_ORIGIN: crmApi.origin,
    M2M_METRICS_INTERVAL_SECS: '0',
  },
  kv: false,
  metrics: true,
  // A JS caller over RPC, its binding pinned to billing (props), building its path from
  // untrusted text; `/status` asks for billing's status view.
  caller: `export default {
    async fetch(request, env) {
      const url = new URL(request.url);
      if (url.pathname === '/status') return Response.json(await env.BILLING.status());
      const id = url.searchParams.get('id');
      return env.BILLING.fetch(new Request('https://m2m/v1/invoices/' + id));
    },
  };`,
  callerBindings: { BILLING: { name: 'proxy', entrypoint: 'M2M', props: { profile: 'billing' } } },
});
for (const [label, p] of [
  ['GET /billing/things (profile billing)', '/billing/things'],
  ['GET /crm/things (profile crm)', '/crm/things'],
  ['GET /billing/things?page=2 (billing again)', '/billing/things?page=2'],
  ['GET /hr/things (no such profile)', '/hr/things'],
  ['GET /broken/things (wrong secret)', '/broken/things'],
  ['GET /crm/things (after broken failed)', '/crm/things'],
]) {
  const crmBefore = crmApi.seen.length;
  const { r } = await call(label, profiled, p);
  const where = crmApi.seen.length > crmBefore ? 'CRM API' : 'billing API';
  if (r.status === 200) rows[rows.length - 1][3] += ` (at the ${where}, path ${(where === 'CRM API' ? crmApi : api).seen.at(-1).url})`;
}

{
  const before = idp.tokenRequests;
  const crmBefore = crmApi.seen.length;
  const r = await profiled.callerFetch(`/?id=${encodeURIComponent('../../../crm/things')}`);
  await r.arrayBuffer();
  rows.push([
    'RPC pinned billing, id=../../../crm/things',
    r.status,
    idp.tokenRequests - before,
    crmApi.seen.length > crmBefore
      ? 'SWITCHED TO CRM'
      : `stayed on billing: the billing API got ${api.seen.at(-1).url} with billing's token`,
  ]);
}

// The fleet: 4 cold isolates, 10 concurrent requests each, with and without the coordinator
// (a Durable Object that makes the one token request for every isolate).
const fleets = [];
for (const coordinator of [true, false]) {
  const fleet = await startFleet({ bindings, isolates: 4, coordinator, metrics: true });
  fleets.push(fleet);
  const before = idp.tokenRequests;
  const calls = [];
  for (let i = 0; i < 4; i += 1) for (let j = 0; j < 10; j += 1) calls.push(fleet.fetch(i, '/things'));
  const statuses = await Promise.all(calls.map(async (c) => { const r = await c; await r.arrayBuffer(); return r.status; }));
  const fromCoordinator = fleet.events().filter((e) => e.source === 'coordinator').length;
  rows.push([
    `4 cold isolates x 10 (${coordinator ? 'coordinator' : 'no coordinator'})`,
    [...new Set(statuses)].join(','),
    idp.tokenRequests - before,
    coordinator ? `one token for the fleet; ${fromCoordinator} isolates got it from the coordinator` : 'each isolate asked the token endpoint itself',
  ]);
}

// An IdP outage: the token endpoint answers 503 for 12 s while 4 cold isolates (coordinator
// bound) send a request each every 250 ms; the fleet backs off as one, then recovers.
{
  const fleet = await startFleet({ bindings: { ...bindings, OAUTH_TIMEOUT_MS: '2000' }, isolates: 4, metrics: true });
  fleets.push(fleet);
  const before = idp.tokenRequests;
  idp.setFault('status503');
  const statuses = new Set();
  let sent = 0;
  for (const end = Date.now() + 12_000; Date.now() < end; sent += 4) {
    const round = await Promise.all([0, 1, 2, 3].map((i) => fleet.fetch(i, '/things')));
    for (const r of round) { await r.arrayBuffer(); statuses.add(r.status); }
    await new Promise((r) => setTimeout(r, 250));
  }
  const during = idp.tokenRequests - before;
  idp.setFault('ok');
  rows.push([
    `IdP down 12 s, 4 isolates x ${sent} requests`,
    [...statuses].join(','),
    during,
    `the fleet paused as one (503 with Retry-After); ${fleet.events({ outcome: 'coordinator_fallback' }).length} fallbacks to the endpoint`,
  ]);
}

// The status view over RPC: what an operator sees of billing, never a token or a secret.
{
  const before = idp.tokenRequests;
  const r = await profiled.callerFetch('/status');
  const [view] = await r.json();
  const text = JSON.stringify(view);
  const leaked = [CLIENTS.basic.secret, CLIENTS.post.secret].some((x) => text.includes(x)) || /eyJ/.test(text);
  rows.push([
    'RPC status() of billing',
    r.status,
    idp.tokenRequests - before,
    leaked ? 'LEAKED A SECRET' : `token from ${view.token?.obtained_from}, ${view.token?.expires_in} s left, `
      + `${view.requests.memory} from memory, hold-down ${view.hold_down ? view.hold_down.code : 'none'}; no token or secret in it`,
  ]);
}

// A client secret kept in the Secrets Store, rotated mid-run: the IdP takes only the new one
// from then on; the cached token serves until the API rejects it, then one token with the new.
const rotating = await startWorker({
  bindings: { ...bindings, OAUTH_CLIENT_SECRET: 'secrets-store:M2M_CLIENT_SECRET', TOKEN_CACHE_KEY: 'demo-cache-key-0123456789abcdef0123456789' },
  kv: false,
  metrics: true,
  secretsStore: { M2M_CLIENT_SECRET: { store_id: 'demo', secret_name: 'client-secret' } },
});
await rotating.secret('M2M_CLIENT_SECRET', CLIENTS.basic.secret);
await call('GET /things (secret from the Secrets Store)', rotating, '/things');
const rotated = 'Rx%+:/=&y-rotated-in-the-store-0042';
await rotating.secret('M2M_CLIENT_SECRET', rotated);
idp.rotateSecret(CLIENTS.basic.id, rotated);
await call('GET /things (secret rotated, cached token)', rotating, '/things');
api.revokeAll();
await call('GET /things (old token rejected)', rotating, '/things');
rows[rows.length - 1][3] += '; refused, store read again, new secret used';

const w = [46, 8, 7];
say(`${'request'.padEnd(w[0])}${'status'.padEnd(w[1])}${'token'.padEnd(w[2])}result`);
for (const [label, status, tokens, note] of rows) {
  say(`${String(label).padEnd(w[0])}${String(status).padEnd(w[1])}${String(tokens).padEnd(w[2])}${note}`);
}
const events = [worker, second].flatMap((x) => x.events()).filter((e) => e.event === 'token' && e.outcome === 'ok');
const fetched = worker.events().filter((e) => e.event === 'token' && e.source === 'network').length;
say();
say(`Token endpoint requests (good credentials, healthy IdP): ${events.filter((e) => e.source === 'network').length}`);
say(`Tokens read from KV by the second isolate:               ${events.filter((e) => e.source === 'kv').length}`);
say(`First isolate: ${firstIsolateCalls} requests, ${fetched} token request, ${firstIsolateCalls - fetched} served from isolate memory`);
say(`Total token endpoint requests, failures included:         ${idp.tokenRequests}`);
say();
say('Worker log lines (JSON), first isolate:');
for (const l of worker.events()) say(`  ${JSON.stringify(l)}`);
// Everything the Workers with a dataset wrote, as `node scripts/metrics.mjs` reads it.
const metricsFrom = [worker, profiled, rotating, ...fleets];
const points = (await Promise.all(metricsFrom.map((x) => x.points()))).flat();
say();
say(`Metrics written to M2M_METRICS during the demo (${points.length} data points; the queries in docs/operating.md):`);
printSummary(summarise(points), (text) => text.split('\n').forEach((line) => say(`  ${line}`)));
await Promise.all([second.dispose(), wrong.dispose(), down.dispose(), dpop.dispose(), profiled.dispose(), rotating.dispose(), ...fleets.map((f) => f.dispose())]);
await crmApi.close();
await cleanup();
