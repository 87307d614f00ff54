//! HTTP through an exposed port: every request of a connection names the caller's key in
//! `Atek-Remote-Public-Key`, whatever the caller sent under that name; other protocols,
//! a server that speaks first included, pass byte for byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP server on loopback that runs `handle` on every connection it accepts.
async fn serve_tcp<F, Fut>(handle: F) -> std::net::SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(handle(tcp));
        }
    });
    addr
}

/// A request's head, read byte by byte up to its blank line; None if the connection ends
/// first.
async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.ok()?);
    }
    Some(String::from_utf8(head).unwrap())
}

/// Echoes what is left of a connection until the client's end of input, then ends it.
async fn echo_rest(mut tcp: TcpStream) {
    let (mut rd, mut wr) = tcp.split();
    tokio::io::copy(&mut rd, &mut wr).await.unwrap();
    wr.shutdown().await.unwrap();
}

/// An HTTP server that answers every request with the values of every header whose name
/// is the caller header in any spelling (`-` or `_`), one per line.
async fn header_echo() -> std::net::SocketAddr {
    serve_tcp(|tcp| async move {
        let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
            let seen: Vec<String> = req
                .headers()
                .iter()
                .filter(|(name, _)| name.as_str().replace('_', "-") == "atek-remote-public-key")
                .map(|(_, value)| value.to_str().unwrap().to_owned())
                .collect();
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(seen.join("\n")))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .await;
    })
    .await
}

/// A TCP server that sends `greeting` first (if any), then echoes until the client's end
/// of input.
async fn echo(greeting: &'static [u8]) -> std::net::SocketAddr {
    serve_tcp(move |mut tcp| async move {
        tcp.write_all(greeting).await.unwrap();
        echo_rest(tcp).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_connection_names_the_caller_and_forgeries_are_replaced() {
    let (port, server, client, _relay) = common::forwarded(header_echo().await, None).await;
    let key = client.key().to_string();

    // One kept-alive connection, request after request, each with a forgery of its own.
    let tcp = TcpStream::connect(port).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let forgeries: [&[(&str, &str)]; 5] = [
        &[],
        &[("Atek-Remote-Public-Key", "forged")],
        &[("atek_remote_public_key", "forged")],
        &[
            ("ATEK-REMOTE-PUBLIC-KEY", "forged"),
            ("Atek_Remote-Public_Key", "forged too"),
        ],
        &[],
    ];
    for (i, forged) in forgeries.iter().enumerate() {
        let mut req = Request::get(format!("/{i}")).header(header::HOST, "example");
        for (name, value) in *forged {
            req = req.header(*name, *value);
        }
        sender.ready().await.unwrap();
        let response = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let seen = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&seen).unwrap(),
            key,
            "request {i} of the connection names the caller, once"
        );
    }

    // HTTP/1.0, the client done sending before the answer comes (half-close).
    let mut tcp = TcpStream::connect(port).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\nHost: example\r\nAtek-Remote-Public-Key: forged\r\n\r\n")
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.ends_with(&format!("\r\n\r\n{key}")), "{answer}");

    // What opens like a request but is not one a strict server reads is refused, not
    // passed on as raw bytes with its forged header.
    let mut tcp = TcpStream::connect(port).await.unwrap();
    tcp.write_all(b"GET  /  HTTP/1.1\r\nAtek-Remote-Public-Key: forged\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("forged"), "{answer}");

    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocols_pass_byte_for_byte() {
    let (port, server, client, _relay) =
        common::forwarded(echo(b"220 hello, speak\r\n").await, None).await;

    // A server that speaks first is heard before the client says anything.
    let mut tcp = TcpStream::connect(port).await.unwrap();
    let mut greeting = [0u8; 18];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut greeting))
        .await
        .expect("the greeting arrives though the client is silent")
        .unwrap();
    assert_eq!(&greeting, b"220 hello, speak\r\n");
    // Then even a request line is carried as it is.
    let request = b"GET / HTTP/1.1\r\nAtek-Remote-Public-Key: as sent\r\n\r\n";
    tcp.write_all(request).await.unwrap();
    let mut echoed = [0u8; 51];
    tcp.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, request);
    client.close().await;
    server.close().await;

    let (port, server, client, _relay) = common::forwarded(echo(b"").await, None).await;
    // Clients that speak first: a line protocol with upper-case words (not HTTP), binary
    // bytes, and a header-like line in a stream that is not HTTP: all untouched.
    for sent in [
        &b"NICK atek\r\nUSER atek 0 * :Atek\r\nAtek-Remote-Public-Key: forged\r\n"[..],
        &common::data(7, 100_000)[..],
        &b"SSH-2.0-test\r\n\x00\xff"[..],
    ] {
        let mut tcp = TcpStream::connect(port).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        assert!(got == sent, "{} bytes came back as sent", sent.len());
    }

    client.close().await;
    server.close().await;
}

/// An HTTP proxy's side of `CONNECT`: reads the request's head, records it, answers 200,
/// then echoes the tunnel's bytes.
async fn connect_proxy(heads: tokio::sync::mpsc::UnboundedSender<String>) -> std::net::SocketAddr {
    serve_tcp(move |mut tcp| {
        let heads = heads.clone();
        async move {
            heads.send(read_head(&mut tcp).await.unwrap()).unwrap();
            tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            echo_rest(tcp).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_tunnel_through_an_exposed_proxy_carries_bytes_and_header_case() {
    let (heads_tx, mut heads) = tokio::sync::mpsc::unbounded_channel();
    let (port, server, client, _relay) =
        common::forwarded(connect_proxy(heads_tx).await, None).await;

    let mut tcp = TcpStream::connect(port).await.unwrap();
    tcp.write_all(
        b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nX-Odd-CASE: 1\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The proxy got the request with the caller named and the client's spelling kept.
    let seen = heads.recv().await.unwrap();
    assert!(
        seen.starts_with("CONNECT example.org:443 HTTP/1.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("X-Odd-CASE: 1\r\n"), "{seen}");
    assert!(
        seen.to_ascii_lowercase()
            .contains(&format!("atek-remote-public-key: {}\r\n", client.key())),
        "{seen}"
    );
    // Then the tunnel: bytes both ways, and the end of input.
    let sent = common::data(3, 200_000);
    tcp.write_all(&sent).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut got))
        .await
        .expect("the tunnel ends with the client's end of input")
        .unwrap();
    assert!(
        got == sent,
        "the tunnel echoed {} of {} bytes",
        got.len(),
        sent.len()
    );

    client.close().await;
    server.close().await;
}

/// An HTTP/1.0 server that answers each connection's one request with its caller-key
/// header, then closes, as Python's `http.server` does by default.
async fn one_answer_per_connection() -> std::net::SocketAddr {
    serve_tcp(|mut tcp| async move {
        let Some(head) = read_head(&mut tcp).await else {
            return;
        };
        let head = head.to_ascii_lowercase();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("atek-remote-public-key: "))
            .unwrap_or("none")
            .to_owned();
        tcp.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{key}").as_bytes())
            .await
            .unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_after_each_answer_still_serves_a_kept_alive_client() {
    let (port, server, client, _relay) =
        common::forwarded(one_answer_per_connection().await, None).await;
    let tcp = TcpStream::connect(port).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        sender.ready().await.unwrap();
        let response = sender
            .send_request(
                Request::get(format!("/{i}"))
                    .header(header::HOST, "example")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, client.key().to_string(), "request {i}");
    }
    client.close().await;
    server.close().await;
}
