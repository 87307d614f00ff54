//! Black-box tests of the `atek` binary: help, errors a person sees, and the management
//! commands against a real `atek run` (port 0, temp config dir, a Python service).

#![allow(clippy::unwrap_used)] // a panic is the right failure in a test

mod common;

use std::path::Path;

use common::{TestHost, atek, run, text, write_config};

const SUBCOMMANDS: [&str; 22] = [
    "run",
    "install",
    "uninstall",
    "update",
    "ls",
    "get",
    "cfg",
    "start",
    "stop",
    "restart",
    "logs",
    "users",
    "mkuser",
    "moduser",
    "deluser",
    "db",
    "key",
    "beam",
    "bind",
    "gateway",
    "serve",
    "relay",
];

/// A service written in Python (exec runtime) that answers HEAD / and GET /.
fn python_app(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("atek.json"),
        r#"{"name":"Py","runtime":"exec","exec":["python3","app.py"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("app.py"),
        r#"import os, http.server, socketserver
print("py app starting", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200); self.end_headers()
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"py")
    def log_message(self, *args):
        pass
path = os.environ["ATEK_ASSIGNED_SOCKET_FILE"]
try: os.unlink(path)
except FileNotFoundError: pass
socketserver.UnixStreamServer(path, H).serve_forever()
"#,
    )
    .unwrap();
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(atek(dir.path()).arg("--help"));
    assert!(out.status.success());
    for sub in SUBCOMMANDS {
        assert!(text(&out).contains(sub), "--help lists {sub}");
        let out = run(atek(dir.path()).args([sub, "--help"]));
        assert!(out.status.success(), "{sub} --help: {}", text(&out));
        assert!(text(&out).contains("Usage: atek"), "{sub} --help");
    }
    for sub in [
        "ls", "server", "create", "info", "list", "get", "put", "rm", "changes",
    ] {
        let out = run(atek(dir.path()).args(["db", sub, "--help"]));
        assert!(out.status.success(), "db {sub} --help: {}", text(&out));
        assert!(text(&out).contains("Usage: atek db"), "db {sub} --help");
    }
}

#[test]
fn not_running_is_exit_3_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let out = run(atek(dir.path()).arg("ls"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("Atek is not running"), "{msg}");
    assert!(msg.contains("atek run --config-dir"), "{msg}");
}

#[test]
fn no_token_yet_says_to_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(atek(dir.path()).arg("ls"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no system token yet"), "{}", text(&out));
}

#[test]
fn bad_config_stops_the_host_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"port":"eighty"}"#).unwrap();
    let out = run(atek(dir.path()).arg("run"));
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    assert!(
        msg.contains("field `port`") && msg.contains("fix:"),
        "{msg}"
    );
}

#[test]
fn a_domain_flag_that_is_no_host_name_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "http://home.example.com",
        "",
        "home.example.com:8480",
        "my_home.example",
    ] {
        let out = run(atek(dir.path()).args(["run", "--port", "0", "--domain", bad]));
        assert_eq!(
            out.status.code(),
            Some(2),
            "--domain {bad:?}: {}",
            text(&out)
        );
        let msg = text(&out);
        assert!(
            msg.contains("--domain")
                && msg.contains("is not a hostname")
                && msg.contains("no scheme"),
            "{msg}"
        );
    }
    // Nothing was started or written for them.
    assert!(!dir.path().join("config.json").exists());
}

#[test]
fn a_second_host_on_the_same_config_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let _first = TestHost::start(dir.path());
    let out = run(atek(dir.path()).arg("run"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("Atek is already running with the config dir"),
        "{msg}"
    );
    assert!(msg.contains("(pid "), "names the running host: {msg}");
}

#[test]
fn port_in_use_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    write_config(dir.path(), "");
    let out = run(atek(dir.path()).args(["run", "--port", &port.to_string()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("Another program"), "{}", text(&out));
}

#[test]
fn manage_a_service_from_the_cli() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    write_config(&dir, "");
    python_app(&root.path().join("py-app"));
    let _host = TestHost::start(&dir);

    // A relative path becomes a file:// URL (the original rejected it).
    let out = run(atek(&dir)
        .args(["install", "py-app", "-e", "GREETING=hi"])
        .current_dir(root.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("py-app (active)"), "{}", text(&out));

    let out = run(atek(&dir).args(["ls", "--json"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["settings"]["id"], "py-app");
    assert_eq!(list[0]["status"], "active");
    assert!(
        list[0]["settings"]["sourceUrl"]
            .as_str()
            .unwrap()
            .starts_with("file:///")
    );

    let out = run(atek(&dir).args(["stop", "py-app"]));
    assert!(text(&out).contains("py-app is stopped"), "{}", text(&out));
    let out = run(atek(&dir).args(["start", "py-app"]));
    assert!(text(&out).contains("py-app is active"), "{}", text(&out));

    let out = run(atek(&dir).args(["cfg", "py-app"]));
    assert!(
        text(&out).contains("GREETING=hi"),
        "cfg prints settings: {}",
        text(&out)
    );

    let out = run(atek(&dir).args(["logs", "py-app", "-n", "50"]));
    let logs = text(&out);
    assert!(logs.contains("[out] py app starting"), "{logs}");
    assert!(logs.contains("[sys] stopped"), "{logs}");

    // The same source again gets the next free id.
    let out = run(atek(&dir)
        .args(["install", "--json", "py-app"])
        .current_dir(root.path()));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["settings"]["id"], "py-app-2", "{}", text(&out));

    let out = run(atek(&dir).args(["uninstall", "py-app-2"]));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(atek(&dir).args(["get", "py-app-2"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("No service found with the id py-app-2"),
        "{}",
        text(&out)
    );
}

/// Runs `atek` with `input` on standard input.
fn run_with_stdin(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn users_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let _host = TestHost::start(dir.path());

    let out = run(atek(dir.path()).arg("users"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("atek mkuser --admin"), "{}", text(&out));

    let out = run_with_stdin(
        atek(dir.path()).args(["mkuser", "alice", "--admin", "--password-stdin"]),
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Created admin alice"), "{}", text(&out));

    // Bad input is refused with the reason, and nothing is created.
    let out = run_with_stdin(
        atek(dir.path()).args(["mkuser", "bob", "--password-stdin"]),
        "short\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("at least 8"), "{}", text(&out));
    let out = run_with_stdin(
        atek(dir.path()).args(["mkuser", "system", "--password-stdin"]),
        "long enough password\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Without a terminal, a password is never prompted for.
    let out = run_with_stdin(atek(dir.path()).args(["mkuser", "bob"]), "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--password-stdin"), "{}", text(&out));

    let out = run_with_stdin(
        atek(dir.path()).args(["mkuser", "bob", "--password-stdin"]),
        "another long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(atek(dir.path()).args(["moduser", "bob", "--rename", "robert", "--admin"]));
    assert!(out.status.success(), "{}", text(&out));

    let out = run(atek(dir.path()).args(["users", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<(&str, &str)> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["username"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(names.len(), 2, "{users}");
    assert!(names.contains(&("alice", "admin")));
    assert!(names.contains(&("robert", "admin")));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("password"));

    // Deleting asks for confirmation, unless --yes.
    let out = run_with_stdin(atek(dir.path()).args(["deluser", "robert"]), "y\n");
    assert_eq!(out.status.code(), Some(1), "no terminal: {}", text(&out));
    assert!(text(&out).contains("--yes"), "{}", text(&out));
    let out = run(atek(dir.path()).args(["deluser", "robert", "--yes"]));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(atek(dir.path()).args(["moduser", "robert", "--admin"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no user is named robert"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_relative_config_dir_works() {
    let root = tempfile::tempdir().unwrap();
    write_config(&root.path().join("cfg"), "");
    python_app(&root.path().join("py-app"));
    let dir = Path::new("cfg");
    let _host = TestHost::start_in(dir, root.path());
    // The service runs in its own folder: its socket path must not be relative.
    let out = run(atek(dir)
        .args(["install", "py-app"])
        .current_dir(root.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("py-app (active)"), "{}", text(&out));
}

#[test]
fn databases_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let _host = TestHost::start(dir.path());

    let out = run(atek(dir.path()).args(["db", "server"]));
    assert!(out.status.success(), "{}", text(&out));
    let server = text(&out).trim().to_owned();
    assert_eq!(server.len(), 64, "{server}");

    let out = run(atek(dir.path()).args(["db", "create", "--alias", "notes"]));
    assert!(out.status.success(), "{}", text(&out));
    let db = text(&out).trim().to_owned();
    assert_eq!(db.len(), 64, "{db}");

    let out = run(atek(dir.path()).args([
        "db",
        "put",
        &db,
        "/example.com/notes/n1",
        r#"{"text":"hi"}"#,
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Wrote /example.com/notes/n1"),
        "{}",
        text(&out)
    );
    let out = run_with_stdin(
        atek(dir.path()).args(["db", "put", &db, "/example.com/notes/n2", "-"]),
        r#"{"text":"from stdin"}"#,
    );
    assert!(out.status.success(), "{}", text(&out));

    let out = run(atek(dir.path()).args(["db", "get", &db, "/example.com/notes/n2", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let record: serde_json::Value = serde_json::from_str(&text(&out)).unwrap();
    assert_eq!(record["value"]["text"], "from stdin");
    assert_eq!(record["url"], format!("hyper://{db}/example.com/notes/n2"));

    let out = run(atek(dir.path()).args([
        "db",
        "list",
        &db,
        "/example.com",
        "--reverse",
        "--limit",
        "1",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).starts_with("/example.com/notes/n2\t"),
        "{}",
        text(&out)
    );

    let out = run(atek(dir.path()).args(["db", "rm", &db, "/example.com/notes/n1"]));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(atek(dir.path()).args(["db", "changes", &db]));
    assert!(out.status.success(), "{}", text(&out));
    let changes = text(&out);
    let lines: Vec<&str> = changes.lines().collect();
    assert_eq!(lines.len(), 3, "{}", text(&out));
    assert!(
        lines[2].contains("delete") && lines[2].contains("/example.com/notes/n1"),
        "{}",
        text(&out)
    );

    let out = run(atek(dir.path()).args(["db", "ls", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let dbs: serde_json::Value = serde_json::from_str(&text(&out)).unwrap();
    let ids: Vec<&str> = dbs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["dbId"].as_str())
        .collect();
    assert!(
        ids.contains(&server.as_str()) && ids.contains(&db.as_str()),
        "{ids:?}"
    );

    // Bad input: not JSON, not an object, a missing record, a bad path: clear errors, exit 1.
    for (args, expect) in [
        (vec!["db", "put", &db, "/a/b", "{oops"], "not JSON"),
        (vec!["db", "put", &db, "/a/b", "[1]"], "JSON object"),
        (vec!["db", "get", &db, "/a/missing"], "Not found: a,missing"),
        (vec!["db", "get", "nope", "/a"], "nope"),
    ] {
        let out = run(atek(dir.path()).args(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(expect), "{args:?}: {}", text(&out));
    }
}
