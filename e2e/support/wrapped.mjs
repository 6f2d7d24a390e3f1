// Wrapped bindings for Miniflare 5: a binding whose module runs inside the calling Worker's own
// isolate, as workerd's wrapped bindings (and Miniflare 4's `wrappedBindings`) do. A test double
// that stands in for a platform binding needs this to behave like it: `writeDataPoint` returns
// at once and throws synchronously, a KV method throws or hangs in the caller. A service
// binding is not the same: its calls are RPC, and one left unawaited is lost when the caller's
// request ends. Miniflare 5 keeps wrapped bindings internal, so this is an external plugin
// (its `unsafeBindings`), loaded by path.
import { fileURLToPath } from 'node:url';

const PLUGIN = 'm2m-wrapped';
const TYPE = `unsafe:${PLUGIN}`;

/** The `unsafeBindings` entry that binds `name` to `script` (an ES module whose default export,
 *  called with `{ [binding]: service }` for each of `services`, is the binding's value), run
 *  in the caller's isolate. `services` names Workers of the same Miniflare instance. */
export function wrappedBinding(name, script, services = {}) {
  return {
    name,
    type: PLUGIN,
    plugin: { package: fileURLToPath(import.meta.url), name: PLUGIN },
    options: { script, services },
  };
}

const wrappedOf = (workerOpts) => Object.entries(workerOpts.config.env ?? {})
  .filter(([, b]) => b?.type === TYPE);
const moduleName = (worker, binding) => `${PLUGIN}:${worker}:${binding}`;

export const plugins = {
  [PLUGIN]: {
    getBindings(workerOpts) {
      return wrappedOf(workerOpts).map(([name, b]) => ({
        name,
        wrapped: {
          moduleName: moduleName(workerOpts.config.name, name),
          innerBindings: Object.entries(b.dev.options.services)
            .map(([inner, worker]) => ({ name: inner, service: { name: `core:user:${worker}` } })),
        },
      }));
    },
    getNodeBindings() { return {}; },
    getServices() { return []; },
    getExtensions({ options }) {
      const modules = options.flatMap((o) => wrappedOf(o).map(([name, b]) => ({
        name: moduleName(o.config.name, name), esModule: b.dev.options.script, internal: true,
      })));
      return modules.length ? [{ modules }] : [];
    },
  },
};
