//! A typed client for a running host's gateway.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atek_core::BearerToken;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::jsonrpc::RpcError;
use crate::services::{
    ConfigureOpts, InstallOpts, ServiceInfo, ServiceList, UpdateCheck, UpdateResult,
};
use crate::users::{NewUser, User, UserList, UserSettings, UserUpdate};
use crate::{inspect, services, users};

/// What can go wrong calling the host.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the host's address.
    #[error("Atek is not running: nothing answers at {url}")]
    NotRunning {
        /// The address tried.
        url: String,
    },
    /// The token was refused.
    #[error("the host refused the token (HTTP 401): check systemAuthTokens in config.json")]
    Unauthorized,
    /// The call reached its handler and failed.
    #[error("{0}")]
    Rpc(#[from] RpcError),
    /// The host answered with something this client does not understand.
    #[error("unexpected answer from the host: {0}")]
    Protocol(String),
    /// The connection failed in another way.
    #[error("could not talk to the host at {url}")]
    Transport {
        /// The address tried.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
}

/// A client for one host, authenticated with one bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: String,
    next_id: std::sync::Arc<AtomicU64>,
}

impl Client {
    /// A client for the host at `base` (e.g. `http://127.0.0.1:8480`).
    pub fn new(base: Url, token: BearerToken) -> Self {
        // The host speaks plain HTTP, but reqwest builds TLS support in whenever another
        // crate of the program enables it (iroh does), and then wants a process-wide rustls
        // provider. Installing one is a no-op when one is already there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            http,
            base,
            auth: format!("Bearer {}", token.expose()),
            next_id: std::sync::Arc::new(AtomicU64::new(1)),
        }
    }

    /// The host's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Calls `method` of `api` with positional `params` (serialised as a JSON array).
    pub async fn call<P: Serialize, T: DeserializeOwned>(
        &self,
        api: &str,
        method: &str,
        params: P,
    ) -> Result<T, ClientError> {
        let mut url = self.base.clone();
        url.set_path("/_atek/gateway");
        url.query_pairs_mut().clear().append_pair("api", api);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self
            .http
            .post(url)
            .header("Authorization", &self.auth)
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized);
        }
        let value: Value = resp.json().await.map_err(|e| self.transport_error(e))?;
        if let Some(err) = value.get("error").filter(|e| e.is_object()) {
            let err: RpcError = serde_json::from_value(err.clone())
                .map_err(|e| ClientError::Protocol(format!("bad error object: {e}")))?;
            return Err(ClientError::Rpc(err));
        }
        let result = value
            .get("result")
            .cloned()
            .ok_or_else(|| ClientError::Protocol(format!("no result in {value}")))?;
        serde_json::from_value(result)
            .map_err(|e| ClientError::Protocol(format!("result of {method}: {e}")))
    }

    fn transport_error(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::NotRunning {
                url: self.base.to_string(),
            }
        } else {
            ClientError::Transport {
                url: self.base.to_string(),
                source: e,
            }
        }
    }

    /// `atek.cloud/services-api`.
    pub fn services(&self) -> ServicesClient<'_> {
        ServicesClient(self)
    }

    /// `atek.cloud/inspect-api`.
    pub fn inspect(&self) -> InspectClient<'_> {
        InspectClient(self)
    }

    /// `atek.cloud/users-api`.
    pub fn users(&self) -> UsersClient<'_> {
        UsersClient(self)
    }
}

/// Typed calls of `atek.cloud/services-api`.
#[derive(Debug)]
pub struct ServicesClient<'a>(&'a Client);

impl ServicesClient<'_> {
    /// Every service the caller may see.
    pub async fn list(&self) -> Result<Vec<ServiceInfo>, ClientError> {
        let list: ServiceList = self.0.call(services::ID, "list", ()).await?;
        Ok(list.services)
    }
    /// One service.
    pub async fn get(&self, id: &str) -> Result<ServiceInfo, ClientError> {
        self.0.call(services::ID, "get", [id]).await
    }
    /// Installs and starts a service.
    pub async fn install(&self, opts: &InstallOpts) -> Result<ServiceInfo, ClientError> {
        self.0.call(services::ID, "install", [opts]).await
    }
    /// Stops and removes a service.
    pub async fn uninstall(&self, id: &str) -> Result<(), ClientError> {
        self.0
            .call::<_, Value>(services::ID, "uninstall", [id])
            .await
            .map(drop)
    }
    /// Changes a service's settings.
    pub async fn configure(&self, id: &str, opts: &ConfigureOpts) -> Result<(), ClientError> {
        let params = (id, opts);
        self.0
            .call::<_, Value>(services::ID, "configure", params)
            .await
            .map(drop)
    }
    /// Starts a service.
    pub async fn start(&self, id: &str) -> Result<(), ClientError> {
        self.0
            .call::<_, Value>(services::ID, "start", [id])
            .await
            .map(drop)
    }
    /// Stops a service.
    pub async fn stop(&self, id: &str) -> Result<(), ClientError> {
        self.0
            .call::<_, Value>(services::ID, "stop", [id])
            .await
            .map(drop)
    }
    /// Restarts a service.
    pub async fn restart(&self, id: &str) -> Result<(), ClientError> {
        self.0
            .call::<_, Value>(services::ID, "restart", [id])
            .await
            .map(drop)
    }
    /// Looks for a newer matching tag.
    pub async fn check_for_package_updates(&self, id: &str) -> Result<UpdateCheck, ClientError> {
        self.0
            .call(services::ID, "checkForPackageUpdates", [id])
            .await
    }
    /// Installs the best matching tag.
    pub async fn update_package(&self, id: &str) -> Result<UpdateResult, ClientError> {
        self.0.call(services::ID, "updatePackage", [id]).await
    }
}

/// Typed calls of `atek.cloud/inspect-api`.
#[derive(Debug)]
pub struct InspectClient<'a>(&'a Client);

impl InspectClient<'_> {
    /// True once the host has loaded its core services and serves its own APIs.
    pub async fn is_ready(&self) -> Result<bool, ClientError> {
        self.0.call(inspect::ID, "isReady", ()).await
    }
    /// The persisted config.json.
    pub async fn get_config(&self) -> Result<Value, ClientError> {
        self.0.call(inspect::ID, "getConfig", ()).await
    }
}

/// Typed calls of `atek.cloud/users-api`.
#[derive(Debug)]
pub struct UsersClient<'a>(&'a Client);

impl UsersClient<'_> {
    /// Every user (admin only).
    pub async fn list(&self) -> Result<Vec<User>, ClientError> {
        let list: UserList = self.0.call(users::ID, "list", ()).await?;
        Ok(list.users)
    }
    /// One user by key.
    pub async fn get(&self, key: &str) -> Result<User, ClientError> {
        self.0.call(users::ID, "get", [key]).await
    }
    /// Creates a user.
    pub async fn create(&self, user: &NewUser) -> Result<User, ClientError> {
        self.0.call(users::ID, "create", [user]).await
    }
    /// Changes a user.
    pub async fn update(&self, key: &str, update: &UserUpdate) -> Result<User, ClientError> {
        self.0.call(users::ID, "update", (key, update)).await
    }
    /// Deletes a user.
    pub async fn delete(&self, key: &str) -> Result<(), ClientError> {
        self.0
            .call::<_, Value>(users::ID, "delete", [key])
            .await
            .map(drop)
    }
    /// A user's settings.
    pub async fn get_settings(&self, key: &str) -> Result<UserSettings, ClientError> {
        self.0.call(users::ID, "getSettings", [key]).await
    }
    /// Changes a user's settings.
    pub async fn update_settings(
        &self,
        key: &str,
        settings: &UserSettings,
    ) -> Result<UserSettings, ClientError> {
        self.0
            .call(users::ID, "updateSettings", (key, settings))
            .await
    }
}
