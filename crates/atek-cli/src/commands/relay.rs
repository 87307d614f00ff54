//! `atek relay`: runs an iroh relay that a community can host, until Ctrl-C.
//!
//! Status goes to stderr, each line starting with `▶`, as the other p2p commands do; the
//! line a client needs (`--relay URL --relay-ca FILE`) is among them.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use atek_net::NetError;
use atek_net::relay::{self, RelayHandle, RelayListener, RelayOptions, RelayTls};

/// The plain HTTP port of `--dev` (iroh-relay's own dev port).
const DEV_HTTP_PORT: u16 = 3340;

/// `atek relay`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("tls").required(true).args(["cert", "self_signed", "dev"])),
    after_help = "One of --cert/--key (a certificate clients already trust, e.g. from Let's Encrypt), --self-signed DIR (a certificate made and kept in DIR; clients trust it with --relay-ca DIR/cert.pem) or --dev (plain HTTP, for trying things out) is needed. Ports 0 pick free ones. Exit codes: 0 stopped by Ctrl-C or SIGTERM, 1 it could not start (a port in use, a bad certificate) or failed, 2 bad usage."
)]
pub(crate) struct RelayArgs {
    /// A name clients reach this relay by, DNS name or IP address (repeat for more): the
    /// first is in the URL given to clients; a self-signed certificate is made for all.
    /// Needed unless --dev.
    #[arg(
        long = "hostname",
        value_name = "NAME",
        required_unless_present = "dev"
    )]
    hostnames: Vec<String>,
    /// The address to listen on [default: ::, every IPv6 and IPv4 address].
    #[arg(long, value_name = "IP")]
    bind: Option<IpAddr>,
    /// The HTTPS port (TCP): the relay itself.
    #[arg(long, value_name = "PORT", default_value_t = 443)]
    https_port: u16,
    /// The plain HTTP port (TCP): captive-portal checks, or the relay itself with --dev
    /// [default: 80, 3340 with --dev].
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// The UDP port of QUIC address discovery, which tells clients their public address
    /// for hole punching. Clients expect 7842 unless given --relay-quic-port.
    #[arg(long, value_name = "PORT", default_value_t = relay::DEFAULT_QUIC_PORT)]
    quic_port: u16,
    /// Serve no QUIC address discovery.
    #[arg(long)]
    no_quic: bool,
    /// The TLS certificate chain (PEM) for the host names.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Make a self-signed certificate for the host names in DIR (cert.pem, key.pem), or use
    /// the one made there before; clients trust it with --relay-ca DIR/cert.pem.
    #[arg(long, value_name = "DIR")]
    self_signed: Option<PathBuf>,
    /// Plain HTTP without TLS and without QUIC address discovery: for trying things out
    /// only (anyone on the way can impersonate the relay; connections between nodes stay
    /// end-to-end encrypted).
    #[arg(long)]
    dev: bool,
}

impl RelayArgs {
    fn options(&self) -> anyhow::Result<RelayOptions> {
        let ip = self.bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        let tls = match (&self.cert, &self.key, &self.self_signed) {
            (Some(cert_file), Some(key_file), _) => Some(RelayTls::Manual {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            }),
            (_, _, Some(dir)) => Some(RelayTls::SelfSigned {
                // Absolute, as it is printed for clients.
                dir: std::path::absolute(dir)
                    .with_context(|| format!("cannot resolve the folder {}", dir.display()))?,
            }),
            _ => None,
        };
        let http_port = self
            .http_port
            .unwrap_or(if self.dev { DEV_HTTP_PORT } else { 80 });
        Ok(RelayOptions {
            hostnames: self.hostnames.clone(),
            http_bind: SocketAddr::new(ip, http_port),
            https_bind: SocketAddr::new(ip, self.https_port),
            quic_bind: (!self.no_quic).then_some(SocketAddr::new(ip, self.quic_port)),
            tls,
        })
    }

    /// What to pass to use another socket than the one that failed.
    fn hint(&self, listener: RelayListener, kind: ErrorKind) -> &'static str {
        match (kind, listener) {
            (ErrorKind::AddrInUse | ErrorKind::PermissionDenied, RelayListener::Https) => {
                "pass --https-port PORT to use another port"
            }
            (ErrorKind::AddrInUse | ErrorKind::PermissionDenied, RelayListener::Http)
                if self.dev =>
            {
                "pass --http-port PORT to use another port"
            }
            (ErrorKind::AddrInUse | ErrorKind::PermissionDenied, RelayListener::Http) => {
                "pass --http-port PORT to use another port (it serves captive-portal checks)"
            }
            (ErrorKind::AddrInUse | ErrorKind::PermissionDenied, RelayListener::Quic) => {
                "pass --quic-port PORT to use another port (clients then need --relay-quic-port PORT), or --no-quic"
            }
            _ => "pass --bind with an address of this machine (--bind 0.0.0.0 without IPv6)",
        }
    }
}

pub(crate) async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATEK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut relay = match relay::run_relay(args.options()?).await {
        Ok(relay) => relay,
        Err(NetError::RelayListen {
            listener,
            addr,
            source,
        }) => {
            let hint = args.hint(listener, source.kind());
            let e = NetError::RelayListen {
                listener,
                addr,
                source,
            };
            let message = format!("{e}; {hint}");
            return Err(anyhow::Error::new(e).context(message));
        }
        Err(e) => return Err(e.into()),
    };
    announce(&relay, &args);

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        e = relay.stopped() => return Err(e.into()),
    }
    let stats = relay.stats();
    status(&format!(
        "Shutting down relay... ({} client connections, {} address discoveries, {} bytes relayed)",
        stats.clients, stats.address_discoveries, stats.bytes_relayed
    ));
    relay.shutdown().await?;
    Ok(())
}

/// What it listens on, and what a client passes to use it.
fn announce(relay: &RelayHandle, args: &RelayArgs) {
    status("Relay running (Ctrl-C to stop)");
    if let Some(addr) = relay.https_addr() {
        status(&format!("  HTTPS on {addr} (TCP): the relay"));
    }
    if let Some(addr) = relay.http_addr() {
        if relay.https_addr().is_some() {
            status(&format!("  HTTP on {addr} (TCP): captive-portal checks"));
        } else {
            status(&format!(
                "  HTTP on {addr} (TCP): the relay, without TLS (dev mode)"
            ));
        }
    }
    match relay.quic_addr() {
        Some(addr) => status(&format!("  QUIC address discovery on {addr} (UDP)")),
        None => status(
            "  No QUIC address discovery: its clients learn their public address from other relays only, or not at all",
        ),
    }
    if let Some(ca) = relay.ca_file() {
        if relay.made_certificate() {
            status(&format!(
                "Made a self-signed certificate for {} in {}",
                args.hostnames.join(", "),
                ca.display()
            ));
        } else {
            status(&format!(
                "Using the self-signed certificate in {} (delete its folder to have a new one made)",
                ca.display()
            ));
        }
    }
    let mut line = format!("--relay {}", relay.url());
    if let Some(ca) = relay.ca_file() {
        line.push_str(&format!(" --relay-ca {}", ca.display()));
    }
    if let Some(addr) = relay.quic_addr()
        && addr.port() != relay::DEFAULT_QUIC_PORT
    {
        line.push_str(&format!(" --relay-quic-port {}", addr.port()));
    }
    status("Clients use this relay with:");
    status("");
    status(&format!("  {line}"));
    status("");
    if relay.ca_file().is_some() {
        status("(copy the certificate file to the clients' machines; it holds no secret)");
    } else if args.cert.is_some() {
        status("(add --relay-ca FILE with your CA's certificate if it is not publicly trusted)");
    }
}

fn status(line: &str) {
    eprintln!("▶ {line}");
}
