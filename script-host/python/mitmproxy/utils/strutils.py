"""mitmproxy.utils.strutils: text and bytes helpers that scripts use."""

import re

__all__ = ["always_bytes", "always_str", "bytes_to_escaped_str", "escaped_str_to_bytes",
           "escape_control_characters", "is_mostly_bin", "is_xml"]


def always_bytes(value, *encode_args):
    if isinstance(value, bytes) or value is None:
        return value
    if isinstance(value, str):
        return value.encode(*encode_args)
    raise TypeError(f"Expected str or bytes, but got {type(value).__name__}.")


def always_str(value, *decode_args):
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode(*decode_args)
    raise TypeError(f"Expected str or bytes, but got {type(value).__name__}.")


_CONTROL = {i: "\ufffd" for i in range(32) if i not in (9, 10, 13)}


def escape_control_characters(text, keep_spacing=True):
    """Replaces control characters (but tab, newline and carriage return when
    `keep_spacing`) with U+FFFD."""
    if not isinstance(text, str):
        raise ValueError(f"text type must be unicode but is {type(text).__name__}")
    table = _CONTROL if keep_spacing else {i: "\ufffd" for i in range(32)}
    return text.translate(table)


def bytes_to_escaped_str(data, keep_spacing=False, escape_single_quotes=False):
    """Bytes as printable text: non-printable bytes as escapes, as repr() would show them."""
    if not isinstance(data, bytes):
        raise ValueError(f"data must be bytes, but is {data.__class__.__name__}")
    ret = repr(data)[2:-1]
    if not escape_single_quotes:
        ret = ret.replace("\\'", "'")
    if keep_spacing:
        ret = re.sub(r"(?<!\\)(\\\\)*\\([nrt])",
                     lambda m: (m.group(1) or "") + {"n": "\n", "r": "\r", "t": "\t"}[m.group(2)],
                     ret)
    return ret


def escaped_str_to_bytes(data):
    """The inverse of bytes_to_escaped_str."""
    if not isinstance(data, str):
        raise ValueError(f"data must be str, but is {data.__class__.__name__}")
    return data.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")


def is_mostly_bin(s):
    if not s:
        return False
    return sum(i < 9 or 13 < i < 32 or 126 < i for i in s[:100]) / len(s[:100]) > 0.3


def is_xml(s):
    for char in s:
        if char in b" \t\r\n":
            continue
        return char == ord("<")
    return False
