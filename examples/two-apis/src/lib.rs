//! A Worker that answers `GET /summary` with what two APIs say, each called with its own
//! client credentials token: the profiles `billing` and `crm` (`M2M_PROFILES`).

use worker::{event, Context, Env, Method, Request, Response, Result};
use worker_m2m::TokenClient;

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    if req.path() != "/summary" {
        return Response::error("not found", 404);
    }
    // Cheap on every request: each profile's token lives in the isolate (and KV), not here.
    let billing = TokenClient::for_profile(&env, "billing")?;
    let crm = TokenClient::for_profile(&env, "crm")?;
    let invoices = Request::new(
        &format!("{}/invoices", env.var("BILLING_API")?),
        Method::Get,
    )?;
    let contacts = Request::new(&format!("{}/contacts", env.var("CRM_API")?), Method::Get)?;
    // Both at once; `fetch_with` refreshes each token ahead of expiry under ctx.waitUntil.
    let (invoices, contacts) = futures_util::join!(
        billing.fetch_with(invoices, &ctx),
        crm.fetch_with(contacts, &ctx)
    );
    let (mut invoices, mut contacts) = (invoices?, contacts?);
    Response::from_json(&serde_json::json!({
        "billing": { "status": invoices.status_code(), "body": invoices.text().await? },
        "crm": { "status": contacts.status_code(), "body": contacts.text().await? },
    }))
}
