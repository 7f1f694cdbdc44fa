"""`mitmproxy.net.encoding`: Content-Encoding codecs, and text codecs by name.

`decode(b, "gzip")` / `encode(b, "br")` for the compression codings (gzip, deflate, br, zstd,
identity, as in `mitmproxy._encoding`); any other name is a Python text codec
(`decode(b"\\xe4", "latin-1")`). Failures are ValueError naming the coding. The last
compression result is cached, as mitmproxy does, so decoding the same body twice is cheap.
"""

import codecs
import typing

from mitmproxy import _encoding


class CachedDecode(typing.NamedTuple):
    encoded: object
    encoding: str
    errors: str
    decoded: object


_cache = CachedDecode(None, None, None, None)
_COMPRESSIONS = ("gzip", "deflate", "deflateraw", "br", "zstd")


def identity(content):
    """The content unchanged (the `identity` coding)."""
    return content


def decode_gzip(content):
    if not content:
        return b""
    return _encoding.decode(content, "gzip")


def encode_gzip(content):
    return _encoding.encode(content, "gzip")


def decode_deflate(content):
    if not content:
        return b""
    return _encoding.decode(content, "deflate")


def encode_deflate(content):
    return _encoding.encode(content, "deflate")


def decode_brotli(content):
    if not content:
        return b""
    return _encoding.decode(content, "br")


def encode_brotli(content):
    return _encoding.encode(content, "br")


def decode_zstd(content):
    if not content:
        return b""
    return _encoding.decode(content, "zstd")


def encode_zstd(content):
    return _encoding.encode(content, "zstd")


custom_decode = {"none": identity, "identity": identity, "gzip": decode_gzip,
                 "deflate": decode_deflate, "deflateraw": decode_deflate, "br": decode_brotli,
                 "zstd": decode_zstd}
custom_encode = {"none": identity, "identity": identity, "gzip": encode_gzip,
                 "deflate": encode_deflate, "deflateraw": encode_deflate, "br": encode_brotli,
                 "zstd": encode_zstd}


def _convert(value, encoding, errors, direction):
    global _cache
    if value is None:
        return None
    encoding = encoding.lower()
    if encoding in _COMPRESSIONS and not isinstance(value, bytes):
        raise TypeError(f"{encoding} works on bytes, not {type(value).__name__}")
    forward = 0 if direction == "decode" else 3
    if isinstance(value, bytes) and _cache[forward] == value \
            and _cache.encoding == encoding and _cache.errors == errors:
        return _cache[3 - forward]
    custom = custom_decode if direction == "decode" else custom_encode
    try:
        if encoding in custom:
            result = custom[encoding](value)
        else:
            result = getattr(codecs, direction)(value, encoding, errors)
    except TypeError:
        raise
    except Exception as e:
        raise ValueError(f"{type(e).__name__} when {direction[:-1]}ing {repr(value)[:10]} "
                         f"with {encoding!r}: {e!r}") from None
    if encoding in _COMPRESSIONS:
        _cache = CachedDecode(value, encoding, errors, result) if direction == "decode" \
            else CachedDecode(result, encoding, errors, value)
    return result


def decode(encoded, encoding, errors="strict"):
    """`encoded` decoded from `encoding`; None stays None; ValueError if it fails."""
    return _convert(encoded, encoding, errors, "decode")


def encode(decoded, encoding, errors="strict"):
    """`decoded` encoded with `encoding`; None stays None; ValueError if it fails."""
    return _convert(decoded, encoding, errors, "encode")
