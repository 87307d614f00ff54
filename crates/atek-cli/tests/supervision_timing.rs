//! The supervisor's clocks, black-box against a real host: SIGINT stops every service within
//! `stopTimeout` (SIGTERM first, SIGKILL for one that ignores it) and the host exits 0 on
//! time; a service that crashes at once is restarted after delays that double from
//! `restartDelay`, until `crashLoopLimit` marks it failed with its last exit.

#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestHost, alive, atek, run, text, wait_until, write_config};

/// One Python service whose behaviour is chosen by the `MODE` config var:
/// - `deaf`: writes its pid to `PID_FILE`, notes each SIGINT or SIGTERM in `SIGNALS_FILE`
///   and carries on serving;
/// - `graceful`: writes its pid to `PID_FILE`, and on SIGTERM writes `TERM_FILE`, exits 0.
fn python_service(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("atek.json"),
        r#"{"runtime":"exec","exec":["python3","svc.py"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("svc.py"),
        r#"import os, signal, http.server, socketserver
mode = os.environ["MODE"]
if mode == "deaf":
    def note(signum, _frame):
        with open(os.environ["SIGNALS_FILE"], "a") as f:
            f.write(signal.Signals(signum).name + "\n")
    signal.signal(signal.SIGTERM, note)
    signal.signal(signal.SIGINT, note)
if mode == "graceful":
    def on_term(*_):
        open(os.environ["TERM_FILE"], "w").write("term")
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
open(os.environ["PID_FILE"] + ".tmp", "w").write(str(os.getpid()))
os.rename(os.environ["PID_FILE"] + ".tmp", os.environ["PID_FILE"])
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

/// A service that appends the time to `STARTS_FILE` and exits with 3 as soon as it starts.
/// In bash, which starts in a few milliseconds even on a loaded machine, so that the gaps
/// between starts are the supervisor's delays and little else.
fn crashing_service(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("atek.json"),
        r#"{"runtime":"exec","exec":["bash","-c","echo $EPOCHREALTIME >> \"$STARTS_FILE\"; exit 3"]}"#,
    )
    .unwrap();
}

fn install(dir: &Path, root: &Path, id: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = atek(dir);
    cmd.args(["install", "--json", "--id", id, "svc"])
        .current_dir(root);
    for (k, v) in env {
        cmd.args(["-e", &format!("{k}={v}")]);
    }
    let out = run(&mut cmd);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("install {id}: {}", text(&out)))
}

fn pid_in(file: &Path) -> u32 {
    assert!(
        wait_until(Duration::from_secs(10), || file.exists()),
        "no pid file {}",
        file.display()
    );
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn service_log(dir: &Path, id: &str) -> String {
    std::fs::read_to_string(dir.join("logs").join(format!("{id}.log"))).unwrap_or_default()
}

#[test]
fn sigint_stops_every_service_within_the_grace_and_the_host_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    let grace = Duration::from_secs(2);
    write_config(&dir, r#","stopTimeout":"2s""#);
    python_service(&root.path().join("svc"));
    let mut host = TestHost::start(&dir);

    let file = |name: &str| root.path().join(name);
    let (deaf_pid, signals) = (file("deaf.pid"), file("deaf.signals"));
    let (graceful_pid, term) = (file("graceful.pid"), file("graceful.term"));
    let info = install(
        &dir,
        root.path(),
        "deaf",
        &[
            ("MODE", "deaf"),
            ("PID_FILE", deaf_pid.to_str().unwrap()),
            ("SIGNALS_FILE", signals.to_str().unwrap()),
        ],
    );
    assert_eq!(info["status"], "active", "{info}");
    let info = install(
        &dir,
        root.path(),
        "graceful",
        &[
            ("MODE", "graceful"),
            ("PID_FILE", graceful_pid.to_str().unwrap()),
            ("TERM_FILE", term.to_str().unwrap()),
        ],
    );
    assert_eq!(info["status"], "active", "{info}");
    let pids = [pid_in(&deaf_pid), pid_in(&graceful_pid)];
    assert!(pids.iter().all(|&pid| alive(pid)));

    let sent = Instant::now();
    // The host drains its server (2 s at most, nothing is open here) before it stops the
    // services; the rest is slack for a loaded machine.
    let status = host.signal("INT", grace + Duration::from_secs(7));
    let took = sent.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("the host did not exit within {took:?} of SIGINT"));
    assert_eq!(status.code(), Some(0), "SIGINT is a normal stop: {status}");
    assert!(
        took >= grace,
        "the service that ignores SIGTERM must be given stopTimeout ({grace:?}), \
         the host exited after {took:?}"
    );
    for pid in pids {
        assert!(
            wait_until(Duration::from_secs(1), || !alive(pid)),
            "service pid {pid} outlived the host"
        );
    }
    assert!(!dir.join("run.json").exists(), "run.json is removed");

    // Each service got SIGTERM (the host's SIGINT is not passed on); the deaf one was then
    // SIGKILLed, the graceful one exited by itself.
    assert_eq!(std::fs::read_to_string(&signals).unwrap(), "SIGTERM\n");
    assert!(
        service_log(&dir, "deaf").contains("stopped (killed by SIGKILL)"),
        "{}",
        service_log(&dir, "deaf")
    );
    assert!(term.exists(), "the graceful service got no SIGTERM");
    assert!(
        service_log(&dir, "graceful").contains("stopped (exit code 0)"),
        "{}",
        service_log(&dir, "graceful")
    );
}

#[test]
fn restarts_after_crashes_wait_twice_as_long_each_time_until_the_crash_loop_limit() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    // Delays 300, 600, 1200, 2400 ms (4.5 s in all), then the fifth crash within the window
    // marks it failed. The 30 s ceiling is not reached (that would take a minute).
    let first = Duration::from_millis(300);
    let limit = 5;
    write_config(
        &dir,
        &format!(r#","restartDelay":"300ms","crashLoopLimit":{limit},"crashLoopWindow":"60s""#),
    );
    crashing_service(&root.path().join("svc"));
    let _host = TestHost::start(&dir);

    let starts_file = root.path().join("starts");
    let env = [("STARTS_FILE", starts_file.to_str().unwrap())];
    let info = install(&dir, root.path(), "loopy", &env);
    assert_ne!(info["status"], "active", "{info}");

    let mut last = serde_json::Value::Null;
    let failed = wait_until(Duration::from_secs(30), || {
        let out = run(atek(&dir).args(["get", "--json", "loopy"]));
        last = serde_json::from_slice(&out.stdout).unwrap_or_default();
        last["status"] == "failed"
    });
    assert!(failed, "never failed: {last}");
    let reason = last["statusReason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "crashed {limit} times within 1m; last: exit code 3"
        )),
        "{reason}"
    );
    assert_eq!(last["lastExit"], "exit code 3", "{last}");
    assert_eq!(last["restarts"], limit - 1, "{last}");

    // What the supervisor announced in the log ...
    let log = service_log(&dir, "loopy");
    let announced: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            l.split_once("restarting in ")?
                .1
                .split_once(" after")?
                .0
                .into()
        })
        .collect();
    assert_eq!(
        announced,
        ["300ms", "600ms", "1s 200ms", "2s 400ms"],
        "{log}"
    );

    // ... is what it did: each gap between two starts is at least its delay (and not much
    // more: the slack is for a loaded machine), and each is longer than the one before.
    let starts: Vec<f64> = std::fs::read_to_string(&starts_file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(starts.len(), limit as usize, "starts: {starts:?}");
    let gaps: Vec<Duration> = starts
        .windows(2)
        .map(|w| Duration::from_secs_f64(w[1] - w[0]))
        .collect();
    let slack = Duration::from_secs(3);
    for (i, gap) in gaps.iter().enumerate() {
        let scheduled = first * 2u32.pow(i as u32);
        assert!(
            *gap >= scheduled && *gap < scheduled + slack,
            "gap {i} is {gap:?}, scheduled {scheduled:?}; gaps {gaps:?}"
        );
    }
    assert!(
        gaps.windows(2).all(|w| w[1] > w[0]),
        "the delays must grow: {gaps:?}"
    );
}
