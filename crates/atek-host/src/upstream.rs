//! HTTP to a service, over its Unix socket or its TCP port, with pooled keep-alive
//! connections driven by the task that uses them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Mutex;
use tokio::time::Instant;

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `ATEK_ASSIGNED_SOCKET_FILE`.
    Unix(PathBuf),
    /// `ATEK_ASSIGNED_PORT` on loopback.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// The future that drives one HTTP/1 connection (hyper's `Connection`), boxed so that
/// connections over sockets and over TCP share one pool type.
pub type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One idle keep-alive connection, with its driver; `B` is the request body type: whole
/// (`Full`) for JSON-RPC calls, streamed (`Body`) for the app proxy.
struct Conn<B = Full<Bytes>> {
    sender: http1::SendRequest<B>,
    driver: Driver,
    idle_since: Instant,
}

impl<B> Conn<B> {
    /// Polls the idle connection once: a service that closed it (idle timeout,
    /// `Connection: close`) is noticed here rather than by the next call.
    fn is_alive(&mut self) -> bool {
        if self.sender.is_closed() {
            return false;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.driver.as_mut().poll(&mut cx).is_pending() && !self.sender.is_closed()
    }

    /// Alive, and done with its last exchange (an upload the app answered early may still
    /// be going out).
    fn is_ready(&mut self) -> bool {
        self.is_alive() && self.sender.is_ready()
    }
}

/// Takes the most recently used connection of this thread's pool that passes `usable`;
/// the ones that fail it are closed.
fn checkout_from<B>(
    pools: &[Pool<Conn<B>>],
    usable: impl Fn(&mut Conn<B>) -> bool,
) -> Option<Conn<B>> {
    let mut idle = thread_pool(pools);
    while let Some(mut conn) = idle.pop() {
        if conn.idle_since.elapsed() < IDLE_TIMEOUT && usable(&mut conn) {
            return Some(conn);
        }
    }
    None
}

/// Puts a connection back on this thread's pool, dropping stale ones and keeping at most
/// [`MAX_IDLE`].
fn checkin_to<B>(pools: &[Pool<Conn<B>>], mut conn: Conn<B>) {
    conn.idle_since = Instant::now();
    let mut idle = thread_pool(pools);
    // The stack is used from the top, so stale connections gather at the bottom.
    while idle
        .first()
        .is_some_and(|c| c.idle_since.elapsed() >= IDLE_TIMEOUT)
    {
        idle.remove(0);
    }
    if idle.len() < MAX_IDLE {
        idle.push(conn);
    }
}

/// Why an exchange with a service failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting failed (nothing listens, permission, …).
    #[error("{0}")]
    Connect(#[source] std::io::Error),
    /// The HTTP exchange failed (the service closed the connection, sent garbage HTTP, …).
    #[error("{0}")]
    Http(#[source] hyper::Error),
    /// The answer was larger than the limit, or broke off.
    #[error("the answer was larger than {limit} bytes or broke off")]
    Body {
        /// The limit.
        limit: usize,
    },
}

/// A pool of keep-alive HTTP/1 connections to one service.
///
/// A request's own task drives the connection while it holds it, so an exchange costs no
/// task spawn and no wakeup of another task (hyper-util's pooled client spends both per
/// request, about a sixth of the gateway's time in a profile). A connection is returned to
/// the pool only after a complete exchange; one dropped mid-way is closed.
///
/// Streamed exchanges ([`Upstream::forward`], the app proxy) use connections of their own,
/// driven by a task, because their bodies outlive the request handler.
#[derive(Clone)]
pub struct Upstream {
    endpoint: Endpoint,
    /// One stack of idle connections per HTTP thread: a connection is driven by the event
    /// loop of the thread that opened it, so it is only ever reused there.
    idle: Arc<[Pool<Conn>]>,
    /// The same for streamed exchanges.
    streams: Arc<[Pool<StreamConn>]>,
}

/// One thread's stack of idle connections, alone on its cache lines: two loops' pools side
/// by side made every checkout and checkin move the line between the loops' CPUs.
#[repr(align(128))]
struct Pool<T>(Mutex<Vec<T>>);

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

/// An idle connection for streamed exchanges.
type StreamConn = Conn<Body>;

/// [`Retry`] of a streamed exchange.
type StreamRetry = Retry<Body>;

/// How many HTTP threads get a pool of their own (more share by index): two per CPU on up
/// to 16 CPUs.
const POOLS: usize = 32;

thread_local! {
    static THREAD_INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as HTTP thread `index`, so it uses its own connection pools.
pub(crate) fn set_thread_index(index: usize) {
    THREAD_INDEX.with(|i| i.set(index));
}

fn thread_pool<T>(pools: &[Pool<T>]) -> std::sync::MutexGuard<'_, Vec<T>> {
    let index = THREAD_INDEX.with(|i| i.get()) % pools.len();
    pools[index].0.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Idle connections kept per service.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Upstream {
    /// A pool for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            idle: (0..POOLS).map(|_| Pool::default()).collect(),
            streams: (0..POOLS).map(|_| Pool::default()).collect(),
        }
    }

    fn checkout(&self) -> Option<Conn> {
        checkout_from(&self.idle, Conn::is_alive)
    }

    fn checkin(&self, conn: Conn) {
        checkin_to(&self.idle, conn);
    }

    async fn connect(&self) -> Result<Conn, UpstreamError> {
        let (sender, driver) = open(&self.endpoint, Upgrades::No).await?;
        Ok(Conn {
            sender,
            driver,
            idle_since: Instant::now(),
        })
    }

    /// Sends one request and reads the whole answer (at most `limit` bytes). A pooled
    /// connection that turns out closed is replaced, and the request sent again only when
    /// hyper hands it back unsent, so a call is never made twice.
    pub async fn call(
        &self,
        mut req: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), UpstreamError> {
        loop {
            let (conn, fresh) = match self.checkout() {
                Some(conn) => (conn, false),
                None => (self.connect().await?, true),
            };
            let (answer, conn) = exchange(conn, req, limit).await;
            match answer {
                Ok(answer) => {
                    if let Some(conn) = conn {
                        self.checkin(conn);
                    }
                    return Ok(answer);
                }
                Err(Retry::Unsent(back, _)) if !fresh => req = *back,
                Err(Retry::Unsent(_, e)) => return Err(UpstreamError::Http(e)),
                Err(Retry::Failed(e)) => return Err(e),
            }
        }
    }

    /// Sends `req` with its body streamed, and returns the answer as soon as its head
    /// arrives, its body streaming behind. Like [`Upstream::call`], no task is spawned: the
    /// caller's task drives the connection until the head arrives, and then the answer's
    /// body drives it as it is read (the server's connection task polls it). The connection
    /// goes back to the pool when that body has been read to the end and the connection
    /// can take another request; one abandoned half-way is closed. A pooled connection found
    /// closed is replaced, and the request sent again only when it was never sent.
    pub async fn forward(
        &self,
        mut req: Request<Body>,
    ) -> Result<http::Response<Body>, UpstreamError> {
        loop {
            let (conn, fresh) = match self.checkout_stream() {
                Some(conn) => (conn, false),
                None => (self.connect_stream().await?, true),
            };
            let StreamConn {
                mut sender,
                mut driver,
                ..
            } = conn;
            let mut work = Box::pin(send_head(&mut sender, req));
            let first = tokio::select! {
                biased;
                head = &mut work => Ok(head),
                closed = driver.as_mut() => Err(closed),
            };
            let (head, driver) = match first {
                Ok(head) => {
                    drop(work);
                    (head, Some(driver))
                }
                Err(closed) => {
                    if let Err(e) = closed {
                        tracing::trace!(error = %e, "upstream connection ended");
                    }
                    // Dropping the driver makes hyper hand back a request it never sent.
                    drop(driver);
                    (work.await, None)
                }
            };
            match head {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = Body::new(Driven {
                        body,
                        conn: driver.map(|driver| (sender, driver)),
                        upstream: self.clone(),
                    });
                    return Ok(http::Response::from_parts(parts, body));
                }
                Err(Retry::Unsent(back, _)) if !fresh => req = *back,
                Err(Retry::Unsent(_, e)) => return Err(UpstreamError::Http(e)),
                Err(Retry::Failed(e)) => return Err(e),
            }
        }
    }

    /// An idle connection that can take a request now.
    fn checkout_stream(&self) -> Option<StreamConn> {
        checkout_from(&self.streams, StreamConn::is_ready)
    }

    /// Pools a connection whose exchange is complete; one that cannot take another request
    /// now (the app answered before the upload ended, say) is closed instead: nobody would
    /// drive the rest of its upload.
    fn checkin_stream(&self, sender: http1::SendRequest<Body>, driver: Driver) {
        let mut conn = StreamConn {
            sender,
            driver,
            idle_since: Instant::now(),
        };
        if conn.is_ready() {
            checkin_to(&self.streams, conn);
        }
    }

    async fn connect_stream(&self) -> Result<StreamConn, UpstreamError> {
        let (sender, driver) = open::<Body>(&self.endpoint, Upgrades::No).await?;
        Ok(StreamConn {
            sender,
            driver,
            idle_since: Instant::now(),
        })
    }

    /// A fresh connection (not pooled) that can be upgraded, for WebSockets. The caller
    /// spawns the driver.
    pub async fn open_upgradable<B: SendBody>(
        &self,
    ) -> Result<(http1::SendRequest<B>, Driver), UpstreamError> {
        open(&self.endpoint, Upgrades::Yes).await
    }
}

/// A streamed answer's body. Reading it drives its connection (which moves the answer's
/// bytes in, and the rest of an upload out); read to the end, it hands the connection back
/// to the pool.
struct Driven {
    body: hyper::body::Incoming,
    conn: Option<(http1::SendRequest<Body>, Driver)>,
    upstream: Upstream,
}

impl Driven {
    fn finish(&mut self) {
        if let Some((sender, driver)) = self.conn.take() {
            self.upstream.checkin_stream(sender, driver);
        }
    }
}

impl hyper::body::Body for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        if let Some((_, driver)) = &mut self.conn
            && let std::task::Poll::Ready(ended) = driver.as_mut().poll(cx)
        {
            // The connection is done (it delivered what it had, or failed): what it
            // delivered is still read below.
            if let Err(e) = ended {
                tracing::trace!(error = %e, "upstream connection ended");
            }
            self.conn = None;
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Driven {
    /// An answer with no body left (empty, or HEAD) may never be polled: the connection is
    /// still reusable then.
    fn drop(&mut self) {
        if hyper::body::Body::is_end_stream(&self.body) {
            self.finish();
        }
    }
}

/// Sends `req` once the connection is ready, and waits for the answer's head.
async fn send_head(
    sender: &mut http1::SendRequest<Body>,
    req: Request<Body>,
) -> Result<http::Response<hyper::body::Incoming>, StreamRetry> {
    std::future::poll_fn(|cx| sender.poll_ready(cx))
        .await
        .map_err(|e| Retry::Failed(UpstreamError::Http(e)))?;
    sender.try_send_request(req).await.map_err(|mut e| {
        let unsent = e.take_message();
        let error = e.into_error();
        match unsent {
            Some(req) => Retry::Unsent(Box::new(req), error),
            None => Retry::Failed(UpstreamError::Http(error)),
        }
    })
}

enum Retry<B = Full<Bytes>> {
    /// The request was never sent: it may go on another connection.
    Unsent(Box<Request<B>>, hyper::Error),
    Failed(UpstreamError),
}

type Answer = (http::response::Parts, Bytes);

/// One request and its whole answer on `conn`, driving the connection meanwhile. Gives the
/// connection back when it can carry another request.
async fn exchange(
    conn: Conn,
    req: Request<Full<Bytes>>,
    limit: usize,
) -> (Result<Answer, Retry>, Option<Conn>) {
    let Conn {
        mut sender,
        mut driver,
        idle_since,
    } = conn;
    let mut work = Box::pin(send_and_read(&mut sender, req, limit));
    let first = tokio::select! {
        biased;
        answer = &mut work => Ok(answer),
        closed = driver.as_mut() => Err(closed),
    };
    match first {
        Ok(answer) => {
            drop(work);
            let conn = Conn {
                sender,
                driver,
                idle_since,
            };
            (answer, Some(conn))
        }
        Err(closed) => {
            if let Err(e) = closed {
                tracing::trace!(error = %e, "upstream connection ended");
            }
            // The connection ended (the service closed an idle keep-alive connection, say).
            // Dropping its driver makes hyper hand back a request it never sent, so the
            // caller can send it on a new connection; an answer already read still arrives.
            drop(driver);
            (work.await, None)
        }
    }
}

async fn send_and_read(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    limit: usize,
) -> Result<Answer, Retry> {
    std::future::poll_fn(|cx| sender.poll_ready(cx))
        .await
        .map_err(|e| Retry::Failed(UpstreamError::Http(e)))?;
    let resp = match sender.try_send_request(req).await {
        Ok(resp) => resp,
        Err(mut e) => {
            let unsent = e.take_message();
            let error = e.into_error();
            return Err(match unsent {
                Some(req) => Retry::Unsent(Box::new(req), error),
                None => Retry::Failed(UpstreamError::Http(error)),
            });
        }
    };
    let (parts, body) = resp.into_parts();
    let bytes = read_whole(body, limit)
        .await
        .map_err(|_| Retry::Failed(UpstreamError::Body { limit }))?;
    Ok((parts, bytes))
}

/// Reads a whole body of at most `limit` bytes. A body that comes in one piece (a JSON-RPC
/// call or answer nearly always does) is returned as it is, with no copy.
pub(crate) async fn read_whole<B>(body: B, limit: usize) -> Result<Bytes, axum::BoxError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        match (&mut joined, &first) {
            (Some(all), _) => all.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(head)) => {
                let mut all = bytes::BytesMut::with_capacity(head.len() + data.len());
                all.extend_from_slice(head);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
        }
    }
    Ok(match joined {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// A request body hyper can send to a service.
pub trait SendBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}

impl<B> SendBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// Whether a connection may switch protocols (WebSockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrades {
    Yes,
    No,
}

/// Connects to `endpoint` and does the HTTP/1 handshake: over its socket or over TCP (with
/// `TCP_NODELAY`), one code path for the pool, readiness probes and WebSockets.
async fn open<B: SendBody>(
    endpoint: &Endpoint,
    upgrades: Upgrades,
) -> Result<(http1::SendRequest<B>, Driver), UpstreamError> {
    async fn over<S, B>(
        io: S,
        upgrades: Upgrades,
    ) -> Result<(http1::SendRequest<B>, Driver), UpstreamError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        B: SendBody,
    {
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(UpstreamError::Http)?;
        let driver: Driver = match upgrades {
            Upgrades::Yes => Box::pin(conn.with_upgrades()),
            Upgrades::No => Box::pin(conn),
        };
        Ok((sender, driver))
    }
    match endpoint {
        Endpoint::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(UpstreamError::Connect)?;
            over(stream, upgrades).await
        }
        Endpoint::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(UpstreamError::Connect)?;
            stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
            over(stream, upgrades).await
        }
    }
}

/// Sends `HEAD /` once on a fresh connection and returns the status, or None when nothing
/// answers. Used for readiness.
pub async fn probe_head(endpoint: &Endpoint) -> Option<http::StatusCode> {
    let (mut sender, driver) = open(endpoint, Upgrades::No).await.ok()?;
    let driver = tokio::spawn(driver);
    let req = Request::head("/")
        .header(http::header::HOST, "localhost")
        .body(Body::empty())
        .ok()?;
    let status = sender.send_request(req).await.ok().map(|r| r.status());
    driver.abort();
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A body that delivers `pieces` as data frames, then a trailers frame.
    fn body_of(
        pieces: &[&'static str],
    ) -> impl hyper::body::Body<Data = Bytes, Error = std::convert::Infallible> {
        let mut frames: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = pieces
            .iter()
            .map(|p| Ok(hyper::body::Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        frames.push(Ok(hyper::body::Frame::trailers(http::HeaderMap::new())));
        http_body_util::StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn whole_bodies_are_read_in_one_piece_or_many() {
        for pieces in [&[][..], &["{}"], &["{\"a\"", ":", "", "1}"], &["", "x"]] {
            let got = read_whole(body_of(pieces), 100).await.unwrap();
            assert_eq!(got, pieces.concat(), "{pieces:?}");
        }
        let one = Bytes::from_static(b"no copy");
        let got = read_whole(Full::new(one.clone()), 100).await.unwrap();
        assert_eq!(
            got.as_ptr(),
            one.as_ptr(),
            "a body in one piece is not copied"
        );

        assert!(
            read_whole(body_of(&["12345", "6"]), 5).await.is_err(),
            "over the limit"
        );
        assert_eq!(
            read_whole(body_of(&["12", "345"]), 5).await.unwrap(),
            "12345"
        );
    }

    /// A server that answers one request per connection with a keep-alive response, then
    /// closes the connection after `linger` (what Node does to idle connections after 5 s).
    async fn closing_server(path: PathBuf, linger: Duration) {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                let body = r#"{"jsonrpc":"2.0","id":1,"result":true}"#;
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(body.as_bytes()).await.unwrap();
                tokio::time::sleep(linger).await;
            });
        }
    }

    fn request() -> Request<Full<Bytes>> {
        Request::post("/rpc")
            .header(http::header::HOST, "localhost")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    }

    #[tokio::test]
    async fn a_pooled_connection_the_service_closed_is_replaced_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        tokio::spawn(closing_server(path.clone(), Duration::from_millis(20)));
        while !path.exists() {
            tokio::task::yield_now().await;
        }
        let upstream = Upstream::new(Endpoint::Unix(path));
        let (_, body) = upstream.call(request(), 1 << 20).await.unwrap();
        assert!(body.starts_with(b"{\"jsonrpc\""));
        // Let the server close the now idle connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second =
            tokio::time::timeout(Duration::from_secs(5), upstream.call(request(), 1 << 20))
                .await
                .expect("the call must not wait on a closed connection");
        assert!(second.is_ok(), "{second:?}");
    }

    /// A keep-alive server answering every request on a connection; counts connections.
    async fn keep_alive_server(path: PathBuf, accepted: Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                // Each test request arrives in one read (small, and sent only after the
                // previous answer).
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let body = "{}";
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if stream
                        .write_all(format!("{head}{body}").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    }

    #[tokio::test]
    async fn sequential_calls_reuse_one_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(keep_alive_server(path.clone(), accepted.clone()));
        while !path.exists() {
            tokio::task::yield_now().await;
        }
        let upstream = Upstream::new(Endpoint::Unix(path));
        for _ in 0..5 {
            upstream.call(request(), 1 << 20).await.unwrap();
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
