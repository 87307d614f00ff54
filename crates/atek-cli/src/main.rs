//! `atek`: runs the Atek host and manages it.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad usage, 3 the host is not running,
//! 4 the host refused the token, 130 interrupted (Ctrl-C).

mod commands;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Atek: a personal cloud for home servers.
///
/// `atek run` starts the host; the other commands manage a running host through its API,
/// with the system token from config.json.
#[derive(Debug, Parser)]
#[command(
    name = "atek",
    version,
    after_help = "Exit codes: 0 success, 1 the operation failed, 2 bad usage, 3 the host is not running, 4 the host refused the token."
)]
struct Cli {
    /// The config dir (config.json, packages, logs, sockets) [default: ~/.atek].
    #[arg(
        long,
        global = true,
        env = "ATEK_CONFIG_DIR",
        alias = "configDir",
        value_name = "DIR"
    )]
    config_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the host (the default when no command is given).
    Run(commands::run::Args),
    /// Install a service from a folder or a git repository, and start it.
    Install(commands::install::Args),
    /// Stop a service and remove it.
    Uninstall(commands::manage::IdArgs),
    /// Install the newest release matching a service's version range (`--check` only looks).
    Update(commands::manage::UpdateArgs),
    /// List services.
    Ls(commands::ls::Args),
    /// Show one service.
    Get(commands::get::Args),
    /// Show or change a service's settings (id, source, version range, environment).
    Cfg(commands::cfg::Args),
    /// Start a service.
    Start(commands::manage::IdArgs),
    /// Stop a service (it stays stopped until started again).
    Stop(commands::manage::IdArgs),
    /// Restart a service with its latest settings.
    Restart(commands::manage::IdArgs),
    /// Print a service's log.
    Logs(commands::logs::Args),
    /// List users.
    Users(commands::users::ListArgs),
    /// Create a user (`--admin` for an admin; the first admin of a new host).
    Mkuser(commands::users::MkArgs),
    /// Change a user's name, password or role.
    Moduser(commands::users::ModArgs),
    /// Delete a user (their services stay installed).
    Deluser(commands::users::DelArgs),
    /// Look into the home's databases (ADB): list, read, write, follow changes.
    #[command(subcommand)]
    Db(commands::db::DbCommand),
    /// Print this host's p2p key (or a keyfile's), made on first use, and its QR code.
    Key(commands::p2p::KeyArgs),
    /// An end-to-end encrypted pipe between two machines: stdin to the other side, the
    /// other side to stdout.
    Beam(commands::p2p::BeamArgs),
    /// Reach a peer's exposed TCP port on a local port (with KEY), or expose a port under
    /// this node's key (without).
    Bind(commands::p2p::BindArgs),
    /// An HTTP gateway: http://{key}.{domain}/ reaches that peer, WebSockets included.
    Gateway(commands::p2p::GatewayArgs),
    /// Serve a folder as a site, on localhost and to peers by this node's key.
    Serve(commands::p2p::ServeArgs),
    /// Run a relay for p2p connections (iroh's), so a community can host its own.
    Relay(commands::relay::RelayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_dir = match cli.config_dir.or_else(atek_host::paths::default_config_dir) {
        Some(dir) => dir,
        None => {
            eprintln!("error: no config dir: HOME is not set; pass --config-dir DIR");
            return ExitCode::from(2);
        }
    };
    // One event loop on this thread: the host adds one HTTP thread per further CPU itself
    // (see `httpThreads`), and the other commands wait on one call at a time.
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
    let command = cli
        .command
        .unwrap_or(Command::Run(commands::run::Args::default()));
    let result = runtime.block_on(async move {
        use commands::*;
        match command {
            Command::Run(args) => run::run(config_dir, args).await,
            Command::Install(args) => install::run(config_dir, args).await,
            Command::Uninstall(args) => manage::uninstall(config_dir, args).await,
            Command::Update(args) => manage::update(config_dir, args).await,
            Command::Ls(args) => ls::run(config_dir, args).await,
            Command::Get(args) => get::run(config_dir, args).await,
            Command::Cfg(args) => cfg::run(config_dir, args).await,
            Command::Start(args) => {
                manage::lifecycle(config_dir, args, manage::Action::Start).await
            }
            Command::Stop(args) => manage::lifecycle(config_dir, args, manage::Action::Stop).await,
            Command::Restart(args) => {
                manage::lifecycle(config_dir, args, manage::Action::Restart).await
            }
            Command::Logs(args) => logs::run(config_dir, args).await,
            Command::Users(args) => users::list(config_dir, args).await,
            Command::Mkuser(args) => users::mkuser(config_dir, args).await,
            Command::Moduser(args) => users::moduser(config_dir, args).await,
            Command::Deluser(args) => users::deluser(config_dir, args).await,
            Command::Db(command) => commands::db::run(config_dir, command).await,
            Command::Key(args) => p2p::key(config_dir.join("node.key"), args).await,
            Command::Beam(args) => p2p::beam(net_defaults(&config_dir)?, args).await,
            Command::Bind(args) => p2p::bind(net_defaults(&config_dir)?, args).await,
            Command::Gateway(args) => p2p::gateway(net_defaults(&config_dir)?, args).await,
            Command::Serve(args) => p2p::serve(net_defaults(&config_dir)?, args).await,
            Command::Relay(args) => relay::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(commands::exit_code(&e))
        }
    }
}

/// The relays, lookups and port mapping of config.json, for p2p commands given no
/// `--relay`, lookup or `--no-port-mapping` flags (a missing file is none).
fn net_defaults(config_dir: &std::path::Path) -> anyhow::Result<commands::p2p::NetDefaults> {
    let paths = atek_host::paths::Paths::new(config_dir);
    let config = atek_host::config::Config::load(&paths.config_file())?;
    let lookup = config
        .lookup
        .to_lookup()
        .map_err(|e| anyhow::anyhow!("{}: {e}", paths.config_file().display()))?;
    Ok(commands::p2p::NetDefaults {
        relays: config.relays,
        relay_ca: config.relay_ca,
        lookup,
        port_mapping: config.p2p.port_mapping,
        ..Default::default()
    })
}

/// The error and its causes, each cause once: a context that already quotes its cause
/// (like the "start it with atek run" hint) is not followed by the same text again.
fn describe(e: &anyhow::Error) -> String {
    let mut message = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}
