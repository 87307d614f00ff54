//! `atek-p2p-bench`: the Rust side of `bench/p2p/run.sh`: bind and beam next to a bare iroh
//! stream and plain TCP, everything on loopback.
//!
//! Each subcommand measures one row once and prints it as one JSON line on stdout (progress
//! and errors go to stderr):
//!
//! ```text
//! atek-p2p-bench iroh --path direct --mib 1024
//! {"row":"iroh","path":"direct","unit":"MiB/s","value":702.3,"mib":1024,"seconds":1.458,…}
//! ```
//!
//! Rows through a relay start iroh's test relay in this process on 127.0.0.1 (self-signed
//! certificate, which the nodes are told to accept) and say which share of the bytes it
//! carried (`relayed`). Nodes are `atek_net::Node`s with `NetConfig::loopback`; the `atek`
//! processes of `beam` get `--no-public`. `bench/README.md` describes the rows.
//!
//! Exit status: 0, or 1 on an error.

mod bare;
mod beam;
mod bind;
mod connect;
mod tcp;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::util::{Relay, Route};

/// bind and beam next to a bare iroh stream and plain TCP, on loopback: one JSON line per
/// row.
#[derive(Debug, Parser)]
#[command(name = "atek-p2p-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A row that takes longer than this fails.
    #[arg(long, global = true, default_value_t = 300)]
    max_seconds: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plain TCP on 127.0.0.1: one connection, MIB MiB written in 1 MiB writes.
    Tcp {
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// Bare iroh: one QUIC stream between two connected endpoints (the ceiling).
    Iroh {
        #[arg(long)]
        path: Route,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// With `--path relay-only`: go through this relay (`atek relay` in another process,
        /// its certificate not checked) instead of one started here.
        #[arg(long, value_name = "URL")]
        relay: Option<atek_net::iroh::RelayUrl>,
    },
    /// atek_net::bind: a TCP client -> forward -> expose -> a TCP sink.
    Bind {
        #[arg(long, value_parser = net_route)]
        path: Route,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// atek_net::beam in this process: connector input -> listener output.
    BeamLib {
        #[arg(long, value_parser = net_route)]
        path: Route,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// The `atek beam` binary twice, start-up included, through a relay started here.
    Beam {
        /// The `atek` binary (a release build of atek-cli).
        #[arg(long)]
        atek: PathBuf,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// Time from Node::connect to an established connection, fresh dialers.
    Connect {
        #[arg(long, value_parser = net_route)]
        path: Route,
        /// Samples (each with a fresh dialing node); the row gives their median.
        #[arg(long, default_value_t = 20)]
        count: u32,
    },
    /// Runs a relay on 127.0.0.1 for trying `atek beam --relay URL --relay-insecure
    /// --no-public` by hand: prints `{"url": …}` and serves until stdin ends.
    Relay,
}

/// The routes atek-net's nodes can take (not `relay-only`: NetConfig has no such setting).
fn net_route(text: &str) -> Result<Route, String> {
    match <Route as clap::ValueEnum>::from_str(text, false)? {
        Route::RelayOnly => Err(
            "atek-net has no relay-only setting (no way to drop the IP transports): only `iroh` takes relay-only"
                .to_owned(),
        ),
        route => Ok(route),
    }
}

async fn relay() -> anyhow::Result<()> {
    let relay = Relay::start().await?;
    println!("{}", serde_json::json!({ "url": relay.url.to_string() }));
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 1024];
    while tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await? > 0 {}
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let limit = Duration::from_secs(cli.max_seconds);
    let serves = matches!(cli.command, Command::Relay);
    let work = async {
        match cli.command {
            Command::Tcp { mib } => tcp::run(mib).await,
            Command::Iroh { path, mib, relay } => bare::run(path, mib, relay).await,
            Command::Bind { path, mib } => bind::run(path, mib).await,
            Command::BeamLib { path, mib } => beam::run_lib(path, mib).await,
            Command::Beam { atek, mib } => beam::run_cli(&atek, mib, limit).await,
            Command::Connect { path, count } => connect::run(path, count).await,
            Command::Relay => relay().await,
        }
    };
    let limit = if serves { Duration::MAX } else { limit };
    // On TERM or Ctrl-C the row's future is dropped: the `atek` processes it started are
    // killed with it (kill_on_drop).
    tokio::select! {
        result = tokio::time::timeout(limit, work) => match result {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the row took longer than {limit:?} (--max-seconds)"),
        },
        signal = stop_signal() => {
            signal?;
            anyhow::bail!("stopped by a signal")
        }
    }
}

/// TERM or Ctrl-C.
async fn stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        result = tokio::signal::ctrl_c() => Ok(result?),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("atek-p2p-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Tasks still serving (the relay, accept loops) are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atek-p2p-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
