//! RFC 6455 section 5: WebSocket frames read off the wire, messages reassembled from their
//! fragments, and frames written back (masked toward the server, section 5.3).
//!
//! No extension is negotiated through flowtap (the relay strips `permessage-deflate` from the
//! client's offer), so the RSV bits must be zero.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A frame's opcode (section 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }

    /// Close, ping and pong (section 5.5).
    pub(crate) fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One frame, its payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) opcode: Opcode,
    pub(crate) payload: Bytes,
    /// The key the client masked it with (None from the server). A frame forwarded unchanged
    /// keeps its key, so the server gets the client's bytes as they were.
    pub(crate) mask: Option<[u8; 4]>,
}

/// Why a peer's bytes are not a valid WebSocket stream. The close code is what the relay sends
/// when it gives up on the connection (section 7.4.1).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FrameError {
    #[error("reserved bits set in a frame, but no extension was negotiated")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("unmasked frame from the client")]
    Unmasked,
    #[error("masked frame from the server")]
    Masked,
    #[error("frame length not in its shortest form or over 2^63")]
    BadLength,
    #[error("message larger than {limit} bytes (websocket_max_message_bytes)")]
    TooLarge { limit: u64 },
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new message started before the previous one was finished")]
    UnfinishedMessage,
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("malformed close frame")]
    BadClose,
}

impl FrameError {
    /// The close code that reports this error to the peers.
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } => 1009,
            FrameError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// Reads the next whole frame from `buf`, if it holds one. `from_client` says which side sent
/// it (client frames must be masked, server frames must not be); `max_payload` bounds the
/// payload before it is buffered, so a peer cannot make the relay wait for (or hold) more.
pub(crate) fn parse(
    buf: &mut BytesMut,
    from_client: bool,
    max_payload: u64,
) -> Result<Option<Frame>, FrameError> {
    let Some(&[b0, b1]) = buf.get(..2) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(FrameError::UnknownOpcode(b0 & 0x0f))?;
    let masked = b1 & 0x80 != 0;
    match (from_client, masked) {
        (true, false) => return Err(FrameError::Unmasked),
        (false, true) => return Err(FrameError::Masked),
        _ => {}
    }
    let (len, mut head_len) = match b1 & 0x7f {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            if len < 126 {
                return Err(FrameError::BadLength);
            }
            (len, 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(bytes.try_into().expect("eight bytes"));
            if len <= 0xffff || len >> 63 != 0 {
                return Err(FrameError::BadLength);
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::BadControlFrame);
    }
    if !opcode.is_control() && len > max_payload {
        return Err(FrameError::TooLarge { limit: max_payload });
    }
    let mask = if masked {
        let Some(key) = buf.get(head_len..head_len + 4) else {
            return Ok(None);
        };
        let key: [u8; 4] = key.try_into().expect("four bytes");
        head_len += 4;
        Some(key)
    } else {
        None
    };
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge { limit: max_payload })?;
    if buf.len() < head_len + len {
        buf.reserve(head_len + len - buf.len());
        return Ok(None);
    }
    buf.advance(head_len);
    let mut payload = buf.split_to(len);
    if let Some(key) = mask {
        apply_mask(&mut payload, key);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload: payload.freeze(),
        mask,
    }))
}

/// Appends one frame to `out`; with `mask` the payload is masked with that key (frames to the
/// server, section 5.3).
pub(crate) fn encode(
    out: &mut BytesMut,
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    out.reserve(payload.len() + 14);
    out.put_u8(if fin { 0x80 } else { 0 } | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.put_u8(mask_bit | len as u8),
        len @ 126..=0xffff => {
            out.put_u8(mask_bit | 126);
            out.put_u16(len as u16);
        }
        len => {
            out.put_u8(mask_bit | 127);
            out.put_u64(len as u64);
        }
    }
    match mask {
        Some(key) => {
            out.put_slice(&key);
            let start = out.len();
            out.put_slice(payload);
            apply_mask(&mut out[start..], key);
        }
        None => out.put_slice(payload),
    }
}

/// XORs `data` with the repeated four-byte `key` (section 5.3), eight bytes at a time.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("eight bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // The remainder starts at a multiple of eight, so the key's phase is still 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// A complete TEXT or BINARY message and the frames it came in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) is_text: bool,
    pub(crate) content: Bytes,
    pub(crate) fragments: Vec<Fragment>,
}

/// The payload size and masking key of one frame of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fragment {
    pub(crate) len: usize,
    pub(crate) mask: Option<[u8; 4]>,
}

impl Fragment {
    fn of(frame: &Frame) -> Self {
        Self {
            len: frame.payload.len(),
            mask: frame.mask,
        }
    }
}

/// Appends `content` as the frames of a message: in the original fragments when they still
/// add up to its length (their masking keys kept), else as one frame masked with `fresh_mask`
/// (None toward the client).
pub(crate) fn encode_message(
    out: &mut BytesMut,
    is_text: bool,
    content: &[u8],
    fragments: &[Fragment],
    fresh_mask: impl FnOnce() -> Option<[u8; 4]>,
) {
    let opcode = if is_text {
        Opcode::Text
    } else {
        Opcode::Binary
    };
    let total: usize = fragments.iter().map(|f| f.len).sum();
    if fragments.is_empty() || total != content.len() {
        encode(out, true, opcode, content, fresh_mask());
        return;
    }
    let mut rest = content;
    for (i, fragment) in fragments.iter().enumerate() {
        let (piece, tail) = rest.split_at(fragment.len);
        let last = i + 1 == fragments.len();
        let op = if i == 0 { opcode } else { Opcode::Continuation };
        encode(out, last, op, piece, fragment.mask);
        rest = tail;
    }
}

/// What one frame means once fragments are put together.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A fragment of a message that is not finished yet.
    Partial,
    Message(Message),
    /// A control frame; these may arrive between the fragments of a message (section 5.4).
    Control(Frame),
}

/// Puts the fragments of one side's messages together.
#[derive(Debug)]
pub(crate) struct Assembler {
    limit: u64,
    /// The message being received: its type and the fragments so far.
    current: Option<(bool, BytesMut, Vec<Fragment>)>,
}

impl Assembler {
    /// Messages may be up to `limit` bytes long.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            current: None,
        }
    }

    /// How many more payload bytes the message being received may take.
    fn room(&self) -> u64 {
        let used = self.current.as_ref().map_or(0, |(_, b, _)| b.len() as u64);
        self.limit.saturating_sub(used)
    }

    /// Reads the next frame of this side from `buf` (see [`parse`]), within what is left of
    /// the message limit.
    pub(crate) fn next_frame(
        &self,
        buf: &mut BytesMut,
        from_client: bool,
    ) -> Result<Option<Frame>, FrameError> {
        parse(buf, from_client, self.room()).map_err(|e| match e {
            FrameError::TooLarge { .. } => FrameError::TooLarge { limit: self.limit },
            other => other,
        })
    }

    /// Takes the next frame of this side.
    pub(crate) fn push(&mut self, frame: Frame) -> Result<Event, FrameError> {
        let is_text = match frame.opcode {
            op if op.is_control() => return Ok(Event::Control(frame)),
            Opcode::Continuation => match &mut self.current {
                Some((_, content, fragments)) => {
                    fragments.push(Fragment::of(&frame));
                    content.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        return Ok(Event::Partial);
                    }
                    let (is_text, content, fragments) = self.current.take().expect("matched above");
                    return finish(is_text, content.freeze(), fragments);
                }
                None => return Err(FrameError::UnexpectedContinuation),
            },
            op => op == Opcode::Text,
        };
        if self.current.is_some() {
            return Err(FrameError::UnfinishedMessage);
        }
        let fragment = Fragment::of(&frame);
        if frame.fin {
            return finish(is_text, frame.payload, vec![fragment]);
        }
        self.current = Some((is_text, BytesMut::from(&frame.payload[..]), vec![fragment]));
        Ok(Event::Partial)
    }
}

fn finish(is_text: bool, content: Bytes, fragments: Vec<Fragment>) -> Result<Event, FrameError> {
    if is_text && std::str::from_utf8(&content).is_err() {
        return Err(FrameError::InvalidUtf8);
    }
    Ok(Event::Message(Message {
        is_text,
        content,
        fragments,
    }))
}

/// The code and reason of a close frame's payload (section 5.5.1); an empty payload is code
/// 1005, "no status received", as wsproto reports it.
pub(crate) fn parse_close(payload: &[u8]) -> Result<(u16, String), FrameError> {
    match payload {
        [] => Ok((1005, String::new())),
        [_] => Err(FrameError::BadClose),
        [hi, lo, reason @ ..] => {
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::BadClose)?;
            Ok((u16::from_be_bytes([*hi, *lo]), reason.to_string()))
        }
    }
}

/// The payload of a close frame with `code` and `reason` (cut to fit in 125 bytes).
pub(crate) fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = BytesMut::with_capacity(2 + end);
    out.put_u16(code);
    out.put_slice(&reason.as_bytes()[..end]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(fin: bool, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&mut out, fin, opcode, payload, mask);
        out
    }

    #[test]
    fn masked_frames_round_trip_at_every_length_form() {
        for len in [0usize, 5, 125, 126, 1000, 0xffff, 0x10000, 70_001] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = frame_bytes(true, Opcode::Binary, &payload, Some([1, 2, 3, 4]));
            let frame = parse(&mut wire, true, u64::MAX).unwrap().unwrap();
            assert_eq!(&frame.payload[..], &payload[..], "length {len}");
            assert!(wire.is_empty());
        }
    }

    #[test]
    fn the_mask_is_the_rfc_example() {
        // RFC 6455 5.7: a masked "Hello".
        let mut wire = BytesMut::from(
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ][..],
        );
        let frame = parse(&mut wire, true, 100).unwrap().unwrap();
        assert_eq!(&frame.payload[..], b"Hello");
        assert_eq!(
            &frame_bytes(true, Opcode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]))[..],
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn partial_input_waits_for_more() {
        let whole = frame_bytes(true, Opcode::Text, &[b'x'; 300], None);
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(parse(&mut part, false, u64::MAX), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: [(&[u8], bool, FrameError); 7] = [
            (&[0xc1, 0x00], false, FrameError::ReservedBits),
            (&[0x83, 0x00], false, FrameError::UnknownOpcode(3)),
            (&[0x09, 0x00], false, FrameError::BadControlFrame),
            (&[0x81, 0x00], true, FrameError::Unmasked),
            (&[0x81, 0x80, 0, 0, 0, 0], false, FrameError::Masked),
            (&[0x82, 126, 0, 5], false, FrameError::BadLength),
            (
                &[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
                false,
                FrameError::BadLength,
            ),
        ];
        for (bytes, from_client, want) in cases {
            let mut buf = BytesMut::from(bytes);
            assert_eq!(parse(&mut buf, from_client, u64::MAX), Err(want));
        }
        let mut big = frame_bytes(true, Opcode::Binary, &[0; 200], None);
        assert_eq!(
            parse(&mut big, false, 100),
            Err(FrameError::TooLarge { limit: 100 })
        );
    }

    #[test]
    fn fragments_make_one_message_with_controls_between() {
        let mut assembler = Assembler::new(1 << 20);
        let frame = |fin, opcode, payload: &'static [u8]| Frame {
            fin,
            opcode,
            payload: Bytes::from_static(payload),
            mask: None,
        };
        assert_eq!(
            assembler.push(frame(false, Opcode::Text, b"he")),
            Ok(Event::Partial)
        );
        let ping = frame(true, Opcode::Ping, b"p");
        assert_eq!(assembler.push(ping.clone()), Ok(Event::Control(ping)));
        assert_eq!(
            assembler.push(frame(false, Opcode::Continuation, b"ll")),
            Ok(Event::Partial)
        );
        assert_eq!(
            assembler.push(frame(false, Opcode::Binary, b"x")),
            Err(FrameError::UnfinishedMessage)
        );
        assert_eq!(
            assembler.push(frame(true, Opcode::Continuation, b"o")),
            Ok(Event::Message(Message {
                is_text: true,
                content: Bytes::from_static(b"hello"),
                fragments: [2, 2, 1].map(|len| Fragment { len, mask: None }).to_vec(),
            }))
        );
        assert_eq!(
            assembler.push(frame(true, Opcode::Continuation, b"x")),
            Err(FrameError::UnexpectedContinuation)
        );
        assert_eq!(
            assembler.push(frame(true, Opcode::Text, b"\xff")),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn the_limit_covers_the_whole_message() {
        let mut assembler = Assembler::new(10);
        let part = Frame {
            fin: false,
            opcode: Opcode::Binary,
            payload: Bytes::from_static(b"12345678"),
            mask: None,
        };
        assembler.push(part).unwrap();
        assert_eq!(assembler.room(), 2);
        let mut next = frame_bytes(true, Opcode::Continuation, b"123", None);
        assert_eq!(
            assembler.next_frame(&mut next, false),
            Err(FrameError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn unchanged_messages_keep_their_frames_and_keys() {
        let mut wire = frame_bytes(false, Opcode::Text, b"ab", Some([9, 8, 7, 6]));
        wire.extend_from_slice(&frame_bytes(
            true,
            Opcode::Continuation,
            b"c",
            Some([1, 1, 1, 1]),
        ));
        let original = wire.clone();
        let mut assembler = Assembler::new(100);
        let mut message = None;
        while let Some(frame) = assembler.next_frame(&mut wire, true).unwrap() {
            if let Event::Message(m) = assembler.push(frame).unwrap() {
                message = Some(m);
            }
        }
        let message = message.expect("a whole message");
        let mut out = BytesMut::new();
        encode_message(&mut out, true, b"abc", &message.fragments, || {
            panic!("no fresh key for an unchanged message")
        });
        assert_eq!(out, original, "byte for byte what the client sent");
        let mut out = BytesMut::new();
        encode_message(&mut out, true, b"abcd", &message.fragments, || {
            Some([5, 5, 5, 5])
        });
        let frame = parse(&mut out, true, 100).unwrap().unwrap();
        assert!(frame.fin);
        assert_eq!(&frame.payload[..], b"abcd");
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b""), Ok((1005, String::new())));
        assert_eq!(parse_close(b"\x03\xe8bye"), Ok((1000, "bye".into())));
        assert_eq!(parse_close(b"\x03"), Err(FrameError::BadClose));
        assert_eq!(parse_close(b"\x03\xe8\xff"), Err(FrameError::BadClose));
        let long = "é".repeat(100);
        let payload = close_payload(1002, &long);
        assert!(payload.len() <= 125);
        assert!(parse_close(&payload).is_ok());
    }
}
