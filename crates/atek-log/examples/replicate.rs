//! Verified replication throughput: a writer's memory log serves a replica that asks for
//! everything, both sides on this one thread (so the time is the sum of serving and
//! verifying), no transport but moving each frame from one to the other. The replica is
//! in memory, or with `file`, a `FileStorage` in a temporary directory (one `fdatasync`
//! per batch of 1 MiB, as a durable replica does).
//!
//! ```text
//! cargo run --release -p atek-log --example replicate [total MiB per run, default 256] [file]
//! ```
#![allow(clippy::unwrap_used)]
// The held ranges are checked as a one-range `Vec`.
#![allow(clippy::single_range_in_vec_init)]

use std::time::Instant;

use atek_core::SecretKey;
use atek_log::sync::{ReaderEvent, ReaderSession, ServerSession};
use atek_log::{FileStorage, Log, MemoryStorage, Replica, Storage};

fn main() {
    let total_mib: usize = std::env::args()
        .nth(1)
        .map_or(256, |a| a.parse().expect("total MiB"));
    let file = std::env::args().nth(2).as_deref() == Some("file");
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "replica in {}",
        if file {
            "a file store (durable)"
        } else {
            "memory"
        }
    );
    println!(
        "entry size | entries | MiB | seconds | MB/s | entries/s | frames | bytes sent per entry byte"
    );
    for size in [1usize << 10, 64 << 10] {
        let count = (total_mib << 20) / size;
        let log = Log::open_memory(SecretKey::generate()).unwrap();
        let per_batch = ((8 << 20) / size).max(1);
        let mut i = 0;
        while i < count {
            let n = per_batch.min(count - i);
            let batch: Vec<Vec<u8>> = (i..i + n)
                .map(|j| {
                    let mut e = vec![(j % 251) as u8; size];
                    e[..8].copy_from_slice(&(j as u64).to_be_bytes());
                    e
                })
                .collect();
            rt.block_on(log.append_batch(batch)).unwrap();
            i += n;
        }

        let source = log.source();
        let store: Box<dyn Storage> = if file {
            Box::new(FileStorage::create(tmp.path().join(format!("r{size}"))).unwrap())
        } else {
            Box::new(MemoryStorage::new())
        };
        let mut replica = Replica::with_storage(store, log.id()).unwrap();
        let mut reader = ReaderSession::new(&replica);
        let mut server = ServerSession::new(log.id());
        reader.want(0..count as u64);
        let (mut frames, mut bytes) = (0u64, 0u64);
        let start = Instant::now();
        loop {
            let mut moved = false;
            while let Some(b) = reader.poll_transmit() {
                server.handle_input(&b);
                moved = true;
            }
            while let Some(b) = server.poll_transmit(&source) {
                frames += 1;
                bytes += b.len() as u64;
                reader.handle_input(&b, &mut replica);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let mut done = false;
        while let Some(e) = reader.poll_event() {
            assert!(!matches!(e, ReaderEvent::Closed(_)), "{e:?}");
            done |= e == ReaderEvent::WantDone(0..count as u64);
        }
        assert!(done);
        assert_eq!(replica.held(), vec![0..count as u64]);
        let data = (count * size) as f64;
        println!(
            "{:>7} KiB | {count:>7} | {total_mib:>4} | {secs:>7.3} | {:>7.0} | {:>9.0} | {frames:>6} | {:.4}",
            size >> 10,
            data / secs / 1e6,
            count as f64 / secs,
            bytes as f64 / data,
        );
    }
}
