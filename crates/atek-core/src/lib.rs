//! Atek's shared vocabulary: the typed ids every other crate speaks in, Ed25519 keys with
//! their text forms, and secrets that cannot leak through `Debug` or `Display`.
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
//!
//! Keys: a node or log key prints as 52 lowercase base32 characters, a database id as 64 hex
//! characters, and a secret key not at all.
//!
//! ```
//! use atek_core::{DbId, Keyfile, PublicKey, SecretKey};
//!
//! let secret = SecretKey::generate();
//! let public = secret.public();
//! let signature = secret.sign(b"hello");
//! public.verify(b"hello", &signature).unwrap();
//!
//! let text = public.to_string();
//! assert_eq!(text.len(), 52);
//! assert_eq!(text.parse::<PublicKey>().unwrap(), public);
//!
//! let db = DbId::from_public_key(public);
//! assert_eq!(db.to_string(), public.to_hex());
//!
//! assert_eq!(format!("{secret:?}"), "SecretKey(<redacted>)");
//! let keyfile = Keyfile::from_json(&Keyfile::new(secret).to_json()).unwrap();
//! assert_eq!(keyfile.public_key(), public);
//! ```

mod ids;
mod keys;
mod token;

pub use ids::{ApiId, IdError, ServiceId, ServiceKey, UserKey};
pub use keys::{DbId, KeyError, Keyfile, PublicKey, SecretKey, Signature};
pub use token::BearerToken;
