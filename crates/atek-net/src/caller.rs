//! Naming the caller of HTTP that comes over p2p: `Atek-Remote-Public-Key`.
//!
//! A server reached by key can know who calls: the node that receives HTTP over p2p sets
//! `Atek-Remote-Public-Key: {caller's key}` on every request of a connection (the original
//! set it on the first request only, so a kept-alive connection's later requests carried
//! whatever the client wrote), replacing whatever the caller sent under that name. Both
//! places that answer HTTP over p2p do this: a port exposed with [`crate::bind::expose`]
//! and the Atek host's own server.
//!
//! An exposed port carries any TCP protocol, so [`expose`](crate::bind::expose) looks at the
//! first bytes the caller sends: a connection that opens with an HTTP/1 request
//! line (`METHOD target HTTP/x.y`) is served as HTTP by hyper, request by request, and any
//! other (TLS, SSH, a database's protocol, a server that speaks first) is carried byte for
//! byte. The test is deliberately wide: whatever starts with an upper-case word and a space
//! and has `HTTP/` on its first line is taken as HTTP and, if hyper cannot read it, refused
//! with a 400. So a request that only a lenient server would accept cannot slip past the
//! header as "not HTTP".

use std::convert::Infallible;
use std::sync::Arc;

use atek_core::PublicKey;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use iroh::endpoint::{RecvStream, SendStream};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The header that names the key of a p2p caller.
pub const REMOTE_PUBLIC_KEY: HeaderName = HeaderName::from_static("atek-remote-public-key");

/// Removes whatever a client sent as the caller's key: under [`REMOTE_PUBLIC_KEY`] and under
/// any spelling with `_` for `-` (`atek_remote_public_key`), which CGI, WSGI and PHP read as
/// the same header. Only the receiving node names a caller.
pub fn strip(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_caller_header(k.as_str()))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// Sets the caller's key on a request that came over p2p, replacing whatever the caller
/// sent under that name (see [`strip`]).
pub fn name(headers: &mut HeaderMap, key: &PublicKey) {
    strip(headers);
    if let Ok(value) = HeaderValue::from_str(&key.to_string()) {
        headers.insert(REMOTE_PUBLIC_KEY, value);
    }
}

/// Whether a (lowercased) header name is [`REMOTE_PUBLIC_KEY`], whichever of `-` and `_`
/// separate its words.
fn is_caller_header(name: &str) -> bool {
    let expected = REMOTE_PUBLIC_KEY;
    let expected = expected.as_str();
    name.len() == expected.len()
        && name
            .bytes()
            .zip(expected.bytes())
            .all(|(a, b)| a == b || (b == b'-' && a == b'_'))
}

/// What a stream to an exposed port carries, judged by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// HTTP/1: served request by request, each naming the caller.
    Http,
    /// Anything else: carried byte for byte.
    Raw,
}

/// The longest first line looked at; a longer one that opens like a request is HTTP (and
/// hyper answers it as a request that is too long).
const MAX_LINE: usize = 8192;
/// The longest method looked for.
const MAX_METHOD: usize = 32;

/// What the first bytes of a stream say, or None while they could still be either.
pub(crate) fn classify(head: &[u8]) -> Option<Kind> {
    let method = head.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match head.get(method) {
        None if method < MAX_METHOD => return None,
        Some(b' ') if method > 0 => {}
        _ => return Some(Kind::Raw),
    }
    let line = head.iter().position(|&b| b == b'\n');
    match line {
        Some(end) if head[..end].windows(6).any(|w| w == b" HTTP/") => Some(Kind::Http),
        Some(_) => Some(Kind::Raw),
        None if head.len() >= MAX_LINE => Some(Kind::Http),
        None => None,
    }
}

/// Reads the caller's first bytes until [`classify`] can tell; a target that speaks first,
/// or a caller that ends its input before, makes the stream [`Kind::Raw`]. Returns what was
/// read, which is still to be delivered.
pub(crate) async fn sniff(
    recv: &mut RecvStream,
    target: &TcpStream,
) -> Result<(Kind, BytesMut), iroh::endpoint::ReadError> {
    let mut head = BytesMut::new();
    let mut buf = [0u8; 2048];
    loop {
        if let Some(kind) = classify(&head) {
            return Ok((kind, head));
        }
        let room = (MAX_LINE - head.len()).min(buf.len());
        tokio::select! {
            read = recv.read(&mut buf[..room]) => match read? {
                Some(n) => head.extend_from_slice(&buf[..n]),
                None => return Ok((Kind::Raw, head)),
            },
            _ = target.readable() => return Ok((Kind::Raw, head)),
        }
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves HTTP/1 that `peer` sends on a stream (`head` being its first bytes, already
/// read) by passing each request on to `target` (its address `addr`, and a connection to
/// it already open), with the caller named. Upgrades (WebSockets) and `CONNECT` tunnels are
/// carried through once the target agrees. Returns when either side is done.
pub(crate) async fn serve_http(
    peer: PublicKey,
    head: BytesMut,
    recv: RecvStream,
    send: SendStream,
    addr: Arc<str>,
    target: TcpStream,
) -> Result<(), String> {
    let first = handshake(target)
        .await
        .map_err(|e| format!("the exposed port: {e}"))?;
    let target = Arc::new(Target {
        addr,
        conn: tokio::sync::Mutex::new(Some(first)),
    });
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let target = Arc::clone(&target);
        async move {
            name(req.headers_mut(), &peer);
            // A WebSocket (any `Upgrade`), or a tunnel through an exposed HTTP proxy.
            let connect = req.method() == Method::CONNECT;
            let client_upgrade = (connect || req.headers().contains_key(header::UPGRADE))
                .then(|| hyper::upgrade::on(&mut req));
            let version = req.version();
            let mut response = match target.send(req).await {
                Ok(response) => response,
                Err(e) => return Ok::<_, Infallible>(bad_gateway(&e)),
            };
            // The peer's connection speaks its own version: an HTTP/1.0 server's answer
            // must not end a kept-alive HTTP/1.1 connection (its next request gets a new
            // connection to the server instead).
            *response.version_mut() = version;
            let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS
                || (connect && response.status().is_success());
            if switched && let Some(client_upgrade) = client_upgrade {
                let target_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, target_upgrade) {
                        Ok((client, target)) => {
                            let (mut client, mut target) =
                                (TokioIo::new(client), TokioIo::new(target));
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut client, &mut target).await
                            {
                                tracing::trace!(error = %e, "upgraded connection ended");
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade through bind failed"),
                    }
                });
            }
            Ok(response.map(BodyExt::boxed))
        }
    });
    let io = tokio::io::join(std::io::Cursor::new(head.freeze()).chain(recv), send);
    hyper::server::conn::http1::Builder::new()
        // A client may end its sending side and still wait for the answer.
        .half_close(true)
        // Headers reach the server as the client spelled them, and back.
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
        .map_err(|e| format!("HTTP from the peer: {e}"))
}

type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// The exposed port, as the HTTP client of one peer's stream: one connection at a time,
/// made again when the server closed the last one (an HTTP/1.0 server, Python's
/// `http.server` say, closes after every answer while the peer keeps its connection).
struct Target {
    addr: Arc<str>,
    /// HTTP/1 serves one request at a time, so this is never waited for.
    conn: tokio::sync::Mutex<Option<Sender>>,
}

impl Target {
    async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, String> {
        let mut slot = self.conn.lock().await;
        if let Some(sender) = slot.as_mut()
            && sender.ready().await.is_err()
        {
            *slot = None;
        }
        let sender = match slot.take() {
            Some(sender) => slot.insert(sender),
            None => {
                let tcp = TcpStream::connect(&*self.addr)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
                let sender = handshake(tcp).await.map_err(|e| e.to_string())?;
                slot.insert(sender)
            }
        };
        sender.send_request(req).await.map_err(|e| e.to_string())
    }
}

/// An HTTP/1 client connection over `tcp`, driven by a task of its own.
async fn handshake(tcp: TcpStream) -> Result<Sender, hyper::Error> {
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(tcp))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::trace!(error = %e, "exposed port's HTTP connection ended");
        }
    });
    Ok(sender)
}

/// The answer when the exposed port cannot be reached, closed its connection mid-answer
/// or sent what is not HTTP; the stream is closed after it.
fn bad_gateway(e: &str) -> Response<Body> {
    let body = format!("The port exposed with atek bind did not answer: {e}\n");
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_http_and_the_rest_is_not() {
        let http = Some(Kind::Http);
        let raw = Some(Kind::Raw);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), http);
        assert_eq!(classify(b"PROPFIND /dav HTTP/1.1\r\nHost: x\r\n"), http);
        // Only a lenient server would take these; they are HTTP here, so hyper refuses
        // them rather than letting a forged header through as raw bytes.
        assert_eq!(classify(b"GET  /  HTTP/1.1 \n"), http);
        assert_eq!(classify(b"BREW /pot HTTP/9.9\r\n"), http);
        // Not yet known.
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET /long/path"), None);
        // Other protocols: decided at the first byte that cannot open a request line.
        assert_eq!(classify(b"\x16\x03\x01"), raw); // TLS
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), raw);
        assert_eq!(classify(b"*1\r\n$4\r\nPING\r\n"), raw); // Redis
        assert_eq!(classify(b"\x00\x00\x00\x08"), raw); // Postgres
        assert_eq!(classify(b"get / HTTP/1.1\r\n"), raw);
        assert_eq!(classify(b"NICK atek\r\n"), raw); // a line protocol, not HTTP
        assert_eq!(classify(&[b'A'; MAX_METHOD]), raw);
        // A first line too long to wait for, that opens like a request.
        let mut long = b"GET /".to_vec();
        long.resize(MAX_LINE, b'a');
        assert_eq!(classify(&long), http);
    }

    #[test]
    fn every_spelling_of_the_header_is_replaced() {
        let key = atek_core::SecretKey::generate().public();
        let mut headers = HeaderMap::new();
        for forged in [
            "atek-remote-public-key",
            "atek_remote_public_key",
            "Atek_Remote-Public_Key",
        ] {
            headers.append(
                HeaderName::from_bytes(forged.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        headers.insert(header::HOST, HeaderValue::from_static("x"));
        name(&mut headers, &key);
        assert_eq!(headers.len(), 2);
        assert_eq!(
            headers
                .get_all(REMOTE_PUBLIC_KEY)
                .iter()
                .collect::<Vec<_>>(),
            [key.to_string().as_str()]
        );
    }
}
