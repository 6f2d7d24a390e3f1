// What real Okta service apps need, against oidc-provider: private_key_jwt with ES256 and RS256
// keys given as a private JWK or a PKCS#8 PEM (RFC 7523 §2.2).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { e2eStack, withIdpAndApi, concurrently } from './support/stack.mjs';

const keys = {};

function makeKey(name, type) {
  const { privateKey, publicKey } = type === 'ec'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const alg = type === 'ec' ? 'ES256' : 'RS256';
  const kid = `${name}-kid`;
  keys[name] = {
    id: `m2m-${name}`,
    kid,
    alg,
    jwk: JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid, alg }),
    pem: privateKey.export({ format: 'pem', type: 'pkcs8' }),
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
  };
}

makeKey('es256', 'ec');
makeKey('rs256', 'rsa');
const stack = await e2eStack({
  idp: {
    keyClients: [
      ...Object.values(keys).map((k) => ({ id: k.id, jwks: { keys: [k.publicJwk] } })),
      // The Okta API-services setup: private_key_jwt, and DPoP required.
      { id: 'm2m-es256-dpop', jwks: { keys: [keys.es256.publicJwk] }, dpop: true },
    ],
  },
  secrets: Object.values(keys).flatMap((k) => [JSON.parse(k.jwk).d, k.pem.split('\n')[1]]),
});
const { idp, api } = stack;
const worker = (bindings) => stack.worker({ bindings });

for (const [name, format] of [['es256', 'jwk'], ['es256', 'pem'], ['rs256', 'jwk'], ['rs256', 'pem']]) {
  test(`private_key_jwt with an ${name.toUpperCase()} key as ${format.toUpperCase()}`, async () => {
    const k = keys[name];
    const w = await worker({
      OAUTH_TOKEN_URL: idp.tokenUrl,
      OAUTH_CLIENT_ID: k.id,
      OAUTH_AUTH_METHOD: 'private_key_jwt',
      OAUTH_PRIVATE_KEY: format === 'jwk' ? k.jwk : k.pem,
      // A PEM has no kid: say which registered key it is.
      ...(format === 'pem' ? { OAUTH_PRIVATE_KEY_ID: k.kid } : {}),
      OAUTH_SCOPE: 'read:things',
      UPSTREAM_ORIGIN: api.origin,
    });
    const rs = await concurrently(5, () => w.fetch('/things'));
    for (const r of rs) {
      assert.equal(r.status, 200);
      assert.equal((await r.json()).client_id, k.id);
    }
    assert.equal(idp.tokenRequests, 1);
    assert.equal(idp.authHeaders[0], null, 'no Basic credentials with private_key_jwt');
    // KV holds the token sealed under a key derived from the private key: nothing readable.
    const kv = await w.mf.getKVNamespace('TOKEN_CACHE');
    const token = api.seen.at(-1).headers.authorization.replace(/^Bearer /, '');
    for (const { name } of (await kv.list()).keys) {
      const value = await kv.get(name);
      assert.match(value, /^m2m-gcm1\./);
      assert.ok(!value.includes(token) && !value.includes(JSON.parse(k.jwk).d));
    }
  });
}

test('a PEM without OAUTH_PRIVATE_KEY_ID signs with its RFC 7638 thumbprint as kid', async () => {
  // Register the same public key under its thumbprint.
  const k = keys.es256;
  const thumb = crypto.createHash('sha256').update(JSON.stringify({ crv: k.publicJwk.crv, kty: 'EC', x: k.publicJwk.x, y: k.publicJwk.y })).digest('base64url');
  await withIdpAndApi({ keyClients: [{ id: 'm2m-thumb', jwks: { keys: [{ ...k.publicJwk, kid: thumb }] } }] }, async ({ idp: thumbIdp, api: thumbApi }) => {
    const w = await worker({
      OAUTH_TOKEN_URL: thumbIdp.tokenUrl,
      OAUTH_CLIENT_ID: 'm2m-thumb',
      OAUTH_AUTH_METHOD: 'private_key_jwt',
      OAUTH_PRIVATE_KEY: k.pem,
      OAUTH_SCOPE: 'read:things',
      UPSTREAM_ORIGIN: thumbApi.origin,
    });
    const r = await w.fetch('/things');
    assert.equal(r.status, 200, await r.clone().text());
  });
});

test('a key the IdP does not know is refused with invalid_client', async () => {
  const stranger = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const w = await worker({
    OAUTH_TOKEN_URL: idp.tokenUrl,
    OAUTH_CLIENT_ID: keys.es256.id,
    OAUTH_AUTH_METHOD: 'private_key_jwt',
    OAUTH_PRIVATE_KEY: JSON.stringify({ ...stranger.export({ format: 'jwk' }), kid: keys.es256.kid }),
    OAUTH_SCOPE: 'read:things',
    UPSTREAM_ORIGIN: api.origin,
  });
  const r = await w.fetch('/things');
  assert.equal(r.status, 502);
  assert.equal((await r.json()).error, 'invalid_client');
});

test('a malformed key is a 500 naming OAUTH_PRIVATE_KEY', async () => {
  for (const bad of ['{"kty":"EC"}', '-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----', 'hunter2']) {
    const w = await worker({
      OAUTH_TOKEN_URL: idp.tokenUrl,
      OAUTH_CLIENT_ID: keys.es256.id,
      OAUTH_AUTH_METHOD: 'private_key_jwt',
      OAUTH_PRIVATE_KEY: bad,
      UPSTREAM_ORIGIN: api.origin,
    });
    const r = await w.fetch('/things');
    assert.equal(r.status, 500);
    const body = await r.json();
    assert.equal(body.error, 'configuration_error');
    assert.match(body.error_description, /OAUTH_PRIVATE_KEY/);
    assert.ok(!JSON.stringify(body).includes('hunter2'));
  }
});

/** Settings that discover the token endpoint from the issuer, with an ES256 private_key_jwt client. */
function discovering() {
  return {
    OAUTH_ISSUER: idp.issuer,
    OAUTH_CLIENT_ID: keys.es256.id,
    OAUTH_AUTH_METHOD: 'private_key_jwt',
    OAUTH_PRIVATE_KEY: keys.es256.jwk,
    OAUTH_SCOPE: 'read:things',
    UPSTREAM_ORIGIN: api.origin,
  };
}

test('discovery: OAUTH_ISSUER instead of OAUTH_TOKEN_URL, RFC 8414 first, then OIDC Discovery', async () => {
  for (const rfc8414 of [false, true]) {
    idp.serveRfc8414(rfc8414);
    idp.resetCount();
    idp.discovery.length = 0;
    const w = await worker(discovering());
    const rs = await concurrently(5, () => w.fetch('/things'));
    for (const r of rs) assert.equal(r.status, 200);
    assert.equal(idp.tokenRequests, 1);
    assert.deepEqual(
      idp.discovery,
      rfc8414
        ? ['/.well-known/oauth-authorization-server']
        : ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'],
    );
    assert.ok(w.events({ event: 'cache', outcome: 'discovered' }).length >= 1);
  }
});

test('discovery with OAUTH_TOKEN_ENDPOINT_HOSTS: an endpoint outside the pin is refused naming the setting, one inside is used', async () => {
  const base = discovering();
  const outside = await worker({ ...base, OAUTH_TOKEN_ENDPOINT_HOSTS: 'login.example.com' });
  const r = await outside.fetch('/things');
  assert.equal(r.status, 500);
  const body = await r.json();
  assert.equal(body.error, 'configuration_error');
  assert.match(body.error_description, /OAUTH_TOKEN_ENDPOINT_HOSTS: does not list 127\.0\.0\.1:\d+/);
  assert.equal(idp.tokenRequests, 0, 'no credential went to the discovered endpoint');
  const host = new URL(idp.issuer).host;
  const inside = await worker({ ...base, OAUTH_TOKEN_ENDPOINT_HOSTS: `login.example.com, ${host}` });
  assert.equal((await inside.fetch('/things')).status, 200);
  assert.equal(idp.tokenRequests, 1);
});

test('private_key_jwt with DPoP and nonces, endpoint discovered: the Okta API-services setup', async () => {
  idp.requireNonce(true);
  const w = await worker({
    OAUTH_ISSUER: idp.issuer,
    OAUTH_CLIENT_ID: 'm2m-es256-dpop',
    OAUTH_AUTH_METHOD: 'private_key_jwt',
    OAUTH_PRIVATE_KEY: keys.es256.jwk,
    OAUTH_DPOP: 'true',
    OAUTH_SCOPE: 'read:things',
    UPSTREAM_ORIGIN: api.origin,
  });
  const rs = await concurrently(3, () => w.fetch('/things'));
  for (const r of rs) assert.equal(r.status, 200, await r.clone().text());
  // The nonce retry carried a new client assertion (oidc-provider refuses a replayed jti) and
  // a proof with the nonce; one token was issued.
  assert.deepEqual(idp.answers.map((a) => [a.status, a.error]), [[400, 'use_dpop_nonce'], [200, null]]);
  assert.ok(idp.proofs.every((p) => p !== null));
  assert.deepEqual(idp.authHeaders, [null, null]);
  assert.ok(api.seen.at(-1).headers.authorization.startsWith('DPoP '));
});
