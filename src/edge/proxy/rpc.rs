//! What the JavaScript entry's RPC methods (`scripts/entry.mjs`, the `M2M` entrypoint) ask of
//! the Rust side besides proxying: a profile's current token's metadata, and, only where the
//! profile opts in, its `Authorization` value. Rust Workers cannot export RPC methods with
//! `env` yet (workers-rs #720), so these are static methods the entry calls with its `env`.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use worker::Env;

use crate::base::error::Error;
use crate::base::log::Source;
use crate::edge::assembly::client::TokenClient;
use crate::edge::assembly::profiles::configs;
use crate::edge::platform::secrets;
use crate::settings::profile::Profile;

/// The RPC helpers, as static methods of an exported class (as [`super::hot::HotPath`]).
#[wasm_bindgen]
pub struct Rpc;

fn thrown(err: &Error) -> JsValue {
    // The error's text names settings and fields, never a secret.
    js_sys::Error::new(&format!("worker-m2m: {err}")).into()
}

fn client(env: &Env, profile: Option<&str>) -> Result<TokenClient, Error> {
    TokenClient::of(&*configs(env)?, env, profile)
}

/// The client of `profile` for a caller allowed it (see [`guarded`]), its settings read with
/// fresh Secrets Store credentials.
async fn allowed_client(
    env: &Env,
    profile: Option<&str>,
    pinned: bool,
) -> Result<TokenClient, JsValue> {
    secrets::refresh_due(env).await;
    guarded(env, profile, pinned).map_err(|e| thrown(&e))?;
    client(env, profile).map_err(|e| thrown(&e))
}

/// RPC calls carry no `Proxy-Authorization`: a profile guarded by its `PROXY_SHARED_SECRET`
/// answers them only for a binding its deployer pinned to it (props, as trusted as the secret).
fn guarded(env: &Env, profile: Option<&str>, pinned: bool) -> Result<(), Error> {
    let proxy = configs(env)?.proxy(env, profile)?;
    if proxy.shared_secret.is_some() && !pinned {
        return Err(Error::rejected(
            403,
            "unauthorized",
            "this profile requires its PROXY_SHARED_SECRET: an RPC caller must be pinned to it",
        ));
    }
    Ok(())
}

#[wasm_bindgen]
impl Rpc {
    /// The current token of `profile` (`undefined`: the unprefixed settings), obtained if need
    /// be, as `{ profile, scheme, expiresAt, expiresIn, source }`: never the token itself.
    /// `source` says where this isolate got it: `kv`, `coordinator` or `endpoint`.
    #[wasm_bindgen(js_name = tokenInfo)]
    pub async fn token_info(
        env: Env,
        profile: Option<String>,
        pinned: bool,
    ) -> Result<JsValue, JsValue> {
        let client = allowed_client(&env, profile.as_deref(), pinned).await?;
        let token = client.token().await.map_err(|e| thrown(&e))?;
        let now = crate::edge::platform::js::now_secs();
        let source = match token.obtained() {
            Some(Source::Kv) => "kv",
            Some(Source::Coordinator) => "coordinator",
            Some(Source::Network) | None => "endpoint",
            Some(Source::Memory) => "memory",
        };
        let info = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&info, &k.into(), &v);
        };
        set("profile", profile.map_or(JsValue::NULL, JsValue::from));
        set("scheme", token.scheme().as_str().into());
        set("expiresAt", (token.expires_at() as f64).into());
        set(
            "expiresIn",
            (token.expires_at().saturating_sub(now) as f64).into(),
        );
        set("source", source.into());
        Ok(info.into())
    }

    /// The status view of `profile` (see [`TokenClient::status`]) as JSON text, for a caller
    /// allowed its `tokenInfo`: never a token, never a credential.
    pub async fn status(
        env: Env,
        profile: Option<String>,
        pinned: bool,
    ) -> Result<String, JsValue> {
        let client = allowed_client(&env, profile.as_deref(), pinned).await?;
        Ok(client.status().await)
    }

    /// The `Authorization` value (`Bearer <token>`) of `profile`'s current token, for a caller
    /// that must hand it to an SDK or a WebSocket: only when the profile's settings opt in
    /// (`PROXY_EXPOSE_AUTHORIZATION = "true"`), a clear refusal otherwise. A DPoP token needs a
    /// proof per request, which only the proxy makes: refused too. So is a profile guarded by a
    /// `PROXY_SHARED_SECRET`: RPC carries no secret, and a pin is only the word of whoever
    /// deployed the caller, so it cannot stand in for the secret where the token itself is
    /// handed out (security review 2026-12-07, L2).
    pub async fn authorization(
        env: Env,
        profile: Option<String>,
        pinned: bool,
    ) -> Result<String, JsValue> {
        secrets::refresh_due(&env).await;
        guarded(&env, profile.as_deref(), pinned).map_err(|e| thrown(&e))?;
        let configs = configs(&env).map_err(|e| thrown(&e))?;
        let proxy = configs
            .proxy(&env, profile.as_deref())
            .map_err(|e| thrown(&e))?;
        let setting = |name: &str| match profile.as_deref().map(Profile::new) {
            Some(Ok(p)) => format!("{}{name}", p.prefix()),
            _ => name.to_owned(),
        };
        if proxy.shared_secret.is_some() {
            return Err(thrown(&Error::rejected(
                403,
                "authorization_not_exposed",
                "this profile is guarded by a PROXY_SHARED_SECRET: its token is not handed out \
                 over RPC, where no secret is presented; send requests through the proxy",
            )));
        }
        if !proxy.expose_authorization {
            return Err(thrown(&Error::rejected(
                403,
                "authorization_not_exposed",
                format!(
                    "this profile does not hand out its token; set {} = \"true\" to allow it",
                    setting("PROXY_EXPOSE_AUTHORIZATION")
                ),
            )));
        }
        let client = TokenClient::of(&configs, &env, profile.as_deref()).map_err(|e| thrown(&e))?;
        let token = client.token().await.map_err(|e| thrown(&e))?;
        if token.dpop_key().is_some() {
            return Err(thrown(&Error::rejected(
                403,
                "authorization_not_exposed",
                "a DPoP token is useless without a proof per request: send the request through the proxy",
            )));
        }
        Ok(token.authorization().expose().to_owned())
    }
}
