//! Login sessions, persisted in the server database (table `atek.cloud/user-session`; in
//! `state/sessions.json` without one), and the bind tokens that carry a login to a service's
//! subdomain.
//!
//! A session token is 32 random bytes, base64url without padding (43 characters). Only its
//! blake3 hash is kept, in memory and on disk, so what is stored logs nobody in.
//! Every session has an absolute expiry (`sessionTtl`). A host session belongs to the main
//! domain; a child session is bound to one service and made by redeeming a bind token; it
//! dies with its parent and never outlives it.
//!
//! Bind tokens (the `bst` query parameter of the bind-session flow) live in memory only: single
//! use, bound to a service and to the host session that minted them, valid for
//! [`BIND_TOKEN_TTL`].
//!
//! Memory and the file stay bounded: at most [`MAX_SESSIONS`] sessions
//! ([`MAX_SESSIONS_PER_USER`] per user) and [`MAX_BIND_TOKENS`] bind tokens; past that the
//! oldest go first. Expired sessions are dropped on load and whenever one is added.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use atek_core::{ServiceId, UserKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::per_thread::{Changing, Copies, PerThread};
use crate::store::StoreError;

/// The file format's version, read first.
const VERSION: u32 = 1;

/// Length of a session or bind token: 32 bytes in unpadded base64url.
const TOKEN_LEN: usize = 43;

/// How long a bind token may be redeemed.
pub const BIND_TOKEN_TTL: Duration = Duration::from_secs(60);
/// The most sessions kept; past it the oldest are dropped.
pub const MAX_SESSIONS: usize = 10_000;
/// The most sessions (host and child) one user keeps; past it their oldest are dropped.
pub const MAX_SESSIONS_PER_USER: usize = 256;
/// The most bind tokens waiting to be redeemed.
pub const MAX_BIND_TOKENS: usize = 10_000;
/// The most bind tokens one session may have waiting.
const MAX_BIND_TOKENS_PER_SESSION: usize = 16;

/// A token's blake3 hash: what identifies a session or a bind token.
type Digest = [u8; 32];

/// A session token, as sent in the `session` cookie.
///
/// `Debug` and `Display` print `<redacted>`; read the secret with [`SessionToken::expose`].
#[derive(Clone)]
pub struct SessionToken(String);

impl SessionToken {
    fn generate() -> Self {
        Self(random_token())
    }

    /// The secret itself, for the cookie. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a session is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The host's own domain.
    Host,
    /// One service's subdomain.
    Service(ServiceId),
}

/// One session in memory.
#[derive(Clone)]
struct Session {
    user: UserKey,
    /// None for a host session; the service of a child session.
    service: Option<ServiceId>,
    /// The host session a child session was made from.
    parent: Option<Digest>,
    /// Unix seconds.
    created: u64,
    /// Unix seconds; the session is valid while `now < expires`.
    expires: u64,
}

impl Copies for HashMap<Digest, Session> {
    fn copy(&self) -> Self {
        self.clone()
    }
}

impl Session {
    fn valid(&self, now: u64) -> bool {
        now < self.expires
    }

    fn fits(&self, scope: &Scope) -> bool {
        match (scope, &self.service) {
            (Scope::Host, None) => true,
            (Scope::Service(wanted), Some(mine)) => wanted == mine,
            _ => false,
        }
    }
}

/// One session as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSession {
    /// blake3 of the token, hex.
    token_hash: String,
    user: UserKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<ServiceId>,
    /// blake3 of the parent's token, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent_hash: Option<String>,
    /// Unix seconds.
    created_at: u64,
    /// Unix seconds.
    expires_at: u64,
}

/// The server database's table of sessions.
pub const SESSION_TABLE: &str = "atek.cloud/user-session";

fn read_file(path: &Path) -> Result<Vec<StoredSession>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(path, &bytes)?.sessions),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionsFile {
    version: u32,
    sessions: Vec<StoredSession>,
}

/// A bind token waiting to be redeemed.
struct Bind {
    /// The host session that minted it.
    parent: Digest,
    service: ServiceId,
    expires: Instant,
}

/// The sessions store. Share it behind an `Arc`; adding and revoking write the file through.
pub struct Sessions {
    path: PathBuf,
    /// The server database's table `atek.cloud/user-session`; None: the file.
    rows: Option<crate::rows::Rows>,
    ttl: Duration,
    /// Read on every request with a cookie, through a copy per HTTP thread.
    sessions: PerThread<HashMap<Digest, Session>>,
    /// Held while writing the file, so writes happen in the order their snapshots were taken.
    writing: Mutex<()>,
    binds: Mutex<HashMap<Digest, Bind>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts only: even hashes of tokens have no business in logs.
        let sessions = self.sessions.try_shared().map(|s| s.len());
        let binds = self.binds.try_lock().map(|b| b.len()).ok();
        f.debug_struct("Sessions")
            .field("path", &self.path)
            .field("ttl", &self.ttl)
            .field("sessions", &sessions)
            .field("bind_tokens", &binds)
            .finish()
    }
}

impl Sessions {
    /// Opens (or starts empty) `sessions.json` under `state_dir`. Sessions with a lifetime longer
    /// than `ttl` (the setting was lowered) are shortened to it; expired ones are dropped.
    pub fn open(state_dir: &Path, ttl: Duration) -> Result<Self, StoreError> {
        Self::open_at(state_dir, ttl, unix_now())
    }

    fn open_at(state_dir: &Path, ttl: Duration, now: u64) -> Result<Self, StoreError> {
        let path = state_dir.join("sessions.json");
        let stored = read_file(&path)?;
        Self::from_stored(path, None, stored, ttl, now)
    }

    /// Opens the sessions in the server database `db` (table `atek.cloud/user-session`, one
    /// row per session, keyed by the blake3 hash of its token: never the token), moving
    /// those of an older `sessions.json` under `state_dir` there first.
    pub fn open_in(db: &atek_db::Db, state_dir: &Path, ttl: Duration) -> Result<Self, StoreError> {
        let path = state_dir.join("sessions.json");
        let rows = crate::rows::Rows::open(db, SESSION_TABLE)?;
        let (stored, migrated) = if rows.is_empty() && path.exists() {
            (read_file(&path)?, true)
        } else {
            (rows.load()?, false)
        };
        let sessions = Self::from_stored(path.clone(), Some(rows), stored, ttl, unix_now())?;
        if migrated {
            sessions.persist()?;
            crate::rows::retire(&path)?;
            tracing::info!(file = %path.display(), "moved the sessions into the server database");
        } else {
            // Sessions dropped while loading (expired, orphaned) go from the table too.
            sessions.persist()?;
        }
        Ok(sessions)
    }

    fn from_stored(
        path: PathBuf,
        rows: Option<crate::rows::Rows>,
        stored: Vec<StoredSession>,
        ttl: Duration,
        now: u64,
    ) -> Result<Self, StoreError> {
        let ttl_secs = secs(ttl);
        let mut sessions = HashMap::with_capacity(stored.len());
        for (i, s) in stored.into_iter().enumerate() {
            let bad = |what: &str| StoreError::Corrupt {
                path: path.clone(),
                problem: format!(
                    "damaged (session {} has a bad {what}); move the file away to log everyone out",
                    i + 1
                ),
            };
            let digest = from_hex(&s.token_hash).ok_or_else(|| bad("tokenHash"))?;
            let parent = match &s.parent_hash {
                Some(p) => Some(from_hex(p).ok_or_else(|| bad("parentHash"))?),
                None => None,
            };
            let session = Session {
                user: s.user,
                service: s.service,
                parent,
                created: s.created_at,
                expires: s.expires_at.min(s.created_at.saturating_add(ttl_secs)),
            };
            sessions.insert(digest, session);
        }
        // A child never outlives its parent, also after the shortening above; one without a
        // parent (a damaged file) goes.
        let parents: HashMap<Digest, u64> = sessions
            .iter()
            .filter(|(_, s)| s.parent.is_none())
            .map(|(d, s)| (*d, s.expires))
            .collect();
        sessions.retain(|_, s| match s.parent {
            None => true,
            Some(p) => match parents.get(&p) {
                Some(&parent_expires) => {
                    s.expires = s.expires.min(parent_expires);
                    true
                }
                None => false,
            },
        });
        sessions.retain(|_, s| s.valid(now));
        Ok(Self {
            path,
            rows,
            ttl,
            sessions: PerThread::new(sessions),
            writing: Mutex::new(()),
            binds: Mutex::new(HashMap::new()),
        })
    }

    /// How long a new session lasts (for the cookie's `Max-Age`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new host session for `user`.
    pub fn create(&self, user: &UserKey) -> Result<SessionToken, StoreError> {
        self.create_at(user, unix_now())
    }

    fn create_at(&self, user: &UserKey, now: u64) -> Result<SessionToken, StoreError> {
        let token = SessionToken::generate();
        let session = Session {
            user: user.clone(),
            service: None,
            parent: None,
            created: now,
            expires: now.saturating_add(secs(self.ttl)),
        };
        self.insert(digest(token.expose()), now, |_| Some(session))?;
        Ok(token)
    }

    /// The user of the session `token` when it is valid now and for `scope`; None when it is
    /// unknown, expired, revoked or for another scope.
    ///
    /// On every proxied request: one blake3 hash and a map lookup under a read lock. The
    /// returned key is the only allocation.
    pub fn resolve(&self, token: &str, scope: &Scope) -> Option<UserKey> {
        self.resolve_at(token, scope, unix_now())
    }

    fn resolve_at(&self, token: &str, scope: &Scope, now: u64) -> Option<UserKey> {
        if token.len() != TOKEN_LEN {
            return None;
        }
        let digest = digest(token);
        self.sessions.read(|sessions| {
            let session = sessions.get(&digest)?;
            (session.valid(now) && session.fits(scope)).then(|| session.user.clone())
        })
    }

    /// Ends the session `token` and the child sessions made from it (logout). Unknown tokens
    /// are fine. The session is gone from memory even when writing the file fails.
    pub fn revoke(&self, token: &str) -> Result<(), StoreError> {
        if token.len() != TOKEN_LEN {
            return Ok(());
        }
        let digest = digest(token);
        let removed = remove_with_children(&mut self.write(), &digest);
        self.lock_binds().retain(|_, b| b.parent != digest);
        if removed > 0 { self.persist() } else { Ok(()) }
    }

    /// Ends every session of `user` (password change, deletion); returns how many.
    pub fn revoke_user(&self, user: &UserKey) -> Result<usize, StoreError> {
        let removed = {
            let mut sessions = self.write();
            let before = sessions.len();
            sessions.retain(|_, s| &s.user != user);
            before - sessions.len()
        };
        // Bind tokens of the removed sessions can no longer be redeemed (the parent is
        // checked), and they expire within a minute.
        if removed > 0 {
            self.persist()?;
        }
        Ok(removed)
    }

    /// A single-use bind token for `service`, minted from the valid host session
    /// `host_session`; None when that session is not valid on the host's domain.
    pub fn mint_bind(&self, host_session: &str, service: &ServiceId) -> Option<String> {
        self.mint_bind_at(host_session, service, unix_now(), Instant::now())
    }

    fn mint_bind_at(
        &self,
        host_session: &str,
        service: &ServiceId,
        now: u64,
        clock: Instant,
    ) -> Option<String> {
        self.resolve_at(host_session, &Scope::Host, now)?;
        let parent = digest(host_session);
        let token = random_token();
        let mut binds = self.lock_binds();
        binds.retain(|_, b| b.expires > clock);
        let mine = binds.values().filter(|b| b.parent == parent).count();
        if mine >= MAX_BIND_TOKENS_PER_SESSION {
            evict_soonest(&mut binds, |b| b.parent == parent);
        }
        if binds.len() >= MAX_BIND_TOKENS {
            evict_soonest(&mut binds, |_| true);
        }
        binds.insert(
            digest(&token),
            Bind {
                parent,
                service: service.clone(),
                expires: clock + BIND_TOKEN_TTL,
            },
        );
        Some(token)
    }

    /// Redeems the bind token `bind` on `service`'s subdomain: it is used up whatever happens.
    /// When it is valid (not expired, minted for `service`, its host session still valid),
    /// makes a session bound to `service` for the same user, a child of the minting session:
    /// revoked with it and expiring no later than it.
    pub fn redeem_bind(
        &self,
        bind: &str,
        service: &ServiceId,
    ) -> Result<Option<(UserKey, SessionToken)>, StoreError> {
        self.redeem_bind_at(bind, service, unix_now(), Instant::now())
    }

    fn redeem_bind_at(
        &self,
        bind: &str,
        service: &ServiceId,
        now: u64,
        clock: Instant,
    ) -> Result<Option<(UserKey, SessionToken)>, StoreError> {
        if bind.len() != TOKEN_LEN {
            return Ok(None);
        }
        let Some(bind) = self.lock_binds().remove(&digest(bind)) else {
            return Ok(None);
        };
        if bind.expires <= clock || &bind.service != service {
            return Ok(None);
        }
        let token = SessionToken::generate();
        let mut user = None;
        let added = self.insert(digest(token.expose()), now, |sessions| {
            // Checked under the same lock as the insert, so a revoke cannot slip in between.
            let parent = sessions.get(&bind.parent)?;
            if !parent.valid(now) || parent.service.is_some() {
                return None;
            }
            user = Some(parent.user.clone());
            Some(Session {
                user: parent.user.clone(),
                service: Some(bind.service),
                parent: Some(bind.parent),
                created: now,
                expires: now.saturating_add(secs(self.ttl)).min(parent.expires),
            })
        })?;
        Ok(match (added, user) {
            (true, Some(user)) => Some((user, token)),
            _ => None,
        })
    }

    /// Adds the session `make` returns (None: nothing to add) under `digest`, after dropping
    /// expired ones and before enforcing the caps, then writes the file. Returns whether one
    /// was added. When the write fails the session is taken back out.
    fn insert(
        &self,
        digest: Digest,
        now: u64,
        make: impl FnOnce(&HashMap<Digest, Session>) -> Option<Session>,
    ) -> Result<bool, StoreError> {
        {
            let mut sessions = self.write();
            sessions.retain(|_, s| s.valid(now));
            let Some(session) = make(&sessions) else {
                return Ok(false);
            };
            sessions.insert(digest, session);
            enforce_caps(&mut sessions, &digest);
        }
        if let Err(e) = self.persist() {
            remove_with_children(&mut self.write(), &digest);
            return Err(e);
        }
        Ok(true)
    }

    /// Writes the current sessions to the file. The snapshot is taken while holding `writing`,
    /// so the last write always reflects every change made before it; readers wait only for
    /// the snapshot, not for the disk.
    fn persist(&self) -> Result<(), StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let file = {
            let sessions = self.read();
            let mut stored: Vec<StoredSession> = sessions
                .iter()
                .map(|(digest, s)| StoredSession {
                    token_hash: hex::encode(digest),
                    user: s.user.clone(),
                    service: s.service.clone(),
                    parent_hash: s.parent.map(hex::encode),
                    created_at: s.created,
                    expires_at: s.expires,
                })
                .collect();
            stored
                .sort_by(|a, b| (a.created_at, &a.token_hash).cmp(&(b.created_at, &b.token_hash)));
            SessionsFile {
                version: VERSION,
                sessions: stored,
            }
        };
        if let Some(rows) = &self.rows {
            return rows.save(file.sessions.iter().map(|s| (s.token_hash.clone(), s)));
        }
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| io(e.into()))?;
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(io)
    }

    // A panic while holding these locks leaves each map consistent (every change is one
    // insert or retain), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<Digest, Session>> {
        self.sessions.shared()
    }

    fn write(&self) -> Changing<'_, HashMap<Digest, Session>> {
        self.sessions.lock()
    }

    fn lock_binds(&self) -> MutexGuard<'_, HashMap<Digest, Bind>> {
        self.binds.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().len()
    }
}

/// Removes the session `digest` and its children; returns how many went.
fn remove_with_children(sessions: &mut HashMap<Digest, Session>, digest: &Digest) -> usize {
    if sessions.remove(digest).is_none() {
        return 0;
    }
    let before = sessions.len();
    sessions.retain(|_, s| s.parent.as_ref() != Some(digest));
    1 + before - sessions.len()
}

/// Drops the oldest sessions until the user of the new session `added` and the whole map are
/// within their caps. `added` and its parent are never the ones dropped.
fn enforce_caps(sessions: &mut HashMap<Digest, Session>, added: &Digest) {
    let Some(new) = sessions.get(added) else {
        return;
    };
    let user = new.user.clone();
    let parent = new.parent;
    let spared = |d: &Digest| d == added || Some(*d) == parent;
    // App sessions go first: losing one costs a redirect, losing a login costs a password
    // (and many app sessions pile up easily: one per app per browser).
    while sessions.values().filter(|s| s.user == user).count() > MAX_SESSIONS_PER_USER {
        let Some(victim) = oldest(sessions, |d, s| {
            s.user == user && !spared(d) && s.parent.is_some()
        })
        .or_else(|| oldest(sessions, |d, s| s.user == user && !spared(d))) else {
            break;
        };
        remove_with_children(sessions, &victim);
    }
    while sessions.len() > MAX_SESSIONS {
        let Some(victim) = oldest(sessions, |d, s| !spared(d) && s.parent.is_some())
            .or_else(|| oldest(sessions, |d, _| !spared(d)))
        else {
            break;
        };
        remove_with_children(sessions, &victim);
    }
}

fn oldest(
    sessions: &HashMap<Digest, Session>,
    candidate: impl Fn(&Digest, &Session) -> bool,
) -> Option<Digest> {
    sessions
        .iter()
        .filter(|(d, s)| candidate(d, s))
        .min_by_key(|(d, s)| (s.created, **d))
        .map(|(d, _)| *d)
}

/// Removes the bind token matching `candidate` that expires first.
fn evict_soonest(binds: &mut HashMap<Digest, Bind>, candidate: impl Fn(&Bind) -> bool) {
    let soonest = binds
        .iter()
        .filter(|(_, b)| candidate(b))
        .min_by_key(|(_, b)| b.expires)
        .map(|(d, _)| *d);
    if let Some(d) = soonest {
        binds.remove(&d);
    }
}

fn digest(token: &str) -> Digest {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn from_hex(s: &str) -> Option<Digest> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// 32 random bytes, base64url without padding.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    crate::users::fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whole seconds, rounded up.
fn secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn parse(path: &Path, bytes: &[u8]) -> Result<SessionsFile, StoreError> {
    crate::store::parse_versioned(
        path,
        bytes,
        &crate::store::Versioned {
            what: "sessions",
            version: VERSION,
            remedy: "move it away to start with no sessions (everyone logs in again)",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn user(k: &str) -> UserKey {
        k.parse().unwrap()
    }

    fn svc(id: &str) -> ServiceId {
        id.parse().unwrap()
    }

    fn host() -> Scope {
        Scope::Host
    }

    fn open(dir: &Path, ttl: Duration) -> Sessions {
        Sessions::open_at(dir, ttl, T0).unwrap()
    }

    /// A host session of `u` and a child bound to `service`, both made at `now`.
    fn with_child(s: &Sessions, u: &UserKey, service: &ServiceId, now: u64) -> (String, String) {
        let parent = s.create_at(u, now).unwrap();
        let clock = Instant::now();
        let bind = s
            .mint_bind_at(parent.expose(), service, now, clock)
            .unwrap();
        let (owner, child) = s
            .redeem_bind_at(&bind, service, now, clock)
            .unwrap()
            .unwrap();
        assert_eq!(&owner, u);
        (parent.expose().to_owned(), child.expose().to_owned())
    }

    #[test]
    fn tokens_are_43_base64url_chars_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let t = s.create_at(&user("alice1"), T0).unwrap();
        assert_eq!(t.expose().len(), 43);
        assert!(
            t.expose()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let shown = format!("{t:?} {t} {s:?}");
        assert!(!shown.contains(t.expose()), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_ne!(
            t.expose(),
            s.create_at(&user("alice1"), T0).unwrap().expose()
        );
    }

    #[test]
    fn a_host_session_resolves_on_the_host_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let alice = user("alice1");
        let t = s.create_at(&alice, T0).unwrap();
        assert_eq!(s.resolve_at(t.expose(), &host(), T0), Some(alice));
        assert_eq!(
            s.resolve_at(t.expose(), &Scope::Service(svc("hello")), T0),
            None
        );
        assert_eq!(s.resolve_at("", &host(), T0), None);
        assert_eq!(s.resolve_at(&"A".repeat(43), &host(), T0), None);
        assert_eq!(s.resolve_at(&t.expose()[1..], &host(), T0), None);
        assert_eq!(s.ttl(), HOUR);
    }

    #[test]
    fn sessions_expire_at_their_absolute_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), Duration::from_secs(60));
        let t = s.create_at(&user("alice1"), T0).unwrap();
        assert!(s.resolve_at(t.expose(), &host(), T0 + 59).is_some());
        assert!(s.resolve_at(t.expose(), &host(), T0 + 60).is_none());

        // A ttl of zero: dead on arrival (through the public, real-clock API).
        let s = Sessions::open(dir.path(), Duration::ZERO).unwrap();
        let t = s.create(&user("alice1")).unwrap();
        assert_eq!(s.resolve(t.expose(), &host()), None);
    }

    #[test]
    fn sessions_survive_reopen_and_only_hashes_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sessions::open(dir.path(), HOUR).unwrap();
        let alice = user("alice1");
        let t = s.create(&alice).unwrap();
        let bind = s.mint_bind(t.expose(), &svc("hello")).unwrap();
        let (_, child) = s.redeem_bind(&bind, &svc("hello")).unwrap().unwrap();

        let file = std::fs::read_to_string(dir.path().join("sessions.json")).unwrap();
        assert!(
            !file.contains(t.expose()) && !file.contains(child.expose()),
            "{file}"
        );
        assert!(file.contains(&hex::encode(digest(t.expose()))));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("sessions.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let s = Sessions::open(dir.path(), HOUR).unwrap();
        assert_eq!(s.resolve(t.expose(), &host()), Some(alice.clone()));
        let hello = Scope::Service(svc("hello"));
        assert_eq!(s.resolve(child.expose(), &hello), Some(alice));
        // The parent link survived too.
        s.revoke(t.expose()).unwrap();
        assert_eq!(s.resolve(child.expose(), &hello), None);
        let s = Sessions::open(dir.path(), HOUR).unwrap();
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn expired_sessions_are_dropped_on_load_and_a_lower_ttl_applies() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let old = s.create_at(&user("alice1"), T0).unwrap();
        let newer = s.create_at(&user("alice1"), T0 + 1800).unwrap();

        let s = Sessions::open_at(dir.path(), HOUR, T0 + 3600).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s.resolve_at(old.expose(), &host(), T0 + 3600).is_none());
        assert!(s.resolve_at(newer.expose(), &host(), T0 + 3600).is_some());

        // sessionTtl lowered to 10 minutes: the session now ends 10 minutes after it began.
        let s = Sessions::open_at(dir.path(), Duration::from_secs(600), T0 + 1801).unwrap();
        assert!(s.resolve_at(newer.expose(), &host(), T0 + 2399).is_some());
        assert!(s.resolve_at(newer.expose(), &host(), T0 + 2400).is_none());
    }

    #[test]
    fn a_child_is_bound_to_its_service() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let alice = user("alice1");
        let (_, child) = with_child(&s, &alice, &svc("core.adb"), T0);
        let adb = Scope::Service(svc("core.adb"));
        assert_eq!(s.resolve_at(&child, &adb, T0), Some(alice));
        assert_eq!(s.resolve_at(&child, &host(), T0), None);
        assert_eq!(
            s.resolve_at(&child, &Scope::Service(svc("hello")), T0),
            None
        );
        // A child cannot mint bind tokens: only host sessions can.
        assert_eq!(
            s.mint_bind_at(&child, &svc("hello"), T0, Instant::now()),
            None
        );
    }

    #[test]
    fn a_child_expires_no_later_than_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), Duration::from_secs(100));
        let alice = user("alice1");
        let parent = s.create_at(&alice, T0).unwrap();
        let clock = Instant::now();
        let bind = s
            .mint_bind_at(parent.expose(), &svc("hello"), T0 + 50, clock)
            .unwrap();
        let (_, child) = s
            .redeem_bind_at(&bind, &svc("hello"), T0 + 50, clock)
            .unwrap()
            .unwrap();
        let hello = Scope::Service(svc("hello"));
        assert!(s.resolve_at(child.expose(), &hello, T0 + 99).is_some());
        assert!(s.resolve_at(child.expose(), &hello, T0 + 100).is_none());
    }

    #[test]
    fn revoking_a_session_revokes_its_children_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let alice = user("alice1");
        let (parent, child_a) = with_child(&s, &alice, &svc("a"), T0);
        let clock = Instant::now();
        let bind = s.mint_bind_at(&parent, &svc("b"), T0, clock).unwrap();
        let (_, child_b) = s
            .redeem_bind_at(&bind, &svc("b"), T0, clock)
            .unwrap()
            .unwrap();
        let (other, other_child) = with_child(&s, &alice, &svc("a"), T0);
        let pending = s.mint_bind_at(&parent, &svc("c"), T0, clock).unwrap();

        // Revoking a child leaves its parent and siblings.
        s.revoke(child_b.expose()).unwrap();
        assert!(
            s.resolve_at(child_b.expose(), &Scope::Service(svc("b")), T0)
                .is_none()
        );
        assert!(s.resolve_at(&parent, &host(), T0).is_some());
        assert!(
            s.resolve_at(&child_a, &Scope::Service(svc("a")), T0)
                .is_some()
        );

        s.revoke(&parent).unwrap();
        assert!(s.resolve_at(&parent, &host(), T0).is_none());
        assert!(
            s.resolve_at(&child_a, &Scope::Service(svc("a")), T0)
                .is_none()
        );
        // Its pending bind token died with it.
        assert!(
            s.redeem_bind_at(&pending, &svc("c"), T0, clock)
                .unwrap()
                .is_none()
        );
        // Another session of the same user is untouched.
        assert!(s.resolve_at(&other, &host(), T0).is_some());
        assert!(
            s.resolve_at(&other_child, &Scope::Service(svc("a")), T0)
                .is_some()
        );
        // Unknown and malformed tokens are fine.
        s.revoke(&parent).unwrap();
        s.revoke("nonsense").unwrap();
    }

    #[test]
    fn revoke_user_ends_all_their_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let (alice, bob) = (user("alice1"), user("bob1"));
        let (a1, a1_child) = with_child(&s, &alice, &svc("hello"), T0);
        let a2 = s.create_at(&alice, T0).unwrap();
        let b = s.create_at(&bob, T0).unwrap();
        assert_eq!(s.revoke_user(&alice).unwrap(), 3);
        assert!(s.resolve_at(&a1, &host(), T0).is_none());
        assert!(s.resolve_at(a2.expose(), &host(), T0).is_none());
        assert!(
            s.resolve_at(&a1_child, &Scope::Service(svc("hello")), T0)
                .is_none()
        );
        assert_eq!(s.resolve_at(b.expose(), &host(), T0), Some(bob));
        assert_eq!(s.revoke_user(&alice).unwrap(), 0);
        let s = open(dir.path(), HOUR);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn bind_tokens_are_single_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let t = s.create_at(&user("alice1"), T0).unwrap();
        let clock = Instant::now();
        let bind = s
            .mint_bind_at(t.expose(), &svc("hello"), T0, clock)
            .unwrap();
        assert_eq!(bind.len(), 43);
        assert!(
            s.redeem_bind_at(&bind, &svc("hello"), T0, clock)
                .unwrap()
                .is_some()
        );
        assert!(
            s.redeem_bind_at(&bind, &svc("hello"), T0, clock)
                .unwrap()
                .is_none()
        );
        // A bind token is not a session.
        assert!(
            s.resolve_at(&bind, &Scope::Service(svc("hello")), T0)
                .is_none()
        );
    }

    #[test]
    fn bind_tokens_are_bound_to_their_service_and_used_up_by_a_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let t = s.create_at(&user("alice1"), T0).unwrap();
        let clock = Instant::now();
        let bind = s
            .mint_bind_at(t.expose(), &svc("hello"), T0, clock)
            .unwrap();
        assert!(
            s.redeem_bind_at(&bind, &svc("evil"), T0, clock)
                .unwrap()
                .is_none()
        );
        assert!(
            s.redeem_bind_at(&bind, &svc("hello"), T0, clock)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bind_tokens_expire_after_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let t = s.create_at(&user("alice1"), T0).unwrap();
        let clock = Instant::now();
        let fresh = s
            .mint_bind_at(t.expose(), &svc("hello"), T0, clock)
            .unwrap();
        let stale = s
            .mint_bind_at(t.expose(), &svc("hello"), T0, clock)
            .unwrap();
        let later = clock + BIND_TOKEN_TTL - Duration::from_millis(1);
        assert!(
            s.redeem_bind_at(&fresh, &svc("hello"), T0 + 59, later)
                .unwrap()
                .is_some()
        );
        assert!(
            s.redeem_bind_at(&stale, &svc("hello"), T0 + 60, clock + BIND_TOKEN_TTL)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bind_tokens_need_a_valid_host_session() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), Duration::from_secs(60));
        let clock = Instant::now();
        assert!(s.mint_bind_at("", &svc("hello"), T0, clock).is_none());
        assert!(
            s.mint_bind_at(&"x".repeat(43), &svc("hello"), T0, clock)
                .is_none()
        );
        let t = s.create_at(&user("alice1"), T0).unwrap();
        assert!(
            s.mint_bind_at(t.expose(), &svc("hello"), T0 + 60, clock)
                .is_none()
        );
        // Minted in time, but the session expired before the redeem.
        let bind = s
            .mint_bind_at(t.expose(), &svc("hello"), T0 + 30, clock)
            .unwrap();
        assert!(
            s.redeem_bind_at(&bind, &svc("hello"), T0 + 60, clock)
                .unwrap()
                .is_none()
        );
        // Or was revoked.
        let t = s.create_at(&user("alice1"), T0).unwrap();
        let bind = s
            .mint_bind_at(t.expose(), &svc("hello"), T0, clock)
            .unwrap();
        s.revoke_user(&user("alice1")).unwrap();
        assert!(
            s.redeem_bind_at(&bind, &svc("hello"), T0, clock)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bind_tokens_are_bounded_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let t = s.create_at(&user("alice1"), T0).unwrap();
        let clock = Instant::now();
        let binds: Vec<String> = (0..=MAX_BIND_TOKENS_PER_SESSION as u64)
            .map(|i| {
                let at = clock + Duration::from_millis(i);
                s.mint_bind_at(t.expose(), &svc("hello"), T0, at).unwrap()
            })
            .collect();
        assert_eq!(s.lock_binds().len(), MAX_BIND_TOKENS_PER_SESSION);
        // The oldest went; the newest still works.
        let late = clock + Duration::from_secs(1);
        assert!(
            s.redeem_bind_at(&binds[0], &svc("hello"), T0, late)
                .unwrap()
                .is_none()
        );
        assert!(
            s.redeem_bind_at(binds.last().unwrap(), &svc("hello"), T0, late)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn bind_tokens_are_bounded_overall_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), HOUR);
        let t = s.create_at(&user("alice1"), T0).unwrap();
        let clock = Instant::now();
        {
            // Fill the map with other sessions' tokens.
            let mut binds = s.lock_binds();
            for i in 0..MAX_BIND_TOKENS as u64 {
                let mut d = [0u8; 32];
                d[..8].copy_from_slice(&i.to_le_bytes());
                binds.insert(
                    d,
                    Bind {
                        parent: [1; 32],
                        service: svc("x"),
                        expires: clock + BIND_TOKEN_TTL + Duration::from_millis(i),
                    },
                );
            }
        }
        s.mint_bind_at(t.expose(), &svc("hello"), T0, clock)
            .unwrap();
        assert_eq!(s.lock_binds().len(), MAX_BIND_TOKENS);
        // A minute later every one of them has expired.
        let later = clock + BIND_TOKEN_TTL + Duration::from_secs(11);
        s.mint_bind_at(t.expose(), &svc("hello"), T0, later)
            .unwrap();
        assert_eq!(s.lock_binds().len(), 1);
    }

    fn session(u: &str, created: u64, parent: Option<Digest>) -> Session {
        Session {
            user: user(u),
            service: parent.map(|_| svc("hello")),
            parent,
            created,
            expires: created + 3600,
        }
    }

    fn d(i: u64) -> Digest {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&i.to_be_bytes());
        d
    }

    #[test]
    fn a_user_keeps_at_most_the_cap_and_loses_the_oldest_first() {
        let mut map = HashMap::new();
        for i in 0..MAX_SESSIONS_PER_USER as u64 {
            map.insert(d(i), session("alice1", T0 + i, None));
        }
        // The oldest host session has a child; it goes with it.
        map.insert(d(9999), session("alice1", T0 + 5000, Some(d(0))));
        map.insert(d(8888), session("bob1", T0, None));
        map.insert(d(7777), session("alice1", T0 + 9000, None));
        enforce_caps(&mut map, &d(7777));
        let alices = map.values().filter(|s| s.user == user("alice1")).count();
        // 258 before: the oldest host session and its child went.
        assert_eq!(alices, MAX_SESSIONS_PER_USER);
        assert!(!map.contains_key(&d(0)) && !map.contains_key(&d(9999)));
        assert!(map.contains_key(&d(1)) && map.contains_key(&d(7777)));
        assert!(map.contains_key(&d(8888)));
    }

    #[test]
    fn a_new_child_never_evicts_its_own_parent() {
        let mut map = HashMap::new();
        map.insert(d(0), session("alice1", T0, None));
        for i in 1..=MAX_SESSIONS_PER_USER as u64 {
            map.insert(d(i), session("alice1", T0 + i, Some(d(0))));
        }
        enforce_caps(&mut map, &d(MAX_SESSIONS_PER_USER as u64));
        assert_eq!(map.len(), MAX_SESSIONS_PER_USER);
        assert!(map.contains_key(&d(0)), "the parent stays");
        assert!(!map.contains_key(&d(1)), "the oldest child goes");
    }

    #[test]
    fn the_whole_store_is_capped() {
        let mut map = HashMap::new();
        for i in 0..MAX_SESSIONS as u64 {
            map.insert(d(i), session(&format!("u{}", i % 100), T0 + i, None));
        }
        map.insert(d(u64::MAX), session("newcomer", T0, None));
        enforce_caps(&mut map, &d(u64::MAX));
        assert_eq!(map.len(), MAX_SESSIONS);
        assert!(map.contains_key(&d(u64::MAX)), "the new one stays");
        assert!(!map.contains_key(&d(0)), "the oldest other goes");
    }

    #[test]
    fn newer_and_damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.json");
        std::fs::write(&path, r#"{"version":2,"sessions":[]}"#).unwrap();
        let err = Sessions::open(dir.path(), HOUR).unwrap_err();
        assert!(err.to_string().contains("newer Atek"), "{err}");
        std::fs::write(
            &path,
            r#"{"version":1,"sessions":[{"tokenHash":"zz","user":"a","createdAt":1,"expiresAt":2}]}"#,
        )
        .unwrap();
        let err = Sessions::open(dir.path(), HOUR).unwrap_err();
        assert!(err.to_string().contains("bad tokenHash"), "{err}");
        std::fs::write(&path, "[").unwrap();
        let err = Sessions::open(dir.path(), HOUR).unwrap_err();
        assert!(err.to_string().contains("move it away"), "{err}");
    }

    #[test]
    fn a_failed_write_adds_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let s = open(&state, HOUR);
        std::fs::remove_dir(&state).unwrap();
        assert!(s.create_at(&user("alice1"), T0).is_err());
        assert_eq!(s.len(), 0);
    }
}
