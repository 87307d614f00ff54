//! Atek's shared vocabulary: the typed ids every other crate speaks in, and secrets that
//! cannot leak through `Debug` or `Display`.
//!
//! Names are parsed once, at the edge, into these types; code that holds a [`ServiceId`]
//! never checks it again.
//!
//! ```
//! use atek_core::{ApiId, ServiceId, BearerToken};
//!
//! let id: ServiceId = "hello-world".parse().unwrap();
//! assert_eq!(id.as_str(), "hello-world");
//! assert!("../etc".parse::<ServiceId>().is_err());
//!
//! let api: ApiId = "example.com/my-api".parse().unwrap();
//! assert_eq!(api.to_string(), "example.com/my-api");
//!
//! let token = BearerToken::generate();
//! assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
//! ```

mod ids;
mod token;

pub use ids::{ApiId, IdError, ServiceId, ServiceKey, UserKey};
pub use token::BearerToken;
