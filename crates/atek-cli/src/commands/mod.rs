//! One module per subcommand, each with a `run()`.

pub(crate) mod cfg;
pub(crate) mod db;
pub(crate) mod get;
pub(crate) mod install;
pub(crate) mod logs;
pub(crate) mod ls;
pub(crate) mod manage;
pub(crate) mod p2p;
pub(crate) mod relay;
pub(crate) mod run;
pub(crate) mod users;

use std::path::Path;

use anyhow::Context;
use atek_api::{Client, ClientError};
use atek_host::config::Config;
use atek_host::host::RunInfo;
use atek_host::paths::Paths;

/// Maps an error to the exit code documented in main.rs.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    match p2p::exit_code(e) {
        1 => {}
        code => return code,
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::NotRunning { .. }) => 3,
        Some(ClientError::Unauthorized) => 4,
        _ => 1,
    }
}

/// A client for the host of `config_dir`: its URL from `run.json` (written while it runs),
/// else from config.json's port; the first system token of config.json.
pub(crate) fn connect(config_dir: &Path) -> anyhow::Result<Client> {
    let paths = Paths::new(config_dir);
    let config = Config::load(&paths.config_file())?;
    let token = config
        .system_auth_tokens
        .first()
        .cloned()
        .with_context(|| {
            format!(
                "{} has no system token yet: start the host once with `atek run --config-dir {}`",
                paths.config_file().display(),
                config_dir.display()
            )
        })?;
    let url = std::fs::read(paths.run_file())
        .ok()
        .and_then(|b| serde_json::from_slice::<RunInfo>(&b).ok())
        .map(|info| info.url)
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.port));
    let url = url.parse().with_context(|| format!("bad host URL {url}"))?;
    Ok(Client::new(url, token))
}

/// Adds "start it with atek run" to a not-running error.
pub(crate) fn hint(e: ClientError, config_dir: &Path) -> anyhow::Error {
    match e {
        ClientError::NotRunning { .. } => {
            let msg = format!(
                "{e}. Start it with `atek run --config-dir {}` (or check --config-dir)",
                config_dir.display()
            );
            anyhow::Error::new(e).context(msg)
        }
        e => anyhow::Error::new(e),
    }
}
