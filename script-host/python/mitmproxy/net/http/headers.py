"""`mitmproxy.net.http.headers`: content-type parsing and the charset a body is in."""

import re

_BOMS = (  # longest first: a UTF-32LE BOM starts with the UTF-16LE one
    (b"\x00\x00\xfe\xff", "utf-32be"),
    (b"\xff\xfe\x00\x00", "utf-32le"),
    (b"\xfe\xff", "utf-16be"),
    (b"\xff\xfe", "utf-16le"),
    (b"\xef\xbb\xbf", "utf-8-sig"),  # utf-8-sig drops the BOM when decoding
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=['"]?([^'">]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""<\?xml[^\?>]+encoding=['"]([^'"\?>]+)""", re.IGNORECASE)
_CSS_CHARSET = re.compile(rb"""@charset "([^"]+)";""", re.IGNORECASE)


def parse_content_type(c):
    """`("text", "html", {"charset": "UTF-8"})` for `text/html; charset=UTF-8`; None if
    there is no `type/subtype`."""
    media, _, params = c.partition(";")
    kind, slash, subtype = media.partition("/")
    if not slash:
        return None
    parameters = {}
    for clause in params.split(";") if params else ():
        key, eq, value = clause.partition("=")
        if eq:
            parameters[key.strip()] = value.strip()
    return kind.lower(), subtype.lower(), parameters


def assemble_content_type(type, subtype, parameters):
    """The inverse of `parse_content_type`."""
    if not parameters:
        return f"{type}/{subtype}"
    return f"{type}/{subtype}; " + "; ".join(f"{k}={v}" for k, v in parameters.items())


def _declared(content_type, content):
    """The charset the body or header declares, or the one its type implies (None: none)."""
    parsed = parse_content_type(content_type)
    if parsed and parsed[2].get("charset"):
        return parsed[2]["charset"]
    if "json" in content_type:
        return "utf8"
    if "html" in content_type:
        m = _META_CHARSET.search(content)
        return m.group(1).decode("ascii", "ignore") if m else "utf8"  # WHATWG: else UTF-8
    if "xml" in content_type:
        m = _XML_ENCODING.search(content)
        return m.group(1).decode("ascii", "ignore") if m else "utf8"  # RFC 7303 8.5
    if "javascript" in content_type or "ecmascript" in content_type:
        return "utf8"  # RFC 9239 4.2
    if "text/css" in content_type:
        m = _CSS_CHARSET.match(content)  # @charset must come first
        return m.group(1).decode("ascii", "ignore") if m else "utf8"
    return None


def infer_content_encoding(content_type, content=b""):
    """The text encoding of `content`: a BOM, else the declared charset, else what the media
    type implies, else latin-1. GB2312 and GBK become their superset GB 18030."""
    enc = next((name for bom, name in _BOMS if content.startswith(bom)), None)
    enc = enc or _declared(content_type, content) or "latin-1"
    return "gb18030" if enc.lower() in ("gb2312", "gbk") else enc
