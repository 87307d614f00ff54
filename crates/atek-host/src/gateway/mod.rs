//! The API gateway at `/_atek/gateway?api=ID` (reference §3).
//!
//! `POST` carries JSON-RPC ([`rpc`]); a WebSocket upgrade is the proxy transport
//! ([`proxy`]). Both authenticate the caller, find the first provider registered for the API
//! id, and stamp `Atek-Auth-User` / `Atek-Auth-Service` themselves: nothing a caller sends
//! under those names ever reaches a service.

pub mod proxy;
pub mod rpc;

use atek_api::services::Transport;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::broker::Provider;
use crate::host::HostState;
use crate::web::RequestMeta;

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
    /// A call authenticated by a login cookie from a page of another site.
    #[error(
        "Cross-site request refused: a call made with your login cookie must come from the host's own pages or from the app that provides the API"
    )]
    CrossSite,
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
            Self::CrossSite => plain(StatusCode::FORBIDDEN, self.to_string()),
            Self::BadUpstream(_) => plain(StatusCode::BAD_GATEWAY, self.to_string()),
        }
    }
}

/// The `api` query parameter, decoded.
pub(crate) fn api_param(query: Option<&str>) -> Option<String> {
    crate::web::query_param(query, "api").filter(|v| !v.is_empty())
}

/// What a browser's origin may do at the gateway (see [`crate::web`] on cross-site
/// requests): the host's own origin and the origin of the app providing the API are
/// allowed, with credentials.
#[derive(Debug, Default)]
pub(crate) struct Cors {
    /// A call authenticated by cookie alone must be refused.
    pub(crate) refused: bool,
    /// The origin to echo in `Access-Control-Allow-Origin`.
    pub(crate) allow: Option<HeaderValue>,
}

/// The [`Cors`] of a request to `api`.
pub(crate) fn cors_origin(
    host: &HostState,
    meta: Option<&RequestMeta>,
    headers: &HeaderMap,
    api: &str,
    transport: Transport,
) -> Cors {
    // Services and scripts send neither header: nothing to work out on their hot path.
    let Some(meta) = meta
        .filter(|_| headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site"))
    else {
        return Cors::default();
    };
    let domain = &host.config.domain;
    let main = meta.site.main_origin(domain);
    let provider = match host.broker.find(api, transport) {
        Some(Provider::Service(export)) => Some(meta.site.app_origin(domain, export.id.as_str())),
        _ => None,
    };
    let allowed: Vec<&str> = [Some(main.as_str()), provider.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    Cors {
        refused: crate::web::csrf(&Method::POST, headers, &allowed),
        allow: headers
            .get(header::ORIGIN)
            .filter(|o| allowed.iter().any(|a| a.as_bytes() == o.as_bytes()))
            .cloned(),
    }
}

/// Lets the allowed origin read the answer, with credentials.
pub(crate) fn add_cors(response: &mut Response, allow: Option<&HeaderValue>) {
    let Some(origin) = allow else {
        return;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// `OPTIONS /_atek/gateway`: the CORS preflight of a browser call from an app's page.
pub(crate) async fn preflight(
    axum::extract::State(host): axum::extract::State<std::sync::Arc<HostState>>,
    req: axum::http::Request<axum::body::Body>,
) -> Response {
    let api = api_param(req.uri().query()).unwrap_or_default();
    let cors = cors_origin(
        &host,
        req.extensions().get::<RequestMeta>(),
        req.headers(),
        &api,
        Transport::Rpc,
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if cors.allow.is_some() {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, authorization"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    add_cors(&mut response, cors.allow.as_ref());
    response
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
