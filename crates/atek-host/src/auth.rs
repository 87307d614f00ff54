//! Who is calling: bearer tokens and session cookies resolved to a [`Caller`].
//!
//! System tokens come from config.json; every service process gets a fresh token at each
//! start, registered here while the process lives. Browsers carry a `session` cookie
//! ([`crate::users::Sessions`]). `authenticate` applies the rule for one request: a valid
//! bearer token wins, else a cookie valid for the host the request was made to; anything
//! stale or unknown leaves the request simply unauthenticated.

use std::collections::HashMap;
use std::sync::Arc;

use atek_core::{BearerToken, ServiceKey, UserKey};

use crate::per_thread::{Copies, PerThread};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user on whose behalf the call is made (`system` for the host and system tokens).
    pub user: UserKey,
    /// The calling service's key (`system` for system tokens).
    pub service: ServiceKey,
    /// Admins see and manage everything.
    pub admin: bool,
    /// Authenticated by a browser session cookie rather than a token. Calls forwarded to a
    /// service then carry that service's own key as `Atek-Auth-Service` (reference §3.6), and
    /// cross-site requests are refused (`web::csrf`).
    pub session: bool,
}

impl Caller {
    /// The caller of a system token.
    pub fn system() -> Self {
        Self {
            user: UserKey::system(),
            service: ServiceKey::system(),
            admin: true,
            session: false,
        }
    }

    /// A user's browser session.
    pub fn session(user: UserKey, admin: bool) -> Self {
        Self {
            user,
            service: ServiceKey::system(),
            admin,
            session: true,
        }
    }

    /// The `Atek-Auth-Service` a call to the service with key `target` carries.
    pub fn service_for<'a>(&'a self, target: &'a ServiceKey) -> &'a ServiceKey {
        if self.session { target } else { &self.service }
    }
}

/// Authenticates one request made to `scope` (the main domain, or an app's subdomain).
pub(crate) fn authenticate(
    host: &crate::host::HostState,
    headers: &http::HeaderMap,
    scope: &crate::users::Scope,
) -> Option<Arc<Caller>> {
    if let Some(caller) = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| host.auth.resolve_header(v))
    {
        return Some(with_current_role(host, caller));
    }
    let name = cookie_name(scope);
    // Every value is tried (a few at most): a stale or planted cookie of the same name sent
    // first must not hide a valid one.
    let user = cookie_values(headers, name)
        .take(4)
        .find_map(|token| host.sessions.resolve(token, scope))?;
    // A session outliving its user (deleted between the two reads) is no session.
    let admin = host.users.admin_of(&user)?;
    Some(Arc::new(Caller::session(user, admin)))
}

/// A service token's caller with its owner's role as it is now: an owner made or unmade
/// admin changes the rights of their running services at once.
pub(crate) fn with_current_role(host: &crate::host::HostState, caller: Arc<Caller>) -> Arc<Caller> {
    if caller.user.is_system() {
        return caller;
    }
    let admin = host.users.is_admin(&caller.user);
    if admin == caller.admin {
        caller
    } else {
        Arc::new(Caller {
            admin,
            ..(*caller).clone()
        })
    }
}

/// The values of the cookies called `name` in the request, in order.
pub(crate) fn cookie_values<'a>(
    headers: &'a http::HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, value) = pair.trim().split_once('=')?;
            (n == name).then(|| value.trim_matches('"'))
        })
        .filter(|v| !v.is_empty())
}

/// The host's session cookie on its own domain (the original's name).
pub const SESSION_COOKIE: &str = "session";
/// The session cookie on an app's subdomain. Not `session`: an app may well have a cookie of
/// that name of its own (Flask's and Express's defaults), which it keeps.
pub const APP_SESSION_COOKIE: &str = "atek-session";

/// The session cookie's name for `scope`.
pub(crate) fn cookie_name(scope: &crate::users::Scope) -> &'static str {
    match scope {
        crate::users::Scope::Host => SESSION_COOKIE,
        crate::users::Scope::Service(_) => APP_SESSION_COOKIE,
    }
}

/// The token registry, read by every call through a copy per HTTP thread.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: PerThread<Tokens>,
}

#[derive(Default)]
struct Tokens(HashMap<String, Arc<Caller>>);

/// How many, never the tokens themselves.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} tokens", self.0.len())
    }
}

impl Copies for Tokens {
    fn copy(&self) -> Self {
        Self(self.0.copy())
    }
}

impl Auth {
    /// A registry that accepts these system tokens.
    pub fn new(system_tokens: &[BearerToken]) -> Self {
        let tokens = system_tokens
            .iter()
            .map(|t| (t.expose().to_owned(), Arc::new(Caller::system())))
            .collect();
        Self {
            tokens: PerThread::new(Tokens(tokens)),
        }
    }

    /// Resolves an `Authorization` header value (`Bearer …`).
    pub fn resolve_header(&self, header: &str) -> Option<Arc<Caller>> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))?;
        self.resolve_token(token.trim())
    }

    /// Resolves a bare token.
    pub fn resolve_token(&self, token: &str) -> Option<Arc<Caller>> {
        self.tokens.read(|tokens| tokens.0.get(token).cloned())
    }

    /// Admits `token` as `caller` (a service process that just started).
    pub fn add(&self, token: &BearerToken, caller: Caller) {
        self.tokens
            .write(|tokens| tokens.0.insert(token.expose().to_owned(), Arc::new(caller)));
    }

    /// Revokes `token` (its process ended).
    pub fn remove(&self, token: &BearerToken) {
        self.tokens.write(|tokens| tokens.0.remove(token.expose()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_token() {
        let sys = BearerToken::generate();
        let auth = Auth::new(std::slice::from_ref(&sys));
        let shown = format!("{auth:?}");
        assert!(shown.contains("1 tokens"), "{shown}");
        assert!(!shown.contains(sys.expose()), "{shown}");
    }

    #[test]
    fn system_and_service_tokens() {
        let sys = BearerToken::generate();
        let auth = Auth::new(std::slice::from_ref(&sys));
        assert_eq!(
            auth.resolve_header(&format!("Bearer {}", sys.expose()))
                .as_deref(),
            Some(&Caller::system())
        );
        assert_eq!(auth.resolve_header("Bearer nope"), None);
        assert_eq!(
            auth.resolve_header(sys.expose()),
            None,
            "scheme is required"
        );

        let svc = BearerToken::generate();
        let caller = Caller {
            user: UserKey::system(),
            service: ServiceKey::generate(),
            admin: true,
            session: false,
        };
        auth.add(&svc, caller.clone());
        assert_eq!(auth.resolve_token(svc.expose()).as_deref(), Some(&caller));
        auth.remove(&svc);
        assert_eq!(auth.resolve_token(svc.expose()), None);
    }

    #[test]
    fn every_session_cookie_is_found() {
        let values = |cookies: &[&str]| {
            let mut headers = http::HeaderMap::new();
            for c in cookies {
                headers.append(http::header::COOKIE, c.parse().unwrap());
            }
            cookie_values(&headers, SESSION_COOKIE)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&["a=1; session=abc; b=2"]), ["abc"]);
        assert_eq!(values(&["a=1", "session=xyz"]), ["xyz"]);
        assert_eq!(values(&["session=junk; session=good"]), ["junk", "good"]);
        assert!(values(&["sessionx=1; session="]).is_empty());
    }
}
