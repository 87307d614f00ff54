//! What a browser meets: the host's domain and the apps' subdomains.
//!
//! Every request is first placed by its `Host` header ([`Site`]): `{id}.{domain}` belongs to
//! the app `id`, whole ([`apps`]: the bind-session flow, then a streaming reverse proxy with
//! WebSockets); anything else is the host's own domain, served by the router of
//! [`crate::server`]: the gateway, the login and setup pages, `bind-session`, and at every
//! other path the user's main service.
//!
//! Cookies and cross-site requests:
//! - the `session` cookie is `HttpOnly; Path=/` with an absolute lifetime (`sessionTtl`).
//!   On `localhost` (and `*.localhost`) it is `SameSite=None; Secure`: `localhost` and
//!   `hello.localhost` are different *sites*, so an app framed by the main page is a
//!   cross-site frame and only a `None` cookie reaches it, and browsers treat
//!   `http://localhost` as a secure context, so `Secure` cookies work there without TLS.
//!   An app's own cookie is also `Partitioned` (CHIPS): set inside the main page's frame it
//!   is a third-party cookie, which Chromium drops unless it is partitioned.
//!   Over TLS (`X-Forwarded-Proto: https` from a proxy on loopback) it is `SameSite=Lax;
//!   Secure`: under a real domain the host and its apps are one site, so `Lax` reaches
//!   framed apps and keeps cross-site requests out. Plain HTTP under another name gets
//!   `SameSite=Lax` (a `Secure` cookie would be dropped there).
//! - [`csrf`]: a request authenticated only by that cookie, with a method that can change
//!   something (not GET, HEAD or OPTIONS), is refused unless the browser says it comes from
//!   the same origin (`Sec-Fetch-Site: same-origin`/`none`) or its `Origin` is the host's own
//!   or that of the app it reaches (for the gateway: the app providing the API). Clients that
//!   send neither header are not browsers and pass.

pub(crate) mod apps;
pub(crate) mod pages;
pub(crate) mod setup;

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, header};

use crate::host::HostState;

/// Where a request is going, from its `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    /// `http`, or `https` behind a TLS proxy on loopback.
    pub(crate) scheme: &'static str,
    /// The port the `Host` header names, if any: kept in every URL the host builds.
    pub(crate) port: Option<u16>,
    /// The host's domain or one app.
    pub(crate) target: Target,
}

/// The host's own domain, or an app's subdomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The host's domain (or an address or name that is not one of its subdomains).
    Main,
    /// `{id}.{domain}`: the id as written (it may contain dots: `core.adb`).
    App(String),
}

/// What the dispatcher learnt about a request, for the handlers behind the router.
#[derive(Debug, Clone)]
pub(crate) struct RequestMeta {
    /// Where it is going.
    pub(crate) site: Site,
    /// The client's address.
    pub(crate) peer: IpAddr,
}

impl Site {
    /// Places a request for the host serving `domain`.
    pub(crate) fn of(domain: &str, headers: &HeaderMap, peer: IpAddr) -> Self {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (name, port) = split_port(host);
        let name = name.trim_end_matches('.');
        // Lowercased only when it has to be: this runs for every request.
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let target = match name.strip_suffix(domain) {
            Some(sub) if !sub.is_empty() => match sub.strip_suffix('.') {
                Some(id) if !id.is_empty() => Target::App(id.to_owned()),
                _ => Target::Main,
            },
            _ => Target::Main,
        };
        let tls = peer.to_canonical().is_loopback()
            && headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
        Self {
            scheme: if tls { "https" } else { "http" },
            port: port.and_then(|p| p.parse().ok()),
            target,
        }
    }

    /// The origin of the host's own pages (`http://localhost:8480`).
    pub(crate) fn main_origin(&self, domain: &str) -> String {
        match self.port {
            Some(port) => format!("{}://{domain}:{port}", self.scheme),
            None => format!("{}://{domain}", self.scheme),
        }
    }

    /// The origin of app `id` (`http://hello.localhost:8480`).
    pub(crate) fn app_origin(&self, domain: &str, id: &str) -> String {
        match self.port {
            Some(port) => format!("{}://{id}.{domain}:{port}", self.scheme),
            None => format!("{}://{id}.{domain}", self.scheme),
        }
    }
}

/// `name:port` → (`name`, `Some(port)`); IPv6 literals keep their brackets.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if let Some(end) = host.strip_prefix('[').and_then(|_| host.find(']')) {
        let (name, rest) = host.split_at(end + 1);
        return (name, rest.strip_prefix(':'));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name, Some(port))
        }
        _ => (host, None),
    }
}

/// The `Set-Cookie` value for a session (`None` clears it), with the attributes of the
/// module docs: `session` on the host's domain, `atek-session` on an app's.
pub(crate) fn session_cookie(
    host: &HostState,
    site: &Site,
    token: Option<&str>,
) -> Option<HeaderValue> {
    let name = match site.target {
        Target::Main => crate::auth::SESSION_COOKIE,
        Target::App(_) => crate::auth::APP_SESSION_COOKIE,
    };
    set_cookie(host, site, name, token, host.sessions.ttl())
}

/// A `Set-Cookie` value with the attributes of the module docs, living `max_age` (`None`
/// as the value removes the cookie).
pub(crate) fn set_cookie(
    host: &HostState,
    site: &Site,
    name: &'static str,
    value: Option<&str>,
    max_age: std::time::Duration,
) -> Option<HeaderValue> {
    use cookie::{Cookie, SameSite};
    let domain = &host.config.domain;
    let localhost = domain == "localhost" || domain.ends_with(".localhost");
    let tls = site.scheme == "https";
    let mut cookie = Cookie::new(name, value.unwrap_or("").to_owned());
    cookie.set_path("/");
    cookie.set_http_only(true);
    match value {
        Some(_) => cookie.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        )),
        // `Max-Age=0` and an `Expires` in the past: clients that only know one still drop it.
        None => cookie.make_removal(),
    }
    if localhost {
        cookie.set_same_site(SameSite::None);
        cookie.set_secure(true);
        // An app's cookie is often set inside the main page's frame, where it is a
        // third-party cookie, which browsers that block those drop unless it is partitioned
        // (CHIPS): kept for that top-level site only. The host's own cookie stays
        // unpartitioned: apps' pages call the gateway with it.
        if matches!(site.target, Target::App(_)) {
            cookie.set_partitioned(true);
        }
    } else {
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(tls);
    }
    HeaderValue::from_str(&cookie.to_string()).ok()
}

/// True when a request authenticated by cookie alone must be refused as cross-site: see the
/// module docs. `allowed` are the origins besides the browser's own word for it. A WebSocket
/// handshake is a GET that opens a channel both ways, so it is checked like a POST.
pub(crate) fn csrf(method: &Method, headers: &HeaderMap, allowed: &[&str]) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && !is_upgrade(headers) {
        return false;
    }
    let fetch_site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if matches!(fetch_site, Some(b"same-origin" | b"none")) {
        return false;
    }
    match headers.get(header::ORIGIN) {
        Some(origin) => !allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()),
        // A browser that calls the request cross-site but names no origin is refused.
        None => fetch_site.is_some(),
    }
}

/// True for a request asking to switch protocols (a WebSocket handshake).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// An absolute URL on `origin` for a `Location` header: the path and query of
/// `path_and_query` percent-encoded, any fragment dropped, and `extra` query pairs added. The
/// origin is fixed, so no path (`//evil.example/`, `/\evil.example/`) can lead elsewhere.
pub(crate) fn location(origin: &str, path_and_query: &str, extra: &[(&str, &str)]) -> String {
    let without_fragment = path_and_query.split('#').next().unwrap_or("");
    let (path, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (without_fragment, None),
    };
    let Ok(mut url) = url::Url::parse(origin) else {
        return "/".to_owned();
    };
    url.set_path(path);
    url.set_query(query.filter(|q| !q.is_empty()));
    if !extra.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in extra {
            pairs.append_pair(k, v);
        }
    }
    url.into()
}

/// The first value of `name` in a query string, decoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A JSON answer.
pub(crate) fn json(status: axum::http::StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Dispatches one request: an app's subdomain to [`apps::serve`], the rest to `router`.
pub(crate) async fn handle(
    host: &std::sync::Arc<HostState>,
    router: &axum::Router,
    mut req: Request<hyper::body::Incoming>,
    peer: IpAddr,
) -> Response<Body> {
    use tower::ServiceExt;
    // A p2p request through a gateway names the home by its key (see `crate::p2p`).
    let domain = req
        .extensions()
        .get::<crate::p2p::HomeDomain>()
        .map_or(host.config.domain.as_str(), |d| d.0.as_str());
    let site = Site::of(domain, req.headers(), peer);
    if let Target::App(id) = &site.target {
        let id = id.clone();
        // Boxed: hyper moves the future of every request into place, and the app proxy's is
        // kilobytes where a gateway call's is a few hundred bytes.
        return Box::pin(apps::serve(host, &site, &id, req.map(Body::new), peer)).await;
    }
    let meta = RequestMeta { site, peer };
    // JSON-RPC calls, the host's hot path, skip the router (whose boxed handler future and
    // per-request extensions cost more than the rest of the host's own work on a call).
    if req.method() == Method::POST && crate::server::is_gateway_path(req.uri().path()) {
        return crate::gateway::rpc::serve(host, Some(&meta), req.map(Body::new)).await;
    }
    req.extensions_mut().insert(meta);
    match router.clone().oneshot(req.map(Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(host: &str) -> Site {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        Site::of("localhost", &headers, IpAddr::from([127, 0, 0, 1]))
    }

    #[test]
    fn hosts_are_placed() {
        assert_eq!(site("localhost:8480").target, Target::Main);
        assert_eq!(site("localhost:8480").port, Some(8480));
        assert_eq!(
            site("localhost:8480").main_origin("localhost"),
            "http://localhost:8480"
        );
        assert_eq!(site("localhost").port, None);
        assert_eq!(
            site("localhost").main_origin("localhost"),
            "http://localhost"
        );
        assert_eq!(
            site("hello.localhost:8480").target,
            Target::App("hello".into())
        );
        assert_eq!(
            site("Core.ADB.localhost.").target,
            Target::App("core.adb".into())
        );
        assert_eq!(site("127.0.0.1:9").target, Target::Main);
        assert_eq!(site("[::1]:9").target, Target::Main);
        assert_eq!(site("[::1]:9").port, Some(9));
        assert_eq!(site("notlocalhost").target, Target::Main);
        assert_eq!(site(".localhost").target, Target::Main);
        assert_eq!(site("").target, Target::Main);

        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "photos.atek.example.com".parse().unwrap());
        let s = Site::of("atek.example.com", &headers, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(s.target, Target::App("photos".into()));
        assert_eq!(
            s.app_origin("atek.example.com", "photos"),
            "http://photos.atek.example.com"
        );
    }

    #[test]
    fn tls_is_believed_from_loopback_only() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "localhost".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            Site::of("localhost", &headers, IpAddr::from([127, 0, 0, 1])).scheme,
            "https"
        );
        assert_eq!(
            Site::of("localhost", &headers, IpAddr::from([10, 0, 0, 2])).scheme,
            "http"
        );
    }

    #[test]
    fn csrf_rule() {
        let allowed = ["http://localhost:8480", "http://hello.localhost:8480"];
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let post = Method::POST;
        assert!(!csrf(
            &Method::GET,
            &headers(&[("origin", "http://evil")]),
            &allowed
        ));
        assert!(!csrf(&post, &headers(&[]), &allowed), "not a browser");
        assert!(!csrf(
            &post,
            &headers(&[("sec-fetch-site", "same-origin")]),
            &allowed
        ));
        assert!(!csrf(
            &post,
            &headers(&[("origin", "http://hello.localhost:8480")]),
            &allowed
        ));
        assert!(csrf(
            &post,
            &headers(&[("origin", "http://evil.example")]),
            &allowed
        ));
        assert!(csrf(&post, &headers(&[("origin", "null")]), &allowed));
        assert!(csrf(
            &post,
            &headers(&[("sec-fetch-site", "cross-site")]),
            &allowed
        ));
        assert!(csrf(
            &post,
            &headers(&[
                ("sec-fetch-site", "same-site"),
                ("origin", "http://other.localhost:8480")
            ]),
            &allowed
        ));
    }

    #[test]
    fn locations_stay_on_their_origin() {
        let o = "http://hello.localhost:8480";
        assert_eq!(
            location(o, "/x?y=1", &[]),
            "http://hello.localhost:8480/x?y=1"
        );
        assert_eq!(
            location(o, "//evil.example/x", &[]),
            "http://hello.localhost:8480//evil.example/x"
        );
        assert!(location(o, "/\\evil.example/", &[]).starts_with("http://hello.localhost:8480/"));
        assert_eq!(
            location(o, "/a b\r\nSet-Cookie: x", &[]),
            "http://hello.localhost:8480/a%20bSet-Cookie:%20x"
        );
        assert_eq!(location(o, "/é", &[]), "http://hello.localhost:8480/%C3%A9");
        assert_eq!(
            location(o, "/#frag?x", &[("bst", "t")]),
            "http://hello.localhost:8480/?bst=t"
        );
        assert_eq!(
            location(o, "/p?q=1#f", &[("bst", "a b")]),
            "http://hello.localhost:8480/p?q=1&bst=a+b"
        );
        assert_eq!(location(o, "", &[]), "http://hello.localhost:8480/");
    }

    #[test]
    fn ports_split() {
        assert_eq!(split_port("a:1"), ("a", Some("1")));
        assert_eq!(split_port("a"), ("a", None));
        assert_eq!(split_port("a:"), ("a:", None));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
    }
}
