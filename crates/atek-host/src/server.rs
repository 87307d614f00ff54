//! The HTTP server: event loops, connections, and the router of the host's own domain.
//! Requests are placed by host name first ([`crate::web::handle`]): an app's subdomain
//! never reaches this router. On the host's domain, paths under `/_atek/` are the host's;
//! everything else is the user's main service.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

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

/// Serves HTTP on `threads` event loops, nginx style: the calling task's runtime is the
/// first, each other is a thread with a single-threaded runtime of its own, and all accept
/// from the same listening socket. A connection, and every upstream connection opened for
/// it, stays on one thread, so no request pays for work stealing or cross-thread wakeups.
/// Returns once `cancel` fired and every thread drained its connections.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    site: Site,
    cancel: tokio_util::sync::CancellationToken,
    threads: usize,
) {
    // Each thread registers its own copy of the socket with its own event loop.
    let shared = match listener.into_std() {
        Ok(std) => std,
        Err(e) => return tracing::error!(error = %e, "cannot take over the listening socket"),
    };
    let mut joins = Vec::new();
    for index in 1..threads.max(1) {
        let clone = match shared.try_clone() {
            Ok(clone) => clone,
            Err(e) => {
                tracing::warn!(error = %e, "cannot share the listening socket; serving on fewer threads");
                break;
            }
        };
        let site = site.clone();
        let cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("atek-http-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "cannot start an HTTP thread"),
                };
                crate::upstream::set_thread_index(index);
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(clone) {
                        Ok(listener) => accept_loop(listener, site, cancel).await,
                        Err(e) => tracing::error!(error = %e, "cannot listen on an HTTP thread"),
                    }
                });
            });
        match spawned {
            Ok(join) => joins.push(join),
            Err(e) => tracing::warn!(error = %e, "cannot start an HTTP thread"),
        }
    }
    let listener = match tokio::net::TcpListener::from_std(shared) {
        Ok(listener) => listener,
        Err(e) => return tracing::error!(error = %e, "cannot listen"),
    };
    accept_loop(listener, site, cancel).await;
    for join in joins {
        let _ = tokio::task::spawn_blocking(move || join.join()).await;
    }
}

/// Accepts connections until `cancel` fires, then lets open ones finish their current
/// request. HTTP/1.1 only (what Atek's clients speak), with upgrades for WebSockets, and
/// `TCP_NODELAY` so a small response is never held back waiting for an ACK.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    site: Site,
    cancel: tokio_util::sync::CancellationToken,
) {
    use hyper_util::rt::TokioIo;

    let builder = http1_builder();
    let connections = tokio_util::task::TaskTracker::new();
    tokio::spawn(keep_a_timer_ahead(cancel.clone()));
    loop {
        let stream = tokio::select! {
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
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let service = {
            let site = site.clone();
            let peer = peer.ip();
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let site = site.clone();
                // Only a request that came over p2p names a caller's key.
                crate::p2p::strip_caller(req.headers_mut());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        web::handle(site.state, site.router, req, peer).await,
                    )
                }
            })
        };
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let cancel = cancel.clone();
        connections.spawn(async move {
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
        });
    }
    connections.close();
    connections.wait().await;
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
                    web::handle(site.state, site.router, req, ip).await,
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
