// The proxy's boundary, end to end in workerd: the invariants docs/security.md's threat model promises,
// each checked as a matrix of every way in (entry) × a corpus of hostile inputs, with a GET (the
// hot path) and a POST with a small body (the full path). The entries:
//   default             a caller bound to the default entrypoint without props, path-routed
//                       (`env.PROXY.fetch('https://m2m/billing/...')`);
//   M2M.fetch pinned    the `M2M` entrypoint with `props: { profile: 'billing' }`;
//   M2M.fetch unpinned  the `M2M` entrypoint with `props: {}` (path-routed);
//   M2M.send(...)       `send(undefined, req)` and `send('billing', req)` on the pinned binding
//                       (and `send(undefined, req)` unpinned);
//   route               the proxy called over HTTP with PROXY_SHARED_SECRET set, presenting
//                       `Proxy-Authorization: Bearer <secret>`.
// Two profiles, billing and crm, each with its own API. One caller Worker serves every row: it
// reads the entry, URL, method, headers and body to use from its own request (`?s=<JSON>`).
// A test collects every row that breaks and fails once, listing each as `entry × input: what
// happened`, so a failure says which rows broke and how.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTrap } from './support/api.mjs';
import net from 'node:net';
import { e2eStack } from './support/stack.mjs';
import { twoProfileSettings } from './support/settings.mjs';

/** The route's PROXY_SHARED_SECRET, and billing's own in the test of authorization(). */
const SECRET = 'boundary-route-secret-0123456789';
const BILLING_SECRET = 'boundary-billing-secret-0123456789';

const stack = await e2eStack({
  apis: ['billingApi', 'crmApi'],
  servers: { trap: startTrap },
  secrets: [SECRET, BILLING_SECRET],
  summary: 'boundary token requests',
});
const { idp, billingApi, crmApi, trap, counts } = stack;

function settings(extra = {}) {
  return twoProfileSettings({ idp, billingApi, crmApi, extra });
}

// The caller: `?s={ entry, url, method, headers, body, redirect }` (or `{ entry: 'authorization',
// binding, profile }`). It builds the Request itself (so a non-http URL reaches RPC as it is) and
// answers JSON: `{ status, headers, body }` of what the entry answered, or `{ threw, stage }`
// when building the Request ('request') or the call ('entry') threw.
const CALLER = `
const json = (o) => new Response(JSON.stringify(o), { headers: { 'content-type': 'application/json' } });
const text = (e) => String(e && e.message !== undefined ? e.message : e);
export default {
  async fetch(request, env) {
    const s = JSON.parse(new URL(request.url).searchParams.get('s'));
    if (s.entry === 'authorization') {
      try {
        const value = s.profile === undefined ? await env[s.binding].authorization() : await env[s.binding].authorization(s.profile);
        return json({ value });
      } catch (e) { return json({ threw: text(e), stage: 'entry' }); }
    }
    const init = { method: s.method || 'GET', headers: s.headers || {}, redirect: s.redirect || 'follow' };
    if (s.body !== undefined) init.body = s.body;
    let req;
    try { req = new Request(s.url, init); } catch (e) { return json({ threw: text(e), stage: 'request' }); }
    let r;
    try {
      switch (s.entry) {
        case 'default': r = await env.PROXY.fetch(req); break;
        case 'pinned': r = await env.PINNED.fetch(req); break;
        case 'unpinned': r = await env.FREE.fetch(req); break;
        case 'send': r = await env.PINNED.send(undefined, req); break;
        case 'send-billing': r = await env.PINNED.send('billing', req); break;
        case 'send-unpinned': r = await env.FREE.send(undefined, req); break;
        case 'typo-fetch': r = await env.TYPO.fetch(req); break;
        case 'typo-send': r = await env.TYPO.send(undefined, req); break;
        case 'typo-default': r = await env.TYPO_DEFAULT.fetch(req); break;
        case 'direct': r = await fetch(req); break;
        default: return json({ threw: 'no such entry ' + s.entry, stage: 'harness' });
      }
    } catch (e) { return json({ threw: text(e), stage: 'entry' }); }
    const headers = {};
    for (const [k, v] of r.headers) headers[k] = v;
    return json({ status: r.status, headers, body: await r.text() });
  },
};`;

/** The caller's service bindings: the default entrypoint without props, the M2M entrypoint
 *  pinned, unpinned, and with a misspelled props (on both entrypoints). */
const BINDINGS = {
  PROXY: 'proxy',
  PINNED: { name: 'proxy', entrypoint: 'M2M', props: { profile: 'billing' } },
  FREE: { name: 'proxy', entrypoint: 'M2M', props: {} },
  TYPO: { name: 'proxy', entrypoint: 'M2M', props: { Profile: 'billing' } },
  TYPO_DEFAULT: { name: 'proxy', props: { Profile: 'billing' } },
};

/** The bound entries: the caller's `entry`, the base a path is appended to (path-routed entries
 *  name billing in the path, pinned ones do not), and whether the binding is pinned. */
const BOUND = [
  { name: 'default', entry: 'default', base: 'https://m2m/billing', pinned: false },
  { name: 'M2M.fetch pinned', entry: 'pinned', base: 'https://m2m', pinned: true },
  { name: 'M2M.fetch unpinned', entry: 'unpinned', base: 'https://m2m/billing', pinned: false },
  { name: 'M2M.send(undefined) pinned', entry: 'send', base: 'https://m2m', pinned: true, rpc: true },
  { name: "M2M.send('billing') pinned", entry: 'send-billing', base: 'https://m2m', pinned: true, rpc: true },
  { name: 'M2M.send(undefined) unpinned', entry: 'send-unpinned', base: 'https://m2m/billing', pinned: false, rpc: true },
];
const PINNED = BOUND.filter((e) => e.pinned);

const METHODS = [
  { method: 'GET' },
  { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain' } },
];

const auth = (secret = SECRET) => ({ 'proxy-authorization': `Bearer ${secret}` });

/** The proxy with the caller bound to it (no shared secret): the bound entries. */
let boundWorker;
async function bound() {
  boundWorker ??= await stack.worker({
    bindings: settings({ PROXY_FORWARD_HEADERS: 'X_Custom_Ok' }),
    caller: CALLER,
    callerBindings: BINDINGS,
  });
  return boundWorker;
}

/** The proxy exposed over HTTP with PROXY_SHARED_SECRET (and a third, broken profile), and a
 *  caller whose `direct` entry is a plain fetch (a route caller on the network). */
let routeWorker;
async function route() {
  routeWorker ??= await stack.worker({
    bindings: settings({ M2M_PROFILES: 'billing, crm, broken', PROXY_SHARED_SECRET: SECRET, PROXY_FORWARD_HEADERS: 'X_Custom_Ok' }),
    port: 0,
    caller: CALLER,
    callerBindings: BINDINGS,
  });
  return routeWorker;
}

/** One call through the caller: its JSON answer (a harness error if it has none). */
async function viaCaller(w, spec) {
  const r = await w.callerFetch(`/?s=${encodeURIComponent(JSON.stringify(spec))}`);
  const txt = await r.text();
  let out;
  try { out = JSON.parse(txt); } catch { throw new Error(`the caller answered ${r.status}: ${txt.slice(0, 300)}`); }
  if (out.stage === 'harness') throw new Error(out.threw);
  return withJson(out);
}

/** One call over HTTP to the proxy (the route): redirects are not followed. */
async function viaRoute(w, path, { method = 'GET', body, headers = {}, secret = SECRET } = {}) {
  const r = await w.fetch(path, { method, body, redirect: 'manual', headers: { ...(secret ? auth(secret) : {}), ...headers } });
  return withJson({ status: r.status, headers: Object.fromEntries(r.headers), body: await r.text() });
}

/** One HTTP/1.1 exchange written byte for byte (a request-target as it is on the wire): resolves
 *  with the answer as soon as it is complete. (workerd keeps the connection open for a few
 *  seconds after a chunked answer despite `Connection: close`, so the end of the answer, not the
 *  end of the connection, ends the exchange.) */
function exchange(port, text) {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const sock = net.connect(port, '127.0.0.1', () => sock.write(text));
    const finish = () => { sock.destroy(); resolve(data.toString('latin1')); };
    sock.on('data', (d) => {
      data = Buffer.concat([data, d]);
      const all = data.toString('latin1');
      const i = all.indexOf('\r\n\r\n');
      if (i < 0) return;
      const head = all.slice(0, i);
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      if (length && data.length - (i + 4) >= Number(length[1])) finish();
      else if (/\r\ntransfer-encoding: *chunked/i.test(head) && all.endsWith('0\r\n\r\n')) finish();
    });
    sock.on('end', () => resolve(data.toString('latin1')));
    sock.on('error', reject);
    sock.setTimeout(15000, () => { sock.destroy(); reject(new Error('socket timeout')); });
  });
}

/** One request written byte for byte to the route: the status, head and body of the answer. */
async function viaRaw(w, target, { method = 'GET', body = '', secret = SECRET } = {}) {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: proxy.internal', 'Connection: close'];
  if (secret) lines.push(`Proxy-Authorization: Bearer ${secret}`);
  if (method !== 'GET') lines.push('Content-Type: text/plain', `Content-Length: ${Buffer.byteLength(body)}`);
  const answer = await exchange(w.port, `${lines.join('\r\n')}\r\n\r\n${body}`);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
  const i = answer.indexOf('\r\n\r\n');
  return withJson({ status, head: answer.slice(0, i), body: i >= 0 ? answer.slice(i + 4) : '' });
}

/** workerd's own answer to a request-target it cannot parse, before any Worker runs: a plain
 *  400 `invalid URI` (a plain 500 for any absolute-form target, in releases before late 2026). */
const runtimeRefusal = (o) => (o.status === 500 && o.body === 'Internal Server Error')
  || (o.status === 400 && o.body === 'invalid URI');

function withJson(out) {
  if (typeof out.body === 'string') {
    try { out.json = JSON.parse(out.body); } catch { out.json = undefined; }
  }
  return out;
}

/** Runs `fn` and adds what it caused: the requests each API and the trap received, and the
 *  token requests. */
async function observe(fn) {
  const before = { billing: billingApi.seen.length, crm: crmApi.seen.length, trap: trap.seen.length, tokens: idp.tokenRequests };
  const out = await fn();
  out.reached = [
    ...billingApi.seen.slice(before.billing).map((s) => ({ api: 'billing', ...s })),
    ...crmApi.seen.slice(before.crm).map((s) => ({ api: 'crm', ...s })),
    ...trap.seen.slice(before.trap).map((s) => ({ api: 'trap', ...s })),
  ];
  out.tokens = idp.tokenRequests - before.tokens;
  return out;
}

/** What happened, in a few words: `200; crm got GET /v2/contacts; 1 token request`. */
function told(o) {
  const parts = [o.threw !== undefined ? `threw (${o.stage}): ${o.threw.slice(0, 160)}` : `${o.status}`];
  if (o.json?.error) parts[0] += ` ${o.json.error}${o.json.error_description ? ` (${o.json.error_description.slice(0, 100)})` : ''}`;
  for (const r of o.reached ?? []) {
    const carried = r.headers['proxy-authorization'] !== undefined ? ' with Proxy-Authorization' : '';
    parts.push(`${r.api} got ${r.method ?? ''} ${r.url}${carried}`.replace('  ', ' '));
  }
  if (o.tokens) parts.push(`${o.tokens} token request(s)`);
  return parts.join('; ');
}

/** The rows of one invariant. `row(entry, input, problems, o)`: the row holds when `problems`
 *  is empty; `done()` fails once, listing every row that broke. */
function matrix(invariant) {
  const broke = [];
  const notes = [];
  let rows = 0;
  return {
    row(entry, input, problems, o) {
      rows += 1;
      const list = problems.filter(Boolean);
      if (list.length) broke.push(`${entry} × ${input}: ${list.join(', ')} [${told(o)}]`);
    },
    note(text) { notes.push(text); },
    get notes() { return notes; },
    done(t) {
      for (const n of notes) t.diagnostic(n);
      t.diagnostic(`${invariant}: ${rows - broke.length} of ${rows} rows hold`);
      assert.ok(broke.length === 0, `${invariant}: ${broke.length} of ${rows} rows broke:\n  ${broke.join('\n  ')}`);
    },
  };
}

const methodName = (m) => (m.body ? `POST+body` : m.method);

/** What workerd does itself with a non-http URL given to a binding's `fetch()`, before the proxy
 *  runs: it throws `Fetch API cannot load: <url>`, or, for a `data:` URL, answers the data
 *  itself without calling the binding. */
function platformAnswered(o, url) {
  if (o.threw !== undefined) return o.stage === 'entry' && o.threw.startsWith('Fetch API cannot load');
  // (A GET gets the payload, a POST an empty body; either way the data: URL's own content type.)
  return url.startsWith('data:') && o.status === 200 && o.reached.length === 0
    && [url.slice(url.indexOf(',') + 1), ''].includes(o.body) && /^text\/plain;charset=US-ASCII/i.test(o.headers['content-type'] ?? '');
}

// --- A. http: and https: only ----------------------------------------------------------------

/** Request URLs whose scheme is neither http: nor https:. Several hide a profile after a `://`
 *  inside their path (the review's H1); `m2m://<trap>/billing/x` names another host. */
const SCHEMES = () => [
  'm2m:/x://h/crm/v2/contacts',
  'm2m:x://h/crm/v2/contacts',
  'M2M:/billing/x://h/crm/things',
  'm2m://h/crm/things',
  `m2m://${trap.host}/billing/x`,
  'data:,x://h/crm/things',
  'urn:x://h/crm/things',
  'blob:https://h/crm/x',
  'about:x://h/crm/things',
  'javascript:x://h/crm/things',
  'x-custom+scheme://h/crm/things',
  'ftp://h/crm/things',
  'file:///crm/things',
  'ws://m2m/crm/things',
  'wss://m2m/billing/things',
];

test('boundary A: only http: and https: request URLs are accepted, on every entry (400 invalid_request, no token, no API reached)', async (t) => {
  const w = await bound();
  const r = await route();
  const m = matrix('A');
  const holds = (o) => [
    o.status !== 400 && `status ${o.status ?? '-'}, not 400`,
    o.status === 400 && o.json?.error !== 'invalid_request' && `error ${o.json?.error}, not invalid_request`,
    o.reached.length > 0 && `reached ${o.reached.map((x) => x.api).join(', ')}`,
    o.tokens > 0 && 'a token was requested',
  ];
  const untouched = (o) => [o.reached.length > 0 && `reached ${o.reached.map((x) => x.api).join(', ')}`, o.tokens > 0 && 'a token was requested'];
  for (const e of BOUND) {
    for (const url of SCHEMES()) {
      for (const meth of METHODS) {
        const o = await observe(() => viaCaller(w, { entry: e.entry, url, ...meth }));
        const input = `${methodName(meth)} ${url}`;
        if (o.threw !== undefined && o.stage === 'request') {
          m.note(`A: ${e.name} × ${input}: workerd's Request constructor refuses it (${o.threw}); row n/a`);
          m.row(e.name, input, untouched(o), o);
        } else if (!e.rpc && platformAnswered(o, url)) {
          m.note(`A: ${e.name} × ${input}: workerd's fetch() ${o.threw !== undefined ? `throws (${o.threw})` : 'answers the data: URL itself'}, the proxy never runs; row n/a`);
          m.row(e.name, input, untouched(o), o);
        } else {
          m.row(e.name, input, holds(o), o);
        }
      }
    }
  }
  // The route: over HTTP a client sends a request-target; an absolute-form target with another
  // scheme must be refused the same way, or never reach the proxy as such. workerd refuses one
  // it cannot parse before any Worker runs. One it can parse reaches the Worker re-based on the
  // Host header, `http://<Host><path>` (workerd since late 2026: the target's scheme and
  // authority are dropped by the runtime), so the proxy sees exactly what the origin-form
  // target `<path>` gives it: that row must come out the same, and never reach another host.
  for (const url of SCHEMES()) {
    for (const meth of METHODS) {
      const o = await observe(() => viaRaw(r, url, meth));
      const input = `${methodName(meth)} ${url}`;
      if (runtimeRefusal(o)) {
        m.note(`A: route × ${input}: workerd answers ${o.status} to the absolute-form target before any Worker runs; row n/a`);
        m.row('route', input, untouched(o), o);
      } else if (o.json?.error === undefined && o.reached.length > 0) {
        const { pathname, search } = new URL(url);
        const ref = await observe(() => viaRaw(r, `${pathname}${search}`, meth));
        const seen = (x) => x.reached.map((a) => `${a.api} ${a.method} ${a.url}`).join(', ');
        m.note(`A: route × ${input}: workerd re-bases it on Host, as ${pathname}${search}`);
        m.row('route', input, [
          o.status !== ref.status && `status ${o.status}, not ${ref.status} as for ${pathname}${search}`,
          seen(o) !== seen(ref) && `reached ${seen(o)}, not ${seen(ref)} as for ${pathname}${search}`,
          o.reached.some((a) => a.api === 'trap') && 'reached another host',
        ], o);
      } else {
        m.row('route', input, holds(o), o);
      }
    }
  }
  counts.A = idp.tokenRequests;
  m.done(t);
});

// --- B and C. The profile and the host ---------------------------------------------------------

/** http(s) URLs that try to leave billing: dot segments raw and encoded, encoded slashes, other
 *  authorities (`//`, `\\`, `@`, absolute), fragments, queries, case and encoding of `crm`. */
const HTTP_URLS = () => [
  'https://m2m/crm/things',
  'http://m2m/crm/things',
  'https://m2m/../crm/things',
  'https://m2m/x/../../crm/things',
  'https://m2m/%2e%2e/crm/things',
  'https://m2m/%2E%2E/%2e%2e/crm/things',
  'https://m2m/..%2Fcrm/things',
  'https://m2m/%2Fcrm/things',
  'https://m2m/%2F%2Fevil.example/crm/things',
  'https://m2m/crm%2Fthings',
  'https://m2m//evil.example/crm/things',
  'https://m2m/\\evil.example/crm/things',
  'https://m2m/@evil.example/crm/things',
  'https://user@evil.example/crm/things',
  'https://evil.example/crm/x',
  'https://m2m/things#/../../crm/things',
  'https://m2m/things?/../crm/things',
  'https://m2m/CRM/things',
  'https://m2m/%63rm/things',
  'https://m2m/billing/../crm/things',
  'https://m2m/http://evil.example/crm/things',
  'https://m2m/x://h/crm/things',
  `http://${trap.host}/crm/x`,
  `https://m2m//${trap.host}/crm/x`,
  `https://m2m/http://${trap.host}/crm/x`,
];

test('boundary B: a pinned caller reaches only its profile (crm never reached; billing gets an ordinary path)', async (t) => {
  const w = await bound();
  const m = matrix('B');
  for (const e of PINNED) {
    for (const url of HTTP_URLS()) {
      for (const meth of METHODS) {
        const o = await observe(() => viaCaller(w, { entry: e.entry, url, ...meth }));
        const billing = o.reached.filter((x) => x.api === 'billing');
        m.row(e.name, `${methodName(meth)} ${url}`, [
          o.reached.some((x) => x.api === 'crm') && 'crm was reached',
          o.reached.some((x) => x.api === 'trap') && 'another host was reached',
          billing.some((x) => !x.url.startsWith('/')) && 'billing got something that is not an ordinary path',
          o.threw !== undefined && 'the call threw',
          o.status !== undefined && ![200, 400, 404].includes(o.status) && `status ${o.status}`,
        ], o);
      }
    }
  }
  counts.B = idp.tokenRequests;
  m.done(t);
});

/** Request-targets for the route, written as they are on the wire (origin-form and absolute-form). */
const ROUTE_TARGETS = () => [
  '/billing/things',
  '/billing/../crm/things',
  '/billing/%2e%2e/crm/things',
  '/billing//evil.example/x',
  '//evil.example/billing/x',
  `//${trap.host}/billing/x`,
  `/billing//${trap.host}/x`,
  `/billing/http://${trap.host}/x`,
  `/billing/@${trap.host}/x`,
  `/billing/%2F%2F${trap.host}/x`,
  '/billing/\\evil.example/x',
  `http://${trap.host}/billing/x`,
  'https://evil.example/billing/x',
];

test("boundary C: every request goes only to its profile's UPSTREAM_ORIGIN (the path never changes the host)", async (t) => {
  const w = await bound();
  const r = await route();
  const m = matrix('C');
  const hosts = { billing: new URL(billingApi.origin).host, crm: new URL(crmApi.origin).host };
  const holds = (o) => [
    o.reached.some((x) => x.api === 'trap') && 'another host was reached',
    o.reached.length > 1 && `${o.reached.length} requests left the proxy`,
    o.reached.some((x) => x.api !== 'trap' && x.headers.host !== hosts[x.api]) && 'an API got another Host',
    o.reached.some((x) => !x.url.startsWith('/')) && 'an API got a request-target that is not a path',
  ];
  for (const e of BOUND) {
    for (const url of HTTP_URLS()) {
      for (const meth of METHODS) {
        const o = await observe(() => viaCaller(w, { entry: e.entry, url, ...meth }));
        m.row(e.name, `${methodName(meth)} ${url}`, holds(o), o);
      }
    }
  }
  for (const target of ROUTE_TARGETS()) {
    for (const meth of METHODS) {
      const o = await observe(() => viaRaw(r, target, meth));
      m.row('route', `${methodName(meth)} ${target}`, holds(o), o);
    }
  }
  counts.C = idp.tokenRequests;
  m.done(t);
});

// --- D. Headers ---------------------------------------------------------------------------------

/** Headers of every dropped class, in other spellings: case variants, `_` for `-`, and the Kong
 *  names. An underscore name not listed in PROXY_FORWARD_HEADERS is dropped too. */
const DROPPED = Object.fromEntries([
  'X-FORWARDED-FOR', 'Remote-USER', 'x-Auth-Request-Email', 'CF-Connecting-IP',
  'X-Forwarded_For', 'X_Forwarded_Host', 'X_Forwarded_User', 'X-Real_Ip', 'True_Client_IP',
  'Remote_User', 'X_Auth_Request_Email', 'X-HTTP-Method_Override', 'X_HTTP_METHOD',
  'X-Original_URL', 'Cf_Connecting_Ip', 'Cf_Access_Jwt_Assertion', 'X_Consumer_Username',
  'Proxy_Authorization', 'X-Authenticated-Groups', 'X-Anonymous-Consumer', 'X_Custom_Not',
// Each its own value, so that a header that arrives is told apart from its other spellings.
].map((name, i) => [name, `boundary-${i}-admin`]));
/** Headers that must pass: ordinary ones, and an underscore name PROXY_FORWARD_HEADERS lists. */
const KEPT = { accept: 'application/json', 'x-request-id': 'boundary-1', 'X_Custom_Ok': 'listed' };

const spelling = (name) => name.toLowerCase().replace(/_/g, '-');

test('boundary D: no header of a dropped class arrives in any spelling; a listed underscore name and ordinary headers do', async (t) => {
  const w = await bound();
  const r = await route();
  const m = matrix('D');
  const headers = { ...DROPPED, ...KEPT };
  const check = (entry, meth, o) => {
    const arrived = o.reached.filter((x) => x.api === 'billing');
    if (arrived.length !== 1) {
      m.row(entry, `${methodName(meth)} (the request)`, [`billing got ${arrived.length} requests`, o.status !== 200 && `status ${o.status}`], o);
      return;
    }
    const got = arrived[0].headers;
    for (const name of Object.keys(DROPPED)) {
      const leaked = Object.keys(got).filter((k) => spelling(k) === spelling(name) && got[k] === DROPPED[name]);
      m.row(entry, `${methodName(meth)} ${name}`, [leaked.length > 0 && `arrived as ${leaked.join(', ')}`], o);
    }
    for (const [name, value] of Object.entries(KEPT)) {
      m.row(entry, `${methodName(meth)} ${name}`, [got[name.toLowerCase()] !== value && `did not arrive (${got[name.toLowerCase()]})`], o);
    }
    m.row(entry, `${methodName(meth)} Authorization`, [!/^Bearer eyJ/.test(got.authorization ?? '') && 'the proxy\'s token is missing'], o);
  };
  for (const e of BOUND) {
    for (const meth of METHODS) {
      const url = `${e.base}/things`;
      const o = await observe(() => viaCaller(w, { entry: e.entry, url, ...meth, headers: { ...meth.headers, ...headers } }));
      check(e.name, meth, o);
    }
  }
  for (const meth of METHODS) {
    const o = await observe(() => viaRoute(r, '/billing/things', { ...meth, headers: { ...meth.headers, ...headers } }));
    check('route', meth, o);
  }
  counts.D = idp.tokenRequests;
  m.done(t);
});

// --- E. The shared secret -----------------------------------------------------------------------

test('boundary E: without the shared secret every path gets the same 401 (known, unknown, broken profile, /)', async (t) => {
  const r = await route();
  const m = matrix('E 401');
  const presented = [
    ['no Proxy-Authorization', {}],
    ['a wrong secret', auth('wrong-secret-0123456789abcdef')],
    ['an empty Bearer', { 'proxy-authorization': 'Bearer ' }],
    ['Basic', { 'proxy-authorization': `Basic ${Buffer.from(`x:${SECRET}`).toString('base64')}` }],
  ];
  let first;
  for (const path of ['/billing/things', '/crm/things', '/hr/things', '/broken/things', '/', '/BILLING/x']) {
    for (const meth of METHODS) {
      for (const [what, headers] of presented) {
        const o = await observe(() => viaRoute(r, path, { ...meth, headers: { ...meth.headers, ...headers }, secret: null }));
        first ??= o;
        m.row('route', `${methodName(meth)} ${path} with ${what}`, [
          o.status !== 401 && `status ${o.status}`,
          o.body !== first.body && `another body: ${o.body.slice(0, 120)}`,
          o.reached.length > 0 && 'an API was reached',
          o.tokens > 0 && 'a token was requested',
        ], o);
      }
    }
  }
  m.done(t);
});

test('boundary E: a blank, short or empty PROXY_SHARED_SECRET is a configuration error naming it, never an open door', async (t) => {
  const m = matrix('E configuration');
  const store = { M2M_SHARED: { store_id: 'e2e-boundary-store', secret_name: 'boundary-shared' } };
  const cases = [
    { what: "PROXY_SHARED_SECRET '\\n'", extra: { PROXY_SHARED_SECRET: '\n' }, names: { billing: /PROXY_SHARED_SECRET/, crm: /PROXY_SHARED_SECRET/ } },
    { what: "PROXY_SHARED_SECRET '   '", extra: { PROXY_SHARED_SECRET: '   ' }, names: { billing: /PROXY_SHARED_SECRET/, crm: /PROXY_SHARED_SECRET/ } },
    { what: 'PROXY_SHARED_SECRET of 15 characters', extra: { PROXY_SHARED_SECRET: 'fifteen-chars!!' }, names: { billing: /PROXY_SHARED_SECRET/, crm: /PROXY_SHARED_SECRET/ } },
    {
      what: "BILLING_PROXY_SHARED_SECRET '\\n', CRM_PROXY_SHARED_SECRET of 12 characters",
      extra: { BILLING_PROXY_SHARED_SECRET: '\n', CRM_PROXY_SHARED_SECRET: 'short-secret' },
      names: { billing: /BILLING_PROXY_SHARED_SECRET/, crm: /CRM_PROXY_SHARED_SECRET/ },
    },
    { what: "an empty Secrets Store value (PROXY_SHARED_SECRET 'secrets-store:M2M_SHARED')", extra: { PROXY_SHARED_SECRET: 'secrets-store:M2M_SHARED' }, store: true },
  ];
  for (const c of cases) {
    const w = await stack.worker({
      bindings: settings(c.extra),
      caller: CALLER,
      callerBindings: { PROXY: 'proxy' },
      ...(c.store ? { secretsStore: store } : {}),
    });
    if (c.store) await w.secret('M2M_SHARED', '');
    for (const profile of ['billing', 'crm']) {
      for (const meth of METHODS) {
        const calls = [
          ['route, no Proxy-Authorization', () => viaRoute(w, `/${profile}/things`, { ...meth, secret: null })],
          ["route, 'Bearer '", () => viaRoute(w, `/${profile}/things`, { ...meth, headers: { ...meth.headers, 'proxy-authorization': 'Bearer ' }, secret: null })],
          ['default binding', () => viaCaller(w, { entry: 'default', url: `https://m2m/${profile}/things`, ...meth })],
        ];
        for (const [entry, call] of calls) {
          const o = await observe(call);
          // The Worker's own broken secret is the same 500 on every path; a profile's own is
          // hidden behind the uniform 401 (an unauthenticated caller must not tell profiles
          // apart), and named in the log.
          const ownSecret = c.extra.PROXY_SHARED_SECRET === undefined;
          const problems = c.store
            ? [![500, 401].includes(o.status) && `status ${o.status}, not 500 or 401`]
            : ownSecret
              ? [
                o.status !== 401 && `status ${o.status}, not the uniform 401`,
                !w.logs.some((l) => c.names[profile].test(l) && /configuration_error/.test(l)) && `no log line names ${c.names[profile].source}`,
              ]
              : [
              o.status !== 500 && `status ${o.status}, not 500`,
              o.status === 500 && o.json?.error !== 'configuration_error' && `error ${o.json?.error}`,
              o.status === 500 && !c.names[profile].test(o.json?.error_description ?? '') && `the description does not name ${c.names[profile].source}`,
            ];
          problems.push(o.reached.length > 0 && 'an API was reached', o.tokens > 0 && 'a token was requested');
          m.row(entry, `${c.what}; ${methodName(meth)} /${profile}/things`, problems, o);
        }
      }
    }
  }
  m.done(t);
});

// --- F. Redirects -------------------------------------------------------------------------------

const redirectPath = (status, to) => `/redirect?status=${status}&to=${encodeURIComponent(to)}`;

test('boundary F: an upstream redirect comes back with a Location that stays in its profile, or with none for another origin', async (t) => {
  const w = await bound();
  const r = await route();
  const m = matrix('F Location');
  const cases = () => [
    { to: '/crm/acct/9', routed: '/billing/crm/acct/9', pinned: '/crm/acct/9' },
    { to: `${billingApi.origin}/x`, routed: '/billing/x' },
    { to: 'https://evil.example/x', cross: true },
    { to: `${crmApi.origin}/acct/9`, cross: true },
    { to: '//evil.example/x', cross: true },
  ];
  const check = (entry, routed, base, c, status, o) => {
    const loc = o.headers?.location;
    const input = `${status} Location: ${c.to}`;
    const common = [o.reached.some((x) => x.api !== 'billing') && 'followed to another API', o.threw !== undefined && 'the call threw'];
    if (o.status !== status) return m.row(entry, input, [`status ${o.status}, not ${status}`, ...common], o);
    if (!routed) {
      if (c.pinned === undefined) return undefined;
      return m.row(entry, input, [loc !== c.pinned && `Location ${loc}, not ${c.pinned}`, ...common], o);
    }
    if (c.cross) {
      return m.row(entry, input, [
        loc !== undefined && `Location ${loc} came back`,
        o.headers['x-upstream-location'] !== c.to && `X-Upstream-Location ${o.headers['x-upstream-location']}`,
        ...common,
      ], o);
    }
    const path = loc === undefined ? undefined : new URL(loc, base).pathname;
    return m.row(entry, input, [path !== c.routed && `Location ${loc}, not ${c.routed}`, ...common], o);
  };
  for (const status of [302, 307]) {
    for (const c of cases()) {
      for (const e of BOUND) {
        const url = `${e.base}${redirectPath(status, c.to)}`;
        const o = await observe(() => viaCaller(w, { entry: e.entry, url, redirect: 'manual' }));
        check(e.name, !e.pinned, url, c, status, o);
      }
      const path = `/billing${redirectPath(status, c.to)}`;
      const o = await observe(() => viaRoute(r, path));
      check('route', true, new URL(path, 'http://proxy.internal').href, c, status, o);
    }
  }
  m.done(t);
});

/** Locations an upstream may send to push a follower into another profile or host. */
const HOSTILE_LOCATIONS = () => [
  '/crm/acct/9',
  '/../crm/acct/9',
  '/%2e%2e/crm/acct/9',
  '/%2E%2E/crm/acct/9',
  '/x/../../crm/acct/9',
  '../crm/acct/9',
  '/billing/../crm/acct/9',
  'https://anything.example/crm/acct/9',
  `${crmApi.origin}/acct/9`,
  `${billingApi.origin}/../crm/acct/9`,
  '\\\\evil.example/crm/acct/9',
  `${trap.origin}/crm/x`,
  `//${trap.host}/x`,
];

test('boundary F: a caller that follows redirects (redirect: follow) never reaches another profile or host', async (t) => {
  const w = await bound();
  const r = await route();
  const m = matrix('F follow');
  const followers = [
    ...BOUND.filter((e) => !e.rpc).map((e) => ({ name: e.name, spec: (path, meth) => ({ entry: e.entry, url: `${e.base}${path}`, ...meth }) })),
    {
      name: 'route (a Worker fetching the exposed proxy)',
      spec: (path, meth) => ({ entry: 'direct', url: new URL(`billing${path}`, r.url).href, ...meth, headers: { ...meth.headers, ...auth() } }),
    },
  ];
  for (const status of [302, 307]) {
    for (const to of HOSTILE_LOCATIONS()) {
      for (const meth of METHODS) {
        for (const f of followers) {
          const caller = f.name.startsWith('route') ? r : w;
          const o = await observe(() => viaCaller(caller, f.spec(redirectPath(status, to), meth)));
          m.row(f.name, `${methodName(meth)} ${status} Location: ${to}`, [
            o.reached.some((x) => x.api === 'crm') && 'crm was reached',
            o.reached.some((x) => x.api === 'trap') && 'another host was reached',
          ], o);
        }
      }
    }
  }
  m.done(t);
});

test('boundary F: a route caller following a cross-origin redirect never sends Proxy-Authorization anywhere but the proxy', async (t) => {
  const r = await route();
  const m = matrix('F Proxy-Authorization');
  for (const status of [302, 307, 308]) {
    for (const to of [`${trap.origin}/x`, `http://${trap.host}/billing/x`]) {
      for (const meth of METHODS) {
        const url = new URL(`billing${redirectPath(status, to)}`, r.url).href;
        const o = await observe(() => viaCaller(r, { entry: 'direct', url, ...meth, headers: { ...meth.headers, ...auth() } }));
        const carried = o.reached.filter((x) => x.api === 'trap' && x.headers['proxy-authorization'] !== undefined);
        m.row('route (a Worker fetching the exposed proxy)', `${methodName(meth)} ${status} Location: ${to}`, [
          carried.length > 0 && `the trap got Proxy-Authorization: ${carried[0].headers['proxy-authorization'] === `Bearer ${SECRET}` ? 'the shared secret' : 'something'}`,
        ], o);
      }
    }
  }
  m.done(t);
});

// --- G, H, I. RPC guards, props, settings ---------------------------------------------------------

test("boundary G: authorization() on a profile guarded by its own PROXY_SHARED_SECRET is refused, pinned or not (no token handed out)", async (t) => {
  const w = await stack.worker({
    bindings: settings({ BILLING_PROXY_SHARED_SECRET: BILLING_SECRET, BILLING_PROXY_EXPOSE_AUTHORIZATION: 'true' }),
    caller: CALLER,
    callerBindings: BINDINGS,
  });
  const m = matrix('G');
  const calls = [
    ['M2M.authorization() pinned', { entry: 'authorization', binding: 'PINNED' }],
    ["M2M.authorization('billing') pinned", { entry: 'authorization', binding: 'PINNED', profile: 'billing' }],
    ["M2M.authorization('billing') unpinned", { entry: 'authorization', binding: 'FREE', profile: 'billing' }],
  ];
  for (const [entry, spec] of calls) {
    const o = await observe(() => viaCaller(w, spec));
    m.row(entry, 'billing guarded by BILLING_PROXY_SHARED_SECRET, BILLING_PROXY_EXPOSE_AUTHORIZATION true', [
      o.value !== undefined && `handed out ${/^Bearer eyJ/.test(o.value) ? 'a Bearer token' : 'a value'}`,
      o.threw !== undefined && !/PROXY_SHARED_SECRET/.test(o.threw) && `refused without naming PROXY_SHARED_SECRET: ${o.threw}`,
      o.tokens > 0 && 'a token was requested',
    ], { ...o, status: o.value !== undefined ? 'value' : undefined });
  }
  m.done(t);
});

test('boundary H: a props without a profile string is a configuration error naming props; props: {} stays unpinned', async (t) => {
  const w = await bound();
  const m = matrix('H');
  const typos = [
    ["M2M.fetch, props { Profile: 'billing' }", 'typo-fetch'],
    ["M2M.send(undefined), props { Profile: 'billing' }", 'typo-send'],
    ["default fetch, props { Profile: 'billing' }", 'typo-default'],
  ];
  for (const [entry, name] of typos) {
    for (const meth of METHODS) {
      const url = 'https://m2m/crm/things';
      const o = await observe(() => viaCaller(w, { entry: name, url, ...meth }));
      m.row(entry, `${methodName(meth)} ${url}`, [
        o.status !== 500 && `status ${o.status}, not 500`,
        o.status === 500 && o.json?.error !== 'configuration_error' && `error ${o.json?.error}`,
        o.status === 500 && !/^props/.test(o.json?.error_description ?? '') && `description ${o.json?.error_description}`,
        o.reached.length > 0 && `reached ${o.reached.map((x) => x.api).join(', ')}`,
      ], o);
    }
  }
  for (const [entry, name] of [['M2M.fetch, props {}', 'unpinned'], ['M2M.send(undefined), props {}', 'send-unpinned']]) {
    for (const meth of METHODS) {
      const url = 'https://m2m/crm/things';
      const o = await observe(() => viaCaller(w, { entry: name, url, ...meth }));
      m.row(entry, `${methodName(meth)} ${url}`, [
        o.status !== 200 && `status ${o.status}`,
        !(o.reached.length === 1 && o.reached[0].api === 'crm' && o.reached[0].url === '/things') && 'crm did not get /things',
      ], o);
    }
  }
  m.done(t);
});

test("boundary I: an unprefixed PROXY_EXPOSE_AUTHORIZATION 'false' next to M2M_PROFILES leaves every profile working", async (t) => {
  const w = await stack.worker({
    bindings: settings({ PROXY_EXPOSE_AUTHORIZATION: 'false' }),
    caller: CALLER,
    callerBindings: BINDINGS,
  });
  const m = matrix('I');
  for (const profile of ['billing', 'crm']) {
    for (const meth of METHODS) {
      const calls = [
        ['route', () => viaRoute(w, `/${profile}/things`, { ...meth, secret: null })],
        ['default', () => viaCaller(w, { entry: 'default', url: `https://m2m/${profile}/things`, ...meth })],
        ...(profile === 'billing' ? [['M2M.fetch pinned', () => viaCaller(w, { entry: 'pinned', url: 'https://m2m/things', ...meth })]] : []),
      ];
      for (const [entry, call] of calls) {
        const o = await observe(call);
        m.row(entry, `${methodName(meth)} /${profile}/things`, [
          o.status !== 200 && `status ${o.status}`,
          o.status === 200 && !o.reached.some((x) => x.api === profile) && `${profile}'s API was not reached`,
        ], o);
      }
    }
  }
  m.done(t);
});
