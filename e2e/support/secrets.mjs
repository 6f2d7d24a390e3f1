// The suite-wide promise: no log line of any Worker carries a secret, a token or credentials.
import assert from 'node:assert/strict';
import { CLIENTS } from './idp.mjs';

/** Checks every log line of `workers` against the clients' secrets, `extra`, and every token
 *  that reached `api` (one API or a list); returns how many lines it checked. */
export function assertNoSecretsInLogs(workers, api, extra = []) {
  const tokens = new Set(
    [api].flat().flatMap((a) => a.seen)
      .map((r) => (r.headers.authorization ?? '').replace(/^(Bearer|DPoP) /, '')).filter((t) => t.length > 20),
  );
  const secrets = [CLIENTS.basic.secret, CLIENTS.post.secret, ...extra, ...tokens];
  let lines = 0;
  for (const w of workers) {
    for (const line of w.logs) {
      lines += 1;
      for (const s of secrets) assert.ok(!line.includes(s), `a log line carries a secret or token: ${line.slice(0, 120)}`);
      assert.ok(!/Basic [A-Za-z0-9+/=]{8,}/.test(line), `a log line carries Basic credentials: ${line.slice(0, 120)}`);
      // Any private JWK, configured or generated (a DPoP key), has a `d` member.
      assert.ok(!/"d"\s*:\s*"/.test(line), `a log line carries a private JWK: ${line.slice(0, 120)}`);
      assert.ok(!line.includes(encodeURIComponent(CLIENTS.basic.secret)), 'a log line carries the form-encoded secret');
    }
  }
  return lines;
}
