//! `atek logs ID [-f]`: reads the service's log file under the config dir.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use atek_host::paths::Paths;

/// Options of `atek logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service's id.
    id: String,
    /// Keep printing new lines as they are written (Ctrl-C ends).
    #[arg(long, short)]
    follow: bool,
    /// How many of the last lines to print first.
    #[arg(long, short = 'n', default_value_t = 100)]
    lines: usize,
}

pub(crate) async fn run(config_dir: PathBuf, args: Args) -> anyhow::Result<()> {
    let id: atek_core::ServiceId = args.id.parse()?;
    let path = Paths::new(&config_dir).log(&id);
    let mut file = std::fs::File::open(&path).with_context(|| {
        format!(
            "no log for {id} at {} (is it installed? see `atek ls`)",
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    // A service may print bytes that are not UTF-8; show them, do not fail on them.
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(args.lines);
    let mut out = std::io::stdout().lock();
    for line in &lines[start..] {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    drop(out);
    if !args.follow {
        return Ok(());
    }
    let mut follower = Follower::new(path, file)?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        follower.poll(&mut std::io::stdout().lock())?;
    }
}

/// Follows a log file that the host rotates by renaming it (`{id}.log` becomes
/// `{id}.log.1`) and starting a new one: what was added to the old file before the rename
/// is printed, then the new file from its start.
struct Follower {
    path: PathBuf,
    file: std::fs::File,
    pos: u64,
}

impl Follower {
    /// Follows `file`, opened from `path` and read up to its current position.
    fn new(path: PathBuf, mut file: std::fs::File) -> std::io::Result<Self> {
        let pos = file.stream_position()?;
        Ok(Self { path, file, pos })
    }

    /// Copies to `out` what was written since the last call.
    fn poll(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        self.drain(out)?;
        // Rotated: the path names another file now (its first moment may not have come
        // yet: then the next call looks again).
        let (Ok(current), Ok(open)) = (std::fs::metadata(&self.path), self.file.metadata()) else {
            return Ok(());
        };
        if (current.dev(), current.ino()) != (open.dev(), open.ino()) {
            // The old file's last lines, written after the drain above and before the
            // rename, are printed before the new file's.
            self.drain(out)?;
            self.file = std::fs::File::open(&self.path)?;
            self.pos = 0;
            self.drain(out)?;
        } else if current.len() < self.pos {
            // Truncated in place (by a person): start over.
            self.pos = 0;
            self.drain(out)?;
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(self.pos))?;
        let mut chunk = Vec::new();
        self.file.read_to_end(&mut chunk)?;
        if !chunk.is_empty() {
            self.pos += chunk.len() as u64;
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn follows_across_a_rotation_without_losing_or_repeating_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "old 1\n").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        file.read_to_end(&mut Vec::new()).unwrap();
        let mut follower = Follower::new(path.clone(), file).unwrap();
        let mut out = Vec::new();

        let append = |p: &std::path::Path, text: &str| {
            let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append(&path, "old 2\n");
        follower.poll(&mut out).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "old 2\n");

        // The host writes one more line, renames the file, and starts a new one that is
        // already longer than what was read of the old.
        append(&path, "old 3\n");
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        std::fs::write(&path, "new 1 is a longer line than all of the old file\n").unwrap();
        follower.poll(&mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "old 2\nold 3\nnew 1 is a longer line than all of the old file\n"
        );

        append(&path, "new 2\n");
        follower.poll(&mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).ends_with("file\nnew 2\n"));
        follower.poll(&mut out).unwrap();
        assert!(
            String::from_utf8_lossy(&out).ends_with("file\nnew 2\n"),
            "nothing twice"
        );
    }
}
