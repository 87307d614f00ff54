//! The host's users, persisted in the server database (table `atek.cloud/user`; in
//! `state/users.json` without one), their login sessions ([`sessions`]) and the login rate
//! limiter ([`limiter`]).
//!
//! A user has a key (16 random lowercase hex characters), a username (unique ignoring case;
//! `system` is reserved for the host itself), a role (`""` or `admin`), settings, and an
//! argon2id hash of their password. A change that cannot be written (a row, or the versioned
//! JSON file replaced atomically) is not made.
//!
//! Hashing and verifying a password take tens of milliseconds of CPU and 19 MiB of memory:
//! they run on tokio's blocking threads, at most half the cores' worth at a time (so a flood of
//! logins queues rather than exhausting memory or starving the proxy), never while holding the
//! store's lock; the memory goes back to the system after each hash.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLockReadGuard};

use atek_api::users::{ADMIN_ROLE, NewUser, User, UserSettings, UserUpdate};
use atek_core::{ServiceId, UserKey};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::per_thread::{Changing, Copies, PerThread};
use crate::store::StoreError;

pub mod limiter;
mod password;
pub mod sessions;

pub use limiter::{LoginLimiter, Throttled};
pub use sessions::{Scope, SessionToken, Sessions};

/// The file format's version, read first.
const VERSION: u32 = 1;

/// The shortest username, in characters.
pub const MIN_USERNAME_LEN: usize = 3;
/// The longest username, in characters.
pub const MAX_USERNAME_LEN: usize = 64;
/// The username no user may take: the host's own pseudo-user.
pub const RESERVED_USERNAME: &str = "system";
/// The shortest password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Why a users operation was refused. Each message says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No user has this key.
    #[error("No user has the key {0:?}; list the users to find the right key")]
    NotFound(String),
    /// Another user has this username (compared ignoring case).
    #[error("The username {0:?} is taken (usernames are compared ignoring case); choose another")]
    UsernameTaken(String),
    /// The username is reserved for the host.
    #[error("The username {0:?} is reserved for the host itself; choose another")]
    Reserved(String),
    /// The username breaks the rules.
    #[error(
        "The username {username:?} is not valid: {problem}. A username has 3 to 64 characters: \
         a letter, then letters, digits, '-', '_' or '.'"
    )]
    InvalidUsername {
        /// The username (cut when very long).
        username: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The role is neither empty nor `admin`.
    #[error("The role {0:?} is not valid; use \"admin\", or leave it empty for a plain user")]
    InvalidRole(String),
    /// The password is too short (or too long); the message says which.
    #[error("{0}")]
    WeakPassword(String),
    /// The change would leave the host without an admin.
    #[error("This is the last admin; make another user an admin first")]
    LastAdmin,
    /// A setting has a bad value; the message says which and why.
    #[error("{0}")]
    InvalidSettings(String),
    /// Hashing the password failed (a bug, or the runtime shutting down).
    #[error("Could not hash the password ({0}); try again, and report it if it persists")]
    Hashing(String),
    /// Reading or writing `users.json` failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One user as stored.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredUser {
    key: UserKey,
    username: String,
    #[serde(default)]
    role: String,
    /// argon2id PHC string.
    password_hash: String,
    #[serde(default)]
    settings: UserSettings,
}

impl Copies for Vec<StoredUser> {
    fn copy(&self) -> Self {
        self.clone()
    }
}

impl StoredUser {
    fn public(&self) -> User {
        User {
            key: self.key.clone(),
            username: self.username.clone(),
            role: self.role.clone(),
        }
    }

    fn is_admin(&self) -> bool {
        self.role == ADMIN_ROLE
    }
}

impl fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("key", &self.key)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("settings", &self.settings)
            .finish()
    }
}

/// The server database's table of accounts.
pub const USER_TABLE: &str = "atek.cloud/user";

fn read_file(path: &Path) -> Result<Vec<StoredUser>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(path, &bytes)?.users),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct UsersFile {
    version: u32,
    users: Vec<StoredUser>,
}

/// The users store. Share it behind an `Arc`; every change is written through.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    /// Read on every request with a cookie, through a copy per HTTP thread.
    users: PerThread<Vec<StoredUser>>,
    /// The server database's table `atek.cloud/user`; None: the file.
    rows: Option<crate::rows::Rows>,
    /// Bounds the hashes running at once (each takes 19 MiB and a core for tens of
    /// milliseconds), so a flood of logins cannot exhaust memory or starve the proxy.
    hashing: Arc<Semaphore>,
}

impl Users {
    /// Opens (or starts empty) `users.json` under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join("users.json");
        let users = read_file(&path)?;
        Ok(Self::new(path, users, None))
    }

    /// Opens the accounts in the server database `db` (table `atek.cloud/user`, one row per
    /// user), moving those of an older `users.json` under `state_dir` there first.
    pub fn open_in(db: &atek_db::Db, state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join("users.json");
        let rows = crate::rows::Rows::open(db, USER_TABLE)?;
        if rows.is_empty() && path.exists() {
            let users = read_file(&path)?;
            rows.save(users.iter().map(|u| (u.key.as_str().to_owned(), u)))?;
            crate::rows::retire(&path)?;
            tracing::info!(file = %path.display(), "moved the accounts into the server database");
            return Ok(Self::new(path, users, Some(rows)));
        }
        let users = rows.load()?;
        Ok(Self::new(path, users, Some(rows)))
    }

    fn new(path: PathBuf, users: Vec<StoredUser>, rows: Option<crate::rows::Rows>) -> Self {
        // At most half the cores hash at once (at least one, at most four): logins wait
        // rather than take every core from the requests being served.
        let permits = std::thread::available_parallelism()
            .map_or(1, |n| n.get() / 2)
            .clamp(1, 4);
        Self {
            path,
            users: PerThread::new(users),
            rows,
            hashing: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Every user, in the order they were created.
    pub fn list(&self) -> Vec<User> {
        self.read().iter().map(StoredUser::public).collect()
    }

    /// The user with `key`.
    pub fn get(&self, key: &UserKey) -> Option<User> {
        self.read()
            .iter()
            .find(|u| &u.key == key)
            .map(StoredUser::public)
    }

    /// The user named `username`, ignoring case.
    pub fn find_username(&self, username: &str) -> Option<User> {
        self.read()
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .map(StoredUser::public)
    }

    /// True when there are no users yet (first run).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether the user with `key` is an admin; None when there is no such user. One
    /// lookup and no copy: every request authenticated by a cookie asks.
    pub fn admin_of(&self, key: &UserKey) -> Option<bool> {
        self.users.read(|users| {
            users
                .iter()
                .find(|u| &u.key == key)
                .map(StoredUser::is_admin)
        })
    }

    /// True for an admin, and for the `system` pseudo-user.
    pub fn is_admin(&self, key: &UserKey) -> bool {
        key.is_system()
            || self
                .users
                .read(|users| users.iter().any(|u| &u.key == key && u.is_admin()))
    }

    /// The settings of the user with `key`.
    pub fn settings(&self, key: &UserKey) -> Option<UserSettings> {
        self.read()
            .iter()
            .find(|u| &u.key == key)
            .map(|u| u.settings.clone())
    }

    /// Creates a user. The role is `""` when absent.
    ///
    /// The password is hashed on a blocking thread, outside the lock; the username is checked
    /// again under the lock, so two creations of one name cannot both succeed.
    pub async fn create(&self, new: NewUser) -> Result<User, UserError> {
        let NewUser {
            username,
            password,
            role,
        } = new;
        check_username(&username)?;
        let role = check_role(role.as_deref().unwrap_or(""))?;
        check_password(&password)?;
        ensure_free(&self.read(), &username, None)?;
        let password_hash = self.hash(password).await?;
        let mut users = self.write();
        ensure_free(&users, &username, None)?;
        let user = StoredUser {
            key: new_key(&users),
            username,
            role,
            password_hash,
            settings: UserSettings::default(),
        };
        let public = user.public();
        let mut next = users.clone();
        next.push(user);
        self.commit(&mut users, next)?;
        Ok(public)
    }

    /// Changes the user with `key`: the fields given replace the current ones. Returns the
    /// user and whether the password changed (the caller then ends their sessions).
    pub async fn update(
        &self,
        key: &UserKey,
        update: UserUpdate,
    ) -> Result<(User, bool), UserError> {
        let UserUpdate {
            username,
            password,
            role,
        } = update;
        if let Some(username) = &username {
            check_username(username)?;
        }
        let role = role.as_deref().map(check_role).transpose()?;
        if let Some(password) = &password {
            check_password(password)?;
        }
        check_update(&self.read(), key, username.as_deref(), role.as_deref())?;
        let password_hash = match password {
            Some(password) => Some(self.hash(password).await?),
            None => None,
        };
        let password_changed = password_hash.is_some();
        let mut users = self.write();
        let i = check_update(&users, key, username.as_deref(), role.as_deref())?;
        let mut next = users.clone();
        let user = &mut next[i];
        if let Some(username) = username {
            user.username = username;
        }
        if let Some(role) = role {
            user.role = role;
        }
        if let Some(hash) = password_hash {
            user.password_hash = hash;
        }
        let public = user.public();
        self.commit(&mut users, next)?;
        Ok((public, password_changed))
    }

    /// Deletes the user with `key` (not their services; the caller ends their sessions).
    pub fn delete(&self, key: &UserKey) -> Result<(), UserError> {
        let mut users = self.write();
        let i = find(&users, key)?;
        if users[i].is_admin() && admins(&users) == 1 {
            return Err(UserError::LastAdmin);
        }
        let mut next = users.clone();
        next.remove(i);
        self.commit(&mut users, next)?;
        Ok(())
    }

    /// Merges `settings` into the settings of the user with `key`: a field given replaces the
    /// stored one, the others stay. An empty `mainServiceId` clears it. Returns the result.
    pub fn update_settings(
        &self,
        key: &UserKey,
        settings: UserSettings,
    ) -> Result<UserSettings, UserError> {
        let UserSettings { main_service_id } = settings;
        let main_service_id = match main_service_id {
            Some(id) if id.is_empty() => Some(None),
            Some(id) => match id.parse::<ServiceId>() {
                Ok(_) => Some(Some(id)),
                Err(e) => {
                    return Err(UserError::InvalidSettings(format!(
                        "mainServiceId {:?} is not a service id ({e}); give the id of an \
                         installed service, or \"\" to clear it",
                        shown(&id)
                    )));
                }
            },
            None => None,
        };
        let mut users = self.write();
        let i = find(&users, key)?;
        let mut next = users.clone();
        let merged = &mut next[i].settings;
        if let Some(id) = main_service_id {
            merged.main_service_id = id;
        }
        let merged = merged.clone();
        self.commit(&mut users, next)?;
        Ok(merged)
    }

    /// The user named `username` (ignoring case) when `password` is theirs.
    ///
    /// Takes as long for an unknown username (checked against a dummy hash) as for a known
    /// one, and compares in constant time, so neither timing nor the answer tells which
    /// usernames exist.
    pub async fn verify(&self, username: &str, password: &str) -> Option<User> {
        if password.chars().count() > MAX_PASSWORD_CHARS {
            // No account has such a password; refuse before spending a hash on it.
            return None;
        }
        let found = self
            .read()
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .map(|u| (u.key.clone(), u.password_hash.clone()));
        let hash = found.as_ref().map(|(_, hash)| hash.clone());
        let password = password.to_owned();
        let matches = self
            .blocking(move || {
                // The dummy hash is made on the first call whoever logs in, so that first
                // call does not tell either.
                let dummy = password::dummy();
                match hash {
                    Some(hash) => password::verify(&password, &hash),
                    None => {
                        password::verify(&password, dummy);
                        false
                    }
                }
            })
            .await
            .unwrap_or(false);
        if !matches {
            return None;
        }
        let (key, hash) = found?;
        // Still there, and the password has not changed meanwhile.
        self.read()
            .iter()
            .find(|u| u.key == key && u.password_hash == hash)
            .map(StoredUser::public)
    }

    /// Hashes `password` on a blocking thread.
    async fn hash(&self, password: String) -> Result<String, UserError> {
        self.blocking(move || password::hash(&password).map_err(|e| e.to_string()))
            .await
            .and_then(|hashed| hashed)
            .map_err(UserError::Hashing)
    }

    /// Runs `f` on a blocking thread once a hashing permit is free. The permit goes with the
    /// work, so a caller that gives up does not let more hashes run than allowed.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let permit = Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Writes `next` to the file, then makes it the current state.
    fn commit(
        &self,
        current: &mut Vec<StoredUser>,
        next: Vec<StoredUser>,
    ) -> Result<(), StoreError> {
        if let Some(rows) = &self.rows {
            rows.save(next.iter().map(|u| (u.key.as_str().to_owned(), u)))?;
            *current = next;
            return Ok(());
        }
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let file = UsersFile {
            version: VERSION,
            users: next,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| io(e.into()))?;
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(io)?;
        *current = file.users;
        Ok(())
    }

    // A panic while holding the lock cannot leave the list half-changed (each change is one
    // assignment), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Vec<StoredUser>> {
        self.users.shared()
    }

    fn write(&self) -> Changing<'_, Vec<StoredUser>> {
        self.users.lock()
    }
}

/// Checks a username against the rules: 3-64 characters, an ASCII letter first, then ASCII
/// letters, digits, `-`, `_` or `.`; not `system` (in any case).
pub fn check_username(username: &str) -> Result<(), UserError> {
    let invalid = |problem| UserError::InvalidUsername {
        username: shown(username),
        problem,
    };
    let len = username.chars().count();
    if len < MIN_USERNAME_LEN {
        return Err(invalid("it is shorter than 3 characters"));
    }
    if len > MAX_USERNAME_LEN {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !username.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid("it does not start with a letter"));
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "it contains a character other than a letter, digit, '-', '_' or '.'",
        ));
    }
    if username.eq_ignore_ascii_case(RESERVED_USERNAME) {
        return Err(UserError::Reserved(username.to_owned()));
    }
    Ok(())
}

/// Checks a new password: 8 to 1024 characters.
pub fn check_password(password: &str) -> Result<(), UserError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_CHARS {
        return Err(UserError::WeakPassword(format!(
            "The password is too short ({len} characters); use at least {MIN_PASSWORD_CHARS}"
        )));
    }
    if len > MAX_PASSWORD_CHARS {
        return Err(UserError::WeakPassword(format!(
            "The password is too long ({len} characters); use at most {MAX_PASSWORD_CHARS}"
        )));
    }
    Ok(())
}

/// The stored form of a role: `""` or `admin`.
fn check_role(role: &str) -> Result<String, UserError> {
    match role {
        "" | ADMIN_ROLE => Ok(role.to_owned()),
        other => Err(UserError::InvalidRole(shown(other))),
    }
}

/// Refuses `username` when a user other than `except` has it, ignoring case.
fn ensure_free(
    users: &[StoredUser],
    username: &str,
    except: Option<&UserKey>,
) -> Result<(), UserError> {
    let taken = users
        .iter()
        .any(|u| Some(&u.key) != except && u.username.eq_ignore_ascii_case(username));
    if taken {
        return Err(UserError::UsernameTaken(username.to_owned()));
    }
    Ok(())
}

/// Checks an update of the user `key` against the others; returns the user's index.
fn check_update(
    users: &[StoredUser],
    key: &UserKey,
    username: Option<&str>,
    role: Option<&str>,
) -> Result<usize, UserError> {
    let i = find(users, key)?;
    if let Some(username) = username {
        ensure_free(users, username, Some(key))?;
    }
    if role.is_some_and(|r| r != ADMIN_ROLE) && users[i].is_admin() && admins(users) == 1 {
        return Err(UserError::LastAdmin);
    }
    Ok(i)
}

fn find(users: &[StoredUser], key: &UserKey) -> Result<usize, UserError> {
    users
        .iter()
        .position(|u| &u.key == key)
        .ok_or_else(|| UserError::NotFound(key.to_string()))
}

fn admins(users: &[StoredUser]) -> usize {
    users.iter().filter(|u| u.is_admin()).count()
}

/// A fresh user key no user has: 16 random lowercase hex characters.
fn new_key(users: &[StoredUser]) -> UserKey {
    loop {
        let mut bytes = [0u8; 8];
        fill_random(&mut bytes);
        if let Ok(key) = hex::encode(bytes).parse::<UserKey>()
            && !users.iter().any(|u| u.key == key)
        {
            return key;
        }
    }
}

/// `s` cut to a length fit for a message.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// Fills `buf` from the operating system's random source.
///
/// Without randomness no salt, key or token may be made, so a failing source aborts loudly
/// rather than hand out a weak secret (as `atek_core`'s tokens do).
pub(crate) fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random source failed");
}

fn parse(path: &Path, bytes: &[u8]) -> Result<UsersFile, StoreError> {
    crate::store::parse_versioned(
        path,
        bytes,
        &crate::store::Versioned {
            what: "users",
            version: VERSION,
            remedy: "restore it from a backup, or move it away to start with no users",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(username: &str, password: &str, role: Option<&str>) -> NewUser {
        NewUser {
            username: username.into(),
            password: password.into(),
            role: role.map(str::to_owned),
        }
    }

    async fn with_admin() -> (tempfile::TempDir, Users, User) {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(dir.path()).unwrap();
        let admin = users
            .create(new_user("alice", "alice-password", Some("admin")))
            .await
            .unwrap();
        (dir, users, admin)
    }

    #[tokio::test]
    async fn create_get_list_find() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(dir.path()).unwrap();
        assert!(users.is_empty());
        let alice = users
            .create(new_user("alice", "alice-password", Some("admin")))
            .await
            .unwrap();
        let bob = users
            .create(new_user("Bob.B", "bob-password", None))
            .await
            .unwrap();
        assert!(!users.is_empty());
        assert_eq!(alice.role, "admin");
        assert_eq!(bob.role, "");
        assert_eq!(bob.username, "Bob.B");
        for key in [&alice.key, &bob.key] {
            assert_eq!(key.as_str().len(), 16);
            assert!(
                key.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
        }
        assert_ne!(alice.key, bob.key);
        assert_eq!(users.list(), [alice.clone(), bob.clone()]);
        assert_eq!(users.get(&bob.key), Some(bob.clone()));
        assert_eq!(users.get(&"0000000000000000".parse().unwrap()), None);
        assert_eq!(users.get(&UserKey::system()), None);
        assert_eq!(users.find_username("bob.b"), Some(bob.clone()));
        assert_eq!(users.find_username("ALICE"), Some(alice.clone()));
        assert_eq!(users.find_username("carol"), None);
        assert!(users.is_admin(&alice.key));
        assert!(!users.is_admin(&bob.key));
        assert!(users.is_admin(&UserKey::system()));
        assert!(!users.is_admin(&"nobody".parse().unwrap()));
        assert_eq!(users.settings(&bob.key), Some(UserSettings::default()));
        assert_eq!(users.settings(&UserKey::system()), None);
    }

    #[test]
    fn username_rules() {
        for ok in [
            "abc",
            "a-b_c.d",
            "Alice99",
            &"x".repeat(64),
            "system2",
            "sys",
        ] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for (bad, problem) in [
            ("ab", "shorter"),
            ("", "shorter"),
            (&"x".repeat(65) as &str, "longer"),
            ("1abc", "start with a letter"),
            ("_abc", "start with a letter"),
            (".abc", "start with a letter"),
            ("ab c", "character"),
            ("ab/c", "character"),
            ("abé", "character"),
            ("éab", "start with a letter"),
        ] {
            let err = check_username(bad).unwrap_err();
            assert!(
                matches!(err, UserError::InvalidUsername { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains(problem), "{bad}: {err}");
            assert!(err.to_string().contains("3 to 64 characters"), "{err}");
        }
        for reserved in ["system", "System", "SYSTEM"] {
            assert!(matches!(
                check_username(reserved),
                Err(UserError::Reserved(_))
            ));
        }
        // A very long name is cut in the message.
        let err = check_username(&"y".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }

    #[tokio::test]
    async fn creation_checks_its_input() {
        let (_dir, users, _) = with_admin().await;
        let err = users
            .create(new_user("system", "long enough", None))
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::Reserved(_)), "{err}");
        assert!(err.to_string().contains("reserved"), "{err}");
        let err = users
            .create(new_user("bob", "long enough", Some("root")))
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::InvalidRole(_)), "{err}");
        assert!(err.to_string().contains("\"admin\""), "{err}");
        let err = users
            .create(new_user("bob", "7-chars", None))
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::WeakPassword(_)), "{err}");
        assert!(err.to_string().contains("at least 8"), "{err}");
        assert!(!err.to_string().contains("7-chars"), "{err}");
        let err = users
            .create(new_user("bob", &"p".repeat(1025), None))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
        // Eight characters, not bytes.
        assert!(check_password("ééééééé").is_err());
        assert!(check_password("éééééééé").is_ok());
        assert_eq!(users.list().len(), 1);
    }

    #[tokio::test]
    async fn usernames_are_unique_ignoring_case() {
        let (_dir, users, alice) = with_admin().await;
        let err = users
            .create(new_user("ALICE", "another-password", None))
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::UsernameTaken(_)), "{err}");
        assert!(err.to_string().contains("taken"), "{err}");
        let bob = users
            .create(new_user("bob", "bob-password", None))
            .await
            .unwrap();
        let rename = |name: &str| UserUpdate {
            username: Some(name.into()),
            ..UserUpdate::default()
        };
        let err = users.update(&bob.key, rename("Alice")).await.unwrap_err();
        assert!(matches!(err, UserError::UsernameTaken(_)), "{err}");
        // A user may change the case of their own name.
        let (renamed, changed) = users.update(&alice.key, rename("ALICE")).await.unwrap();
        assert_eq!(renamed.username, "ALICE");
        assert!(!changed);
    }

    #[tokio::test]
    async fn concurrent_creations_of_one_name_let_one_through() {
        let dir = tempfile::tempdir().unwrap();
        let users = Arc::new(Users::open(dir.path()).unwrap());
        let tasks: Vec<_> = ["carol", "Carol", "CAROL", "carol"]
            .into_iter()
            .map(|name| {
                let users = Arc::clone(&users);
                tokio::spawn(
                    async move { users.create(new_user(name, "carol-password", None)).await },
                )
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => created += 1,
                Err(e) => assert!(matches!(e, UserError::UsernameTaken(_)), "{e}"),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(users.list().len(), 1);
    }

    #[tokio::test]
    async fn verify_checks_the_password() {
        let (_dir, users, alice) = with_admin().await;
        assert_eq!(
            users.verify("alice", "alice-password").await,
            Some(alice.clone())
        );
        assert_eq!(
            users.verify("Alice", "alice-password").await,
            Some(alice.clone())
        );
        assert_eq!(users.verify("alice", "alice-passwore").await, None);
        assert_eq!(users.verify("alice", "").await, None);
        assert_eq!(users.verify("nobody", "alice-password").await, None);
        assert_eq!(users.verify("", "").await, None);
        assert_eq!(users.verify("alice", &"x".repeat(5000)).await, None);
    }

    #[tokio::test]
    async fn a_password_change_is_reported_and_takes_effect() {
        let (_dir, users, alice) = with_admin().await;
        let update = UserUpdate {
            password: Some("a new password".into()),
            ..UserUpdate::default()
        };
        let (same, changed) = users.update(&alice.key, update).await.unwrap();
        assert_eq!(same, alice);
        assert!(changed);
        assert_eq!(users.verify("alice", "alice-password").await, None);
        assert_eq!(
            users.verify("alice", "a new password").await,
            Some(alice.clone())
        );
        let weak = UserUpdate {
            password: Some("short".into()),
            ..UserUpdate::default()
        };
        assert!(matches!(
            users.update(&alice.key, weak).await,
            Err(UserError::WeakPassword(_))
        ));
        let nobody: UserKey = "0123456789abcdef".parse().unwrap();
        assert!(matches!(
            users.update(&nobody, UserUpdate::default()).await,
            Err(UserError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn the_last_admin_stays() {
        let (_dir, users, alice) = with_admin().await;
        let demote = || UserUpdate {
            role: Some(String::new()),
            ..UserUpdate::default()
        };
        let promote = || UserUpdate {
            role: Some("admin".into()),
            ..UserUpdate::default()
        };
        let err = users.delete(&alice.key).unwrap_err();
        assert!(matches!(err, UserError::LastAdmin), "{err}");
        assert!(
            err.to_string().contains("make another user an admin"),
            "{err}"
        );
        assert!(matches!(
            users.update(&alice.key, demote()).await,
            Err(UserError::LastAdmin)
        ));
        // Setting the same role again is fine.
        users.update(&alice.key, promote()).await.unwrap();

        let bob = users
            .create(new_user("bob", "bob-password", None))
            .await
            .unwrap();
        // A plain user can always go.
        users.update(&bob.key, demote()).await.unwrap();
        users.update(&bob.key, promote()).await.unwrap();
        let (alice, _) = users.update(&alice.key, demote()).await.unwrap();
        assert_eq!(alice.role, "");
        assert!(!users.is_admin(&alice.key));
        assert!(matches!(users.delete(&bob.key), Err(UserError::LastAdmin)));
        users.delete(&alice.key).unwrap();
        assert!(matches!(
            users.delete(&alice.key),
            Err(UserError::NotFound(_))
        ));
        assert_eq!(users.list(), [users.get(&bob.key).unwrap()]);
    }

    #[tokio::test]
    async fn settings_merge() {
        let (_dir, users, alice) = with_admin().await;
        let set = |id: Option<&str>| UserSettings {
            main_service_id: id.map(str::to_owned),
        };
        assert_eq!(
            users
                .update_settings(&alice.key, set(Some("lonestar")))
                .unwrap(),
            set(Some("lonestar"))
        );
        // A field not given stays.
        assert_eq!(
            users.update_settings(&alice.key, set(None)).unwrap(),
            set(Some("lonestar"))
        );
        assert_eq!(users.settings(&alice.key), Some(set(Some("lonestar"))));
        // An empty one clears it.
        assert_eq!(
            users.update_settings(&alice.key, set(Some(""))).unwrap(),
            set(None)
        );
        let err = users
            .update_settings(&alice.key, set(Some("../etc")))
            .unwrap_err();
        assert!(matches!(err, UserError::InvalidSettings(_)), "{err}");
        assert!(err.to_string().contains("mainServiceId"), "{err}");
        assert!(matches!(
            users.update_settings(&UserKey::system(), set(Some("x"))),
            Err(UserError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn users_survive_reopen_and_the_file_holds_no_password() {
        let (dir, users, alice) = with_admin().await;
        let bob = users
            .create(new_user("bob", "bob-password", None))
            .await
            .unwrap();
        users
            .update_settings(
                &bob.key,
                UserSettings {
                    main_service_id: Some("lonestar".into()),
                },
            )
            .unwrap();
        let path = dir.path().join("users.json");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(!file.contains("bob-password") && !file.contains("alice-password"));
        assert!(file.contains("\"passwordHash\": \"$argon2id$"), "{file}");
        assert!(file.contains("\"version\": 1"), "{file}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Salts differ, so the same password would hash differently too.
        let hashes: Vec<&str> = file
            .lines()
            .filter(|l| l.contains("passwordHash"))
            .collect();
        assert_eq!(hashes.len(), 2);
        assert_ne!(hashes[0], hashes[1]);

        let users = Users::open(dir.path()).unwrap();
        assert_eq!(users.list(), [alice.clone(), bob.clone()]);
        assert_eq!(users.verify("bob", "bob-password").await, Some(bob.clone()));
        assert_eq!(
            users.settings(&bob.key).unwrap().main_service_id.as_deref(),
            Some("lonestar")
        );
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let users = Users::open(&state).unwrap();
        std::fs::remove_dir(&state).unwrap();
        let err = users
            .create(new_user("alice", "alice-password", None))
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::Store(_)), "{err}");
        assert!(users.is_empty());
    }

    #[test]
    fn newer_and_damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        std::fs::write(&path, r#"{"version":2,"users":[]}"#).unwrap();
        let err = Users::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("newer Atek"), "{err}");
        std::fs::write(&path, r#"{"version":1,"users":[{"key":"k"}]}"#).unwrap();
        let err = Users::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[tokio::test]
    async fn debug_output_holds_no_hash() {
        let (_dir, users, _) = with_admin().await;
        let shown = format!("{users:?}");
        assert!(
            shown.contains("alice") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(!shown.contains("argon2"), "{shown}");
    }
}
