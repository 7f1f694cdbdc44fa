//! The br and zstd Content-Encoding codecs, built into the script host so that
//! `flow.response.text` works on a brotli or zstd body without any Python package installed.
//!
//! The scripts' `mitmproxy` package (`python/mitmproxy/_encoding.py`) reaches them through the
//! native module `_flowtap_codecs` ([`python_module`]), which `python::initialize` registers
//! before the interpreter starts. gzip and deflate stay with Python's zlib.
//!
//! br is the pure-Rust `brotli` crate; zstd is `ruzstd` (pure Rust, already in the workspace
//! for flowtap-flow's decoding). Decoding is bounded: the output stops at a size limit
//! ([`MAX_DECODED_BYTES`] unless the caller asks for less) and a zstd frame may not ask for a
//! window larger than libzstd's default decoder accepts, so a small body cannot expand into
//! gigabytes inside the worker. Nothing is allocated up front from a size the body declares.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ruzstd::decoding::StreamingDecoder;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::encoding::CompressionLevel;

/// The most a body may decode to unless the caller sets a lower limit: the largest message the
/// script protocol carries (see `server.rs`), so a decoded body the worker could not send back
/// is refused rather than built.
pub(crate) const MAX_DECODED_BYTES: usize = 256 * 1024 * 1024;

/// The largest zstd window accepted: libzstd's default for decoders (window log 27), which
/// python-zstandard, and so mitmproxy, also refuse to exceed.
const MAX_ZSTD_WINDOW_BYTES: u64 = 128 * 1024 * 1024;

/// Brotli quality for re-encoded bodies. mitmproxy uses the `brotli` package's default, 11,
/// which spends about two seconds per megabyte of text; 5 is about forty times faster and
/// compresses text some 15% worse.
const BROTLI_QUALITY: i32 = 5;

/// Brotli window log, the encoder's default (4 MiB).
const BROTLI_WINDOW_LOG: i32 = 22;

/// Why a body could not be decoded or encoded. The message is what a script sees in the
/// `ValueError`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    /// The body is not valid data for its encoding (corrupt or truncated).
    #[error("{encoding} decoding failed: the body is not valid {encoding} data ({detail})")]
    Invalid {
        /// `br` or `zstd`.
        encoding: &'static str,
        /// The decoder's own description.
        detail: String,
    },
    /// The decoded body would be larger than the limit.
    #[error("{encoding} decoding failed: the decoded body is larger than {limit_bytes} bytes")]
    TooLarge {
        /// `br` or `zstd`.
        encoding: &'static str,
        /// The limit that was exceeded.
        limit_bytes: usize,
    },
    /// A zstd frame asks for a window larger than [`MAX_ZSTD_WINDOW_BYTES`].
    #[error(
        "zstd decoding failed: a frame asks for a {window_bytes}-byte window, more than the \
         {MAX_ZSTD_WINDOW_BYTES} bytes allowed"
    )]
    WindowTooLarge {
        /// The window the frame header declares.
        window_bytes: u64,
    },
    /// The codec panicked: a bug in it, reported instead of unwinding into Python.
    #[error("{encoding} codec failed on this body (internal error)")]
    Panicked {
        /// `br` or `zstd`.
        encoding: &'static str,
    },
    /// The encoder failed (it writes to memory, so this is not expected).
    #[error("{encoding} encoding failed: {detail}")]
    Encode {
        /// `br` or `zstd`.
        encoding: &'static str,
        /// What went wrong.
        detail: String,
    },
}

/// Decodes a complete brotli stream, refusing output larger than `limit_bytes`.
pub(crate) fn brotli_decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CodecError> {
    // The window is at most 16 MiB (the large-window extension is not enabled), so the decoder's
    // own memory is bounded whatever the stream says.
    let decoder = brotli::Decompressor::new(data, 32 * 1024);
    let mut out = Vec::new();
    read_bounded(decoder, &mut out, "br", limit_bytes)?;
    Ok(out)
}

/// Encodes `data` as one brotli stream.
pub(crate) fn brotli_compress(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: BROTLI_QUALITY,
        lgwin: BROTLI_WINDOW_LOG,
        size_hint: data.len(),
        ..Default::default()
    };
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).map_err(|e| CodecError::Encode {
        encoding: "br",
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes zstd data: one or more frames (skippable frames are skipped), refusing output
/// larger than `limit_bytes` and frames whose window exceeds libzstd's default limit.
pub(crate) fn zstd_decompress(data: &[u8], limit_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let invalid = |detail: String| CodecError::Invalid {
        encoding: "zstd",
        detail,
    };
    let mut input = data;
    let mut out = Vec::new();
    while !input.is_empty() {
        // Checked before decoding: the decoder holds back a window's worth of output until the
        // frame ends, so the output limit alone would not bound its memory.
        match zstd_window_bytes(input) {
            Some(window_bytes) if window_bytes > MAX_ZSTD_WINDOW_BYTES => {
                return Err(CodecError::WindowTooLarge { window_bytes });
            }
            _ => {}
        }
        let mut decoder = match StreamingDecoder::new(&mut input) {
            Ok(decoder) => decoder,
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                input = input
                    .get(length as usize..)
                    .ok_or_else(|| invalid("truncated skippable frame".into()))?;
                continue;
            }
            Err(e) => return Err(invalid(e.to_string())),
        };
        let remaining = limit_bytes - out.len();
        read_bounded(&mut decoder, &mut out, "zstd", remaining).map_err(|e| match e {
            CodecError::TooLarge { encoding, .. } => CodecError::TooLarge {
                encoding,
                limit_bytes,
            },
            other => other,
        })?;
        let frame = decoder.into_frame_decoder();
        let sent = frame.get_checksum_from_data();
        if sent.is_some() && sent != frame.get_calculated_checksum() {
            return Err(invalid("content checksum mismatch".into()));
        }
    }
    Ok(out)
}

/// Encodes `data` as one zstd frame.
pub(crate) fn zstd_compress(data: &[u8]) -> Vec<u8> {
    // `Fastest` (about libzstd's level 1) is the only compressing level ruzstd implements.
    ruzstd::encoding::compress_to_vec(data, CompressionLevel::Fastest)
}

/// Appends what `reader` yields to `out`, at most `limit_bytes` of it; growing `out` as data
/// arrives rather than from any size the stream declares.
fn read_bounded(
    reader: impl Read,
    out: &mut Vec<u8>,
    encoding: &'static str,
    limit_bytes: usize,
) -> Result<(), CodecError> {
    let start = out.len();
    let cap = u64::try_from(limit_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(cap)
        .read_to_end(out)
        .map_err(|e| CodecError::Invalid {
            encoding,
            detail: e.to_string(),
        })?;
    if out.len() - start > limit_bytes {
        return Err(CodecError::TooLarge {
            encoding,
            limit_bytes,
        });
    }
    Ok(())
}

/// The window a zstd frame header at the start of `frame` declares (RFC 8878, 3.1.1.1), or
/// `None` when it is not a complete zstd frame header (the decoder then reports why).
fn zstd_window_bytes(frame: &[u8]) -> Option<u64> {
    const MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();
    if frame.get(..4)? != MAGIC {
        return None;
    }
    let descriptor = *frame.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let window = *frame.get(5)?;
        let log = 10 + u32::from(window >> 3);
        let base = 1_u64 << log;
        return Some(base + (base / 8) * u64::from(window & 7));
    }
    // A single-segment frame's window is its content size, which follows the dictionary id.
    let dictionary_id_len = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let content_size_len = [1, 2, 4, 8][usize::from(descriptor >> 6)];
    let at = 5 + dictionary_id_len;
    let field = frame.get(at..at + content_size_len)?;
    let mut bytes = [0_u8; 8];
    bytes[..content_size_len].copy_from_slice(field);
    let size = u64::from_le_bytes(bytes);
    Some(if content_size_len == 2 {
        size + 256
    } else {
        size
    })
}

/// Runs a codec with the GIL released when the input is large enough for that to pay, and
/// turns a panic inside it into a [`CodecError`] (the input is untrusted; a decoder bug must not
/// reach the script as a `PanicException`, which `except Exception` does not catch).
fn run_codec<T: Send>(
    py: pyo3::Python<'_>,
    release_gil: bool,
    encoding: &'static str,
    codec: impl FnOnce() -> Result<T, CodecError> + Send,
) -> Result<T, CodecError> {
    let guarded = move || {
        catch_unwind(AssertUnwindSafe(codec))
            .unwrap_or_else(|_| Err(CodecError::Panicked { encoding }))
    };
    if release_gil {
        py.detach(guarded)
    } else {
        guarded()
    }
}

/// The native module `_flowtap_codecs`: `brotli_decompress`, `brotli_compress`,
/// `zstd_decompress` and `zstd_compress` on bytes, raising `ValueError` on bad input.
#[pyo3::pymodule(name = "_flowtap_codecs")]
pub(crate) mod python_module {
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::PyBytes;

    use super::{CodecError, run_codec};

    /// The most a body decodes to when no smaller `size_limit` is given.
    #[pymodule_export]
    const MAX_DECODED_BYTES: usize = super::MAX_DECODED_BYTES;

    // Releasing the GIL costs a thread switch when other Python threads run, so small bodies
    // keep it. Decoding releases it sooner: a small input can expand a lot.
    const RELEASE_GIL_COMPRESSING_BYTES: usize = 64 * 1024;
    const RELEASE_GIL_DECOMPRESSING_BYTES: usize = 8 * 1024;

    fn to_py(py: Python<'_>, result: Result<Vec<u8>, CodecError>) -> PyResult<Py<PyBytes>> {
        match result {
            Ok(bytes) => Ok(PyBytes::new(py, &bytes).unbind()),
            Err(e) => Err(PyValueError::new_err(e.to_string())),
        }
    }

    fn limit(size_limit: Option<usize>) -> usize {
        size_limit.map_or(super::MAX_DECODED_BYTES, |l| {
            l.min(super::MAX_DECODED_BYTES)
        })
    }

    /// Decodes a brotli body; ValueError if it is invalid or decodes to more than `size_limit`
    /// (at most MAX_DECODED_BYTES) bytes.
    #[pyfunction]
    #[pyo3(signature = (data, size_limit=None))]
    fn brotli_decompress(
        py: Python<'_>,
        data: &[u8],
        size_limit: Option<usize>,
    ) -> PyResult<Py<PyBytes>> {
        let release = data.len() >= RELEASE_GIL_DECOMPRESSING_BYTES;
        let limit = limit(size_limit);
        to_py(
            py,
            run_codec(py, release, "br", || super::brotli_decompress(data, limit)),
        )
    }

    /// Encodes bytes as brotli.
    #[pyfunction]
    fn brotli_compress(py: Python<'_>, data: &[u8]) -> PyResult<Py<PyBytes>> {
        let release = data.len() >= RELEASE_GIL_COMPRESSING_BYTES;
        to_py(
            py,
            run_codec(py, release, "br", || super::brotli_compress(data)),
        )
    }

    /// Decodes a zstd body (all its frames); ValueError if it is invalid or decodes to more
    /// than `size_limit` (at most MAX_DECODED_BYTES) bytes.
    #[pyfunction]
    #[pyo3(signature = (data, size_limit=None))]
    fn zstd_decompress(
        py: Python<'_>,
        data: &[u8],
        size_limit: Option<usize>,
    ) -> PyResult<Py<PyBytes>> {
        let release = data.len() >= RELEASE_GIL_DECOMPRESSING_BYTES;
        let limit = limit(size_limit);
        to_py(
            py,
            run_codec(py, release, "zstd", || super::zstd_decompress(data, limit)),
        )
    }

    /// Encodes bytes as one zstd frame.
    #[pyfunction]
    fn zstd_compress(py: Python<'_>, data: &[u8]) -> PyResult<Py<PyBytes>> {
        let release = data.len() >= RELEASE_GIL_COMPRESSING_BYTES;
        to_py(
            py,
            run_codec(py, release, "zstd", || Ok(super::zstd_compress(data))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] =
        b"<html><body>Hello from flowtap. Hello from flowtap. Hello again.</body></html>";

    fn large_text() -> Vec<u8> {
        (0..20_000)
            .flat_map(|i| {
                format!("line {i}: the quick brown fox jumps over the lazy dog\n").into_bytes()
            })
            .collect()
    }

    #[test]
    fn brotli_round_trips() {
        for data in [&b""[..], TEXT, &large_text()] {
            let encoded = brotli_compress(data).unwrap();
            assert_eq!(
                brotli_decompress(&encoded, MAX_DECODED_BYTES).unwrap(),
                data
            );
        }
        let large = large_text();
        assert!(brotli_compress(&large).unwrap().len() < large.len() / 10);
    }

    #[test]
    fn zstd_round_trips_including_several_frames() {
        for data in [&b""[..], TEXT, &large_text()] {
            let encoded = zstd_compress(data);
            assert_eq!(zstd_decompress(&encoded, MAX_DECODED_BYTES).unwrap(), data);
        }
        let large = large_text();
        assert!(zstd_compress(&large).len() < large.len() / 5);

        // Two frames with a skippable frame between them decode to both contents in order.
        let mut data = zstd_compress(b"first,");
        data.extend_from_slice(&0x184D_2A50_u32.to_le_bytes());
        data.extend_from_slice(&3_u32.to_le_bytes());
        data.extend_from_slice(b"xyz");
        data.extend_from_slice(&zstd_compress(b"second"));
        assert_eq!(
            zstd_decompress(&data, MAX_DECODED_BYTES).unwrap(),
            b"first,second"
        );
    }

    #[test]
    fn corrupt_or_truncated_bodies_are_invalid() {
        let encoded = brotli_compress(TEXT).unwrap();
        for bad in [&b"\x1bnot brotli at all"[..], &encoded[..encoded.len() / 2]] {
            let err = brotli_decompress(bad, MAX_DECODED_BYTES).unwrap_err();
            assert!(
                matches!(err, CodecError::Invalid { encoding: "br", .. }),
                "{err}"
            );
            assert!(err.to_string().starts_with("br decoding failed"), "{err}");
        }
        let encoded = zstd_compress(TEXT);
        for bad in [&b"not zstd"[..], &encoded[..encoded.len() - 3]] {
            let err = zstd_decompress(bad, MAX_DECODED_BYTES).unwrap_err();
            assert!(
                matches!(
                    err,
                    CodecError::Invalid {
                        encoding: "zstd",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn output_beyond_the_limit_is_refused() {
        let zeros = vec![0_u8; 1024 * 1024];
        let br = brotli_compress(&zeros).unwrap();
        let zstd = zstd_compress(&zeros);
        assert!(br.len() < 1024 && zstd.len() < 64 * 1024);

        assert_eq!(
            brotli_decompress(&br, zeros.len()).unwrap().len(),
            zeros.len()
        );
        let err = brotli_decompress(&br, zeros.len() - 1).unwrap_err();
        assert!(
            matches!(err, CodecError::TooLarge { limit_bytes, .. } if limit_bytes == zeros.len() - 1)
        );

        assert_eq!(
            zstd_decompress(&zstd, zeros.len()).unwrap().len(),
            zeros.len()
        );
        let mut two = zstd.clone();
        two.extend_from_slice(&zstd);
        let err = zstd_decompress(&two, zeros.len() + 10).unwrap_err();
        assert!(
            matches!(err, CodecError::TooLarge { limit_bytes, .. } if limit_bytes == zeros.len() + 10)
        );
    }

    #[test]
    fn zstd_frame_asking_for_a_huge_window_is_refused_before_decoding() {
        // Magic, descriptor (no single segment, no checksum), window descriptor 0xF8: 2^41 bytes.
        let mut frame = 0xFD2F_B528_u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&[0x00, 0xF8]);
        assert_eq!(zstd_window_bytes(&frame), Some(1 << 41));
        let err = zstd_decompress(&frame, MAX_DECODED_BYTES).unwrap_err();
        assert!(
            matches!(err, CodecError::WindowTooLarge { window_bytes } if window_bytes == 1 << 41)
        );

        // A single-segment frame's window is its 8-byte content size.
        let mut frame = 0xFD2F_B528_u32.to_le_bytes().to_vec();
        frame.push(0xE0);
        frame.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(zstd_window_bytes(&frame), Some(u64::MAX));
        assert!(matches!(
            zstd_decompress(&frame, MAX_DECODED_BYTES),
            Err(CodecError::WindowTooLarge { .. })
        ));
    }

    /// `'flowtap decodes what libbrotli and libzstd encode; ' * 8`, encoded by the C libraries
    /// (Python's `brotli.compress`, and `zstandard` at level 19 with a content checksum).
    const REFERENCE_TEXT: &str = "flowtap decodes what libbrotli and libzstd encode; ";
    const LIBBROTLI: &str = "1b9701f845b779bd7b7ebf4b9b8120192504752b022944997e4008814c1233ebb5\
                             6ed047d1f3f30cb3539d015d847f9b18953f0402";
    const LIBZSTD: &str = "28b52ffd649800b5010032030b11c0b701602bbd44869bc966f33ffdec622706770d\
                           e4fc3dc9307d52c65c356698de1ac8e7aee1ee528b3445010023665505057d068aac";

    fn unhex(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_what_the_reference_libraries_encode() {
        let expected = REFERENCE_TEXT.repeat(8).into_bytes();
        assert_eq!(
            brotli_decompress(&unhex(LIBBROTLI), MAX_DECODED_BYTES).unwrap(),
            expected
        );
        let mut zstd = unhex(LIBZSTD);
        assert_eq!(zstd_decompress(&zstd, MAX_DECODED_BYTES).unwrap(), expected);
        *zstd.last_mut().unwrap() ^= 0xff;
        let err = zstd_decompress(&zstd, MAX_DECODED_BYTES).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn window_of_real_frames_is_read() {
        let encoded = zstd_compress(&large_text());
        let window = zstd_window_bytes(&encoded).unwrap();
        assert!((1024..=MAX_ZSTD_WINDOW_BYTES).contains(&window), "{window}");
        assert_eq!(zstd_window_bytes(b"not zstd"), None);
    }
}
