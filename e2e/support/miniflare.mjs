// Miniflare 5, started from the options the tests and benchmarks write (Miniflare 4's shape,
// which `convertV4MiniflareOptions` maps onto the new one), plus the two things whose spelling
// changed: where state persists, and how the Workers' log lines reach the test.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Miniflare, convertV4MiniflareOptions } from 'miniflare';

/**
 * A Miniflare instance for `options` (Miniflare 4's shape, without `kvPersist`,
 * `durableObjectsPersist` or `handleRuntimeStdio`). `persist`: a directory whose KV and Durable
 * Object state outlives the instance and is shared, live, with every other instance given the
 * same directory (Miniflare 5 elects one owner of shared storage through a dev registry, here
 * one private to that directory). `onLine`: called with each line a Worker logs.
 */
export function miniflare(options, { persist, onLine } = {}) {
  const shared = persist
    ? {
        resourcePersistencePath: persist,
        unsafeEnableSharedStorage: true,
        enableDevRegistry: true,
        unsafeDevRegistryPath: path.join(persist, '.registry'),
        isolatedResourcePersistencePath: fs.mkdtempSync(path.join(os.tmpdir(), 'm2m-mf-isolated-')),
      }
    : { enableDevRegistry: false };
  const handleStructuredLogs = onLine
    ? (log) => { for (const line of String(log.message).split('\n')) onLine(line); }
    : () => {};
  return new Miniflare({ ...convertV4MiniflareOptions({ ...options, handleStructuredLogs }), ...shared });
}
