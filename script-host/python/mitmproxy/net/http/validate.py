"""`mitmproxy.net.http.validate`: framing headers checked against request smuggling.

RFC 9112 section 6: one transfer-encoding or one content-length, never both; chunked last in
a request; no transfer-encoding on HTTP/1.0 or on 1xx/204 responses. Stricter than the RFC
where mitmproxy is: comma-separated content-length lists and unknown codings are refused.
"""

import re

# RFC 9110 section 5.1: a field name is a token.
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-zA-Z]+$")
_CONTENT_LENGTH = re.compile(r"^(?:0|[1-9][0-9]*)$")

_CHUNKED_LAST = ("chunked", "compress,chunked", "deflate,chunked", "gzip,chunked")
_NOT_CHUNKED = ("compress", "deflate", "gzip", "identity")


def parse_content_length(value):
    """The length a content-length value states; ValueError unless it is plain digits."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not _CONTENT_LENGTH.match(text) or not text.isascii():
        raise ValueError(f"invalid content-length header: {value!r}")
    return int(text)


def parse_transfer_encoding(value):
    """A transfer-encoding value normalized ("gzip, chunked" -> "gzip,chunked"); ValueError
    for one outside the known set."""
    if not value.isascii():
        raise ValueError(f"invalid transfer-encoding header: {value!r}")
    text = value.decode() if isinstance(value, bytes) else value
    text = re.sub(r"[\t ]*,[\t ]*", ",", text.lower())
    if text not in _CHUNKED_LAST + _NOT_CHUNKED:
        raise ValueError(f"unknown transfer-encoding header: {value!r}")
    return text


def validate_headers(message):
    """ValueError if `message`'s framing headers are malformed or ambiguous."""
    from mitmproxy.http import Request, Response

    te, cl = [], []
    for name, value in message.headers.fields:
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name: {name!r}")
        low = name.lower()
        if low == b"transfer-encoding":
            te.append(value)
        elif low == b"content-length":
            cl.append(value)
    if te and cl:
        raise ValueError("message with both transfer-encoding and content-length headers")
    if te:
        if len(te) > 1:
            raise ValueError(f"multiple transfer-encoding headers: {te!r}")
        if not message.is_http11:
            raise ValueError(
                f"unexpected HTTP transfer-encoding {te[0]!r} for {message.http_version}")
        if isinstance(message, Response) and (
            100 <= message.status_code <= 199 or message.status_code == 204
        ):
            raise ValueError(f"unexpected HTTP transfer-encoding {te[0]!r} for response "
                             f"with status code {message.status_code}")
        coding = parse_transfer_encoding(te[0])
        if coding in _NOT_CHUNKED and isinstance(message, Request):
            raise ValueError(f"unexpected HTTP transfer-encoding {coding!r} for request")
    elif cl:
        if len(cl) > 1:
            raise ValueError(f"multiple content-length headers: {cl!r}")
        parse_content_length(cl[0])
