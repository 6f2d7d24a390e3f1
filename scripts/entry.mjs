// The proxy's JavaScript entry. scripts/build.sh puts it in build/index.js, in front of the module
// worker-build makes (moved to build/m2m.js), so that a request whose token is already in memory
// runs no Rust future at all:
//   1. HotPath.ready(request, env), one synchronous call into the wasm, makes the signed upstream
//      request as [target, init] (routing, origin lock, header policy and token are decided in
//      Rust, as always; with DPoP also the proof's input and the key, and this entry signs), or
//      says `undefined` when anything asynchronous is needed (a token to fetch or refresh, a DPoP
//      key to import, a body, a shared secret to check, an error to answer);
//   2. this entry sends it with `fetch(target, init)` and streams the answer back; a 4xx goes back
//      to Rust (HotPath.answered), which evicts a rejected token and replays once, as the full
//      path does;
//   3. everything else takes worker-build's entry (the full path in Rust), unchanged.
// Panic recovery is kept: a wasm trap marks the module for re-initialisation, which worker-build's
// entry performs before it runs again.
import Rust, { HotPath, TokenCoordinator } from './m2m.js';

export { TokenCoordinator };

// worker-build's record of a trapped (panicked) module; its entry re-initialises the module.
const state = globalThis.__worker_init_state;

function trapped(e) {
  if (e instanceof WebAssembly.RuntimeError) state.criticalError = true;
  throw e;
}

// The full path: worker-build's handler, called without its per-request wrapping.
function full(request, env, ctx) {
  return Rust.prototype.fetch.call({ env, ctx }, request).catch(trapped);
}

const ES256 = { name: 'ECDSA', hash: 'SHA-256' };
const utf8 = new TextEncoder();

function base64url(buffer) {
  let text = '';
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function send(request, env, ctx, [target, init, proofInput, key]) {
  // DPoP (RFC 9449 §4.2): Rust made the proof's input; the signature is WebCrypto's (ES256 gives
  // the raw r || s a JWS wants).
  if (proofInput !== undefined) {
    let signature;
    try {
      signature = await crypto.subtle.sign(ES256, key, utf8.encode(proofInput));
    } catch {
      // The full path signs again, and answers with an honest error if it cannot either.
      return full(request, env, ctx);
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
    if (nonce !== null) nonceGiven = HotPath.nonce(request, env, target, nonce);
  }
  if (resp.status >= 400 && resp.status < 500) {
    // A request object only now: Rust signs it again if it replays (it has no body).
    return HotPath.answered(request, new Request(target, init), resp, env, ctx, nonceGiven).catch(trapped);
  }
  return resp;
}

export default {
  fetch(request, env, ctx) {
    if (state.criticalError) {
      // Through worker-build's entry, which re-initialises the module first.
      return Reflect.construct(Rust, [ctx, env]).fetch(request);
    }
    let out;
    try {
      out = HotPath.ready(request, env);
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) {
        state.criticalError = true;
        return Reflect.construct(Rust, [ctx, env]).fetch(request);
      }
      out = undefined;
    }
    if (out !== undefined) return send(request, env, ctx, out).catch(trapped);
    return full(request, env, ctx);
  },
};
