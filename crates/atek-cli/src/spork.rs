//! `spork`: Atek's p2p commands under the names users of the original Spork know
//! (`bind`, `gateway`, `serve`, `beam`, and `key`), with the same options and status lines.
//! It is the `atek` command's p2p half; see `atek --help`.

#[path = "commands/p2p.rs"]
mod p2p;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Spork: p2p tunnels by key, on Atek's network layer (iroh).
#[derive(Debug, Parser)]
#[command(
    name = "spork",
    version,
    arg_required_else_help = true,
    after_help = "Exit codes: 0 success, 1 the operation failed, 2 bad usage, 130 interrupted."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reach a peer's exposed TCP port on a local port (with KEY), or expose a port under
    /// this node's key (without).
    Bind(p2p::BindArgs),
    /// An HTTP gateway: http://{key}.{domain}/ reaches that peer, WebSockets included.
    Gateway(p2p::GatewayArgs),
    /// Serve a folder as a site, on localhost and to peers by this node's key.
    Serve(p2p::ServeArgs),
    /// An end-to-end encrypted pipe between two machines: stdin to the other side, the
    /// other side to stdout.
    Beam(p2p::BeamArgs),
    /// Print a keyfile's public key (made on first use) and its QR code.
    Key(p2p::KeyArgs),
}

/// Spork's defaults: no relays or lookups of a config file, and its own name in the
/// commands it prints.
fn spork() -> p2p::NetDefaults {
    p2p::NetDefaults {
        program: "spork",
        ..Default::default()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Bind(args) => p2p::bind(spork(), args).await,
            Command::Gateway(args) => p2p::gateway(spork(), args).await,
            Command::Serve(args) => p2p::serve(spork(), args).await,
            Command::Beam(args) => p2p::beam(spork(), args).await,
            // Spork kept no config dir: `spork key` reads ./spork.key unless given -k.
            Command::Key(args) => p2p::key("spork.key".into(), args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(p2p::exit_code(&e))
        }
    }
}
