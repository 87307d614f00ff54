//! Running git and npm with their output streamed line by line, each in a process group of
//! its own that is killed when the step ends, is cancelled or runs out of time, with a
//! parent-death signal, and listed for the sweep after a killed host ([`crate::groups`]).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::{InstallError, InstallLimits, InstallObserver};
use crate::groups::{Groups, INSTALL_MARKER, Tracked, die_with_parent};

/// How many lines of output an error keeps: enough to see the cause, short enough to read.
pub(crate) const TAIL_LINES: usize = 20;

/// Longest line passed on; a program printing megabytes without a newline should not make
/// every observer hold it.
const MAX_LINE_CHARS: usize = 4096;

/// How long a step that ran out of time may take to die after SIGKILL.
const REAP_WAIT: Duration = Duration::from_secs(5);

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

/// How the installer runs programs: their time limits, and the list their process groups
/// go on while they run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Runner {
    /// The time limits.
    pub(crate) limits: InstallLimits,
    /// Where each step's group is listed, for the sweep after a killed host.
    pub(crate) groups: Groups,
}

/// One run of git or npm, as its limit and its errors name it.
#[derive(Debug)]
pub(crate) struct Step {
    /// `git` or `npm`.
    pub(crate) program: &'static str,
    /// What follows the program, as a person would type it: `clone https://…`, `run build`.
    pub(crate) name: String,
    /// How long it may take.
    pub(crate) limit: Duration,
    /// What to do when it does not finish in time.
    pub(crate) fix: String,
}

/// Kills a process group when dropped, then takes it off the list.
struct GroupGuard {
    pgid: Option<rustix::process::Pid>,
    _listed: Tracked,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_group(self.pgid);
    }
}

fn kill_group(pgid: Option<rustix::process::Pid>) {
    if let Some(pgid) = pgid {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// A fresh value for [`INSTALL_MARKER`]: the processes of one step, and only those, carry it.
fn marker_value() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness the value is only less unique; the group id still has to match.
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// Runs `cmd` to the end, or until `step.limit` passes: then its whole process group is
/// killed and the error names the step and the limit. Each output line goes to `observer`;
/// stdout is kept whole only when `capture_stdout` is set (for commands whose output is
/// data, like `git tag --list`).
pub(crate) async fn run(
    runner: &Runner,
    mut cmd: Command,
    step: Step,
    observer: Option<&dyn InstallObserver>,
    capture_stdout: bool,
) -> Result<Finished, InstallError> {
    let program = step.program;
    let marker = marker_value();
    // Nothing we run may wait for a person at a terminal, and nothing may outlive a
    // cancelled install, nor the host.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env(INSTALL_MARKER, &marker)
        .process_group(0)
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let spawn_err = |source| InstallError::Spawn { program, source };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    // `npm run build` starts its own children; when the install ends, runs out of time or
    // is cancelled (the host shutting down), the whole group goes, not just npm. Should the
    // host be killed, the group is listed for the next start to sweep.
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    let label = match program {
        // Not the URL: it may hold credentials, and the list is logged.
        "git" => format!("git {}", step.name.split(' ').next().unwrap_or_default()),
        _ => format!("{program} {}", step.name),
    };
    let _group = GroupGuard {
        pgid,
        _listed: runner
            .groups
            .track(pgid, format!("{INSTALL_MARKER}={marker}"), label),
    };
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
    let to_the_end = async {
        let (out, err) = tokio::join!(
            pump(stdout, |l| on_line(l, false)),
            pump(stderr, |l| on_line(l, true))
        );
        out.and(err)?;
        child.wait().await
    };
    let status = match tokio::time::timeout(step.limit, to_the_end).await {
        Ok(status) => status.map_err(spawn_err)?,
        Err(_) => {
            kill_group(pgid);
            // The program itself is collected, so it is gone when the error is seen.
            let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
            let c = collected.into_inner().unwrap_or_else(|p| p.into_inner());
            return Err(InstallError::TimedOut {
                program,
                step: step.name,
                limit: step.limit,
                tail: join_lines(c.tail),
                fix: step.fix,
            });
        }
    };

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

    fn step(program: &'static str, limit: Duration) -> Step {
        Step {
            program,
            name: "test".into(),
            limit,
            fix: "wait less".into(),
        }
    }

    #[tokio::test]
    async fn a_step_out_of_time_is_killed_with_its_group() {
        let mut cmd = Command::new("sh");
        // The grandchild holds the output pipes open, as a server started by a build would.
        cmd.args(["-c", "sleep 300 & echo $!; echo waiting >&2; wait"]);
        let lines = Lines::default();
        let limit = Duration::from_millis(500);
        let started = std::time::Instant::now();
        let err = run(
            &Runner::default(),
            cmd,
            step("npm", limit),
            Some(&lines),
            false,
        )
        .await
        .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        match &err {
            InstallError::TimedOut {
                step,
                limit: l,
                tail,
                ..
            } => {
                assert_eq!((step.as_str(), *l), ("test", limit));
                assert!(tail.contains("waiting"), "{tail}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(
                "`npm test` did not finish within 500ms, so it was stopped, with everything it \
                 started; last lines of its output:\n"
            ) && message.ends_with("\nfix: wait less"),
            "{message}"
        );
        // Its pid came on stdout; stderr's line may have been read first.
        let grandchild: u32 = lines
            .0
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.parse().ok())
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn streams_cleans_and_keeps_tails() {
        let mut cmd = Command::new("sh");
        let script = r"printf 'a\tb\n\033[31mred\033[0m\nstep 1\rstep 2\n'; i=0;
            while [ $i -lt 30 ]; do echo err$i >&2; i=$((i+1)); done; exit 4";
        cmd.args(["-c", script]);
        let lines = Lines::default();
        let done = run(
            &Runner::default(),
            cmd,
            step("sh", Duration::from_secs(60)),
            Some(&lines),
            true,
        )
        .await
        .unwrap();
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
        let err = run(
            &Runner::default(),
            cmd,
            step("git", Duration::from_secs(60)),
            None,
            false,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, InstallError::Spawn { program: "git", .. }),
            "{err:?}"
        );
    }
}
