// `make profile`: where a proxied request's CPU time goes. Runs one variant of `make bench` in
// workerd with the V8 inspector on, drives it with autocannon at one connection, records a V8
// CPU profile over the load, and prints the functions with the most self time, grouped by where
// they live (our wasm, the wasm-bindgen glue, the JS entry, workerd built-ins).
//   node bench/profile.mjs [variant...]   variants: b (worker-m2m, default), r (Rust pass-through),
//                                         a (JS pass-through), c (JS + oauth4webapi), e (worker-m2m
//                                         with DPoP), m / m0 (worker-m2m with metrics on: counts
//                                         per minute / a data point per request), b0 (the
//                                         build in PROFILE_BASELINE, e.g. another commit's)
// Options (env): PROFILE_SECONDS (default 8), PROFILE_CONNECTIONS (default 1). Writes
// bench/.build/<variant>.cpuprofile (open it in Chrome DevTools for the full picture).
import { COMPATIBILITY_DATE } from '../e2e/support/compat.mjs';
import { fork, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { miniflare } from '../e2e/support/miniflare.mjs';
import { built } from '../e2e/support/worker.mjs';
import WebSocket from 'ws';
import { bundle, rustPassthrough } from './builds.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const seconds = Number(process.env.PROFILE_SECONDS ?? 8);
const connections = Number(process.env.PROFILE_CONNECTIONS ?? 1);
const keys = process.argv.slice(2).length ? process.argv.slice(2) : ['b'];
const inspectorPort = 9329;

function servers() {
  const child = fork(path.join(here, 'servers.mjs'), {
    env: { ...process.env, TOKEN_TTL: '3600', TOKEN_DELAY_MS: '5' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve) => child.once('message', (ports) => resolve({ child, ...ports })));
}

function script(key) {
  const wasm = (dir) => built(dir);
  switch (key) {
    case 'b': case 'e': case 'm': case 'm0': return wasm(path.join(root, 'build'));
    case 'b0': return wasm(path.resolve(process.env.PROFILE_BASELINE ?? 'PROFILE_BASELINE is not set'));
    case 'r': return wasm(rustPassthrough({ ifMissing: true }));
    case 'a': return { scriptPath: path.join(here, 'workers/passthrough.js') };
    case 'c': return { scriptPath: bundle(path.join(here, 'workers/oauth4webapi.js')) };
    default: throw new Error(`unknown variant ${key}`);
  }
}

/** A tiny Chrome DevTools Protocol client. */
async function cdp(url) {
  // The ws package: Node's own WebSocket client never completes the handshake with Miniflare
  // 5's inspector proxy.
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  let id = 0;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    }
  });
  return {
    send(method, params = {}) {
      id += 1;
      ws.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve) => pending.set(id, resolve));
    },
    close() { ws.close(); },
  };
}

/** Self time per function, from a V8 CPU profile, grouped by where the code lives. */
function summarise(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i += 1) {
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fns = new Map();
  const groups = new Map();
  for (const [nodeId, us] of self) {
    const { callFrame } = byId.get(nodeId);
    const name = callFrame.functionName || '(anonymous)';
    const where = callFrame.url ? path.basename(callFrame.url) : '';
    let group;
    if (['(idle)', '(program)', '(garbage collector)'].includes(name)) group = name;
    else if (/wasm/.test(callFrame.url) || /^\$?wasm-function/.test(name) || callFrame.url.startsWith('wasm://')) group = 'wasm (our Rust)';
    else if (!callFrame.url) group = 'workerd and V8 built-ins';
    else group = `JS: ${where}`;
    const key = `${name} ${where}:${callFrame.lineNumber}:${callFrame.columnNumber}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    groups.set(group, (groups.get(group) ?? 0) + us);
  }
  const busy = total - (groups.get('(idle)') ?? 0);
  return { total, busy, fns, groups };
}

const srv = await servers();
try {
  for (const key of keys) {
    const mf = miniflare({
      inspectorPort,
      workers: [{
        name: 'main', modules: true, compatibilityDate: COMPATIBILITY_DATE, unsafeInspectorProxy: true,
        kvNamespaces: ['TOKEN_CACHE'],
        bindings: {
          UPSTREAM_ORIGIN: `http://127.0.0.1:${srv.upstreamPort}`,
          OAUTH_TOKEN_URL: `http://127.0.0.1:${srv.tokenPort}/token`,
          OAUTH_CLIENT_ID: 'bench-client',
          OAUTH_CLIENT_SECRET: 'bench-secret-%+:/=&',
          OAUTH_SCOPE: 'read',
          TOKEN_CACHE_KEY: 'bench-cache-key-0123456789abcdef0123',
          ...(key === 'e' ? { OAUTH_DPOP: 'true' } : {}),
          ...(key === 'm0' ? { M2M_METRICS_INTERVAL_SECS: '0' } : {}),
        },
        // Metrics on (m: counts once a minute; m0: a data point per request), into Miniflare's
        // dataset, whose writeDataPoint keeps nothing: what the Worker spends, not the platform.
        ...(key === 'm' || key === 'm0' ? { analyticsEngineDatasets: { M2M_METRICS: { dataset: 'bench' } } } : {}),
        ...script(key),
      }],
      cf: false, host: '127.0.0.1', port: 0,
    });
    const url = (await mf.ready).toString();
    for (let i = 0; i < 50; i += 1) await (await fetch(`${url}v1/items`)).arrayBuffer();
    const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
    const target = targets.find((t) => t.webSocketDebuggerUrl?.includes('main')) ?? targets[0];
    const client = await cdp(target.webSocketDebuggerUrl);
    await client.send('Profiler.enable');
    await client.send('Profiler.setSamplingInterval', { interval: 100 });
    await client.send('Profiler.start');
    const load = JSON.parse(execFileSync(path.join(root, 'node_modules/.bin/autocannon'),
      ['--json', '-c', String(connections), '-d', String(seconds), `${url}v1/items?limit=10`],
      { maxBuffer: 64 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] }).toString());
    const { result } = await client.send('Profiler.stop');
    client.close();
    await mf.dispose();
    fs.mkdirSync(path.join(root, 'bench/.build'), { recursive: true });
    fs.writeFileSync(path.join(root, `bench/.build/${key}.cpuprofile`), JSON.stringify(result.profile));
    const { busy, fns, groups } = summarise(result.profile);
    const requests = load.requests.total;
    const perReq = (us) => `${(us / requests).toFixed(1)} µs/req`;
    console.log(`\n== ${key}: ${requests} requests in ${seconds} s at ${connections} connection(s), ${Math.round(load.requests.average)} req/s; isolate busy ${perReq(busy)}`);
    for (const [g, us] of [...groups].sort((x, y) => y[1] - x[1])) {
      if (g !== '(idle)') console.log(`  ${g.padEnd(40)} ${perReq(us).padStart(14)}  ${(100 * us / busy).toFixed(1)} %`);
    }
    console.log('  top functions by self time:');
    for (const [f, us] of [...fns].sort((x, y) => y[1] - x[1]).filter(([f]) => !f.startsWith('(idle)')).slice(0, 25)) {
      console.log(`    ${perReq(us).padStart(14)}  ${f.slice(0, 110)}`);
    }
  }
} finally {
  srv.child.send('exit');
}
