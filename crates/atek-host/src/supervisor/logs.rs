//! Per-service logs: `logs/{id}.log`, one line per event, tagged by stream, rotated by size,
//! with secrets replaced before anything is written.
//!
//! A line reads `2026-11-21T11:00:00.123Z [out] listening`. Tags: `out` and `err` for the
//! process's stdout and stderr, `sys` for the host's own events, `install` for git and npm
//! output.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use atek_core::BearerToken;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// A line longer than this is cut (a process printing megabytes without a newline must not
/// make the host buffer it all).
const MAX_LINE: usize = 16 * 1024;

/// What replaces a secret in a log line.
pub const REDACTED: &str = "[redacted]";

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// The process's stdout.
    Out,
    /// The process's stderr.
    Err,
    /// The host's events about the service.
    Sys,
    /// Installer output.
    Install,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::Err => "err",
            Self::Sys => "sys",
            Self::Install => "install",
        }
    }
}

#[derive(Debug)]
struct Inner {
    file: Option<File>,
    written: u64,
    secrets: Vec<BearerToken>,
}

/// One service's log. Cheap to clone; writes are serialised.
#[derive(Debug, Clone)]
pub struct ServiceLog {
    path: Arc<PathBuf>,
    max_bytes: u64,
    keep: u32,
    inner: Arc<Mutex<Inner>>,
}

impl ServiceLog {
    /// A log at `path`, rotated past `max_bytes` keeping `keep` old files.
    pub fn new(path: PathBuf, max_bytes: u64, keep: u32) -> Self {
        Self {
            path: Arc::new(path),
            max_bytes,
            keep,
            inner: Arc::new(Mutex::new(Inner {
                file: None,
                written: 0,
                secrets: Vec::new(),
            })),
        }
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the secrets to scrub from every line (the service's token, the system tokens).
    pub fn set_secrets(&self, secrets: Vec<BearerToken>) {
        self.lock().secrets = secrets;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one line. Failures to write are reported once through tracing and otherwise
    /// ignored: a full disk must not take the service down.
    pub fn line(&self, tag: Tag, text: &str) {
        self.write_line(tag, text, false);
    }

    /// [`ServiceLog::line`] for a line that may have been `cut` short ([`MAX_LINE`]): then
    /// the start of a secret that the cut split is redacted too.
    fn write_line(&self, tag: Tag, text: &str, cut: bool) {
        let mut inner = self.lock();
        let mut text = strip_ansi(text);
        for secret in &inner.secrets {
            if !secret.expose().is_empty() && text.contains(secret.expose()) {
                text = text.replace(secret.expose(), REDACTED);
            }
        }
        if cut {
            redact_cut_secret(&mut text, &inner.secrets);
        }
        let stamp = humantime::format_rfc3339_millis(SystemTime::now());
        let line = format!(
            "{stamp} [{}] {}\n",
            tag.as_str(),
            text.trim_end_matches(['\r', '\n'])
        );
        if let Err(e) = self.write(&mut inner, line.as_bytes()) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write service log");
            inner.file = None;
        }
    }

    fn write(&self, inner: &mut Inner, bytes: &[u8]) -> std::io::Result<()> {
        if inner.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&*self.path)?;
            inner.written = file.metadata()?.len();
            inner.file = Some(file);
        }
        if inner.written + bytes.len() as u64 > self.max_bytes && inner.written > 0 {
            inner.file = None;
            self.rotate()?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&*self.path)?;
            inner.written = 0;
            inner.file = Some(file);
        }
        if let Some(file) = inner.file.as_mut() {
            file.write_all(bytes)?;
            inner.written += bytes.len() as u64;
        }
        Ok(())
    }

    /// `{id}.log` → `{id}.log.1` → … → `{id}.log.{keep}` (dropped).
    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            return std::fs::remove_file(&*self.path);
        }
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&*self.path, numbered(1))
    }

    /// Copies `stream` into the log line by line until it ends.
    pub async fn pump(self, stream: impl AsyncRead + Unpin, tag: Tag) {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf).await {
                Ok(0) => return,
                Ok(read) => {
                    let cut = read > buf.len();
                    self.write_line(tag, &String::from_utf8_lossy(&buf), cut);
                }
                Err(_) => return,
            }
        }
    }
}

/// Reads up to a newline, keeping at most [`MAX_LINE`] bytes of it; the rest of a longer
/// line is read and dropped.
async fn read_line_capped(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = MAX_LINE.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        total += n;
        reader.consume(n);
        if done {
            return Ok(total);
        }
    }
}

/// Replaces the end of a line cut short when it is the start of a secret: the rest of the
/// secret was dropped with the rest of the line, but its start must not be kept either.
fn redact_cut_secret(text: &mut String, secrets: &[BearerToken]) {
    let tail = secrets
        .iter()
        .filter_map(|secret| {
            let secret = secret.expose();
            // The longest start of the secret that the line ends with.
            (1..secret.len())
                .rev()
                .find(|&n| secret.is_char_boundary(n) && text.ends_with(&secret[..n]))
        })
        .max();
    if let Some(n) = tail {
        text.truncate(text.len() - n);
        text.push_str(REDACTED);
    }
}

fn strip_ansi(text: &str) -> String {
    if text.contains('\u{1b}') {
        String::from_utf8_lossy(&strip_ansi_escapes::strip(text)).into_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_lines_tagged() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("a.log"), 1 << 20, 2);
        let token = BearerToken::generate();
        log.set_secrets(vec![token.clone()]);
        log.line(
            Tag::Out,
            &format!("token={} \u{1b}[31mred\u{1b}[0m", token.expose()),
        );
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(!text.contains(token.expose()));
        assert!(text.contains("[out] token=[redacted] red"), "{text}");
    }

    #[test]
    fn rotates_past_the_limit_keeping_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("a.log"), 200, 2);
        for i in 0..40 {
            log.line(Tag::Sys, &format!("line {i:03} {}", "x".repeat(20)));
        }
        assert!(dir.path().join("a.log.1").exists());
        assert!(dir.path().join("a.log.2").exists());
        assert!(!dir.path().join("a.log.3").exists());
        let current = std::fs::read_to_string(log.path()).unwrap();
        assert!(current.len() <= 200);
        assert!(current.contains("line 039"));
    }

    #[tokio::test]
    async fn a_secret_split_by_the_cut_of_a_long_line_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("a.log"), 1 << 20, 1);
        let token = BearerToken::generate();
        log.set_secrets(vec![token.clone()]);
        let secret = token.expose();
        // Whole secrets anywhere before the cut, and one the cut splits after 40 characters.
        let mut long = format!("{secret} ");
        long.push_str(&"z".repeat(MAX_LINE - long.len() - 40));
        long.push_str(secret);
        long.push_str(" after the cut\nnext line\n");
        log.clone().pump(long.as_bytes(), Tag::Out).await;
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            !text.contains(&secret[..8]),
            "part of the secret is in the log"
        );
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(&format!("z{REDACTED}")), "{}", lines[0]);
        assert!(lines[0].contains(&format!("[out] {REDACTED} z")));
        assert!(lines[1].ends_with("[out] next line"));
    }

    #[test]
    fn a_line_that_was_not_cut_keeps_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("a.log"), 1 << 20, 1);
        let token = BearerToken::generate();
        log.set_secrets(vec![token.clone()]);
        // Ends like the start of the secret, but nothing was cut: kept as it is.
        let end = &token.expose()[..1];
        log.line(Tag::Out, &format!("ends with {end}"));
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            text.trim_end().ends_with(&format!("ends with {end}")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn pump_caps_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("a.log"), 1 << 20, 1);
        let input = format!("{}\nshort\n", "y".repeat(MAX_LINE * 2));
        log.clone().pump(input.as_bytes(), Tag::Err).await;
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2, "one capped line, then short");
        assert!(lines[0].len() < MAX_LINE + 64);
        assert!(lines[1].ends_with("[err] short"));
    }
}
