// The scaffolding the e2e files share. `e2eStack` starts, for one test file, the local IdP
// (oidc-provider) and the protected API(s) that trust it; Workers and fleets started through it
// are disposed after the file's tests; before each test the IdP and the APIs go back to their
// defaults (no fault, no nonces, nothing counted), so every test sets up the faults it needs
// itself; after the tests, no log line of any of the file's Workers may carry a secret or a token.
// (A server with a `reset()` is reset.) Use it with top-level await: `const stack = await e2eStack({ ... })`.
import { after, beforeEach } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startIdp, CLIENTS, API_AUDIENCE } from './idp.mjs';
import { startApi } from './api.mjs';
import { startWorker, startFleet } from './worker.mjs';
import { assertNoSecretsInLogs } from './secrets.mjs';
import { proxySettings } from './settings.mjs';

/** A protected API that trusts `idp`. */
export function startApiFor(idp) {
  return startApi({ issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: API_AUDIENCE });
}

/**
 * Starts the servers of one test file and registers its hooks. Options:
 * - `idp`: startIdp's options;
 * - `apis`: the names of the protected APIs to start (default `['api']`);
 * - `servers`: `{ name: start }`, more servers (each with `close()`), started after the APIs;
 * - `secrets`: more strings no log line may carry, or a function that gives them after the tests;
 * - `summary`: after the tests, prints `# <summary>: <counts as JSON>; N log lines checked for
 *   secrets`; a function gives the text before the `;` instead.
 * Returns `{ idp, <api names>, <server names>, counts, worker(opts), fleet(opts),
 * settings(extra, client) }`.
 */
export async function e2eStack({ idp: idpOptions, apis = ['api'], servers = {}, secrets = [], summary } = {}) {
  const stack = {
    counts: {},
    /** Every Worker and fleet started through the stack (their logs are checked after). */
    started: [],
    /** startWorker, disposed after the file's tests. */
    async worker(opts) {
      const w = await startWorker(opts);
      stack.started.push(w);
      return w;
    },
    /** startFleet, disposed after the file's tests. */
    async fleet(opts) {
      const f = await startFleet(opts);
      stack.started.push(f);
      return f;
    },
    /** The proxy's settings for the stack's IdP and first API: `client` and overrides. */
    settings(extra = {}, client = CLIENTS.basic) {
      return proxySettings({ idp: stack.idp, api: stack[apis[0]], client, extra });
    },
  };
  const toClose = [];
  // Registered first, so that whatever did start is closed even if a later start fails.
  after(async () => {
    try {
      const apiList = apis.map((name) => stack[name]).filter(Boolean);
      const extra = typeof secrets === 'function' ? secrets() : secrets;
      const lines = assertNoSecretsInLogs(stack.started, apiList, extra);
      if (typeof summary === 'function') console.log(`# ${summary()}; ${lines} log lines checked for secrets`);
      else if (summary) console.log(`# ${summary}: ${JSON.stringify(stack.counts)}; ${lines} log lines checked for secrets`);
    } finally {
      await Promise.all(stack.started.map((w) => w.dispose()));
      await Promise.all(toClose.map((s) => s.close()));
    }
  });
  beforeEach(() => {
    for (const server of toClose) server.reset?.();
  });
  stack.idp = await startIdp(idpOptions);
  toClose.push(stack.idp);
  for (const name of apis) {
    stack[name] = await startApiFor(stack.idp);
    toClose.push(stack[name]);
  }
  for (const [name, start] of Object.entries(servers)) {
    stack[name] = await start();
    toClose.push(stack[name]);
  }
  return stack;
}

/** Runs `fn({ idp, api })` with an IdP of its own (startIdp's `options`, e.g. a short token
 *  lifetime) and an API that trusts it; closes both after. */
export async function withIdpAndApi(options, fn) {
  const idp = await startIdp(options);
  const api = await startApiFor(idp);
  try {
    return await fn({ idp, api });
  } finally {
    await api.close();
    await idp.close();
  }
}

/** Runs `fn(dir)` with a new temporary directory (a KV or storage directory to share between
 *  instances); removes it after. */
export async function withTempDir(prefix, fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `n` calls of `fn(i)`, concurrently: their results. */
export function concurrently(n, fn) {
  return Promise.all(Array.from({ length: n }, (_, i) => fn(i)));
}

/** The statuses of `responses`, each body read to the end. */
export function statuses(responses) {
  return Promise.all(responses.map(async (r) => { await r.arrayBuffer(); return r.status; }));
}
