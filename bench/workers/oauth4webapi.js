// (c) What a user would write instead: oauth4webapi's client credentials grant, a per-isolate
// token cache with a 60 s margin, and one shared in-flight request.
import * as oauth from 'oauth4webapi';

let cached;
let inflight;

async function token(env) {
  const now = Date.now() / 1000;
  if (cached && cached.exp - 60 > now) return cached.value;
  inflight ??= (async () => {
    const as = { issuer: new URL(env.OAUTH_TOKEN_URL).origin, token_endpoint: env.OAUTH_TOKEN_URL };
    const client = { client_id: env.OAUTH_CLIENT_ID };
    const resp = await oauth.clientCredentialsGrantRequest(
      as, client, oauth.ClientSecretBasic(env.OAUTH_CLIENT_SECRET), { scope: env.OAUTH_SCOPE },
      { [oauth.allowInsecureRequests]: true },
    );
    const result = await oauth.processClientCredentialsResponse(as, client, resp);
    cached = { value: result.access_token, exp: Date.now() / 1000 + (result.expires_in ?? 300) };
  })().finally(() => { inflight = undefined; });
  await inflight;
  return cached.value;
}

export default {
  async fetch(req, env) {
    const value = await token(env);
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    headers.set('authorization', `Bearer ${value}`);
    return fetch(env.UPSTREAM_ORIGIN + url.pathname + url.search, {
      method: req.method, headers, body: req.body, redirect: 'manual',
    });
  },
};
