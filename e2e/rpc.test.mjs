// JavaScript callers as first-class users (issue 18): worker-m2m's RPC entrypoint `M2M`, the
// profile pinned by the caller's binding (`props`), and the TypeScript caller example
// (examples/js-caller, type-checked by `make lint`) run as deployed: one Worker exporting the
// entrypoint and the TokenCoordinator class, a caller bound to it with props.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import { e2eStack } from './support/stack.mjs';
import { twoProfileSettings } from './support/settings.mjs';

const stack = await e2eStack({ apis: ['billingApi', 'crmApi'], summary: 'rpc token requests' });
const { idp, billingApi, crmApi, counts } = stack;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The example caller as workerd runs it: its TypeScript bundled (types erased). */
const EXAMPLE = buildSync({
  entryPoints: [path.join(root, 'examples/js-caller/src/index.ts')],
  bundle: true, format: 'esm', write: false, platform: 'neutral',
}).outputFiles[0].text;

function settings(extra = {}) {
  return twoProfileSettings({ idp, billingApi, crmApi, extra });
}

/** The proxy (entrypoint and coordinator exported, the coordinator bound) and a caller whose
 *  `BILLING` binding is the `M2M` entrypoint with `props`. */
function deployed({ caller = EXAMPLE, props = { profile: 'billing' }, extra } = {}) {
  return stack.worker({
    bindings: settings(extra),
    coordinator: true,
    caller,
    callerBindings: {
      BILLING: { name: 'proxy', entrypoint: 'M2M', props },
      PROXY: { name: 'proxy', props },
    },
  });
}

test('the TypeScript example through a pinned binding: a path that tries to switch profiles stays on billing', async () => {
  const w = await deployed();
  assert.equal((await w.callerFetch('/?id=42')).status, 200);
  assert.equal(billingApi.seen.at(-1).url, '/v1/invoices/42');
  // The caller's own caller sends `../../crm/...`, raw and percent-encoded: the caller's fetch
  // resolves the dots, and what is left still goes to billing's upstream, as a path.
  for (const id of ['../../../crm/v2/contacts', '%2e%2e/%2e%2e/%2e%2e/crm/v2/contacts']) {
    const crmBefore = crmApi.seen.length;
    const r = await w.callerFetch(`/?id=${encodeURIComponent(id)}`);
    assert.ok([200, 404].includes(r.status), `${id}: ${r.status}`);
    assert.equal(crmApi.seen.length, crmBefore, `${id}: crm's API was not reached`);
    assert.match(billingApi.seen.at(-1).url, /crm\/v2\/contacts$/, 'billing got it as an ordinary path');
  }
  assert.equal(idp.tokenRequests, 1, 'billing\'s token only');
  // The token's metadata, never the token.
  const info = await (await w.callerFetch('/token-info')).json();
  assert.equal(info.profile, 'billing');
  assert.equal(info.scheme, 'Bearer');
  assert.ok(info.expiresIn > 3000 && ['coordinator', 'endpoint', 'kv'].includes(info.source), JSON.stringify(info));
  const token = billingApi.seen.at(-1).headers.authorization.split(' ')[1];
  assert.ok(!JSON.stringify(info).includes(token));
  // The Authorization value is refused unless billing opts in.
  const refused = await w.callerFetch('/authorization');
  assert.equal(refused.status, 403);
  assert.match((await refused.json()).refused, /BILLING_PROXY_EXPOSE_AUTHORIZATION/);
  // The example's health check, from the typed status view: one token for the fleet.
  const health = await w.callerFetch('/health');
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { ok: true, cause: null, tokenFrom: 'coordinator', fleetTokenRequests: 1 });
  counts.pinned = idp.tokenRequests;
});

test('a profile that opts in hands out its Authorization value; send() takes the profile as an argument; the default fetch honours props', async () => {
  const caller = `export default {
    async fetch(request, env) {
      const u = new URL(request.url);
      if (u.pathname === '/authorization') return new Response(await env.BILLING.authorization());
      if (u.pathname === '/send-crm') return env.BILLING.send('crm', new Request('https://m2m/things'));
      if (u.pathname === '/default') return env.PROXY.fetch('https://m2m/crm/things');
      return new Response('?', { status: 404 });
    },
  };`;
  const w = await deployed({ caller, extra: { BILLING_PROXY_EXPOSE_AUTHORIZATION: 'true' } });
  const auth = await (await w.callerFetch('/authorization')).text();
  assert.match(auth, /^Bearer eyJ/);
  // A pinned binding cannot send through another profile: the proxy's JSON error, no token.
  const before = idp.tokenRequests;
  const other = await w.callerFetch('/send-crm');
  assert.equal(other.status, 403);
  assert.deepEqual(await other.json(), { error: 'profile_pinned', error_description: 'this binding is pinned to profile billing' });
  assert.equal(idp.tokenRequests, before);
  // The default entrypoint with props: `/crm/things` is billing's path `/crm/things`.
  const crmBefore = crmApi.seen.length;
  assert.equal((await w.callerFetch('/default')).status, 200);
  assert.equal(crmApi.seen.length, crmBefore);
  assert.equal(billingApi.seen.at(-1).url, '/crm/things');
});

test('unpinned callers choose with send(); a pinned profile M2M_PROFILES does not list is a configuration error naming it', async () => {
  const caller = `export default {
    async fetch(request, env) {
      const u = new URL(request.url);
      const r = u.pathname === '/default'
        ? await env.PROXY.fetch('https://m2m/billing/things')
        : await env.BILLING.send(u.searchParams.get('p'), new Request('https://m2m/things'));
      return new Response(await r.text(), { status: r.status });
    },
  };`;
  const unpinned = await deployed({ caller, props: {} });
  assert.equal((await unpinned.callerFetch('/?p=crm')).status, 200);
  assert.equal(crmApi.seen.at(-1).url, '/things');
  assert.equal((await unpinned.callerFetch('/?p=hr')).status, 404);
  const wrong = await deployed({ caller, props: { profile: 'billling' } });
  const r = await wrong.callerFetch('/?p=billling');
  assert.equal(r.status, 500);
  const body = JSON.parse(await r.text());
  assert.equal(body.error, 'configuration_error');
  assert.match(body.error_description, /^props\.profile: .*M2M_PROFILES does not list/);
  // Path choice can be turned off: an unpinned caller is then refused.
  const strict = await deployed({ caller, props: {}, extra: { PROXY_PROFILE_FROM_PATH: 'False' } });
  const refused = await strict.callerFetch('/default');
  assert.equal(refused.status, 403);
  assert.match(await refused.text(), /PROXY_PROFILE_FROM_PATH/);
  // Every method alike: naming the profile as an argument does not get round it.
  const named = await strict.callerFetch('/?p=crm');
  assert.equal(named.status, 403);
  assert.match(await named.text(), /profile_not_pinned/);
});
