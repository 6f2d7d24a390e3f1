// The crate as a library (issue 10): examples/two-apis, a Rust Worker with its own
// #[event(fetch)] built with default features off, calls two APIs with two profiles' tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLIENTS } from './support/idp.mjs';
import { e2eStack, concurrently } from './support/stack.mjs';

const stack = await e2eStack({ apis: ['billingApi', 'crmApi'] });
const { idp, billingApi, crmApi } = stack;
const example = (bindings) => stack.worker({ builtDir: 'examples/two-apis/build', bindings });

function settings(extra = {}) {
  return {
    M2M_PROFILES: 'billing,crm',
    BILLING_API: billingApi.origin,
    BILLING_OAUTH_TOKEN_URL: idp.tokenUrl,
    BILLING_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    BILLING_OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
    BILLING_OAUTH_SCOPE: 'read:things',
    CRM_API: crmApi.origin,
    CRM_OAUTH_ISSUER: idp.issuer,
    CRM_OAUTH_CLIENT_ID: CLIENTS.post.id,
    CRM_OAUTH_AUTH_METHOD: 'client_secret_post',
    CRM_OAUTH_CLIENT_SECRET: CLIENTS.post.secret,
    CRM_OAUTH_SCOPE: 'read:things',
    ...extra,
  };
}

test('the library example calls two APIs, each with its own profile\'s token, one token request each', async () => {
  const [billingSeen, crmSeen] = [billingApi.seen.length, crmApi.seen.length];
  const w = await example(settings());
  const answers = await concurrently(6, () => w.fetch('/summary').then((r) => r.json()));
  for (const a of answers) {
    assert.equal(a.billing.status, 200, JSON.stringify(a));
    assert.equal(a.crm.status, 200, JSON.stringify(a));
    assert.equal(JSON.parse(a.billing.body).client_id, CLIENTS.basic.id);
    assert.equal(JSON.parse(a.crm.body).client_id, CLIENTS.post.id);
  }
  assert.equal(idp.issuedCount(CLIENTS.basic.id), 1);
  assert.equal(idp.issuedCount(CLIENTS.post.id), 1);
  assert.deepEqual(new Set(billingApi.seen.slice(billingSeen).map((r) => r.url)), new Set(['/invoices']));
  assert.deepEqual(new Set(crmApi.seen.slice(crmSeen).map((r) => r.url)), new Set(['/contacts']));
  // BILLING_API and CRM_API are the example's own settings: no notice names them.
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(w.events({ outcome: 'unknown_setting' }), []);
});

test('in the library example, a mistyped profile setting is named once with the nearest one, without its value', async () => {
  const w = await example(settings({ CRM_OAUTH_SCOPES: 'typo-crm-scopes-value-1b9e' }));
  for (let i = 0; i < 2; i += 1) assert.equal((await w.fetch('/summary')).status, 200);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(
    w.events({ event: 'config', outcome: 'unknown_setting' }),
    [{ event: 'config', outcome: 'unknown_setting', setting: 'CRM_OAUTH_SCOPES', nearest: 'CRM_OAUTH_SCOPE' }],
  );
  assert.ok(!w.logs.some((l) => l.includes('typo-crm-scopes-value-1b9e')));
});

test('in the library example, a profile\'s setting error reaches the handler naming the prefixed setting', async () => {
  const w = await example(settings({ CRM_OAUTH_CLIENT_SECRET: '' }));
  const r = await w.fetch('/summary');
  assert.equal(r.status, 500);
  assert.ok(w.logs.some((l) => l.includes('CRM_OAUTH_CLIENT_SECRET: is not set')), w.logs.join('\n'));
});
