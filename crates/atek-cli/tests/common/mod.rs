//! Helpers shared by the black-box tests: the built `atek` binary, config dirs, a host
//! process that is killed when dropped.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses some; panics are the failure

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn atek(config_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atek"));
    cmd.arg("--config-dir")
        .arg(config_dir)
        .env_remove("ATEK_CONFIG_DIR");
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn write_config(dir: &Path, extra: &str) -> String {
    let token = "ab".repeat(32);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), {
        // A default readiness deadline, unless the test sets its own.
        let ready = if extra.contains("readyTimeout") {
            ""
        } else {
            r#","readyTimeout":"5s""#
        };
        format!(
            r#"{{"port":0,"bindAddress":"127.0.0.1","systemAuthTokens":["{token}"]{ready}{extra}}}"#
        )
    })
    .unwrap();
    token
}

/// A running host, killed on drop.
pub(crate) struct TestHost {
    child: Child,
    dir: PathBuf,
}

impl TestHost {
    pub(crate) fn start(dir: &Path) -> Self {
        Self::start_in(dir, Path::new("."))
    }

    /// A host started in `cwd` (where a relative `dir` is resolved).
    pub(crate) fn start_in(dir: &Path, cwd: &Path) -> Self {
        let child = atek(dir)
            .arg("run")
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("ATEK_TEST_HOST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let host = Self {
            child,
            dir: cwd.join(dir),
        };
        // Ready when `atek ls` succeeds (it goes through the gateway and services-api).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if cwd.join(dir).join("run.json").exists()
                && run(atek(dir).arg("ls").current_dir(cwd)).status.success()
            {
                return host;
            }
            assert!(Instant::now() < deadline, "host did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestHost {
    /// Sends SIGTERM and waits up to `limit` for the host to exit; true if it did.
    pub(crate) fn terminate(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_until(limit, || matches!(self.child.try_wait(), Ok(Some(_))))
    }

    /// Sends `signal` (as `kill` names it: `INT`, `TERM`) and waits up to `limit` for the
    /// host to exit; how it exited, if it did.
    pub(crate) fn signal(&mut self, signal: &str, limit: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub(crate) fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// True while a process with this pid exists (and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// A bare git repository `{dir}/app.git` with one release `tag` holding `files`, built in
/// `{dir}/work` with a fixed identity and none of the machine's git configuration. Returns
/// the bare repository's path, a source the host clones.
pub(crate) fn git_release(dir: &Path, tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let git = |cwd: &Path, args: &[&str]| {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=Atek Test",
                "-c",
                "user.email=test@example.invalid",
            ])
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(["-c", "tag.gpgsign=false"])
            .args(args)
            .current_dir(cwd)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
    };
    let work = dir.join("work");
    let bare = dir.join("app.git");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet"]);
    git(dir, &["init", "--quiet", "--bare", "app.git"]);
    for (name, content) in files {
        std::fs::write(work.join(name), content).unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", tag]);
    git(&work, &["tag", tag]);
    git(
        &work,
        &["push", "--quiet", bare.to_str().unwrap(), "main", "--tags"],
    );
    bare
}
