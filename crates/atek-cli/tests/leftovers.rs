//! What a killed host or a hung install could leave behind, against real hosts:
//! - a host killed with SIGKILL takes its services with it (their parent-death signal), but
//!   not what they started, which init adopts: the next host on the same config dir kills
//!   those before it starts anything, and nothing else;
//! - the git and npm an install runs die with a killed host too, and the build's own
//!   children are swept by the next start;
//! - a build that hangs is killed at `npmTimeout`: a core service that hangs no longer keeps
//!   the host from answering, and an install through services-api fails with the reason.

#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TestHost, alive, atek, git_release, run, text, wait_until, write_config};

/// An exec service: `sh start.sh` starts `sleep 300` in the background (a grandchild of the
/// host), writes its pid and the service's key to `$GRANDCHILD_FILE`, then becomes a Python
/// server that answers the readiness probe.
fn service_with_a_grandchild(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("atek.json"),
        r#"{"runtime":"exec","exec":["sh","start.sh"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("start.sh"),
        r#"sleep 300 &
echo "$! $ATEK_ASSIGNED_SERVICE_KEY" > "$GRANDCHILD_FILE.tmp"
mv "$GRANDCHILD_FILE.tmp" "$GRANDCHILD_FILE"
exec python3 serve.py
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("serve.py"),
        r#"import os, http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
socketserver.UnixStreamServer(os.environ["ATEK_ASSIGNED_SOCKET_FILE"], H).serve_forever()
"#,
    )
    .unwrap();
}

/// The pid and the service key `start.sh` wrote, once it has.
fn grandchild(file: &Path) -> (u32, String) {
    assert!(
        wait_until(Duration::from_secs(10), || file.exists()),
        "the service wrote no pid"
    );
    let line = std::fs::read_to_string(file).unwrap();
    let (pid, key) = line.trim().split_once(' ').unwrap();
    (pid.parse().unwrap(), key.to_owned())
}

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

/// SIGKILLs the host running on `dir` (its pid from run.json) and waits until it is gone.
fn kill_host(dir: &Path) {
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let pid = u32::try_from(info["pid"].as_u64().unwrap()).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_until(Duration::from_secs(10), || !alive(pid)),
        "the host did not die"
    );
}

#[test]
fn what_services_started_does_not_outlive_a_sigkilled_host_past_its_next_start() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(&dir, r#","stopTimeout":"2s""#);
    service_with_a_grandchild(&root.path().join("svc"));
    let first = TestHost::start(&dir);

    let file = root.path().join("grandchild");
    let out = run(atek(&dir)
        .args(["install", "--json", "--id", "spawner", "svc"])
        .args(["-e", &format!("GRANDCHILD_FILE={}", file.display())])
        .current_dir(root.path()));
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("install: {}", text(&out)));
    assert_eq!(info["status"], "active", "{info}");
    let (orphan, key) = grandchild(&file);
    assert!(alive(orphan));

    // An unrelated process in a group of its own, even with the service's key in its
    // environment: the next host must leave it alone.
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .env("ATEK_ASSIGNED_SERVICE_KEY", &key)
        .process_group(0)
        .spawn()
        .unwrap();
    let fixed = [orphan, bystander.id()];
    let latest = file.clone();
    let _reap = Reap(Box::new(move || {
        let mut pids = fixed.to_vec();
        pids.extend(
            std::fs::read_to_string(&latest)
                .ok()
                .and_then(|l| l.split(' ').next()?.parse::<u32>().ok()),
        );
        pids
    }));

    // SIGKILL: the host can do nothing more. Its service dies with it; the grandchild does not.
    kill_host(&dir);
    drop(first);
    assert!(
        alive(orphan),
        "the grandchild should have outlived the killed host, or this test tests nothing"
    );

    // The next host on the same config dir: by the time it answers, the orphan is gone.
    std::fs::remove_file(&file).unwrap();
    let mut second = TestHost::start(&dir);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(orphan)),
        "the grandchild {orphan} left by the killed host survived the next start"
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "an unrelated process was killed"
    );

    // The service runs again (with a new grandchild, which a clean stop takes along).
    let (again, _) = grandchild(&file);
    assert_ne!(again, orphan);
    assert!(
        second.terminate(Duration::from_secs(10)),
        "the host did not stop"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(again)),
        "the new grandchild survived a clean stop"
    );
    assert!(
        !dir.join("groups.json").exists(),
        "a clean stop leaves no process groups listed"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[test]
fn an_install_under_way_dies_with_a_sigkilled_host_and_its_build_at_the_next_start() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(&dir, "");
    let runs = root.path().join("runs");
    let repo = hanging_build(root.path(), &runs);
    let reaped = runs.clone();
    let _reap = Reap(Box::new(move || {
        builds(&reaped).into_iter().map(|(_, s)| s).collect()
    }));
    let first = TestHost::start(&dir);

    // The install waits on the build, which hangs; meanwhile the host is killed.
    let mut install = atek(&dir)
        .args(["install", "--id", "hang"])
        .arg(&repo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || !builds(&runs).is_empty()),
        "the build never started"
    );
    let (npm, build) = builds(&runs)[0];
    kill_host(&dir);
    drop(first);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(npm)),
        "npm {npm} outlived the killed host"
    );
    assert!(
        alive(build),
        "the build's child should have outlived npm, or this test tests nothing"
    );
    install.wait().unwrap();

    let _second = TestHost::start(&dir);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(build)),
        "the build {build} left by the killed host survived the next start"
    );
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
