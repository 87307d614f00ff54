//! `atek uninstall | update | start | stop | restart`.

use std::path::PathBuf;

use super::{connect, hint};
use crate::output;
use crate::progress::{Progress, Target};

/// A service id.
#[derive(Debug, clap::Args)]
pub(crate) struct IdArgs {
    /// The service's id.
    id: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `atek update`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    /// The service's id.
    id: String,
    /// Only check whether a newer release exists.
    #[arg(long)]
    check: bool,
    /// Restart the service after updating, so the new version runs.
    #[arg(long)]
    restart: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// start, stop or restart.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Start,
    Stop,
    Restart,
}

pub(crate) async fn uninstall(config_dir: PathBuf, args: IdArgs) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    client
        .services()
        .uninstall(&args.id)
        .await
        .map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&serde_json::json!({"uninstalled": args.id}));
    }
    println!("{} uninstalled", args.id);
    Ok(())
}

pub(crate) async fn update(config_dir: PathBuf, args: UpdateArgs) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let services = client.services();
    if args.check {
        let check = services
            .check_for_package_updates(&args.id)
            .await
            .map_err(|e| hint(e, &config_dir))?;
        if args.json {
            return output::json(&check);
        }
        if check.has_update {
            println!(
                "{}: {} → {} available; run `atek update {}`",
                args.id, check.installed_version, check.latest_version, args.id
            );
        } else {
            println!(
                "{}: {} is the newest matching release",
                args.id, check.installed_version
            );
        }
        return Ok(());
    }
    let progress = Progress::start(
        format!("Updating {}", args.id),
        &config_dir,
        Target::Id(args.id.clone()),
    );
    let result = services.update_package(&args.id).await;
    progress.finish();
    let result = result.map_err(|e| hint(e, &config_dir))?;
    if args.restart {
        services
            .restart(&args.id)
            .await
            .map_err(|e| hint(e, &config_dir))?;
    }
    if args.json {
        return output::json(&result);
    }
    if result.installed_version == result.old_version {
        println!(
            "{}: {} is already the newest matching release",
            args.id, result.installed_version
        );
    } else {
        println!(
            "{}: {} → {}",
            args.id, result.old_version, result.installed_version
        );
        if !args.restart {
            println!(
                "restart it to run the new version: atek restart {}",
                args.id
            );
        }
    }
    Ok(())
}

pub(crate) async fn lifecycle(
    config_dir: PathBuf,
    args: IdArgs,
    action: Action,
) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let services = client.services();
    let done = match action {
        Action::Start => services.start(&args.id).await,
        Action::Stop => services.stop(&args.id).await,
        Action::Restart => services.restart(&args.id).await,
    };
    done.map_err(|e| hint(e, &config_dir))?;
    let info = services
        .get(&args.id)
        .await
        .map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&info);
    }
    match &info.status_reason {
        Some(reason) => println!("{} is {}: {reason}", args.id, info.status.as_str()),
        None => println!("{} is {}", args.id, info.status.as_str()),
    }
    if matches!(action, Action::Start | Action::Restart)
        && info.status != atek_api::services::ServiceStatus::Active
    {
        anyhow::bail!("{} did not start; see `atek logs {}`", args.id, args.id);
    }
    Ok(())
}
