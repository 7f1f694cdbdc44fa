"""`mitmproxy.flowfilter`: mitmproxy's filter language (`~d host & ~c 404`).

`parse(text)` gives a callable filter; `match(flt_or_text, flow)` tests one flow.
Precedence `!` > `&` > `|`; atoms side by side are and-ed; a bare regex means `~u regex`.
"""

import os
import re

_FLAGS = 0 if os.environ.get("MITMPROXY_CASE_SENSITIVE_FILTERS") == "1" else re.IGNORECASE


def _http(f):
    return f.type == "http"


def _rx(pattern, as_bytes, extra=0):
    if as_bytes:
        pattern = pattern.encode("utf-8", "surrogateescape")
    return re.compile(pattern, _FLAGS | extra)


def _bodies(flow, request_side, response_side):
    out = []
    if flow.type == "http":
        if request_side and flow.request and flow.request.raw_content is not None:
            out.append(flow.request.get_content(strict=False))
        if response_side and flow.response and flow.response.raw_content is not None:
            out.append(flow.response.get_content(strict=False))
        if flow.websocket:
            out += [m.content for m in flow.websocket.messages
                    if (m.from_client and request_side) or (not m.from_client and response_side)]
    elif flow.type in ("tcp", "udp"):
        out += [m.content for m in flow.messages
                if (m.from_client and request_side) or (not m.from_client and response_side)]
    elif flow.type == "dns":
        if request_side and flow.request:
            out.append(str(flow.request.get_state()).encode())
        if response_side and flow.response:
            out.append(str(flow.response.get_state()).encode())
    return out


def _content_type(message):
    return message.headers.get("content-type", "").encode() if message else None


_ASSET = re.compile(
    rb"text/javascript|application/x-javascript|application/javascript|text/css|image/.*|font/.*|application/font.*"
)

# name -> (takes argument, function(flow, compiled) -> bool, argument kind)
def _nullary():
    return {
        "all": lambda f: True,
        "a": lambda f: _http(f) and f.response is not None
        and bool(_ASSET.search(_content_type(f.response) or b"")),
        "dns": lambda f: f.type == "dns",
        "e": lambda f: f.error is not None,
        "http": _http,
        "marked": lambda f: bool(f.marked),
        "q": lambda f: f.type in ("http", "dns") and f.response is None,
        "s": lambda f: f.type in ("http", "dns") and f.response is not None,
        "replay": lambda f: f.is_replay is not None,
        "replayq": lambda f: f.is_replay == "request",
        "replays": lambda f: f.is_replay == "response",
        "tcp": lambda f: f.type == "tcp",
        "udp": lambda f: f.type == "udp",
        "websocket": lambda f: _http(f) and f.websocket is not None,
    }


def _url(f, rx):
    if f.type == "http":
        return bool(rx.search(f.request.pretty_url))
    if f.type == "dns" and f.request and f.request.questions:
        return bool(rx.search(f.request.questions[0].name))
    return False


def _headers(message, rx):
    return message is not None and bool(rx.search(bytes(message.headers)))


def _addr(address):
    return f"{address[0]}:{address[1]}" if address else None


def _unary():
    return {
        "b": (True, re.DOTALL, lambda f, rx: any(rx.search(b) for b in _bodies(f, True, True))),
        "bq": (True, re.DOTALL, lambda f, rx: any(rx.search(b) for b in _bodies(f, True, False))),
        "bs": (True, re.DOTALL, lambda f, rx: any(rx.search(b) for b in _bodies(f, False, True))),
        "comment": (False, re.MULTILINE, lambda f, rx: bool(rx.search(f.comment))),
        "d": (False, 0, lambda f, rx: _http(f)
              and bool(rx.search(f.request.host) or rx.search(f.request.pretty_host))),
        "dst": (False, 0, lambda f, rx: bool(_addr(f.server_conn.address)
                                            and rx.search(_addr(f.server_conn.address)))),
        "src": (False, 0, lambda f, rx: bool(_addr(f.client_conn.peername)
                                            and rx.search(_addr(f.client_conn.peername)))),
        "h": (True, re.MULTILINE, lambda f, rx: _http(f)
              and (_headers(f.request, rx) or _headers(f.response, rx))),
        "hq": (True, re.MULTILINE, lambda f, rx: _http(f) and _headers(f.request, rx)),
        "hs": (True, re.MULTILINE, lambda f, rx: _http(f) and _headers(f.response, rx)),
        "m": (True, 0, lambda f, rx: _http(f) and bool(rx.search(f.request.data_method))),
        "marker": (False, 0, lambda f, rx: bool(rx.search(f.marked))),
        "meta": (False, re.MULTILINE, lambda f, rx: bool(
            rx.search("\n".join(f"{k}: {v}" for k, v in f.metadata.items())))),
        "t": (True, 0, lambda f, rx: _http(f) and any(
            rx.search(ct) for ct in (_content_type(f.request), _content_type(f.response)) if ct)),
        "tq": (True, 0, lambda f, rx: _http(f) and bool(rx.search(_content_type(f.request) or b""))
               and "content-type" in f.request.headers),
        "ts": (True, 0, lambda f, rx: _http(f) and f.response is not None
               and "content-type" in f.response.headers
               and bool(rx.search(_content_type(f.response)))),
        "u": (False, 0, _url),
    }


_NULLARY = _nullary()
_UNARY = _unary()
_TOKEN = re.compile(
    r"""\s*(?:(?P<op>[!&|()])|~(?P<code>[a-z]+)\b|"(?P<dq>(?:\\.|[^"\\])*)"|'(?P<sq>(?:\\.|[^'\\])*)'|(?P<word>[^\s()~'"]+))"""
)


class TFilter:
    """A parsed filter: call it with a flow."""

    def __init__(self, fn, pattern):
        self._fn = fn
        self.pattern = pattern

    def __call__(self, flow):
        return bool(self._fn(flow))

    def __repr__(self):
        return f"<TFilter {self.pattern!r}>"


def _tokens(text):
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"Invalid filter expression: {text!r}")
        pos = m.end()
        if m.group("op"):
            out.append(("op", m.group("op")))
        elif m.group("code"):
            out.append(("code", m.group("code")))
        elif m.group("dq") is not None:
            out.append(("arg", bytes(m.group("dq"), "utf-8").decode("unicode_escape")))
        elif m.group("sq") is not None:
            out.append(("arg", bytes(m.group("sq"), "utf-8").decode("unicode_escape")))
        else:
            out.append(("arg", m.group("word")))
    return out


class _Parser:
    def __init__(self, text):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def fail(self):
        raise ValueError(f"Invalid filter expression: {self.text!r}")

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self):
        tok = self.peek()
        if tok is None:
            self.fail()
        self.i += 1
        return tok

    def parse(self):
        if not self.toks:
            self.fail()
        fn = self.or_()
        if self.peek() is not None:
            self.fail()
        return fn

    def or_(self):
        fns = [self.and_()]
        while self.peek() == ("op", "|"):
            self.take()
            fns.append(self.and_())
        return fns[0] if len(fns) == 1 else (lambda f: any(fn(f) for fn in fns))

    def and_(self):
        fns = [self.not_()]
        while True:
            tok = self.peek()
            if tok == ("op", "&"):
                self.take()
            elif tok is None or tok in (("op", "|"), ("op", ")")):
                break
            fns.append(self.not_())
        return fns[0] if len(fns) == 1 else (lambda f: all(fn(f) for fn in fns))

    def not_(self):
        if self.peek() == ("op", "!"):
            self.take()
            inner = self.not_()
            return lambda f: not inner(f)
        return self.atom()

    def atom(self):
        kind, value = self.take()
        if (kind, value) == ("op", "("):
            fn = self.or_()
            if self.take() != ("op", ")"):
                self.fail()
            return fn
        if kind == "arg":
            return self._unary("u", value)
        if kind == "code":
            if value in _NULLARY:
                return _NULLARY[value]
            if value == "c":
                arg = self.take()
                if arg[0] != "arg" or not arg[1].isdigit():
                    self.fail()
                code = int(arg[1])
                return lambda f: _http(f) and f.response is not None and f.response.status_code == code
            if value in _UNARY:
                arg = self.take()
                if arg[0] != "arg":
                    self.fail()
                return self._unary(value, arg[1])
        self.fail()

    def _unary(self, code, pattern):
        as_bytes, flags, fn = _UNARY[code]
        try:
            rx = _rx(pattern, as_bytes, flags)
        except re.error:
            self.fail()
        return lambda f: fn(f, rx)


def parse(text):
    """Parses a filter expression; ValueError("Invalid filter expression: ...") if invalid."""
    return TFilter(_Parser(text).parse(), text)


def match(flt, flow):
    """True if `flow` matches `flt` (a TFilter or an expression)."""
    if isinstance(flt, str):
        flt = parse(flt)
    return flt(flow) if flt else True
