//! Bearer tokens: random secrets that never reach logs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A bearer token: 32 random bytes as 64 lowercase hex characters (the original's form).
///
/// `Debug` and `Display` print `<redacted>`; read the secret with [`BearerToken::expose`],
/// which makes every place that handles the raw value easy to find.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BearerToken(String);

impl BearerToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// Wraps an existing secret (from a config file or a header).
    pub fn from_secret(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Fills `buf` from the operating system's random source.
///
/// The OS source failing is not something a caller can recover from: without randomness no
/// token or key may be made, so this aborts loudly rather than hand out a weak secret.
pub(crate) fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random source failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_and_redacted() {
        let t = BearerToken::generate();
        assert_eq!(t.expose().len(), 64);
        assert!(t.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!format!("{t:?} {t}").contains(t.expose()));
        assert_ne!(t, BearerToken::generate());
    }
}
