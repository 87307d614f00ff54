//! `gateway`: a local HTTP server that maps `{key}.{domain}` to that peer's exposed port
//! (Spork's `gateway`). Bodies stream both ways; WebSockets (any HTTP upgrade) are carried
//! through once the peer agrees to the upgrade.
//!
//! The key is the 52-character base32 form, which fits a DNS label; `{name}.{key}.{domain}`
//! reaches the same peer (a home's app, say). Requests go to the peer unchanged (their
//! `Host` too), each on a stream of one QUIC connection per peer. Answers
//! of the gateway itself: a host without a key gets a short page saying how to use it (200);
//! a label that is not a key, 404; a peer that cannot be reached, 502.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use atek_core::PublicKey;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::bind::Link;
use crate::{NetError, Node};

type Body = BoxBody<Bytes, hyper::Error>;

/// The gateway's shared state: the node, the domain, a link per peer.
#[derive(Debug)]
struct Gateway {
    node: Node,
    domain: String,
    port: u16,
    links: Mutex<HashMap<PublicKey, Arc<Link>>>,
}

/// Serves the gateway on `listener` for hosts `{key}.{domain}` until the listener fails.
pub async fn serve(node: &Node, listener: TcpListener, domain: &str) -> Result<(), NetError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let gateway = Arc::new(Gateway {
        node: node.clone(),
        domain: domain.trim_matches('.').to_ascii_lowercase(),
        port,
        links: Mutex::new(HashMap::new()),
    });
    loop {
        let (tcp, _) = listener.accept().await.map_err(|e| NetError::Io {
            what: "accepting a gateway connection",
            source: e,
        })?;
        let _ = tcp.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let gateway = Arc::clone(&gateway);
                async move { Ok::<_, Infallible>(gateway.handle(req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::trace!(error = %e, "gateway connection ended");
            }
        });
    }
}

impl Gateway {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("");
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        // `{key}.{domain}`, or `{name}.{key}.{domain}` for a name under the peer (an app of
        // a home): the key is the label just before the domain.
        let label = name
            .to_ascii_lowercase()
            .strip_suffix(&format!(".{}", self.domain))
            .and_then(|prefix| prefix.rsplit('.').next().map(str::to_owned));
        let Some(label) = label.filter(|l| !l.is_empty()) else {
            return text(
                StatusCode::OK,
                format!(
                    "Atek gateway: reach a peer at http://{{key}}.{}:{}/, {{key}} being its 52-character key.\n",
                    self.domain, self.port
                ),
            );
        };
        let key: PublicKey = match label.parse() {
            Ok(key) => key,
            Err(_) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("Subdomain is not a public key: {label}\n"),
                );
            }
        };
        match self.forward(key, req).await {
            Ok(response) => response,
            Err(e) => text(
                StatusCode::BAD_GATEWAY,
                format!("Failed to route request to {key}: {e}\n"),
            ),
        }
    }

    fn link(&self, key: PublicKey) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            links
                .entry(key)
                .or_insert_with(|| Arc::new(Link::new(self.node.clone(), key.into()))),
        )
    }

    async fn forward(
        &self,
        key: PublicKey,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, String> {
        let (send, recv) = self.link(key).open().await.map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tokio::io::join(recv, send)))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::trace!(error = %e, "gateway upstream connection ended");
            }
        });
        let wants_upgrade = req.headers().contains_key(header::UPGRADE);
        let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
        let mut response = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let peer_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, peer_upgrade) {
                    Ok((client, peer)) => {
                        let (mut client, mut peer) = (TokioIo::new(client), TokioIo::new(peer));
                        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut peer).await
                        {
                            tracing::trace!(error = %e, "gateway upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "gateway upgrade failed"),
                }
            });
        }
        Ok(response.map(BodyExt::boxed))
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
