//! `atek-data-bench`: the Rust side of the data layer's benchmarks (`bench/adb/run.sh`,
//! `bench/log/run.sh`).
//!
//! Each subcommand runs some workloads against one system and prints one JSON line per
//! workload on stdout (progress goes to stderr):
//!
//! ```text
//! atek-data-bench sqlite --synchronous full --dir /tmp/x --workload single,get
//! {"system":"sqlite-full","workload":"single","durability":"D1: …","unit":"writes/s",
//!  "value":6950.1,"n":2000,"seconds":0.29,"cut":false,"p50_us":131.2,"p99_us":402.0,…}
//! ```
//!
//! Every row says how durable an acknowledged write was (`durability`): `D1` after
//! fsync/fdatasync, `D0` after write() only, `none` if nothing reaches the disk. The
//! workloads, their keys and their 1 KiB values are in `workload.rs`, shared with the
//! JavaScript side through `bench/lib/data.mjs`; `bench/README.md` describes them. `disk`
//! measures no store: it writes atek-log's frame sizes with pwrite + fdatasync, the disk's
//! ceiling for the log's rows (`disk.rs`).
//!
//! Exit status: 0, or 1 on an error.

mod adb;
mod disk;
mod log;
mod replicate;
mod sqlite;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::workload::{Counts, Workload};

/// Benchmarks of Atek's data layer next to SQLite: one JSON line per workload.
#[derive(Debug, Parser)]
#[command(name = "atek-data-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// SQLite (bundled) in WAL mode, one table kv(k TEXT PRIMARY KEY, v BLOB).
    Sqlite {
        /// PRAGMA synchronous: full (D1) or normal (D0).
        #[arg(long)]
        synchronous: sqlite::Synchronous,
        #[command(flatten)]
        run: Run,
    },
    /// ADB (atek-db) on the journal of `open_journal` in src/adb.rs, its view in a file.
    Adb {
        #[command(flatten)]
        run: Run,
    },
    /// atek-log's file log (`atek_log::Log`), with a fresh writer key per log.
    Log {
        /// A fresh directory for the logs (one subdirectory per workload).
        #[arg(long)]
        dir: PathBuf,
        /// Workloads to run, comma-separated; they run in this order whatever the order given.
        #[arg(long, value_delimiter = ',', required = true)]
        workload: Vec<log::LogWorkload>,
        #[command(flatten)]
        counts: Counts,
        #[command(flatten)]
        open: log::OpenCounts,
        #[command(flatten)]
        replicate: replicate::ReplicateCounts,
    },
    /// The disk alone on atek-log's write pattern: pwrite of a frame's size at the end of a
    /// preallocated file + fdatasync (`single`, `batch100`), the ceiling of the log's rows.
    Disk {
        /// A fresh directory for the files (one subdirectory per workload).
        #[arg(long)]
        dir: PathBuf,
        /// Workloads to run, comma-separated; they run in this order whatever the order given.
        #[arg(long, value_delimiter = ',', required = true)]
        workload: Vec<disk::DiskWorkload>,
        /// The counts (`--single`, `--batches`, `--max-seconds`; the others are ignored).
        #[command(flatten)]
        counts: Counts,
    },
}

#[derive(Debug, Args)]
struct Run {
    /// A fresh directory for the stores (one subdirectory per store).
    #[arg(long)]
    dir: PathBuf,
    /// Workloads to run, comma-separated; they run in this order whatever the order given.
    #[arg(long, value_delimiter = ',', required = true)]
    workload: Vec<Workload>,
    #[command(flatten)]
    counts: Counts,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Sqlite { synchronous, run } => {
            sqlite::run(*synchronous, &run.dir, &run.workload, &run.counts)
        }
        Command::Adb { run } => adb::run(&run.dir, &run.workload, &run.counts),
        Command::Log {
            dir,
            workload,
            counts,
            open,
            replicate,
        } => log::run(dir, workload, counts, open, replicate),
        Command::Disk {
            dir,
            workload,
            counts,
        } => disk::run(dir, workload, counts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atek-data-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
