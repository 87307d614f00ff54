//! `atek ls`.

use std::path::PathBuf;

use super::{connect, hint};
use crate::output;

/// Options of `atek ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print JSON (the services-api `list` result's services array).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(config_dir: PathBuf, args: Args) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let services = client
        .services()
        .list()
        .await
        .map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&services);
    }
    if services.is_empty() {
        println!("No services installed. Install one with `atek install PATH-OR-GIT-URL`.");
    } else {
        println!("{}", output::services_table(&services));
    }
    Ok(())
}
