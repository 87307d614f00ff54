//! Running git and npm with their output streamed line by line.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::{InstallError, InstallObserver};

/// How many lines of output an error keeps: enough to see the cause, short enough to read.
pub(crate) const TAIL_LINES: usize = 20;

/// Longest line passed on; a program printing megabytes without a newline should not make
/// every observer hold it.
const MAX_LINE_CHARS: usize = 4096;

/// What a finished command left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    /// How it ended.
    pub(crate) status: ExitStatus,
    /// All of stdout, when asked for.
    pub(crate) stdout: String,
    /// The last [`TAIL_LINES`] lines of stderr.
    pub(crate) stderr_tail: String,
    /// The last [`TAIL_LINES`] lines of stdout and stderr, interleaved as they arrived.
    pub(crate) tail: String,
}

#[derive(Default)]
struct Collected {
    stdout: String,
    stderr_tail: VecDeque<String>,
    tail: VecDeque<String>,
}

/// Kills a process group when dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let pgid = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pgid) = pgid {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// Runs `cmd` to the end. Each output line goes to `observer`; stdout is kept whole only when
/// `capture_stdout` is set (for commands whose output is data, like `git tag --list`).
pub(crate) async fn run(
    mut cmd: Command,
    program: &'static str,
    observer: Option<&dyn InstallObserver>,
    capture_stdout: bool,
) -> Result<Finished, InstallError> {
    // Nothing we run may wait for a person at a terminal, and nothing may outlive a
    // cancelled install.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let spawn_err = |source| InstallError::Spawn { program, source };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    // `npm run build` starts its own children; when the install ends, or is cancelled (the
    // host shutting down), the whole group goes, not just npm.
    let _group = GroupGuard(child.id());
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        // Cannot happen: both were set to piped above.
        return Err(spawn_err(std::io::Error::other("output pipes missing")));
    };

    let collected = Mutex::new(Collected::default());
    let on_line = |raw: &str, is_stderr: bool| {
        let line = readable(raw);
        if let Some(observer) = observer {
            observer.output(&line);
        }
        // A poisoned lock only means another line's handler panicked; the data is still
        // usable for an error message.
        let mut c = collected.lock().unwrap_or_else(|p| p.into_inner());
        if is_stderr {
            push_tail(&mut c.stderr_tail, &line);
        } else if capture_stdout {
            // Data keeps its exact bytes (tabs separate `git ls-remote` columns).
            c.stdout.push_str(raw);
            c.stdout.push('\n');
        }
        push_tail(&mut c.tail, &line);
    };
    let (out, err) = tokio::join!(
        pump(stdout, |l| on_line(l, false)),
        pump(stderr, |l| on_line(l, true))
    );
    out.and(err).map_err(spawn_err)?;
    let status = child.wait().await.map_err(spawn_err)?;

    let c = collected.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(Finished {
        status,
        stdout: c.stdout,
        stderr_tail: join_lines(c.stderr_tail),
        tail: join_lines(c.tail),
    })
}

async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    mut on_line: impl FnMut(&str),
) -> std::io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&buf);
        // Progress meters redraw with '\r'; only the final state of the line is worth showing.
        let text = text.trim_end_matches(['\n', '\r']);
        let mut line = text.rsplit('\r').next().unwrap_or(text).to_owned();
        if line.len() > MAX_LINE_CHARS {
            let mut cut = MAX_LINE_CHARS;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        on_line(&line);
    }
}

/// A line as a person should see it: colour codes would show up as garbage in logs and in
/// the CLI's own rendering. The stripper also drops tabs, so it only runs when needed.
fn readable(line: &str) -> Cow<'_, str> {
    if line.contains('\x1b') {
        Cow::Owned(strip_ansi_escapes::strip_str(line))
    } else {
        Cow::Borrowed(line)
    }
}

fn push_tail(tail: &mut VecDeque<String>, line: &str) {
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line.to_owned());
}

fn join_lines(lines: VecDeque<String>) -> String {
    let lines: Vec<String> = lines.into();
    lines.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl InstallObserver for Lines {
        fn stage(&self, _: &str) {}
        fn output(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
    }

    #[tokio::test]
    async fn streams_cleans_and_keeps_tails() {
        let mut cmd = Command::new("sh");
        let script = r"printf 'a\tb\n\033[31mred\033[0m\nstep 1\rstep 2\n'; i=0;
            while [ $i -lt 30 ]; do echo err$i >&2; i=$((i+1)); done; exit 4";
        cmd.args(["-c", script]);
        let lines = Lines::default();
        let done = run(cmd, "sh", Some(&lines), true).await.unwrap();
        assert_eq!(done.status.code(), Some(4));
        assert_eq!(done.stdout, "a\tb\n\u{1b}[31mred\u{1b}[0m\nstep 2\n");
        let seen = lines.0.into_inner().unwrap();
        assert!(seen.contains(&"red".to_owned()), "{seen:?}");
        assert_eq!(seen.len(), 33);
        let stderr: Vec<&str> = done.stderr_tail.lines().collect();
        assert_eq!(stderr.len(), TAIL_LINES);
        assert_eq!(stderr.last(), Some(&"err29"));
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let cmd = Command::new("atek-no-such-program-here");
        let err = run(cmd, "git", None, false).await.unwrap_err();
        assert!(
            matches!(err, InstallError::Spawn { program: "git", .. }),
            "{err:?}"
        );
    }
}
