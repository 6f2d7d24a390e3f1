// The built proxy Worker (build/index.js) in workerd, through Miniflare's Node API.
import { COMPATIBILITY_DATE } from './compat.mjs';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { miniflare } from './miniflare.mjs';
import { recording, pointsIn, isPoint } from './analytics.mjs';
import { wrappedBinding } from './wrapped.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A Worker built by worker-build into `dir` (relative to the repository, or absolute) as
 *  Miniflare loads it: every module listed, the entry first, named relative to `dir` (Miniflare
 *  5 finds no module by rule, and allows no '..' in names). */
export function built(dir) {
  const root_ = path.resolve(root, dir);
  const modules = fs.readdirSync(root_)
    .filter((f) => /\.(m?js|wasm)$/.test(f))
    .sort((x, y) => (x === 'index.js' ? -1 : y === 'index.js' ? 1 : x.localeCompare(y)))
    .map((f) => ({ type: f.endsWith('.wasm') ? 'CompiledWasm' : 'ESModule', path: path.join(root_, f) }));
  return { modules, modulesRoot: root_, compatibilityDate: COMPATIBILITY_DATE };
}

/** Every line the Workers print, kept in `logs` as `collect` receives them. */
function collector() {
  const logs = [];
  return { logs, collect: (line) => logs.push(line) };
}

/** The JSON objects in log lines (a line may carry a prefix before its `{`); with `match`,
 *  only those whose fields equal each of match's (`{ event: 'token', source: 'network' }`). */
function jsonLines(logs, match = {}) {
  const wanted = Object.entries(match);
  return logs.flatMap((l) => {
    const i = isPoint(l) ? -1 : l.indexOf('{');
    if (i < 0) return [];
    try { return [JSON.parse(l.slice(i))]; } catch { return []; }
  }).filter((e) => wanted.every(([k, v]) => e[k] === v));
}

/** `mf.ready`; when the runtime fails to start (a Worker that throws at load), the error carries
 *  the lines the runtime printed as `logs`. */
async function ready(mf, logs) {
  try {
    return await mf.ready;
  } catch (e) {
    await mf.dispose().catch(() => {});
    e.logs = logs;
    throw e;
  }
}

/**
 * Starts the Worker with `bindings` (vars and secrets). Options: `kv` (default true) binds
 * TOKEN_CACHE, `kv: 'broken'` one whose every call throws, `kv: 'hanging'` one that never
 * answers; `kvPersist`
 * shares KV between instances through a directory; `port` listens; `caller` is the source of
 * a second Worker that reaches the proxy through a service binding named PROXY (`callerFetch`);
 * `builtDir` runs another Worker built by worker-build instead of the proxy (the library example);
 * `callerBindings` replaces the caller's service bindings (e.g. the RPC entrypoint with props);
 * `coordinator` binds the TokenCoordinator Durable Object in the proxy (the deployed shape);
 * `metrics` binds M2M_METRICS to a dataset that records its points (`points()`);
 * `secretsStore` is Miniflare's `secretsStoreSecrets` (`{ BINDING: { store_id, secret_name } }`),
 * whose values `secret(binding)` creates and rotates.
 * Every line the Worker logs is kept in `logs`; `port` is the one it listens on (with `port`).
 */
export async function startWorker({ bindings, kv = true, kvPersist, port, caller, builtDir, callerBindings, coordinator, metrics, secretsStore } = {}) {
  const { logs, collect } = collector();
  let pointsFrom = 0;
  const proxy = {
    name: 'proxy',
    ...built(builtDir ?? 'build'),
    kvNamespaces: kv === true ? ['TOKEN_CACHE'] : [],
    bindings,
    ...(coordinator ? { durableObjects: { TOKEN_COORDINATOR: { className: 'TokenCoordinator', useSQLite: true } } } : {}),
    ...(metrics ? { unsafeBindings: [recording('M2M_METRICS')] } : {}),
    ...(secretsStore ? { secretsStoreSecrets: secretsStore } : {}),
  };
  // A KV namespace that is down: every operation throws ('broken') or never answers ('hanging'),
  // in the caller's isolate as a platform binding's would (a wrapped binding, ./wrapped.mjs).
  const down = kv === 'hanging'
    ? `export default function () {
        const hang = () => new Promise(() => {});
        return { get: hang, getWithMetadata: hang, put: hang, list: hang, delete: hang };
      }`
    : `export default function () {
        const fail = () => { throw new Error('KV is unavailable'); };
        return { get: fail, getWithMetadata: fail, put: fail, list: fail, delete: fail };
      }`;
  const workers = kv === 'broken' || kv === 'hanging'
    ? [{ ...proxy, unsafeBindings: [...(proxy.unsafeBindings ?? []), wrappedBinding('TOKEN_CACHE', down)] }]
    : [proxy];
  if (caller) {
    workers.push({
      name: 'caller', modules: true, script: caller, compatibilityDate: COMPATIBILITY_DATE,
      serviceBindings: callerBindings ?? { PROXY: 'proxy' },
    });
  }
  const mf = miniflare({ workers, cf: false, host: '127.0.0.1', port }, { persist: kvPersist, onLine: collect });
  const url = await ready(mf, logs);
  return {
    mf,
    url,
    port: Number(url.port),
    logs,
    /** Parsed JSON log lines of the Worker(s), those like `match` (see jsonLines). */
    events(match) { return jsonLines(logs, match); },
    fetch(p, init) { return mf.dispatchFetch(new URL(p, 'http://proxy.internal').toString(), init); },
    async callerFetch(p, init) {
      const fetcher = await mf.getWorker('caller');
      return fetcher.fetch(new URL(p, 'http://caller.internal').toString(), init);
    },
    /** The data points written to M2M_METRICS so far (with `metrics`). */
    points() { return pointsIn(logs, pointsFrom); },
    /** Forgets them. */
    async clearPoints() { await pointsIn(logs); pointsFrom = logs.length; },
    /** Sets the Secrets Store secret behind `binding` (with `secretsStore`) to `value`: created
     *  the first time, rotated after. */
    async secret(binding, value) {
      const admin = (await mf.getSecretsStoreSecretAPI(binding))();
      const [existing] = admin.list();
      if (existing) admin.update(value, existing.metadata.uuid);
      else admin.create(value);
    },
    dispose() { return mf.dispose(); },
  };
}

/**
 * Starts `isolates` copies of the proxy Worker (separate isolates) in one workerd, sharing one
 * KV namespace and, with `coordinator: true`, one TokenCoordinator Durable Object class (defined
 * by the first copy, reached by the others through `scriptName`). `coordinator: 'broken'` binds
 * an object whose every call throws, `'hanging'` one that never answers, `false` none.
 * `persist` keeps KV and Durable Object storage in a directory across restarts; `metrics` binds
 * every copy's M2M_METRICS to one recording dataset (`points()`).
 */
export async function startFleet({ bindings, isolates = 3, coordinator = true, persist, metrics } = {}) {
  const { logs, collect } = collector();
  const object = (i) => {
    if (coordinator === true) {
      return { TOKEN_COORDINATOR: i === 0 ? { className: 'TokenCoordinator', useSQLite: true } : { className: 'TokenCoordinator', scriptName: 'proxy-0', useSQLite: true } };
    }
    if (coordinator) return { TOKEN_COORDINATOR: { className: 'TokenCoordinator', scriptName: 'fake-coordinator' } };
    return {};
  };
  const proxyModules = built('build');
  const workers = Array.from({ length: isolates }, (_, i) => ({
    name: `proxy-${i}`,
    ...proxyModules,
    kvNamespaces: { TOKEN_CACHE: 'fleet-token-cache' },
    durableObjects: object(i),
    bindings,
    ...(metrics ? { unsafeBindings: [recording('M2M_METRICS')] } : {}),
  }));
  if (coordinator === 'broken' || coordinator === 'hanging') {
    const body = coordinator === 'broken'
      ? "throw new Error('coordinator is being redeployed');"
      : 'return new Promise(() => {});';
    workers.push({
      name: 'fake-coordinator',
      modules: true,
      compatibilityDate: COMPATIBILITY_DATE,
      script: `export class TokenCoordinator { async fetch() { ${body} } }
               export default { fetch() { return new Response('no'); } };`,
      durableObjects: { TOKEN_COORDINATOR: 'TokenCoordinator' },
    });
  }
  const mf = miniflare({ workers, cf: false }, { persist, onLine: collect });
  await ready(mf, logs);
  const fetchers = await Promise.all(workers.slice(0, isolates).map((w) => mf.getWorker(w.name)));
  return {
    mf,
    logs,
    /** Parsed JSON log lines of the Worker(s), those like `match` (see jsonLines). */
    events(match) { return jsonLines(logs, match); },
    /** Fetches `p` from isolate `i`. */
    fetch(i, p, init) { return fetchers[i].fetch(new URL(p, 'http://proxy.internal').toString(), init); },
    /** The data points written to M2M_METRICS so far (with `metrics`). */
    points() { return pointsIn(logs); },
    dispose() { return mf.dispose(); },
  };
}
