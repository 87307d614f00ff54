//! The proxy transport: a WebSocket at `/_atek/gateway?api=ID` piped to the service.
//!
//! Authentication is required (the original let anyone in): a `Authorization: Bearer`
//! header, or RFC 6750's `access_token` query parameter for clients that cannot set headers,
//! such as node-rpc's `ws()` (`ws({api, access_token})` puts it in the query). The token is
//! never passed on.
//!
//! The host relays the handshake to the service (same key, so the service's
//! `Sec-WebSocket-Accept` is valid for the client), with the identity headers, and answers
//! the client only once the service has accepted. Then it splices the two connections byte
//! for byte: client frames are already masked as a service expects, service frames unmasked
//! as a client expects, so nothing is parsed or re-framed, and bytes either side sent early
//! (buffered with the handshake) are passed on first.

use std::sync::Arc;

use atek_api::services::Transport;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

use super::{GatewayError, api_param};
use crate::broker::Provider;
use crate::host::HostState;
use crate::server::OpenConnection;
use crate::web::RequestMeta;

/// Handshake headers passed from the client to the service.
const FORWARDED_REQUEST: [HeaderName; 4] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// Handshake headers passed from the service back to the client.
const FORWARDED_RESPONSE: [HeaderName; 5] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

/// `GET /_atek/gateway` with `Upgrade: websocket`.
pub async fn handle(
    State(host): State<Arc<HostState>>,
    mut req: Request<Body>,
) -> Result<Response<Body>, GatewayError> {
    let is_websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return Err(GatewayError::BadRequest(
            "GET /_atek/gateway is the proxy transport and needs a WebSocket upgrade; JSON-RPC calls use POST".into(),
        ));
    }
    let query = req.uri().query().map(str::to_owned);
    let api = api_param(query.as_deref()).ok_or(GatewayError::MissingApi)?;
    let caller = crate::auth::authenticate(&host, req.headers(), &crate::users::Scope::Host)
        .or_else(|| {
            let token = crate::web::query_param(query.as_deref(), "access_token")?;
            let caller = host.auth.resolve_token(&token)?;
            Some(crate::auth::with_current_role(&host, caller))
        })
        .ok_or(GatewayError::Unauthorized)?;
    // A WebSocket handshake is a GET, but one a page of any site can make with the cookie.
    let cors = super::cors_origin(
        &host,
        req.extensions().get::<RequestMeta>(),
        req.headers(),
        &api,
        Transport::Proxy,
    );
    if caller.session && cors.refused {
        return Err(GatewayError::CrossSite);
    }
    let Some(Provider::Service(export)) = host.broker.find(&api, Transport::Proxy) else {
        return Err(GatewayError::NoProxyProvider {
            api: serde_json::Value::from(api).to_string(),
        });
    };

    let unreachable = |e: &dyn std::fmt::Display| {
        GatewayError::BadUpstream(format!(
            "The service {} providing {api} could not be reached: {e}",
            export.id
        ))
    };
    let (mut sender, driver) = export
        .upstream
        .open_upgradable()
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(driver);

    let mut upstream_req = Request::get(export.path.clone())
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(super::AUTH_USER, caller.user.as_str())
        .header(
            super::AUTH_SERVICE,
            caller.service_for(&export.key).as_str(),
        );
    for name in FORWARDED_REQUEST {
        if let Some(value) = req.headers().get(&name) {
            upstream_req = upstream_req.header(name, value);
        }
    }
    let upstream_req = upstream_req
        .body(Body::empty())
        .map_err(|e| GatewayError::BadRequest(format!("bad handshake: {e}")))?;
    let upstream_resp = tokio::time::timeout(
        host.config.gateway_timeout,
        sender.send_request(upstream_req),
    )
    .await
    .map_err(|_| unreachable(&"it did not answer the WebSocket handshake in time"))?
    .map_err(|e| unreachable(&e))?;
    if upstream_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(GatewayError::BadUpstream(format!(
            "The service {} refused the WebSocket for {api} (it answered {})",
            export.id,
            upstream_resp.status()
        )));
    }

    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for name in FORWARDED_RESPONSE {
        if let Some(value) = upstream_resp.headers().get(&name) {
            response = response.header(name, value);
        }
    }
    let response = response
        .body(Body::empty())
        .map_err(|e| GatewayError::BadUpstream(format!("bad handshake from the service: {e}")))?;

    let held = req.extensions_mut().remove::<OpenConnection>();
    splice(
        hyper::upgrade::on(&mut req),
        hyper::upgrade::on(upstream_resp),
        export.id.clone(),
        held,
    );
    Ok(response)
}

/// Once both sides have switched protocols, copies bytes between them until either ends
/// (the gateway's proxy transport and WebSockets to apps on their subdomains). `held`, the
/// client connection's place in its event loop's count, is kept until then.
pub(crate) fn splice(
    client: hyper::upgrade::OnUpgrade,
    service: hyper::upgrade::OnUpgrade,
    id: atek_core::ServiceId,
    held: Option<OpenConnection>,
) {
    tokio::spawn(async move {
        let _held = held;
        let (client, service) = match tokio::try_join!(client, service) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(service = %id, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut service = TokioIo::new(service);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut service).await {
            tracing::debug!(service = %id, error = %e, "pipe ended");
        }
    });
}
