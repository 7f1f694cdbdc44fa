"""Content-Encoding codecs, as mitmproxy applies them to message bodies.

gzip and deflate use zlib from the standard library. br and zstd use `_flowtap_codecs`, a
native module built into the script-host binary, so they work with no package installed.
Outside the script host (plain python3, as the package's own unit tests run) br and zstd fall
back to the `brotli` and `zstandard` packages, and raise a ValueError naming them when neither
is there.

Decoding stops at MAX_DECODED_BYTES (or a smaller `size_limit`) with a ValueError, so that a
small compressed body cannot expand into gigabytes inside the worker. mitmproxy decodes
without a limit unless one is given.
"""

import gzip
import io
import zlib

try:
    import _flowtap_codecs as _native
except ImportError:
    _native = None

# The largest message the script protocol carries; a decoded body beyond it could not be sent
# back anyway.
MAX_DECODED_BYTES = _native.MAX_DECODED_BYTES if _native else 256 * 1024 * 1024

_PACKAGES = {"br": "brotli", "zstd": "zstandard"}


def _package(enc):
    name = _PACKAGES[enc]
    try:
        return __import__(name)
    except ImportError:
        raise ValueError(
            f"Content-Encoding {enc!r} needs the script host's native codecs or the {name!r} "
            "package, and neither is available"
        ) from None


def _too_large(enc, limit):
    return ValueError(f"{enc} decoding failed: the decoded body is larger than {limit} bytes")


def _decode_gzip(content, limit):
    # wbits 32+15: a gzip or a zlib header, as mitmproxy accepts. A stream cut short gives
    # what it holds (servers that close early), as in mitmproxy.
    d = zlib.decompressobj(32 + zlib.MAX_WBITS)
    decoded = d.decompress(content, limit + 1)
    if len(decoded) > limit:
        raise _too_large("gzip", limit)
    return decoded


def _inflate(content, wbits, limit):
    d = zlib.decompressobj(wbits)
    decoded = d.decompress(content, limit + 1)
    if len(decoded) > limit:
        raise _too_large("deflate", limit)
    if not d.eof:
        raise zlib.error("incomplete or truncated stream")
    return decoded


def _decode_deflate(content, limit):
    try:
        return _inflate(content, zlib.MAX_WBITS, limit)
    except zlib.error:
        # Some servers send raw deflate data without the zlib header.
        return _inflate(content, -zlib.MAX_WBITS, limit)


def _decode_br(content, limit):
    if _native:
        return _native.brotli_decompress(content, limit)
    decoded = _package("br").decompress(content)
    if len(decoded) > limit:
        raise _too_large("br", limit)
    return decoded


def _decode_zstd(content, limit):
    if _native:
        return _native.zstd_decompress(content, limit)
    reader = _package("zstd").ZstdDecompressor().stream_reader(
        io.BytesIO(content), read_across_frames=True
    )
    decoded = reader.read(limit + 1)
    if len(decoded) > limit:
        raise _too_large("zstd", limit)
    return decoded


def _encode_br(content):
    if _native:
        return _native.brotli_compress(content)
    return _package("br").compress(content)


def _encode_zstd(content):
    if _native:
        return _native.zstd_compress(content)
    return _package("zstd").ZstdCompressor().compress(content)


_DECODERS = {
    "gzip": _decode_gzip,
    "x-gzip": _decode_gzip,
    "deflate": _decode_deflate,
    "deflateraw": _decode_deflate,
    "br": _decode_br,
    "zstd": _decode_zstd,
}

_ENCODERS = {
    "gzip": lambda content: gzip.compress(content, mtime=0),
    "x-gzip": lambda content: gzip.compress(content, mtime=0),
    "deflate": zlib.compress,
    "deflateraw": zlib.compress,
    "br": _encode_br,
    "zstd": _encode_zstd,
}


def decode(content, encoding, size_limit=None):
    """Decodes `content` (bytes) sent with Content-Encoding `encoding`.

    ValueError if the encoding is unknown, the body is broken, or it decodes to more than
    `size_limit` bytes (MAX_DECODED_BYTES when None or larger).
    """
    if content is None:
        return None
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "none"):
        return content
    decoder = _DECODERS.get(enc)
    if decoder is None:
        raise ValueError(f"Unknown Content-Encoding: {encoding}")
    if not content:
        return b""
    limit = min(size_limit or MAX_DECODED_BYTES, MAX_DECODED_BYTES)
    try:
        return decoder(content, limit)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{enc} decoding failed: {e!r}") from e


def encode(content, encoding):
    """Encodes `content` with Content-Encoding `encoding`; ValueError if it cannot."""
    if content is None:
        return None
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity", "none"):
        return content
    encoder = _ENCODERS.get(enc)
    if encoder is None:
        raise ValueError(f"Unknown Content-Encoding: {encoding}")
    return encoder(content)


def available():
    """The encodings this interpreter can decode and encode."""
    result = ["identity", "gzip", "deflate"]
    for enc, name in _PACKAGES.items():
        if _native:
            result.append(enc)
            continue
        try:
            __import__(name)
        except ImportError:
            continue
        result.append(enc)
    return result
