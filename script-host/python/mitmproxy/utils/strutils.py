"""`mitmproxy.utils.strutils`: text and bytes helpers (conversion, escaping, binary sniffing,
hexdumps, and the "special areas" trick the code prettifiers use)."""

import codecs
import io
import re

__all__ = ["always_bytes", "always_str", "bytes_to_escaped_str", "escaped_str_to_bytes",
           "escape_control_characters", "is_mostly_bin", "is_xml", "clean_hanging_newline",
           "hexdump", "split_special_areas", "escape_special_areas", "unescape_special_areas",
           "cut_after_n_lines"]


def always_bytes(str_or_bytes, *encode_args):
    """`str_or_bytes` as bytes (str encoded with `encode_args`); None stays None."""
    if str_or_bytes is None or isinstance(str_or_bytes, bytes):
        return str_or_bytes
    if isinstance(str_or_bytes, str):
        return str_or_bytes.encode(*encode_args)
    raise TypeError(f"Expected str or bytes, but got {type(str_or_bytes).__name__}.")


def always_str(str_or_bytes, *decode_args):
    """`str_or_bytes` as str (bytes decoded with `decode_args`); None stays None."""
    if str_or_bytes is None or isinstance(str_or_bytes, str):
        return str_or_bytes
    if isinstance(str_or_bytes, bytes):
        return str_or_bytes.decode(*decode_args)
    raise TypeError(f"Expected str or bytes, but got {type(str_or_bytes).__name__}.")


# C0 controls and DEL shown as "." (control pictures render badly in monospace fonts).
_CONTROLS = {c: ord(".") for c in [*range(32), 127]}
_CONTROLS_BUT_SPACING = {c: v for c, v in _CONTROLS.items() if chr(c) not in "\r\n\t"}


def escape_control_characters(text, keep_spacing=True):
    """`text` with control characters as "." (tab, CR and LF kept if `keep_spacing`)."""
    if not isinstance(text, str):
        raise ValueError(f"text type must be unicode but is {type(text).__name__}")
    return text.translate(_CONTROLS_BUT_SPACING if keep_spacing else _CONTROLS)


def bytes_to_escaped_str(data, keep_spacing=False, escape_single_quotes=False):
    """Bytes as printable text (Python escapes); `'` + result + `'` is a valid literal when
    `escape_single_quotes`. With `keep_spacing`, tab, CR and LF stay as they are."""
    if not isinstance(data, bytes):
        raise ValueError(f"data must be bytes, but is {data.__class__.__name__}")
    # A leading double quote makes repr() choose single quotes, so only ' is escaped.
    ret = repr(b'"' + data)[3:-1]
    if not escape_single_quotes:
        ret = re.sub(r"(?<!\\)(\\\\)*\\'", lambda m: (m.group(1) or "") + "'", ret)
    if keep_spacing:
        ret = re.sub(r"(?<!\\)(\\\\)*\\([nrt])",
                     lambda m: (m.group(1) or "") + {"n": "\n", "r": "\r", "t": "\t"}[m.group(2)],
                     ret)
    return ret


def escaped_str_to_bytes(data):
    """The bytes an escaped string stands for; ValueError for a bad escape."""
    if not isinstance(data, str):
        raise ValueError(f"data must be str, but is {data.__class__.__name__}")
    return codecs.escape_decode(data)[0]


def _head(s, limit=100):
    """About the first `limit` bytes, not cutting a UTF-8 sequence in half."""
    if len(s) <= limit:
        return s
    for cut in range(limit, min(limit + 4, len(s))):
        if s[cut] >> 6 != 0b10:  # not a continuation byte: a character starts here
            return s[:cut]
    return s[:limit]


def is_mostly_bin(s):
    """True if `s` looks like binary data rather than text (mostly ASCII or valid UTF-8)."""
    if not s:
        return False
    s = _head(s)
    low = sum(i < 9 or 13 < i < 32 for i in s)
    high = sum(i > 126 for i in s)
    printable = len(s) - low - high
    if printable / len(s) > 0.7:
        return False
    if (printable + high) / len(s) > 0.95:
        try:
            s.decode()
            return False
        except ValueError:
            pass
    return True


def is_xml(s):
    """True if the first non-whitespace byte is `<`."""
    for char in s:
        if char in (9, 10, 13, 32):
            continue
        return char == 60
    return False


def clean_hanging_newline(t):
    """`t` without one trailing newline (editors add one silently)."""
    return t[:-1] if t and t[-1] == "\n" else t


def hexdump(s):
    """`(offset, hex, text)` for each 16 bytes of `s`."""
    for i in range(0, len(s), 16):
        part = s[i:i + 16]
        hex_part = " ".join(f"{b:02x}" for b in part).ljust(47)
        text = part.decode("ascii", "replace").replace("\ufffd", ".")
        yield f"{i:010x}", hex_part, escape_control_characters(text, False)


NO_ESCAPE = r"(?<!\\)(?:\\\\)*"
MULTILINE_CONTENT = r"[\s\S]*?"
SINGLELINE_CONTENT = r".*?"
MULTILINE_CONTENT_LINE_CONTINUATION = r"(?:.|(?<=\\)\n)*?"


def split_special_areas(data, area_delimiter):
    """`[code, area, code, area, ..., code]`: `data` split at the areas the regexes in
    `area_delimiter` match (strings, comments); joining the parts gives `data` back."""
    return re.split("({})".format("|".join(area_delimiter)), data, flags=re.MULTILINE)


def escape_special_areas(data, area_delimiter, control_characters):
    """`data` with the characters `control_characters` (a regex class body, code points
    below 256) inside special areas moved to the private use plane (U+E000 + code), so
    regex rewrites of the code leave the areas alone. `unescape_special_areas` undoes it."""
    control = re.compile(f"[{control_characters}]")
    out = io.StringIO()
    for i, part in enumerate(split_special_areas(data, area_delimiter)):
        out.write(control.sub(lambda m: chr(ord(m.group(0)) + 0xE000), part) if i % 2 else part)
    return out.getvalue()


def unescape_special_areas(data):
    return re.sub(r"[\ue000-\ue0ff]", lambda m: chr(ord(m.group(0)) - 0xE000), data)


def cut_after_n_lines(content, n):
    """The first `n` lines of `content` (with their line ends)."""
    if n <= 0:
        raise ValueError("n must be positive")
    pos = content.find("\n")
    while pos >= 0 and n > 1:
        pos = content.find("\n", pos + 1)
        n -= 1
    return content[:pos + 1] if pos >= 0 else content
