//! Entry points for the fuzz targets (`fuzz/`): the HTTP/1 request head as a client sends it,
//! and a chunked body, each read from memory through the same code that reads sockets. Not an
//! API: they exist so that libFuzzer can drive the codec without a socket.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http1::{BodyReader, Conn, Framing};

/// What the head check of a request concluded (the fuzz targets assert on it).
#[derive(Debug, PartialEq, Eq)]
pub enum HeadOutcome {
    /// A head the proxy would serve, with the byte count the head took.
    Served { consumed: usize },
    /// A head refused (the client would get 4xx) or incomplete.
    Refused,
}

/// Reads one request head from `data` as the proxy reads a client's, then checks its target
/// and framing as the proxy does before anything goes upstream.
pub fn request_head(data: &[u8]) -> HeadOutcome {
    let mut conn = Conn::new(Memory::new(data));
    let Some(Ok(Some(head))) = conn.read_request_head().now_or_never() else {
        return HeadOutcome::Refused;
    };
    let consumed = data.len() - conn.buf.len() - conn.io.remaining();
    let target_ok = head.method.eq_ignore_ascii_case(b"CONNECT")
        || crate::flow::parse_absolute(&head.target).is_some();
    match crate::http1::request_framing(&head.version, &head.headers) {
        Ok(_) if target_ok => HeadOutcome::Served { consumed },
        _ => HeadOutcome::Refused,
    }
}

/// Reads `data` as a chunked body to its end; returns the body and trailer count when it is
/// well-formed.
pub fn chunked_body(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut conn = Conn::new(Memory::new(data));
    let mut reader = BodyReader::new(Framing::Chunked);
    let mut body = Vec::new();
    loop {
        match reader.next(&mut conn).now_or_never()? {
            Ok(Some(piece)) => body.extend_from_slice(&piece),
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    let trailers = reader.take_trailers().map_or(0, |t| t.len());
    Some((body, trailers))
}

/// A stream over a byte slice that is always ready: reads give the slice, then end of stream;
/// writes are discarded.
struct Memory<'a> {
    data: &'a [u8],
}

impl<'a> Memory<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn remaining(&self) -> usize {
        self.data.len()
    }
}

impl AsyncRead for Memory<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // A few bytes at a time, so that the parsers see heads and chunk lines split up.
        let n = self.data.len().min(buf.remaining()).min(7);
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Memory<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_chunked_bodies_read_from_memory() {
        let head = b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\nrest";
        assert_eq!(
            request_head(head),
            HeadOutcome::Served {
                consumed: head.len() - 4
            }
        );
        assert_eq!(
            request_head(b"POST http://x/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadOutcome::Refused
        );
        assert_eq!(
            chunked_body(b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"),
            Some((b"abc".to_vec(), 1))
        );
        assert_eq!(chunked_body(b"zz\r\n"), None);
        let mut endless = b"1;".to_vec();
        endless.extend(std::iter::repeat_n(b'a', 10_000));
        assert_eq!(chunked_body(&endless), None);
    }
}
