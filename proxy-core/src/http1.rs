//! HTTP/1.x message heads and body framing, read and written by hand.
//!
//! The proxy keeps header names, order and duplicates exactly as received (mitmproxy does, and
//! flow files record them), which is why heads are parsed with `httparse` into [`Header`] lists
//! rather than through a normalising library. Bodies are relayed chunk by chunk; they are
//! collected only when a hook or a sink needs them.

use bytes::{Bytes, BytesMut};
use flowtap_flow::spill;
use flowtap_proto::v1::Header;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Http1Error;

/// Most header fields a head may carry.
const MAX_HEADERS: usize = 128;
/// Largest head accepted (request line plus headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bodies up to this size are written in one piece with their head.
const COALESCE_BYTES: usize = 16 * 1024;
/// Longest chunk size line accepted, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// How much is read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// A request line and its headers.
#[derive(Clone, Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Bytes,
    pub(crate) target: Bytes,
    pub(crate) version: Bytes,
    pub(crate) headers: Vec<Header>,
}

/// A status line and its headers.
#[derive(Clone, Debug)]
pub(crate) struct ResponseHead {
    pub(crate) version: Bytes,
    pub(crate) status: u16,
    pub(crate) reason: Bytes,
    pub(crate) headers: Vec<Header>,
}

/// How a message body is delimited on the wire (RFC 9112 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, possibly with trailers.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// One side of an HTTP/1 connection: the stream and the bytes read ahead of the parser.
pub(crate) struct Conn<S> {
    pub(crate) io: S,
    pub(crate) buf: BytesMut,
    /// How long a read may wait for a byte (client connections); none for servers.
    pub(crate) idle: Option<std::time::Duration>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) fn new(io: S) -> Self {
        Self::with_buffer(io, BytesMut::with_capacity(8 * 1024))
    }

    pub(crate) fn with_buffer(io: S, buf: BytesMut) -> Self {
        Self {
            io,
            buf,
            idle: None,
        }
    }

    /// Reads more bytes into the buffer; 0 means end of stream. On a connection with an idle
    /// deadline, waiting longer than it for a byte is a `TimedOut` error.
    pub(crate) async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(READ_CHUNK);
        }
        match self.idle {
            None => self.io.read_buf(&mut self.buf).await,
            Some(idle) => tokio::time::timeout(idle, self.io.read_buf(&mut self.buf))
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no data from the client for {idle:?}"),
                    ))
                }),
        }
    }

    /// Reads the next request head. `Ok(None)` is a clean end of stream between requests.
    pub(crate) async fn read_request_head(&mut self) -> Result<Option<RequestHead>, Http1Error> {
        loop {
            if !self.buf.is_empty() {
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut fields);
                match req.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let method = req.method.unwrap_or_default().as_bytes().to_vec();
                        let target = req.path.unwrap_or_default().as_bytes().to_vec();
                        let version = version_bytes(req.version.unwrap_or(1));
                        let offsets = header_offsets(&self.buf, req.headers);
                        let head = self.buf.split_to(len).freeze();
                        return Ok(Some(RequestHead {
                            method: method.into(),
                            target: target.into(),
                            version,
                            headers: headers_from(&head, &offsets),
                        }));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(Http1Error::Malformed(e.to_string())),
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(Http1Error::HeadTooLarge);
                }
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Http1Error::Truncated)
                };
            }
        }
    }

    /// Reads the next response head, skipping nothing: 1xx heads are returned too.
    pub(crate) async fn read_response_head(&mut self) -> Result<ResponseHead, Http1Error> {
        loop {
            if !self.buf.is_empty() {
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut fields);
                match res.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = res.code.unwrap_or(0);
                        let reason = res.reason.unwrap_or_default().as_bytes().to_vec();
                        let version = version_bytes(res.version.unwrap_or(1));
                        let offsets = header_offsets(&self.buf, res.headers);
                        let head = self.buf.split_to(len).freeze();
                        return Ok(ResponseHead {
                            version,
                            status,
                            reason: reason.into(),
                            headers: headers_from(&head, &offsets),
                        });
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(Http1Error::Malformed(e.to_string())),
                }
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(Http1Error::HeadTooLarge);
                }
            }
            if self.fill().await? == 0 {
                return Err(if self.buf.is_empty() {
                    Http1Error::ClosedBeforeResponse
                } else {
                    Http1Error::Truncated
                });
            }
        }
    }
}

fn version_bytes(minor: u8) -> Bytes {
    Bytes::from_static(if minor == 0 { b"HTTP/1.0" } else { b"HTTP/1.1" })
}

/// Byte ranges of each header's name and value inside `buf`, so the head can be frozen once
/// and sliced without copying.
fn header_offsets(buf: &[u8], headers: &[httparse::Header<'_>]) -> Vec<[(usize, usize); 2]> {
    let base = buf.as_ptr() as usize;
    headers
        .iter()
        .map(|h| {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            [(name, name + h.name.len()), (value, value + h.value.len())]
        })
        .collect()
}

fn headers_from(head: &Bytes, offsets: &[[(usize, usize); 2]]) -> Vec<Header> {
    offsets
        .iter()
        .map(|[(ns, ne), (vs, ve)]| Header {
            name: head.slice(*ns..*ne),
            value: head.slice(*vs..*ve),
        })
        .collect()
}

/// The first value of header `name` (case-insensitive).
pub(crate) fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.as_ref())
}

/// True when a comma-separated header `name` lists `token` (case-insensitive).
pub(crate) fn header_has_token(headers: &[Header], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name.as_bytes()))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The framing of a request body (RFC 9112 6.3), refusing what could be read two ways (request
/// smuggling): Transfer-Encoding together with Content-Length, Transfer-Encoding in HTTP/1.0,
/// a coding list that does not end in chunked, and a Content-Length that is not digits.
pub(crate) fn request_framing(version: &[u8], headers: &[Header]) -> Result<Framing, Http1Error> {
    if header(headers, "transfer-encoding").is_some() {
        if version == b"HTTP/1.0" {
            return Err(Http1Error::Malformed(
                "transfer-encoding in an HTTP/1.0 request".into(),
            ));
        }
        if header(headers, "content-length").is_some() {
            return Err(Http1Error::Malformed(
                "both transfer-encoding and content-length in a request".into(),
            ));
        }
        let last = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(b"transfer-encoding"))
            .flat_map(|h| h.value.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|t| !t.is_empty());
        return match last {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(Http1Error::Malformed(
                "request transfer-encoding does not end in chunked".into(),
            )),
        };
    }
    match content_length(headers)? {
        Some(0) | None => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// The framing of a response body to a request with `method`.
pub(crate) fn response_framing(
    method: &[u8],
    status: u16,
    headers: &[Header],
) -> Result<Framing, Http1Error> {
    if method.eq_ignore_ascii_case(b"HEAD")
        || (100..200).contains(&status)
        || matches!(status, 204 | 304)
    {
        return Ok(Framing::Empty);
    }
    if header_has_token(headers, "transfer-encoding", "chunked") {
        return Ok(Framing::Chunked);
    }
    if header(headers, "transfer-encoding").is_some() {
        return Ok(Framing::Close);
    }
    match content_length(headers)? {
        Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Close),
    }
}

fn content_length(headers: &[Header]) -> Result<Option<u64>, Http1Error> {
    let mut found: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"content-length"))
    {
        // Digits only (RFC 9110 8.6): `parse` would also take a leading `+`.
        let digits = h.value.trim_ascii();
        let n = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| {
                Http1Error::Malformed(format!(
                    "invalid content-length {:?}",
                    String::from_utf8_lossy(&h.value)
                ))
            })?;
        if found.is_some_and(|f| f != n) {
            return Err(Http1Error::Malformed("conflicting content-length".into()));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Headers that describe one connection rather than the message (RFC 9110 7.6.1), plus the
/// framing headers the writer sets itself. They are kept in the flow but not forwarded.
pub(crate) fn is_hop_by_hop(name: &[u8], connection_tokens: &[Bytes]) -> bool {
    const HOP: [&[u8]; 8] = [
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"content-length",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection_tokens
            .iter()
            .any(|t| name.eq_ignore_ascii_case(t))
}

/// The header names listed in `Connection`.
pub(crate) fn connection_tokens(headers: &[Header]) -> Vec<Bytes> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(b"connection"))
        .flat_map(|h| {
            h.value
                .split(|b| *b == b',')
                .map(|t| Bytes::copy_from_slice(t.trim_ascii()))
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Appends the end-to-end headers of `headers` to `out` as `Name: value\r\n` lines, then the
/// framing header for the outgoing `framing`. A framing header the message already carries with
/// the same meaning stays where it was, spelled as received (header case and order are
/// preserved); one that no longer fits is dropped and the right one appended.
pub(crate) fn write_end_to_end(
    out: &mut Vec<u8>,
    headers: &[Header],
    keep_upgrade: bool,
    framing: Framing,
) {
    let tokens = connection_tokens(headers);
    let mut framed = false;
    for h in headers {
        let upgrade = keep_upgrade
            && (h.name.eq_ignore_ascii_case(b"upgrade")
                || h.name.eq_ignore_ascii_case(b"connection"));
        if !framed && keeps_framing(h, framing) {
            framed = true;
            push_header(out, &h.name, &h.value);
            continue;
        }
        if !upgrade && is_hop_by_hop(&h.name, &tokens) {
            continue;
        }
        push_header(out, &h.name, &h.value);
    }
    if !framed {
        push_framing(out, framing);
    }
}

/// True when header `h` already says what `framing` needs said. For a message without a body
/// (HEAD, 204, 304) the announced length is kept as is.
fn keeps_framing(h: &Header, framing: Framing) -> bool {
    match framing {
        Framing::Length(n) => {
            h.name.eq_ignore_ascii_case(b"content-length")
                && h.value.trim_ascii() == n.to_string().as_bytes()
        }
        Framing::Chunked => {
            h.name.eq_ignore_ascii_case(b"transfer-encoding")
                && h.value.trim_ascii().eq_ignore_ascii_case(b"chunked")
        }
        Framing::Empty => h.name.eq_ignore_ascii_case(b"content-length"),
        Framing::Close => false,
    }
}

pub(crate) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the framing header for `framing` (nothing for Empty or Close).
fn push_framing(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(n) => push_header(out, b"content-length", n.to_string().as_bytes()),
        Framing::Chunked => push_header(out, b"transfer-encoding", b"chunked"),
        Framing::Empty | Framing::Close => {}
    }
}

/// The framing for a body held in memory: chunked if the message says so, else a length.
pub(crate) fn buffered_framing(
    headers: &[Header],
    content: Option<&[u8]>,
    is_request: bool,
) -> Framing {
    let len = content.map_or(0, <[u8]>::len) as u64;
    if header_has_token(headers, "transfer-encoding", "chunked") {
        Framing::Chunked
    } else if len > 0 || header(headers, "content-length").is_some() || !is_request {
        Framing::Length(len)
    } else {
        Framing::Empty
    }
}

/// Serialises a response head for the client.
pub(crate) fn response_head_bytes(
    response: &flowtap_proto::v1::Response,
    framing: Framing,
    close: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let status = u16::try_from(response.status_code).unwrap_or(500);
    flowtap_telemetry::proxy::response(status);
    out.extend_from_slice(format!("HTTP/1.1 {status} ").as_bytes());
    out.extend_from_slice(&response.reason);
    out.extend_from_slice(b"\r\n");
    // HEAD, 204 and 304 keep the length the server announced.
    write_end_to_end(&mut out, &response.headers, status == 101, framing);
    if close {
        push_header(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes a response held in memory, as the answer to a request with `method`, and flushes.
pub(crate) async fn write_full_response<W>(
    io: &mut W,
    response: &flowtap_proto::v1::Response,
    method: &[u8],
    close: bool,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let status = u16::try_from(response.status_code).unwrap_or(500);
    let no_body = method.eq_ignore_ascii_case(b"HEAD")
        || (100..200).contains(&status)
        || matches!(status, 204 | 304);
    let framing = if no_body {
        Framing::Empty
    } else {
        buffered_framing(&response.headers, response.content.as_deref(), false)
    };
    let mut out = response_head_bytes(response, framing, close);
    let content = response.content.as_deref().unwrap_or_default();
    if framing == Framing::Chunked {
        io.write_all(&out).await?;
        write_body_piece(io, framing, content).await?;
        let trailers = response.trailers.as_ref().map(|t| t.fields.as_slice());
        write_body_end(io, framing, trailers).await?;
    } else if !no_body && content.len() <= COALESCE_BYTES {
        // A small body leaves with its head in one write.
        out.extend_from_slice(content);
        io.write_all(&out).await?;
    } else if !no_body {
        // A large one is not copied behind the head: two writes.
        io.write_all(&out).await?;
        write_held(io, content).await?;
    } else {
        io.write_all(&out).await?;
    }
    io.flush().await
}

/// Relays bytes both ways between two connections until both sides closed: first what each
/// read past what was parsed (it belongs to the other side), then whatever arrives. The one
/// byte relay of tunnels to ignored hosts, upgraded connections, and WebSocket and TCP flows
/// that are not inspected; callers bound it (idle deadline, kill).
pub(crate) async fn splice<A, B>(a: &mut Conn<A>, b: &mut Conn<B>) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let pending = b.buf.split();
    a.io.write_all(&pending).await?;
    let pending = a.buf.split();
    b.io.write_all(&pending).await?;
    tokio::io::copy_bidirectional(&mut a.io, &mut b.io).await
}

/// A body being read from a connection, chunk by chunk.
pub(crate) struct BodyReader {
    framing: Framing,
    /// Bytes left in the current chunk (or in a Length body).
    remaining: u64,
    /// The CRLF that ends a chunk's data has not been read yet.
    crlf_due: bool,
    done: bool,
    trailers: Option<Vec<Header>>,
}

impl BodyReader {
    pub(crate) fn new(framing: Framing) -> Self {
        let (remaining, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::Close => (0, false),
        };
        Self {
            framing,
            remaining,
            crlf_due: false,
            done,
            trailers: None,
        }
    }

    /// How the body is delimited.
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// The trailers of a chunked body read to its end, without taking them.
    pub(crate) fn trailers_ref(&self) -> Option<&[Header]> {
        self.trailers.as_deref()
    }

    /// The trailers of a chunked body, once it has been read to its end.
    pub(crate) fn take_trailers(&mut self) -> Option<Vec<Header>> {
        self.trailers.take()
    }

    /// The next piece of the body, or `None` at its end.
    pub(crate) async fn next<S>(&mut self, conn: &mut Conn<S>) -> Result<Option<Bytes>, Http1Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.done {
            return Ok(None);
        }
        match self.framing {
            Framing::Empty => Ok(None),
            Framing::Length(_) => {
                let piece = self.take_up_to(conn, self.remaining).await?;
                self.remaining -= piece.len() as u64;
                self.done = self.remaining == 0;
                Ok(Some(piece))
            }
            Framing::Close => {
                if conn.buf.is_empty() && conn.fill().await? == 0 {
                    self.done = true;
                    return Ok(None);
                }
                Ok(Some(conn.buf.split().freeze()))
            }
            Framing::Chunked => self.next_chunked(conn).await,
        }
    }

    async fn take_up_to<S>(&mut self, conn: &mut Conn<S>, max: u64) -> Result<Bytes, Http1Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if conn.buf.is_empty() && conn.fill().await? == 0 {
            return Err(Http1Error::Truncated);
        }
        let n = (conn.buf.len() as u64).min(max) as usize;
        Ok(conn.buf.split_to(n).freeze())
    }

    async fn next_chunked<S>(&mut self, conn: &mut Conn<S>) -> Result<Option<Bytes>, Http1Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if self.remaining > 0 {
                let piece = self.take_up_to(conn, self.remaining).await?;
                self.remaining -= piece.len() as u64;
                return Ok(Some(piece));
            }
            // Between chunks: the CRLF ending the previous chunk's data, then the next size
            // line. The CRLF must be consumed first: httparse reads a bare CRLF as an empty
            // size line of size 0, which would end the body early.
            if self.crlf_due {
                while conn.buf.len() < 2 {
                    if conn.fill().await? == 0 {
                        return Err(Http1Error::Truncated);
                    }
                }
                if &conn.buf[..2] != b"\r\n" {
                    return Err(Http1Error::Malformed(
                        "chunk data not followed by CRLF".into(),
                    ));
                }
                let _ = conn.buf.split_to(2);
                self.crlf_due = false;
            }
            match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete((len, size))) => {
                    let _ = conn.buf.split_to(len);
                    if size == 0 {
                        self.trailers = Some(read_trailers(conn).await?);
                        self.done = true;
                        return Ok(None);
                    }
                    // The chunk data is followed by CRLF, consumed before the next size line.
                    self.remaining = size;
                    self.crlf_due = true;
                    let piece = self.take_up_to(conn, size).await?;
                    self.remaining -= piece.len() as u64;
                    return Ok(Some(piece));
                }
                Ok(httparse::Status::Partial) => {
                    // A size line (with its extensions) has no business being long: one that
                    // never ends must not grow the buffer, nor be re-scanned without end.
                    if conn.buf.len() > MAX_CHUNK_LINE {
                        return Err(Http1Error::Malformed(format!(
                            "chunk size line longer than {MAX_CHUNK_LINE} bytes"
                        )));
                    }
                    if conn.fill().await? == 0 {
                        return Err(Http1Error::Truncated);
                    }
                }
                Err(_) => return Err(Http1Error::Malformed("invalid chunk size".into())),
            }
        }
    }
}

/// Reads the trailer section after the last chunk, up to and including the empty line.
async fn read_trailers<S>(conn: &mut Conn<S>) -> Result<Vec<Header>, Http1Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(&conn.buf, &mut fields) {
            Ok(httparse::Status::Complete((len, parsed))) => {
                let offsets = header_offsets(&conn.buf, parsed);
                let block = conn.buf.split_to(len).freeze();
                return Ok(headers_from(&block, &offsets));
            }
            Ok(httparse::Status::Partial) => {
                if conn.buf.len() > MAX_HEAD_BYTES {
                    return Err(Http1Error::HeadTooLarge);
                }
                if conn.fill().await? == 0 {
                    return Err(Http1Error::Truncated);
                }
            }
            Err(e) => return Err(Http1Error::Malformed(format!("trailers: {e}"))),
        }
    }
}

/// Writes one piece of a body with the given outgoing framing.
pub(crate) async fn write_body_piece<W>(
    out: &mut W,
    framing: Framing,
    piece: &[u8],
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    if piece.is_empty() {
        return Ok(());
    }
    if framing == Framing::Chunked {
        let size = format!("{:x}\r\n", piece.len());
        out.write_all(size.as_bytes()).await?;
        write_held(out, piece).await?;
        out.write_all(b"\r\n").await
    } else {
        write_held(out, piece).await
    }
}

/// Writes body bytes. A body held on disk (`flowtap_flow::spill`) goes in slices whose pages
/// are given back once written, so that sending it does not make it resident.
pub(crate) async fn write_held<W>(out: &mut W, data: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    if !spill::is_spilled(data) {
        return out.write_all(data).await;
    }
    for slice in data.chunks(spill::SLICE_BYTES) {
        out.write_all(slice).await?;
        spill::release(slice);
    }
    Ok(())
}

/// Ends a body: for chunked framing the last chunk and the trailers.
pub(crate) async fn write_body_end<W>(
    out: &mut W,
    framing: Framing,
    trailers: Option<&[Header]>,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    if framing != Framing::Chunked {
        return Ok(());
    }
    let mut end = b"0\r\n".to_vec();
    for h in trailers.unwrap_or_default() {
        push_header(&mut end, &h.name, &h.value);
    }
    end.extend_from_slice(b"\r\n");
    out.write_all(&end).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(wire: &[u8], framing: Framing) -> (Vec<u8>, Option<Vec<Header>>, Vec<u8>) {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        a.write_all(wire).await.unwrap();
        drop(a);
        let mut conn = Conn::new(b);
        let mut body = BodyReader::new(framing);
        let mut out = Vec::new();
        while let Some(piece) = body.next(&mut conn).await.unwrap() {
            out.extend_from_slice(&piece);
        }
        (out, body.take_trailers(), conn.buf.to_vec())
    }

    #[tokio::test]
    async fn chunked_body_with_trailers_and_pipelined_rest() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 1\r\nX-Two: 2\r\n\r\nGET";
        let (body, trailers, rest) = read_all(wire, Framing::Chunked).await;
        assert_eq!(body, b"hello world");
        let trailers = trailers.unwrap();
        assert_eq!(trailers.len(), 2);
        assert_eq!(&trailers[0].name[..], b"X-Sum");
        assert_eq!(rest, b"GET");
    }

    #[tokio::test]
    async fn truncated_chunked_body_is_an_error() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"5\r\nhel").await.unwrap();
        drop(a);
        let mut conn = Conn::new(b);
        let mut body = BodyReader::new(Framing::Chunked);
        let mut err = None;
        loop {
            match body.next(&mut conn).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(err, Some(Http1Error::Truncated)));
    }

    #[tokio::test]
    async fn request_head_keeps_case_order_and_duplicates() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"GET http://x/ HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
            .await
            .unwrap();
        let mut conn = Conn::new(b);
        let head = conn.read_request_head().await.unwrap().unwrap();
        assert_eq!(&head.target[..], b"http://x/");
        let names: Vec<&[u8]> = head.headers.iter().map(|h| &h.name[..]).collect();
        assert_eq!(names, vec![&b"Host"[..], b"X-A", b"x-a"]);
    }

    #[tokio::test]
    async fn malformed_request_line_is_an_error() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"GET /\x01 HTTP/1.1\r\n\r\n").await.unwrap();
        let mut conn = Conn::new(b);
        assert!(matches!(
            conn.read_request_head().await,
            Err(Http1Error::Malformed(_))
        ));
    }

    #[test]
    fn framing_rules() {
        let h = |n: &'static str, v: &'static str| Header {
            name: n.into(),
            value: v.into(),
        };
        let v11: &[u8] = b"HTTP/1.1";
        assert_eq!(
            request_framing(v11, &[h("Content-Length", "5")]).unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            request_framing(v11, &[h("Transfer-Encoding", "gzip, chunked")]).unwrap(),
            Framing::Chunked
        );
        // Ambiguous framing is refused, not resolved (request smuggling).
        for refused in [
            &[h("Content-Length", "5"), h("Transfer-Encoding", "chunked")][..],
            &[h("Content-Length", "5"), h("content-length", "6")],
            &[h("Content-Length", "+5")],
            &[h("Content-Length", "0x5")],
            &[h("Content-Length", "")],
            &[h("Transfer-Encoding", "chunked, gzip")],
            &[h("Transfer-Encoding", "identity")],
        ] {
            assert!(request_framing(v11, refused).is_err(), "{refused:?}");
        }
        assert!(request_framing(b"HTTP/1.0", &[h("Transfer-Encoding", "chunked")]).is_err());
        assert_eq!(
            response_framing(b"HEAD", 200, &[h("Content-Length", "5")]).unwrap(),
            Framing::Empty
        );
        assert_eq!(response_framing(b"GET", 200, &[]).unwrap(), Framing::Close);
        assert_eq!(response_framing(b"GET", 304, &[]).unwrap(), Framing::Empty);
    }
}
