//! The gateway: `{key}.localhost` reaches that peer's exposed HTTP server through a relay on
//! loopback: a GET, a 1 MiB body echoed as it streams, an upgraded (WebSocket-like)
//! connection, and the gateway's own answers for no key, a bad key and an unreachable peer.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use atek_core::SecretKey;
use atek_net::{Node, bind, gateway};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The app behind the peer: `/hello` says what it saw, `/echo` streams the body back,
/// `/ws` upgrades and echoes raw bytes.
async fn app(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    Ok(match req.uri().path() {
        "/hello" => Response::new(full(format!(
            "host={}",
            req.headers().get(header::HOST).unwrap().to_str().unwrap()
        ))),
        "/echo" => Response::new(req.into_body().boxed()),
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(upgrade.await.unwrap());
                let mut buf = [0u8; 1024];
                loop {
                    let n = io.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    io.write_all(&buf[..n]).await.unwrap();
                }
            });
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response
                .headers_mut()
                .insert(header::UPGRADE, "echo".parse().unwrap());
            response
                .headers_mut()
                .insert(header::CONNECTION, "upgrade".parse().unwrap());
            response
        }
        _ => {
            let mut response = Response::new(full("no"));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    })
}

async fn serve_app() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(app))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn request(gateway: std::net::SocketAddr, req: Request<Body>) -> Response<Incoming> {
    let tcp = TcpStream::connect(gateway).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    sender.send_request(req).await.unwrap()
}

async fn body_text(response: Response<Incoming>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_as_subdomains_reach_their_peers() {
    let relay = common::relay(Duration::from_secs(3)).await;
    let config = &relay.config;

    let app = serve_app().await;
    let peer = Node::bind(&SecretKey::generate(), &[bind::ALPN], config)
        .await
        .unwrap();
    peer.online().await;
    {
        let peer = peer.clone();
        tokio::spawn(async move { bind::expose(&peer, app.to_string(), None).await });
    }

    let node = Node::bind(&SecretKey::generate(), &[], config)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    {
        let node = node.clone();
        tokio::spawn(async move { gateway::serve(&node, listener, "localhost").await });
    }
    let host = format!("{}.localhost:{}", peer.key(), gw.port());

    // A GET: the peer's app sees the Host the browser sent.
    let get = Request::get("/hello")
        .header(header::HOST, &host)
        .body(full(""))
        .unwrap();
    let response = request(gw, get).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, format!("host={host}"));

    // A large body, streamed there and back.
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let post = Request::post("/echo")
        .header(header::HOST, &host)
        .body(full(big.clone()))
        .unwrap();
    let response = request(gw, post).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert!(echoed == big, "the body came back byte for byte");

    // An upgrade, as a WebSocket does: bytes both ways after 101.
    let ws = Request::get("/ws")
        .header(header::HOST, &host)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "echo")
        .body(full(""))
        .unwrap();
    let response = request(gw, ws).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    for message in [&b"ping"[..], &b"a second message"[..]] {
        io.write_all(message).await.unwrap();
        let mut back = vec![0u8; message.len()];
        io.read_exact(&mut back).await.unwrap();
        assert_eq!(back, message);
    }

    // The gateway's own answers.
    let plain = Request::get("/")
        .header(header::HOST, format!("localhost:{}", gw.port()))
        .body(full(""))
        .unwrap();
    let response = request(gw, plain).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(body_text(response).await.contains("{key}.localhost"));
    let bad = Request::get("/")
        .header(header::HOST, "notakey.localhost")
        .body(full(""))
        .unwrap();
    let response = request(gw, bad).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(body_text(response).await.contains("not a public key"));
    let nobody = SecretKey::generate().public();
    let gone = Request::get("/")
        .header(header::HOST, format!("{nobody}.localhost"))
        .body(full(""))
        .unwrap();
    let response = request(gw, gone).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(body_text(response).await.contains(&nobody.to_string()));

    node.close().await;
    peer.close().await;
}
