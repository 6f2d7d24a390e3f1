// The proxy's JavaScript entry. scripts/build.sh puts it in build/index.js, in front of the module
// worker-build makes (moved to build/m2m.js), so that a request whose token is already in memory
// runs no Rust future at all:
//   0. every entry first reads what the caller asked for (scripts/intake.mjs, bundled next to
//      this file): only http(s) URLs, the path from one parse, the caller's pin; these travel
//      to Rust as data (`[path, pinned]`), never as URL text;
//   1. HotPath.ready(request, env, [path, pinned]), one synchronous call into the wasm, makes the signed upstream
//      request as [target, init] (routing, origin lock, header policy and token are decided in
//      Rust, as always; with DPoP also the proof's input and the key, and this entry signs), or
//      says `undefined` when anything asynchronous is needed (a token to fetch or refresh, a DPoP
//      key to import, a body, a shared secret to check, an error to answer);
//   2. this entry sends it with `fetch(target, init)` and streams the answer back; a 4xx goes back
//      to Rust (HotPath.answered), which evicts a rejected token and replays once, as the full
//      path does; a redirect goes back to Rust too (HotPath.relocated), which keeps its
//      `Location` inside the caller's profile and upstream;
//   3. everything else takes worker-build's entry (the full path in Rust), unchanged.
// Panic recovery is kept: a wasm trap marks the module for re-initialisation, which worker-build's
// entry performs before it runs again.
//
// What this entry takes from worker-build 0.8.7's module (and from the worker crate 0.8.7, whose
// init.rs sets `globalThis.__worker_init_state`) is checked once, when the module is evaluated: if
// a new worker-build changed any of it, the Worker fails to start with a message that names it,
// instead of failing on every request.
import { WorkerEntrypoint } from 'cloudflare:workers';
// A namespace import, so that a missing export is this entry's clear error, not a link error.
import * as m2m from './m2m.js';
import { intake, isPinned, listedProfiles, notPinned, profileFor, profileFromPath, Refused } from './intake.js';

function expect(holds, what) {
  if (!holds) {
    throw new Error(`worker-m2m entry: worker-build's module (m2m.js) ${what}; the pinned worker-build 0.8.7 (worker crate 0.8.7) is expected`);
  }
}

// worker-build's entry: a class the runtime constructs as `new Rust(ctx, env)` (WorkerEntrypoint's
// order), whose `fetch(request)` takes env and ctx from `this`. The full path calls that method
// with `{ env, ctx }` as `this`; re-initialisation constructs the class.
const Rust = m2m.default;
expect(typeof Rust === 'function' && Rust.prototype instanceof WorkerEntrypoint,
  'has no default export that extends WorkerEntrypoint (constructed with ctx, env)');
const handler = Rust.prototype.fetch;
expect(typeof handler === 'function', "has no fetch method on its default export's prototype");
const source = Function.prototype.toString.call(handler);
expect(/\bthis\.env\b/.test(source) && /\bthis\.ctx\b/.test(source),
  "has a fetch method that does not read this.env and this.ctx (the full path calls it with { env, ctx } as this)");

// The worker crate's record of a trapped (panicked) module, which worker-build's entry reads to
// re-initialise the module; this entry only sets its `criticalError`.
const state = globalThis.__worker_init_state;
expect(state !== null && typeof state === 'object' && typeof state.criticalError === 'boolean',
  'has no __worker_init_state with a boolean criticalError');

const { HotPath, Rpc } = m2m;
for (const name of ['ready', 'answered', 'unreachable', 'nonce', 'relocated', 'accepted']) {
  expect(typeof HotPath?.[name] === 'function', `exports no HotPath.${name} function`);
}
for (const name of ['tokenInfo', 'authorization', 'status']) {
  expect(typeof Rpc?.[name] === 'function', `exports no Rpc.${name} function`);
}

// The Durable Object class wrangler.toml binds (TOKEN_COORDINATOR).
export const { TokenCoordinator } = m2m;
expect(typeof TokenCoordinator === 'function', 'exports no TokenCoordinator class');

/** Says whether `e` is a wasm trap; if it is, marks the module for re-initialisation (the one
 *  place that sets the mark). */
function isTrap(e) {
  if (!(e instanceof WebAssembly.RuntimeError)) return false;
  state.criticalError = true;
  return true;
}

function trapped(e) {
  isTrap(e);
  throw e;
}

// What the caller asked for, by request object, for the full path: worker-build's handler
// hands Rust the request object unchanged, and Rust reads this (src/entry.rs) instead of the
// URL's text. A WeakMap: nothing outlives its request.
const askedOf = (globalThis[Symbol.for('worker-m2m.asked')] ??= new WeakMap());

// The full path: worker-build's handler, called without its per-request wrapping.
function full(request, env, ctx, asked) {
  askedOf.set(request, asked);
  return handler.call({ env, ctx }, request).catch(trapped);
}

const ES256 = { name: 'ECDSA', hash: 'SHA-256' };
const utf8 = new TextEncoder();

function base64url(buffer) {
  let text = '';
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function send(request, env, ctx, asked, [target, init, proofInput, key, backingOff]) {
  // DPoP (RFC 9449 §4.2): Rust made the proof's input; the signature is WebCrypto's (ES256 gives
  // the raw r || s a JWS wants).
  if (proofInput !== undefined) {
    let signature;
    try {
      signature = await crypto.subtle.sign(ES256, key, utf8.encode(proofInput));
    } catch {
      // The full path signs again, and answers with an honest error if it cannot either.
      return full(request, env, ctx, asked);
    }
    init.headers.set('dpop', `${proofInput}.${base64url(signature)}`);
  }
  let resp;
  try {
    resp = await fetch(target, init);
  } catch (e) {
    return HotPath.unreachable(String(e?.message ?? e));
  }
  // RFC 9449 §9: any answer may announce the API's next nonce.
  let nonceGiven = false;
  if (proofInput !== undefined) {
    const nonce = resp.headers.get('dpop-nonce');
    if (nonce !== null) nonceGiven = HotPath.nonce(env, asked, target, nonce);
  }
  if (resp.status >= 400 && resp.status < 500) {
    // A request object only now: Rust signs it again if it replays (it has no body).
    return HotPath.answered(asked, new Request(target, init), resp, env, ctx, nonceGiven).catch(trapped);
  }
  // Evictions back off after rejections: an acceptance ends that (Rust says when it matters).
  if (backingOff === true && resp.status < 400) HotPath.accepted(env, asked, init.headers.get('authorization'));
  if (resp.status >= 300 && resp.status < 400 && resp.headers.has('location')) {
    // The caller's fetch would follow it back through its binding: Rust makes it safe to.
    return HotPath.relocated(resp, env, asked, target);
  }
  return resp;
}

// --- The door ---------------------------------------------------------------------------
// Every entry reads what the caller asked for first (scripts/intake.mjs): only http(s) URLs,
// the path from one parse, the pin as data.

/** The proxy's answer to `request` from a caller whose binding carries `props` (`asked`: the
 *  profile `M2M.send` names). */
function proxied(request, env, ctx, props, asked) {
  let read;
  try {
    read = intake(request, env, props, asked);
  } catch (e) {
    if (e instanceof Refused) return e.response();
    throw e;
  }
  return handle(request, env, ctx, read);
}

/**
 * The RPC entrypoint for JavaScript callers: `[[services]] binding = "BILLING" service =
 * "worker-m2m" entrypoint = "M2M" props = { profile = "billing" }`. Types in
 * `types/worker-m2m.d.ts`.
 */
export class M2M extends WorkerEntrypoint {
  /** Sends `request` through the pinned profile (or, unpinned, the one its path names). */
  fetch(request) {
    return proxied(request, this.env, this.ctx, this.ctx.props);
  }

  /** Sends `request` through `profile`, named as an argument, never parsed from the URL. */
  send(profile, request) {
    return proxied(request, this.env, this.ctx, this.ctx.props, profile ?? undefined);
  }

  /** The current token's metadata (scheme, expiry, where this isolate got it), never the token. */
  tokenInfo(profile) {
    const props = this.ctx.props;
    return Rpc.tokenInfo(this.env, profileFor(this.env, props, profile), isPinned(this.env, props));
  }

  /** The status view: per profile the token's timings and source, the hold-down and its
   *  cause, the last error, counts since the isolate started, and the coordinator's view of
   *  the fleet. Never a token, never a credential. Pinned: the pinned profile; unpinned: the
   *  profile asked for, or every profile. */
  async status(profile) {
    const props = this.ctx.props;
    const chosen = profileFor(this.env, props, profile);
    const pinned = isPinned(this.env, props);
    const view = async (p) => JSON.parse(await Rpc.status(this.env, p, pinned));
    if (chosen !== undefined || listedProfiles(this.env).length === 0) return [await view(chosen)];
    if (!profileFromPath(this.env)) throw notPinned();
    // Every profile; one this caller may not see (its own PROXY_SHARED_SECRET) or whose
    // settings are broken shows only its name and why.
    return Promise.all(listedProfiles(this.env).map((p) => view(p).catch((e) => ({
      profile: p, error: String(e?.message ?? e).replace(/^worker-m2m: /, ''),
    }))));
  }

  /** The `Authorization` value itself, only where the profile opts in
   *  (`<PROFILE>_PROXY_EXPOSE_AUTHORIZATION = "true"`) and no `PROXY_SHARED_SECRET` guards it,
   *  for an SDK or a WebSocket. */
  authorization(profile) {
    const props = this.ctx.props;
    return Rpc.authorization(this.env, profileFor(this.env, props, profile), isPinned(this.env, props));
  }
}

export default {
  fetch(request, env, ctx) {
    // A binding to the default entrypoint may carry props too.
    return proxied(request, env, ctx, ctx.props);
  },
};

/** The proxy, for what the caller `asked` (`[path, pinned]`, see scripts/intake.mjs): the hot
 *  path when it can, else worker-build's entry (the full path). */
function handle(request, env, ctx, asked) {
  if (!state.criticalError) {
    let out;
    try {
      out = HotPath.ready(request, env, asked);
    } catch (e) {
      // Anything but a trap: the full path answers.
      if (!isTrap(e)) return full(request, env, ctx, asked);
    }
    if (out !== undefined) return send(request, env, ctx, asked, out).catch(trapped);
    // Left undefined by a trap just marked: re-initialise below.
    if (!state.criticalError) return full(request, env, ctx, asked);
  }
  // A trapped module: through worker-build's entry, which re-initialises it first (the one
  // place that does).
  askedOf.set(request, asked);
  return Reflect.construct(Rust, [ctx, env]).fetch(request);
}
