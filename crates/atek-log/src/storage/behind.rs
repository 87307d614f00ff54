//! Writes to a cache file held back in memory and written out in bulk: a file store's
//! `index` and `tree` caches get a few bytes per entry in every group, and writing them at
//! each group cost system calls on the path of every append. Held back, they reach the
//! file when enough has gathered and before every checkpoint.
//!
//! Nothing here needs to survive a crash: the caches are derived data, and an open
//! re-derives everything after the last checkpoint from the `log` file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A cache file and the writes to it not yet written out.
#[derive(Debug)]
pub(super) struct WriteBehind {
    file: File,
    /// Writes held back, by offset: never overlapping, and merged when they touch.
    pending: BTreeMap<u64, Vec<u8>>,
    /// The bytes in `pending`.
    bytes: usize,
}

/// Held-back bytes past which a write writes everything out.
const MAX_PENDING: usize = 1 << 20;

impl WriteBehind {
    pub(super) fn new(file: File) -> Self {
        Self {
            file,
            pending: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// The file, for what does not go through the held-back writes (its length, syncs).
    /// Call [`WriteBehind::flush`] or [`WriteBehind::discard`] before changing it.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Writes `data` at `offset`, now or later. A write that overlaps one held back writes
    /// everything out first, so held-back writes never overlap.
    pub(super) fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        if self.overlaps(offset, end) {
            self.flush()?;
        }
        match self.pending.range_mut(..=offset).next_back() {
            Some((&start, held)) if start + held.len() as u64 == offset => {
                held.extend_from_slice(data);
            }
            _ => {
                self.pending.insert(offset, data.to_vec());
            }
        }
        self.bytes += data.len();
        // A write that ends where the next one starts joins it.
        if let Some(next) = self.pending.remove(&end) {
            match self.pending.range_mut(..end).next_back() {
                Some((_, held)) => held.extend_from_slice(&next),
                // Not reached (the write just made ends at `end`); keep it apart then.
                None => {
                    self.pending.insert(end, next);
                }
            }
        }
        if self.bytes >= MAX_PENDING {
            self.flush()?;
        }
        Ok(())
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        let before = self
            .pending
            .range(..start)
            .next_back()
            .is_some_and(|(&s, held)| s + held.len() as u64 > start);
        before || self.pending.range(start..end).next().is_some()
    }

    /// Reads `buf.len()` bytes at `offset`: the file's bytes with the held-back writes
    /// over them. Fails as `read_exact_at` does when neither has all of them.
    pub(super) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        // Bytes the file has.
        let mut got = 0;
        while got < buf.len() {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The held-back writes over them; past the file's end they must leave no gap.
        let mut covered = offset + got as u64;
        let first = self
            .pending
            .range(..=offset)
            .next_back()
            .map_or(offset, |(&s, _)| s);
        for (&start, held) in self.pending.range(first..end) {
            let held_end = start + held.len() as u64;
            if held_end <= offset {
                continue;
            }
            let (from, to) = (start.max(offset), held_end.min(end));
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&held[(from - start) as usize..(to - start) as usize]);
            if from <= covered {
                covered = covered.max(to);
            }
        }
        if covered < end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "failed to fill whole buffer",
            ));
        }
        Ok(())
    }

    /// Writes everything held back to the file (no sync).
    pub(super) fn flush(&mut self) -> io::Result<()> {
        while let Some((offset, held)) = self.pending.pop_first() {
            self.bytes -= held.len();
            if let Err(e) = self.file.write_all_at(&held, offset) {
                // Keep what was not written, so that a later flush can try again.
                self.bytes += held.len();
                self.pending.insert(offset, held);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Forgets everything held back (before the file is truncated or rebuilt).
    pub(super) fn discard(&mut self) {
        self.pending.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(w: &WriteBehind, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        w.read_exact_at(&mut buf, offset).map(|()| buf)
    }

    #[test]
    fn reads_see_held_writes_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.write_all_at(b"0123456789", 0).unwrap();
        let mut w = WriteBehind::new(file);
        w.write_at(b"ab", 2).unwrap();
        w.write_at(b"cd", 4).unwrap(); // joins the held write before it
        w.write_at(b"XY", 12).unwrap(); // past the file's end, after a gap
        assert_eq!(w.pending.len(), 2);
        assert_eq!(read(&w, 0, 10).unwrap(), b"01abcd6789");
        assert_eq!(read(&w, 12, 2).unwrap(), b"XY");
        // Bytes 10 and 11 are in neither the file nor a held write.
        assert!(read(&w, 8, 6).is_err());
        w.write_at(b"zz", 10).unwrap(); // fills the gap and joins both sides
        assert_eq!(w.pending.len(), 2);
        assert_eq!(read(&w, 8, 6).unwrap(), b"89zzXY");
        // An overlapping write writes everything out first.
        w.write_at(b"Q", 3).unwrap();
        assert_eq!(read(&w, 0, 14).unwrap(), b"01aQcd6789zzXY");
        w.flush().unwrap();
        assert!(w.pending.is_empty());
        assert_eq!(w.bytes, 0);
        let mut all = vec![0u8; 14];
        w.file().read_exact_at(&mut all, 0).unwrap();
        assert_eq!(all, b"01aQcd6789zzXY");
    }

    #[test]
    fn writes_out_once_enough_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut w = WriteBehind::new(file);
        let chunk = vec![7u8; 4096];
        for i in 0..(MAX_PENDING / 4096) as u64 {
            w.write_at(&chunk, i * 4096).unwrap();
        }
        assert!(w.pending.is_empty());
        assert_eq!(w.file().metadata().unwrap().len(), MAX_PENDING as u64);
    }
}
