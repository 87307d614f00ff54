//! `atek get`.

use std::path::PathBuf;

use super::{connect, hint};
use crate::output;

/// Options of `atek get`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service's id.
    id: String,
    /// Print the ServiceInfo as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(config_dir: PathBuf, args: Args) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let info = client
        .services()
        .get(&args.id)
        .await
        .map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&info);
    }
    print!("{}", output::service_details(&info));
    Ok(())
}
