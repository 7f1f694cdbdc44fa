"""`mitmproxy.contentviews.base`: the contentview API before mitmproxy 12 (`View`).

A `View` returns `(description, lines)` where each line is a list of `(style, text)`
pairs; `contentviews.add` wraps one so it works as a `Contentview`.
"""

import typing

TTextType = typing.Union[str, bytes]
TViewLine = typing.List[typing.Tuple[str, TTextType]]
TViewResult = typing.Tuple[str, typing.Iterator[TViewLine]]

KEY_MAX = 30


class View:
    name: typing.ClassVar[str] = ""

    def __call__(self, data, *, content_type=None, flow=None, http_message=None, **unknown):
        raise NotImplementedError

    def render_priority(self, data, *, content_type=None, flow=None, http_message=None,
                        **unknown_metadata):
        return 0

    def __lt__(self, other):
        return self.name.__lt__(other.name)


def format_pairs(items):
    """Lines of `key: value`, keys padded to one width."""
    max_key_len = min(max((len(k) for k, _ in items), default=0), KEY_MAX)
    for key, value in items:
        key_text = (key + ":").ljust(max_key_len + 2)
        yield [("header", key_text), ("text", value)]


def format_dict(d):
    return format_pairs(list(d.items()))


def format_text(text):
    for line in (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).splitlines():
        yield [("text", line)]
