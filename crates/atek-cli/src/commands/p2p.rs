//! The p2p commands that need no host: `atek key`, `atek beam`, `atek bind`,
//! `atek gateway` and `atek serve`.
//!
//! Status goes to stderr, each line starting with `▶` as Spork's did; data (the beam's
//! pipe, the key) goes to stdout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use atek_net::beam::{self, Passphrase};
use atek_net::bind::{self, BindEvent};
use atek_net::keyfile::{self, Origin};
use atek_net::{NetConfig, Node};
use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use stdio::{Counted, Counter};

// A child of this module so that `spork`, which takes this file by its path, has it too.
#[path = "stdio.rs"]
mod stdio;

/// The options every p2p command takes to choose how it reaches the network.
#[derive(Debug, clap::Args)]
pub(crate) struct NetArgs {
    /// A relay to use (repeat for more). Given relays replace the public ones, and no
    /// public address lookup is used then. Without it, `atek` uses config.json's `relays`.
    #[arg(long = "relay", value_name = "URL")]
    relays: Vec<String>,
    /// Trust any TLS certificate from the relays: only for a local relay with a self-signed
    /// certificate, as in tests.
    #[arg(long)]
    relay_insecure: bool,
    /// A PEM file of certificates to trust for the relays' TLS, on top of the public roots
    /// (repeat for more): the one `atek relay --self-signed DIR` made (DIR/cert.pem), or a
    /// private CA's. Without it a relay with such a certificate cannot be used.
    #[arg(long = "relay-ca", value_name = "FILE")]
    relay_ca: Vec<PathBuf>,
    /// The UDP port of the `--relay`s' QUIC address discovery, when not the default.
    #[arg(long, value_name = "PORT", default_value_t = atek_net::relay::DEFAULT_QUIC_PORT)]
    relay_quic_port: u16,
    /// Use no public relay or address lookup (n0's, iroh's defaults), only `--relay`s.
    #[arg(long)]
    no_public: bool,
    /// Do not ask the router for a port mapping (UPnP, NAT-PMP, PCP): for networks where
    /// nothing should talk to the router, and for tests.
    #[arg(long)]
    no_port_mapping: bool,
    /// How long to try reaching the other side, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    timeout: u64,
    /// How long a peer may stay silent before it is taken for gone, in seconds. A peer
    /// that closes is noticed at once; one that vanishes (killed, unplugged) only after
    /// this: then its connections are closed and a beam fails. Quiet live peers are kept
    /// alive well within it.
    #[arg(long, value_name = "SECONDS", default_value_t = atek_net::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
    #[command(flatten)]
    lookup: LookupArgs,
}

/// The lookups by key a p2p command may add (each also publishes this node).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Lookup by key")]
struct LookupArgs {
    /// Announce this node and find peers on the local network with mDNS.
    #[arg(long)]
    mdns: bool,
    /// Publish this node's relay to and find peers on the BitTorrent mainline DHT.
    #[arg(long)]
    dht: bool,
    /// A DHT node to join through instead of the public bootstrap nodes (repeat for more).
    #[arg(long, value_name = "HOST:PORT", requires = "dht")]
    dht_bootstrap: Vec<String>,
    /// A pkarr relay to publish this node's record to, for lookup through DNS (n0's is
    /// `https://dns.iroh.link/pkarr`).
    #[arg(long, value_name = "URL", requires = "dns_origin")]
    pkarr_relay: Option<url::Url>,
    /// The DNS zone the pkarr relay's records are served under (n0's is dns.iroh.link).
    #[arg(long, value_name = "DOMAIN", requires = "pkarr_relay")]
    dns_origin: Option<String>,
    /// The DNS server to ask for those records (IP:PORT), instead of the system's.
    #[arg(long, value_name = "IP:PORT", requires = "pkarr_relay")]
    dns_server: Option<std::net::SocketAddr>,
}

/// The relays a p2p command uses when given no `--relay`: `atek`'s come from config.json
/// (`relays`, `relayCa`); `spork` has none.
#[derive(Debug, Clone)]
pub(crate) struct NetDefaults {
    pub(crate) relays: Vec<String>,
    pub(crate) relay_ca: Vec<PathBuf>,
    /// Used when no lookup flag is given.
    pub(crate) lookup: atek_net::Lookup,
    /// The program the user ran (`atek` or `spork`), for the commands we tell them to run.
    pub(crate) program: &'static str,
    /// Whether to ask the router for a port mapping unless `--no-port-mapping` is given.
    pub(crate) port_mapping: bool,
}

impl Default for NetDefaults {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            relay_ca: Vec::new(),
            lookup: atek_net::Lookup::default(),
            program: "atek",
            port_mapping: true,
        }
    }
}

impl NetArgs {
    fn config(&self, defaults: &NetDefaults) -> anyhow::Result<NetConfig> {
        let (urls, mut relay_ca) = if self.relays.is_empty() {
            (&defaults.relays, defaults.relay_ca.clone())
        } else {
            (&self.relays, Vec::new())
        };
        relay_ca.extend(self.relay_ca.iter().cloned());
        let relays = urls
            .iter()
            .map(|url| {
                let mut relay = NetConfig::parse_relay(url)?;
                relay.quic = Some(atek_net::iroh::RelayQuicConfig::new(self.relay_quic_port));
                Ok::<_, atek_net::NetError>(relay)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetConfig {
            relays,
            insecure_relay_tls: self.relay_insecure,
            relay_ca,
            public: !self.no_public,
            port_mapping: !self.no_port_mapping && defaults.port_mapping,
            connect_timeout: Duration::from_secs(self.timeout.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
            lookup: self
                .lookup
                .to_lookup()?
                .unwrap_or_else(|| defaults.lookup.clone()),
            ..NetConfig::default()
        })
    }
}

impl LookupArgs {
    /// The lookups the flags ask for, or `None` when no lookup flag is given: the flags
    /// are config.json's `lookup` fields, turned into lookups the same way.
    fn to_lookup(&self) -> anyhow::Result<Option<atek_net::Lookup>> {
        if !(self.mdns || self.dht || self.pkarr_relay.is_some()) {
            return Ok(None);
        }
        let config = atek_host::config::LookupConfig {
            mdns: self.mdns,
            dht: self.dht,
            dht_bootstrap: self.dht_bootstrap.clone(),
            pkarr_relay: self.pkarr_relay.clone(),
            dns_origin: self.dns_origin.clone(),
            dns_server: self.dns_server,
        };
        config.to_lookup().map(Some).map_err(|e| BadUsage(e).into())
    }
}

/// With `ATEK_LOG` set (a tracing filter such as `debug` or `iroh=debug`), logs what the
/// p2p layer does to stderr, among the status lines; without it, only the status lines.
fn log_if_asked() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("ATEK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// `atek key`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    /// The keyfile (created if missing) [default: `atek`: node.key in the config dir, the
    /// host's own key; `spork`: ./spork.key].
    #[arg(short = 'k', long = "keyfile", value_name = "FILE")]
    keyfile: Option<PathBuf>,
    /// Print `{"publicKey": "…"}` instead of the key and its QR code.
    #[arg(long)]
    json: bool,
}

/// `atek beam`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "With no passphrase, a new one is made and the command to run on the other machine is printed. Exit codes: 0 the pipe ended in both directions, 1 it failed (peer unreachable or gone), 2 bad usage (a malformed passphrase), 130 interrupted."
)]
pub(crate) struct BeamArgs {
    /// The passphrase the other side printed: connect to it.
    passphrase: Option<String>,
    /// Wait for the other side with the given passphrase instead of connecting (to restart
    /// the side that made it).
    #[arg(short = 'r', long = "reuse", requires = "passphrase")]
    reuse: bool,
    #[command(flatten)]
    net: NetArgs,
}

/// `atek bind`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "With KEY: listen on localhost:PORT and carry each connection to that peer's exposed port. Without KEY: expose HOST:PORT under this node's key (-k KEYFILE for a key that stays the same). Exit codes: 0 stopped with Ctrl-C, 1 failed (port in use, peer unreachable), 2 bad usage."
)]
pub(crate) struct BindArgs {
    /// The key of the peer whose exposed port to reach.
    key: Option<String>,
    /// With KEY, the local port to listen on (random when left out); without KEY, the port
    /// to expose.
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// The host whose port is exposed (without KEY).
    #[arg(long, default_value = "localhost", conflicts_with = "key")]
    host: String,
    /// The keyfile of this node (created if missing); a temporary key otherwise.
    #[arg(short = 'k', long = "keyfile", value_name = "FILE")]
    keyfile: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
}

/// `atek gateway`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "A browser at http://{key}.{domain}:{port}/ reaches that peer's exposed port (atek bind -p, atek serve, or a home with p2p on); *.localhost names reach this machine in browsers without any DNS set-up. Exit codes: 0 stopped with Ctrl-C, 1 failed (port in use), 2 bad usage."
)]
pub(crate) struct GatewayArgs {
    /// The port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 8080)]
    port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    listen: std::net::IpAddr,
    /// The domain under which keys are subdomains.
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// The keyfile of this node (created if missing); a temporary key otherwise.
    #[arg(short = 'k', long = "keyfile", value_name = "FILE")]
    keyfile: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
}

pub(crate) async fn gateway(defaults: NetDefaults, args: GatewayArgs) -> anyhow::Result<()> {
    log_if_asked();
    let config = args.net.config(&defaults)?;
    let key = node_key(args.keyfile.as_deref())?;
    let listener = tokio::net::TcpListener::bind((args.listen, args.port))
        .await
        .map_err(|e| port_error(args.port, e))?;
    let local = listener.local_addr().context("reading the local port")?;
    let node = Node::bind(&key, &[], &config).await?;
    status("Spork powers ACTIVATED");
    status(&format!(
        "Gateway listening on http://{}:{} for http://{{key}}.{}:{}/",
        local.ip(),
        local.port(),
        args.domain,
        local.port()
    ));
    let work = async {
        atek_net::gateway::serve(&node, listener, &args.domain).await?;
        Ok(())
    };
    stopped("gateway", until_interrupted(&node, work).await)
}

/// `atek serve`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The folder is served on http://localhost:PORT/ and to peers by this node's key (atek bind KEY, atek gateway). Files whose path has a part starting with `.git` are never served. Exit codes: 0 stopped with Ctrl-C, 1 failed (port in use, no such folder), 2 bad usage."
)]
pub(crate) struct ServeArgs {
    /// The folder to serve.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The local port (random when left out).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// The keyfile of this node (created if missing); a temporary key otherwise.
    #[arg(short = 'k', long = "keyfile", value_name = "FILE")]
    keyfile: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
}

type ServeBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::io::Error>;

/// Answers one request from `dir`: a file, a folder's index.html, 404; `.git` is hidden
/// (redirected to `/`, as Spork did).
async fn serve_file(
    dir: std::sync::Arc<tower_http::services::ServeDir>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<ServeBody>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    if req
        .uri()
        .path()
        .split('/')
        .any(|part| part.starts_with(".git"))
    {
        let mut response = http::Response::new(
            http_body_util::Empty::new()
                .map_err(|never: std::convert::Infallible| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = http::StatusCode::FOUND;
        response
            .headers_mut()
            .insert(http::header::LOCATION, http::HeaderValue::from_static("/"));
        return Ok(response);
    }
    let response = (*dir).clone().oneshot(req).await;
    let response = match response {
        Ok(response) => response,
        Err(never) => match never {},
    };
    Ok(response.map(|body| body.boxed_unsync()))
}

/// Serves HTTP/1.1 from `files` on one connection, local or p2p.
async fn serve_connection<I>(files: std::sync::Arc<tower_http::services::ServeDir>, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |req| serve_file(std::sync::Arc::clone(&files), req));
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await
    {
        tracing::trace!(error = %e, "serve connection ended");
    }
}

/// Serves `files` on every connection `listener` accepts, until accepting fails.
async fn serve_local(
    listener: tokio::net::TcpListener,
    files: std::sync::Arc<tower_http::services::ServeDir>,
) -> anyhow::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await.context("accepting a connection")?;
        let io = hyper_util::rt::TokioIo::new(tcp);
        tokio::spawn(serve_connection(std::sync::Arc::clone(&files), io));
    }
}

pub(crate) async fn serve(defaults: NetDefaults, args: ServeArgs) -> anyhow::Result<()> {
    log_if_asked();
    use hyper_util::rt::TokioIo;

    if !args.dir.is_dir() {
        anyhow::bail!(
            "{} is not a folder: give the folder to serve",
            args.dir.display()
        );
    }
    let config = args.net.config(&defaults)?;
    let key = node_key(args.keyfile.as_deref())?;
    let port = args.port.unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| port_error(port, e))?;
    let local = listener.local_addr().context("reading the local port")?;
    let node = Node::bind(&key, &[bind::ALPN], &config).await?;
    let files = std::sync::Arc::new(
        tower_http::services::ServeDir::new(&args.dir).append_index_html_on_directories(true),
    );
    status("Spork powers ACTIVATED");
    status(&format!(
        "Serving {} on http://localhost:{}/",
        args.dir.display(),
        local.port()
    ));
    status(&format!(
        "To peers as {} ({} bind {} -p PORT)",
        node.key(),
        defaults.program,
        node.key()
    ));

    let p2p = {
        let files = std::sync::Arc::clone(&files);
        let serve = move |_peer, stream| {
            serve_connection(std::sync::Arc::clone(&files), TokioIo::new(stream))
        };
        bind::serve_streams(&node, serve, None)
    };
    let local_loop = serve_local(listener, std::sync::Arc::clone(&files));
    let work = async {
        tokio::select! {
            result = p2p => result.map_err(anyhow::Error::from),
            result = local_loop => result,
        }
    };
    stopped("serve", until_interrupted(&node, work).await)
}

/// This node's key: the keyfile's, or a temporary one (said so).
fn node_key(keyfile: Option<&Path>) -> anyhow::Result<atek_core::SecretKey> {
    match keyfile {
        Some(path) => read_keyfile(path),
        None => {
            let key = atek_core::SecretKey::generate();
            status(&format!(
                "Created temporary keypair, public key: {}",
                key.public()
            ));
            Ok(key)
        }
    }
}

pub(crate) async fn bind(defaults: NetDefaults, args: BindArgs) -> anyhow::Result<()> {
    log_if_asked();
    let config = args.net.config(&defaults)?;
    let key = node_key(args.keyfile.as_deref())?;
    let result = match &args.key {
        Some(peer) => {
            let peer: atek_core::PublicKey = peer.parse().map_err(|e| {
                BadUsage(format!(
                    "'{peer}' is not a peer key ({e}); give the 52-character key the other side printed"
                ))
            })?;
            let port = args.port.unwrap_or(0);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| port_error(port, e))?;
            let local = listener.local_addr().context("reading the local port")?;
            let node = Node::bind(&key, &[], &config).await?;
            status(&format!("Connecting to {peer}..."));
            let work = async {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let printer = tokio::spawn(print_bind_events(rx, move |event| match event {
                    BindEvent::Connect(_) => {
                        status("Spork powers ACTIVATED");
                        format!("Forwarding http://localhost:{} -> {peer}", local.port())
                    }
                    event => bind_event_line(event),
                }));
                let result = bind::forward(&node, peer.into(), listener, Some(tx)).await;
                // Every status line is out before the error that ends the command.
                let _ = printer.await;
                result.map_err(anyhow::Error::from)
            };
            until_interrupted(&node, work).await
        }
        None => {
            let Some(port) = args.port else {
                return Err(BadUsage(
                    "give the port to expose with -p PORT, or a peer KEY to reach".to_owned(),
                )
                .into());
            };
            let node = Node::bind(&key, &[bind::ALPN], &config).await?;
            let work = async {
                if !node.online().await {
                    status("Could not reach a relay yet; peers on this network can still connect");
                }
                let target = format!("{}:{port}", args.host);
                status("Spork powers ACTIVATED");
                status(&format!("Exposing {target} as {}", node.key()));
                status(&format!(
                    "On another machine: {} bind {} -p PORT",
                    defaults.program,
                    node.key()
                ));
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let printer = tokio::spawn(print_bind_events(rx, bind_event_line));
                let result = bind::expose(&node, target, Some(tx)).await;
                let _ = printer.await;
                result.map_err(anyhow::Error::from)
            };
            until_interrupted(&node, work).await
        }
    };
    stopped("bind", result)
}

/// How a command that runs until Ctrl-C (`bind`, `gateway`, `serve`) ends: Ctrl-C is a
/// normal stop (exit code 0), an error is said before it is returned.
fn stopped(command: &str, result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            status(&format!("Shutting down {command}..."));
            Ok(())
        }
        Err(e) => {
            status(&format!("Error: {e}"));
            Err(e)
        }
        Ok(()) => Ok(()),
    }
}

/// Prints `events` as status lines, each as `line` words it, until the sender is gone.
async fn print_bind_events(
    mut events: tokio::sync::mpsc::UnboundedReceiver<BindEvent>,
    line: impl Fn(BindEvent) -> String,
) {
    while let Some(event) = events.recv().await {
        status(&line(event));
    }
}

/// Spork's status line for a bind event.
fn bind_event_line(event: BindEvent) -> String {
    match event {
        BindEvent::Connect(peer) => format!("CONNECT pubkey: {peer}"),
        BindEvent::Close(peer) => format!("CLOSE pubkey: {peer}"),
        BindEvent::Failed { peer, reason } => format!("FAILED pubkey: {peer}: {reason}"),
    }
}

/// Runs `work` until it ends or Ctrl-C comes ([`Interrupted`]); either way `node` is
/// closed before this returns, so that its peers hear at once that this side is gone
/// instead of waiting out the idle timeout (`--idle-timeout`, 30 s).
async fn until_interrupted<T>(
    node: &Node,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let result = tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
    };
    // Closing waits for the peers to acknowledge; one that is gone is not waited for long.
    let _ = tokio::time::timeout(CLOSE_WAIT, node.close()).await;
    result
}

/// How long closing a node waits for its peers to hear of it.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

fn port_error(port: u16, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "port {port} is in use on this machine: choose another with -p PORT, or leave -p out for a free one"
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot listen on localhost:{port}"))
    }
}

/// Reads (or makes) the keyfile, with Spork's status lines.
pub(crate) fn read_keyfile(path: &Path) -> anyhow::Result<atek_core::SecretKey> {
    status(&format!("Reading keyfile at {}", path.display()));
    let exists = path.exists();
    if !exists {
        status("...File not found, creating a new keypair at that location.");
    }
    let (key, origin) = keyfile::load_or_create(path)?;
    match origin {
        Origin::Loaded => status(&format!("...Loaded keypair, public key: {}", key.public())),
        Origin::Created => status(&format!("...Created keypair, public key: {}", key.public())),
    }
    Ok(key)
}

/// `key`: `default` is the keyfile read when `-k` is not given.
pub(crate) async fn key(default: PathBuf, args: KeyArgs) -> anyhow::Result<()> {
    let path = args.keyfile.unwrap_or(default);
    let key = read_keyfile(&path)?;
    let public = key.public().to_string();
    if args.json {
        println!("{}", serde_json::json!({ "publicKey": public }));
        return Ok(());
    }
    println!("{public}");
    if std::io::stdout().is_terminal() {
        let code = qrcode::QrCode::new(public.as_bytes()).context("making the QR code")?;
        let picture = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        println!("{picture}");
    }
    Ok(())
}

pub(crate) async fn beam(defaults: NetDefaults, args: BeamArgs) -> anyhow::Result<()> {
    log_if_asked();
    let config = args.net.config(&defaults)?;
    let (passphrase, listen, made) = match &args.passphrase {
        None => (Passphrase::generate(), true, true),
        Some(text) => (
            Passphrase::parse(text).map_err(|e| BadUsage(e.to_string()))?,
            args.reuse,
            false,
        ),
    };
    let node = if listen {
        Node::bind(&passphrase.listener_key(), &[beam::ALPN], &config).await?
    } else {
        Node::bind(&passphrase.connector_key(), &[], &config).await?
    };
    let work = run_beam(&node, &passphrase, listen, made, defaults.program);
    let result = until_interrupted(&node, work).await;
    match &result {
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => status("Shutting down beam..."),
        Err(e) => {
            status(&format!("Error: {e}"));
            status("Shutting down beam...");
        }
        Ok(()) => {}
    }
    result
}

/// The beam on `node`, bound with the passphrase's key for its side.
async fn run_beam(
    node: &Node,
    passphrase: &Passphrase,
    listen: bool,
    made: bool,
    program: &str,
) -> anyhow::Result<()> {
    let pipe = if listen {
        if !node.online().await {
            status(
                "Could not reach a relay yet; waiting anyway (peers on this network can still connect)",
            );
        }
        if made {
            let text = passphrase.to_text();
            status("Run this on the other machine:");
            status("");
            status(&format!("  {program} beam {text}"));
            status("");
            status(&format!(
                "To restart this side of the pipe with the same passphrase, run: {program} beam -r {text}"
            ));
        }
        status("Waiting for the other side...");
        beam::accept(node, passphrase).await?
    } else {
        status("Connecting pipe...");
        beam::connect(node, passphrase, None).await?
    };
    status(&format!(
        "Success! Encrypted tunnel established to remote peer {}",
        pipe.peer()
    ));
    // Say which way the bytes go, and when that changes (relayed first, direct once hole
    // punching works).
    let route = tokio::spawn(atek_net::Route::watch(pipe.connection(), |route| {
        status(&format!("Path: {route}"));
    }));
    let (sent, received) = (Counter::default(), Counter::default());
    let (input, _stdin_blocking) = stdio::stdin()?;
    let input = Counted::new(input, sent.clone());
    let (output, written) = stdio::stdout()?;
    let output = Counted::new(output, received.clone());
    let progress = BeamProgress::start(sent, received);
    let stats = pipe.pipe(input, output).await;
    route.abort();
    // Everything received is on stdout before the command ends.
    let written = written.wait().await;
    let stats = stats?;
    written?;
    if let Some(progress) = progress {
        let elapsed = progress.elapsed();
        drop(progress);
        status(&format!(
            "Done: sent {}, received {} in {}",
            HumanBytes(stats.sent),
            HumanBytes(stats.received),
            HumanDuration(elapsed)
        ));
    }
    tracing::debug!(sent = stats.sent, received = stats.received, "beam done");
    Ok(())
}

/// The progress line of a running beam, when there is one: status lines go above it.
static PROGRESS: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);

fn status(line: &str) {
    let bar = PROGRESS.lock().ok().and_then(|bar| bar.clone());
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("▶ {line}")),
        None => eprintln!("▶ {line}"),
    }
}

/// A line under the status lines on a terminal's stderr while a beam runs: the bytes sent
/// and received, and how fast they go. Not shown when stderr is not a terminal (a script
/// reading the status lines sees what Spork printed). Removed when dropped.
struct BeamProgress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl BeamProgress {
    /// How often the line changes.
    const EVERY: Duration = Duration::from_millis(250);

    fn start(sent: Counter, received: Counter) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        if let Ok(mut slot) = PROGRESS.lock() {
            *slot = Some(bar.clone());
        }
        let task = tokio::spawn({
            let bar = bar.clone();
            async move {
                let mut tick = tokio::time::interval(Self::EVERY);
                let mut last = (0u64, std::time::Instant::now());
                loop {
                    tick.tick().await;
                    let (s, r) = (sent.get(), received.get());
                    let now = std::time::Instant::now();
                    let seconds = now.duration_since(last.1).as_secs_f64().max(1e-3);
                    let rate = (s + r).saturating_sub(last.0) as f64 / seconds;
                    last = (s + r, now);
                    bar.set_message(format!(
                        "sent {} · received {} · {}/s",
                        HumanBytes(s),
                        HumanBytes(r),
                        HumanBytes(rate as u64)
                    ));
                    bar.tick();
                }
            }
        });
        Some(Self { bar, task })
    }

    fn elapsed(&self) -> Duration {
        self.bar.elapsed()
    }
}

impl Drop for BeamProgress {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut slot) = PROGRESS.lock() {
            *slot = None;
        }
        self.bar.finish_and_clear();
    }
}

/// The exit code of a p2p command's error: 2 bad usage, 130 interrupted, 1 otherwise.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<BadUsage>().is_some() {
        2
    } else if e.downcast_ref::<Interrupted>().is_some() {
        130
    } else {
        1
    }
}

/// A command line that cannot be acted on (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadUsage(pub(crate) String);

/// Ctrl-C (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub(crate) struct Interrupted;
