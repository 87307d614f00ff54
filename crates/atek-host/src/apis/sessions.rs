//! `atek.cloud/user-sessions-api` (reference §4.4): whoami, login, logout.
//!
//! Login is rate limited per client address and per account ([`crate::users::LoginLimiter`]),
//! and sets the `session` cookie on the gateway's answer; logout ends the session named by
//! the request's cookie and clears it.

use atek_api::jsonrpc::RpcError;
use atek_api::users::{UserCreds, UserSession};
use serde_json::Value;

use super::{CallContext, Params, to_value};
use crate::host::HostState;

/// The answer to a wrong username or password (the original's words).
const INCORRECT: &str = "Username or password was incorrect";

pub(super) async fn call(
    host: &HostState,
    ctx: &CallContext<'_>,
    method: &str,
    params: &Params,
) -> Result<Value, RpcError> {
    match method {
        "whoami" => to_value(whoami(host, ctx)),
        "login" => {
            let creds: UserCreds = params.object(0)?;
            let peer = ctx.peer();
            let now = std::time::Instant::now();
            host.limiter
                .check(peer, &creds.username, now)
                .map_err(|throttled| RpcError::general(throttled.to_string()))?;
            let Some(user) = host.users.verify(&creds.username, &creds.password).await else {
                host.limiter.failed(peer, &creds.username, now);
                tracing::info!(%peer, "failed login");
                return Err(RpcError::general(INCORRECT));
            };
            host.limiter.succeeded(peer, &creds.username);
            let token = host.sessions.create(&user.key).map_err(|e| {
                tracing::error!(error = %e, "cannot save a session");
                RpcError::general("The host could not save the session; its log says why")
            })?;
            ctx.set_session(host, Some(token.expose()));
            tracing::info!(user = %user.key, "login");
            to_value(UserSession {
                is_active: true,
                username: Some(user.username),
            })
        }
        "logout" => {
            if ctx.caller.is_none() {
                return Err(RpcError::not_authorized());
            }
            for token in &ctx.session_tokens {
                host.sessions.revoke(token).map_err(|e| {
                    tracing::error!(error = %e, "cannot save the sessions");
                    RpcError::general("The host could not end the session; its log says why")
                })?;
            }
            ctx.set_session(host, None);
            Ok(Value::Null)
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn whoami(host: &HostState, ctx: &CallContext<'_>) -> UserSession {
    let username = ctx.caller.as_deref().and_then(|caller| {
        if caller.user.is_system() {
            Some("system".to_owned())
        } else {
            host.users.get(&caller.user).map(|u| u.username)
        }
    });
    UserSession {
        is_active: username.is_some(),
        username,
    }
}
