// Types for worker-m2m's RPC entrypoint (`scripts/entry.mjs`, the class `M2M`), for JavaScript
// and TypeScript Workers that reach the proxy through a service binding:
//
//   [[services]]
//   binding = "BILLING"
//   service = "worker-m2m"
//   entrypoint = "M2M"
//   props = { profile = "billing" }
//
//   interface Env { BILLING: Service<M2M> }
import type { WorkerEntrypoint } from 'cloudflare:workers';

/** What a caller's binding may carry (`props`), set by whoever deploys the caller. */
export interface M2MProps {
  /** The profile (`M2M_PROFILES`) every call of this binding uses, whatever a path says. */
  profile?: string;
}

/** The current token's metadata: never the token. */
export interface TokenInfo {
  /** The profile it belongs to; `null` for a Worker without profiles. */
  profile: string | null;
  /** How it is presented (RFC 6750 `Bearer`, RFC 9449 `DPoP`). */
  scheme: 'Bearer' | 'DPoP';
  /** When the authorization server stops accepting it, Unix seconds. */
  expiresAt: number;
  /** Seconds until then. */
  expiresIn: number;
  /** Where this proxy isolate got it. */
  source: 'kv' | 'coordinator' | 'endpoint' | 'memory';
}

/** Where a token came from, or how requests were served. */
export type TokenSourceName = 'memory' | 'kv' | 'coordinator' | 'network';

/** One configuration's status view: times are Unix seconds; never a token or a credential. */
export interface Status {
  /** The profile; `null` for a Worker without profiles. */
  profile: string | null;
  /** Set instead of the rest when the profile cannot be shown to this caller or is broken. */
  error?: string;
  now: number;
  /** The token held, if any. */
  token: {
    scheme: 'Bearer' | 'DPoP';
    issued_at: number;
    expires_at: number;
    expires_in: number;
    fresh: boolean;
    /** When its refresh window opens, and whether it has. */
    refresh_at: number;
    refresh_due: boolean;
    obtained_from: Exclude<TokenSourceName, 'memory'> | null;
  } | null;
  /** The token endpoint is left alone until `until`; callers get `cause` meanwhile. */
  hold_down: { until: number; remaining_secs: number; code: string; cause: string } | null;
  /** Failed flights in a row: the outage schedule's step (0: none). */
  failed_flights: number;
  /** When an upstream's rejection may evict the token next: `window_secs` after the last
   *  eviction (2, doubling up to 3600 while new tokens keep being rejected; `backing_off` above
   *  2); `next_allowed_at` is `null` when a rejection would evict now; `reset_at` is the last
   *  acceptance that ended a backoff. */
  eviction: {
    window_secs: number;
    last_at: number | null;
    next_allowed_at: number | null;
    backing_off: boolean;
    reset_at: number | null;
  };
  in_flight: boolean;
  last_error: { at: number; code: string; status: number | null; detail: string } | null;
  /** The last token obtained from the token endpoint. */
  last_token_request: number | null;
  /** Calls for a token since the isolate made this source, by how they were served. */
  requests: Record<TokenSourceName | 'failed', number>;
  events: { token_requests: number; failures: number; fallbacks: number; evictions: number; replays: number };
  /** The coordinator's view of the fleet (the same fields, plus `fleet_seen_at` and
   *  `alarm_at`), `{ error }` when it could not be asked, `null` without one. */
  coordinator: (Omit<Status, 'profile' | 'coordinator'> & { fleet_seen_at: number | null; alarm_at: number | null }) | { error: string } | null;
}

/** The proxy's RPC methods. `fetch` and `send` answer as the proxy does: the upstream's response,
 *  or a JSON error `{ error, error_description }` with an honest status (403 `profile_pinned`
 *  for another profile than the pinned one, 500 `configuration_error` for a pinned profile
 *  `M2M_PROFILES` does not list). `tokenInfo` and `authorization` throw an `Error` whose
 *  message starts with `worker-m2m:` instead. */
export declare class M2M extends WorkerEntrypoint<unknown, M2MProps> {
  /** Sends `request` through the pinned profile (unpinned: the one its first path segment
   *  names), with the profile's token; the proxy's answer, or its JSON error. */
  fetch(request: Request): Promise<Response>;
  /** Sends `request` through `profile`, given as an argument, never parsed from the URL. */
  send(profile: string | null, request: Request): Promise<Response>;
  /** The current token's metadata, obtained if need be. */
  tokenInfo(profile?: string): Promise<TokenInfo>;
  /** The `Authorization` value itself (`Bearer ...`), only where the profile's settings opt
   *  in (`<PROFILE>_PROXY_EXPOSE_AUTHORIZATION = "true"`). */
  authorization(profile?: string): Promise<string>;
  /** The status view: the pinned profile's; unpinned, the profile asked for, or every one. */
  status(profile?: string): Promise<Status[]>;
}
