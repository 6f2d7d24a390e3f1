// (d) The naive approach: read the token from KV on every request, fetch and store on a miss.
export default {
  async fetch(req, env) {
    let value = await env.TOKEN_CACHE.get('token');
    if (!value) {
      const resp = await fetch(env.OAUTH_TOKEN_URL, {
        method: 'POST',
        headers: {
          authorization: `Basic ${btoa(`${env.OAUTH_CLIENT_ID}:${env.OAUTH_CLIENT_SECRET}`)}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: `grant_type=client_credentials&scope=${encodeURIComponent(env.OAUTH_SCOPE)}`,
      });
      const json = await resp.json();
      value = json.access_token;
      await env.TOKEN_CACHE.put('token', value, { expirationTtl: Math.max(60, json.expires_in - 60) });
    }
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    headers.set('authorization', `Bearer ${value}`);
    return fetch(env.UPSTREAM_ORIGIN + url.pathname + url.search, {
      method: req.method, headers, body: req.body, redirect: 'manual',
    });
  },
};
