//! Typed ids. Each wraps a validated string and can only be built through `FromStr`
//! (or serde, which goes through the same check).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which kind of id.
        kind: &'static str,
    },
    /// The string is longer than the kind allows.
    #[error("{kind} {value:?} is longer than {max} characters")]
    TooLong {
        /// Which kind of id.
        kind: &'static str,
        /// The rejected value.
        value: String,
        /// The limit.
        max: usize,
    },
    /// The string holds a character the kind does not allow.
    #[error("{kind} {value:?} may only contain {allowed}")]
    BadChar {
        /// Which kind of id.
        kind: &'static str,
        /// The rejected value.
        value: String,
        /// What is allowed, for the message.
        allowed: &'static str,
    },
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $check($kind, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A service's id: its name on this host, used as a subdomain (`{id}.{domain}`), a folder
    /// name under `packages/` and a socket file name. ASCII letters, digits, `-`, `_` and `.`;
    /// it may not start with `.` or `-`, and is at most 63 characters.
    ServiceId,
    "service id",
    check_service_id
);

string_id!(
    /// An API id such as `atek.cloud/services-api`: what the gateway routes by. Printable
    /// ASCII without spaces, at most 200 characters.
    ApiId,
    "API id",
    check_api_id
);

string_id!(
    /// A service's key: the stable identity the host gives each installed service
    /// (`ATEK_ASSIGNED_SERVICE_KEY`, the `Atek-Auth-Service` header). Kept across restarts.
    ServiceKey,
    "service key",
    check_key
);

string_id!(
    /// A user's key (the `Atek-Auth-User` header). `system` is the host itself.
    UserKey,
    "user key",
    check_key
);

impl UserKey {
    /// The pseudo-user of the host itself and of system bearer tokens.
    pub fn system() -> Self {
        Self("system".to_owned())
    }

    /// True for the `system` pseudo-user.
    pub fn is_system(&self) -> bool {
        self.0 == "system"
    }
}

impl ServiceKey {
    /// The key stamped on calls made with a system token (`Atek-Auth-Service: system`).
    pub fn system() -> Self {
        Self("system".to_owned())
    }

    /// A new random key: 16 lowercase hex characters.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 8];
        crate::token::fill_random(&mut bytes);
        Self(hex::encode(bytes))
    }
}

fn check_service_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    check_len(kind, s, 63)?;
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ok_start = !s.starts_with(['.', '-']) && !s.ends_with('.') && !s.contains("..");
    if ok_chars && ok_start {
        Ok(())
    } else {
        Err(IdError::BadChar {
            kind,
            value: s.to_owned(),
            allowed: "ASCII letters, digits, '-', '_' and '.' (not first, last or doubled)",
        })
    }
}

fn check_api_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    check_len(kind, s, 200)?;
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(IdError::BadChar {
            kind,
            value: s.to_owned(),
            allowed: "printable ASCII without spaces",
        })
    }
}

fn check_key(kind: &'static str, s: &str) -> Result<(), IdError> {
    check_len(kind, s, 128)?;
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(())
    } else {
        Err(IdError::BadChar {
            kind,
            value: s.to_owned(),
            allowed: "ASCII letters, digits, '-', '_' and '.'",
        })
    }
}

fn check_len(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            kind,
            value: s.to_owned(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids() {
        for ok in [
            "a",
            "hello-world",
            "core.adb",
            "my_app-2",
            "x".repeat(63).as_str(),
        ] {
            assert!(ok.parse::<ServiceId>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a..b",
            "trailing.",
            "sp ace",
            "ü",
        ] {
            assert!(bad.parse::<ServiceId>().is_err(), "{bad}");
        }
        assert!(matches!(
            "x".repeat(64).parse::<ServiceId>(),
            Err(IdError::TooLong { max: 63, .. })
        ));
    }

    #[test]
    fn api_ids() {
        assert!("atek.cloud/services-api".parse::<ApiId>().is_ok());
        assert!("has space".parse::<ApiId>().is_err());
        assert!(matches!("".parse::<ApiId>(), Err(IdError::Empty { .. })));
    }

    #[test]
    fn serde_goes_through_validation() {
        let id: ServiceId = serde_json::from_str("\"ok-id\"").unwrap();
        assert_eq!(id.as_str(), "ok-id");
        assert!(serde_json::from_str::<ServiceId>("\"../x\"").is_err());
    }

    #[test]
    fn generated_keys_are_distinct_and_valid() {
        let a = ServiceKey::generate();
        let b = ServiceKey::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 16);
        assert!(a.as_str().parse::<ServiceKey>().is_ok());
    }

    #[test]
    fn system_user() {
        assert!(UserKey::system().is_system());
        assert!(!"alice".parse::<UserKey>().unwrap().is_system());
    }
}
