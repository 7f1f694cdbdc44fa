//! Content-Encoding decoding as mitmproxy's `net/encoding.py` does it.
//!
//! Supported: `identity`/`none`, `gzip`, `deflate`/`deflateraw` (zlib-wrapped or raw),
//! `br` and `zstd`. Anything else (including a chain such as `gzip, br`) is reported as
//! [`UnsupportedEncoding`]; [`decode_lenient`] then returns the raw bytes, as
//! `get_content(strict=False)` does.

use std::borrow::Cow;
use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The Content-Encoding is not one mitmproxy decodes.
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    /// The decoded body would be larger than [`MAX_DECODED_BYTES`] (a decompression bomb).
    #[error("{encoding} data decodes to more than {MAX_DECODED_BYTES} bytes")]
    TooLarge {
        /// The encoding that was decoded.
        encoding: String,
    },
    /// The body is not valid data for its encoding.
    #[error("invalid {encoding} data: {source}")]
    Invalid {
        /// The encoding that failed.
        encoding: String,
        /// The decoder's error.
        source: std::io::Error,
    },
}

/// The most a body decodes to, as the script host's codecs allow (`mitmproxy/_encoding.py`):
/// a few KiB of gzip can claim gigabytes.
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// Reads `reader` to its end into `out`, refusing more than [`MAX_DECODED_BYTES`].
fn read_bounded(reader: impl Read, out: &mut Vec<u8>) -> std::io::Result<bool> {
    reader.take(MAX_DECODED_BYTES + 1).read_to_end(out)?;
    Ok(out.len() as u64 <= MAX_DECODED_BYTES)
}

/// Decodes `data` per the Content-Encoding value `encoding` (case-insensitive).
pub fn decode<'a>(data: &'a [u8], encoding: &str) -> Result<Cow<'a, [u8]>, DecodeError> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let invalid = |source| DecodeError::Invalid {
        encoding: encoding.clone(),
        source,
    };
    let mut out = Vec::new();
    let within = match encoding.as_str() {
        "" | "none" | "identity" => return Ok(Cow::Borrowed(data)),
        "gzip" => {
            read_bounded(flate2::read::MultiGzDecoder::new(data), &mut out).map_err(invalid)?
        }
        "deflate" | "deflateraw" => {
            // Some servers send raw deflate instead of the zlib stream the RFC asks for.
            match read_bounded(flate2::read::ZlibDecoder::new(data), &mut out) {
                Ok(within) => within,
                Err(_) => {
                    out.clear();
                    read_bounded(flate2::read::DeflateDecoder::new(data), &mut out)
                        .map_err(invalid)?
                }
            }
        }
        "br" => read_bounded(brotli_decompressor::Decompressor::new(data, 4096), &mut out)
            .map_err(invalid)?,
        "zstd" => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| invalid(std::io::Error::other(e.to_string())))?;
            read_bounded(decoder, &mut out).map_err(invalid)?
        }
        _ => return Err(DecodeError::UnsupportedEncoding(encoding)),
    };
    if !within {
        return Err(DecodeError::TooLarge { encoding });
    }
    Ok(Cow::Owned(out))
}

/// Decodes, or returns `data` unchanged when it cannot be decoded.
pub fn decode_lenient<'a>(data: &'a [u8], encoding: Option<&str>) -> Cow<'a, [u8]> {
    match encoding {
        Some(encoding) => decode(data, encoding).unwrap_or(Cow::Borrowed(data)),
        None => Cow::Borrowed(data),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_decompression_bomb_is_refused_not_decoded() {
        // 300 MiB of zeros compress to about 300 KiB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let block = vec![0u8; 1 << 20];
        for _ in 0..300 {
            gz.write_all(&block).unwrap();
        }
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 1 << 20, "{}", gz.len());
        assert!(matches!(
            decode(&gz, "gzip"),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(decode_lenient(&gz, Some("gzip")).len(), gz.len());
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"hello gzip").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&*decode(&gz, "GZIP").unwrap(), b"hello gzip");

        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(b"raw deflate").unwrap();
        assert_eq!(
            &*decode(&raw.finish().unwrap(), "deflate").unwrap(),
            b"raw deflate"
        );
    }

    #[test]
    fn unknown_or_broken_encodings_fall_back_to_raw() {
        assert_eq!(&*decode_lenient(b"abc", Some("utf8")), b"abc");
        assert_eq!(&*decode_lenient(b"not gzip", Some("gzip")), b"not gzip");
        assert!(decode(b"not zstd", "zstd").is_err());
        assert!(decode(b"\x01\x02", "br").is_err());
    }
}
