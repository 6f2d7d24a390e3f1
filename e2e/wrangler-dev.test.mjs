// `npx wrangler dev` as a user runs it: the pinned wrangler on this repository's wrangler.toml
// (its [build] command included), with the settings of .dev.vars.example, in front of the demo's
// authorization server and API. Only the ports differ from the file: the test takes free ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startIdp, API_AUDIENCE } from './support/idp.mjs';
import { startApi } from './support/api.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once `child` prints a line matching `ready` (rejects if it exits first). */
function waitFor(child, ready, output) {
  return new Promise((resolve, reject) => {
    const seen = (d) => {
      output.push(d.toString());
      if (ready.test(output.join(''))) resolve();
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.once('exit', (code) => reject(new Error(`wrangler dev exited (${code}):\n${output.join('')}`)));
  });
}

test('npx wrangler dev with .dev.vars.example serves requests through the proxy, one token for many', { timeout: 300_000 }, async () => {
  const idp = await startIdp();
  const api = await startApi({ issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: API_AUDIENCE });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'm2m-wrangler-dev-'));
  const example = fs.readFileSync(path.join(root, '.dev.vars.example'), 'utf8');
  assert.match(example, /127\.0\.0\.1:9100/);
  assert.match(example, /127\.0\.0\.1:9200/);
  const envFile = path.join(dir, 'dev.vars');
  fs.writeFileSync(envFile, example
    .replaceAll('http://127.0.0.1:9100', idp.issuer)
    .replaceAll('http://127.0.0.1:9200', api.origin));
  const port = await freePort();
  const output = [];
  // --env-file: read instead of a .dev.vars, so a developer's own is neither needed nor read.
  const wrangler = spawn(path.join(root, 'node_modules/.bin/wrangler'),
    ['dev', '--ip', '127.0.0.1', '--port', String(port), '--show-interactive-dev-session=false',
      '--env-file', envFile, '--persist-to', path.join(dir, 'state')],
    { cwd: root, env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await waitFor(wrangler, /Ready on http/, output);
    const statuses = [];
    for (let i = 0; i < 5; i += 1) {
      const res = await fetch(`http://127.0.0.1:${port}/things?page=${i}`);
      const body = await res.json();
      statuses.push(res.status);
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.url, `/things?page=${i}`, JSON.stringify(body));
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200]);
    assert.equal(idp.tokenRequests, 1, 'one token request for five calls');
    const arrived = api.seen.filter((s) => s.url?.startsWith('/things'));
    assert.equal(arrived.length, 5);
    const text = output.join('');
    assert.doesNotMatch(text, /Sx%\+:\/=&y-basic/, 'the client secret is never printed');
    assert.doesNotMatch(text, /▲ \[WARNING\]/, 'wrangler dev printed a warning:\n' + text);
  } finally {
    wrangler.kill('SIGINT');
    await new Promise((r) => (wrangler.exitCode !== null ? r() : wrangler.once('exit', r)));
    await api.close();
    await idp.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
