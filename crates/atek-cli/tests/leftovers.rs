//! What a hung install could leave behind, against real hosts: a build that hangs is killed
//! at `npmTimeout`, so a core service that hangs no longer keeps the host from answering,
//! and an install through services-api fails with the reason.

#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TestHost, alive, atek, git_release, run, text, wait_until, write_config};

/// A git repository whose one release has an `npm run build` that hangs: it appends
/// `{npm's pid} {pid of a background sleep}` to `runs`, then waits for the sleep.
fn hanging_build(root: &Path, runs: &Path) -> PathBuf {
    let script = format!("sleep 300 & echo \"$PPID $!\" >> {}; wait", runs.display());
    let package = serde_json::json!({
        "name": "hang",
        "version": "1.0.0",
        "scripts": {"build": script},
    })
    .to_string();
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git_release(&repo, "v1.0.0", &[("package.json", &package)])
}

/// The (npm, sleep) pids of each build started so far.
fn builds(runs: &Path) -> Vec<(u32, u32)> {
    std::fs::read_to_string(runs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (npm, sleep) = l.split_once(' ')?;
            Some((npm.parse().ok()?, sleep.parse().ok()?))
        })
        .collect()
}

/// Kills, when the test ends however it ends, the `sleep` processes `pids` names then.
struct Reap(Box<dyn Fn() -> Vec<u32>>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in (self.0)() {
            let sleeping = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sleep\0"));
            if alive(pid) && sleeping {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

#[test]
fn a_hung_build_fails_at_npm_timeout_and_no_longer_holds_up_the_host() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    let runs = root.path().join("runs");
    let repo = hanging_build(root.path(), &runs);
    let reaped = runs.clone();
    let _reap = Reap(Box::new(move || {
        builds(&reaped).into_iter().map(|(_, s)| s).collect()
    }));
    write_config(
        &dir,
        &format!(
            r#","npmTimeout":"2s","coreServices":[{{"id":"core.hang","sourceUrl":"{}"}}]"#,
            repo.display()
        ),
    );

    // A core service is loaded before the host answers: it answers once the build is cut off.
    let _host = TestHost::start(&dir);
    let out = run(atek(&dir).args(["ls", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let core = &list[0];
    assert_eq!(core["settings"]["id"], "core.hang", "{list}");
    assert_eq!(core["status"], "failed", "{list}");
    let reason = core["statusReason"].as_str().unwrap();
    assert!(
        reason.starts_with("`npm run build` did not finish within 2s, so it was stopped"),
        "{reason}"
    );
    assert!(reason.contains("`npmTimeout`"), "{reason}");

    // An install through services-api fails the same way, on time.
    let started = Instant::now();
    let out = run(atek(&dir).args(["install", "--id", "hang"]).arg(&repo));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("`npm run build` did not finish within 2s"),
        "{}",
        text(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    // Neither build is left running.
    let all = builds(&runs);
    assert_eq!(all.len(), 2, "{all:?}");
    for (npm, build) in all {
        assert!(
            wait_until(Duration::from_secs(5), || !alive(npm) && !alive(build)),
            "a build that ran out of time is still running ({npm}, {build})"
        );
    }
}
