//! The HTTP router. Paths under `/_atek/` belong to the host; everything else will be the
//! apps' (subdomains and the main service arrive with the users issue).

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;

use crate::gateway;
use crate::host::HostState;

/// The host's routes.
pub(crate) fn router(state: Arc<HostState>) -> Router {
    let gateway = post(gateway::rpc::handle).get(gateway::proxy::handle);
    Router::new()
        .route("/_atek/gateway", gateway.clone())
        .route("/_atek/gateway/", gateway)
        .fallback(fallback)
        .with_state(state)
}

async fn fallback(uri: axum::http::Uri) -> impl IntoResponse {
    let json = [(header::CONTENT_TYPE, "application/json")];
    if uri.path().starts_with("/_atek/") {
        (
            StatusCode::NOT_FOUND,
            json,
            r#"{"error":true,"message":"Not found"}"#,
        )
    } else {
        (StatusCode::OK, json, r#"{"message":"Atek online"}"#)
    }
}
