// The Worker's metrics (Workers Analytics Engine, binding M2M_METRICS): four queries, a CLI that
// runs them through the Analytics Engine SQL API, and the same four figures computed from data
// points recorded locally (summarise) so the demo and the tests print what production would.
// Usage: node scripts/metrics.mjs [--since '7' DAY] [--dataset worker_m2m] [tokens|sources|outages|errors ...]
// Needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN (a token with Account Analytics Read).
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

// Both values are pasted into SQL text (the API takes no parameters), so only these shapes pass.
const INTERVAL = /^'(\d+)' (YEAR|MONTH|DAY|HOUR|MINUTE|SECOND)$/;
const DATASET = /^[A-Za-z_][A-Za-z0-9_]*$/;

function scope({ dataset, since }, filter) {
  if (!DATASET.test(dataset)) throw new Error(`dataset must be an SQL identifier, got ${JSON.stringify(dataset)}`);
  if (!INTERVAL.test(since)) throw new Error(`since must look like '7' DAY, got ${JSON.stringify(since)}`);
  return `FROM ${dataset}\nWHERE timestamp > NOW() - INTERVAL ${since} AND ${filter}`;
}

// Rows may be sampled: every count is SUM(_sample_interval * double1), never count().
const COUNT = '_sample_interval * double1';
const HOUR = "toStartOfInterval(timestamp, INTERVAL '1' HOUR) AS hour";

export const QUERIES = {
  // Only a `network` token was minted (and billed); kv and coordinator tokens were reused.
  tokens: (o) => `SELECT ${HOUR}, index1 AS profile, SUM(${COUNT}) AS tokens
${scope(o, "blob1 = 'token' AND blob2 = 'network'")}
GROUP BY hour, profile ORDER BY hour, profile FORMAT JSON`,
  // Isolate rows only: the coordinator's `requests` rows count asks, not callers' requests.
  sources: (o) => `SELECT index1 AS profile, blob2 AS source, SUM(${COUNT}) AS requests
${scope(o, "blob1 = 'requests' AND blob3 = 'isolate'")}
GROUP BY profile, source ORDER BY profile, requests DESC FORMAT JSON`,
  // A fallback or a hold-down is the fleet working around the coordinator or the token endpoint.
  outages: (o) => `SELECT ${HOUR}, index1 AS profile,
  SUM(if(blob1 = 'fallback', ${COUNT}, 0)) AS fallbacks,
  SUM(if(blob1 = 'failure', ${COUNT}, 0)) AS holds,
  max(if(blob1 = 'failure', double4, 0)) AS longest_hold_s
${scope(o, "(blob1 = 'fallback' OR (blob1 = 'failure' AND blob4 = 'held'))")}
GROUP BY hour, profile ORDER BY hour, profile FORMAT JSON`,
  // Status 0: the token endpoint gave no answer (the failure happened before or without one).
  errors: (o) => `SELECT index1 AS profile, blob2 AS error, double3 AS status,
  SUM(${COUNT}) AS failures,
  SUM(if(blob4 = 'held', ${COUNT}, 0)) AS held
${scope(o, "blob1 = 'failure'")}
GROUP BY profile, error, status ORDER BY profile, failures DESC FORMAT JSON`,
};

const TITLES = {
  tokens: 'tokens minted (token requests) per hour',
  sources: 'requests by where their token came from (isolates)',
  outages: 'coordinator fallbacks and hold-downs per hour',
  errors: 'failed token requests by error and token endpoint status',
};

// Local points carry no timestamp and no sampling: weight 1, and all hours are one bucket.
export function summarise(points) {
  const groups = { tokens: new Map(), sources: new Map(), outages: new Map(), errors: new Map() };
  const add = (name, key, init, fold) => {
    const m = groups[name];
    if (!m.has(key)) m.set(key, init());
    fold(m.get(key));
  };
  for (const p of points) {
    const profile = p.indexes?.[0] ?? '';
    const [kind, detail = '', place = '', held = ''] = p.blobs ?? [];
    const d = p.doubles ?? [];
    const n = Number(d[0] ?? 0), status = Number(d[2] ?? 0), secs = Number(d[3] ?? 0);
    if (kind === 'token' && detail === 'network') {
      add('tokens', profile, () => ({ hour: 'this run', profile, tokens: 0 }), (r) => { r.tokens += n; });
    } else if (kind === 'requests' && place === 'isolate') {
      add('sources', `${profile}\0${detail}`, () => ({ profile, source: detail, requests: 0 }), (r) => { r.requests += n; });
    }
    if (kind === 'fallback' || (kind === 'failure' && held === 'held')) {
      add('outages', profile, () => ({ hour: 'this run', profile, fallbacks: 0, holds: 0, longest_hold_s: 0 }), (r) => {
        if (kind === 'fallback') r.fallbacks += n;
        else { r.holds += n; r.longest_hold_s = Math.max(r.longest_hold_s, secs); }
      });
    }
    if (kind === 'failure') {
      add('errors', `${profile}\0${detail}\0${status}`, () => ({ profile, error: detail, status, failures: 0, held: 0 }), (r) => {
        r.failures += n;
        if (held === 'held') r.held += n;
      });
    }
  }
  const by = (...keys) => (a, b) => {
    for (const k of keys) {
      const desc = k.startsWith('-'), f = desc ? k.slice(1) : k;
      const c = a[f] < b[f] ? -1 : a[f] > b[f] ? 1 : 0;
      if (c) return desc ? -c : c;
    }
    return 0;
  };
  const sorted = (name, ...keys) => [...groups[name].values()].sort(by(...keys));
  return {
    tokens: sorted('tokens', 'hour', 'profile'),
    sources: sorted('sources', 'profile', '-requests', 'source'),
    outages: sorted('outages', 'hour', 'profile'),
    errors: sorted('errors', 'profile', '-failures', 'error', 'status'),
  };
}

// The share is worked out here, not in SQL: the dialect has no window functions or joins.
export function withShare(rows) {
  const totals = new Map();
  for (const r of rows) totals.set(r.profile, (totals.get(r.profile) ?? 0) + Number(r.requests));
  return rows.map((r) => {
    const total = totals.get(r.profile);
    return { ...r, share: total ? `${((100 * Number(r.requests)) / total).toFixed(1)}%` : '-' };
  });
}

const cell = (v) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : String(v ?? ''));

// Numbers (and percentages) right-aligned, text left-aligned, columns as wide as their widest cell.
export function formatTable(rows) {
  if (!rows.length) return '(no rows)';
  const cols = Object.keys(rows[0]);
  const text = rows.map((r) => cols.map((c) => cell(r[c])));
  const right = cols.map((c) => rows.every((r) => typeof r[c] === 'number' || /^[\d.]+%$/.test(r[c])));
  const width = cols.map((c, i) => Math.max(c.length, ...text.map((t) => t[i].length)));
  const line = (cells) => cells.map((s, i) => (right[i] ? s.padStart(width[i]) : s.padEnd(width[i]))).join('  ').trimEnd();
  return [line(cols), ...text.map(line)].join('\n');
}

function printResult(name, rows, print) {
  print(`${name}: ${TITLES[name]}`);
  print(formatTable(name === 'sources' ? withShare(rows) : rows));
  print('');
}

export function printSummary(summary, print = console.log) {
  for (const name of Object.keys(QUERIES)) printResult(name, summary[name] ?? [], print);
}

// `--since '7' DAY` reaches argv as two words (7, DAY); `--since "'7' DAY"` as one.
function parseArgs(argv) {
  const opts = { since: "'7' DAY", dataset: 'worker_m2m', names: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--dataset') opts.dataset = argv[++i] ?? '';
    else if (a === '--since') {
      let s = argv[++i] ?? '';
      if (/^'?\d+'?$/.test(s) && /^[A-Za-z]+$/.test(argv[i + 1] ?? '') && !(argv[i + 1] in QUERIES)) s = `${s} ${argv[++i]}`;
      const m = /^'?(\d+)'?\s+([A-Za-z]+)$/.exec(s.trim());
      opts.since = m ? `'${m[1]}' ${m[2].toUpperCase()}` : s;
    } else opts.names.push(a);
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const fail = (code, msg) => { console.error(`metrics: ${msg}`); process.exit(code); };
  const unknown = opts.names.filter((n) => !(n in QUERIES));
  if (unknown.length) fail(2, `unknown query ${unknown.join(', ')}; known: ${Object.keys(QUERIES).join(', ')}`);
  const names = opts.names.length ? opts.names : Object.keys(QUERIES);
  let sql;
  try { sql = names.map((n) => QUERIES[n](opts)); } catch (e) { fail(2, e.message); }
  const missing = ['CLOUDFLARE_ACCOUNT_ID', 'CLOUDFLARE_API_TOKEN'].filter((v) => !process.env[v]);
  if (missing.length) fail(2, `set ${missing.join(' and ')} (an API token with Account Analytics Read)`);
  const url = `https://api.cloudflare.com/client/v4/accounts/${process.env.CLOUDFLARE_ACCOUNT_ID}/analytics_engine/sql`;
  for (const [i, name] of names.entries()) {
    let res;
    try {
      res = await fetch(url, { method: 'POST', headers: { Authorization: `Bearer ${process.env.CLOUDFLARE_API_TOKEN}` }, body: sql[i] });
    } catch (e) { fail(1, `${name}: request failed: ${e.cause?.message ?? e.message}`); }
    const body = await res.text();
    if (!res.ok) fail(1, `${name}: HTTP ${res.status}\n${body}`);
    let json;
    try { json = JSON.parse(body); } catch { fail(1, `${name}: answer is not JSON\n${body}`); }
    // 64-bit integers may come back quoted; the column types say which values are numbers.
    const numeric = new Set((json.meta ?? []).filter((m) => /Int|Float|Decimal/.test(m.type)).map((m) => m.name));
    const rows = (json.data ?? []).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, numeric.has(k) ? Number(v) : v])));
    printResult(name, rows, console.log);
  }
}

// Importing this file (the demo, the tests) must not run the CLI.
const isMain = (() => {
  try { return !!process.argv[1] && pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url; } catch { return false; }
})();
if (isMain) await main();
