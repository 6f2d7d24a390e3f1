// A real, certified authorization server (oidc-provider) on loopback, behind a thin wrapper that
// counts token requests and can be told to misbehave, so tests see exactly what the IdP saw.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK } from 'jose';
import { storeFor } from './idp-store.mjs';

export const API_AUDIENCE = 'https://api.demo.local';
export const SCOPES = 'read:things write:things';

/** Clients registered at the IdP. The basic client's secret has every character that
 *  RFC 6749 §2.3.1 form-encoding must protect. */
export const CLIENTS = {
  basic: { id: 'm2m-basic', secret: 'Sx%+:/=&y-basic-9f8e7d6c5b4a3210', method: 'client_secret_basic' },
  post: { id: 'm2m-post', secret: 'Px%+:/=&y-post-0123456789abcdef', method: 'client_secret_post' },
  // Registered with `dpop_bound_access_tokens`, as an Okta app with "Require DPoP": the IdP
  // refuses its token requests without a DPoP proof (RFC 9449 §5.2).
  dpop: { id: 'm2m-dpop', secret: 'Dx%+:/=&y-dpop-fedcba9876543210', method: 'client_secret_basic', dpop: true },
};

const form = (s) => encodeURIComponent(s).replace(/%20/g, '+');
const unform = (s) => decodeURIComponent(s.replace(/\+/g, ' '));

/** HTTP Basic client credentials (RFC 6749 §2.3.1: each part form-encoded), if `header` has them. */
function basicClient(header) {
  const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '');
  if (!m) return null;
  const [id, secret] = Buffer.from(m[1], 'base64').toString().split(':');
  return secret === undefined ? null : { id: unform(id), secret: unform(secret) };
}

function basicHeader(id, secret) {
  return `Basic ${Buffer.from(`${form(id)}:${form(secret)}`).toString('base64')}`;
}

function registeredSecret(id) {
  return Object.values(CLIENTS).find((c) => c.id === id)?.secret;
}

/** Listens on loopback, on `port` (0: any free one); rejects when it is taken. */
function listen(server, port = 0) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

/**
 * Starts the IdP. `tokenTtl` is the access token lifetime in seconds.
 * Faults (setFault): 'ok', 'status500', 'status503', 'status429', 'html', 'truncated',
 * 'no_access_token', 'invalid_client', 'bearer' (a Bearer token whatever was asked), { delayMs } to
 * answer late, { status, retryAfter } for a 429/503 with Retry-After, or an array of these played
 * in order (the last one repeats).
 * DPoP (RFC 9449) is on, with server nonces: `requireNonce(true)` makes every token request
 * without a current nonce answer `400 use_dpop_nonce` with a `DPoP-Nonce` header.
 */
export async function startIdp({ tokenTtl = 3600, keyClients = [], port: wanted = 0 } = {}) {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'demo-es256', alg: 'ES256', use: 'sig' };

  const server = http.createServer();
  const port = await listen(server, wanted);
  const issuer = `http://127.0.0.1:${port}`;

  const secretClients = Object.values(CLIENTS).map((c) => ({
    client_id: c.id,
    client_secret: c.secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: c.method,
    id_token_signed_response_alg: 'ES256',
    scope: SCOPES,
    ...(c.dpop ? { dpop_bound_access_tokens: true } : {}),
  }));
  // private_key_jwt clients: { id, jwks: { keys: [public JWK with kid] }, dpop } (RFC 7523).
  const assertionClients = keyClients.map((c) => ({
    client_id: c.id,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    id_token_signed_response_alg: 'ES256',
    jwks: c.jwks,
    scope: SCOPES,
    ...(c.dpop ? { dpop_bound_access_tokens: true } : {}),
  }));
  const provider = new Provider(issuer, {
    adapter: storeFor(),
    clients: [...secretClients, ...assertionClients],
    scopes: SCOPES.split(' '),
    ttl: { ClientCredentials: tokenTtl },
    jwks: { keys: [jwk] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      dPoP: {
        enabled: true,
        nonceSecret: crypto.randomBytes(32),
        requireNonce: () => state.requireNonce,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: SCOPES,
          audience: API_AUDIENCE,
          accessTokenTTL: tokenTtl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('[idp] server_error', err));
  // Who each issued token went to, whatever the client authentication method.
  provider.on('grant.success', (ctx) => state.issuedTo.push(ctx.oidc.client?.clientId ?? null));
  const callback = provider.callback();

  const state = {
    fault: 'ok', tokenRequests: 0, authHeaders: [], bodies: [], rfc8414: true, discovery: [],
    requireNonce: false, proofs: [], answers: [], issuedTo: [], rotated: {},
  };
  function resetCount() {
    Object.assign(state, { tokenRequests: 0, authHeaders: [], proofs: [], answers: [], issuedTo: [] });
  }
  server.on('request', (req, res) => {
    if (req.url.startsWith('/.well-known/')) state.discovery.push(req.url);
    // Both locations by default (oidc-provider serves both); with serveRfc8414(false) the
    // RFC 8414 one is a 404, as on servers that only do OIDC Discovery.
    if (!state.rfc8414 && req.url === '/.well-known/oauth-authorization-server') {
      res.writeHead(404);
      return res.end();
    }
    if (req.method !== 'POST' || !req.url.startsWith('/token')) return callback(req, res);
    state.tokenRequests += 1;
    state.authHeaders.push(req.headers.authorization ?? null);
    state.proofs.push(req.headers.dpop ?? null);
    const answer = { status: 0, error: null };
    state.answers.push(answer);
    const end = res.end.bind(res);
    res.end = (body, ...rest) => {
      answer.status = res.statusCode;
      try { answer.error = JSON.parse(String(body ?? '')).error ?? null; } catch { /* not JSON */ }
      return end(body, ...rest);
    };
    // A client whose secret was rotated (`rotateSecret`): only the new secret is accepted; it
    // reaches oidc-provider as the registered one, which oidc-provider cannot change at run time.
    const rotated = basicClient(req.headers.authorization);
    if (rotated && state.rotated[rotated.id] !== undefined) {
      if (rotated.secret !== state.rotated[rotated.id]) {
        res.writeHead(401, { 'content-type': 'application/json' });
        return res.end('{"error":"invalid_client","error_description":"client authentication failed"}');
      }
      req.headers.authorization = basicHeader(rotated.id, registeredSecret(rotated.id));
    }
    const fault = Array.isArray(state.fault)
      ? (state.fault.length > 1 ? state.fault.shift() : state.fault[0])
      : state.fault;
    const send = (status, type, body) => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    switch (fault) {
      case 'ok':
        return callback(req, res);
      case 'status500':
        return send(500, 'application/json', '{"error":"server_error"}');
      case 'status503':
        return send(503, 'text/plain', 'maintenance');
      case 'status429':
        return send(429, 'application/json', '{"error":"rate_limited"}');
      case 'html':
        return send(200, 'text/html', '<!doctype html><html><body>Sign in</body></html>');
      case 'truncated':
        return send(200, 'application/json', '{"access_token":"eyJhbGciOiJFUzI1NiJ9.eyJ');
      case 'no_access_token':
        return send(200, 'application/json', '{"token_type":"Bearer","expires_in":3600}');
      case 'bearer':
        return send(200, 'application/json', '{"access_token":"plain-bearer-token","token_type":"Bearer","expires_in":3600}');
      case 'invalid_client':
        return send(401, 'application/json', '{"error":"invalid_client","error_description":"client authentication failed"}');
      default:
        if (fault && fault.status) {
          res.writeHead(fault.status, { 'content-type': 'text/plain', 'retry-after': String(fault.retryAfter) });
          return res.end('try later');
        }
        if (fault && fault.delayMs) {
          // A client that gave up while the answer was held back has nothing left to read:
          // its request stream is gone, which oidc-provider would take for a parsed body.
          setTimeout(() => (req.readable ? callback(req, res) : res.destroy()), fault.delayMs);
          return undefined;
        }
        throw new Error(`unknown fault ${JSON.stringify(fault)}`);
    }
  });

  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    jwksUrl: `${issuer}/jwks`,
    get tokenRequests() { return state.tokenRequests; },
    get authHeaders() { return state.authHeaders; },
    get discovery() { return state.discovery; },
    /** The DPoP header of each token request (null when it had none). */
    get proofs() { return state.proofs; },
    /** Status and `error` of each token response, in order. */
    get answers() { return state.answers; },
    /** The client id of each token issued, in order. */
    get issuedTo() { return state.issuedTo; },
    /** Tokens issued to `clientId`. */
    issuedCount(clientId) { return state.issuedTo.filter((c) => c === clientId).length; },
    /** Token responses that carried a token. */
    get tokensIssued() { return state.answers.filter((a) => a.status === 200).length; },
    requireNonce(on) { state.requireNonce = on; },
    /** From now on `clientId` (a client_secret_basic client) authenticates with `secret` only. */
    rotateSecret(clientId, secret) { state.rotated[clientId] = secret; },
    serveRfc8414(on) { state.rfc8414 = on; },
    setFault(f) { state.fault = f; },
    resetCount,
    /** Back to the defaults: no fault, no nonces, both discovery documents served, nothing
     *  counted or recorded. */
    reset() {
      Object.assign(state, { fault: 'ok', requireNonce: false, rfc8414: true, discovery: [], rotated: {} });
      resetCount();
    },
    close() { server.closeAllConnections?.(); return new Promise((r) => server.close(r)); },
  };
}
