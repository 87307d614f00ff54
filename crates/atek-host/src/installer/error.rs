//! What can go wrong while installing, and what a person should do about it.

use std::path::PathBuf;
use std::time::Duration;

use super::manifest::ManifestError;

/// The forms [`Source::parse`](super::Source::parse) accepts, repeated in its errors so a person
/// does not have to look them up.
const ACCEPTED_SOURCES: &str = "a folder (an absolute path or a file:// URL), or a git repository \
     (https://…, http://…, ssh://…, git://…, user@host:path, git+<url>, or the path of a bare \
     repository)";

/// Why an install, update or removal failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The source URL is not one of the accepted forms.
    #[error("cannot install from {source_url:?}: {reason}; accepted: {ACCEPTED_SOURCES}")]
    BadSource {
        /// The URL as given.
        source_url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The id cannot name a folder under `packages/`.
    #[error("{id:?} is not a usable service id: {reason}")]
    BadId {
        /// The rejected id.
        id: String,
        /// Why, from the id rules.
        reason: String,
    },
    /// A folder source does not exist.
    #[error("the folder {} does not exist; check the path, or create it first", path.display())]
    FolderMissing {
        /// The missing folder.
        path: PathBuf,
    },
    /// A folder source is a file or something else that is not a folder.
    #[error("{} is not a folder; give the folder that holds the package", path.display())]
    NotAFolder {
        /// The offending path.
        path: PathBuf,
    },
    /// Updates were asked of a service installed from a folder.
    #[error(
        "{id} was installed from a folder, which has no releases to update to; edit the folder \
         and restart the service instead"
    )]
    NotGit {
        /// The service.
        id: String,
    },
    /// A git service has no clone under `packages/` to update.
    #[error(
        "{id} has no git clone at {}; run an update (which clones it again) or re-install it",
        dir.display()
    )]
    NotInstalled {
        /// The service.
        id: String,
        /// Where the clone should be.
        dir: PathBuf,
    },
    /// The repository has no tags at all.
    #[error(
        "{source_url}: this git repository has not published any releases (no git tags). Tag \
         one, e.g. `git tag v1.0.0`, and push the tag."
    )]
    NoReleases {
        /// The repository.
        source_url: String,
    },
    /// No tag satisfies the desired range.
    #[error(
        "No release (git tag) available for {id} which matches the desired version of {range}; \
         available: {}. Change the desired version, or tag a matching release.",
        list_or_none(available)
    )]
    NoMatchingRelease {
        /// The service.
        id: String,
        /// The desired range.
        range: String,
        /// The tags that look like versions, lowest first.
        available: Vec<String>,
    },
    /// The desired version is not an npm range.
    #[error(
        "{range:?} is not a version range: {reason}; use e.g. `1.2.3`, `^1.2`, `~1.2.3`, \
         `>=1 <3` or `latest`"
    )]
    BadVersionRange {
        /// The rejected range.
        range: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A git command failed.
    #[error("`git {step}` failed:\n{stderr}\nfix: {hint}")]
    Git {
        /// The git subcommand and its main argument, e.g. `clone https://…`.
        step: String,
        /// The last lines git wrote to stderr, trimmed.
        stderr: String,
        /// What to check.
        hint: &'static str,
    },
    /// An npm command failed.
    #[error(
        "`npm {step}` failed in {} ({}); last lines of its output:\n{tail}\nfix: run `npm {step}` \
         in that folder to see the whole output",
        dir.display(),
        describe_exit(*code)
    )]
    Npm {
        /// `install` or `run build`.
        step: String,
        /// The exit code; `None` when a signal ended npm.
        code: Option<i32>,
        /// The last lines of npm's output.
        tail: String,
        /// Where npm ran.
        dir: PathBuf,
    },
    /// A git or npm step did not finish within its limit (`gitTimeout`, `npmTimeout`); its
    /// whole process group was killed.
    #[error(
        "`{program} {step}` did not finish within {}, so it was stopped, with everything it \
         started{}\nfix: {fix}",
        humantime::format_duration(*limit),
        output_tail(tail)
    )]
    TimedOut {
        /// `git` or `npm`.
        program: &'static str,
        /// What followed the program: `clone https://…`, `run build`.
        step: String,
        /// The limit it ran out of.
        limit: Duration,
        /// The last lines of its output.
        tail: String,
        /// What to do.
        fix: String,
    },
    /// The package's `package.json` could not be read.
    #[error("{}: {reason}\nfix: make package.json valid JSON (try `npm pkg get`)", path.display())]
    BadPackageJson {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The package's `atek.json` is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A program could not be started at all.
    #[error("could not run {program}: {source}; is it installed and on PATH?")]
    Spawn {
        /// `git` or `npm`.
        program: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Renaming would overwrite another package.
    #[error(
        "{} already exists; remove the service that owns it, or pick another id",
        path.display()
    )]
    AlreadyExists {
        /// The occupied folder.
        path: PathBuf,
    },
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl InstallError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none (no tag names a version, like v1.0.0)".to_owned()
    } else {
        items.join(", ")
    }
}

fn output_tail(tail: &str) -> String {
    if tail.is_empty() {
        "; it printed nothing".to_owned()
    } else {
        format!("; last lines of its output:\n{tail}")
    }
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    }
}
