//! `atek run`.

use std::net::IpAddr;
use std::path::PathBuf;

use atek_host::host::{HostOptions, run as run_host};

/// Options of `atek run`; each overrides config.json for this run without writing it.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    /// The HTTP port (default 8480; 0 picks a free one, written to run.json).
    #[arg(long, short)]
    port: Option<u16>,
    /// The domain apps are served under (`{id}.{domain}`): a host name, no scheme, no port.
    #[arg(long, value_parser = domain)]
    domain: Option<String>,
    /// The address to listen on (default 0.0.0.0; 127.0.0.1 keeps the host to this machine).
    #[arg(long, value_name = "ADDR")]
    bind: Option<IpAddr>,
}

/// `--domain`, checked as config.json's `domain` is.
fn domain(value: &str) -> Result<String, String> {
    atek_host::config::check_domain(value)
        .map(|()| value.to_ascii_lowercase())
        .map_err(|problem| format!("{problem}: {}", atek_host::config::DOMAIN_FIX))
}

pub(crate) async fn run(config_dir: PathBuf, args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ATEK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    eprintln!(
        "Running Atek {} (config dir {})",
        env!("CARGO_PKG_VERSION"),
        config_dir.display()
    );
    run_host(HostOptions {
        config_dir,
        port: args.port,
        domain: args.domain,
        bind_address: args.bind,
    })
    .await?;
    Ok(())
}
