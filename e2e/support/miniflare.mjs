// Miniflare 5, started from the options the tests and benchmarks write (Miniflare 4's shape,
// which `convertV4MiniflareOptions` maps onto the new one), plus the two things whose spelling
// changed: where state persists, and how the Workers' log lines reach the test.
import path from 'node:path';
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';

/**
 * A Miniflare instance for `options` (Miniflare 4's shape, without `kvPersist`,
 * `durableObjectsPersist` or `handleRuntimeStdio`). `persist`: a directory whose KV and Durable
 * Object state outlives the instance. KV is shared, live, with every other instance given the
 * same directory (Miniflare 5 elects one owner of shared storage through a dev registry, here
 * one private to that directory); Durable Objects are not, so two instances with the same
 * objects take turns. `onLine`: called with each line a Worker logs.
 */
export function miniflare(options, { persist, onLine } = {}) {
  const shared = persist
    ? {
        resourcePersistencePath: persist,
        unsafeEnableSharedStorage: true,
        enableDevRegistry: true,
        unsafeDevRegistryPath: path.join(persist, '.registry'),
        // Durable Objects are not shared storage: they live here, kept across restarts.
        isolatedResourcePersistencePath: path.join(persist, 'isolated'),
      }
    : { enableDevRegistry: false };
  const handleStructuredLogs = onLine
    ? (log) => { for (const line of String(log.message).split('\n')) onLine(line); }
    : () => {};
  return new Miniflare({ ...convertV4MiniflareOptions({ ...options, handleStructuredLogs }), ...shared });
}
