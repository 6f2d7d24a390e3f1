// The proxy's settings for a test: the local IdP and API, a registered client, overrides.
import { CLIENTS } from './idp.mjs';

export function proxySettings({ idp, api, client = CLIENTS.basic, extra = {} }) {
  return {
    OAUTH_TOKEN_URL: idp.tokenUrl,
    OAUTH_CLIENT_ID: client.id,
    OAUTH_CLIENT_SECRET: client.secret,
    OAUTH_AUTH_METHOD: client.method,
    OAUTH_SCOPE: 'read:things',
    UPSTREAM_ORIGIN: api.origin,
    ...extra,
  };
}
