//! The host's own APIs, served in-process through the broker like any service's.
//!
//! Params are positional and checked the way node-rpc's validators report them
//! (`Parameter 1 must be string`, code -32001); permission failures are `Not authorized`
//! (-32003); any other handler failure is -32003 with its message; an unknown method is
//! -32601 `Method not found: {name}` (the original answered a JavaScript TypeError with
//! -32000 there).

mod adb;
mod inspect;
mod services;
mod sessions;
pub(crate) mod users;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use atek_api::jsonrpc::RpcError;
use axum::http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Caller;
use crate::broker::HostApi;
use crate::host::HostState;
use crate::web::RequestMeta;

/// What a host API call knows of the HTTP request that carried it, and the cookie it may
/// set on the answer (login, logout).
#[derive(Debug)]
pub(crate) struct CallContext<'a> {
    /// Who calls; None for an anonymous caller.
    pub(crate) caller: Option<Arc<Caller>>,
    /// Where the request went and who sent it.
    pub(crate) meta: Option<&'a RequestMeta>,
    /// The request's `session` cookie values, authenticated or not.
    pub(crate) session_tokens: Vec<&'a str>,
    /// The client's address as a proxy on loopback reports it (`X-Forwarded-For`).
    forwarded_for: Option<IpAddr>,
    set_cookie: Mutex<Option<HeaderValue>>,
}

impl<'a> CallContext<'a> {
    /// The context of one gateway request.
    pub(crate) fn new(
        caller: Option<Arc<Caller>>,
        meta: Option<&'a RequestMeta>,
        headers: &'a HeaderMap,
    ) -> Self {
        Self {
            caller,
            meta,
            session_tokens: crate::auth::cookie_values(headers, crate::auth::SESSION_COOKIE)
                .take(4)
                .collect(),
            forwarded_for: headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok()),
            set_cookie: Mutex::new(None),
        }
    }

    /// The client's address (loopback when unknown). Behind a reverse proxy on loopback
    /// (the TLS set-up the README describes) every peer is loopback: the client is then
    /// the one the proxy names last in `X-Forwarded-For`, so one client's failed logins do
    /// not lock everyone out.
    pub(crate) fn peer(&self) -> IpAddr {
        let peer = self
            .meta
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |m| m.peer);
        match self.forwarded_for {
            Some(client) if peer.to_canonical().is_loopback() => client,
            _ => peer,
        }
    }

    /// Sets the session cookie on the answer (`None` clears it).
    pub(crate) fn set_session(&self, host: &HostState, token: Option<&str>) {
        let site = self
            .meta
            .map(|m| m.site.clone())
            .unwrap_or(crate::web::Site {
                scheme: "http",
                port: None,
                target: crate::web::Target::Main,
            });
        *self.set_cookie.lock().unwrap_or_else(|p| p.into_inner()) =
            crate::web::session_cookie(host, &site, token);
    }

    /// The cookie to set, once the calls are done.
    pub(crate) fn take_cookie(&self) -> Option<HeaderValue> {
        self.set_cookie
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Calls `method` of a host API with the raw params array.
pub(crate) async fn call(
    host: &HostState,
    ctx: &CallContext<'_>,
    api: HostApi,
    method: &str,
    params: &str,
) -> Result<Value, RpcError> {
    let params = Params::parse(params)?;
    match (api, ctx.caller.as_deref()) {
        // whoami and login take anonymous callers.
        (HostApi::Sessions, _) => sessions::call(host, ctx, method, &params).await,
        (_, None) => Err(RpcError::not_authorized()),
        (HostApi::Inspect, Some(caller)) => inspect::call(host, caller, method, &params).await,
        (HostApi::Services, Some(caller)) => services::call(host, caller, method, &params).await,
        (HostApi::Users, Some(caller)) => users::call(host, caller, method, &params).await,
        (HostApi::Adb, Some(caller)) => adb::call(host, caller, method, &params).await,
    }
}

/// Positional params with node-rpc-style validation messages.
pub(crate) struct Params(Vec<Value>);

impl Params {
    fn parse(raw: &str) -> Result<Self, RpcError> {
        serde_json::from_str(raw)
            .map(Self)
            .map_err(|e| RpcError::param(0, format!("is not valid JSON: {e}")))
    }

    /// Param `i` as a string.
    pub(crate) fn string(&self, i: usize) -> Result<&str, RpcError> {
        match self.0.get(i) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(RpcError::param(i, "must be string")),
        }
    }

    /// Param `i`, whatever it is.
    pub(crate) fn value(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }

    /// Param `i` as an object of type `T`, or None when it is missing or null.
    pub(crate) fn optional_object<T: DeserializeOwned>(
        &self,
        i: usize,
    ) -> Result<Option<T>, RpcError> {
        match self.0.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.object(i).map(Some),
        }
    }

    /// Param `i` as an object of type `T`.
    pub(crate) fn object<T: DeserializeOwned>(&self, i: usize) -> Result<T, RpcError> {
        let value = self.0.get(i).cloned().unwrap_or(Value::Null);
        if !value.is_object() {
            return Err(RpcError::param(i, "must be object"));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                RpcError::param(i, inner)
            } else {
                RpcError::param(i, format!("/{} {inner}", path.replace('.', "/")))
            }
        })
    }
}

/// Serialises a handler's result.
pub(crate) fn to_value(v: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::general(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_messages_follow_node_rpc() {
        let p = Params::parse(r#"[1, {"sourceUrl": 5}]"#).unwrap();
        assert_eq!(
            p.string(0).unwrap_err().message,
            "Parameter 1 must be string"
        );
        let e = p.object::<atek_api::services::InstallOpts>(1).unwrap_err();
        assert_eq!(e.code, -32001);
        assert!(
            e.message.starts_with("Parameter 2 /sourceUrl invalid type"),
            "{}",
            e.message
        );
        assert_eq!(
            p.string(5).unwrap_err().message,
            "Parameter 6 must be string"
        );
    }
}
