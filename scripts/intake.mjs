// What a caller asked for, read once at the proxy's door (bundled next to scripts/entry.mjs by
// scripts/build.sh). Every entry (the default fetch, M2M.fetch, M2M.send and an exposed route)
// passes here before any setting or token is touched, and what it decides travels to Rust as
// data, `[path, pinned]`:
//   - `path` is `url.pathname + url.search` of the one parse of the request's URL (WHATWG, only
//     `http:` and `https:`): Rust never reads a URL's text again. Two parsers that disagreed
//     about where a non-http URL's path starts were how a pinned caller reached another
//     profile (security review 2026-12-07, H1);
//   - `pinned` is the profile the caller's binding pins (`props = { profile = "billing" }`, set
//     by whoever deploys the caller: request text cannot change it), or the one `M2M.send`
//     names. A pinned request's path is never read for a profile.

/** The names `M2M_PROFILES` lists, as the Rust side reads them. */
export function listedProfiles(env) {
  const raw = typeof env.M2M_PROFILES === 'string' ? env.M2M_PROFILES : '';
  return raw.split(',').map((name) => name.trim()).filter(Boolean);
}

/** A JSON error like the proxy's own (`{ error, error_description }`). */
function jsonError(status, error, description) {
  return new Response(JSON.stringify({ error, error_description: description }), {
    status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  });
}

/** A call refused before it reaches the proxy: thrown to RPC callers, answered to fetch. */
export class Refused extends Error {
  constructor(status, code, description) {
    super(`worker-m2m: ${description}`);
    this.status = status;
    this.code = code;
    this.description = description;
  }

  response() {
    return jsonError(this.status, this.code, this.description);
  }
}

/** `PROXY_PROFILE_FROM_PATH` as the Rust side reads a flag: `true` or `false` in any case (or a
 *  TOML boolean), `true` when unset, a configuration error otherwise. */
export function profileFromPath(env) {
  const v = env.PROXY_PROFILE_FROM_PATH;
  if (v === undefined || v === null || v === true) return true;
  if (v === false) return false;
  const s = String(v).trim().toLowerCase();
  if (s === 'true' || s === 'false') return s === 'true';
  throw new Refused(500, 'configuration_error', 'PROXY_PROFILE_FROM_PATH: must be true or false');
}

export const notPinned = () => new Refused(403, 'profile_not_pinned',
  'PROXY_PROFILE_FROM_PATH is false: bind this proxy with props = { profile = "<name>" }');

/** The profile the caller's binding pins: `undefined` for no props (or empty ones); a string
 *  `props.profile` that M2M_PROFILES lists; anything else is a configuration error naming
 *  `props`: a mistyped `{ Profile = "billing" }` must not silently unpin the binding. */
export function pinOf(env, props) {
  if (props === undefined || props === null) return undefined;
  if (typeof props !== 'object' || Array.isArray(props)) {
    throw new Refused(500, 'configuration_error', 'props: the caller\'s binding carries props that are not an object (props = { profile = "<name>" })');
  }
  if (Object.keys(props).length === 0) return undefined;
  const pinned = props.profile;
  if (typeof pinned !== 'string') {
    throw new Refused(500, 'configuration_error', 'props: the caller\'s binding carries props without a string profile (props = { profile = "<name>" })');
  }
  if (!listedProfiles(env).includes(pinned)) {
    throw new Refused(500, 'configuration_error',
      `props.profile: the caller's binding pins a profile that M2M_PROFILES does not list (${JSON.stringify(pinned).slice(0, 64)})`);
  }
  return pinned;
}

/** The profile a call of this binding uses: the pinned one, or `asked` when nothing is pinned
 *  (unless `PROXY_PROFILE_FROM_PATH` is false); asking for another than the pinned one is
 *  refused. `undefined`: none (the path chooses, with profiles). */
export function profileFor(env, props, asked) {
  const pinned = pinOf(env, props);
  if (pinned === undefined) {
    if (asked === undefined || asked === null) return undefined;
    if (!profileFromPath(env)) throw notPinned();
    if (!listedProfiles(env).includes(asked)) throw new Refused(404, 'unknown_profile', 'no such profile');
    return asked;
  }
  if (asked !== undefined && asked !== null && asked !== pinned) {
    throw new Refused(403, 'profile_pinned', `this binding is pinned to profile ${pinned}`);
  }
  return pinned;
}

/** Whether the caller's binding pins a profile (its deployer's word, not proof). */
export function isPinned(env, props) {
  return pinOf(env, props) !== undefined;
}

/** What `request` from a caller whose binding carries `props` asks for, as `[path, pinned]`
 *  (see the top of this file); `asked`: the profile `M2M.send` names. Throws `Refused`. */
export function intake(request, env, props, asked) {
  let url;
  try {
    url = new URL(request.url);
  } catch {
    throw new Refused(400, 'invalid_request', 'request URL is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new Refused(400, 'invalid_request', 'request URL must be an http: or https: URL');
  }
  const profile = profileFor(env, props, asked);
  if (profile === undefined && !profileFromPath(env) && listedProfiles(env).length > 0) throw notPinned();
  return [url.pathname + url.search, profile];
}
