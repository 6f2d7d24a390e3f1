// A mistyped setting is noticed (issue 24): a var or secret under the proxy's prefixes that it
// does not read is named once per isolate in the log, with the nearest setting it does read,
// and never with its value; it is never an error. Bindings (KV, the coordinator, metrics, the
// Secrets Store) and a Worker's own settings outside the prefixes are not named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLIENTS } from './support/idp.mjs';
import { e2eStack, statuses } from './support/stack.mjs';
import { twoProfileSettings } from './support/settings.mjs';

/** The values of the mistyped settings: no log line may carry one. */
const VALUE = {
  scopes: 'typo-scopes-value-4f1c',
  shared: 'typo-shared-secret-value-0123456789-9ad2',
  host: 'typo-upstream-host-value-77b0.example',
  own: 'the-workers-own-value-5e3d',
  billingScopes: 'typo-billing-scopes-value-c81a',
  billingClient: 'typo-billing-client-value-02fe',
  crmOrigin: 'https://typo-crm-origin-value-6d44.example',
};
const CACHE_KEY = 'e2e-notice-cache-key-0123456789abcdef0123';
const STORE = { M2M_CLIENT_SECRET: { store_id: 'e2e-store', secret_name: 'notice-client-secret' } };

const stack = await e2eStack({
  apis: ['billingApi', 'crmApi'],
  secrets: [...Object.values(VALUE), CACHE_KEY],
});
const { idp, billingApi, crmApi } = stack;
const settle = (ms) => new Promise((r) => setTimeout(r, ms));

/** The unknown-setting notices in `w`'s log, as `{ setting, nearest }`, sorted by setting. */
function notices(w) {
  return w.events({ event: 'config', outcome: 'unknown_setting' })
    .map(({ setting, nearest }) => (nearest === undefined ? { setting } : { setting, nearest }))
    .sort((a, b) => a.setting.localeCompare(b.setting));
}

function assertNoValueLogged(w) {
  for (const line of w.logs) {
    for (const v of Object.values(VALUE)) assert.ok(!line.includes(v), `a log line carries a value: ${line.slice(0, 160)}`);
  }
}

test('typos under each prefix are named once per isolate with the nearest setting, without their values; bindings and the Worker\'s own settings are not', async () => {
  const w = await stack.worker({
    bindings: stack.settings({
      OAUTH_CLIENT_SECRET: 'secrets-store:M2M_CLIENT_SECRET',
      TOKEN_CACHE_KEY: CACHE_KEY,
      OAUTH_SCOPES: VALUE.scopes,
      // Meant as the shared secret: without the notice the proxy runs open, as it does here.
      PROXY_SHARED_SECRETT: VALUE.shared,
      UPSTREAM_HOST: VALUE.host,
      // A TOML number in [vars] is a setting too.
      OAUTH_TIMEOUT_MSS: 3000,
      APP_OWN_SETTING: VALUE.own,
    }),
    coordinator: true,
    metrics: true,
    secretsStore: STORE,
  });
  await w.secret('M2M_CLIENT_SECRET', CLIENTS.basic.secret);
  // Two requests (the first on the hot path's way in, the second after the token is held).
  assert.deepEqual(await statuses([await w.fetch('/things')]), [200], 'a typo is never an error');
  assert.deepEqual(await statuses([await w.fetch('/things?again=1')]), [200]);
  await settle(200);
  assert.deepEqual(notices(w), [
    { setting: 'OAUTH_SCOPES', nearest: 'OAUTH_SCOPE' },
    { setting: 'OAUTH_TIMEOUT_MSS', nearest: 'OAUTH_TIMEOUT_MS' },
    { setting: 'PROXY_SHARED_SECRETT', nearest: 'PROXY_SHARED_SECRET' },
    { setting: 'UPSTREAM_HOST' },
  ]);
  // TOKEN_CACHE, TOKEN_COORDINATOR, M2M_METRICS and M2M_CLIENT_SECRET are bound objects here.
  assert.ok(!w.logs.some((l) => /TOKEN_CACHE"|TOKEN_COORDINATOR|M2M_METRICS"|M2M_CLIENT_SECRET|APP_OWN_SETTING/.test(l) && l.includes('unknown_setting')));
  assertNoValueLogged(w);
});

test('with profiles: a profile\'s typos are named with its own nearest setting, once, whether the isolate\'s first call is RPC or fetch', async () => {
  const caller = `export default {
    async fetch(request, env) {
      const r = await env.M2M.send('billing', new Request('https://m2m/things'));
      return new Response(await r.text(), { status: r.status });
    },
  };`;
  const w = await stack.worker({
    bindings: twoProfileSettings({
      idp,
      billingApi,
      crmApi,
      extra: {
        BILLING_OAUTH_SCOPES: VALUE.billingScopes,
        BILLING_OUATH_CLIENT_ID: VALUE.billingClient,
        CRM_UPSTREAM_ORIGN: VALUE.crmOrigin,
        // The Worker's own setting under a profile's prefix: not the proxy's business.
        BILLING_API: VALUE.own,
      },
    }),
    caller,
    callerBindings: { M2M: { name: 'proxy', entrypoint: 'M2M' } },
  });
  // The isolate's first call is RPC; then the default fetch, for both profiles.
  assert.equal((await w.callerFetch('/')).status, 200);
  assert.deepEqual(await statuses([await w.fetch('/billing/things'), await w.fetch('/crm/things')]), [200, 200]);
  assert.equal((await w.callerFetch('/')).status, 200);
  await settle(200);
  assert.deepEqual(notices(w), [
    { setting: 'BILLING_OAUTH_SCOPES', nearest: 'BILLING_OAUTH_SCOPE' },
    { setting: 'BILLING_OUATH_CLIENT_ID', nearest: 'BILLING_OAUTH_CLIENT_ID' },
    { setting: 'CRM_UPSTREAM_ORIGN', nearest: 'CRM_UPSTREAM_ORIGIN' },
  ]);
  assertNoValueLogged(w);
});
