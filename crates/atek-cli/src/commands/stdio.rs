//! Stdin and stdout for `atek beam`, moving gigabytes with few system calls and copies.
//!
//! - A **pipe** (`tar c . | atek beam`, `atek beam | tar x`) is read and written on the
//!   command's own event loop: tokio switches it to non-blocking mode and waits for it with
//!   epoll, beam reads it straight into the blocks it hands to QUIC and writes QUIC's
//!   received segments to it with one vectored write each. Non-blocking mode belongs to the
//!   pipe's end, which other processes may share (`(atek beam; cat) < fifo`), so it is
//!   switched back when the [`Blocking`] guard that comes with the stream is dropped.
//! - **Anything else** (a file, a terminal, a socket) is read and written by a thread of its
//!   own in 256 KiB pieces, handed to the event loop through an in-memory pipe. tokio's own
//!   stdin reads 8 KiB at a time on its blocking pool, and Rust's stdout looks for newlines
//!   in every write.
//! - Stdout stays on the thread when stderr is the same pipe (`atek beam 2>&1 | …`): status
//!   lines are written with blocking writes, which a non-blocking pipe would refuse when it
//!   is full.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::unix::pipe;
use tokio_util::either::Either;

/// Bytes moved per read or write by the threads.
const CHUNK: usize = 256 << 10;

/// Stdin as the event loop reads it: the pipe itself, or a thread's in-memory pipe.
pub(crate) type Stdin = Either<pipe::Receiver, DuplexStream>;
/// Stdout as the event loop writes it: the pipe itself, or a thread's in-memory pipe.
pub(crate) type Stdout = Either<pipe::Sender, DuplexStream>;

/// Takes stdin (a duplicate of its descriptor). Keep the guard until the stream is done
/// with: it puts a pipe back in blocking mode when dropped.
pub(crate) fn stdin() -> anyhow::Result<(Stdin, Option<Blocking>)> {
    let fd = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("taking stdin")?;
    match pipe::Receiver::from_owned_fd(fd.try_clone().context("taking stdin")?) {
        Ok(pipe) => {
            grow(&pipe);
            Ok((Either::Left(pipe), Some(Blocking(fd))))
        }
        Err(_) => Ok((Either::Right(read_by_thread(fd)?), None)),
    }
}

/// Takes stdout (a duplicate of its descriptor).
pub(crate) fn stdout() -> anyhow::Result<(Stdout, Written)> {
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("taking stdout")?;
    if !shares_stderr(&fd)
        && let Ok(pipe) = pipe::Sender::from_owned_fd(fd.try_clone().context("taking stdout")?)
    {
        grow(&pipe);
        let written = Written {
            writer: None,
            _blocking: Some(Blocking(fd)),
        };
        return Ok((Either::Left(pipe), written));
    }
    let (stream, writer) = write_by_thread(fd)?;
    let written = Written {
        writer: Some(writer),
        _blocking: None,
    };
    Ok((Either::Right(stream), written))
}

/// Puts the pipe end it holds (a duplicate: the mode belongs to the end, shared by every
/// descriptor of it) back in blocking mode when dropped, for whoever else has it.
#[derive(Debug)]
pub(crate) struct Blocking(OwnedFd);

impl Drop for Blocking {
    fn drop(&mut self) {
        use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
        if let Ok(flags) = fcntl_getfl(&self.0) {
            let _ = fcntl_setfl(&self.0, flags - OFlags::NONBLOCK);
        }
    }
}

/// Waits until everything written to a [`Stdout`] is out; holds its pipe's [`Blocking`].
#[derive(Debug)]
pub(crate) struct Written {
    writer: Option<std::thread::JoinHandle<io::Result<()>>>,
    _blocking: Option<Blocking>,
}

impl Written {
    /// Once the [`Stdout`] is shut down: the first write error, if any.
    pub(crate) async fn wait(self) -> anyhow::Result<()> {
        let Some(writer) = self.writer else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || writer.join()).await {
            Ok(Ok(result)) => result.context("writing to stdout"),
            _ => anyhow::bail!("the thread writing stdout failed"),
        }
    }
}

/// A count of the bytes that went through a [`Counted`] stream, readable while it runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter(Arc<AtomicU64>);

impl Counter {
    /// The bytes so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A stream that counts the bytes read from it or written to it.
#[derive(Debug)]
pub(crate) struct Counted<T> {
    inner: T,
    counter: Counter,
}

impl<T> Counted<T> {
    pub(crate) fn new(inner: T, counter: Counter) -> Self {
        Self { inner, counter }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.counter.add(buf.filled().len() - before);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.counter.add(n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.counter.add(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Pipe buffers of this size: the writer and the reader of a pipe of gigabytes then wake
/// each other a sixteenth as often as with Linux's default 64 KiB. (The most an
/// unprivileged process may ask for, `/proc/sys/fs/pipe-max-size`, is 1 MiB by default.)
const PIPE_SIZE: usize = 1 << 20;

/// Grows the pipe `fd` is an end of to [`PIPE_SIZE`], if it is smaller and the system
/// allows it (a user over the pipe memory quota keeps the size there is).
fn grow(fd: impl AsFd) {
    if rustix::pipe::fcntl_getpipe_size(&fd).is_ok_and(|size| size < PIPE_SIZE) {
        let _ = rustix::pipe::fcntl_setpipe_size(&fd, PIPE_SIZE);
    }
}

/// Whether `stdout` is the same file as stderr (one pipe for both, `2>&1`).
fn shares_stderr(stdout: &OwnedFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    let file_of = |fd: OwnedFd| std::fs::File::from(fd).metadata();
    let (Ok(out), Ok(err)) = (
        stdout.try_clone().and_then(file_of),
        io::stderr().as_fd().try_clone_to_owned().and_then(file_of),
    ) else {
        // When in doubt, the thread: it works for everything.
        return true;
    };
    (out.dev(), out.ino()) == (err.dev(), err.ino())
}

/// `fd` read by a thread of its own in large chunks, as an async stream.
fn read_by_thread(fd: OwnedFd) -> anyhow::Result<DuplexStream> {
    use std::io::Read;

    let mut input = std::fs::File::from(fd);
    let (mut tx, rx) = tokio::io::duplex(2 * CHUNK);
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("beam-stdin".to_owned())
        .spawn(move || {
            use tokio::io::AsyncWriteExt;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading stdin failed");
                        break;
                    }
                };
                if runtime.block_on(tx.write_all(&buf[..n])).is_err() {
                    break;
                }
            }
            // Dropping `tx` is the end of input.
            let _ = runtime.block_on(tx.shutdown());
        })
        .context("starting the stdin thread")?;
    Ok(rx)
}

/// An async stream whose bytes a thread of its own writes to `fd` in large chunks; the
/// thread ends (with the first write error, if any) once the stream is shut down and
/// everything is written.
fn write_by_thread(
    fd: OwnedFd,
) -> anyhow::Result<(DuplexStream, std::thread::JoinHandle<io::Result<()>>)> {
    use std::io::Write;

    let mut output = std::fs::File::from(fd);
    let (tx, mut rx) = tokio::io::duplex(2 * CHUNK);
    let runtime = tokio::runtime::Handle::current();
    let writer = std::thread::Builder::new()
        .name("beam-stdout".to_owned())
        .spawn(move || {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = runtime.block_on(rx.read(&mut buf))?;
                if n == 0 {
                    return output.flush();
                }
                output.write_all(&buf[..n])?;
            }
        })
        .context("starting the stdout thread")?;
    Ok((tx, writer))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn counted_streams_count_what_passes_and_keep_vectored_writes() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let written = Counter::default();
        let mut out = Counted::new(a, written.clone());
        assert_eq!(out.is_write_vectored(), out.inner.is_write_vectored());
        out.write_all(b"hello ").await.unwrap();
        let slices = [io::IoSlice::new(b"wor"), io::IoSlice::new(b"ld")];
        let n = out.write_vectored(&slices).await.unwrap();
        out.shutdown().await.unwrap();
        assert_eq!(written.get(), 6 + n as u64);

        let read = Counter::default();
        let mut got = Vec::new();
        let mut input = Counted::new(&mut b, read.clone());
        input.read_to_end(&mut got).await.unwrap();
        assert_eq!(read.get(), got.len() as u64);
        assert!(got.starts_with(b"hello wo"), "{got:?}");
    }
}
