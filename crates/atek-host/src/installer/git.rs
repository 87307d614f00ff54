//! The git commands the installer needs, run so they never prompt.

use std::path::Path;

use tokio::process::Command;

use super::process::{self, Finished, Runner, Step};
use super::{InstallError, InstallObserver};

const REACH_HINT: &str = "check the URL, that this machine can reach it and that it may read \
     the repository (git is never allowed to ask for a password here; use an SSH key or a \
     credential helper)";
const LOCAL_HINT: &str = "the clone may be damaged; remove the service and install it again";

/// What to do when a command that talks to the remote runs out of time.
const REACH_TIMEOUT_FIX: &str = "check that this machine can reach the repository and that \
     its server answers (one that accepts the connection but never answers looks like this), \
     then try again; if the repository is just very large or the link slow, raise `gitTimeout` \
     in config.json";
/// What to do when a local command runs out of time.
const LOCAL_TIMEOUT_FIX: &str = "the clone's disk may be very slow or the clone locked by another \
     git; remove the service and install it again, or raise `gitTimeout` in config.json";

/// A `git` command with the settings every call needs.
fn command(dir: Option<&Path>, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    // Since git 2.38.1 the file transport is only trusted when a person asked for it
    // directly, which git cannot tell here (and submodules never count); the person did
    // choose this source. An empty askPass overrides a configured password dialog.
    cmd.args(["-c", "protocol.file.allow=always", "-c", "core.askPass="]);
    cmd.args(args);
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        // Inherited by a host started from inside a git hook, these would point every
        // command at the wrong repository.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd
}

/// A git command under `gitTimeout`; `fix` is what to do if it runs out of time.
fn step(runner: &Runner, name: String, fix: &str) -> Step {
    Step {
        program: "git",
        name,
        limit: runner.limits.git,
        fix: fix.to_owned(),
    }
}

/// The fix for a command that runs out of time, by where it works: the remote or the clone.
fn timeout_fix(hint: &str) -> &'static str {
    if hint == REACH_HINT {
        REACH_TIMEOUT_FIX
    } else {
        LOCAL_TIMEOUT_FIX
    }
}

async fn run(
    runner: &Runner,
    dir: Option<&Path>,
    args: &[&str],
    name: String,
    hint: &'static str,
    observer: Option<&dyn InstallObserver>,
    capture: bool,
) -> Result<Finished, InstallError> {
    let step = step(runner, name.clone(), timeout_fix(hint));
    let done = process::run(runner, command(dir, args), step, observer, capture).await?;
    if done.status.success() {
        Ok(done)
    } else {
        // "Cloning into …" is progress, not part of the failure.
        let stderr: Vec<&str> = done
            .stderr_tail
            .lines()
            .filter(|l| !l.starts_with("Cloning into "))
            .collect();
        let stderr = if stderr.is_empty() {
            format!("git {}", done.status)
        } else {
            stderr.join("\n")
        };
        Err(InstallError::Git {
            step: name,
            stderr,
            hint,
        })
    }
}

/// True when `dir` is the top of a git work tree (not merely inside one: the packages folder
/// itself may live inside some repository).
pub(crate) fn is_clone(dir: &Path) -> bool {
    dir.join(".git").is_dir()
}

/// Clones `url` into `dest` without checking anything out; a tag is checked out next.
pub(crate) async fn clone(
    runner: &Runner,
    url: &str,
    dest: &Path,
    observer: &dyn InstallObserver,
) -> Result<(), InstallError> {
    let dest_str = dest.to_string_lossy();
    let args = ["clone", "--no-checkout", "--", url, &dest_str];
    run(
        runner,
        None,
        &args,
        format!("clone {url}"),
        REACH_HINT,
        Some(observer),
        false,
    )
    .await?;
    Ok(())
}

/// Brings tags up to date; `--force` because a release tag may have been moved.
pub(crate) async fn fetch(
    runner: &Runner,
    dir: &Path,
    observer: &dyn InstallObserver,
) -> Result<(), InstallError> {
    let args = ["fetch", "--tags", "--force"];
    run(
        runner,
        Some(dir),
        &args,
        "fetch --tags --force".to_owned(),
        REACH_HINT,
        Some(observer),
        false,
    )
    .await?;
    Ok(())
}

/// Every tag name in the clone.
pub(crate) async fn tags(runner: &Runner, dir: &Path) -> Result<Vec<String>, InstallError> {
    tag_list(runner, dir, &["tag", "--list"]).await
}

/// The tags that name the checked-out commit.
pub(crate) async fn tags_at_head(runner: &Runner, dir: &Path) -> Result<Vec<String>, InstallError> {
    tag_list(runner, dir, &["tag", "--points-at", "HEAD"]).await
}

async fn tag_list(runner: &Runner, dir: &Path, args: &[&str]) -> Result<Vec<String>, InstallError> {
    let done = run(
        runner,
        Some(dir),
        args,
        args.join(" "),
        LOCAL_HINT,
        None,
        true,
    )
    .await?;
    Ok(done
        .stdout
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Checks out `tag`, throwing away local changes: the clone belongs to the installer.
pub(crate) async fn checkout(
    runner: &Runner,
    dir: &Path,
    tag: &str,
    observer: &dyn InstallObserver,
) -> Result<(), InstallError> {
    // The full ref name keeps a branch called like the tag, or a tag starting with '-',
    // from being taken for something else.
    let refname = format!("refs/tags/{tag}");
    let args = ["checkout", "--force", "--quiet", &refname];
    run(
        runner,
        Some(dir),
        &args,
        format!("checkout {tag}"),
        LOCAL_HINT,
        Some(observer),
        false,
    )
    .await?;
    Ok(())
}

/// The URL the clone was made from, if it has an `origin`.
pub(crate) async fn origin_url(
    runner: &Runner,
    dir: &Path,
) -> Result<Option<String>, InstallError> {
    let args = ["config", "--get", "remote.origin.url"];
    let step = step(runner, args.join(" "), LOCAL_TIMEOUT_FIX);
    let done = process::run(runner, command(Some(dir), &args), step, None, true).await?;
    // `git config --get` exits 1 when the key is unset; that is an answer, not a failure.
    Ok(done
        .status
        .success()
        .then(|| done.stdout.trim().to_owned())
        .filter(|url| !url.is_empty()))
}

/// The tag names of the repository at `url`, without a clone.
pub(crate) async fn remote_tags(runner: &Runner, url: &str) -> Result<Vec<String>, InstallError> {
    let args = ["ls-remote", "--tags", "--refs", "--", url];
    let name = format!("ls-remote --tags {url}");
    let done = run(runner, None, &args, name, REACH_HINT, None, true).await?;
    Ok(done
        .stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter_map(|(_, refname)| refname.trim().strip_prefix("refs/tags/"))
        .map(str::to_owned)
        .collect())
}
