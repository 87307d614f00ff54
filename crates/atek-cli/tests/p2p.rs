//! Black-box tests of the p2p commands: `atek key` and `atek beam` between two processes,
//! through a relay this test runs on loopback (no public relay or lookup: `--no-public`).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{atek, run, text};

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A child whose stdin gets `input` (then closed) and whose stdout is collected; its
/// stderr lines go to `lines`.
fn start(
    mut cmd: Command,
    input: Vec<u8>,
) -> (
    Child,
    std::thread::JoinHandle<Vec<u8>>,
    mpsc::Receiver<String>,
) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).unwrap();
        got
    });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("child: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, out, rx)
}

#[test]
fn beam_between_two_processes_both_ways() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_map, url, _server) = rt.block_on(iroh::test_utils::run_relay_server()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let net = |cmd: &mut Command| {
        cmd.args([
            "--relay",
            &url.to_string(),
            "--relay-insecure",
            "--no-public",
        ]);
    };
    let to_b = data(1, 3 << 20);
    let to_a = data(2, 1 << 20);

    let mut a_cmd = atek(dir.path());
    a_cmd.arg("beam");
    net(&mut a_cmd);
    let (mut a, a_out, a_err) = start(a_cmd, to_b.clone());
    // The listener prints the command to run on the other side.
    let passphrase = loop {
        let line = a_err
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the listener prints a passphrase");
        if let Some(rest) = line.strip_prefix("▶   atek beam ") {
            break rest.trim().to_owned();
        }
    };
    assert_eq!(passphrase.len(), 52);

    let mut b_cmd = atek(dir.path());
    b_cmd.args(["beam", &passphrase]);
    net(&mut b_cmd);
    let (mut b, b_out, b_err) = start(b_cmd, to_a.clone());

    let a_status = a.wait().unwrap();
    let b_status = b.wait().unwrap();
    let a_lines: Vec<String> = a_err.try_iter().collect();
    let b_lines: Vec<String> = b_err.try_iter().collect();
    assert!(a_status.success(), "listener: {a_status} {a_lines:?}");
    assert!(b_status.success(), "connector: {b_status} {b_lines:?}");
    assert!(
        b_lines
            .iter()
            .any(|l| l.contains("Success! Encrypted tunnel established")),
        "{b_lines:?}"
    );
    assert!(a_out.join().unwrap() == to_a, "A got B's bytes exactly");
    assert!(b_out.join().unwrap() == to_b, "B got A's bytes exactly");
}

#[test]
fn a_malformed_passphrase_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(atek(dir.path()).args(["beam", "not-a-passphrase", "--no-public"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("52 characters"), "{}", text(&out));
    let out = run(atek(dir.path()).args(["beam", "-r"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "-r needs a passphrase: {}",
        text(&out)
    );
}

#[test]
fn key_is_made_once_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(atek(dir.path()).arg("key"));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Created keypair, public key:"), "{stderr}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(key.len(), 52, "{key}");
    let out = run(atek(dir.path()).args(["key", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["publicKey"], key.as_str());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Loaded keypair"));

    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "nope").unwrap();
    let out = run(atek(dir.path()).args(["key", "-k"]).arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("failed to parse the keyfile"),
        "{}",
        text(&out)
    );
}

/// A child process killed (if still running) when dropped, so a failed test leaves no
/// relay behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn beam_through_an_atek_relay_trusting_its_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("relay-cert");
    let mut relay_cmd = atek(dir.path());
    relay_cmd
        .args(["relay", "--self-signed"])
        .arg(&certs)
        .args(["--hostname", "127.0.0.1", "--hostname", "localhost"])
        .args(["--bind", "127.0.0.1"])
        .args(["--https-port", "0", "--http-port", "0", "--quic-port", "0"]);
    let (relay, _relay_out, relay_err) = start(relay_cmd, Vec::new());
    let mut relay = KillOnDrop(relay);
    // The relay prints the flags a client passes.
    let client_args: Vec<String> = loop {
        let line = relay_err
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the relay prints what clients pass");
        if let Some(rest) = line.strip_prefix("▶   --relay ") {
            break format!("--relay {rest}")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        }
    };
    let ca = certs.join("cert.pem");
    assert!(ca.is_file(), "the certificate was written");
    assert_eq!(client_args[0], "--relay");
    assert!(
        client_args[1].starts_with("https://127.0.0.1:"),
        "{client_args:?}"
    );
    assert_eq!(client_args[2], "--relay-ca");
    assert_eq!(std::path::Path::new(&client_args[3]), ca);
    assert_eq!(client_args[4], "--relay-quic-port", "port 0 is not 7842");

    let net = |cmd: &mut Command| {
        cmd.args(&client_args).arg("--no-public");
    };
    let to_b = data(3, 1 << 20);
    let to_a = data(4, 256 << 10);
    let mut a_cmd = atek(dir.path());
    a_cmd.arg("beam");
    net(&mut a_cmd);
    let (a, a_out, a_err) = start(a_cmd, to_b.clone());
    let mut a = KillOnDrop(a);
    let passphrase = loop {
        let line = a_err
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the listener prints a passphrase");
        assert!(
            !line.contains("Could not reach a relay"),
            "the listener trusts the relay: {line}"
        );
        if let Some(rest) = line.strip_prefix("▶   atek beam ") {
            break rest.trim().to_owned();
        }
    };
    let mut b_cmd = atek(dir.path());
    b_cmd.args(["beam", &passphrase]);
    net(&mut b_cmd);
    let (b, b_out, b_err) = start(b_cmd, to_a.clone());
    let mut b = KillOnDrop(b);

    let a_status = a.0.wait().unwrap();
    let b_status = b.0.wait().unwrap();
    let a_lines: Vec<String> = a_err.try_iter().collect();
    let b_lines: Vec<String> = b_err.try_iter().collect();
    assert!(a_status.success(), "listener: {a_status} {a_lines:?}");
    assert!(b_status.success(), "connector: {b_status} {b_lines:?}");
    assert!(a_out.join().unwrap() == to_a, "A got B's bytes exactly");
    assert!(b_out.join().unwrap() == to_b, "B got A's bytes exactly");

    // Ctrl-C stops the relay with exit code 0, saying what it served.
    let pid = relay.0.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let relay_status = relay.0.wait().unwrap();
    let relay_lines: Vec<String> = relay_err.try_iter().collect();
    assert_eq!(relay_status.code(), Some(0), "{relay_lines:?}");
    let shutdown = relay_lines
        .iter()
        .find(|l| l.contains("Shutting down relay"))
        .unwrap_or_else(|| panic!("{relay_lines:?}"));
    assert!(
        !shutdown.contains("(0 client connections"),
        "both beams used it: {shutdown}"
    );
}

#[test]
fn a_relay_whose_port_is_in_use_says_which_flag_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = run(atek(dir.path())
        .args(["relay", "--self-signed"])
        .arg(dir.path().join("certs"))
        .args(["--hostname", "127.0.0.1", "--bind", "127.0.0.1"])
        .args([
            "--https-port",
            &port,
            "--http-port",
            "0",
            "--quic-port",
            "0",
        ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("in use"), "{}", text(&out));
    assert!(text(&out).contains("pass --https-port"), "{}", text(&out));

    // No certificate chosen, or no name for it: bad usage.
    let out = run(atek(dir.path()).args(["relay", "--hostname", "relay.example.com"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(atek(dir.path()).args(["relay", "--self-signed", "x"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--hostname"), "{}", text(&out));
}
