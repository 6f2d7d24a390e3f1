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

/** Two profiles, billing (read) and crm (read and write), each with its own API, both clients
 *  of `idp`: the pinning and boundary tests' proxy. */
export function twoProfileSettings({ idp, billingApi, crmApi, extra = {} }) {
  return {
    M2M_PROFILES: 'billing, crm',
    BILLING_OAUTH_TOKEN_URL: idp.tokenUrl,
    BILLING_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    BILLING_OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
    BILLING_OAUTH_SCOPE: 'read:things',
    BILLING_UPSTREAM_ORIGIN: billingApi.origin,
    CRM_OAUTH_TOKEN_URL: idp.tokenUrl,
    CRM_OAUTH_CLIENT_ID: CLIENTS.basic.id,
    CRM_OAUTH_CLIENT_SECRET: CLIENTS.basic.secret,
    CRM_OAUTH_SCOPE: 'read:things write:things',
    CRM_UPSTREAM_ORIGIN: crmApi.origin,
    ...extra,
  };
}
