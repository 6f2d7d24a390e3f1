// `make bench`: the proxy in workerd under load from a second process (autocannon), side by side
// with the alternatives, on one machine in one run. Writes BENCHMARKS.md.
//   (a) a plain pass-through Worker, no auth: the physical limit
//   (b) worker-m2m (the built proxy)
//   (c) a JS Worker with oauth4webapi and a per-isolate token cache
//   (d) a naive JS Worker that reads the token from KV on every request
//   (e) worker-m2m with DPoP (RFC 9449): a signed proof per request
//   (m) worker-m2m with metrics on (M2M_METRICS), (m0) with a data point per request
// Options (env): BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default "1,32": each variant is
// loaded at each), BENCH_ROUNDS (3: each load is the median of this many turns), BENCH_EXPIRY_SECONDS (45). worker-m2m runs with TOKEN_CACHE_KEY set, as
// docs/configuration.md recommends (without it, each isolate's first request stretches the client secret).
import { COMPATIBILITY_DATE } from '../e2e/support/compat.mjs';
import { fork, spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { miniflare } from '../e2e/support/miniflare.mjs';
import { built } from '../e2e/support/worker.mjs';
import { bundle, rustPassthrough } from './builds.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const concurrencies = String(process.env.BENCH_CONNECTIONS ?? '1,32').split(',').map(Number);
const connections = Math.max(...concurrencies);
const expirySeconds = Number(process.env.BENCH_EXPIRY_SECONDS ?? 45);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const bin = (name) => path.join(root, 'node_modules/.bin', name);
const log = (...a) => console.error('[bench]', ...a);

// --- helpers -------------------------------------------------------------------------------

function startServers(env) {
  const child = fork(path.join(here, 'servers.mjs'), { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve) => child.once('message', (ports) => resolve({
    child,
    ...ports,
    ask(m) { return new Promise((r) => { child.once('message', r); child.send(m); }); },
  })));
}

function buildRustPassthrough() {
  log('building the Rust pass-through reference');
  return rustPassthrough();
}

// A KV wrapper that logs each read, for counting KV reads per request in the accounting run.
const countingKv = {
  name: 'counting-kv',
  modules: true,
  kvNamespaces: ['INNER'],
  compatibilityDate: COMPATIBILITY_DATE,
  // KV's methods over RPC (Miniflare 5 has no wrapped bindings): one hop more than a KV binding,
  // so only the run that counts reads uses it.
  script: `import { WorkerEntrypoint } from 'cloudflare:workers';
  export default class extends WorkerEntrypoint {
    get(k, o) { console.log('KVREAD'); return this.env.INNER.get(k, o); }
    getWithMetadata(k, o) { console.log('KVREAD'); return this.env.INNER.getWithMetadata(k, o); }
    put(k, v, o) { return this.env.INNER.put(k, v, o); }
    list(o) { return this.env.INNER.list(o); }
    delete(k) { return this.env.INNER.delete(k); }
  }`,
};

async function startVariant(variant, servers, { countKv = false, extra = {} } = {}) {
  const bindings = {
    UPSTREAM_ORIGIN: `http://127.0.0.1:${servers.upstreamPort}`,
    OAUTH_TOKEN_URL: `http://127.0.0.1:${servers.tokenPort}/token`,
    OAUTH_CLIENT_ID: 'bench-client',
    OAUTH_CLIENT_SECRET: 'bench-secret-%+:/=&',
    OAUTH_SCOPE: 'read',
    ...variant.extra,
    ...extra,
  };
  const dir = variant.wasmDir ?? path.join(root, 'build');
  const script = variant.wasm
    ? built(dir)
    : { scriptPath: variant.script };
  const usesKv = variant.kv;
  const main = {
    name: 'main', modules: true, compatibilityDate: COMPATIBILITY_DATE, bindings, ...script,
    ...(usesKv && !countKv ? { kvNamespaces: ['TOKEN_CACHE'] } : {}),
    ...(usesKv && countKv ? { serviceBindings: { TOKEN_CACHE: 'counting-kv' } } : {}),
    ...(variant.metrics ? { analyticsEngineDatasets: { M2M_METRICS: { dataset: 'bench' } } } : {}),
  };
  let kvReads = 0;
  const mf = miniflare({
    workers: usesKv && countKv ? [main, countingKv] : [main],
    cf: false, host: '127.0.0.1', port: 0,
  }, { onLine: (line) => { kvReads += (line.match(/KVREAD/g) ?? []).length; } });
  const url = await mf.ready;
  return { mf, url: url.toString(), kvReads: () => kvReads };
}

function autocannon(url, duration, conns = connections) {
  const out = execFileSync(bin('autocannon'), ['--json', '-c', String(conns), '-d', String(duration), `${url}v1/items?limit=10`],
    { maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] });
  const r = JSON.parse(out.toString());
  return { rps: r.requests.average, mean: r.latency.average, p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max,
           total: r.requests.total, non2xx: r.non2xx, errors: r.errors + r.timeouts,
           statuses: Object.keys(r.statusCodeStats ?? {}).filter((c) => c !== '200').join(' ') };
}

async function sequential(url, n) {
  for (let i = 0; i < n; i += 1) {
    const r = await fetch(`${url}v1/items`);
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`status ${r.status}`);
  }
}

const gz = (file) => zlib.gzipSync(fs.readFileSync(file), { level: 9 }).length;
const kib = (b) => `${(b / 1024).toFixed(1)} KiB`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// --- run -----------------------------------------------------------------------------------

const variants = [
  { key: 'a', name: '(a) pass-through, no auth', script: path.join(here, 'workers/passthrough.js') },
  { key: 'r', name: "(a') Rust pass-through, no auth", wasm: true, wasmDir: buildRustPassthrough() },
  { key: 'b', name: '(b) worker-m2m', wasm: true, kv: true, extra: { TOKEN_CACHE_KEY: 'bench-cache-key-0123456789abcdef0123' } },
  { key: 'c', name: '(c) JS + oauth4webapi, isolate cache', script: bundle(path.join(here, 'workers/oauth4webapi.js')) },
  { key: 'd', name: '(d) naive JS, KV read per request', script: path.join(here, 'workers/naive-kv.js'), kv: true },
  { key: 'e', name: '(e) worker-m2m with DPoP', wasm: true, kv: true, extra: { OAUTH_DPOP: 'true', TOKEN_CACHE_KEY: 'bench-cache-key-0123456789abcdef0123' } },
  // Metrics on (M2M_METRICS): request counts once a minute (the default), or a data point per
  // request. Miniflare's dataset keeps nothing, so this is what the Worker spends writing.
  { key: 'm', name: '(m) worker-m2m, metrics on', wasm: true, kv: true, metrics: true, extra: { TOKEN_CACHE_KEY: 'bench-cache-key-0123456789abcdef0123' } },
  { key: 'm0', name: '(m0) worker-m2m, a data point per request', wasm: true, kv: true, metrics: true, extra: { M2M_METRICS_INTERVAL_SECS: '0', TOKEN_CACHE_KEY: 'bench-cache-key-0123456789abcdef0123' } },
];
// A/B on one machine: BENCH_BASELINE=<dir> adds (b0), the proxy as built in <dir> (for example
// another commit's build/), measured side by side with (b). BENCH_ONLY=a,b0,b keeps the listed
// variants; BENCH_EXPIRY_SECONDS=0 skips the expiry runs.
if (process.env.BENCH_BASELINE) {
  const dir = path.resolve(process.env.BENCH_BASELINE);
  variants.splice(2, 0, { key: 'b0', name: `(b0) worker-m2m, baseline ${path.basename(path.dirname(dir))}`, wasm: true, kv: true, wasmDir: dir, extra: { TOKEN_CACHE_KEY: 'bench-cache-key-0123456789abcdef0123' } });
}
if (process.env.BENCH_ONLY) {
  const keep = new Set(process.env.BENCH_ONLY.split(','));
  for (let i = variants.length - 1; i >= 0; i -= 1) if (!keep.has(variants[i].key)) variants.splice(i, 1);
}
for (const v of variants) {
  const dir = v.wasmDir ?? path.join(root, 'build');
  v.size = v.wasm
    ? `${kib(gz(path.join(dir, 'index_bg.wasm')) + gz(path.join(dir, 'index.js')))} gz (wasm ${kib(gz(path.join(dir, 'index_bg.wasm')))})`
    : `${kib(gz(v.script))} gz`;
}

const servers = await startServers({ TOKEN_TTL: '3600', TOKEN_DELAY_MS: '100' });
const results = {};
try {
  for (const v of variants) {
    // Cold start: a fresh instance, time to the first response (token fetch included).
    const colds = [];
    for (let i = 0; i < 3; i += 1) {
      const inst = await startVariant(v, servers);
      const t0 = performance.now();
      const r = await fetch(`${inst.url}v1/items`);
      await r.arrayBuffer();
      colds.push(performance.now() - t0);
      await inst.mf.dispose();
    }
    // Accounting: 2000 sequential requests through a KV read counter; token requests counted.
    await servers.ask('reset');
    const acct = await startVariant(v, servers, { countKv: true });
    await sequential(acct.url, 2000);
    const tokenReqs = (await servers.ask('count')).tokenRequests;
    const kvReads = acct.kvReads();
    await acct.mf.dispose();
    results[v.key] = { cold: median(colds), tokenPer10k: (tokenReqs / 2000) * 10000, kvPer10k: (kvReads / 2000) * 10000 };
  }
  // Load: every variant warm at once, autocannon from a second process. Variants take turns,
  // round after round (BENCH_ROUNDS), and each figure is the median of its rounds: the machine's
  // drift over minutes falls on every variant alike instead of on whichever ran at a bad moment.
  const warm = {};
  for (const v of variants) {
    warm[v.key] = await startVariant(v, servers);
    await sequential(warm[v.key].url, 20);
  }
  const runs = Object.fromEntries(variants.map((v) => [v.key, Object.fromEntries(concurrencies.map((c) => [c, []]))]));
  for (let round = 1; round <= rounds; round += 1) {
    for (const c of concurrencies) {
      for (const v of variants) {
        log(`round ${round}/${rounds}: ${v.name}, ${seconds}s at ${c} connection(s)`);
        runs[v.key][c].push(autocannon(warm[v.key].url, seconds, c));
      }
    }
  }
  for (const v of variants) {
    await warm[v.key].mf.dispose();
    const loads = Object.fromEntries(concurrencies.map((c) => {
      const sorted = [...runs[v.key][c]].sort((x, y) => x.rps - y.rps);
      return [c, sorted[Math.floor(sorted.length / 2)]];
    }));
    Object.assign(results[v.key], loads[connections], { loads });
    log(v.key, JSON.stringify(results[v.key]));
  }
} finally {
  servers.child.send('exit');
}

// Across a token expiry: 20 s tokens from an endpoint that takes 300 ms, margin 2 s.
const expiry = {};
const shortServers = await startServers({ TOKEN_TTL: '20', TOKEN_DELAY_MS: '300' });
try {
  for (const ahead of expirySeconds > 0 ? ['true', 'false'] : []) {
    const inst = await startVariant(variants.find((v) => v.key === 'b'), shortServers, { extra: { OAUTH_EXPIRY_MARGIN_SECS: '2', OAUTH_REFRESH_AHEAD: ahead } });
    await sequential(inst.url, 5);
    await shortServers.ask('reset');
    log(`expiry run, refresh ahead ${ahead}: ${expirySeconds}s`);
    const load = autocannon(inst.url, expirySeconds);
    expiry[ahead] = { ...load, tokens: (await shortServers.ask('count')).tokenRequests };
    await inst.mf.dispose();
    log('expiry', ahead, JSON.stringify(expiry[ahead]));
  }
} finally {
  shortServers.child.send('exit');
}

// --- report --------------------------------------------------------------------------------

const a = results.a;
const ratio = (x, y) => (x / y).toFixed(2);
const rows = variants.map((v) => {
  const r = results[v.key];
  return `| ${v.name} | ${Math.round(r.rps)} (${ratio(r.rps, a.rps)}×) | ${r.p50} ms (${ratio(r.p50 || 0.5, a.p50 || 0.5)}×) | ${r.p99} ms (${ratio(r.p99 || 0.5, a.p99 || 0.5)}×) | ${r.tokenPer10k.toFixed(0)} | ${r.kvPer10k.toFixed(0)} | ${v.size} | ${r.cold.toFixed(0)} ms | ${r.non2xx + r.errors}${r.statuses ? ` (${r.statuses})` : ''} |`;
});
const byConcurrency = concurrencies.map((c) => {
  const base = results.a.loads[c];
  const lines = variants.map((v) => {
    const l = results[v.key].loads[c];
    // At one connection requests are sequential: the time per request is 1 / rate, and what a
    // variant adds to it is the difference (autocannon's own latency figures have a 10 µs grain).
    const added = c === 1 ? ` | ${Math.round(1e6 / l.rps - 1e6 / base.rps)} µs` : '';
    return `| ${v.name} | ${Math.round(l.rps)} (${ratio(l.rps, base.rps)}×) | ${l.mean.toFixed(2)} ms${added} | ${l.p99} ms | ${l.non2xx + l.errors} |`;
  });
  const head = c === 1
    ? '| variant | requests/s | mean latency | added over (a) | p99 | errors |\n|---|---|---|---|---|---|'
    : '| variant | requests/s | mean latency | p99 | errors |\n|---|---|---|---|---|';
  return `### ${c} connection${c === 1 ? '' : 's'}\n\n${head}\n${lines.join('\n')}`;
});
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const report = `# Benchmarks

Measured by \`make bench\` (\`node bench/run.mjs\`; \`BENCH_SECONDS=${seconds} BENCH_CONNECTIONS=${connections}\`),
${new Date().toISOString().slice(0, 10)}, on ${os.cpus().length} × ${cpu}, Node ${process.version}, workerd through
Miniflare ${JSON.parse(fs.readFileSync(path.join(root, 'node_modules/miniflare/package.json'))).version}. Everything runs on this one machine: the Worker in workerd, a
minimal upstream and token endpoint (100 ms per token) in a child process, and autocannon in another
process. The machine has 2 cores shared by all of them, so absolute numbers are low and noisy;
**compare the ratios**, which were measured side by side in the same run.

## Steady state

Load: autocannon, ${connections} connections, ${seconds} s per variant and round (median of ${rounds} rounds), \`GET /v1/items?limit=10\` against a
warm instance. Ratios are to (a). Token and KV counts come from a separate run of 2000 sequential
requests through a KV wrapper that counts reads, scaled to 10 000. Cold start: median of 3 fresh
instances, time to the first response (the token fetch included).

| variant | requests/s | p50 | p99 | token requests / 10k | KV reads / 10k | script size | first response | errors |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

## By concurrency

Each variant loaded for ${seconds} s at each concurrency, the variants taking turns, ${rounds} rounds; each
figure is the median round. Ratios are to (a) at the same concurrency. "Added over (a)" is the time each variant adds to a request at one connection,
in microseconds (requests are sequential there, so a request takes 1 / rate): what a proxy costs
a caller that waits for it.

${byConcurrency.join('\n\n')}

${expiry.true ? `## Across token expiry

20-second tokens, a token endpoint that takes 300 ms, \`OAUTH_EXPIRY_MARGIN_SECS=2\`, ${expirySeconds} s of load
(about ${Math.floor(expirySeconds / 15)} refreshes), worker-m2m with and without refresh ahead.

| refresh ahead | requests/s | p50 | p99 | max | token requests | errors |
|---|---|---|---|---|---|---|
| on | ${Math.round(expiry.true.rps)} | ${expiry.true.p50} ms | ${expiry.true.p99} ms | ${expiry.true.max} ms | ${expiry.true.tokens} | ${expiry.true.non2xx + expiry.true.errors}${expiry.true.statuses ? ` (${expiry.true.statuses})` : ''} |
| off | ${Math.round(expiry.false.rps)} | ${expiry.false.p50} ms | ${expiry.false.p99} ms | ${expiry.false.max} ms | ${expiry.false.tokens} | ${expiry.false.non2xx + expiry.false.errors}${expiry.false.statuses ? ` (${expiry.false.statuses})` : ''} |
` : ''}`;
process.stdout.write(report);
fs.writeFileSync(path.join(root, 'BENCHMARKS.raw.md'), report);
