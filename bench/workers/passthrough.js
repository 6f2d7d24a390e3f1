// (a) The physical limit: forwards to the upstream with no authentication at all.
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    return fetch(env.UPSTREAM_ORIGIN + url.pathname + url.search, {
      method: req.method, headers: req.headers, body: req.body, redirect: 'manual',
    });
  },
};
