"""`mitmproxy.net.http.url`: URLs split and joined, form-encoding, authorities."""

import re
import urllib.parse

from mitmproxy.net.check import is_valid_host, is_valid_port

_AUTHORITY = re.compile(r"^(?P<host>[^:]+|\[.+\])(?::(?P<port>\d+))?$")
_DEFAULT_PORTS = {"http": 80, b"http": 80, "https": 443, b"https": 443}


def parse(url):
    """`(scheme, host, port, path)` of an absolute URL, all bytes but the port; ValueError
    for a URL without a valid host, with a bad port, or not ASCII in the path."""
    if isinstance(url, bytes):
        url = url.decode()
        if not url.isascii():
            # Non-ASCII in the path of a bytes URL is percent-encoded, not refused.
            parts = list(urllib.parse.urlsplit(url))
            parts[3] = urllib.parse.quote(parts[3])
            url = urllib.parse.urlunsplit(parts)
    parsed = urllib.parse.urlparse(url)
    if not parsed.hostname:
        raise ValueError("No hostname given")
    host = parsed.hostname.encode("idna")
    parsed = parsed.encode("ascii")
    port = parsed.port or (443 if parsed.scheme == b"https" else 80)
    path = urllib.parse.urlunparse((b"", b"", parsed.path, parsed.params, parsed.query,
                                    parsed.fragment))
    if not path.startswith(b"/"):
        path = b"/" + path
    if not is_valid_host(host):
        raise ValueError("Invalid Host")
    return parsed.scheme, host, port, path


def unparse(scheme, host, port, path):
    """A URL from its parts (all str or all bytes but the port); the port only if not the
    scheme's default."""
    authority = hostport(scheme, host, port)
    if isinstance(scheme, str):
        return f"{scheme}://{authority}{path}"
    return b"%s://%s%s" % (scheme, authority, path)


def encode(s, similar_to=None):
    """`[(key, value)]` form-encoded; like `similar_to` (`a&b` rather than `a=&b=`) if given."""
    bare_keys = bool(similar_to) and any("=" not in p for p in similar_to.split("&"))
    encoded = urllib.parse.urlencode(s, False, errors="surrogateescape")
    if encoded and bare_keys:
        encoded = encoded.replace("=&", "&")
        if encoded.endswith("="):
            encoded = encoded[:-1]
    return encoded


def decode(s):
    """The surrogate-escaped `(key, value)` pairs of a form-encoded string, blanks kept."""
    return urllib.parse.parse_qsl(s, keep_blank_values=True, errors="surrogateescape")


def quote(b, safe="/"):
    """Percent-encodes a surrogate-escaped str into ASCII."""
    return urllib.parse.quote(b, safe=safe, errors="surrogateescape")


def unquote(s):
    """Percent-decodes into a surrogate-escaped str."""
    return urllib.parse.unquote(s, errors="surrogateescape")


def default_port(scheme):
    """80 for http, 443 for https (str or bytes), else None."""
    return _DEFAULT_PORTS.get(scheme)


def hostport(scheme, host, port):
    """`host`, with `:port` unless it is the scheme's default."""
    if default_port(scheme) == port:
        return host
    return b"%s:%d" % (host, port) if isinstance(host, bytes) else f"{host}:{port}"


def parse_authority(authority, check):
    """`(host, port or None)` of a Host header or authority. Malformed: ValueError if
    `check`, else the whole text as the host."""
    try:
        text = authority.decode("utf-8") if isinstance(authority, bytes) else authority
        m = _AUTHORITY.match(text)
        if not m:
            raise ValueError
        host = m["host"]
        if isinstance(authority, bytes):
            host = host.encode("utf-8").decode("idna")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not is_valid_host(host):
            raise ValueError
        if m["port"] is None:
            return host, None
        port = int(m["port"])
        if not is_valid_port(port):
            raise ValueError
        return host, port
    except ValueError:
        if check:
            raise
        if isinstance(authority, bytes):
            authority = authority.decode("utf-8", "surrogateescape")
        return authority, None
