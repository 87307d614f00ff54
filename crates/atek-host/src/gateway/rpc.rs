//! JSON-RPC over `POST /_atek/gateway?api=ID`.
//!
//! The caller's envelope is parsed with its `id` and `params` left as raw JSON; the host
//! sends the provider a new envelope (its own id counter, the same method and params) and
//! wraps the provider's result or error back with the caller's id. Batches are answered in
//! order, their calls made concurrently.

use std::sync::Arc;

use atek_api::jsonrpc::{self, IncomingRequest, IncomingResponse, RpcError, codes};
use atek_api::services::Transport;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use serde_json::value::RawValue;

use super::{GatewayError, api_param};
use crate::apis::CallContext;
use crate::broker::{Provider, ServiceExport};
use crate::host::HostState;
use crate::upstream::UpstreamError;
use crate::web::RequestMeta;

/// The most calls one batch may carry: they run at once, so a large body of tiny calls must
/// not become tens of thousands of concurrent requests to services.
const MAX_BATCH: usize = 100;

/// Methods anyone may call without credentials (reference §3.2).
const ANONYMOUS: [(&str, &str); 2] = [
    ("atek.cloud/user-sessions-api", "whoami"),
    ("atek.cloud/user-sessions-api", "login"),
];

/// `POST /_atek/gateway` as a route of the router. The host's dispatcher (`web::handle`)
/// serves these calls itself before the router; this stays for requests that reach it.
pub async fn handle(State(host): State<Arc<HostState>>, req: Request<Body>) -> Response {
    let meta = req.extensions().get::<RequestMeta>().cloned();
    serve(&host, meta.as_ref(), req).await
}

/// Answers a `POST /_atek/gateway`.
pub(crate) async fn serve(
    host: &HostState,
    meta: Option<&RequestMeta>,
    req: Request<Body>,
) -> Response {
    match serve_inner(host, meta, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve_inner(
    host: &HostState,
    meta: Option<&RequestMeta>,
    req: Request<Body>,
) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let api = api_param(parts.uri.query()).ok_or(GatewayError::MissingApi)?;
    let caller = crate::auth::authenticate(host, headers, &crate::users::Scope::Host);
    let cors = super::cors_origin(host, meta, headers, &api, Transport::Rpc);
    // Only a bearer token proves the call is not a page of another site: a cookie or no
    // credentials at all (an anonymous login would plant a session) are checked.
    if caller.as_ref().is_none_or(|c| c.session) && cors.refused {
        return Err(GatewayError::CrossSite);
    }
    let limit = host.config.max_body_bytes;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > limit)
    {
        return Err(GatewayError::TooLarge { limit });
    }
    let bytes = crate::upstream::read_whole(body, limit)
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                GatewayError::TooLarge { limit }
            } else {
                GatewayError::BadRequest(format!("the request body could not be read: {e}"))
            }
        })?;

    let text = std::str::from_utf8(&bytes).map_err(|_| GatewayError::NotJson)?;
    let ctx = CallContext::new(caller, meta, headers);
    let mut response = answer(host, &ctx, &api, text).await?;
    if let Some(cookie) = ctx.take_cookie() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    super::add_cors(&mut response, cors.allow.as_ref());
    Ok(response)
}

/// Answers the JSON text of one request or batch.
async fn answer(
    host: &HostState,
    ctx: &CallContext<'_>,
    api: &str,
    text: &str,
) -> Result<Response, GatewayError> {
    let caller = ctx.caller.as_ref();
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|_| GatewayError::NotJson)?;
        // Boxed, as every rare path here: the future of a single call stays small.
        return Box::pin(answer_batch(host, ctx, api, items)).await;
    }

    let Some(request) = parse_request(text) else {
        // Only on this path is it worth telling "not JSON" from "not a request".
        serde_json::from_str::<&RawValue>(text).map_err(|_| GatewayError::NotJson)?;
        return if caller.is_some() {
            Ok(json_ok(invalid_request()))
        } else {
            Err(GatewayError::Unauthorized)
        };
    };
    if caller.is_none() && !is_anonymous(api, &request.method) {
        return Err(GatewayError::Unauthorized);
    }
    Ok(match call(host, ctx, api, &request).await {
        Some(body) => json_ok(body),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Answers a batch: its calls are made at once, and answered in order.
async fn answer_batch(
    host: &HostState,
    ctx: &CallContext<'_>,
    api: &str,
    items: Vec<&RawValue>,
) -> Result<Response, GatewayError> {
    let caller = ctx.caller.as_ref();
    let requests: Vec<Option<IncomingRequest<'_>>> =
        items.iter().map(|raw| parse_request(raw.get())).collect();
    let allowed = caller.is_some()
        || requests
            .iter()
            .all(|r| r.as_ref().is_some_and(|r| is_anonymous(api, &r.method)));
    if !allowed {
        return Err(GatewayError::Unauthorized);
    }
    if requests.is_empty() {
        return Ok(json_ok(invalid_request()));
    }
    if requests.len() > MAX_BATCH {
        let error = RpcError::new(
            codes::INVALID_REQUEST,
            format!(
                "a batch of {} calls is over the limit of {MAX_BATCH}; split it",
                requests.len()
            ),
        );
        return Ok(json_ok(jsonrpc::error_body("null", &error)));
    }
    let answers = futures_util::future::join_all(requests.iter().map(|r| async {
        match r {
            Some(r) => call(host, ctx, api, r).await,
            None => Some(invalid_request()),
        }
    }))
    .await;
    let answers: Vec<String> = answers.into_iter().flatten().collect();
    if answers.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(json_ok(format!("[{}]", answers.join(","))))
}

fn is_anonymous(api: &str, method: &str) -> bool {
    ANONYMOUS.iter().any(|(a, m)| *a == api && *m == method)
}

fn parse_request(text: &str) -> Option<IncomingRequest<'_>> {
    serde_json::from_str::<IncomingRequest<'_>>(text)
        .ok()
        .filter(|r| r.jsonrpc == "2.0")
}

fn invalid_request() -> String {
    jsonrpc::error_body(
        "null",
        &RpcError::new(codes::INVALID_REQUEST, "Invalid Request"),
    )
}

fn json_ok(body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Routes one request; None for a notification.
async fn call(
    host: &HostState,
    ctx: &CallContext<'_>,
    api: &str,
    request: &IncomingRequest<'_>,
) -> Option<String> {
    let id = request.id.map(RawValue::get);
    let outcome = match host.broker.find(api, Transport::Rpc) {
        None => Err(RpcError::new(
            codes::METHOD_NOT_FOUND,
            format!(
                "No service available which matches {{\"transport\":\"rpc\",\"api\":{}}}",
                serde_json::Value::from(api)
            ),
        )),
        Some(Provider::Host(kind)) => {
            let method = &request.method;
            Box::pin(crate::apis::call(
                host,
                ctx,
                kind,
                method,
                request.params_array(),
            ))
            .await
            .map(|value| id.map(|id| jsonrpc::success_body(id, &value.to_string())))
        }
        Some(Provider::Service(export)) => {
            forward(host, ctx.caller.as_deref(), &export, api, request).await
        }
    };
    match outcome {
        Ok(body) => body,
        Err(error) => id.map(|id| jsonrpc::error_body(id, &error)),
    }
}

/// The id of the next call sent to a service. Each HTTP thread counts its own: the id only
/// pairs a call with its answer within one HTTP exchange, and a counter shared by the
/// threads cost every call a cache line moved between CPUs.
fn next_rpc_id() -> u64 {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
    }
    NEXT.with(|next| {
        let id = next.get();
        next.set(id.wrapping_add(1));
        id
    })
}

/// Sends the call to a service and returns the answer to give the caller (None for a
/// notification), or the error to report.
async fn forward(
    host: &HostState,
    caller: Option<&crate::auth::Caller>,
    export: &ServiceExport,
    api: &str,
    request: &IncomingRequest<'_>,
) -> Result<Option<String>, RpcError> {
    let rpc_id = next_rpc_id();
    let body = jsonrpc::request_body(rpc_id, &request.method, request.params_array());
    let server_error = |message: String| RpcError::new(codes::SERVER_ERROR, message);
    // Built in place rather than with `Request::builder`, which moves the request's parts
    // along at every header.
    let mut req = Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = export.path.clone();
    let headers = req.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("localhost"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(caller) = caller {
        let value = |key: &str| {
            HeaderValue::from_str(key)
                .map_err(|e| server_error(format!("cannot build the request: {e}")))
        };
        headers.insert(super::AUTH_USER, value(caller.user.as_str())?);
        headers.insert(
            super::AUTH_SERVICE,
            value(caller.service_for(&export.key).as_str())?,
        );
    }

    let timeout = host.config.gateway_timeout;
    let max = host.config.max_response_bytes;
    // Boxed once: the exchange's state machine is kilobytes, and moving it through the
    // timeout and this function by value showed up as memmove in profiles.
    let answer = tokio::time::timeout(timeout, Box::pin(export.upstream.call(req, max)))
        .await
        .map_err(|_| {
            server_error(format!(
                "The service {} did not answer {api} {} within {} (gatewayTimeout)",
                export.id,
                request.method,
                humantime::format_duration(timeout)
            ))
        })?;
    let (_, bytes) = answer.map_err(|e| {
        tracing::warn!(service = %export.id, api, error = %e, "provider unreachable");
        match e {
            UpstreamError::Body { .. } => server_error(format!(
                "The service {} answered with more than {max} bytes (maxResponseBytes) or broke off its answer",
                export.id
            )),
            e => server_error(format!(
                "The service {} providing {api} could not be reached or closed the connection ({})",
                export.id,
                short_error(&e)
            )),
        }
    })?;

    let parse_error = || {
        let mut e = RpcError::new(codes::PARSE_ERROR, "Parse error");
        e.data = Some(serde_json::Value::from(format!(
            "the service {} answered with something that is not a JSON-RPC response",
            export.id
        )));
        e
    };
    let response: IncomingResponse<'_> =
        serde_json::from_slice(&bytes).map_err(|_| parse_error())?;
    if response.jsonrpc != "2.0" {
        return Err(parse_error());
    }
    if let Some(error) = response.error {
        return Err(error);
    }
    let result = response.result.map_or("null", RawValue::get);
    Ok(request.id.map(|id| jsonrpc::success_body(id.get(), result)))
}

/// The innermost cause, which is what a person can act on (`Connection refused`).
fn short_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
