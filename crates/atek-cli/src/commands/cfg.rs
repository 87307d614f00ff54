//! `atek cfg`: with no changes it prints the settings (the original printed nothing).

use std::path::PathBuf;

use atek_api::services::ConfigureOpts;

use super::install::parse_env;
use super::{connect, hint};
use crate::output;

/// Options of `atek cfg`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service's id.
    id: String,
    /// Rename the service (restarts it under the new id).
    #[arg(long = "id", value_name = "NEW_ID")]
    new_id: Option<String>,
    /// A new source (used by the next `atek update`).
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// A new semver range of git tags to follow.
    #[arg(
        long = "desired-version",
        alias = "desiredVersion",
        value_name = "RANGE"
    )]
    desired_version: Option<String>,
    /// Set an environment variable, KEY=VALUE; KEY= removes it (repeatable). Applies at the
    /// next start.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(config_dir: PathBuf, args: Args) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let services = client.services();
    let changes = ConfigureOpts {
        id: args.new_id.clone(),
        source_url: args.source,
        desired_version: args.desired_version,
        config: (!args.env.is_empty()).then(|| args.env.into_iter().collect()),
        port: None,
    };
    let changed = changes != ConfigureOpts::default();
    if changed {
        services
            .configure(&args.id, &changes)
            .await
            .map_err(|e| hint(e, &config_dir))?;
    }
    let id = args.new_id.unwrap_or(args.id);
    let info = services.get(&id).await.map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&info.settings);
    }
    if changed {
        println!("updated; environment changes apply at the next start (atek restart {id})");
    }
    print!("{}", output::service_details(&info));
    Ok(())
}
