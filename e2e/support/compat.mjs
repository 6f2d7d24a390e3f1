// The compatibility date every workerd the tests and benchmarks start runs at: the proxy's own,
// read from wrangler.toml, so the tests run what `wrangler deploy` ships.
import { readFileSync } from 'node:fs';

const toml = readFileSync(new URL('../../wrangler.toml', import.meta.url), 'utf8');
const found = toml.match(/^compatibility_date\s*=\s*"(\d{4}-\d{2}-\d{2})"/m);
if (!found) throw new Error('wrangler.toml: no compatibility_date');

/** wrangler.toml's `compatibility_date`. */
export const COMPATIBILITY_DATE = found[1];
