//! `atek.cloud/users-api` and `atek.cloud/user-sessions-api` (reference §4.3-4.4, §7).
//!
//! Field names are the original's (`@atek-cloud/users-api` 1.1.0,
//! `@atek-cloud/user-sessions-api` 1.0.0), so their clients and validators accept what the
//! host sends. A password never travels back out: [`User`] has no such field.

use atek_core::UserKey;
use serde::{Deserialize, Serialize};

/// The users API id.
pub const ID: &str = "atek.cloud/users-api";
/// The sessions API id.
pub const SESSIONS_ID: &str = "atek.cloud/user-sessions-api";

/// The role that sees and manages everything.
pub const ADMIN_ROLE: &str = "admin";

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The user's key (`Atek-Auth-User`).
    pub key: UserKey,
    /// The login name.
    pub username: String,
    /// `admin`, or empty for a plain user.
    #[serde(default)]
    pub role: String,
}

impl User {
    /// True for the admin role.
    pub fn is_admin(&self) -> bool {
        self.role == ADMIN_ROLE
    }
}

/// What `list` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// Every user.
    pub users: Vec<User>,
}

/// `create`'s parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    /// The login name.
    pub username: String,
    /// The password, in clear (it is hashed at once and never stored or logged).
    pub password: String,
    /// `admin`, or empty/absent for a plain user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// `update`'s parameter: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserUpdate {
    /// A new login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A new password. Changing it ends the user's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A new role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A user's settings (`getSettings`, `updateSettings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSettings {
    /// The service shown at the host's own domain for this user (reference §8.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_service_id: Option<String>,
}

/// What `whoami` and `login` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSession {
    /// True when the caller is a user.
    pub is_active: bool,
    /// The user's login name, when active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// `login`'s parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreds {
    /// The login name.
    pub username: String,
    /// The password.
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_original_clients() {
        let user = User {
            key: "k1".parse().unwrap(),
            username: "alice".into(),
            role: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&user).unwrap(),
            r#"{"key":"k1","username":"alice","role":""}"#
        );
        let settings = UserSettings::default();
        assert_eq!(serde_json::to_string(&settings).unwrap(), "{}");
        let inactive = UserSession {
            is_active: false,
            username: None,
        };
        assert_eq!(
            serde_json::to_string(&inactive).unwrap(),
            r#"{"isActive":false}"#
        );
        let new: NewUser = serde_json::from_str(r#"{"username":"bob","password":"pw"}"#).unwrap();
        assert_eq!(new.role, None);
    }
}
