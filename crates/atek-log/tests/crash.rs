//! Kill -9 at random instants: every acknowledged entry survives, and the log reopens,
//! verifies and extends what it held before.
//!
//! The parent test re-executes this test binary as a child (`crash_child`, with
//! `ATEK_LOG_CRASH_DIR` set) that appends from four concurrent tasks in a loop, printing
//! each acknowledged append to stdout (flushed) as `ack {index} {count} {round} {task}
//! {seq}`. The parent kills it with SIGKILL at seeded random times, reopens the log and
//! checks. The child checkpoints every 32 KiB, so kills also land during checkpoints.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atek_core::SecretKey;
use atek_log::{Consistency, FileStorage, Log, check_heads};

const DIR_ENV: &str = "ATEK_LOG_CRASH_DIR";
const ROUND_ENV: &str = "ATEK_LOG_CRASH_ROUND";
const ROUNDS: u64 = 60;

fn key() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

/// The entry the child writes as entry `j` of append `seq` of task `task` in `round`.
fn content(round: u64, task: u64, seq: u64, j: u64) -> Vec<u8> {
    let mut e = format!("{round}:{task}:{seq}:{j}:").into_bytes();
    let filler = (round * 7919 + task * 104_729 + seq * 31 + j * 17) % 1500;
    e.extend((0..filler).map(|k| (k as u8).wrapping_mul(31).wrapping_add(task as u8)));
    e
}

/// Parses an entry's prefix and checks that the rest is what `content` makes.
fn well_formed(e: &[u8]) -> bool {
    let parts: Vec<&[u8]> = e.splitn(5, |&b| b == b':').collect();
    if parts.len() < 5 {
        return false;
    }
    let nums: Vec<u64> = parts[..4]
        .iter()
        .filter_map(|p| std::str::from_utf8(p).ok()?.parse().ok())
        .collect();
    nums.len() == 4 && content(nums[0], nums[1], nums[2], nums[3]) == e
}

/// The child: appends until it is killed (or 30 s pass, if the parent died).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Checkpoints every 32 KiB, so that kills also land in and around them.
        let mut store = FileStorage::open(&dir).unwrap();
        store.set_checkpoint_interval(32 << 10);
        let log = Log::with_storage(store, key()).unwrap();
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "ready {}", log.len()).unwrap();
            out.flush().unwrap();
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..4u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while started.elapsed() < Duration::from_secs(30) {
                    let count = if (task + seq).is_multiple_of(5) {
                        1 + seq % 7
                    } else {
                        1
                    };
                    let batch: Vec<Vec<u8>> =
                        (0..count).map(|j| content(round, task, seq, j)).collect();
                    let range = log.append_batch(batch).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {} {count} {round} {task} {seq}", range.start).unwrap();
                    out.flush().unwrap();
                    seq += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// A small seeded generator (xorshift64*), so every run kills at the same offsets.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    index: u64,
    count: u64,
    round: u64,
    task: u64,
    seq: u64,
}

/// Runs one child and kills it; returns the appends it acknowledged (complete lines only).
fn run_child(dir: &Path, round: u64, rng: &mut Rng) -> (Vec<Ack>, bool) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut ready = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A line cut by the kill has no newline: it was not fully acknowledged.
            let Some(l) = line.strip_suffix('\n') else {
                break;
            };
            // libtest may print its "test crash_child ... " on the same line first.
            if l.contains("ready ") && !ready {
                ready = true;
                let _ = ready_tx.send(());
            }
            let Some(at) = l.find("ack ") else {
                continue;
            };
            let f: Vec<&str> = l[at..].split(' ').collect();
            if f.len() == 6 && f[0] == "ack" {
                let n: Vec<u64> = f[1..].iter().map(|x| x.parse().unwrap()).collect();
                acks.push(Ack {
                    index: n[0],
                    count: n[1],
                    round: n[2],
                    task: n[3],
                    seq: n[4],
                });
            }
        }
        (acks, ready)
    });
    // One kill in four comes at a random instant in the child's first milliseconds
    // (possibly during its recovery); the others at a random instant after it is ready.
    if rng.below(4) == 0 {
        std::thread::sleep(Duration::from_micros(rng.below(12_000)));
    } else {
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

#[test]
fn acknowledged_entries_survive_sigkill() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = Log::create(&dir, key()).unwrap();
    let mut prev = log.head();
    rt.block_on(log.close()).unwrap();

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // Every acknowledged entry so far: (index, the hash of what was written).
    let mut acked: Vec<(u64, [u8; 32])> = Vec::new();
    let mut readies = 0;
    let mut rounds_with_acks = 0;
    for round in 0..ROUNDS {
        let (acks, ready) = run_child(&dir, round, &mut rng);
        readies += usize::from(ready);
        rounds_with_acks += usize::from(!acks.is_empty());
        let new_from = acked.len();
        for a in &acks {
            for j in 0..a.count {
                let e = content(a.round, a.task, a.seq, j);
                acked.push((a.index + j, *blake3::hash(&e).as_bytes()));
            }
        }

        let log = Log::open(&dir, key()).unwrap();
        let head = log.head();
        head.verify().unwrap();
        rt.block_on(async {
            // This round's acknowledged entries are all there, as written, and so is a
            // sample of the earlier rounds' (the consistency check below covers the rest:
            // the tree over them is unchanged).
            let earlier = new_from as u64;
            let sample = (0..earlier.min(64)).map(|_| rng.below(earlier) as usize);
            for k in (new_from..acked.len()).chain(sample) {
                let (i, hash) = acked[k];
                let got = log
                    .get(i)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: acknowledged entry {i} lost: {e}"));
                assert_eq!(blake3::hash(&got).as_bytes(), &hash, "entry {i}");
            }
            // Whatever else this round added is well-formed (entries are not torn).
            for i in prev.head.length..head.head.length {
                assert!(well_formed(&log.get(i).await.unwrap()), "entry {i}");
            }
            // The new head extends the one the last reopen found: no fork across crashes.
            let proof = log
                .consistency_proof(prev.head.length, head.head.length)
                .await
                .unwrap();
            assert_eq!(
                check_heads(&prev, &head, Some(&proof)).unwrap(),
                Consistency::Consistent
            );
            log.close().await.unwrap();
        });
        prev = head;
    }
    eprintln!(
        "{ROUNDS} kills ({readies} after the child was ready, {rounds_with_acks} after it \
         acknowledged appends), {} acknowledged entries, {} in the log, {:?}",
        acked.len(),
        prev.head.length,
        started.elapsed()
    );
    assert!(
        rounds_with_acks >= 20,
        "only {rounds_with_acks} rounds acknowledged anything"
    );
}
