"""The "XML/HTML" view: one element per line, children indented by two spaces.

An element holding only text stays on one line (`<title>x</title>`); `<html>`'s children are
not indented; comments keep their own line breaks, indented as a whole.
"""

import re
from dataclasses import dataclass

from mitmproxy.net.http.headers import infer_content_encoding
from mitmproxy.utils import strutils

from ._api import Contentview

_TOKENS = re.compile(r"<!--[\s\S]*?(?:-->|$)|<!\[CDATA\[[\s\S]*?(?:\]\]>|$)|<[^>]*>?|[^<]+")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr"}
_CONTENT_TYPES = ("text/xml", "text/html", "application/xml", "application/xhtml+xml",
                  "image/svg+xml", "application/rss+xml", "application/atom+xml")


@dataclass
class Token:
    data: str

    def __str__(self):
        return f"{type(self).__name__}({self.data})"


class Tag(Token):
    @property
    def name(self):
        m = re.match(r"</?([\w:.-]+)", self.data)
        return m.group(1).lower() if m else ""

    @property
    def is_opening(self):
        return bool(self.name) and not self.data.startswith("</") \
            and not self.data.endswith("/>") and self.name not in _VOID

    @property
    def is_closing(self):
        return self.data.startswith("</")


class Text(Token):
    pass


def tokenize(data):
    """The tags and texts of `data`, in order."""
    for m in _TOKENS.finditer(data):
        token = m.group(0)
        yield Tag(token) if token.startswith("<") else Text(token)


def _indent(text, depth):
    pad = "  " * depth
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def format_xml(tokens):
    tokens = [t for t in tokens if not (isinstance(t, Text) and not t.data.strip())]
    out, depth, i = [], 0, 0
    while i < len(tokens):
        token = tokens[i]
        if isinstance(token, Text):
            out.append(_indent(token.data.strip(), depth))
        elif token.is_closing:
            if token.name != "html":
                depth = max(depth - 1, 0)
            out.append(_indent(token.data, depth))
        elif token.is_opening:
            rest = tokens[i + 1:i + 3]
            closes = lambda t: isinstance(t, Tag) and t.is_closing and t.name == token.name
            if rest and closes(rest[0]):
                out.append(_indent(token.data + rest[0].data, depth))
                i += 2
                continue
            if len(rest) == 2 and isinstance(rest[0], Text) and "\n" not in rest[0].data.strip() \
                    and closes(rest[1]):
                out.append(_indent(token.data + rest[0].data.strip() + rest[1].data, depth))
                i += 3
                continue
            out.append(_indent(token.data, depth))
            if token.name != "html":
                depth += 1
        else:
            out.append(_indent(token.data, depth))
        i += 1
    return "\n".join(out) + "\n"


class XmlHtmlContentview(Contentview):
    name = "XML/HTML"
    syntax_highlight = "xml"

    def prettify(self, data, metadata):
        message = metadata.http_message
        if message is not None:
            encoding = infer_content_encoding(message.headers.get("content-type", ""), data)
            text = data.decode(encoding, "replace")
        else:
            text = data.decode("utf-8", "replace")
        return format_xml(tokenize(text))

    def render_priority(self, data, metadata):
        if not data:
            return 0
        if metadata.content_type in _CONTENT_TYPES:
            return 1
        return 0.4 * float(strutils.is_xml(data))


xml_html = XmlHtmlContentview()
