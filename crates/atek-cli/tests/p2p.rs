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
    cmd: Command,
    input: Vec<u8>,
) -> (
    Child,
    std::thread::JoinHandle<Vec<u8>>,
    mpsc::Receiver<String>,
) {
    let (child, mut stdin, mut stdout, rx) = spawn_piped(cmd);
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = std::thread::spawn(move || {
        let mut got = Vec::new();
        stdout.read_to_end(&mut got).unwrap();
        got
    });
    (child, out, rx)
}

/// Spawns `cmd` with all three standard streams piped: the child, its stdin and stdout,
/// and its stderr lines (each also echoed to the test's stderr) as they come.
fn spawn_piped(
    mut cmd: Command,
) -> (
    Child,
    std::process::ChildStdin,
    std::process::ChildStdout,
    mpsc::Receiver<String>,
) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
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
    (child, stdin, stdout, rx)
}

#[test]
fn beam_between_two_processes_both_ways() {
    let (url, _relay) = local_relay();
    let dir = tempfile::tempdir().unwrap();
    let net = |cmd: &mut Command| on_relay(cmd, &url);
    let to_b = data(1, 3 << 20);
    let to_a = data(2, 1 << 20);

    let mut a_cmd = atek(dir.path());
    a_cmd.arg("beam");
    net(&mut a_cmd);
    let (mut a, a_out, a_err) = start(a_cmd, to_b.clone());
    // The listener prints the command to run on the other side.
    let passphrase = line_after(&a_err, "▶   atek beam ");
    assert_eq!(passphrase.len(), 52);

    // The connector takes its relay from config.json's `relays` instead of --relay.
    common::write_config(dir.path(), &format!(r#","relays":["{url}"]"#));
    let mut b_cmd = atek(dir.path());
    b_cmd.args([
        "beam",
        &passphrase,
        "--relay-insecure",
        "--no-public",
        "--no-port-mapping",
    ]);
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
    assert!(
        b_lines.iter().any(|l| l.starts_with("▶ Path: ")),
        "the path is reported: {b_lines:?}"
    );
    assert!(
        !b_lines.iter().any(|l| l.contains("Done:")),
        "no progress summary when stderr is not a terminal: {b_lines:?}"
    );
    assert!(a_out.join().unwrap() == to_a, "A got B's bytes exactly");
    assert!(b_out.join().unwrap() == to_b, "B got A's bytes exactly");
}

/// Files and pipes as stdin and stdout: a file is read and written by a thread, a pipe on
/// the event loop in non-blocking mode, which is switched back when the beam ends (other
/// processes may share that end of the pipe).
#[test]
fn beam_reads_and_writes_files_and_leaves_its_pipes_blocking() {
    use rustix::fs::{OFlags, fcntl_getfl};

    let (url, _relay) = local_relay();
    let dir = tempfile::tempdir().unwrap();
    let net = relay_args(&url);
    let to_b = data(3, 3 << 20);
    let to_a = data(4, (2 << 20) + 12345);

    // A, the listener: a file in, a file out.
    let a_in = dir.path().join("a.in");
    let a_out = dir.path().join("a.out");
    std::fs::write(&a_in, &to_b).unwrap();
    let mut a = atek(dir.path())
        .arg("beam")
        .args(&net)
        .stdin(std::fs::File::open(&a_in).unwrap())
        .stdout(std::fs::File::create(&a_out).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, a_err) = mpsc::channel();
    let stderr = a.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("listener: {line}");
            let _ = tx.send(line);
        }
    });
    let passphrase = line_after(&a_err, "▶   atek beam ");

    // B, the connector: pipes both ways, of which this test keeps the child's ends too.
    let (stdin_rd, mut stdin_wr) = std::io::pipe().unwrap();
    let (mut stdout_rd, stdout_wr) = std::io::pipe().unwrap();
    let (b_stdin, b_stdout) = (
        stdin_rd.try_clone().unwrap(),
        stdout_wr.try_clone().unwrap(),
    );
    let mut b = atek(dir.path())
        .args(["beam", &passphrase])
        .args(&net)
        .stdin(b_stdin)
        .stdout(b_stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let feeding = {
        let to_a = to_a.clone();
        std::thread::spawn(move || {
            stdin_wr.write_all(&to_a).unwrap();
            // Dropped: the end of B's input (this test's copy of the read end is not a writer).
        })
    };
    let reading = std::thread::spawn(move || {
        let mut got = Vec::new();
        stdout_rd.read_to_end(&mut got).unwrap();
        got
    });

    let b_status = b.wait().unwrap();
    let a_status = a.wait().unwrap();
    assert!(b_status.success(), "connector: {b_status}");
    assert!(a_status.success(), "listener: {a_status}");
    feeding.join().unwrap();
    for (what, end) in [
        ("stdin's", fcntl_getfl(&stdin_rd).unwrap()),
        ("stdout's", fcntl_getfl(&stdout_wr).unwrap()),
    ] {
        assert!(
            !end.contains(OFlags::NONBLOCK),
            "{what} end of the pipe is left non-blocking"
        );
    }
    drop((stdin_rd, stdout_wr));
    assert!(reading.join().unwrap() == to_b, "B got A's file exactly");
    assert!(
        std::fs::read(&a_out).unwrap() == to_a,
        "A's file got B's bytes exactly"
    );
}

/// On a terminal (`script` gives the connector one), beam keeps a progress line under its
/// status lines and ends with what it moved.
#[test]
fn beam_on_a_terminal_ends_with_what_it_moved() {
    let (url, _relay) = local_relay();
    let dir = tempfile::tempdir().unwrap();
    let mut a_cmd = atek(dir.path());
    a_cmd.arg("beam");
    on_relay(&mut a_cmd, &url);
    let (mut a, a_out, a_err) = start(a_cmd, Vec::new());
    let passphrase = line_after(&a_err, "▶   atek beam ");

    let typescript = dir.path().join("typescript");
    let connector = format!(
        "head -c 3145728 /dev/zero | '{}' --config-dir '{}' beam {passphrase} --relay {url} --relay-insecure --no-public --no-port-mapping > /dev/null",
        env!("CARGO_BIN_EXE_atek"),
        dir.path().display(),
    );
    let b = Command::new("script")
        .args(["-qfec", &connector])
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(b.success(), "connector: {b}");
    assert!(a.wait().unwrap().success());
    assert_eq!(a_out.join().unwrap().len(), 3 << 20);
    let shown = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).into_owned();
    assert!(
        shown.contains("▶ Done: sent 3.00 MiB, received 0 B in "),
        "{shown}"
    );
}

#[test]
fn a_malformed_passphrase_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(atek(dir.path()).args([
        "beam",
        "not-a-passphrase",
        "--no-public",
        "--no-port-mapping",
    ]));
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
fn a_lookup_given_by_half_is_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = "a".repeat(52);
    for half in [
        &["--dns-origin", "dns.example"][..],
        &["--pkarr-relay", "https://dns.example/pkarr"][..],
        &["--dht-bootstrap", "127.0.0.1:6881"][..],
    ] {
        let out = run(atek(dir.path())
            .args(["beam", &p, "--no-public", "--no-port-mapping"])
            .args(half));
        assert_eq!(out.status.code(), Some(2), "{half:?}: {}", text(&out));
    }
    // The same in config.json: the p2p commands name the field and what it needs.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"lookup": {"pkarrRelay": "https://dns.example/pkarr"}}"#,
    )
    .unwrap();
    let out = run(atek(dir.path()).args(["beam", &p, "--no-public", "--no-port-mapping"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("lookup.pkarrRelay needs lookup.dnsOrigin"),
        "{}",
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

/// Waits for a stderr line starting with `prefix` and returns the rest.
fn line_after(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_owned();
        }
    }
}

#[test]
fn bind_exposes_a_port_and_reaches_it_from_another_process() {
    let (url, _relay) = local_relay();
    // The service to expose: an echo server on a random port.
    let echo_port = serve_tcp(|mut tcp| {
        let mut back = tcp.try_clone().unwrap();
        std::io::copy(&mut tcp, &mut back).unwrap();
        back.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let net = |cmd: &mut Command| on_relay(cmd, &url);

    let mut server_cmd = atek(dir.path());
    server_cmd
        .args([
            "bind",
            "-p",
            &echo_port.to_string(),
            "--host",
            "127.0.0.1",
            "-k",
        ])
        .arg(dir.path().join("server.key"));
    net(&mut server_cmd);
    let (mut server, _, server_err) = start(server_cmd, Vec::new());
    let exposed = line_after(&server_err, "▶ Exposing ");
    let key = exposed.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(key.len(), 52, "{exposed}");

    let mut client_cmd = atek(dir.path());
    client_cmd.args(["bind", &key]);
    net(&mut client_cmd);
    let (mut client, _, client_err) = start(client_cmd, Vec::new());
    let forwarding = line_after(&client_err, "▶ Forwarding http://localhost:");
    let port: u16 = forwarding.split(' ').next().unwrap().parse().unwrap();

    let threads: Vec<_> = (0..20u64)
        .map(|i| {
            std::thread::spawn(move || {
                let sent = data(i, 10_000 + i as usize * 1000);
                let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut writer = tcp.try_clone().unwrap();
                let to_send = sent.clone();
                let w = std::thread::spawn(move || {
                    writer.write_all(&to_send).unwrap();
                    writer.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut got = Vec::new();
                tcp.read_to_end(&mut got).unwrap();
                w.join().unwrap();
                assert!(got == sent, "connection {i} echoed exactly");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // What is not HTTP is carried byte for byte, a line that looks like a header included
    // (HTTP gets the caller's key on every request: tests of atek-net's bind_http).
    let request: &[u8] = b"NICK atek\r\nAtek-Remote-Public-Key: forged\r\n\x00\xff\r\n\r\n";
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(request).unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).unwrap();
    assert_eq!(got, request);
    // The server saw one p2p connection from the client's temporary key.
    let connect = line_after(&server_err, "▶ CONNECT pubkey: ");
    assert_eq!(connect.len(), 52);

    // A port in use is a clear error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(atek(dir.path()).args([
        "bind",
        &key,
        "-p",
        &taken.local_addr().unwrap().port().to_string(),
        "--no-public",
        "--no-port-mapping",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is in use"), "{}", text(&out));

    // A key nobody answers for is said within the timeout, with exit code 1, instead of a
    // port that takes connections and drops them in silence.
    let out = run(atek(dir.path())
        .args(["key", "--json", "-k"])
        .arg(dir.path().join("nobody.key")));
    let nobody: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nobody = nobody["publicKey"].as_str().unwrap();
    let mut nobody_cmd = atek(dir.path());
    nobody_cmd.args(["bind", nobody, "--timeout", "1"]);
    net(&mut nobody_cmd);
    let out = run(&mut nobody_cmd);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("could not reach the peer"),
        "{}",
        text(&out)
    );

    // Ctrl-C closes the client's p2p connection: the server hears of it at once, not
    // after QUIC's idle timeout (30 s).
    let pid = client.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = std::time::Instant::now();
    let close = line_after(&server_err, "▶ CLOSE pubkey: ");
    assert_eq!(close, connect);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the server heard of the close after {:?}",
        started.elapsed()
    );
    assert_eq!(client.wait().unwrap().code(), Some(0));
    let client_lines: Vec<String> = client_err.try_iter().collect();
    assert!(
        client_lines.iter().any(|l| l == "▶ Shutting down bind..."),
        "{client_lines:?}"
    );

    server.kill().unwrap();
    let _ = server.wait();
}

/// The home reachable by key: `atek run` with p2p on answers HTTP over p2p on its node key,
/// and `atek bind HOMEKEY` on another machine reaches its login page.
#[test]
fn the_home_is_reachable_by_its_key() {
    let (url, _relay) = local_relay();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    common::write_config(
        &home,
        &format!(
            r#","relays":["{url}"],"p2p":{{"enabled":true,"public":false,"insecureRelayTls":true,"portMapping":false}}"#
        ),
    );
    let _host = common::TestHost::start(&home);
    // The host made its key on first run; `atek key` reads the same file.
    let out = run(atek(&home).args(["key", "--json"]));
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let home_key = json["publicKey"].as_str().unwrap().to_owned();

    let laptop = dir.path().join("laptop");
    let mut bind_cmd = atek(&laptop);
    bind_cmd.args([
        "bind",
        &home_key,
        "--relay",
        &url.to_string(),
        "--relay-insecure",
        "--no-public",
        "--no-port-mapping",
    ]);
    let (mut bind, _, bind_err) = start(bind_cmd, Vec::new());
    let forwarding = line_after(&bind_err, "▶ Forwarding http://localhost:");
    let port: u16 = forwarding.split(' ').next().unwrap().parse().unwrap();

    // Twice on one connection: every request of a connection goes through.
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for _ in 0..2 {
        tcp.write_all(b"GET /_atek/login HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let head = read_head(&mut tcp);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a sized login page");
        let mut body = vec![0u8; length];
        tcp.read_exact(&mut body).unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("<form"),
            "the login page"
        );
    }

    // The normal login works over p2p: an admin logs in through the bound port, and the
    // session cookie it gets identifies them on the next request.
    let password = "over p2p, the same login";
    let mut mkuser = atek(&home)
        .args(["mkuser", "--admin", "--password-stdin", "root"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(mkuser.stdin.take().unwrap(), "{password}").unwrap();
    let out = mkuser.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sessions = |method: &str, params: &str, cookie: Option<&str>| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            tcp,
            "POST /_atek/gateway?api=atek.cloud%2Fuser-sessions-api HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n{cookie}Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        tcp.read_to_string(&mut reply).unwrap();
        reply
    };
    let reply = sessions(
        "login",
        &format!(r#"[{{"username":"root","password":"{password}"}}]"#),
        None,
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let cookie = reply
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap().to_owned())
        })
        .unwrap_or_else(|| panic!("no session cookie: {reply}"));
    let reply = sessions("whoami", "[]", Some(&cookie));
    assert!(
        reply.contains(r#""username":"root""#) && reply.contains(r#""isActive":true"#),
        "{reply}"
    );
    bind.kill().unwrap();
    let _ = bind.wait();

    // The same home through `atek gateway`, at {key}.localhost.
    let mut gateway_cmd = atek(&laptop);
    gateway_cmd.args([
        "gateway",
        "-p",
        "0",
        "--relay",
        &url.to_string(),
        "--relay-insecure",
        "--no-public",
        "--no-port-mapping",
    ]);
    let (mut gateway, _, gateway_err) = start(gateway_cmd, Vec::new());
    let listening = line_after(&gateway_err, "▶ Gateway listening on http://127.0.0.1:");
    let port: u16 = listening.split(' ').next().unwrap().parse().unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(
        format!("GET /_atek/login HTTP/1.1\r\nHost: {home_key}.localhost:{port}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let head = read_head(&mut tcp);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    gateway.kill().unwrap();
    let _ = gateway.wait();
}

/// Reads an HTTP response head, up to the blank line.
fn read_head(tcp: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A GET on a fresh connection to `port`: the status line and the body (the answer must
/// say its length).
fn get(port: u16, path: &str) -> (String, String) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let head = read_head(&mut tcp);
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).unwrap();
    (
        head.lines().next().unwrap().to_owned(),
        String::from_utf8(body).unwrap(),
    )
}

#[test]
fn serve_shows_a_folder_locally_and_to_peers_and_hides_git() {
    let (url, _relay) = local_relay();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join(".git")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>hello from the site</h1>").unwrap();
    std::fs::write(site.join(".git/config"), "secret").unwrap();
    let net = |cmd: &mut Command| on_relay(cmd, &url);

    let mut serve_cmd = atek(dir.path());
    serve_cmd.arg("serve").arg(&site);
    net(&mut serve_cmd);
    let (mut serve, _, serve_err) = start(serve_cmd, Vec::new());
    let serving = line_after(&serve_err, "▶ Serving ");
    let port: u16 = serving
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let key = line_after(&serve_err, "▶ To peers as ");
    let key = key.split(' ').next().unwrap().to_owned();

    let (status, body) = get(port, "/");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "<h1>hello from the site</h1>");
    let (status, _) = get(port, "/.git/config");
    assert!(status.contains("302"), ".git is hidden: {status}");

    let mut bind_cmd = atek(dir.path());
    bind_cmd.args(["bind", &key]);
    net(&mut bind_cmd);
    let (mut bind, _, bind_err) = start(bind_cmd, Vec::new());
    let forwarding = line_after(&bind_err, "▶ Forwarding http://localhost:");
    let p2p_port: u16 = forwarding.split(' ').next().unwrap().parse().unwrap();
    let (status, body) = get(p2p_port, "/index.html");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "<h1>hello from the site</h1>");

    for child in [&mut bind, &mut serve] {
        child.kill().unwrap();
        let _ = child.wait();
    }
}

/// The `spork` binary: Spork's command names, the same options and exit codes.
#[test]
fn spork_offers_the_p2p_commands_under_their_old_names() {
    let spork = || Command::new(env!("CARGO_BIN_EXE_spork"));
    let out = run(spork().arg("--help"));
    assert!(out.status.success(), "{}", text(&out));
    for command in ["bind", "gateway", "serve", "beam", "key"] {
        assert!(text(&out).contains(command), "spork --help lists {command}");
        let out = run(spork().args([command, "--help"]));
        assert!(
            out.status.success(),
            "spork {command} --help: {}",
            text(&out)
        );
    }
    let out = run(spork().args([
        "beam",
        "not-a-passphrase",
        "--no-public",
        "--no-port-mapping",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let out = run(spork().args(["key", "--json"]).current_dir(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("spork.key").exists());

    // A beam between two sporks, whose listener tells the user to run spork, not atek.
    let (url, _relay) = local_relay();
    let net = relay_args(&url);
    let mut a_cmd = spork();
    a_cmd.arg("beam").args(&net);
    let to_b = data(3, 256 << 10);
    let (mut a, a_out, a_err) = start(a_cmd, to_b.clone());
    let passphrase = line_after(&a_err, "▶   spork beam ");
    let restart = line_after(&a_err, "▶ To restart this side of the pipe");
    assert!(
        restart.contains(&format!("run: spork beam -r {passphrase}")),
        "{restart}"
    );
    let mut b_cmd = spork();
    b_cmd.args(["beam", &passphrase]).args(&net);
    let (mut b, b_out, _b_err) = start(b_cmd, b"back".to_vec());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert!(
        b_out.join().unwrap() == to_b,
        "the connector got the listener's bytes"
    );
    assert_eq!(a_out.join().unwrap(), b"back");
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
        cmd.args(&client_args)
            .args(["--no-public", "--no-port-mapping"]);
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

/// A relay [`local_relay`] started: it runs until this is dropped.
struct RunningRelay {
    // Fields drop in order: the server before the runtime it runs on.
    _server: Box<dyn std::any::Any>,
    _runtime: tokio::runtime::Runtime,
}

/// iroh's test relay on loopback (self-signed: commands skip its certificate check with
/// `--relay-insecure`): its URL, and what keeps it running.
fn local_relay() -> (iroh::RelayUrl, RunningRelay) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_map, url, server) = runtime
        .block_on(iroh::test_utils::run_relay_server())
        .unwrap();
    let running = RunningRelay {
        _server: Box::new(server),
        _runtime: runtime,
    };
    (url, running)
}

/// The flags that keep a p2p command on the test's relay and off the internet.
fn relay_args(url: &impl std::fmt::Display) -> [String; 5] {
    [
        "--relay".to_owned(),
        url.to_string(),
        "--relay-insecure".to_owned(),
        "--no-public".to_owned(),
        "--no-port-mapping".to_owned(),
    ]
}

/// Gives `cmd` the [`relay_args`].
fn on_relay(cmd: &mut Command, url: &impl std::fmt::Display) {
    cmd.args(relay_args(url));
}

/// `atek bind -p PORT --host 127.0.0.1` on the test's relay with `extra` arguments: the
/// running process, and the key it exposes the port under.
fn expose_port(
    dir: &std::path::Path,
    port: u16,
    url: &impl std::fmt::Display,
    extra: &[&str],
) -> (KillOnDrop, String) {
    let mut cmd = atek(dir);
    cmd.args(["bind", "-p", &port.to_string(), "--host", "127.0.0.1"])
        .args(extra);
    on_relay(&mut cmd, url);
    let (child, _, err) = start(cmd, Vec::new());
    let child = KillOnDrop(child);
    let exposed = line_after(&err, "▶ Exposing ");
    let key = exposed.rsplit(' ').next().unwrap().to_owned();
    (child, key)
}

/// `atek gateway -p 0 --domain atek.test` on the test's relay with `extra` arguments: the
/// running process, the port it listens on, and its stderr lines after that one.
fn gateway_on(
    dir: &std::path::Path,
    url: &impl std::fmt::Display,
    extra: &[&str],
) -> (KillOnDrop, u16, mpsc::Receiver<String>) {
    let mut cmd = atek(dir);
    cmd.args(["gateway", "-p", "0", "--domain", "atek.test"])
        .args(extra);
    on_relay(&mut cmd, url);
    let (child, _, err) = start(cmd, Vec::new());
    let child = KillOnDrop(child);
    let listening = line_after(&err, "▶ Gateway listening on http://127.0.0.1:");
    let port = listening.split(' ').next().unwrap().parse().unwrap();
    (child, port, err)
}

/// The idle timeout the tests below give their p2p commands (`--idle-timeout`): how long
/// a vanished peer may take to be noticed. The default is 30 s; the mechanism is the same.
const IDLE: std::time::Duration = std::time::Duration::from_secs(3);
/// What the tests below allow on top of a documented bound: QUIC waits at least three
/// retransmission timeouts (about 2 s more than `IDLE` was measured here), then closing
/// the node, on a loaded machine. Far below the 30 s default, so a bound that is not
/// applied still fails.
const MARGIN: std::time::Duration = std::time::Duration::from_secs(7);

/// A child fed an endless stream on stdin (until it dies), whose stdout bytes are counted
/// and whose stderr lines go to the receiver.
fn start_endless(
    cmd: Command,
) -> (
    KillOnDrop,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    mpsc::Receiver<String>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let (child, mut stdin, mut stdout, rx) = spawn_piped(cmd);
    std::thread::spawn(move || {
        let block = data(5, 64 << 10);
        while stdin.write_all(&block).is_ok() {}
    });
    let received = std::sync::Arc::new(AtomicU64::new(0));
    {
        let received = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    (KillOnDrop(child), received, rx)
}

/// Reads from `tcp` until the connection ends (end of stream or reset) and says how, or
/// panics once `limit` has passed with the connection still open.
fn until_closed(tcp: &mut std::net::TcpStream, limit: std::time::Duration) -> &'static str {
    use std::io::ErrorKind;
    let deadline = std::time::Instant::now() + limit;
    tcp.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the TCP connection is still open after {limit:?}"
        );
        match tcp.read(&mut buf) {
            Ok(0) => return "end of stream",
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return "reset",
        }
    }
}

/// `atek bind -p` is SIGKILLed while a TCP client streams both ways through `atek bind
/// KEY`: no QUIC close ever reaches the forwarding side, so it is the idle timeout that
/// ends the client's connection, within `--idle-timeout` plus margin. The forwarding
/// process stays up and says what happened, and a new connection to the vanished peer
/// fails within the dial timeout instead of hanging.
#[test]
fn bind_ends_streams_to_a_killed_peer_within_the_idle_timeout_and_stays_up() {
    let dial = std::time::Duration::from_secs(2);
    let (url, _relay) = local_relay();
    // The exposed service streams to each client until it goes, and swallows its input.
    let service_port = serve_tcp(|mut tcp| {
        let mut input = tcp.try_clone().unwrap();
        std::thread::spawn(move || std::io::copy(&mut input, &mut std::io::sink()));
        let block = vec![9u8; 64 << 10];
        while tcp.write_all(&block).is_ok() {}
    });
    let dir = tempfile::tempdir().unwrap();
    let idle = IDLE.as_secs().to_string();

    let (mut server, key) = expose_port(dir.path(), service_port, &url, &["--idle-timeout", &idle]);

    let mut client_cmd = atek(dir.path());
    client_cmd.args(["bind", &key, "--idle-timeout", &idle]);
    client_cmd.args(["--timeout", &dial.as_secs().to_string()]);
    on_relay(&mut client_cmd, &url);
    let (client, _, client_err) = start(client_cmd, Vec::new());
    let mut client = KillOnDrop(client);
    let forwarding = line_after(&client_err, "▶ Forwarding http://localhost:");
    let port: u16 = forwarding.split(' ').next().unwrap().parse().unwrap();

    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut upload = tcp.try_clone().unwrap();
    std::thread::spawn(move || {
        let block = data(6, 64 << 10);
        while upload.write_all(&block).is_ok() {}
    });
    // Mid-transfer: the service's bytes are coming.
    let mut got = vec![0u8; 1 << 20];
    tcp.read_exact(&mut got).unwrap();
    assert!(got.iter().all(|&b| b == 9));

    server.0.kill().unwrap(); // SIGKILL
    let _ = server.0.wait();
    let killed = std::time::Instant::now();
    let how = until_closed(&mut tcp, IDLE + MARGIN);
    eprintln!(
        "the client's connection ended ({how}) {:?} after the kill",
        killed.elapsed()
    );

    // The forwarding side is still up, and says which connection was lost.
    let failed = line_after(&client_err, "▶ FAILED pubkey: ");
    assert!(failed.starts_with(&key), "{failed}");
    assert!(
        failed.contains("a connection from 127.0.0.1:") && failed.contains("was lost"),
        "{failed}"
    );
    assert!(client.0.try_wait().unwrap().is_none(), "bind KEY exited");

    // A new connection to the vanished peer: closed once the dial gives up, and said so.
    let again = std::time::Instant::now();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(b"anyone there?").unwrap();
    until_closed(&mut tcp, dial + MARGIN);
    eprintln!("the new connection was closed after {:?}", again.elapsed());
    let failed = line_after(&client_err, "▶ FAILED pubkey: ");
    assert!(failed.contains("could not reach the peer"), "{failed}");
    assert!(client.0.try_wait().unwrap().is_none(), "bind KEY exited");
}

/// One side of a beam is SIGKILLed mid-transfer: the other notices within the idle timeout
/// (plus margin), says the connection was lost and exits with code 1.
#[test]
fn beam_fails_clearly_when_the_other_side_is_killed_mid_beam() {
    use std::sync::atomic::Ordering;
    let (url, _relay) = local_relay();
    let dir = tempfile::tempdir().unwrap();
    let idle = IDLE.as_secs().to_string();

    let mut a_cmd = atek(dir.path());
    a_cmd.args(["beam", "--idle-timeout", &idle]);
    on_relay(&mut a_cmd, &url);
    let (mut a, _, a_err) = start_endless(a_cmd);
    let passphrase = line_after(&a_err, "▶   atek beam ");
    let mut b_cmd = atek(dir.path());
    b_cmd.args(["beam", &passphrase, "--idle-timeout", &idle]);
    on_relay(&mut b_cmd, &url);
    let (mut b, received, b_err) = start_endless(b_cmd);
    // Mid-beam: A's bytes are arriving at B.
    assert!(
        common::wait_until(std::time::Duration::from_secs(30), || {
            received.load(Ordering::Relaxed) >= 1 << 20
        }),
        "the beam never got going"
    );

    a.0.kill().unwrap(); // SIGKILL
    let _ = a.0.wait();
    let killed = std::time::Instant::now();
    assert!(
        common::wait_until(IDLE + MARGIN, || matches!(b.0.try_wait(), Ok(Some(_)))),
        "B still runs {:?} after A was killed",
        killed.elapsed()
    );
    eprintln!("B exited {:?} after the kill", killed.elapsed());
    let status = b.0.wait().unwrap();
    let lines: Vec<String> = b_err.try_iter().collect();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("▶ Error: the connection to ") && l.contains("was lost")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "▶ Shutting down beam..."),
        "{lines:?}"
    );
}

/// An HTTP/1.1 request with `headers` (each line ending in CRLF) on `tcp`, and the
/// answer's head and body (the answer must say its length).
fn exchange(tcp: &mut std::net::TcpStream, path: &str, headers: &str) -> (String, String) {
    write!(tcp, "GET {path} HTTP/1.1\r\n{headers}\r\n").unwrap();
    let head = read_head(tcp);
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("an answer without its length: {head}"));
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// The values of the headers named `atek-remote-public-key` in any case, or with `_` for
/// `-`, in an app's list of the `[name, value]` pairs it got.
fn caller_keys(headers: &str) -> Vec<String> {
    let pairs: Vec<(String, String)> = serde_json::from_str(headers).unwrap();
    pairs
        .into_iter()
        .filter(|(name, _)| name.to_ascii_lowercase().replace('_', "-") == "atek-remote-public-key")
        .map(|(_, value)| value)
        .collect()
}

/// An exec service in `dir` that answers every GET with the request's headers, as a JSON
/// list of `[name, value]` pairs in the order and spelling it got them, keeping
/// connections alive.
fn header_echo_app(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("atek.json"),
        r#"{"runtime":"exec","exec":["python3","app.py"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("app.py"),
        r#"import json, os, http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_HEAD(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        body = json.dumps(list(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
S(os.environ["ATEK_ASSIGNED_SOCKET_FILE"], H).serve_forever()
"#,
    )
    .unwrap();
}

/// The home names its p2p callers: every request that reaches an app through `atek bind
/// HOMEKEY`, on one kept-alive connection and on another, carries `Atek-Remote-Public-Key`
/// with the forwarding node's key exactly once, whatever a client sent under that name
/// (any case, `_` for `-`). And through `atek gateway --domain D`, `{app}.{key}.{D}` is
/// that app of that home, which sees the Host the browser sent.
#[test]
fn the_home_names_every_p2p_caller_and_serves_its_apps_through_the_gateway() {
    let (url, _relay) = local_relay();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let token = common::write_config(
        &home,
        &format!(
            r#","relays":["{url}"],"p2p":{{"enabled":true,"public":false,"insecureRelayTls":true,"portMapping":false}}"#
        ),
    );
    header_echo_app(&dir.path().join("app"));
    let _host = common::TestHost::start(&home);
    let out = run(atek(&home)
        .args(["install", "--json", "--id", "echo", "app"])
        .current_dir(dir.path()));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(atek(&home).args(["key", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let home_key = json["publicKey"].as_str().unwrap().to_owned();

    let laptop = dir.path().join("laptop");
    let mut bind_cmd = atek(&laptop);
    bind_cmd.args(["bind", &home_key]);
    on_relay(&mut bind_cmd, &url);
    let (bind, _, bind_err) = start(bind_cmd, Vec::new());
    let _bind = KillOnDrop(bind);
    let laptop_key = line_after(&bind_err, "▶ Created temporary keypair, public key: ");
    let forwarding = line_after(&bind_err, "▶ Forwarding http://localhost:");
    let port: u16 = forwarding.split(' ').next().unwrap().parse().unwrap();

    let app = format!("Host: echo.localhost\r\nAuthorization: Bearer {token}\r\n");
    let forgeries = [
        "",
        "Atek-Remote-Public-Key: forged\r\n",
        "atek-remote-public-key: forged\r\nATEK-REMOTE-PUBLIC-KEY: forged too\r\n",
        "Atek_Remote_Public_Key: forged\r\naTeK-rEmOtE-pUbLiC-kEy: forged\r\n",
        "",
    ];
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (i, forged) in forgeries.iter().enumerate() {
        let (head, body) = exchange(&mut tcp, "/", &format!("{app}{forged}"));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "request {i}: {head}{body}"
        );
        assert_eq!(
            caller_keys(&body),
            vec![laptop_key.as_str()],
            "request {i} on one connection: {body}"
        );
    }
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for forged in ["Atek-Remote-Public-Key: forged\r\n", ""] {
        let (head, body) = exchange(&mut second, "/", &format!("{app}{forged}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}{body}");
        assert_eq!(caller_keys(&body), vec![laptop_key.as_str()], "{body}");
    }

    // Through the gateway: {app}.{key}.{domain} is the home's app.
    let mut gateway_cmd = atek(&laptop);
    gateway_cmd.args(["gateway", "-p", "0", "--domain", "atek.test"]);
    on_relay(&mut gateway_cmd, &url);
    let (gateway, _, gateway_err) = start(gateway_cmd, Vec::new());
    let _gateway = KillOnDrop(gateway);
    let gateway_key = line_after(&gateway_err, "▶ Created temporary keypair, public key: ");
    let listening = line_after(&gateway_err, "▶ Gateway listening on http://127.0.0.1:");
    let gw_port: u16 = listening.split(' ').next().unwrap().parse().unwrap();
    let host = format!("echo.{home_key}.atek.test:{gw_port}");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", gw_port)).unwrap();
    for forged in ["", "Atek-Remote-Public-Key: forged\r\n"] {
        let (head, body) = exchange(
            &mut tcp,
            "/",
            &format!("Host: {host}\r\nAuthorization: Bearer {token}\r\n{forged}"),
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}{body}");
        let pairs: Vec<(String, String)> = serde_json::from_str(&body).unwrap();
        let seen = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(seen("host").as_deref(), Some(host.as_str()), "{body}");
        assert_eq!(caller_keys(&body), vec![gateway_key.as_str()], "{body}");
    }
}

/// A TCP server on a loopback port the OS picks, running `handle` on a thread of its own
/// for each connection: its port.
fn serve_tcp<F>(handle: F) -> u16
where
    F: Fn(std::net::TcpStream) + Send + Copy + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let tcp = tcp.unwrap();
            std::thread::spawn(move || handle(tcp));
        }
    });
    port
}

/// A server that answers each request on a connection with the request's head, byte for
/// byte, as its body (keep-alive; requests without bodies).
fn head_echo_server() -> u16 {
    serve_tcp(|tcp| {
        let mut reader = BufReader::new(tcp.try_clone().unwrap());
        let mut writer = tcp;
        loop {
            let mut head = String::new();
            while !head.ends_with("\r\n\r\n") {
                match reader.read_line(&mut head) {
                    Ok(1..) => {}
                    _ => return,
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                head.len()
            );
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// `atek gateway --domain D` takes `{name}.{key}.{D}` to peer `key` (an app of a home) with
/// the Host as the browser sent it; a label that is not a key gets 404 and a key nobody
/// answers for 502 once the dial gives up, each saying why.
#[test]
fn the_gateway_reaches_names_under_a_key_and_says_why_it_cannot() {
    let dial = std::time::Duration::from_secs(2);
    let (url, _relay) = local_relay();
    let service_port = head_echo_server();
    let dir = tempfile::tempdir().unwrap();

    let (_peer, key) = expose_port(dir.path(), service_port, &url, &[]);

    let timeout = dial.as_secs().to_string();
    let (_gateway, port, _) = gateway_on(dir.path(), &url, &["--timeout", &timeout]);

    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for host in [
        format!("app.{key}.atek.test:{port}"),
        format!("deeper.app.{key}.atek.test"),
        format!("{key}.atek.test:{port}"),
        format!("App.{}.Atek.Test:{port}", key.to_ascii_uppercase()),
    ] {
        let (head, body) = exchange(&mut tcp, "/x?y=1", &format!("Host: {host}\r\n"));
        assert!(head.starts_with("HTTP/1.1 200"), "{host}: {head}{body}");
        assert!(
            body.starts_with("GET /x?y=1 HTTP/1.1\r\n"),
            "{host}: {body}"
        );
        assert!(
            body.lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("host: {host}"))),
            "the peer sees the Host that was sent, {host}: {body}"
        );
    }

    // A label before the domain that is not a key: 404, naming it.
    let (head, body) = exchange(
        &mut tcp,
        "/",
        &format!("Host: {key}.notakey.atek.test:{port}\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 404"), "{head}{body}");
    assert!(
        body.contains("Subdomain is not a public key: notakey"),
        "{body}"
    );

    // A key nobody answers for: 502 once the dial gives up, naming the key.
    let nobody = {
        let out = run(atek(dir.path())
            .args(["key", "--json", "-k"])
            .arg(dir.path().join("nobody.key")));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["publicKey"].as_str().unwrap().to_owned()
    };
    let asked = std::time::Instant::now();
    tcp.set_read_timeout(Some(dial + MARGIN)).unwrap();
    let (head, body) = exchange(
        &mut tcp,
        "/",
        &format!("Host: app.{nobody}.atek.test:{port}\r\n"),
    );
    assert!(head.starts_with("HTTP/1.1 502"), "{head}{body}");
    assert!(
        body.contains(&format!("Failed to route request to {nobody}"))
            && body.contains("could not reach the peer"),
        "{body}"
    );
    assert!(asked.elapsed() < dial + MARGIN, "{:?}", asked.elapsed());
}

/// `atek gateway` whose peer is SIGKILLed after answering: the next request through the
/// gateway (on the connection it keeps to that peer, which no close ever reaches) gets a
/// 502 naming the key within the idle timeout plus margin, not a hang; the gateway stays
/// up, and a request after that gets its 502 within the dial timeout.
#[test]
fn the_gateway_answers_502_when_its_peer_vanishes() {
    let dial = std::time::Duration::from_secs(2);
    let idle = IDLE.as_secs().to_string();
    let (url, _relay) = local_relay();
    let service_port = head_echo_server();
    let dir = tempfile::tempdir().unwrap();

    let (mut peer, key) = expose_port(dir.path(), service_port, &url, &["--idle-timeout", &idle]);

    let timeout = dial.as_secs().to_string();
    let (mut gateway, port, _) = gateway_on(
        dir.path(),
        &url,
        &["--timeout", &timeout, "--idle-timeout", &idle],
    );
    let host = format!("Host: {key}.atek.test:{port}\r\n");

    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (head, body) = exchange(&mut tcp, "/before", &host);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}{body}");

    peer.0.kill().unwrap(); // SIGKILL: no QUIC close reaches the gateway
    let _ = peer.0.wait();
    for (what, limit) in [("first", IDLE + dial + MARGIN), ("next", dial + MARGIN)] {
        let asked = std::time::Instant::now();
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(limit)).unwrap();
        let (head, body) = exchange(&mut tcp, "/after", &host);
        eprintln!("{what} request after the kill: {:?}", asked.elapsed());
        assert!(head.starts_with("HTTP/1.1 502"), "{what}: {head}{body}");
        assert!(
            body.contains(&key),
            "{what}: the page names the peer: {body}"
        );
        assert!(asked.elapsed() < limit, "{what}: {:?}", asked.elapsed());
        assert!(
            gateway.0.try_wait().unwrap().is_none(),
            "the gateway exited"
        );
    }
}

/// `atek bind -p` in front of an HTTP server: every request of a kept-alive connection
/// reaches it with `Atek-Remote-Public-Key` naming the forwarding node, once, whatever the
/// client sent under that name.
#[test]
fn bind_names_the_caller_on_every_http_request() {
    let (url, _relay) = local_relay();
    // An HTTP server that answers each request with the caller-key headers it got, as a
    // JSON list of [name, value] pairs (what `caller_keys` reads).
    let app_port = serve_tcp(|mut tcp| {
        loop {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tcp.read(&mut byte).unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let pairs: Vec<(String, String)> = String::from_utf8(head)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
                .collect();
            let body = serde_json::to_string(&pairs).unwrap();
            write!(
                tcp,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let net = |cmd: &mut Command| on_relay(cmd, &url);
    let (_server, key) = expose_port(dir.path(), app_port, &url, &[]);

    let mut client_cmd = atek(dir.path());
    client_cmd.args(["bind", &key]);
    net(&mut client_cmd);
    let (client, _, client_err) = start(client_cmd, Vec::new());
    let _client = KillOnDrop(client);
    let client_key = line_after(&client_err, "▶ Created temporary keypair, public key: ");
    let forwarding = line_after(&client_err, "▶ Forwarding http://localhost:");
    let port: u16 = forwarding.split(' ').next().unwrap().parse().unwrap();

    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (i, forged) in [
        "",
        "Atek-Remote-Public-Key: forged\r\n",
        "atek_remote_public_key: forged\r\nATEK-REMOTE-PUBLIC-KEY: forged too\r\n",
        "",
    ]
    .iter()
    .enumerate()
    {
        let (head, body) = exchange(&mut tcp, "/", &format!("Host: example\r\n{forged}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            caller_keys(&body),
            std::slice::from_ref(&client_key),
            "request {i}"
        );
    }
}
