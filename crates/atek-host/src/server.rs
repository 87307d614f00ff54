//! The HTTP server: event loops, connections, and the router of the host's own domain.
//! Requests are placed by host name first ([`crate::web::handle`]): an app's subdomain
//! never reaches this router. On the host's domain, paths under `/_atek/` are the host's;
//! everything else is the user's main service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::mpsc;

use crate::host::HostState;
use crate::{gateway, web};

/// What serves requests: the state for subdomains and the router for the host's domain.
#[derive(Clone)]
pub(crate) struct Site {
    state: Arc<HostState>,
    router: Router,
}

/// Where the gateway answers.
const GATEWAY_PATHS: [&str; 2] = ["/_atek/gateway", "/_atek/gateway/"];

/// Whether `path` is the gateway's.
pub(crate) fn is_gateway_path(path: &str) -> bool {
    GATEWAY_PATHS.contains(&path)
}

/// The host's routes.
pub(crate) fn site(state: Arc<HostState>) -> Site {
    // `web::handle` serves POST (JSON-RPC) before the router; the route stays so that a
    // 405 to another method names every method the gateway takes.
    let gateway = post(gateway::rpc::handle)
        .get(gateway::proxy::handle)
        .options(gateway::preflight);
    let login = get(|| async { web::pages::own_page(&web::pages::LOGIN) });
    let router = Router::new()
        .route(GATEWAY_PATHS[0], gateway.clone())
        .route(GATEWAY_PATHS[1], gateway)
        .route("/_atek/login", login.clone())
        .route("/_atek/login/", login)
        .route(
            "/_atek/setup",
            get(web::setup::page).post(web::setup::create),
        )
        .route("/_atek/bind-session", get(web::apps::bind_session))
        .fallback(web::apps::main_service)
        .with_state(state.clone());
    Site { state, router }
}

/// Serves HTTP on `threads` event loops: the calling task's runtime is the first, and each
/// other is a thread with a single-threaded runtime of its own. The first accepts every
/// connection and hands it to the loop with the fewest open connections. A connection, and
/// every upstream connection opened for it, stays on its loop, so no request pays for work
/// stealing or cross-thread wakeups.
///
/// Handing connections out, rather than letting every loop accept from the socket, keeps
/// the loops evenly loaded: a loop that accepts a burst of connections (a browser opening
/// six, a client opening 32) takes them all before the others wake, and then serves them
/// on one core while the others idle. Measured with 32 connections on 2 cores, that was a
/// fifth of the throughput lost on about half of the runs.
///
/// Returns once `cancel` fired and every loop drained its connections.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    site: Site,
    cancel: tokio_util::sync::CancellationToken,
    threads: usize,
) {
    let mut loops = vec![Loop::default()];
    let mut joins = Vec::new();
    for index in 1..threads.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            incoming: rx,
            site: site.clone(),
            cancel: cancel.clone(),
            open: open.clone(),
        };
        // Built here, so that a loop joins only once it can run.
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start an HTTP thread");
                continue;
            }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("atek-http-{index}"))
            .spawn(move || {
                crate::upstream::set_thread_index(index);
                runtime.block_on(worker.run());
            });
        match spawned {
            Ok(join) => {
                joins.push(join);
                loops.push(Loop {
                    hand_to: Some(tx),
                    open,
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot start an HTTP thread"),
        }
    }

    let builder = http1_builder();
    let connections = tokio_util::task::TaskTracker::new();
    tokio::spawn(keep_a_timer_ahead(cancel.clone()));
    let site = Arc::new(site);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let index = least_busy(&loops);
        let stream = match &loops[index].hand_to {
            None => stream,
            Some(tx) => {
                let std = match stream.into_std() {
                    Ok(std) => std,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hand a connection to another thread");
                        continue;
                    }
                };
                loops[index].open.fetch_add(1, Ordering::Relaxed);
                let Err(mpsc::error::SendError((std, _))) = tx.send((std, peer)) else {
                    continue;
                };
                // That loop's thread is gone: this loop serves its share from now on.
                tracing::warn!("an HTTP thread stopped; its connections go to another");
                loops.remove(index);
                match tokio::net::TcpStream::from_std(std) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take back a connection");
                        continue;
                    }
                }
            }
        };
        let open = loops[0].open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        connections.spawn(serve_connection(
            &builder,
            stream,
            peer,
            site.clone(),
            cancel.clone(),
            open,
        ));
    }
    // Closing the channels tells the other loops that no more connections are coming.
    drop(loops);
    connections.close();
    connections.wait().await;
    for join in joins {
        let _ = tokio::task::spawn_blocking(move || join.join()).await;
    }
}

/// The loop with the fewest open connections (the first of those tied).
fn least_busy(loops: &[Loop]) -> usize {
    loops
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| l.open.load(Ordering::Relaxed))
        .map_or(0, |(index, _)| index)
}

/// A connection handed to another loop, with its client's address.
type Handed = (std::net::TcpStream, SocketAddr);

/// An event loop as the accepting loop sees it.
#[derive(Default)]
struct Loop {
    /// Where to send it connections; None for the accepting loop itself.
    hand_to: Option<mpsc::UnboundedSender<Handed>>,
    /// Its open connections.
    open: Arc<AtomicUsize>,
}

/// An event loop on a thread of its own, serving the connections it is handed.
struct Worker {
    incoming: mpsc::UnboundedReceiver<Handed>,
    site: Site,
    cancel: tokio_util::sync::CancellationToken,
    open: Arc<AtomicUsize>,
}

impl Worker {
    /// Serves connections until the accepting loop stops handing them out, then lets open
    /// ones finish their current request.
    async fn run(mut self) {
        let builder = http1_builder();
        let connections = tokio_util::task::TaskTracker::new();
        tokio::spawn(keep_a_timer_ahead(self.cancel.clone()));
        // This loop's own copy: see `serve_connection`.
        let site = Arc::new(self.site.clone());
        while let Some((std, peer)) = self.incoming.recv().await {
            match tokio::net::TcpStream::from_std(std) {
                Ok(stream) => {
                    connections.spawn(serve_connection(
                        &builder,
                        stream,
                        peer,
                        site.clone(),
                        self.cancel.clone(),
                        self.open.clone(),
                    ));
                }
                Err(e) => {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "cannot take over a connection");
                }
            }
        }
        connections.close();
        connections.wait().await;
    }
}

/// Serves one connection (HTTP/1.1 only, what Atek's clients speak, with upgrades for
/// WebSockets) until it ends, or until `cancel` fires and its current request is answered.
/// `open` counts it while it lasts (the caller counted it in).
///
/// `site` is the loop's own `Arc`: every request clones it, and a reference count that
/// only this loop's thread writes stays in its CPU's cache. Cloning the shared
/// `Arc<HostState>` and router per request instead made every call pay for cache lines
/// bouncing between the CPUs of the loops.
fn serve_connection(
    builder: &hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    site: Arc<Site>,
    cancel: tokio_util::sync::CancellationToken,
    open: Arc<AtomicUsize>,
) -> impl std::future::Future<Output = ()> + 'static {
    use hyper_util::rt::TokioIo;

    let peer = peer.ip();
    let held = OpenConnection::new(open);
    let for_upgrades = held.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let site = site.clone();
            // Only a request that came over p2p names a caller's key.
            crate::p2p::strip_caller(req.headers_mut());
            if req.headers().contains_key(http::header::UPGRADE) {
                // A WebSocket outlives this connection's task: whatever carries it on
                // holds the count (see `gateway::proxy::splice`).
                req.extensions_mut().insert(for_upgrades.clone());
            }
            async move {
                Ok::<_, std::convert::Infallible>(
                    web::handle(&site.state, &site.router, req, peer).await,
                )
            }
        });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    async move {
        let _held = held;
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(error = %e, "connection ended");
                }
                return;
            }
            _ = cancel.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        let _ = conn.await;
    }
}

/// Keeps a connection counted in its loop's open connections while it lives: held by the
/// connection's task and, once it switched protocols (a WebSocket), by the task that
/// carries it on.
#[derive(Clone)]
pub(crate) struct OpenConnection {
    /// Only dropped, never read.
    _counted: Arc<Counted>,
}

impl OpenConnection {
    fn new(open: Arc<AtomicUsize>) -> Self {
        Self {
            _counted: Arc::new(Counted(open)),
        }
    }
}

/// Counts a connection out of its loop's open connections when dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers HTTP/1.1 (with upgrades for WebSockets) on a stream a p2p peer opened, as on a
/// TCP connection, naming the caller's key on every request (see [`crate::p2p`]).
pub(crate) async fn serve_p2p_stream(
    site: Site,
    home: atek_core::PublicKey,
    peer: atek_core::PublicKey,
    stream: atek_net::bind::PeerStream,
) {
    use hyper_util::rt::TokioIo;

    let ip = crate::p2p::caller_ip(&peer);
    let site = Arc::new(site);
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let site = site.clone();
            crate::p2p::name_caller(req.headers_mut(), &peer);
            let domain = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| crate::p2p::HomeDomain::of(h, &home));
            if let Some(domain) = domain {
                req.extensions_mut().insert(domain);
            }
            async move {
                Ok::<_, std::convert::Infallible>(
                    web::handle(&site.state, &site.router, req, ip).await,
                )
            }
        });
    if let Err(e) = http1_builder()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::trace!(error = %e, %peer, "p2p HTTP connection ended");
    }
}

/// How long a client has to send a request's head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How the host speaks HTTP/1.1 on every connection, TCP or p2p: a client has
/// [`HEADER_READ_TIMEOUT`] to send a request's head.
fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
}

/// Keeps a timer on this event loop that is always due sooner than a request's timeouts.
///
/// tokio wakes its own event loop (an eventfd write, then one more `epoll_wait`) whenever a
/// timer is set that is due before every other timer of that loop, so that the loop's
/// sleep can be shortened. hyper sets the header read timeout as each request starts, and
/// on a loop with nothing due sooner every request paid for that wake-up. With this timer
/// due at most two thirds of [`HEADER_READ_TIMEOUT`] ahead, none of them is ever the
/// soonest. It costs one wake-up per 20 s per event loop.
async fn keep_a_timer_ahead(cancel: tokio_util::sync::CancellationToken) {
    let tick = HEADER_READ_TIMEOUT * 2 / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_busy_loop() {
        let loops: Vec<Loop> = (0..3).map(|_| Loop::default()).collect();
        let mut chosen = Vec::new();
        // A burst of connections spreads evenly.
        for _ in 0..6 {
            let index = least_busy(&loops);
            loops[index].open.fetch_add(1, Ordering::Relaxed);
            chosen.push(index);
        }
        assert_eq!(chosen, [0, 1, 2, 0, 1, 2]);
        // A loop whose connections ended gets the next ones.
        loops[1].open.store(0, Ordering::Relaxed);
        assert_eq!(least_busy(&loops), 1);
        assert_eq!(least_busy(&[Loop::default()]), 0);
    }

    #[test]
    fn an_upgraded_connection_stays_counted_until_its_carrier_ends() {
        let open = Arc::new(AtomicUsize::new(1));
        let held = OpenConnection::new(open.clone());
        let carrier = held.clone();
        drop(held); // the connection's task ended at the upgrade
        assert_eq!(open.load(Ordering::Relaxed), 1, "the WebSocket still runs");
        drop(carrier);
        assert_eq!(open.load(Ordering::Relaxed), 0);
    }
}
