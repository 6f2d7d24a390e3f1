// A demo protected API, as a real resource server: every request must carry a JWT access token
// that the IdP signed (verified against its JWKS), for our audience, with the read scope.
import http from 'node:http';
import crypto from 'node:crypto';
import { createRemoteJWKSet, jwtVerify } from 'jose';

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

/** Starts the API. Every request is recorded; `/echo` returns the request body unchanged,
 *  any other path returns JSON describing what arrived. */
export async function startApi({ issuer, jwksUrl, audience, requiredScope = 'read:things' }) {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const seen = [];
  const aborted = [];
  const jtis = new Set();
  const revoked = new Set();
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
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(auth);
    if (!m) return reply(401, { error: 'invalid_token', error_description: 'missing bearer token' });
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(m[1], jwks, { issuer, audience, typ: 'at+jwt' }));
    } catch (e) {
      return reply(401, { error: 'invalid_token', error_description: e.code ?? 'verification failed' });
    }
    jtis.add(claims.jti);
    if (revoked.has(claims.jti)) {
      res.setHeader('www-authenticate', 'Bearer error="invalid_token", error_description="revoked"');
      return reply(401, { error: 'invalid_token', error_description: 'token revoked' });
    }
    if (!String(claims.scope ?? '').split(' ').includes(requiredScope)) {
      return reply(403, { error: 'insufficient_scope' });
    }
    record.clientId = claims.client_id;
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
  const port = await listen(server);
  return {
    origin: `http://127.0.0.1:${port}`,
    seen,
    aborted,
    /** Revokes every token seen so far: they get 401 invalid_token from now on. */
    revokeAll() { for (const j of jtis) revoked.add(j); },
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
