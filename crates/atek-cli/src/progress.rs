//! Progress for long operations: a spinner whose message follows the stages the host writes
//! into the service's log (`[install] == cloning …`, `== npm install`, …).
//!
//! The host runs installs; the CLI only watches, so this reads the log files under the
//! config dir (the CLI runs on the host's machine). When the id is not known in advance
//! (an install without `--id`), the log is the one that announces this source.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Which log to follow.
pub(crate) enum Target {
    /// `logs/{id}.log`.
    Id(String),
    /// The log that says `installing from {source}`.
    Source(String),
}

/// A spinner that follows the operation's log until dropped.
pub(crate) struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts a spinner with `message`, following `target` under `config_dir`.
    pub(crate) fn start(message: String, config_dir: &Path, target: Target) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.clone());
        bar.enable_steady_tick(Duration::from_millis(100));
        let logs = atek_host::paths::Paths::new(config_dir).logs();
        let task = tokio::spawn(follow(
            bar.clone(),
            message,
            logs,
            target,
            SystemTime::now(),
        ));
        Self { bar, task }
    }

    /// Removes the spinner.
    pub(crate) fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

async fn follow(
    bar: ProgressBar,
    prefix: String,
    logs: PathBuf,
    target: Target,
    since: SystemTime,
) {
    let mut file: Option<PathBuf> = match &target {
        Target::Id(id) => Some(logs.join(format!("{id}.log"))),
        Target::Source(_) => None,
    };
    let mut offset: Option<u64> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if file.is_none()
            && let Target::Source(source) = &target
        {
            file = find_announcing(&logs, &format!("installing from {source}"), since);
        }
        let Some(path) = &file else { continue };
        let start = *offset.get_or_insert_with(|| {
            if matches!(target, Target::Id(_)) {
                std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
            } else {
                0
            }
        });
        if let Some((stage, end)) = last_stage(path, start) {
            offset = Some(end);
            bar.set_message(format!("{prefix}: {stage}"));
        }
    }
}

/// A log modified since `since` whose tail contains `needle`.
fn find_announcing(logs: &Path, needle: &str, since: SystemTime) -> Option<PathBuf> {
    std::fs::read_dir(logs)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "log")
                && std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
                && tail(p, 0).is_some_and(|(text, _)| text.contains(needle))
        })
}

fn tail(path: &Path, from: u64) -> Option<(String, u64)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = from.max(len.saturating_sub(64 * 1024)).min(len);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    Some((text, len))
}

/// The newest stage line (`== …`) written after `from`, and where the file ends.
fn last_stage(path: &Path, from: u64) -> Option<(String, u64)> {
    let (text, end) = tail(path, from)?;
    let stage = text
        .lines()
        .rev()
        .find_map(|l| l.split_once("] == ").map(|(_, s)| s.to_owned()))?;
    Some((stage, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_newest_stage_after_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, "t [install] == cloning x\nt [install] noise\n").unwrap();
        let (stage, end) = last_stage(&log, 0).unwrap();
        assert_eq!(stage, "cloning x");
        assert!(last_stage(&log, end).is_none());
        std::fs::write(
            &log,
            "t [install] == cloning x\nt [install] == npm install\n",
        )
        .unwrap();
        assert_eq!(last_stage(&log, 0).unwrap().0, "npm install");
        let found = find_announcing(dir.path(), "== cloning", SystemTime::UNIX_EPOCH);
        assert_eq!(found, Some(log));
    }
}
