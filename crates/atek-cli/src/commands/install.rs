//! `atek install`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use atek_api::services::InstallOpts;

use super::{connect, hint};
use crate::output;
use crate::progress::{Progress, Target};

/// Options of `atek install`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A folder (relative or absolute path, or file:// URL) or a git URL (https://…,
    /// git+file:///path, /path/repo.git).
    source: String,
    /// The id to install under (default: the source's last segment; `name-2`… if taken).
    #[arg(long)]
    id: Option<String>,
    /// A semver range of git tags to follow, such as `^1` or `2.0.0`.
    #[arg(
        long = "desired-version",
        alias = "desiredVersion",
        value_name = "RANGE"
    )]
    desired_version: Option<String>,
    /// Install for this user (admins only; `system` for the host).
    #[arg(long)]
    user: Option<String>,
    /// An environment variable for the service, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// A path that exists becomes an absolute `file://` URL (the original only did that for
/// absolute paths, so `atek install ./app` failed).
fn source_url(source: &str) -> anyhow::Result<String> {
    if source.contains("://") || source.starts_with("git+") {
        return Ok(source.to_owned());
    }
    let path = Path::new(source);
    if path.exists() {
        let abs: PathBuf =
            std::fs::canonicalize(path).with_context(|| format!("cannot resolve {source}"))?;
        return Ok(url_from_path(&abs));
    }
    if path.is_absolute() || source.starts_with('.') {
        anyhow::bail!("{source} does not exist: give an existing folder or a git URL");
    }
    Ok(source.to_owned())
}

fn url_from_path(path: &Path) -> String {
    url::Url::from_file_path(path)
        .map(String::from)
        .unwrap_or_else(|()| format!("file://{}", path.display()))
}

pub(crate) async fn run(config_dir: PathBuf, args: Args) -> anyhow::Result<()> {
    let client = connect(&config_dir)?;
    let opts = InstallOpts {
        source_url: source_url(&args.source)?,
        id: args.id,
        desired_version: args.desired_version,
        user: args.user,
        config: (!args.env.is_empty()).then(|| args.env.into_iter().collect()),
        ..InstallOpts::default()
    };
    let target = match &opts.id {
        Some(id) => Target::Id(id.clone()),
        None => Target::Source(opts.source_url.clone()),
    };
    let progress = Progress::start(
        format!("Installing {}", opts.source_url),
        &config_dir,
        target,
    );
    let result = client.services().install(&opts).await;
    progress.finish();
    let info = result.map_err(|e| hint(e, &config_dir))?;
    if args.json {
        return output::json(&info);
    }
    print!("{}", output::service_details(&info));
    if info.status != atek_api::services::ServiceStatus::Active {
        eprintln!(
            "note: installed, but it is {}; see `atek logs {}`",
            info.status.as_str(),
            info.settings.id
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_relative_paths_become_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let url = source_url(dir.path().to_str().unwrap()).unwrap();
        assert!(url.starts_with("file:///"), "{url}");
        assert_eq!(source_url("https://x/y.git").unwrap(), "https://x/y.git");
        assert_eq!(source_url("git+file:///r").unwrap(), "git+file:///r");
        assert!(source_url("./does-not-exist").is_err());
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("nokey").is_err());
    }
}
