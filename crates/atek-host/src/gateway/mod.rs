//! The API gateway at `/_atek/gateway?api=ID` (reference §3).
//!
//! `POST` carries JSON-RPC ([`rpc`]); a WebSocket upgrade is the proxy transport
//! ([`proxy`]). Both authenticate the caller, find the first provider registered for the API
//! id, and stamp `Atek-Auth-User` / `Atek-Auth-Service` themselves: nothing a caller sends
//! under those names ever reaches a service.

pub mod proxy;
pub mod rpc;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};

use crate::auth::Caller;
use crate::host::HostState;

/// The identity headers the host stamps on every forwarded request (reference §3.6).
pub const AUTH_USER: HeaderName = HeaderName::from_static("atek-auth-user");
/// See [`AUTH_USER`].
pub const AUTH_SERVICE: HeaderName = HeaderName::from_static("atek-auth-service");

/// The body of a 401, exactly as the original sent it.
pub const NOT_AUTHORIZED_BODY: &str = r#"{"error":true,"message":"Not authorized"}"#;

/// Faults answered with an HTTP status rather than a JSON-RPC envelope.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No valid credentials.
    #[error("Not authorized")]
    Unauthorized,
    /// The request names no API.
    #[error("the request names no API: add ?api=ID to /_atek/gateway")]
    MissingApi,
    /// The body is larger than `maxBodyBytes`.
    #[error("the request body is larger than the limit of {limit} bytes (maxBodyBytes)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("Parse error")]
    NotJson,
    /// No provider for a proxy-transport API.
    #[error("No service available which matches {{\"transport\":\"proxy\",\"api\":{api}}}")]
    NoProxyProvider {
        /// The API id, JSON-quoted.
        api: String,
    },
    /// The service could not be reached or refused the upgrade.
    #[error("{0}")]
    BadUpstream(String),
    /// The request is not what this endpoint takes.
    #[error("{0}")]
    BadRequest(String),
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        use atek_api::jsonrpc::{RpcError, codes, error_body};
        use axum::http::StatusCode;
        let json = |status: StatusCode, body: String| {
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        };
        let plain = |status: StatusCode, message: String| {
            let body = serde_json::json!({"error": true, "message": message}).to_string();
            json(status, body)
        };
        match self {
            Self::Unauthorized => json(StatusCode::UNAUTHORIZED, NOT_AUTHORIZED_BODY.to_owned()),
            Self::TooLarge { .. } => json(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_body(
                    "null",
                    &RpcError::new(codes::INVALID_REQUEST, self.to_string()),
                ),
            ),
            Self::NotJson => json(
                StatusCode::BAD_REQUEST,
                error_body("null", &RpcError::new(codes::PARSE_ERROR, "Parse error")),
            ),
            Self::MissingApi | Self::BadRequest(_) => {
                plain(StatusCode::BAD_REQUEST, self.to_string())
            }
            Self::NoProxyProvider { .. } => plain(StatusCode::NOT_FOUND, self.to_string()),
            Self::BadUpstream(_) => plain(StatusCode::BAD_GATEWAY, self.to_string()),
        }
    }
}

/// The `api` query parameter, decoded.
pub(crate) fn api_param(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "api")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The caller named by the `Authorization` header.
pub(crate) fn caller_from_headers(host: &HostState, headers: &HeaderMap) -> Option<Arc<Caller>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    host.auth.resolve_header(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_param_is_decoded() {
        assert_eq!(
            api_param(Some("api=atek.cloud%2Fservices-api&x=1")).as_deref(),
            Some("atek.cloud/services-api")
        );
        assert_eq!(api_param(Some("x=1")), None);
        assert_eq!(api_param(Some("api=")), None);
        assert_eq!(api_param(None), None);
    }

    #[test]
    fn no_proxy_provider_message_matches_the_rpc_one() {
        let e = GatewayError::NoProxyProvider {
            api: "\"a/b\"".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"No service available which matches {"transport":"proxy","api":"a/b"}"#
        );
    }
}
