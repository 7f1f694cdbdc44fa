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
    /// The body is not valid data for its encoding.
    #[error("invalid {encoding} data: {source}")]
    Invalid {
        /// The encoding that failed.
        encoding: String,
        /// The decoder's error.
        source: std::io::Error,
    },
}

/// Decodes `data` per the Content-Encoding value `encoding` (case-insensitive).
pub fn decode<'a>(data: &'a [u8], encoding: &str) -> Result<Cow<'a, [u8]>, DecodeError> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let invalid = |source| DecodeError::Invalid {
        encoding: encoding.clone(),
        source,
    };
    let mut out = Vec::new();
    match encoding.as_str() {
        "" | "none" | "identity" => return Ok(Cow::Borrowed(data)),
        "gzip" => {
            flate2::read::MultiGzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(invalid)?;
        }
        "deflate" | "deflateraw" => {
            // Some servers send raw deflate instead of the zlib stream the RFC asks for.
            if flate2::read::ZlibDecoder::new(data)
                .read_to_end(&mut out)
                .is_err()
            {
                out.clear();
                flate2::read::DeflateDecoder::new(data)
                    .read_to_end(&mut out)
                    .map_err(invalid)?;
            }
        }
        "br" => {
            brotli_decompressor::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .map_err(invalid)?;
        }
        "zstd" => {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| invalid(std::io::Error::other(e.to_string())))?;
            decoder.read_to_end(&mut out).map_err(invalid)?;
        }
        _ => return Err(DecodeError::UnsupportedEncoding(encoding)),
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
