"""`mitmproxy.net.http.cookies`: Cookie and Set-Cookie values parsed and formatted leniently.

Malformed input is kept, not refused: duplicate cookies survive, quoted values may use
backslash escapes, and one Set-Cookie value may set several cookies separated by commas
(`expires` dates contain a comma too, hence a heuristic). RFC 6265 for output.
"""

import email.utils
import re
import time

from mitmproxy.coretypes import multidict

_COOKIE_ATTRIBUTES = {"expires", "path", "comment", "max-age", "secure", "httponly", "version"}
ESCAPE = re.compile(r"([\"\\])")


class CookieAttrs(multidict.MultiDict):
    """A cookie's attributes: keys case-insensitive, the last of repeated values wins."""

    @staticmethod
    def _kconv(key):
        return key.lower()

    @staticmethod
    def _reduce_values(values):
        return values[-1]


def _read_until(s, start, term):
    """The text from `start` up to a character in `term`, and where that character is."""
    if start == len(s):
        return "", start + 1
    for i in range(start, len(s)):
        if s[i] in term:
            return s[start:i], i
    return s[start:], len(s)


def _read_quoted_string(s, start):
    """The unescaped text of the quoted string at `start`, and the offset after it."""
    out, escaping, i = [], False, start
    for i in range(start + 1, len(s)):
        c = s[i]
        if escaping:
            out.append(c)
            escaping = False
        elif c == '"':
            break
        elif c == "\\":
            escaping = True
        else:
            out.append(c)
    return "".join(out), i + 1


def _read_key(s, start, delims=";="):
    return _read_until(s, start, delims)


def _read_value(s, start, delims):
    if start >= len(s):
        return "", start
    if s[start] == '"':
        return _read_quoted_string(s, start)
    return _read_until(s, start, delims)


def _read_cookie_pairs(s, off=0):
    """The [name, value] pairs of a Cookie value, and the offset after them."""
    pairs = []
    while True:
        key, off = _read_key(s, off)
        key = key.lstrip()
        value = ""
        if off < len(s) and s[off] == "=":
            value, off = _read_value(s, off + 1, ";")
        if key or value:
            pairs.append([key, value])
        off += 1
        if off >= len(s):
            return pairs, off


def _read_set_cookie_pairs(s, off=0):
    """The pairs of each cookie a Set-Cookie value sets (None: an attribute without "=")."""
    cookies, pairs = [], []
    while True:
        key, off = _read_key(s, off, ";=,")
        key = key.lstrip()
        if off < len(s) and s[off] == "=":
            value, off = _read_value(s, off + 1, ";,")
            # An expires date has a comma after the weekday ("Wed, 21 Oct ..."): a value that
            # short is only its first part.
            if key.lower() == "expires" and len(value) <= 3:
                rest, off = _read_value(s, off + 1, ";,")
                value = f"{value},{rest}"
            pairs.append((key, value))
        elif key:
            pairs.append((key, None))
        if off < len(s) and s[off] == ",":
            cookies.append(pairs)
            pairs = []
        off += 1
        if off >= len(s):
            break
    if pairs or not cookies:
        cookies.append(pairs)
    return cookies, off


def _has_special(s):
    return any(c in '",;\\' or not 0x21 <= ord(c) <= 0x7E for c in s)


def _format_pairs(pairs, specials=(), sep="; "):
    """Pairs joined by `sep`; values with special characters quoted unless their key is in
    `specials` (lower-case)."""
    out = []
    for key, value in pairs:
        if value is None:
            out.append(key)
        elif key.lower() not in specials and _has_special(value):
            escaped = ESCAPE.sub(r"\\\1", value)
            out.append(f'{key}="{escaped}"')
        else:
            out.append(f"{key}={value}")
    return sep.join(out)


def _format_set_cookie_pairs(lst):
    return _format_pairs(lst, specials=("expires", "path"))


def parse_cookie_header(line):
    """The [name, value] pairs of a Cookie header value."""
    return _read_cookie_pairs(line)[0]


def parse_cookie_headers(cookie_headers):
    return [pair for header in cookie_headers for pair in parse_cookie_header(header)]


def format_cookie_header(lst):
    return _format_pairs(lst)


def parse_set_cookie_header(line):
    """`[(name, value, CookieAttrs)]` for each cookie a Set-Cookie value sets."""
    return [(pairs[0][0], pairs[0][1], CookieAttrs(pairs[1:]))
            for pairs in _read_set_cookie_pairs(line)[0] if pairs]


def parse_set_cookie_headers(headers):
    return [cookie for header in headers for cookie in parse_set_cookie_header(header)]


def format_set_cookie_header(set_cookies):
    """A Set-Cookie value for `[(name, value, attrs)]`."""
    return ", ".join(
        _format_set_cookie_pairs([(name, value), *(getattr(attrs, "fields", attrs))])
        for name, value, attrs in set_cookies
    )


def refresh_set_cookie_header(c, delta):
    """The Set-Cookie value `c` with its expiry moved `delta` seconds on (an unreadable
    expires is dropped); ValueError for a cookie without name or value."""
    cookies = parse_set_cookie_header(c)
    for name, value, attrs in cookies:
        if not name or not value:
            raise ValueError("Invalid Cookie")
        if "expires" in attrs:
            parsed = email.utils.parsedate_tz(attrs["expires"])
            if parsed:
                moved = email.utils.mktime_tz(parsed) + delta
                attrs.set_all("expires", [email.utils.formatdate(moved, usegmt=True)])
            else:
                del attrs["expires"]
    return format_set_cookie_header(cookies)


def get_expiration_ts(cookie_attrs):
    """When the cookie expires (expires first, then max-age), or None."""
    if "expires" in cookie_attrs:
        parsed = email.utils.parsedate_tz(cookie_attrs["expires"])
        return email.utils.mktime_tz(parsed) if parsed else None
    if "max-age" in cookie_attrs:
        try:
            return time.time() + int(cookie_attrs["max-age"])
        except ValueError:
            return None
    return None


def is_expired(cookie_attrs):
    expires = get_expiration_ts(cookie_attrs)
    return expires is not None and expires <= time.time()


def group_cookies(pairs):
    """Flat (key, value) pairs split into `(name, value, attrs)` cookies: a key that is not a
    cookie attribute starts the next cookie."""
    cookies = []
    for key, value in pairs:
        if cookies and key.lower() in _COOKIE_ATTRIBUTES:
            cookies[-1][2].append((key, value))
        else:
            cookies.append((key, value, []))
    return [(name, value, CookieAttrs(attrs)) for name, value, attrs in cookies]
