//! The first admin. A host without users prints a one-time link to `/_atek/setup` (never a
//! default password); whoever holds it creates the first account, an admin, and is logged
//! in. `atek mkuser --admin` does the same from the shell. The link's token lives in memory
//! only, is compared in constant time, and dies with the first user.

use std::sync::Arc;

use atek_api::users::NewUser;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode, header};
use serde::Deserialize;

use super::{RequestMeta, pages};
use crate::host::HostState;

/// Prints the first-admin link when there are no users.
pub(crate) fn offer_first_admin(host: &HostState) {
    if !host.users.is_empty() {
        return;
    }
    let token = atek_core::BearerToken::generate();
    let link = format!(
        "http://{}:{}/_atek/setup?token={}",
        host.config.domain,
        host.port,
        token.expose()
    );
    *host.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.expose().to_owned());
    // Printed for the person at the console, not logged: the link is a credential.
    eprintln!("No users yet. Create the first admin at {link} (or run: atek mkuser --admin)");
}

/// `GET /_atek/setup`.
pub(crate) async fn page(State(host): State<Arc<HostState>>) -> Response<Body> {
    if !host.users.is_empty() {
        return pages::error(
            StatusCode::GONE,
            "Atek is set up",
            "This host already has users. Sign in at /_atek/login.",
            "/",
        );
    }
    pages::own_page(&pages::SETUP)
}

/// The form of the setup page.
#[derive(Debug, Deserialize)]
pub(crate) struct SetupForm {
    token: String,
    username: String,
    password: String,
}

/// `POST /_atek/setup`: creates the first admin and logs them in.
pub(crate) async fn create(
    State(host): State<Arc<HostState>>,
    axum::Extension(meta): axum::Extension<RequestMeta>,
    body: axum::body::Bytes,
) -> Response<Body> {
    let form: SetupForm = match serde_json::from_slice(&body) {
        Ok(form) => form,
        Err(e) => {
            return message(
                StatusCode::BAD_REQUEST,
                &format!("The body must be JSON {{\"token\", \"username\", \"password\"}}: {e}"),
            );
        }
    };
    if !host.users.is_empty() {
        return message(
            StatusCode::FORBIDDEN,
            "This host already has users: sign in at /_atek/login, or ask an admin for an account.",
        );
    }
    // Taken, not read: two requests racing with the same token cannot both create an admin.
    let taken = {
        let mut slot = host.setup_token.lock().unwrap_or_else(|p| p.into_inner());
        let valid = slot.as_deref().is_some_and(|t| {
            use subtle::ConstantTimeEq;
            bool::from(t.as_bytes().ct_eq(form.token.as_bytes()))
        });
        if valid { slot.take() } else { None }
    };
    let Some(taken) = taken else {
        return message(
            StatusCode::FORBIDDEN,
            "This setup link is not valid: use the link the host printed when it started (it works once), or run: atek mkuser --admin",
        );
    };
    let give_back = || {
        *host.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(taken.clone());
    };
    let new = NewUser {
        username: form.username,
        password: form.password,
        role: Some(atek_api::users::ADMIN_ROLE.to_owned()),
    };
    let user = match host.users.create(new).await {
        Ok(user) => user,
        Err(e) => {
            give_back();
            return message(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    tracing::info!(user = %user.key, "first admin created");
    crate::apis::users::new_user_main_service(&host, &user.key);
    let token = match host.sessions.create(&user.key) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "cannot save a session");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The account was made, but the host could not log you in: sign in at /_atek/login",
            );
        }
    };
    let mut response = super::json(
        StatusCode::OK,
        serde_json::json!({"username": user.username}).to_string(),
    );
    if let Some(cookie) = super::session_cookie(&host, &meta.site, Some(token.expose())) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn message(status: StatusCode, message: &str) -> Response<Body> {
    super::json(
        status,
        serde_json::json!({"error": true, "message": message}).to_string(),
    )
}
