// A TypeScript Worker that calls the billing API through worker-m2m, the RPC way: its binding
// pins the profile (`props = { profile = "billing" }` in wrangler.toml), so the invoice id it
// takes from its own caller, however hostile, can never switch credentials.
import type { M2M } from '../../../types/worker-m2m';

interface Env {
  /** worker-m2m's `M2M` entrypoint, pinned to the billing profile. */
  BILLING: Service<M2M>;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === '/token-info') {
      // Metadata only: when the token expires and where the proxy got it, never the token.
      return Response.json(await env.BILLING.tokenInfo());
    }
    if (url.pathname === '/health') {
      // The status view, typed: is billing held down, and since when was its token obtained?
      const [billing] = await env.BILLING.status();
      const held = billing.hold_down;
      return Response.json({
        ok: held === null,
        cause: held?.cause ?? null,
        tokenFrom: billing.token?.obtained_from ?? null,
        fleetTokenRequests: billing.coordinator && 'events' in billing.coordinator
          ? billing.coordinator.events.token_requests
          : null,
      }, { status: held === null ? 200 : 503 });
    }
    if (url.pathname === '/authorization') {
      // Refused unless billing opts in (BILLING_PROXY_EXPOSE_AUTHORIZATION = "true").
      try {
        return new Response(await env.BILLING.authorization());
      } catch (e) {
        return Response.json({ refused: (e as Error).message }, { status: 403 });
      }
    }
    // Untrusted text in the path: with the profile pinned, `../../crm/...` stays on billing.
    const id = url.searchParams.get('id') ?? '1';
    const upstream = await env.BILLING.fetch(new Request(`https://m2m/v1/invoices/${id}`));
    return new Response(upstream.body, { status: upstream.status, headers: upstream.headers });
  },
} satisfies ExportedHandler<Env>;
