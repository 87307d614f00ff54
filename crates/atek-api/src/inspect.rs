//! `atek.cloud/inspect-api` (reference §4.1): `isReady()`, the ready signal, and
//! `getConfig()`, the persisted config. Both admin only.

/// The API id.
pub const ID: &str = "atek.cloud/inspect-api";
