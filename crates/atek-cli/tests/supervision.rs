//! The supervisor's promises, black-box against a real host: a service that never answers
//! fails on time and can still be stopped; a start that crashes is reported, never awaited
//! forever; nothing a service spawns outlives it, after a crash or a stop; and a stubborn
//! grandchild cannot hold up the host's shutdown.

#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestHost, alive, atek, run, text, wait_until, write_config};

/// One Python service whose behaviour is chosen by the `MODE` config var:
/// - `silent`: accepts connections on its socket and never answers;
/// - `crash-early`: exits with code 3 after 200 ms, before answering anything;
/// - `child`: starts `sleep 300` in its process group, writes its pid to `CHILD_PID_FILE`,
///   serves, and exits with code 1 when `CRASH_FILE` appears;
/// - `stubborn`: like `child`, but the child ignores SIGTERM and holds stdout open;
/// - `graceful`: serves, and on SIGTERM writes `TERM_FILE` and exits 0.
fn python_service(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("atek.json"),
        r#"{"runtime":"exec","exec":["python3","svc.py"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("svc.py"),
        r#"import os, socket, subprocess, sys, time, threading, http.server, socketserver
mode = os.environ["MODE"]
path = os.environ["ATEK_ASSIGNED_SOCKET_FILE"]
if mode == "crash-early":
    time.sleep(0.2); sys.exit(3)
if mode in ("child", "stubborn"):
    cmd = ["sleep", "300"] if mode == "child" else ["sh", "-c", "trap '' TERM; sleep 300"]
    child = subprocess.Popen(cmd)  # inherits stdout and the process group
    open(os.environ["CHILD_PID_FILE"], "w").write(str(child.pid))
    def watch():
        while not os.path.exists(os.environ["CRASH_FILE"]):
            time.sleep(0.02)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()
if mode == "graceful":
    import signal
    def on_term(*_):
        open(os.environ["TERM_FILE"], "w").write("term")
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
if mode == "silent":
    s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(16)
    conns = []
    while True:
        conns.append(s.accept()[0])
class H(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
socketserver.UnixStreamServer(path, H).serve_forever()
"#,
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
        "no pid file"
    );
    wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(file).is_ok_and(|s| !s.is_empty())
    });
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_service_that_never_answers_fails_on_time_and_can_be_stopped() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(&dir, r#","readyTimeout":"2s","stopTimeout":"1s""#);
    python_service(&root.path().join("svc"));
    let mut host = TestHost::start(&dir);

    let started = Instant::now();
    let info = install(&dir, root.path(), "silent", &[("MODE", "silent")]);
    assert_eq!(info["status"], "failed", "{info}");
    assert!(
        info["statusReason"]
            .as_str()
            .unwrap()
            .contains("not ready within 2s"),
        "{info}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );

    // The supervisor is not stuck: start, then stop while it probes, both answer.
    let out = run(atek(&dir).args(["stop", "silent"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        host.terminate(Duration::from_secs(8)),
        "the host must still shut down"
    );
}

#[test]
fn a_start_that_crashes_before_ready_is_reported_not_awaited_forever() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    // Each run and its delay last longer than window / limit, so the crash-loop limit is
    // never reached: the start must still answer.
    write_config(
        &dir,
        r#","restartDelay":"300ms","crashLoopWindow":"1s","crashLoopLimit":5"#,
    );
    python_service(&root.path().join("svc"));
    let _host = TestHost::start(&dir);

    let started = Instant::now();
    let info = install(&dir, root.path(), "crashy", &[("MODE", "crash-early")]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(info["status"], "starting", "{info}");
    let reason = info["statusReason"].as_str().unwrap();
    assert!(
        reason.contains("restarting") && reason.contains("exit code 3"),
        "{reason}"
    );
}

#[test]
fn nothing_a_service_spawns_outlives_a_crash_or_a_stop() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(&dir, r#","restartDelay":"100ms","stopTimeout":"1s""#);
    python_service(&root.path().join("svc"));
    let _host = TestHost::start(&dir);

    let pid_file = root.path().join("child.pid");
    let crash_file = root.path().join("crash");
    let env = [
        ("MODE", "child"),
        ("CHILD_PID_FILE", pid_file.to_str().unwrap()),
        ("CRASH_FILE", crash_file.to_str().unwrap()),
    ];
    let info = install(&dir, root.path(), "parent", &env);
    assert_eq!(info["status"], "active", "{info}");

    // A crash: the service exits, its child must not be left behind.
    let first_child = pid_in(&pid_file);
    assert!(alive(first_child));
    std::fs::remove_file(&pid_file).unwrap();
    std::fs::write(&crash_file, "").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !alive(first_child)),
        "child of a crashed service survived"
    );

    // It is restarted (with a new child); a stop takes the child along too.
    std::fs::remove_file(&crash_file).unwrap();
    let second_child = pid_in(&pid_file);
    let out = run(atek(&dir).args(["stop", "parent"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        wait_until(Duration::from_secs(5), || !alive(second_child)),
        "child of a stopped service survived"
    );
}

#[test]
fn a_child_that_ignores_sigterm_and_holds_stdout_cannot_hold_up_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(&dir, r#","stopTimeout":"1s""#);
    python_service(&root.path().join("svc"));
    let mut host = TestHost::start(&dir);

    let pid_file = root.path().join("child.pid");
    let env = [
        ("MODE", "stubborn"),
        ("CHILD_PID_FILE", pid_file.to_str().unwrap()),
        ("CRASH_FILE", "/nonexistent/never"),
    ];
    let info = install(&dir, root.path(), "stubborn", &env);
    assert_eq!(info["status"], "active", "{info}");
    let child = pid_in(&pid_file);

    assert!(
        host.terminate(Duration::from_secs(10)),
        "the host hung on shutdown"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(child)),
        "the stubborn child survived the host"
    );
}

#[test]
fn a_crash_loop_ends_failed_with_the_count_and_the_last_exit() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(
        &dir,
        r#","restartDelay":"50ms","crashLoopLimit":3,"crashLoopWindow":"60s""#,
    );
    python_service(&root.path().join("svc"));
    let _host = TestHost::start(&dir);

    install(&dir, root.path(), "loopy", &[("MODE", "crash-early")]);
    let mut last = serde_json::Value::Null;
    let failed = wait_until(Duration::from_secs(20), || {
        let out = run(atek(&dir).args(["get", "--json", "loopy"]));
        last = serde_json::from_slice(&out.stdout).unwrap_or_default();
        last["status"] == "failed"
    });
    assert!(failed, "never failed: {last}");
    let reason = last["statusReason"].as_str().unwrap();
    assert!(
        reason.contains("crashed 3 times within 1m") && reason.contains("exit code 3"),
        "{reason}"
    );
    assert_eq!(last["lastExit"], "exit code 3");
}

#[test]
fn a_core_service_that_cannot_load_is_listed_failed_and_the_host_still_serves() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    let missing = root.path().join("not-there");
    let extra = format!(
        r#","coreServices":[{{"id":"core.gone","sourceUrl":"file://{}"}}]"#,
        missing.display()
    );
    write_config(&dir, &extra);
    // Start waits until services-api answers through the gateway: the host is ready.
    let _host = TestHost::start(&dir);

    let out = run(atek(&dir).args(["ls", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gone = &list[0];
    assert_eq!(gone["settings"]["id"], "core.gone", "{list}");
    assert_eq!(gone["status"], "failed", "{list}");
    assert_eq!(gone["core"], true);
    let reason = gone["statusReason"].as_str().unwrap();
    assert!(
        reason.contains("not-there"),
        "the reason names the folder: {reason}"
    );
}

#[test]
fn services_installed_through_the_api_get_sigterm_when_the_host_stops() {
    // Installs run on an HTTP thread; the service's supervisor must still run on the main
    // thread, or the HTTP thread's shutdown kills the process without the signal.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(&dir, r#","stopTimeout":"3s""#);
    python_service(&root.path().join("svc"));
    let mut host = TestHost::start(&dir);

    let term_files: Vec<_> = (0..4)
        .map(|i| root.path().join(format!("term-{i}")))
        .collect();
    for (i, file) in term_files.iter().enumerate() {
        let env = [("MODE", "graceful"), ("TERM_FILE", file.to_str().unwrap())];
        let info = install(&dir, root.path(), &format!("graceful-{i}"), &env);
        assert_eq!(info["status"], "active", "{info}");
    }
    assert!(
        host.terminate(Duration::from_secs(10)),
        "the host did not stop"
    );
    for file in &term_files {
        assert!(file.exists(), "{} got no SIGTERM", file.display());
    }
}
