//! The login rate limiter.
//!
//! Two limits, both in memory:
//! - per client address, at most [`ATTEMPTS_PER_SECOND`] attempts a second;
//! - after consecutive failures, a growing back-off, kept per client address and per account
//!   (lowercased username): the first [`FREE_FAILURES`] cost nothing, then 1 s, 2 s, 4 s …,
//!   up to [`ADDRESS_BACKOFF_CAP`] for an address and [`ACCOUNT_BACKOFF_CAP`] for an account.
//!   The account cap is short so that nobody can keep an owner out of their own host for long;
//!   the address cap is long because it only slows down whoever is guessing. A success ends
//!   both back-offs; a streak is forgotten after [`FORGET_AFTER`] without failures.
//!
//! IPv6 clients are counted per /64 (one host usually owns a whole /64), IPv4-mapped IPv6
//! addresses as IPv4. Each map holds at most [`MAX_ENTRIES`] entries: stale ones are dropped
//! first, then the least recently active.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Attempts one address may make per second.
pub const ATTEMPTS_PER_SECOND: u32 = 10;
/// Consecutive failures that cost no back-off.
pub const FREE_FAILURES: u32 = 3;
/// The longest back-off of a client address.
pub const ADDRESS_BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// The longest back-off of an account.
pub const ACCOUNT_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A streak of failures is forgotten this long after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The most entries each map (addresses, accounts) keeps.
pub const MAX_ENTRIES: usize = 10_000;

/// Usernames are at most 64 characters; longer keys are cut so junk cannot grow the map.
const MAX_ACCOUNT_KEY_CHARS: usize = 64;
const SECOND: Duration = Duration::from_secs(1);

/// A refused login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Too many login attempts; try again in {} {}", self.seconds(), if self.seconds() == 1 { "second" } else { "seconds" })]
pub struct Throttled {
    /// How long until an attempt may succeed the checks.
    pub retry_after: Duration,
}

impl Throttled {
    /// [`Throttled::retry_after`] in whole seconds, rounded up, at least 1 (for the message
    /// and a `Retry-After` header).
    pub fn seconds(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// A run of consecutive failures.
#[derive(Debug, Clone, Copy)]
struct Streak {
    failures: u32,
    last_failure: Instant,
    /// Attempts are refused until then.
    until: Instant,
}

impl Streak {
    /// The streak after one more failure at `now`.
    fn fail(previous: Option<Streak>, now: Instant, cap: Duration) -> Streak {
        let failures = match previous {
            Some(s) if now.saturating_duration_since(s.last_failure) < FORGET_AFTER => {
                s.failures.saturating_add(1)
            }
            _ => 1,
        };
        Streak {
            failures,
            last_failure: now,
            until: now + backoff(failures, cap),
        }
    }

    fn remaining(&self, now: Instant) -> Option<Duration> {
        let left = self.until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Nothing left to remember at `now`.
    fn stale(&self, now: Instant) -> bool {
        self.until <= now && now.saturating_duration_since(self.last_failure) >= FORGET_AFTER
    }
}

/// The back-off after `failures` consecutive failures.
fn backoff(failures: u32, cap: Duration) -> Duration {
    match failures.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        // 2^20 s is far past any cap; stop doubling there.
        Some(doublings) => SECOND.saturating_mul(1 << doublings.min(20)).min(cap),
    }
}

/// What is known about one client address.
#[derive(Debug)]
struct Client {
    /// Start of the current one-second window.
    window_start: Instant,
    attempts: u32,
    streak: Option<Streak>,
}

impl Client {
    fn last_active(&self) -> Instant {
        self.streak
            .map_or(self.window_start, |s| s.last_failure.max(self.window_start))
    }

    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.window_start) >= SECOND
            && self.streak.is_none_or(|s| s.stale(now))
    }
}

#[derive(Debug, Default)]
struct Inner {
    clients: HashMap<IpAddr, Client>,
    accounts: HashMap<String, Streak>,
}

/// The login rate limiter. Share it behind an `Arc`; every method takes `&self`.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    inner: Mutex<Inner>,
}

impl LoginLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a login attempt from `addr` for `username` at `now`; refuses it while a back-off
    /// runs for the address or the account, or when the address has used up this second.
    pub fn check(&self, addr: IpAddr, username: &str, now: Instant) -> Result<(), Throttled> {
        let addr = client_key(addr);
        let mut inner = self.lock();
        let account = inner
            .accounts
            .get(account_key(username).as_str())
            .and_then(|s| s.remaining(now));
        let client = inner
            .clients
            .get(&addr)
            .and_then(|c| c.streak)
            .and_then(|s| s.remaining(now));
        if let Some(wait) = account.max(client) {
            return Err(Throttled { retry_after: wait });
        }
        if !inner.clients.contains_key(&addr) {
            make_room(&mut inner.clients, now, Client::stale, Client::last_active);
        }
        let client = inner.clients.entry(addr).or_insert(Client {
            window_start: now,
            attempts: 0,
            streak: None,
        });
        if now.saturating_duration_since(client.window_start) >= SECOND {
            client.window_start = now;
            client.attempts = 0;
        }
        if client.attempts >= ATTEMPTS_PER_SECOND {
            return Err(Throttled {
                retry_after: (client.window_start + SECOND).saturating_duration_since(now),
            });
        }
        client.attempts += 1;
        Ok(())
    }

    /// Records a failed attempt (wrong username or password): the back-offs of the address and
    /// the account grow.
    pub fn failed(&self, addr: IpAddr, username: &str, now: Instant) {
        let addr = client_key(addr);
        let account = account_key(username);
        let mut inner = self.lock();
        if !inner.clients.contains_key(&addr) {
            make_room(&mut inner.clients, now, Client::stale, Client::last_active);
        }
        let client = inner.clients.entry(addr).or_insert(Client {
            window_start: now,
            attempts: 0,
            streak: None,
        });
        client.streak = Some(Streak::fail(client.streak, now, ADDRESS_BACKOFF_CAP));
        let previous = inner.accounts.get(&account).copied();
        if previous.is_none() {
            make_room(&mut inner.accounts, now, Streak::stale, |s| s.last_failure);
        }
        inner
            .accounts
            .insert(account, Streak::fail(previous, now, ACCOUNT_BACKOFF_CAP));
    }

    /// Records a successful login: the back-offs of the address and the account end.
    pub fn succeeded(&self, addr: IpAddr, username: &str) {
        let addr = client_key(addr);
        let mut inner = self.lock();
        if let Some(client) = inner.clients.get_mut(&addr) {
            client.streak = None;
        }
        inner.accounts.remove(account_key(username).as_str());
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each change is a few assignments; a panic cannot leave anything that matters
        // half-done, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.clients.len(), inner.accounts.len())
    }
}

/// Makes room for one more entry in `map`: when it is full, drops the stale entries, and if
/// that is not enough, the least recently active tenth (so the scan runs once per many
/// inserts even when every entry is in use).
fn make_room<K: Eq + Hash + Clone, V>(
    map: &mut HashMap<K, V>,
    now: Instant,
    stale: impl Fn(&V, Instant) -> bool,
    last_active: impl Fn(&V) -> Instant,
) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, v| !stale(v, now));
    if map.len() < MAX_ENTRIES {
        return;
    }
    let mut by_age: Vec<(Instant, K)> = map
        .iter()
        .map(|(k, v)| (last_active(v), k.clone()))
        .collect();
    let evict = MAX_ENTRIES / 10;
    by_age.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
    for (_, k) in &by_age[..evict] {
        map.remove(k);
    }
}

/// The key of a client address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64.
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    }
}

/// The key of an account: the username lowercased (usernames are ASCII and compared ignoring
/// case), cut to the longest a username can be.
fn account_key(username: &str) -> String {
    let end = username
        .char_indices()
        .nth(MAX_ACCOUNT_KEY_CHARS)
        .map_or(username.len(), |(i, _)| i);
    username[..end].to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const A: &str = "192.0.2.1";
    const B: &str = "192.0.2.2";

    /// Fails `n` times from `addr` for `user`, each a second after the back-off ended.
    fn fail_n(l: &LoginLimiter, addr: IpAddr, user: &str, n: u32, mut now: Instant) -> Instant {
        for _ in 0..n {
            now += SECOND;
            while let Err(t) = l.check(addr, user, now) {
                now += t.retry_after;
            }
            l.failed(addr, user, now);
        }
        now
    }

    fn wait(l: &LoginLimiter, addr: &str, user: &str, now: Instant) -> Option<Duration> {
        l.check(ip(addr), user, now).err().map(|t| t.retry_after)
    }

    #[test]
    fn at_most_ten_attempts_per_second_per_address() {
        let l = LoginLimiter::new();
        let t0 = Instant::now();
        for i in 0..ATTEMPTS_PER_SECOND {
            let at = t0 + Duration::from_millis(u64::from(i) * 10);
            assert!(l.check(ip(A), "alice", at).is_ok(), "attempt {i}");
        }
        let refused = l.check(ip(A), "alice", t0 + Duration::from_millis(400));
        assert_eq!(
            refused,
            Err(Throttled {
                retry_after: Duration::from_millis(600)
            })
        );
        // Another address has its own budget; the window reopens after a second.
        assert!(l.check(ip(B), "alice", t0).is_ok());
        assert!(l.check(ip(A), "alice", t0 + SECOND).is_ok());
    }

    #[test]
    fn the_back_off_grows_after_three_free_failures() {
        let l = LoginLimiter::new();
        let mut now = fail_n(&l, ip(A), "alice", FREE_FAILURES, Instant::now());
        assert_eq!(wait(&l, A, "alice", now), None);
        let mut seen = Vec::new();
        for _ in 0..5 {
            now += SECOND;
            assert_eq!(wait(&l, A, "alice", now), None);
            l.failed(ip(A), "alice", now);
            let w = wait(&l, A, "alice", now).unwrap();
            seen.push(w.as_secs());
            now += w;
        }
        assert_eq!(seen, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn the_back_off_is_capped() {
        let l = LoginLimiter::new();
        let now = fail_n(&l, ip(A), "alice", 40, Instant::now());
        assert_eq!(wait(&l, A, "alice", now), Some(ADDRESS_BACKOFF_CAP));
        // The account's own back-off stops at a minute: from elsewhere, alice can try again
        // within one.
        assert_eq!(wait(&l, B, "alice", now), Some(ACCOUNT_BACKOFF_CAP));
        assert_eq!(backoff(u32::MAX, ADDRESS_BACKOFF_CAP), ADDRESS_BACKOFF_CAP);
    }

    #[test]
    fn the_account_back_off_holds_across_addresses_and_case() {
        let l = LoginLimiter::new();
        let mut now = Instant::now();
        for i in 0..=FREE_FAILURES {
            now += SECOND;
            let addr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8));
            l.failed(addr, if i % 2 == 0 { "Alice" } else { "alice" }, now);
        }
        assert_eq!(wait(&l, "203.0.113.9", "ALICE", now), Some(SECOND));
        // Only that account.
        assert_eq!(wait(&l, "203.0.113.9", "bob", now), None);
    }

    #[test]
    fn the_address_back_off_holds_across_accounts() {
        let l = LoginLimiter::new();
        let mut now = Instant::now();
        for i in 0..=FREE_FAILURES {
            now += SECOND;
            l.failed(ip(A), &format!("user{i}"), now);
        }
        assert_eq!(wait(&l, A, "someone-else", now), Some(SECOND));
        assert_eq!(wait(&l, B, "someone-else", now), None);
    }

    #[test]
    fn success_ends_the_back_offs() {
        let l = LoginLimiter::new();
        let now = fail_n(&l, ip(A), "alice", 8, Instant::now());
        assert!(wait(&l, A, "alice", now).is_some());
        assert!(wait(&l, B, "alice", now).is_some());
        l.succeeded(ip(A), "ALICE");
        assert_eq!(wait(&l, A, "alice", now), None);
        assert_eq!(wait(&l, B, "alice", now), None);
        // And the streak starts over.
        l.failed(ip(A), "alice", now);
        assert_eq!(wait(&l, A, "alice", now), None);
    }

    #[test]
    fn a_streak_is_forgotten_after_a_quiet_while() {
        let l = LoginLimiter::new();
        let now = fail_n(&l, ip(A), "alice", 6, Instant::now());
        let later = now + FORGET_AFTER;
        l.failed(ip(A), "alice", later);
        assert_eq!(wait(&l, A, "alice", later), None);
    }

    #[test]
    fn the_message_rounds_up_to_whole_seconds() {
        let t = |ms| Throttled {
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(
            t(4000).to_string(),
            "Too many login attempts; try again in 4 seconds"
        );
        assert_eq!(t(1200).seconds(), 2);
        assert_eq!(
            t(300).to_string(),
            "Too many login attempts; try again in 1 second"
        );
        assert_eq!(t(0).seconds(), 1);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip(A));
        let l = LoginLimiter::new();
        let t0 = Instant::now();
        for i in 0..ATTEMPTS_PER_SECOND {
            l.check(ip(&format!("2001:db8::{i:x}")), "alice", t0)
                .unwrap();
        }
        assert!(l.check(ip("2001:db8::ffff"), "alice", t0).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let l = LoginLimiter::new();
        let t0 = Instant::now();
        // Every entry active at once: the least recently active make room.
        for i in 0..25_000u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check(addr, "alice", t0 + Duration::from_micros(u64::from(i)));
            l.failed(addr, &format!("user{i}"), t0);
        }
        let (clients, accounts) = l.sizes();
        assert!(
            clients <= MAX_ENTRIES && accounts <= MAX_ENTRIES,
            "{clients} {accounts}"
        );
        // The most recent entries are the ones kept.
        let last = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 24_999));
        assert!(l.lock().clients.contains_key(&last));

        // Once stale, entries are dropped wholesale when room is needed.
        let later = t0 + FORGET_AFTER + ADDRESS_BACKOFF_CAP;
        for i in 0..MAX_ENTRIES as u32 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            let _ = l.check(addr, "alice", later);
        }
        assert_eq!(l.sizes().0, MAX_ENTRIES);
        let _ = l.check(ip(A), "alice", later + SECOND);
        assert_eq!(l.sizes().0, 1);
    }

    #[test]
    fn account_keys_are_lowercased_and_cut() {
        assert_eq!(account_key("AliCe"), "alice");
        assert_eq!(
            account_key(&"x".repeat(10_000)).len(),
            MAX_ACCOUNT_KEY_CHARS
        );
        assert_eq!(
            account_key(&"é".repeat(100)).chars().count(),
            MAX_ACCOUNT_KEY_CHARS
        );
    }
}
