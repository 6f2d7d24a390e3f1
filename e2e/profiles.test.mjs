// Several APIs from one Worker (issue 10): named credential profiles (M2M_PROFILES), each with
// its own client, authentication method, scope and upstream, against oidc-provider.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { CLIENTS } from './support/idp.mjs';
import { e2eStack, statuses as statusesOf } from './support/stack.mjs';

const key = (() => {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    private: JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid: 'crm-1', alg: 'ES256' }),
    public: { ...publicKey.export({ format: 'jwk' }), kid: 'crm-1', alg: 'ES256', use: 'sig' },
  };
})();
const CRM_CLIENT = 'm2m-crm-key';

function count(list) {
  return list.reduce((acc, c) => ({ ...acc, [c]: (acc[c] ?? 0) + 1 }), {});
}

const stack = await e2eStack({
  idp: { keyClients: [{ id: CRM_CLIENT, jwks: { keys: [key.public] } }] },
  apis: ['billingApi', 'crmApi'],
  secrets: [JSON.parse(key.private).d, 'wrong-secret-0123456789'],
  // The last test's tokens (the IdP's record is reset before each test).
  summary: () => `profiles: tokens issued ${JSON.stringify(count(idp.issuedTo))}`,
});
const { idp, billingApi, crmApi } = stack;

/** billing: client_secret_basic, token URL. crm: private_key_jwt, discovered from the issuer,
 *  another scope and upstream. reports: billing's client with another scope. broken: a wrong
 *  secret. Shared tuning (the timeout) is set once, unprefixed. */
function settings(extra = {}) {
  return {
    M2M_PROFILES: 'billing, crm, reports, broken',
    OAUTH_TIMEOUT_MS: '4000',
    BILLING_OAUTH_TOKEN_URL: idp.tokenUrl,
    BILLING_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    BILLING_OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
    BILLING_OAUTH_SCOPE: 'read:things',
    BILLING_UPSTREAM_ORIGIN: billingApi.origin,
    CRM_OAUTH_ISSUER: idp.issuer,
    CRM_OAUTH_CLIENT_ID: CRM_CLIENT,
    CRM_OAUTH_AUTH_METHOD: 'private_key_jwt',
    CRM_OAUTH_PRIVATE_KEY: key.private,
    CRM_OAUTH_SCOPE: 'read:things write:things',
    CRM_UPSTREAM_ORIGIN: crmApi.origin,
    REPORTS_OAUTH_TOKEN_URL: idp.tokenUrl,
    REPORTS_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    REPORTS_OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
    REPORTS_OAUTH_SCOPE: 'read:things write:things',
    REPORTS_UPSTREAM_ORIGIN: billingApi.origin,
    BROKEN_OAUTH_TOKEN_URL: idp.tokenUrl,
    BROKEN_OAUTH_CLIENT_ID: CLIENTS.post.id,
    BROKEN_OAUTH_AUTH_METHOD: 'client_secret_post',
    BROKEN_OAUTH_CLIENT_SECRET: 'wrong-secret-0123456789',
    BROKEN_UPSTREAM_ORIGIN: crmApi.origin,
    ...extra,
  };
}

function worker(opts = {}) {
  return stack.worker({ bindings: settings(opts.extra), ...opts });
}

test('two profiles, two clients and methods, two upstreams: each upstream sees only its own profile\'s token, one token request per profile', async () => {
  const w = await worker();
  const [billingSeen, crmSeen] = [billingApi.seen.length, crmApi.seen.length];
  const responses = await Promise.all([
    ...Array.from({ length: 10 }, () => w.fetch('/billing/things?page=2')),
    ...Array.from({ length: 10 }, () => w.fetch('/crm/contacts', { method: 'POST', body: 'x=1' })),
  ]);
  assert.deepEqual(new Set(await statusesOf(responses)), new Set([200]));
  assert.equal(idp.issuedCount(CLIENTS.basic.id), 1, 'one token request for billing');
  assert.equal(idp.issuedCount(CRM_CLIENT), 1, 'one token request for crm');
  assert.equal(idp.tokenRequests, 2);
  const billing = billingApi.seen.slice(billingSeen);
  const crm = crmApi.seen.slice(crmSeen);
  assert.equal(billing.length, 10);
  assert.equal(crm.length, 10);
  // The profile segment is not forwarded; each upstream got its own profile's token only.
  assert.deepEqual(new Set(billing.map((r) => `${r.method} ${r.url} ${r.clientId}`)), new Set([`GET /things?page=2 ${CLIENTS.basic.id}`]));
  assert.deepEqual(new Set(crm.map((r) => `${r.method} ${r.url} ${r.clientId}`)), new Set([`POST /contacts ${CRM_CLIENT}`]));
  const billingTokens = new Set(billing.map((r) => r.headers.authorization));
  const crmTokens = new Set(crm.map((r) => r.headers.authorization));
  assert.equal(billingTokens.size, 1);
  assert.equal(crmTokens.size, 1);
  assert.notDeepEqual([...billingTokens], [...crmTokens]);
  // private_key_jwt: no Basic credentials; the crm endpoint came from discovery.
  assert.equal(idp.authHeaders.filter((h) => h === null).length, 1);
  assert.ok(idp.discovery.length >= 1, 'crm discovered its token endpoint from its issuer');
  // Each profile's log lines say which profile they are about.
  const tokenLines = w.events({ event: 'token', source: 'network' });
  assert.deepEqual(new Set(tokenLines.map((e) => e.profile)), new Set(['billing', 'crm']));
});

test('an unknown or missing profile is a 404 JSON error that costs no token and reaches no upstream', async () => {
  const w = await worker();
  idp.resetCount();
  const [billingSeen, crmSeen] = [billingApi.seen.length, crmApi.seen.length];
  for (const p of ['/hr/things', '/', '/BILLING/things', '/bill%69ng/things', '/billing-eu/x', '//billing/things', '/?profile=billing']) {
    const r = await w.fetch(p);
    assert.equal(r.status, 404, p);
    assert.match(r.headers.get('content-type'), /application\/json/);
    const body = await r.json();
    assert.equal(body.error, 'unknown_profile', p);
    assert.ok(!JSON.stringify(body).includes('crm'), 'the error does not list the profiles');
  }
  assert.equal(idp.tokenRequests, 0);
  assert.equal(billingApi.seen.length, billingSeen);
  assert.equal(crmApi.seen.length, crmSeen);
});

test('a profile with a wrong secret fails alone while the others keep answering 200', async () => {
  const w = await worker();
  idp.resetCount();
  for (let i = 0; i < 3; i += 1) {
    const r = await w.fetch('/broken/things');
    assert.equal(r.status, 502);
    assert.equal((await r.json()).error, 'invalid_client');
    const [billing, crm] = await Promise.all([w.fetch('/billing/things'), w.fetch('/crm/things')]);
    assert.deepEqual(await statusesOf([billing, crm]), [200, 200]);
  }
  // One refusal, then broken's own hold-down; billing and crm each fetched once.
  assert.equal(idp.answers.filter((a) => a.error === 'invalid_client').length, 1);
  assert.equal(idp.issuedCount(CLIENTS.basic.id), 1);
  assert.equal(idp.issuedCount(CRM_CLIENT), 1);
  const refusals = w.events({ event: 'token', outcome: 'error' });
  assert.ok(refusals.length >= 1 && refusals.every((e) => e.profile === 'broken'), JSON.stringify(refusals));
});

test('profiles of one client with another scope get their own tokens and KV entries', async () => {
  const w = await worker();
  idp.resetCount();
  const seen = billingApi.seen.length;
  const statuses = await statusesOf(await Promise.all([
    w.fetch('/billing/things'), w.fetch('/reports/things'), w.fetch('/billing/a'), w.fetch('/reports/b'),
  ]));
  assert.deepEqual(statuses, [200, 200, 200, 200]);
  assert.equal(idp.issuedCount(CLIENTS.basic.id), 2, 'one token per scope, not one shared');
  const tokens = new Set(billingApi.seen.slice(seen).map((r) => r.headers.authorization));
  assert.equal(tokens.size, 2);
  await new Promise((r) => setTimeout(r, 200));
  const kv = await w.mf.getKVNamespace('TOKEN_CACHE');
  const names = (await kv.list()).keys.map((k) => k.name);
  assert.equal(names.length, 2, `KV entries ${names}`);
});

test('a profile\'s setting error names the prefixed setting, never a value, and other profiles are unaffected', async () => {
  const w = await worker({
    extra: { CRM_OAUTH_PRIVATE_KEY: '', OAUTH_CLIENT_SECRET: 'unprefixed-s3cret-value' },
  });
  const r = await w.fetch('/crm/things');
  assert.equal(r.status, 500);
  const body = await r.json();
  assert.equal(body.error, 'configuration_error');
  assert.match(body.error_description, /CRM_OAUTH_PRIVATE_KEY: is not set/);
  // An unprefixed client secret is never borrowed by a profile that lacks its own: billing has
  // its own and works.
  assert.equal((await w.fetch('/billing/things')).status, 200);
  const noSecret = await worker({ extra: { BILLING_OAUTH_CLIENT_SECRET: '', OAUTH_CLIENT_SECRET: 'unprefixed-s3cret-value' } });
  const refused = await (await noSecret.fetch('/billing/things')).json();
  assert.match(refused.error_description, /OAUTH_CLIENT_SECRET: is set, but with M2M_PROFILES each profile sets its own \(here BILLING_OAUTH_CLIENT_SECRET/);
  assert.ok(!JSON.stringify(refused).includes('unprefixed-s3cret'));
  assert.equal((await noSecret.fetch('/crm/things')).status, 200);
  const badList = await worker({ extra: { M2M_PROFILES: 'billing,Billing' } });
  const listed = await (await badList.fetch('/billing/things')).json();
  assert.match(listed.error_description, /M2M_PROFILES: `Billing` is not a profile name/);
});

test('a profile\'s own PROXY_SHARED_SECRET guards that profile; a JS caller picks the profile by path through its service binding', async () => {
  const caller = `export default {
    async fetch(request, env) {
      const u = new URL(request.url);
      const headers = u.searchParams.get('key') ? { 'proxy-authorization': 'Bearer ' + u.searchParams.get('key') } : {};
      const r = await env.PROXY.fetch('https://m2m-proxy' + u.pathname, { headers });
      return new Response(await r.text(), { status: r.status });
    },
  };`;
  const w = await worker({ caller, extra: { CRM_PROXY_SHARED_SECRET: 'crm-callers-only-0123456789' } });
  assert.equal((await w.callerFetch('/billing/things')).status, 200);
  const r = await w.callerFetch('/crm/things');
  assert.equal(r.status, 401);
  assert.equal((await w.callerFetch('/crm/things?key=crm-callers-only-0123456789')).status, 200);
});

test('three profiles with interleaved traffic: a token revoked on one is found, evicted and replayed, one new token', async () => {
  const w = await worker();
  const status = async (p) => { const r = await w.fetch(p); await r.arrayBuffer(); return r.status; };
  for (const p of ['/billing/things', '/crm/things', '/reports/things']) assert.equal(await status(p), 200);
  // Warm: the next requests take the hot path. Alternate the other two profiles, so that a
  // list of tokens shared by the whole isolate would have lost crm's.
  for (let i = 0; i < 6; i += 1) {
    assert.equal(await status('/billing/things'), 200);
    assert.equal(await status('/reports/things'), 200);
  }
  const before = idp.tokenRequests;
  crmApi.revokeAll();
  assert.equal(await status('/crm/things'), 200, 'evicted and replayed with a new token');
  assert.equal(idp.tokenRequests - before, 1, 'one new token, for crm');
  assert.ok(w.events({ outcome: 'evicted', profile: 'crm' }).length >= 1, 'crm evicted its token');
  assert.equal(await status('/crm/things'), 200);
  assert.equal(await status('/billing/things'), 200);
  assert.equal(idp.tokenRequests - before, 1, 'and nothing more');
});

test('on an exposed route, an unauthenticated client gets the same 401 for every path: known, unknown or broken profile', async () => {
  const secret = 'exposed-route-secret-0123456789';
  // crm's settings are broken; billing is fine; every request must show the secret first.
  const w = await worker({ extra: { PROXY_SHARED_SECRET: secret, CRM_OAUTH_PRIVATE_KEY: '' } });
  const before = stack.idp.tokenRequests;
  const answers = [];
  for (const path of ['/billing/things', '/hr/things', '/crm/things', '/', '/BILLING/x']) {
    const r = await w.fetch(path);
    answers.push([path, r.status, await r.text()]);
  }
  for (const [path, status, body] of answers) {
    assert.equal(status, 401, `${path}: ${status}`);
    assert.equal(body, answers[0][2], `${path} answers like the others`);
    assert.ok(!body.includes('CRM_') && !body.includes('profile'), body);
  }
  assert.equal(stack.idp.tokenRequests, before, 'no token for an unauthenticated client');
  // With the secret, the routing and setting errors are the caller's to see.
  const auth = { headers: { 'proxy-authorization': `Bearer ${secret}` } };
  assert.equal((await w.fetch('/billing/things', auth)).status, 200);
  assert.equal((await w.fetch('/hr/things', auth)).status, 404);
  assert.equal((await w.fetch('/crm/things', auth)).status, 500);
});

test('a fleet with a coordinator: one token request per profile, handed out by the profile\'s coordinator', async () => {
  const fleet = await stack.fleet({ bindings: settings(), isolates: 3 });
  const calls = [];
  for (let i = 0; i < 3; i += 1) {
    for (let j = 0; j < 5; j += 1) calls.push(fleet.fetch(i, '/billing/things'), fleet.fetch(i, '/crm/things'));
  }
  assert.deepEqual(new Set(await statusesOf(await Promise.all(calls))), new Set([200]));
  assert.equal(idp.issuedCount(CLIENTS.basic.id), 1);
  assert.equal(idp.issuedCount(CRM_CLIENT), 1);
  assert.equal(idp.tokenRequests, 2);
  const fromCoordinator = fleet.events({ event: 'token', source: 'coordinator' });
  assert.ok(fromCoordinator.length >= 1, 'isolates took tokens from the coordinator');
  assert.equal(fleet.events({ outcome: 'coordinator_fallback' }).length, 0, 'no isolate fell back');
});
