//! HTTP to a service, over its Unix socket or its TCP port, with pooled keep-alive
//! connections.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

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

/// A connector that ignores the URI's authority and dials one Unix socket.
#[derive(Debug, Clone)]
struct UnixConnector(Arc<PathBuf>);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(&*path).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Unix(Client<UnixConnector, Body>),
    Tcp(Client<HttpConnector, Body>),
}

/// A pooled HTTP client for one service.
#[derive(Debug, Clone)]
pub struct Upstream {
    endpoint: Endpoint,
    pool: Pool,
}

impl Upstream {
    /// A client for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(128);
        let pool = match &endpoint {
            Endpoint::Unix(path) => {
                Pool::Unix(builder.build(UnixConnector(Arc::new(path.clone()))))
            }
            Endpoint::Tcp(_) => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                Pool::Tcp(builder.build(http))
            }
        };
        Self { endpoint, pool }
    }

    /// Where it connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The absolute URI for `path_and_query` on this service.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let authority = match &self.endpoint {
            Endpoint::Unix(_) => "localhost".to_owned(),
            Endpoint::Tcp(addr) => addr.to_string(),
        };
        Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
    }

    /// Sends one request (its URI made by [`Upstream::uri`]).
    pub async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match &self.pool {
            Pool::Unix(c) => c.request(req).await,
            Pool::Tcp(c) => c.request(req).await,
        }
    }

    /// Opens a fresh connection (not pooled), for upgrades.
    pub async fn connect_raw(&self) -> std::io::Result<RawStream> {
        Ok(match &self.endpoint {
            Endpoint::Unix(p) => RawStream::Unix(tokio::net::UnixStream::connect(p).await?),
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                RawStream::Tcp(s)
            }
        })
    }
}

/// A single connection to a service.
#[derive(Debug)]
pub enum RawStream {
    /// Over its socket.
    Unix(tokio::net::UnixStream),
    /// Over TCP.
    Tcp(tokio::net::TcpStream),
}

/// Sends `HEAD /` once on a fresh connection and returns the status, or None when nothing
/// answers. Used for readiness.
pub async fn probe_head(endpoint: &Endpoint) -> Option<http::StatusCode> {
    async fn over<S>(io: S) -> Option<http::StatusCode>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .ok()?;
        let driver = tokio::spawn(conn);
        let req = Request::head("/")
            .header(http::header::HOST, "localhost")
            .body(Body::empty())
            .ok()?;
        let status = sender.send_request(req).await.ok().map(|r| r.status());
        driver.abort();
        status
    }
    match endpoint {
        Endpoint::Unix(p) => over(tokio::net::UnixStream::connect(p).await.ok()?).await,
        Endpoint::Tcp(a) => over(tokio::net::TcpStream::connect(a).await.ok()?).await,
    }
}
