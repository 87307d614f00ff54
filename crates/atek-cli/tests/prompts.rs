//! `atek mkuser`, `moduser --set-password` and `deluser` on a terminal: what is not given as
//! a flag is asked for, passwords are never echoed, a mistyped confirmation changes nothing,
//! and deleting defaults to no.
//!
//! Each command runs on a pseudo-terminal the test holds the master side of, made its
//! controlling terminal by util-linux `setsid --ctty` (the password prompt reads `/dev/tty`).
//! A person types after seeing the prompt; so does the test, and before typing a password it
//! also waits until the terminal's echo is off: the prompt is printed a moment before echo is
//! turned off, and a password typed in between would be echoed by the terminal itself.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestHost, atek, run, text, write_config};
use rustix::pty::OpenptFlags;
use rustix::termios::LocalModes;

/// How long any one step (a prompt to appear, the command to end) may take.
const STEP: Duration = Duration::from_secs(20);

/// A command running on a pseudo-terminal: what it wrote, and a keyboard.
struct Terminal {
    master: std::fs::File,
    child: Child,
    /// Everything the command wrote to the terminal (and the terminal echoed).
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// How much of `screen` the prompts waited for so far have used up.
    seen: usize,
}

impl Terminal {
    /// Starts `atek --config-dir DIR ARGS` with a fresh terminal as its standard input,
    /// output and error, and as its controlling terminal.
    fn spawn(config_dir: &Path, args: &[&str]) -> Self {
        let master: OwnedFd =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let mut cmd = Command::new("setsid");
        cmd.arg("--ctty")
            .arg(env!("CARGO_BIN_EXE_atek"))
            .arg("--config-dir")
            .arg(config_dir)
            .args(args)
            .env_remove("ATEK_CONFIG_DIR")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // The command's copies of the slave side are its own: once it exits, reading the
        // master ends (EIO) after what it wrote.
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut master = master.try_clone().unwrap();
            let screen = screen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    screen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Self {
            master,
            child,
            screen,
            reader: Some(reader),
            seen: 0,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until `prompt` appears after what earlier waits used up.
    fn expect(&mut self, prompt: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let screen = self.screen();
            if let Some(at) = screen[self.seen.min(screen.len())..].find(prompt) {
                self.seen += at + prompt.len();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {prompt:?} on the terminal within {STEP:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the terminal echoes what is typed (tcgetattr on the master side reads the
    /// terminal's settings on Linux).
    fn echoes(&self) -> bool {
        rustix::termios::tcgetattr(&self.master)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
    }

    /// Types `line` and Enter.
    fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// Waits for the password prompt `prompt` and for echo to be off, then types `password`.
    fn type_password(&mut self, prompt: &str, password: &str) {
        self.expect(prompt);
        let deadline = Instant::now() + STEP;
        while self.echoes() {
            assert!(
                Instant::now() < deadline,
                "echo still on {STEP:?} after {prompt:?}; the terminal shows:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.type_line(password);
    }

    /// Waits for the command to end; returns its status and everything the terminal showed.
    fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the command did not end within {STEP:?}; the terminal shows:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader ends at the EIO that follows the last byte the command wrote.
        let reader = self.reader.take().unwrap();
        let deadline = Instant::now() + STEP;
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(reader.is_finished(), "the terminal was never closed");
        reader.join().unwrap();
        (status, self.screen())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running host with no users yet, and its config dir.
fn host() -> (TestHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let host = TestHost::start(dir.path());
    (host, dir)
}

/// user-sessions-api `login` through the gateway, anonymously, as the login page does: the
/// JSON-RPC answer.
fn login(config_dir: &Path, username: &str, password: &str) -> serde_json::Value {
    let run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config_dir.join("run.json")).unwrap()).unwrap();
    let port = run_json["port"].as_u64().unwrap();
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "login",
        "params": [{"username": username, "password": password}],
    })
    .to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    write!(
        stream,
        "POST /_atek/gateway?api=atek.cloud%2Fuser-sessions-api HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn logs_in(config_dir: &Path, username: &str, password: &str) -> bool {
    let answer = login(config_dir, username, password);
    match answer.get("result") {
        Some(result) => {
            assert_eq!(result["username"], username, "{answer}");
            true
        }
        None => {
            assert_eq!(
                answer["error"]["message"], "Username or password was incorrect",
                "{answer}"
            );
            false
        }
    }
}

/// The usernames `atek users --json` lists.
fn usernames(config_dir: &Path) -> Vec<String> {
    let out = run(atek(config_dir).args(["users", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let users: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    users
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

/// `atek mkuser NAME --password-stdin`.
fn make_user(config_dir: &Path, username: &str, password: &str) {
    let mut child = atek(config_dir)
        .args(["mkuser", username, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

const PASSWORD_PROMPT: &str = "Password (at least 8 characters): ";
const AGAIN_PROMPT: &str = "Password again: ";

#[test]
fn mkuser_asks_for_the_name_and_the_password_without_echoing_it() {
    let (_host, dir) = host();
    let password = "tr0ub4dor-and-3";
    let mut term = Terminal::spawn(dir.path(), &["mkuser"]);
    term.expect("Username: ");
    term.type_line("carol");
    term.type_password(PASSWORD_PROMPT, password);
    term.type_password(AGAIN_PROMPT, password);
    let (status, screen) = term.finish();
    assert!(status.success(), "{status}:\n{screen}");
    assert!(screen.contains("Created user carol (key "), "{screen}");
    // The username was echoed as typed (so the terminal does echo), the password never.
    assert!(screen.contains("Username: carol"), "{screen}");
    assert!(
        !screen.contains(password),
        "the password was shown:\n{screen}"
    );

    assert!(logs_in(dir.path(), "carol", password));
    assert!(!logs_in(dir.path(), "carol", "tr0ub4dor-and-4"));
}

#[test]
fn mkuser_with_mistyped_confirmation_creates_nobody() {
    let (_host, dir) = host();
    let mut term = Terminal::spawn(dir.path(), &["mkuser", "dave"]);
    term.type_password(PASSWORD_PROMPT, "first-try-password");
    term.type_password(AGAIN_PROMPT, "first-try-passw0rd");
    let (status, screen) = term.finish();
    assert_eq!(status.code(), Some(1), "{screen}");
    assert!(
        screen.contains("the two passwords differ; nothing was changed"),
        "{screen}"
    );
    assert!(!screen.contains("first-try-pass"), "{screen}");
    assert!(!screen.contains("Created"), "{screen}");
    assert!(usernames(dir.path()).is_empty());
    assert!(!logs_in(dir.path(), "dave", "first-try-password"));
}

#[test]
fn moduser_set_password_asks_twice_and_a_mismatch_keeps_the_old_one() {
    let (_host, dir) = host();
    make_user(dir.path(), "erin", "erins-old-password");

    let mut term = Terminal::spawn(dir.path(), &["moduser", "erin", "--set-password"]);
    term.type_password(PASSWORD_PROMPT, "erins-new-password");
    term.type_password(AGAIN_PROMPT, "erins-new-passwort");
    let (status, screen) = term.finish();
    assert_eq!(status.code(), Some(1), "{screen}");
    assert!(
        screen.contains("the two passwords differ; nothing was changed"),
        "{screen}"
    );
    assert!(logs_in(dir.path(), "erin", "erins-old-password"));
    assert!(!logs_in(dir.path(), "erin", "erins-new-password"));

    let mut term = Terminal::spawn(dir.path(), &["moduser", "erin", "--set-password"]);
    term.type_password(PASSWORD_PROMPT, "erins-new-password");
    term.type_password(AGAIN_PROMPT, "erins-new-password");
    let (status, screen) = term.finish();
    assert!(status.success(), "{status}:\n{screen}");
    assert!(screen.contains("Updated erin."), "{screen}");
    assert!(
        !screen.contains("erins-new"),
        "the password was shown:\n{screen}"
    );
    assert!(logs_in(dir.path(), "erin", "erins-new-password"));
    assert!(!logs_in(dir.path(), "erin", "erins-old-password"));
}

#[test]
fn deluser_asks_first_and_defaults_to_no() {
    let (_host, dir) = host();
    make_user(dir.path(), "frank", "franks-password");
    let question = "Delete user frank? Their services stay installed. [y/N] ";

    // Enter alone, and anything but yes, keep the user.
    for answer in ["", "n", "nope"] {
        let mut term = Terminal::spawn(dir.path(), &["deluser", "frank"]);
        term.expect(question);
        term.type_line(answer);
        let (status, screen) = term.finish();
        assert!(status.success(), "answer {answer:?}: {status}:\n{screen}");
        assert!(screen.contains("Nothing deleted."), "{screen}");
        assert_eq!(usernames(dir.path()), ["frank"], "answer {answer:?}");
    }
    assert!(logs_in(dir.path(), "frank", "franks-password"));

    let mut term = Terminal::spawn(dir.path(), &["deluser", "frank"]);
    term.expect(question);
    term.type_line("y");
    let (status, screen) = term.finish();
    assert!(status.success(), "{status}:\n{screen}");
    assert!(screen.contains("Deleted frank."), "{screen}");
    assert!(usernames(dir.path()).is_empty());
    assert!(!logs_in(dir.path(), "frank", "franks-password"));
}
