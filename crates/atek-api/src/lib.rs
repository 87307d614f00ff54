//! The Atek contract, shared by the host and everything that talks to it.
//!
//! - [`jsonrpc`]: the JSON-RPC 2.0 envelopes and the error codes callers see, as the original
//!   host produced them (reference §3.2-3.4).
//! - [`services`] and [`inspect`]: the types of `atek.cloud/services-api` and
//!   `atek.cloud/inspect-api` (reference §4.1-4.2), field for field.
//! - [`users`]: the types of `atek.cloud/users-api` and `atek.cloud/user-sessions-api`
//!   (reference §4.3-4.4).
//! - [`Client`]: a typed client that calls a running host through its gateway.
//!
//! ```no_run
//! # async fn demo() -> Result<(), atek_api::ClientError> {
//! use atek_api::Client;
//! use atek_core::BearerToken;
//!
//! let client = Client::new("http://127.0.0.1:8480".parse().unwrap(), BearerToken::from_secret("…"));
//! for info in client.services().list().await? {
//!     println!("{} {:?}", info.settings.id, info.status);
//! }
//! # Ok(()) }
//! ```

mod client;
pub mod inspect;
pub mod jsonrpc;
pub mod services;
pub mod users;

pub use client::{Client, ClientError, InspectClient, ServicesClient, UsersClient};
