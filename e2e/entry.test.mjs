// The proxy's JavaScript entry (scripts/entry.mjs, built as build/index.js) in front of stand-ins
// for worker-build's module (build/m2m.js), in workerd: what the entry relies on from
// worker-build 0.8.7 is checked when the Worker starts, and a stand-in without it stops the start
// with a message that names it; with a stand-in that has it, a wasm trap marks the module and the
// next request goes through worker-build's entry, which re-initialises it. (No Rust panic here:
// the stand-in throws what a trap throws, a WebAssembly.RuntimeError.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWorker } from './support/worker.mjs';
import { withTempDir } from './support/stack.mjs';

const entry = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../build/index.js');

// The parts of worker-build 0.8.7's module the entry uses, as it makes them (see build/m2m.js):
// the worker crate's init state, a WorkerEntrypoint class whose fetch reads this.env and this.ctx,
// wrapped in a Proxy that re-initialises a module marked as trapped when it is constructed, and
// the exported classes. The full path answers JSON saying how it was reached.
const PARTS = {
  imports: "import { WorkerEntrypoint } from 'cloudflare:workers';",
  state: 'globalThis.__worker_init_state = { criticalError: false, instanceId: 0 };',
  handler: `let reinitialised = 0;
async function handle(request, env, ctx) {
  if (new URL(request.url).pathname === '/full-trap') throw new WebAssembly.RuntimeError('unreachable');
  return Response.json({ via: 'full', reinitialised, env: env.MARK, ctx: typeof ctx.waitUntil });
}`,
  entry: `class Entrypoint extends WorkerEntrypoint {}
Entrypoint.prototype.fetch = function fetch(request) { return handle.call(this, request, this.env, this.ctx); };
export default new Proxy(Entrypoint, {
  construct(target, args, newTarget) {
    const state = globalThis.__worker_init_state;
    if (state.criticalError) { reinitialised += 1; state.criticalError = false; state.instanceId += 1; }
    return Reflect.construct(target, args, newTarget);
  },
});`,
  hotPath: `export class HotPath {
  static ready(request) {
    if (new URL(request.url).pathname === '/trap') throw new WebAssembly.RuntimeError('unreachable');
    return undefined;
  }
  static answered() {}
  static unreachable() {}
  static nonce() {}
  static relocated() {}
  static accepted() {}
}`,
  rpc: 'export class Rpc { static tokenInfo() {} static authorization() {} static status() {} }',
  coordinator: 'export class TokenCoordinator {}',
};

/** Runs `fn(start)` where `start()` starts the entry in front of a stand-in made of PARTS with
 *  `change` (parts by name; '' drops one). */
function withStandIn(change, fn) {
  return withTempDir('m2m-entry-', async (dir) => {
    fs.copyFileSync(entry, path.join(dir, 'index.js'));
    fs.copyFileSync(path.join(path.dirname(entry), 'intake.js'), path.join(dir, 'intake.js'));
    fs.writeFileSync(path.join(dir, 'm2m.js'), Object.values({ ...PARTS, ...change }).join('\n'));
    return fn(() => startWorker({ builtDir: dir, bindings: { MARK: 'env-passed' }, kv: false }));
  });
}

test('with a module like worker-build 0.8.7\'s, a trap re-initialises it once, before the next request', async () => {
  await withStandIn({}, async (start) => {
    const w = await start();
    try {
      const answer = async (p) => {
        const r = await w.fetch(p);
        assert.equal(r.status, 200, p);
        return r.json();
      };
      // The full path gets env and ctx through `this`.
      assert.deepEqual(await answer('/'), { via: 'full', reinitialised: 0, env: 'env-passed', ctx: 'function' });
      // A trap in HotPath.ready: this request already goes through worker-build's entry, which
      // re-initialises the module; the next one takes the usual way again.
      assert.deepEqual(await answer('/trap'), { via: 'full', reinitialised: 1, env: 'env-passed', ctx: 'function' });
      assert.equal((await answer('/')).reinitialised, 1);
      // A trap in the full path: that caller gets the error; the next request re-initialises.
      const trapped = await w.fetch('/full-trap');
      assert.equal(trapped.status, 500);
      await trapped.arrayBuffer();
      assert.equal((await answer('/')).reinitialised, 2);
      assert.equal((await answer('/')).reinitialised, 2);
    } finally {
      await w.dispose();
    }
  });
});

const UNEXPECTED = [
  [{ state: '' }, 'has no __worker_init_state with a boolean criticalError'],
  [{ state: 'globalThis.__worker_init_state = { critical: false };' }, 'has no __worker_init_state with a boolean criticalError'],
  [{ entry: 'export default { fetch() { return handle(); } };' }, 'has no default export that extends WorkerEntrypoint'],
  [{ entry: PARTS.entry.replace('function fetch(request) { return handle.call(this, request, this.env, this.ctx); }', 'function fetch(request, env, ctx) { return handle(request, env, ctx); }') },
    'has a fetch method that does not read this.env and this.ctx'],
  [{ entry: PARTS.entry.replace(/Entrypoint\.prototype\.fetch = .*\n/, '') }, "has no fetch method on its default export's prototype"],
  [{ hotPath: '' }, 'exports no HotPath.ready function'],
  [{ hotPath: PARTS.hotPath.replace('static nonce() {}', '') }, 'exports no HotPath.nonce function'],
  [{ rpc: '' }, 'exports no Rpc.tokenInfo function'],
  [{ coordinator: '' }, 'exports no TokenCoordinator class'],
];

test('a module unlike worker-build 0.8.7\'s stops the Worker at start, with a message naming what differs', async () => {
  for (const [change, what] of UNEXPECTED) {
    await withStandIn(change, async (start) => {
      const failed = await start().then(
        async (w) => { await w.dispose(); return null; },
        (e) => e,
      );
      assert.ok(failed, `started with ${JSON.stringify(change)}`);
      const want = `worker-m2m entry: worker-build's module (m2m.js) ${what}`;
      assert.ok(failed.logs?.some((l) => l.includes(want) && l.includes('the pinned worker-build 0.8.7')),
        `no "${want}" in: ${failed.message}\n${(failed.logs ?? []).join('\n')}`);
    });
  }
});
