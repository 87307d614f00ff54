//! Copying between a local byte stream (a TCP connection, stdin, stdout) and a QUIC stream
//! with no copy of our own: what is read from the local side is handed to QUIC as it is,
//! and what QUIC received is written out from its own buffers.
//!
//! QUIC copies a stream's bytes into packets when it sends them and out of packets when it
//! receives them; an `AsyncRead`/`AsyncWrite` copy (`tokio::io::copy`, `RecvStream::read`)
//! adds one more copy each way, through a buffer of its own. On a small machine, where a
//! pipe is bound by CPU, that copy and the many small writes it makes are throughput lost.

use std::io::{self, IoSlice};

use bytes::{Buf as _, Bytes, BytesMut};
use iroh::endpoint::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// How much each read of the local side may take: the size of the blocks handed to QUIC.
/// Below glibc's threshold for giving memory straight back to the kernel (128 KiB), so
/// that a freed block is reused without fresh page faults.
const BLOCK: usize = 64 << 10;
/// A block with less room than this left is not read into again: a new one is taken.
const MIN_READ: usize = 16 << 10;
/// How many received segments one vectored write takes (QUIC hands them over a packet's
/// payload at a time, about 1.2 KiB each).
const SEGMENTS: usize = 64;

/// Why a copy stopped early.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading or writing the local side failed.
    Local(io::Error),
    /// The QUIC side failed: the connection or the stream was lost, or the peer stopped it.
    Peer(String),
}

/// Reads `input` to its end, sending everything on `send`. Returns the bytes sent; does
/// not finish the stream.
pub(crate) async fn send_from<R>(input: &mut R, send: &mut SendStream) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut block = BytesMut::with_capacity(BLOCK);
    let mut sent = 0u64;
    loop {
        if block.capacity() < MIN_READ {
            // Takes the old block back if QUIC is done with all of it, else a new one.
            block.reserve(BLOCK);
        }
        let n = input.read_buf(&mut block).await.map_err(CopyError::Local)?;
        if n == 0 {
            return Ok(sent);
        }
        send.write_chunk(block.split().freeze())
            .await
            .map_err(|e| CopyError::Peer(e.to_string()))?;
        sent += n as u64;
    }
}

/// Writes everything `recv` delivers to `output` until the peer finishes the stream.
/// Returns the bytes written; does not flush or shut down `output`. Outputs that take
/// vectored writes (sockets, pipes) get QUIC's received segments as they are; others get
/// them gathered into one buffer first.
pub(crate) async fn recv_into<W>(recv: &mut RecvStream, output: &mut W) -> Result<u64, CopyError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let peer = |e: iroh::endpoint::ReadError| CopyError::Peer(e.to_string());
    let mut written = 0u64;
    if output.is_write_vectored() {
        let mut segments = vec![Bytes::new(); SEGMENTS];
        while let Some(n) = recv.read_many_chunks(&mut segments).await.map_err(peer)? {
            written += write_segments(output, &mut segments[..n])
                .await
                .map_err(CopyError::Local)?;
        }
    } else {
        let mut buf = vec![0u8; BLOCK];
        while let Some(n) = recv.read(&mut buf).await.map_err(peer)? {
            output
                .write_all(&buf[..n])
                .await
                .map_err(CopyError::Local)?;
            written += n as u64;
        }
    }
    Ok(written)
}

/// Writes all of `segments` to `output` with vectored writes, releasing each segment once
/// it is written.
async fn write_segments<W>(output: &mut W, segments: &mut [Bytes]) -> io::Result<u64>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let total: usize = segments.iter().map(Bytes::len).sum();
    let mut first = 0;
    while first < segments.len() {
        let slices: Vec<IoSlice<'_>> = segments[first..].iter().map(|s| IoSlice::new(s)).collect();
        let mut n = output.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let segment = &mut segments[first];
            if n >= segment.len() {
                n -= segment.len();
                *segment = Bytes::new();
                first += 1;
            } else {
                segment.advance(n);
                n = 0;
            }
        }
        // Skip segments that were empty to begin with.
        while first < segments.len() && segments[first].is_empty() {
            first += 1;
        }
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A writer that takes at most `limit` bytes per call, vectored or not.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.got.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let mut left = self.limit;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.got.extend_from_slice(&b[..k]);
                left -= k;
                n += k;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_vectored_writes_keep_every_byte_in_order() {
        for limit in [1, 3, 7, 1000] {
            let mut segments: Vec<Bytes> = ["abc", "", "defgh", "i", "", "jklmnop"]
                .iter()
                .map(|s| Bytes::from_static(s.as_bytes()))
                .collect();
            let mut out = Trickle {
                got: Vec::new(),
                limit,
            };
            let n = write_segments(&mut out, &mut segments).await.unwrap();
            assert_eq!(n, 16);
            assert_eq!(out.got, b"abcdefghijklmnop", "limit {limit}");
            assert!(segments.iter().all(Bytes::is_empty), "segments released");
        }
    }
}
