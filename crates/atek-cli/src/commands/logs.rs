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
    let mut text = String::new();
    file.read_to_string(&mut text)?;
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
    let mut pos = file.stream_position()?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Rotated: the current file is new; read it from the start.
            file = std::fs::File::open(&path)?;
            pos = 0;
        }
        if len > pos {
            file.seek(SeekFrom::Start(pos))?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk)?;
            pos += chunk.len() as u64;
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk)?;
            out.flush()?;
        }
    }
}
