//! The p2p commands that need no host: `atek key` and `atek beam`.
//!
//! Status goes to stderr, each line starting with `▶` as Spork's did; data (the beam's
//! pipe, the key) goes to stdout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use atek_net::beam::{self, Passphrase};
use atek_net::keyfile::{self, Origin};
use atek_net::{NetConfig, NetError, Node};

/// The options every p2p command takes to choose how it reaches the network.
#[derive(Debug, clap::Args)]
pub(crate) struct NetArgs {
    /// A relay to use (repeat for more). Given relays replace the public ones, and no
    /// public address lookup is used then.
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
    /// How long to try reaching the other side, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    timeout: u64,
}

impl NetArgs {
    fn config(&self) -> anyhow::Result<NetConfig> {
        let relays = self
            .relays
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
            relay_ca: self.relay_ca.clone(),
            public: !self.no_public,
            connect_timeout: Duration::from_secs(self.timeout.max(1)),
            ..NetConfig::default()
        })
    }
}

/// `atek key`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeyArgs {
    /// The keyfile (created if missing) [default: node.key in the config dir: the host's
    /// own key].
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

pub(crate) async fn key(config_dir: PathBuf, args: KeyArgs) -> anyhow::Result<()> {
    let path = args.keyfile.unwrap_or_else(|| config_dir.join("node.key"));
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

pub(crate) async fn beam(args: BeamArgs) -> anyhow::Result<()> {
    let config = args.net.config()?;
    let (passphrase, listen, made) = match &args.passphrase {
        None => (Passphrase::generate(), true, true),
        Some(text) => (
            Passphrase::parse(text).map_err(BadUsage)?,
            args.reuse,
            false,
        ),
    };
    let result = tokio::select! {
        result = run_beam(&config, &passphrase, listen, made) => result,
        _ = tokio::signal::ctrl_c() => {
            status("Shutting down beam...");
            return Err(Interrupted.into());
        }
    };
    if let Err(e) = &result {
        status(&format!("Error: {e}"));
        status("Shutting down beam...");
    }
    result
}

async fn run_beam(
    config: &NetConfig,
    passphrase: &Passphrase,
    listen: bool,
    made: bool,
) -> anyhow::Result<()> {
    let (node, pipe) = if listen {
        let node = Node::bind(&passphrase.listener_key(), &[beam::ALPN], config).await?;
        if !node.online().await {
            status(
                "Could not reach a relay yet; waiting anyway (peers on this network can still connect)",
            );
        }
        if made {
            let text = passphrase.to_text();
            status("Run this on the other machine:");
            status("");
            status(&format!("  atek beam {text}"));
            status("");
            status(&format!(
                "To restart this side of the pipe with the same passphrase, run: atek beam -r {text}"
            ));
        }
        status("Waiting for the other side...");
        let pipe = beam::accept(&node, passphrase).await?;
        (node, pipe)
    } else {
        let node = Node::bind(&passphrase.connector_key(), &[], config).await?;
        status("Connecting pipe...");
        let pipe = beam::connect(&node, passphrase, None).await?;
        (node, pipe)
    };
    status(&format!(
        "Success! Encrypted tunnel established to remote peer {}",
        pipe.peer()
    ));
    let stats = pipe.pipe(tokio::io::stdin(), tokio::io::stdout()).await;
    node.close().await;
    let stats = stats?;
    tracing::debug!(sent = stats.sent, received = stats.received, "beam done");
    Ok(())
}

fn status(line: &str) {
    eprintln!("▶ {line}");
}

/// A command line that cannot be acted on (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct BadUsage(pub(crate) NetError);

/// Ctrl-C (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub(crate) struct Interrupted;
