// A demo protected API, as a real resource server: every request must carry a JWT access token
// that the IdP signed (verified against its JWKS), for our audience, with the read scope.
// A DPoP-bound token (`cnf.jkt`) is accepted only as `Authorization: DPoP` with a proof that
// passes the checks of RFC 9449 §4.3 and §7.1, and a current nonce when nonces are required.
import http from 'node:http';
import crypto from 'node:crypto';
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, jwtVerify } from 'jose';

/** Proof iat may differ from our clock by this much (RFC 9449 §11.1 leaves it to the server). */
const IAT_WINDOW_SECS = 60;

/**
 * Checks a DPoP proof for `req` carrying `token`, bound to `jkt`. Returns null when it passes,
 * else the reason. `nonces` is the set of nonces currently accepted (null: none required).
 */
async function checkProof({ proof, req, origin, token, jkt, nonces, jtis }) {
  if (!proof || proof.includes(',')) return 'missing or repeated DPoP header';
  let payload;
  let protectedHeader;
  try {
    ({ payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] }));
  } catch (e) {
    return `proof does not verify: ${e.code ?? e.message}`;
  }
  if ('d' in protectedHeader.jwk) return 'proof header carries a private key';
  if (payload.htm !== req.method) return `htm ${payload.htm} is not ${req.method}`;
  const want = new URL(req.url, origin);
  want.search = '';
  let htu;
  try { htu = new URL(payload.htu); } catch { return 'htu is not a URL'; }
  if (htu.search || htu.hash) return 'htu carries a query or fragment';
  if (htu.href !== want.href) return `htu ${payload.htu} is not ${want.href}`;
  if (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > IAT_WINDOW_SECS) return 'iat is not recent';
  if (typeof payload.jti !== 'string' || payload.jti.length < 16) return 'jti is missing or short';
  if (jtis.has(payload.jti)) return 'jti replayed';
  jtis.add(payload.jti);
  if (payload.ath !== crypto.createHash('sha256').update(token).digest('base64url')) return 'ath does not match the token';
  if (await calculateJwkThumbprint(protectedHeader.jwk) !== jkt) return 'proof key is not the key the token is bound to (cnf.jkt)';
  if (nonces && !nonces.includes(payload.nonce)) return 'use_dpop_nonce';
  return null;
}

/** Listens on loopback, on `port` (0: any free one); rejects when it is taken. */
function listen(server, port = 0) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

/** Starts the API. Every request is recorded; `/echo` returns the request body unchanged,
 *  `/redirect?status=&to=` answers that redirect, any other path returns JSON describing what
 *  arrived. */
export async function startApi({ issuer, jwksUrl, audience, requiredScope = 'read:things', port: wanted = 0 }) {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const seen = [];
  const aborted = [];
  const jtis = new Set();
  const revoked = new Set();
  const proofJtis = new Set();
  // DPoP nonces (RFC 9449 §9): off until requireNonce(); `accepted` holds the current one and,
  // during a graceful rotation, the previous one.
  const dpop = { required: false, current: null, accepted: [], failNext: false };
  const newNonce = () => crypto.randomBytes(16).toString('base64url');
  let origin;
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    try {
      for await (const c of req) chunks.push(c);
    } catch {
      // The sender broke off mid-body (as the proxy does past its size limit): nothing to serve.
      aborted.push({ method: req.method, url: req.url });
      return;
    }
    const body = Buffer.concat(chunks);
    const record = { method: req.method, url: req.url, headers: req.headers, bodyLength: body.length };
    seen.push(record);
    const reply = (status, obj) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-demo-api': 'yes' });
      res.end(JSON.stringify(obj));
    };
    const auth = req.headers.authorization ?? '';
    const m = /^(Bearer|DPoP) ([A-Za-z0-9._~+/-]+=*)$/.exec(auth);
    if (!m) return reply(401, { error: 'invalid_token', error_description: 'missing bearer token' });
    const [, scheme, token] = m;
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(token, jwks, { issuer, audience, typ: 'at+jwt' }));
    } catch (e) {
      return reply(401, { error: 'invalid_token', error_description: e.code ?? 'verification failed' });
    }
    jtis.add(claims.jti);
    const jkt = claims.cnf?.jkt;
    if (jkt) {
      // A bound token as Bearer, or without a good proof, is refused (RFC 9449 §7.1).
      if (dpop.required && dpop.current) res.setHeader('dpop-nonce', dpop.current);
      const forced = dpop.failNext ? 'refused on purpose by the test' : null;
      dpop.failNext = false;
      const problem = forced ?? (scheme !== 'DPoP'
        ? 'a DPoP-bound token must be sent with the DPoP scheme'
        : await checkProof({
          proof: req.headers.dpop, req, origin, token, jkt, jtis: proofJtis,
          nonces: dpop.required ? dpop.accepted : null,
        }));
      record.dpop = { jkt, problem };
      if (problem === 'use_dpop_nonce') {
        res.setHeader('www-authenticate', 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof", algs="ES256"');
        return reply(401, { error: 'use_dpop_nonce' });
      }
      if (problem) {
        res.setHeader('www-authenticate', `DPoP error="invalid_dpop_proof", algs="ES256"`);
        return reply(401, { error: 'invalid_dpop_proof', error_description: problem });
      }
    } else if (scheme !== 'Bearer') {
      return reply(401, { error: 'invalid_token', error_description: 'not a DPoP-bound token' });
    }
    if (revoked.has(claims.jti)) {
      res.setHeader('www-authenticate', `${scheme} error="invalid_token", error_description="revoked"`);
      return reply(401, { error: 'invalid_token', error_description: 'token revoked' });
    }
    if (!String(claims.scope ?? '').split(' ').includes(requiredScope)) {
      return reply(403, { error: 'insufficient_scope' });
    }
    record.clientId = claims.client_id;
    // `/redirect?status=302&to=<location>`: a redirect, answered only to a good token (an
    // upstream that sends its callers elsewhere).
    if (/^\/redirect(\?|$)/.test(req.url)) {
      const q = new URL(req.url, origin).searchParams;
      res.writeHead(Number(q.get('status') ?? 302), { location: q.get('to') ?? '/', 'content-type': 'application/json' });
      return res.end(JSON.stringify({ redirect: q.get('to') }));
    }
    if (req.url.startsWith('/echo')) {
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
      return res.end(body);
    }
    return reply(200, {
      ok: true,
      client_id: claims.client_id,
      method: req.method,
      url: req.url,
      body_sha256: crypto.createHash('sha256').update(body).digest('hex'),
      body_length: body.length,
    });
  });
  const port = await listen(server, wanted);
  origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    seen,
    aborted,
    /** Revokes every token seen so far: they get 401 invalid_token from now on. */
    revokeAll() { for (const j of jtis) revoked.add(j); },
    /** Requires DPoP nonces from now on, starting with a new one. */
    requireNonce() { dpop.required = true; dpop.current = newNonce(); dpop.accepted = [dpop.current]; },
    /** A new nonce. With `grace`, the old one still passes and every answer announces the new
     *  one in `DPoP-Nonce`; without, the old one gets 401 use_dpop_nonce. */
    rotateNonce({ grace }) {
      const old = dpop.current;
      dpop.current = newNonce();
      dpop.accepted = grace ? [dpop.current, old] : [dpop.current];
      return dpop.current;
    },
    get nonce() { return dpop.current; },
    /** The next DPoP request gets 401 invalid_dpop_proof, whatever its proof. */
    failNextProof() { dpop.failNext = true; },
    /** Back to the defaults: no nonces required, no proof refused on purpose. Revoked tokens
     *  stay revoked (a later test's Workers get new ones). */
    reset() { Object.assign(dpop, { required: false, current: null, accepted: [], failNext: false }); },
    close() { server.closeAllConnections?.(); return new Promise((r) => server.close(r)); },
  };
}

/** A server that must never be reached: it counts whatever arrives. */
export async function startTrap() {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    res.end('trap');
  });
  const port = await listen(server);
  return {
    origin: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, seen,
    close() { server.closeAllConnections?.(); return new Promise((r) => server.close(r)); },
  };
}
