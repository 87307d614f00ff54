//! Apps in the browser: `{id}.{domain}` proxied to the service, the bind-session flow that
//! gets a login there, and each user's main service at the host's own domain.
//!
//! Bind-session (reference §8.1, tightened): a browser without a session on the app's
//! subdomain gets a random nonce in a short-lived `atek-bind` cookie there and is sent to
//! `/_atek/bind-session` on the host's domain, where its host session is. That mints a token
//! that is single-use, lives 60 seconds and is bound to the session, the app and the nonce,
//! and sends the browser back with `?bst=`. The app's subdomain trades it, only together with
//! the nonce cookie (so nobody can plant their own login in someone else's browser with a
//! link), for a session of its own (`atek-session`), valid on that subdomain only and ending
//! with the host session. Any `bst` is taken out of the URL with a redirect, so it never
//! lingers in the address bar or reaches the app.
//!
//! Who may open an app: its owner, any admin, and everybody for apps owned by `system`
//! (core services).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atek_core::{ServiceId, UserKey};
use axum::body::Body;
use axum::extract::State;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};

use subtle::ConstantTimeEq;

use super::{
    RequestMeta, Site, Target, csrf, is_upgrade, json, location, pages, query_param, set_cookie,
};
use crate::auth::{Caller, authenticate};
use crate::broker::AppRoute;
use crate::gateway::{AUTH_SERVICE, AUTH_USER};
use crate::host::HostState;
use crate::users::Scope;

/// A request on `{id}.{domain}`.
pub(crate) async fn serve(
    host: &Arc<HostState>,
    site: &Site,
    id: &str,
    req: Request<Body>,
    peer: IpAddr,
) -> Response<Body> {
    let domain = &host.config.domain;
    // Only error pages need it.
    let home = || format!("{}/", site.main_origin(domain));
    // A running app is found in the routing table, without copying its record; only an app
    // that is not running (or named in another case) is looked up in the store.
    let running = id
        .parse::<ServiceId>()
        .ok()
        .and_then(|id| host.broker.app(&id));
    let stored = match running {
        Some(_) => None,
        None => match host.find_for_host(id) {
            Some(stored) => Some(stored),
            None => return not_installed(id, domain, &home()),
        },
    };
    let route = running.or_else(|| stored.as_ref().and_then(|s| host.broker.app(&s.record.id)));
    let (id, owner) = match (&route, &stored) {
        (Some(route), _) => (&route.id, &route.owner),
        (None, Some(stored)) => (&stored.record.id, &stored.record.owning_user_key),
        (None, None) => return not_installed(id, domain, &home()),
    };
    if let Some(bst) = query_param(req.uri().query(), BIND_PARAM) {
        return redeem(host, site, id, req.uri(), req.headers(), &bst).await;
    }
    let Some(caller) = authenticate(host, req.headers(), &Scope::Service(id.clone())) else {
        return unauthenticated(host, site, id, &req);
    };
    if !may_open(&caller, owner) {
        return not_yours(id, &home());
    }
    if caller.session && csrf(req.method(), req.headers(), &[]) {
        let own = site.app_origin(domain, id.as_str());
        let main = site.main_origin(domain);
        if csrf(req.method(), req.headers(), &[&own, &main]) {
            return cross_site(&home());
        }
    }
    match &route {
        Some(route) => proxy(host, site, route, &caller, req, peer).await,
        None => down(host, id, &home()),
    }
}

/// The query parameter carrying a bind token.
const BIND_PARAM: &str = "bst";
/// The cookie holding a browser's bind nonce on an app's subdomain.
const BIND_COOKIE: &str = "atek-bind";
/// How long a browser has to come back from bind-session.
const BIND_NONCE_TTL: Duration = Duration::from_secs(120);
/// Bind tokens awaiting their browser, at most.
const MAX_PENDING_BINDS: usize = 10_000;

/// Bind tokens minted and not yet redeemed, with the nonce of the browser they were minted
/// for. In memory only: a restart in the middle of a sign-in just asks for another.
#[derive(Debug, Default)]
pub(crate) struct PendingBinds(Mutex<HashMap<String, (String, Instant)>>);

impl PendingBinds {
    fn insert(&self, bst: String, nonce: String) {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        pending.retain(|_, (_, at)| now.duration_since(*at) < BIND_NONCE_TTL);
        if pending.len() < MAX_PENDING_BINDS {
            pending.insert(bst, (nonce, now));
        }
    }

    fn take(&self, bst: &str) -> Option<String> {
        let (nonce, at) = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(bst)?;
        (at.elapsed() < BIND_NONCE_TTL).then_some(nonce)
    }
}

/// Who may open an app: see the module docs.
fn may_open(caller: &Caller, owner: &UserKey) -> bool {
    caller.admin || owner.is_system() || owner == &caller.user
}

/// A request on an app's subdomain carrying `?bst=`: trade it for a session when it was
/// minted for this browser, and in any case go to the same URL without it.
async fn redeem(
    host: &Arc<HostState>,
    site: &Site,
    id: &ServiceId,
    uri: &Uri,
    headers: &HeaderMap,
    bst: &str,
) -> Response<Body> {
    let domain = &host.config.domain;
    let target = location(
        &site.app_origin(domain, id.as_str()),
        &without_param(uri, BIND_PARAM),
        &[],
    );
    let mut response = redirect(&target);
    let nonce = host.pending_binds.take(bst);
    let ours = nonce.is_some_and(|nonce| {
        crate::auth::cookie_values(headers, BIND_COOKIE)
            .any(|v| bool::from(v.as_bytes().ct_eq(nonce.as_bytes())))
    });
    if ours {
        let (state, bst, service) = (host.clone(), bst.to_owned(), id.clone());
        // The session file is written and synced: off the event loop.
        let redeemed =
            tokio::task::spawn_blocking(move || state.sessions.redeem_bind(&bst, &service)).await;
        match redeemed {
            Ok(Ok(Some((_, token)))) => {
                if let Some(cookie) = super::session_cookie(host, site, Some(token.expose())) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot save a session");
                return pages::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Cannot sign you in",
                    "The host could not save your session. Its log says why.",
                    &format!("{}/", site.main_origin(domain)),
                );
            }
            Err(e) => tracing::error!(error = %e, "session task failed"),
        }
    }
    if let Some(clear) = set_cookie(host, site, BIND_COOKIE, None, Duration::ZERO) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// A request on an app's subdomain without a (valid) login: a read goes to get one.
fn unauthenticated(
    host: &HostState,
    site: &Site,
    id: &ServiceId,
    req: &Request<Body>,
) -> Response<Body> {
    let domain = &host.config.domain;
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
    if !is_read || is_upgrade(req.headers()) {
        return pages::error(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Open this app in your browser first to sign in.",
            &format!("{}/", site.main_origin(domain)),
        );
    }
    let nonce = atek_core::BearerToken::generate();
    // `serve` has already answered any request carrying a bind token.
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut response = redirect(&location(
        &site.main_origin(domain),
        "/_atek/bind-session",
        &[
            ("service", id.as_str()),
            ("path", path),
            ("nonce", nonce.expose()),
        ],
    ));
    if let Some(cookie) = set_cookie(
        host,
        site,
        BIND_COOKIE,
        Some(nonce.expose()),
        BIND_NONCE_TTL,
    ) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /_atek/bind-session?service=ID&path=P&nonce=N` on the host's domain.
pub(crate) async fn bind_session(
    State(host): State<Arc<HostState>>,
    axum::Extension(meta): axum::Extension<RequestMeta>,
    req: Request<Body>,
) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let service = query_param(Some(query), "service").unwrap_or_default();
    let domain = &host.config.domain;
    let Ok(id) = service.parse::<ServiceId>() else {
        return not_installed(&service, domain, "/");
    };
    let Ok((stored, _)) = host.find(id.as_str()) else {
        return not_installed(id.as_str(), domain, "/");
    };
    let nonce = query_param(Some(query), "nonce").filter(|n| !n.is_empty() && n.len() <= 128);
    let Some(nonce) = nonce else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Incomplete sign-in link",
            &format!(
                "Open the app's own address, {}/, to sign in to it.",
                meta.site.app_origin(domain, id.as_str())
            ),
            "/",
        );
    };
    let session = crate::auth::cookie_values(req.headers(), crate::auth::SESSION_COOKIE)
        .take(4)
        .find(|token| host.sessions.resolve(token, &Scope::Host).is_some());
    let (Some(token), Some(caller)) = (
        session,
        authenticate(&host, req.headers(), &Scope::Host).filter(|c| c.session),
    ) else {
        let here = req.uri().path_and_query().map_or("/", |p| p.as_str());
        return redirect(&location(
            &meta.site.main_origin(domain),
            "/_atek/login",
            &[("redirect", here)],
        ));
    };
    if !may_open(&caller, &stored.record.owning_user_key) {
        return not_yours(&id, "/");
    }
    let path = query_param(Some(query), "path")
        .filter(|p| p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\"))
        .unwrap_or_else(|| "/".to_owned());
    let Some(bst) = host.sessions.mint_bind(token, &id) else {
        return redirect("/_atek/login");
    };
    host.pending_binds.insert(bst.clone(), nonce);
    redirect(&location(
        &meta.site.app_origin(domain, id.as_str()),
        &path,
        &[(BIND_PARAM, &bst)],
    ))
}

/// Everything on the host's domain that is not `/_atek/*`: the user's main service
/// (reference §8.2).
pub(crate) async fn main_service(
    State(host): State<Arc<HostState>>,
    axum::Extension(meta): axum::Extension<RequestMeta>,
    req: Request<Body>,
) -> Response<Body> {
    if req.uri().path().starts_with("/_atek/") {
        return json(
            StatusCode::NOT_FOUND,
            r#"{"error":true,"message":"Not found"}"#,
        );
    }
    let Some(caller) = authenticate(&host, req.headers(), &Scope::Host) else {
        if matches!(*req.method(), Method::GET | Method::HEAD) && !is_upgrade(req.headers()) {
            let here = req.uri().path_and_query().map_or("/", |p| p.as_str());
            return redirect(&location(
                &meta.site.main_origin(&host.config.domain),
                "/_atek/login",
                &[("redirect", here)],
            ));
        }
        return json(
            StatusCode::UNAUTHORIZED,
            crate::gateway::NOT_AUTHORIZED_BODY,
        );
    };
    if !caller.session {
        return json(StatusCode::OK, r#"{"message":"Atek online"}"#);
    }
    let settings = host.users.settings(&caller.user).unwrap_or_default();
    let main = settings
        .main_service_id
        .as_deref()
        .and_then(|id| id.parse::<ServiceId>().ok());
    let mut owned_by_other = false;
    let mut not_running = None;
    if let Some(id) = &main
        && let Ok((stored, _)) = host.find(id.as_str())
    {
        if stored.record.owning_user_key != caller.user {
            owned_by_other = true;
        } else if let Some(route) = host.broker.app(id) {
            let main_origin = meta.site.main_origin(&host.config.domain);
            if csrf(req.method(), req.headers(), &[&main_origin]) {
                return cross_site("/");
            }
            // A service worker on the host's own origin would see every host page,
            // the login page included: the main service may not install one.
            if req.headers().contains_key("service-worker") {
                return pages::error(
                    StatusCode::FORBIDDEN,
                    "Service worker refused",
                    "Your home app runs on Atek's own address, where it may not install a service worker.",
                    "/",
                );
            }
            return proxy(&host, &meta.site, &route, &caller, req, meta.peer).await;
        } else {
            not_running = Some(host.supervisor.state(id).unwrap_or_default());
        }
    }
    let username = host
        .users
        .get(&caller.user)
        .map(|u| u.username)
        .unwrap_or_default();
    pages::welcome(&serde_json::json!({
        "username": username,
        "userKey": caller.user.as_str(),
        "defaultMainService": host.config.default_main_service,
        "ownedByOther": owned_by_other,
        "mayInstall": caller.admin || host.config.users_may_install,
        "mainService": main.as_ref().map(|id| id.as_str()),
        "mainServiceStatus": not_running.as_ref().map(|s| s.status.as_str()),
    }))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never passed on by a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Forwards one request to an app, streaming both bodies; WebSocket upgrades are relayed.
async fn proxy(
    host: &HostState,
    site: &Site,
    route: &AppRoute,
    caller: &Caller,
    req: Request<Body>,
    peer: IpAddr,
) -> Response<Body> {
    let upgrade = is_upgrade(req.headers());
    let (mut parts, body) = req.into_parts();
    let mut headers = std::mem::take(&mut parts.headers);
    strip_request_headers(&mut headers, caller, &site.target, upgrade);
    let forwarded_host = headers.get(header::HOST).cloned();
    let user = HeaderValue::from_str(caller.user.as_str());
    let service = HeaderValue::from_str(caller.service_for(&route.key).as_str());
    if let (Ok(user), Ok(service)) = (user, service) {
        headers.insert(AUTH_USER, user);
        headers.insert(AUTH_SERVICE, service);
    }
    // A proxy in front on loopback has its say; anyone else's X-Forwarded-For is replaced.
    let earlier = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .filter(|_| peer.to_canonical().is_loopback());
    let xff = match earlier {
        Some(earlier) => format!("{earlier}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(xff) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", xff);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(site.scheme));
    if let Some(h) = forwarded_host {
        headers.insert("x-forwarded-host", h);
    }
    let mut path = axum::http::uri::Parts::default();
    path.path_and_query = parts.uri.path_and_query().cloned();
    let path = Uri::from_parts(path).unwrap_or_default();

    if upgrade {
        return relay_upgrade(host, route, parts, path, headers).await;
    }
    // The app has `gatewayTimeout` to answer once the request has gone out; an upload counts
    // as activity, so a large or slow one is never cut off for taking long.
    let activity = Activity::new();
    let body = if hyper::body::Body::is_end_stream(&body) {
        body
    } else {
        Body::new(Watched {
            body,
            activity: activity.clone(),
        })
    };
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = path;
    *upstream_req.headers_mut() = headers;
    let answer = activity
        .idle_timeout(
            host.config.gateway_timeout,
            route.upstream.forward(upstream_req),
        )
        .await;
    match answer {
        Ok(Ok(mut response)) => {
            strip_hop_by_hop(response.headers_mut());
            response
        }
        Ok(Err(e)) => {
            tracing::warn!(service = %route.id, error = %e, "app unreachable");
            pages::error(
                StatusCode::BAD_GATEWAY,
                &format!("{} did not answer", route.id),
                &format!(
                    "The app {} could not be reached ({e}). Its owner can check it with: atek ls, and atek logs {}.",
                    route.id, route.id
                ),
                &home_of(host, site),
            )
        }
        Err(_) => pages::error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("{} is too slow", route.id),
            &format!(
                "The app {} did not answer within {} of getting the request (gatewayTimeout).",
                route.id,
                humantime::format_duration(host.config.gateway_timeout)
            ),
            &home_of(host, site),
        ),
    }
}

/// When a request body last moved: the proxy's timeout runs from then.
#[derive(Clone)]
struct Activity {
    start: Instant,
    /// Milliseconds from `start` to the last piece of the body.
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::default(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs `work` until it ends, or until `idle` has passed without the body moving.
    async fn idle_timeout<F: std::future::Future>(
        &self,
        idle: Duration,
        work: F,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        let mut work = std::pin::pin!(work);
        loop {
            let since = self.last();
            match tokio::time::timeout_at((since + idle).into(), &mut work).await {
                Err(_) if self.last() > since => continue,
                done => return done,
            }
        }
    }
}

/// A request body on its way to an app, noting each piece that goes by in its [`Activity`].
struct Watched {
    body: Body,
    activity: Activity,
}

impl hyper::body::Body for Watched {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_ready() {
            self.activity.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The host's link on a page served at `site`.
fn home_of(host: &HostState, site: &Site) -> String {
    format!("{}/", site.main_origin(&host.config.domain))
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1), and those the `Connection` header
/// names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// Removes what an app must never see: hop-by-hop headers, identity headers a client made
/// up (also spelt with `_`, which some servers read as `-`), the host's cookies, and the host
/// token that authenticated the request.
fn strip_request_headers(headers: &mut HeaderMap, caller: &Caller, target: &Target, upgrade: bool) {
    // `Connection: Upgrade` names `Upgrade` as hop-by-hop, but a handshake is relayed
    // whole: its `Upgrade` goes on.
    let protocol = headers.get(header::UPGRADE).cloned().filter(|_| upgrade);
    strip_hop_by_hop(headers);
    headers.remove(header::UPGRADE);
    if let Some(protocol) = protocol {
        headers.insert(header::UPGRADE, protocol);
    }
    headers.remove(header::FORWARDED);
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            // Header names arrive lowercased.
            let name = k.as_str().as_bytes();
            name.len() > 10
                && name.starts_with(b"atek")
                && matches!(name[4], b'-' | b'_')
                && name[5..].starts_with(b"auth")
                && matches!(name[9], b'-' | b'_')
        })
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    if !caller.session {
        headers.remove(header::AUTHORIZATION);
    }
    // On an app's subdomain its own `session` cookie is its business.
    let host_cookies: &[&str] = match target {
        Target::App(_) => &[crate::auth::APP_SESSION_COOKIE, BIND_COOKIE],
        Target::Main => &[
            crate::auth::SESSION_COOKIE,
            crate::auth::APP_SESSION_COOKIE,
            BIND_COOKIE,
        ],
    };
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && !host_cookies.contains(&pair.split_once('=').map_or(*pair, |(name, _)| name))
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !cookies.is_empty()
        && let Ok(value) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// Relays a WebSocket handshake to the app and splices the two connections once it agreed.
async fn relay_upgrade(
    host: &HostState,
    route: &AppRoute,
    mut parts: axum::http::request::Parts,
    path: Uri,
    mut headers: HeaderMap,
) -> Response<Body> {
    let failed = |why: String| {
        pages::error(
            StatusCode::BAD_GATEWAY,
            &format!("{} refused the connection", route.id),
            &why,
            "/",
        )
    };
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let opened = tokio::time::timeout(
        host.config.gateway_timeout,
        route.upstream.open_upgradable::<Body>(),
    )
    .await;
    let (mut sender, driver) = match opened {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return failed(format!("The app {} could not be reached: {e}", route.id)),
        Err(_) => {
            return failed(format!(
                "The app {} did not accept a connection in time",
                route.id
            ));
        }
    };
    tokio::spawn(driver);
    let mut upstream_req = Request::new(Body::empty());
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = path;
    *upstream_req.headers_mut() = headers;
    let answer = tokio::time::timeout(
        host.config.gateway_timeout,
        sender.send_request(upstream_req),
    )
    .await;
    let upstream_resp = match answer {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            return failed(format!(
                "The app {} broke off the WebSocket handshake: {e}",
                route.id
            ));
        }
        Err(_) => {
            return failed(format!(
                "The app {} did not answer the WebSocket handshake in time",
                route.id
            ));
        }
    };
    if upstream_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Not upgraded: an ordinary answer (a 404, say) goes back as it is.
        let mut response = upstream_resp.map(Body::new);
        strip_hop_by_hop(response.headers_mut());
        return response;
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *response.headers_mut() = upstream_resp.headers().clone();
    let Some(client) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return failed("this connection cannot switch protocols".to_owned());
    };
    let service = hyper::upgrade::on(upstream_resp);
    let held = parts.extensions.remove::<crate::server::OpenConnection>();
    crate::gateway::proxy::splice(client, service, route.id.clone(), held);
    response
}

/// `uri`'s path and query without the parameter `name`.
fn without_param(uri: &Uri, name: &str) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && key != name
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_installed(id: &str, domain: &str, home: &str) -> Response<Body> {
    pages::error(
        StatusCode::NOT_FOUND,
        "No such app",
        &format!(
            "No app is installed at {id}.{domain}. Check the address, or install the app first."
        ),
        home,
    )
}

fn not_yours(id: &ServiceId, home: &str) -> Response<Body> {
    pages::error(
        StatusCode::FORBIDDEN,
        "Not your app",
        &format!("The app {id} belongs to another user. Ask its owner or an admin."),
        home,
    )
}

fn cross_site(home: &str) -> Response<Body> {
    pages::error(
        StatusCode::FORBIDDEN,
        "Cross-site request refused",
        "This request came from another site and would have used your Atek login. If you meant it, do it from the app's own page.",
        home,
    )
}

/// The 502 page of an installed app that is not running, with its state.
fn down(host: &HostState, id: &ServiceId, home: &str) -> Response<Body> {
    let state = host.supervisor.state(id).unwrap_or_default();
    let mut why = format!("The app {id} is {}", state.status.as_str());
    if let Some(reason) = &state.reason {
        why.push_str(&format!(": {reason}"));
    }
    why.push_str(&format!(
        ". Its owner can start it again (atek start {id}) and see what happened (atek logs {id})."
    ));
    pages::error(
        StatusCode::BAD_GATEWAY,
        &format!("{id} is not running"),
        &why,
        home,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bst_is_removed_from_the_target() {
        let uri: Uri = "/x?y=1&bst=abc&z=2".parse().unwrap();
        assert_eq!(without_param(&uri, "bst"), "/x?y=1&z=2");
        let uri: Uri = "/x?bst=abc".parse().unwrap();
        assert_eq!(without_param(&uri, "bst"), "/x");
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(without_param(&uri, "bst"), "/x");
    }

    #[test]
    fn apps_never_see_host_credentials_or_forged_identity() {
        let mut headers = HeaderMap::new();
        headers.insert("atek-auth-user", "system".parse().unwrap());
        headers.insert("Atek-Auth-Service", "x".parse().unwrap());
        headers.append(header::COOKIE, "a=1; session=secret".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        headers.insert(header::AUTHORIZATION, "Bearer app-own".parse().unwrap());
        headers.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        headers.insert("atek_auth_user", "system".parse().unwrap());
        headers.append(
            header::COOKIE,
            "atek-session=s2; atek-bind=n".parse().unwrap(),
        );
        headers.insert(header::CONNECTION, "close, x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert(header::UPGRADE, "h2c".parse().unwrap());
        let session = Caller::session("u1".parse().unwrap(), false);
        strip_request_headers(&mut headers, &session, &Target::App("a".into()), false);
        let mut handshake = HeaderMap::new();
        handshake.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        handshake.insert(header::UPGRADE, "websocket".parse().unwrap());
        strip_request_headers(&mut handshake, &session, &Target::App("a".into()), true);
        assert_eq!(handshake.get(header::UPGRADE).unwrap(), "websocket");
        assert!(!headers.contains_key("atek-auth-user"));
        assert!(!headers.contains_key("atek-auth-service"));
        assert!(!headers.contains_key("atek_auth_user"));
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key("x-secret"));
        assert!(!headers.contains_key(header::UPGRADE));
        // The app's own `session` cookie is its own; the host's are gone.
        assert_eq!(
            headers.get(header::COOKIE).unwrap(),
            "a=1; session=secret; b=2"
        );
        assert_eq!(
            headers.get(header::AUTHORIZATION).unwrap(),
            "Bearer app-own"
        );

        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer host-token".parse().unwrap());
        headers.insert(header::COOKIE, "session=only".parse().unwrap());
        strip_request_headers(&mut headers, &Caller::system(), &Target::Main, false);
        assert!(!headers.contains_key(header::AUTHORIZATION));
        assert!(!headers.contains_key(header::COOKIE));
    }

    #[test]
    fn who_may_open() {
        let alice: UserKey = "alice1".parse().unwrap();
        let bob: UserKey = "bob1".parse().unwrap();
        let session = Caller::session(alice.clone(), false);
        assert!(may_open(&session, &alice));
        assert!(may_open(&session, &UserKey::system()));
        assert!(!may_open(&session, &bob));
        assert!(may_open(&Caller::session(alice, true), &bob));
    }
}
