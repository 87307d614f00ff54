//! The Atek host daemon: the composition root ([`host`]) and its parts.
//!
//! - [`config`]: config.json, typed and validated.
//! - [`supervisor`]: starts services, probes readiness, restarts crashes, keeps logs.
//! - [`installer`]: packages from folders and git repositories, with semver tags and npm.
//! - [`broker`] and [`gateway`]: routing JSON-RPC calls and WebSockets by API id.
//! - [`auth`]: bearer tokens and session cookies to callers.
//! - `web`: the host's domain and the apps' subdomains in the browser: login, bind-session,
//!   the app proxy, the main service.
//! - [`store`]: the installed services' records.
//! - [`groups`]: the process groups the host starts, recorded so that the next start can
//!   kill what a killed host left behind.
//! - [`users`]: users, login sessions and the login rate limiter.
//!
//! ```no_run
//! # async fn demo() -> Result<(), atek_host::host::HostError> {
//! use atek_host::host::{Host, HostOptions};
//!
//! let host = Host::start(HostOptions { config_dir: "/tmp/atek".into(), ..Default::default() }).await?;
//! println!("listening on port {}", host.port());
//! host.shutdown().await;
//! # Ok(()) }
//! ```

mod apis;
pub mod auth;
pub mod broker;
pub mod config;
mod fsutil;
pub mod gateway;
pub mod groups;
pub mod host;
pub mod installer;
pub mod manage;
mod p2p;
pub mod paths;
mod per_thread;
mod rows;
mod server;
pub mod store;
pub mod supervisor;
pub mod upstream;
pub mod users;
pub(crate) mod web;
