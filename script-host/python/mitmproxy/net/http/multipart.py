"""`mitmproxy.net.http.multipart`: multipart/form-data bodies to and from (name, value) pairs."""

import mimetypes
import re
from urllib.parse import quote

from .headers import parse_content_type


def _boundary(content_type):
    """The ASCII boundary of a multipart content-type, or None."""
    parsed = parse_content_type(content_type) if content_type else None
    try:
        return parsed[2]["boundary"].encode("ascii") if parsed else None
    except (KeyError, UnicodeError):
        return None


def encode_multipart(content_type, parts):
    """The body for `parts` ([(name, value)] as bytes) under the content-type's boundary;
    b"" without a usable boundary; ValueError if a value contains the boundary line."""
    raw = _boundary(content_type)
    if raw is None:
        return b""
    boundary = quote(raw).encode()
    delimiter = re.compile(rb"^--" + re.escape(boundary) + rb"$")
    lines = []
    for name, value in parts:
        if name:
            file_type = mimetypes.guess_type(str(name))[0] or "text/plain; charset=utf-8"
            lines += [b"--" + boundary, b'Content-Disposition: form-data; name="%b"' % name,
                      b"Content-Type: " + file_type.encode(), b"", value]
        lines.append(b"")
        if value is not None and delimiter.search(value):
            raise ValueError(b"boundary found in encoded string")
    lines.append(b"--" + boundary + b"--\r\n")
    return b"\r\n".join(lines)


_NAME = re.compile(rb'\bname="([^"]+)"')


def decode_multipart(content_type, content):
    """The (name, value) pairs of a multipart body; [] without a usable boundary."""
    boundary = _boundary(content_type)
    if boundary is None or content is None:
        return []
    fields = []
    for section in content.split(b"--" + boundary):
        lines = section.splitlines()
        if len(lines) < 2 or lines[0][:2] == b"--":
            continue
        m = _NAME.search(lines[1])
        if m and b"" in lines[2:]:
            # The value starts after the blank line that ends the part's headers.
            fields.append((m.group(1), b"".join(lines[3 + lines[2:].index(b""):])))
    return fields
