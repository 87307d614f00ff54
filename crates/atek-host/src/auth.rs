//! Who is calling: bearer tokens resolved to a [`Caller`].
//!
//! System tokens come from config.json; every service process gets a fresh token at each
//! start, registered here while the process lives. (Users and cookie sessions arrive with
//! the users issue.)

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use atek_core::{BearerToken, ServiceKey, UserKey};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user on whose behalf the call is made (`system` for the host and system tokens).
    pub user: UserKey,
    /// The calling service's key (`system` for system tokens).
    pub service: ServiceKey,
    /// Admins see and manage everything.
    pub admin: bool,
}

impl Caller {
    /// The caller of a system token.
    pub fn system() -> Self {
        Self {
            user: UserKey::system(),
            service: ServiceKey::system(),
            admin: true,
        }
    }
}

/// The token registry.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: RwLock<HashMap<String, Arc<Caller>>>,
}

impl Auth {
    /// A registry that accepts these system tokens.
    pub fn new(system_tokens: &[BearerToken]) -> Self {
        let tokens = system_tokens
            .iter()
            .map(|t| (t.expose().to_owned(), Arc::new(Caller::system())))
            .collect();
        Self {
            tokens: RwLock::new(tokens),
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
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    /// Admits `token` as `caller` (a service process that just started).
    pub fn add(&self, token: &BearerToken, caller: Caller) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.expose().to_owned(), Arc::new(caller));
    }

    /// Revokes `token` (its process ended).
    pub fn remove(&self, token: &BearerToken) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token.expose());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        auth.add(&svc, caller.clone());
        assert_eq!(auth.resolve_token(svc.expose()).as_deref(), Some(&caller));
        auth.remove(&svc);
        assert_eq!(auth.resolve_token(svc.expose()), None);
    }
}
