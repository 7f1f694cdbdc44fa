//! A unix socket stream registered with epoll for readability only: both ends of a script
//! session on a unix socket (the proxy's client and the worker's server).
//!
//! tokio registers a socket for reads and writes. On a unix socket, every message the peer
//! reads frees buffer space on the sender's side, and the kernel wakes the sender's epoll for
//! it: a thread wake-up for nothing after each message, in both processes, on every hook call.
//! Writes here go straight to the socket; only a write that would block waits for writability,
//! through a registration made for that wait alone.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected unix stream (see the module documentation).
#[derive(Debug)]
pub struct UnixConn {
    stream: AsyncFd<std::os::unix::net::UnixStream>,
    /// While a write waits for buffer space: a registration of a duplicate of the socket for
    /// writability.
    writable: Option<AsyncFd<OwnedFd>>,
    /// Watched by a runtime thread that spins before it parks.
    _watch: Option<flowtap_spin::Watch>,
}

impl UnixConn {
    /// Takes over a connected or accepted stream. Must run inside the runtime that serves it.
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<Self> {
        // into_std leaves the socket non-blocking and drops tokio's registration.
        let stream = stream.into_std()?;
        let watch = flowtap_spin::watch(&stream);
        Ok(Self {
            stream: register(stream, Interest::READABLE)?,
            writable: None,
            _watch: watch,
        })
    }

    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&std::os::unix::net::UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if let Some(writable) = &self.writable {
                let _ = ready!(writable.poll_write_ready(cx))?;
                self.writable = None;
            }
            match write(self.stream.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.stream.get_ref().as_fd().try_clone_to_owned()?;
                    self.writable = Some(register(fd, Interest::WRITABLE)?);
                }
                written => return Poll::Ready(written),
            }
        }
    }
}

fn register<T: AsRawFd>(io: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `io` owns its descriptor (a UnixStream or an OwnedFd), which stays open and
    // the same until the AsyncFd, which owns `io`, is dropped.
    unsafe { AsyncFd::register_with_interest(io, interest) }.map_err(|e| e.into_parts().1)
}

impl AsyncRead for UnixConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let len = unfilled.len();
            match guard.try_io(|stream| stream.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    if n > 0 && n < len {
                        // A short read emptied the socket (as tokio's own streams assume):
                        // wait for the next event instead of a read that would block.
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for UnixConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut stream| stream.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut stream| stream.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.get_ref().shutdown(Shutdown::Write))
    }
}

impl tonic::transport::server::Connected for UnixConn {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn large_writes_wait_for_the_reader_and_arrive_whole() {
        let (a, b) = tokio::net::UnixStream::pair().expect("pair");
        let (mut a, mut b) = (UnixConn::new(a).expect("a"), UnixConn::new(b).expect("b"));
        // Far more than a socket buffer holds: the writer must wait for writability.
        let data: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&data).await.expect("write");
            a.shutdown().await.expect("shutdown");
        });
        let mut received = Vec::new();
        b.read_to_end(&mut received).await.expect("read");
        writer.await.expect("writer");
        assert!(received == expected, "{} bytes received", received.len());
    }
}
