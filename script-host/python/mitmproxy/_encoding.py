"""Content-Encoding codecs, as mitmproxy applies them to message bodies.

gzip and deflate use zlib from the standard library. br and zstd need the `brotli` and
`zstandard` packages; when they are not importable, decoding or encoding raises a ValueError that
names the missing package.
"""

import gzip
import zlib

_MISSING = {"br": "brotli", "zstd": "zstandard"}


def _brotli():
    try:
        import brotli
    except ImportError:
        raise ValueError(
            "Content-Encoding 'br' needs the 'brotli' package, which is not installed"
        ) from None
    return brotli


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise ValueError(
            "Content-Encoding 'zstd' needs the 'zstandard' package, which is not installed"
        ) from None
    return zstandard


def _decode_deflate(content):
    try:
        return zlib.decompress(content)
    except zlib.error:
        # Some servers send raw deflate data without the zlib header.
        return zlib.decompress(content, -15)


def _decode_zstd(content):
    zstandard = _zstd()
    return zstandard.ZstdDecompressor().decompressobj().decompress(content)


def decode(content, encoding):
    """Decodes `content` (bytes) sent with Content-Encoding `encoding`; ValueError if broken."""
    if content is None:
        return None
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "none"):
        return content
    try:
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(content)
        if enc == "deflate":
            return _decode_deflate(content)
        if enc == "br":
            return _brotli().decompress(content)
        if enc == "zstd":
            return _decode_zstd(content)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{enc} decoding failed: {e!r}") from e
    raise ValueError(f"Unknown Content-Encoding: {encoding}")


def encode(content, encoding):
    """Encodes `content` with Content-Encoding `encoding`; ValueError if it cannot."""
    if content is None:
        return None
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "none"):
        return content
    if enc in ("gzip", "x-gzip"):
        return gzip.compress(content, mtime=0)
    if enc == "deflate":
        return zlib.compress(content)
    if enc == "br":
        return _brotli().compress(content)
    if enc == "zstd":
        return _zstd().ZstdCompressor().compress(content)
    raise ValueError(f"Unknown Content-Encoding: {encoding}")


def available():
    """The encodings this interpreter can decode and encode."""
    result = ["identity", "gzip", "deflate"]
    for enc, module in _MISSING.items():
        try:
            __import__(module)
        except ImportError:
            continue
        result.append(enc)
    return result
