//! The broker: which provider serves which API id.
//!
//! An ordered list of registrations; the first match wins (reference §3.3): core services in
//! config order, then the host's own APIs, then user services in the order they became
//! ready. A service's registrations go when its process does; when it comes back they go to
//! the end of *its rank*, so a crashed core service never loses its API to a user service.
//!
//! It also knows which services are up to be browsed at `{id}.{domain}` ([`AppRoute`]):
//! every active service, whether it exports APIs or not.

use std::collections::HashMap;
use std::sync::Arc;

use atek_api::services::Transport;
use atek_core::{ApiId, ServiceId, ServiceKey, UserKey};

use crate::per_thread::{Copies, PerThread};
use crate::upstream::Upstream;

/// The host's own APIs, served in-process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostApi {
    /// `atek.cloud/inspect-api`.
    Inspect,
    /// `atek.cloud/services-api`.
    Services,
    /// `atek.cloud/users-api`.
    Users,
    /// `atek.cloud/user-sessions-api`.
    Sessions,
    /// `atek.cloud/adb-api`, the built-in ADB.
    Adb,
}

/// A service's export, reachable over its upstream.
#[derive(Debug, Clone)]
pub struct ServiceExport {
    /// The providing service.
    pub id: ServiceId,
    /// Its key.
    pub key: ServiceKey,
    /// The HTTP path of the export on the service, in origin form (`/_api`).
    pub path: http::Uri,
    /// How to reach it.
    pub upstream: Upstream,
}

/// An active service, as the app proxy reaches it.
#[derive(Debug, Clone)]
pub struct AppRoute {
    /// The service.
    pub id: ServiceId,
    /// Its key (`Atek-Auth-Service` for a browser session's requests).
    pub key: ServiceKey,
    /// Its owner: who may open it besides admins.
    pub owner: UserKey,
    /// How to reach it.
    pub upstream: Upstream,
}

/// Who serves an API.
#[derive(Debug, Clone)]
pub enum Provider {
    /// The host itself.
    Host(HostApi),
    /// A service process.
    Service(Arc<ServiceExport>),
}

/// Who wins when two providers register the same API: lower ranks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// A core service from config.json.
    Core,
    /// The host's own APIs.
    Host,
    /// An installed service.
    User,
}

#[derive(Debug)]
struct Registration {
    rank: Rank,
    api: ApiId,
    transport: Transport,
    provider: Provider,
}

/// The routing table, read by every call through a copy per HTTP thread.
#[derive(Debug, Default)]
pub struct Broker {
    table: PerThread<Table>,
    apps: PerThread<Apps>,
}

#[derive(Debug, Default)]
struct Table(Vec<Registration>);

impl Copies for Table {
    fn copy(&self) -> Self {
        Self(
            self.0
                .iter()
                .map(|r| Registration {
                    rank: r.rank,
                    api: r.api.clone(),
                    transport: r.transport,
                    provider: match &r.provider {
                        Provider::Host(api) => Provider::Host(*api),
                        Provider::Service(export) => {
                            Provider::Service(Arc::new(ServiceExport::clone(export)))
                        }
                    },
                })
                .collect(),
        )
    }
}

/// The app routes by service id.
type Apps = HashMap<ServiceId, Arc<AppRoute>>;

impl Broker {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds registrations after every earlier one of the same or a lower rank (they lose to
    /// those for the same API, and win over higher ranks).
    pub fn register(
        &self,
        rank: Rank,
        entries: impl IntoIterator<Item = (ApiId, Transport, Provider)>,
    ) {
        self.table.write(|table| {
            for (api, transport, provider) in entries {
                let at = table.0.partition_point(|r| r.rank <= rank);
                table.0.insert(
                    at,
                    Registration {
                        rank,
                        api,
                        transport,
                        provider,
                    },
                );
            }
        });
    }

    /// Removes every registration of service `id`, and its app route.
    pub fn unregister_service(&self, id: &ServiceId) {
        self.table.write(|table| {
            table
                .0
                .retain(|r| !matches!(&r.provider, Provider::Service(s) if &s.id == id));
        });
        self.apps.write(|apps| apps.remove(id));
    }

    /// Makes an active service reachable at its subdomain.
    pub fn register_app(&self, route: AppRoute) {
        self.apps
            .write(|apps| apps.insert(route.id.clone(), Arc::new(route)));
    }

    /// The active service `id`, for the app proxy.
    pub fn app(&self, id: &ServiceId) -> Option<Arc<AppRoute>> {
        self.apps.read(|apps| apps.get(id).cloned())
    }

    /// The first provider of `api` over `transport`.
    pub fn find(&self, api: &str, transport: Transport) -> Option<Provider> {
        self.table.read(|table| {
            table
                .0
                .iter()
                .find(|r| r.transport == transport && r.api.as_str() == api)
                .map(|r| r.provider.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Endpoint;

    fn export(id: &str) -> Provider {
        Provider::Service(Arc::new(ServiceExport {
            id: id.parse().unwrap(),
            key: ServiceKey::generate(),
            path: http::Uri::from_static("/"),
            upstream: Upstream::new(Endpoint::Unix("/nonexistent".into())),
        }))
    }

    fn id_of(p: Option<Provider>) -> Option<String> {
        match p? {
            Provider::Service(s) => Some(s.id.to_string()),
            Provider::Host(h) => Some(format!("{h:?}")),
        }
    }

    #[test]
    fn first_registration_wins_and_unregister_falls_through() {
        let b = Broker::new();
        let api: ApiId = "x.example/api".parse().unwrap();
        b.register(Rank::User, [(api.clone(), Transport::Rpc, export("one"))]);
        b.register(Rank::User, [(api.clone(), Transport::Rpc, export("two"))]);
        assert_eq!(
            id_of(b.find("x.example/api", Transport::Rpc)).as_deref(),
            Some("one")
        );
        assert!(b.find("x.example/api", Transport::Proxy).is_none());
        b.unregister_service(&"one".parse().unwrap());
        assert_eq!(
            id_of(b.find("x.example/api", Transport::Rpc)).as_deref(),
            Some("two")
        );
        b.unregister_service(&"two".parse().unwrap());
        assert!(b.find("x.example/api", Transport::Rpc).is_none());
    }

    #[test]
    fn a_core_service_that_comes_back_wins_again() {
        let b = Broker::new();
        let api: ApiId = "atek.cloud/adb-api".parse().unwrap();
        b.register(Rank::Core, [(api.clone(), Transport::Rpc, export("core"))]);
        b.register(Rank::User, [(api.clone(), Transport::Rpc, export("user"))]);
        b.unregister_service(&"core".parse().unwrap());
        assert_eq!(
            id_of(b.find("atek.cloud/adb-api", Transport::Rpc)).as_deref(),
            Some("user")
        );
        b.register(Rank::Core, [(api.clone(), Transport::Rpc, export("core"))]);
        assert_eq!(
            id_of(b.find("atek.cloud/adb-api", Transport::Rpc)).as_deref(),
            Some("core")
        );
    }
}
