//! The process groups the host starts, and what a killed host leaves behind.
//!
//! Every program the host runs (a service, or git and npm for an install) runs in a process
//! group of its own and gets SIGKILL when the host dies, however it dies
//! (`PR_SET_PDEATHSIG`, set by `die_with_parent`). That signal only reaches the host's own
//! children. What they start in turn (a service's `sh -c 'worker & exec server'`, node's
//! `child_process`, the build `npm run build` runs) is not told: while the host runs, the
//! supervisor and the installer kill a whole group when its main process ends or the step
//! is cancelled, but a host killed with SIGKILL (the OOM killer, `kill -9`, a crash) does
//! nothing more, and those grandchildren are adopted by init and live on, holding ports,
//! sockets and files.
//!
//! So while the host runs, `groups.json` in the config dir lists every live group: its id,
//! a *marker* (one `NAME=value` entry of the environment its processes were started with:
//! `ATEK_ASSIGNED_SERVICE_KEY={key}` for a service, `ATEK_INSTALL_RUN={random}` for an
//! install step) and what it was, for the log. At the next start, after taking the config
//! dir's lock and before anything is started, [`sweep`] kills with SIGKILL every process
//! that is still in a listed group **and** whose `/proc/PID/environ` holds that group's
//! marker (looking again, up to three times, for any forked meanwhile), waits (up to
//! [`SWEEP_WAIT`] in all) for them to die, and logs each one (pid, program name, what it
//! belonged to; never its environment). A number alone is never trusted: a
//! group id may have been reused since, so a process in a listed group without the marker
//! is left alone, and so is a process with the marker in any other group. Each candidate is
//! pinned with a pidfd before it is checked and signalled through that pidfd, so a process
//! that exits in between cannot have its pid reused for one that then gets the signal.
//!
//! The guarantee and its limits:
//! - What survives a SIGKILLed host lives until the host's next start, no longer. Under
//!   systemd it does not live that long: when the main process dies, systemd kills the rest
//!   of the unit's cgroup (`KillMode=control-group`, the default), which also covers the
//!   cases below.
//! - A process that left its group (`setsid`, `setpgid`: a daemon that detaches) or that was
//!   started with an environment without the marker (`env -i`, node's `child_process` given
//!   an `env` of its own) is not found.
//! - A process that changed user (a set-user-ID program) cannot be read, and is left alone.
//! - Nothing is swept after a reboot (the file records the boot id): nothing survives one.
//! - A group started in the instant between its fork and its record is not listed.
//!
//! Making the host a child subreaper (`PR_SET_CHILD_SUBREAPER`) was considered: orphans
//! would be adopted by the host while it lives, but the host already kills each group as
//! its main process ends, and once the host is SIGKILLed they are adopted by init all the
//! same. It would also leave the host to reap adopted processes with `waitpid(-1)`, which
//! would take the exit status of tokio's own children.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};
use serde::{Deserialize, Serialize};

/// The longest [`sweep`] waits for what it killed to be gone.
pub const SWEEP_WAIT: Duration = Duration::from_secs(2);

/// The environment variable that marks the processes of one install step.
pub(crate) const INSTALL_MARKER: &str = "ATEK_INSTALL_RUN";

/// This file's format.
const FORMAT: u32 = 1;

/// `groups.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    version: u32,
    /// `/proc/sys/kernel/random/boot_id` when the file was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    groups: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The process group id.
    pgid: i32,
    /// `NAME=value`, exactly as in the environment of the group's processes.
    marker: String,
    /// What the group was, for the log: `service core.x`, `npm run build`.
    what: String,
}

/// The live process groups, mirrored to `groups.json` for the next start's [`sweep`].
/// Cloning shares the list. [`Groups::none`] records nothing (an installer in a test).
#[derive(Debug, Clone, Default)]
pub struct Groups {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    boot_id: Option<String>,
    live: Mutex<BTreeMap<i32, Entry>>,
}

impl Groups {
    /// A list kept in `path` (written on every change, removed when empty).
    pub fn new(path: PathBuf) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                path,
                boot_id: boot_id(),
                live: Mutex::new(BTreeMap::new()),
            })),
        }
    }

    /// A list that records nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Lists the group `pgid`, whose processes carry `marker` (`NAME=value`) in their
    /// environment, until the returned guard is dropped.
    pub(crate) fn track(&self, pgid: Option<Pid>, marker: String, what: String) -> Tracked {
        let (Some(inner), Some(pgid)) = (&self.inner, pgid) else {
            return Tracked {
                groups: None,
                pgid: 0,
            };
        };
        let pgid = pgid.as_raw_nonzero().get();
        let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.insert(pgid, Entry { pgid, marker, what });
        inner.save(&live);
        Tracked {
            groups: Some(inner.clone()),
            pgid,
        }
    }
}

impl Inner {
    /// Writes the list (called with the lock held, so writes follow changes in order).
    /// Not synced: the file only matters after the host is killed, not after the machine
    /// stops, and then the page cache still has it.
    fn save(&self, live: &BTreeMap<i32, Entry>) {
        let result = if live.is_empty() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            let record = Record {
                version: FORMAT,
                boot_id: self.boot_id.clone(),
                groups: live.values().cloned().collect(),
            };
            serde_json::to_vec_pretty(&record)
                .map_err(std::io::Error::other)
                .and_then(|bytes| write_replacing(&self.path, &bytes))
        };
        if let Err(e) = result {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot record the running process groups; if the host is killed, what services started may outlive it");
        }
    }
}

/// A listed group; dropping it takes the group off the list.
#[derive(Debug)]
pub(crate) struct Tracked {
    groups: Option<Arc<Inner>>,
    pgid: i32,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(inner) = &self.groups {
            let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.remove(&self.pgid).is_some() {
                inner.save(&live);
            }
        }
    }
}

/// A temporary file renamed over `path`: a killed host leaves the old list or the new one.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("groups");
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?
        .write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

/// This boot's id; `None` where the kernel does not say.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A process [`sweep`] killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Killed {
    /// Its process id.
    pub pid: i32,
    /// Its program's name (`/proc/PID/comm`).
    pub program: String,
    /// What its group was: `service core.x`, `npm run build`.
    pub what: String,
}

/// Kills what the previous host on this config dir left running (see the module docs),
/// then removes `path`. Blocking: it reads `/proc` and waits up to [`SWEEP_WAIT`]. Must run
/// only while holding the config dir's lock, before this host starts anything.
pub fn sweep(path: &Path) -> Vec<Killed> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the previous run's process groups; processes it left behind, if any, are not stopped");
            return Vec::new();
        }
    };
    let killed = match serde_json::from_slice::<Record>(&bytes) {
        Ok(record) if record.version == FORMAT => {
            let now = boot_id();
            if record.boot_id.is_some() && now.is_some() && record.boot_id != now {
                // The machine restarted since: nothing of that run is left, and its group
                // ids mean nothing now.
                Vec::new()
            } else {
                kill_marked(&record.groups)
            }
        }
        Ok(record) => {
            tracing::warn!(file = %path.display(), version = record.version, "the previous run's process groups are in an unknown format (written by another Atek version); nothing swept");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "the previous run's process groups are unreadable; nothing swept");
            Vec::new()
        }
    };
    for k in &killed {
        tracing::warn!(pid = k.pid, program = %k.program, belonged_to = %k.what, "killed a process the previous run of the host left behind (the host was killed, so it could not stop it)");
    }
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "cannot remove the previous run's process groups");
    }
    killed
}

/// How many times [`kill_marked`] looks again for processes forked while it was killing.
const PASSES: usize = 3;

/// Kills every process in one of `groups` that carries its marker; waits for them. A
/// process forked by one of them while the pass ran is found by the next pass.
fn kill_marked(groups: &[Entry]) -> Vec<Killed> {
    let mut wanted: HashMap<i32, Vec<&Entry>> = HashMap::new();
    for entry in groups {
        // Group 0 and negative ids would mean "my group" or "every process" to kill(2).
        if entry.pgid > 1 && !entry.marker.is_empty() {
            wanted.entry(entry.pgid).or_default().push(entry);
        }
    }
    let mut killed: Vec<Killed> = Vec::new();
    let deadline = Instant::now() + SWEEP_WAIT;
    for _ in 0..PASSES {
        if wanted.is_empty() {
            break;
        }
        let (found, pinned) = kill_pass(&wanted, &killed);
        if found.is_empty() {
            break;
        }
        killed.extend(found);
        wait_gone(&pinned, deadline);
    }
    killed
}

/// One look through `/proc`: kills what is marked and not in `done`; returns what it killed,
/// and the pidfds of those it could pin.
fn kill_pass(wanted: &HashMap<i32, Vec<&Entry>>, done: &[Killed]) -> (Vec<Killed>, Vec<OwnedFd>) {
    let (mut killed, mut pinned) = (Vec::new(), Vec::new());
    let me = std::process::id();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        tracing::warn!("cannot read /proc; processes the previous run left behind are not stopped");
        return (killed, pinned);
    };
    for dirent in proc_dir.flatten() {
        let Some(pid) = dirent
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some(entries) = group_of(pid).and_then(|g| wanted.get(&g)) else {
            continue;
        };
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            continue;
        };
        if done.iter().any(|k| k.pid == raw.as_raw_nonzero().get()) {
            continue;
        }
        // From here the pidfd names this process and no other: if it exits and its pid is
        // reused while we read /proc, the signal below fails instead of reaching the new one.
        let pidfd = match rustix::process::pidfd_open(raw, PidfdFlags::empty()) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::SRCH) => continue,
            // Kernels before 5.3: the pid, checked just before.
            Err(_) => None,
        };
        let Some(entry) = entries
            .iter()
            .find(|e| group_of(pid) == Some(e.pgid) && carries(pid, &e.marker))
        else {
            continue;
        };
        let program = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let sent = match &pidfd {
            Some(fd) => rustix::process::pidfd_send_signal(fd, Signal::KILL),
            None => rustix::process::kill_process(raw, Signal::KILL),
        };
        if sent.is_ok() {
            killed.push(Killed {
                pid: raw.as_raw_nonzero().get(),
                program,
                what: entry.what.clone(),
            });
            pinned.extend(pidfd);
        }
    }
    (killed, pinned)
}

/// The process group of `pid`, from `/proc/PID/stat` (`pid (comm) state ppid pgrp …`;
/// the name may hold spaces and parentheses, so fields count from its last `)`).
fn group_of(pid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// True when `pid` was started with `marker` as one of its environment entries.
fn carries(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == marker.as_bytes()))
}

/// Waits until every pidfd reports its process gone, or until `deadline`.
fn wait_gone(pidfds: &[OwnedFd], deadline: Instant) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut waiting: Vec<&OwnedFd> = pidfds.iter().collect();
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(
                count = waiting.len(),
                "processes the previous run left behind are still exiting"
            );
            return;
        }
        let mut fds: Vec<PollFd<'_>> = waiting
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::IN))
            .collect();
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
        let gone: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
        let mut i = 0;
        waiting.retain(|_| {
            let keep = !gone[i];
            i += 1;
            keep
        });
    }
}

/// Makes the child receive SIGKILL when the host dies, however it dies. The signal is tied
/// to the thread that forks: services are forked by the main thread; installs by the
/// thread of the request or start-up step that asked, which lives until the host stops.
#[allow(unsafe_code)]
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes two raw
    // system calls (prctl and getppid), both async-signal-safe; it allocates nothing on
    // success, and on failure the child exits without running the program.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died between fork and prctl: then no signal will come.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// `sleep 300` in a process group of its own, with `env` added to its environment.
    fn sleeper(env: &[(&str, &str)]) -> Child {
        use std::os::unix::process::CommandExt;
        Command::new("sleep")
            .arg("300")
            .envs(env.iter().copied())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    fn pgid(child: &Child) -> Option<Pid> {
        Pid::from_raw(i32::try_from(child.id()).unwrap())
    }

    /// Exited, reaped or not (these are our children: the test reaps them).
    fn exited(child: &mut Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_list_follows_the_groups_and_goes_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.json");
        let groups = Groups::new(path.clone());
        let a = groups.track(Pid::from_raw(1001), "A=1".into(), "service a".into());
        let b = groups.track(Pid::from_raw(1002), "B=2".into(), "npm run build".into());
        let record: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(record.groups.len(), 2);
        assert_eq!(record.groups[1].what, "npm run build");
        drop(a);
        let record: Record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            record.groups.iter().map(|e| e.pgid).collect::<Vec<_>>(),
            [1002]
        );
        drop(b);
        assert!(!path.exists());
        // Recording nothing is a no-op.
        drop(Groups::none().track(Pid::from_raw(1003), "C=3".into(), "x".into()));
    }

    #[test]
    fn sweep_kills_only_marked_processes_in_listed_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.json");
        let marker = format!("ATEK_TEST_MARKER={}", std::process::id());
        let (name, value) = marker.split_once('=').unwrap();
        // Left behind: in a listed group, with the marker.
        let mut orphan = sleeper(&[(name, value)]);
        // A reused group id: listed, but without the marker.
        let mut reused = sleeper(&[]);
        // The marker in a group nobody listed.
        let mut elsewhere = sleeper(&[(name, value)]);
        {
            let groups = Groups::new(path.clone());
            let a = groups.track(pgid(&orphan), marker.clone(), "service a".into());
            let b = groups.track(pgid(&reused), marker.clone(), "service b".into());
            // The host is killed: the file stays as it was.
            std::mem::forget((a, b));
        }
        let killed = sweep(&path);
        assert_eq!(
            killed,
            [Killed {
                pid: i32::try_from(orphan.id()).unwrap(),
                program: "sleep".into(),
                what: "service a".into()
            }]
        );
        assert!(exited(&mut orphan));
        assert!(
            reused.try_wait().unwrap().is_none(),
            "an unmarked process was killed"
        );
        assert!(
            elsewhere.try_wait().unwrap().is_none(),
            "another group was killed"
        );
        assert!(!path.exists());
        for child in [&mut reused, &mut elsewhere] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn sweep_skips_another_boot_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.json");
        let marker = format!("ATEK_TEST_MARKER={}", std::process::id());
        let (name, value) = marker.split_once('=').unwrap();
        let mut child = sleeper(&[(name, value)]);
        let record = Record {
            version: FORMAT,
            boot_id: Some("another-boot".into()),
            groups: vec![Entry {
                pgid: i32::try_from(child.id()).unwrap(),
                marker,
                what: "service a".into(),
            }],
        };
        if boot_id().is_some() {
            std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
            assert!(sweep(&path).is_empty());
            assert!(!path.exists());
        }
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(sweep(&path).is_empty());
        assert!(!path.exists());
        assert!(sweep(&path).is_empty(), "no file, nothing to do");
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
