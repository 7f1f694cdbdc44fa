"""`mitmproxy.flowfilter`: mitmproxy's filter language (`~d host & ~c 404`).

`parse(text)` gives a filter object: call it with a flow. Each operator is a class named as in
mitmproxy (`FReq` for `~q`, `FHead` for `~h regex`, `FAnd`/`FOr`/`FNot`), with `str()` the
description mitmproxy prints ("has no response and header matches /x/im") and `dump()` the
tree. Precedence `!` > `&` > `|`; expressions side by side at the top level are and-ed; a bare
regex means `~u regex`. Like flowtap's proxy (and unlike mitmproxy 12.3.1), an argument-less
operator may end right before `)`, `&` or `|`: `!(~tcp|~dns)`.
"""

import os
import re
import sys

from mitmproxy import dns, http, tcp, udp


def _ignore_case():
    return 0 if os.environ.get("MITMPROXY_CASE_SENSITIVE_FILTERS") == "1" else re.IGNORECASE


def _only(*types):
    """The decorated `__call__` is False for flows of other types."""

    def decorator(fn):
        def call(self, flow):
            return isinstance(flow, types) and fn(self, flow)

        call.__name__, call.__doc__ = fn.__name__, fn.__doc__
        return call

    return decorator


class _Token:
    def dump(self, indent=0, fp=sys.stdout):
        print(f"{chr(9) * indent}{type(self).__name__}{getattr(self, 'expr', '')}", file=fp)

    def __str__(self):
        raise NotImplementedError


class _Action(_Token):
    code = ""
    help = ""


def _flag(name, code, help, description, test, types=None):
    """An operator without argument; `test(flow)` decides."""
    call = (lambda self, f: bool(test(f))) if types is None else \
        _only(*types)(lambda self, f: bool(test(f)))
    return type(name, (_Action,), {"code": code, "help": help, "__call__": call,
                                   "__str__": lambda self: description})


FErr = _flag("FErr", "e", "Match error", "has error", lambda f: f.error)
FMarked = _flag("FMarked", "marked", "Match marked flows", "is marked", lambda f: f.marked)
FHTTP = _flag("FHTTP", "http", "Match HTTP flows", "is an HTTP Flow", lambda f: True,
              (http.HTTPFlow,))
FWebSocket = _flag("FWebSocket", "websocket", "Match WebSocket flows", "is a Websocket Flow",
                   lambda f: f.websocket is not None, (http.HTTPFlow,))
FTCP = _flag("FTCP", "tcp", "Match TCP flows", "is a TCP Flow", lambda f: f.type == "tcp",
             (tcp.TCPFlow,))
FUDP = _flag("FUDP", "udp", "Match UDP flows", "is a UDP Flow", lambda f: True, (udp.UDPFlow,))
FDNS = _flag("FDNS", "dns", "Match DNS flows", "is a DNS Flow", lambda f: True, (dns.DNSFlow,))
FReq = _flag("FReq", "q", "Match request with no response", "has no response",
             lambda f: not f.response, (http.HTTPFlow, dns.DNSFlow))
FResp = _flag("FResp", "s", "Match response", "has response",
              lambda f: bool(f.response), (http.HTTPFlow, dns.DNSFlow))
FAll = _flag("FAll", "all", "Match all flows", "all flows", lambda f: True)
FReplay = _flag("FReplay", "replay", "Match replayed flows", "flow has been replayed",
                lambda f: f.is_replay)
FReplayClient = _flag("FReplayClient", "replayq", "Match replayed client request",
                      "request has been replayed", lambda f: f.is_replay == "request")
FReplayServer = _flag("FReplayServer", "replays", "Match replayed server response",
                      "response has been replayed", lambda f: f.is_replay == "response")

_ASSET_TYPES = [re.compile(x) for x in (
    b"text/javascript", b"application/x-javascript", b"application/javascript", b"text/css",
    b"image/.*", b"font/.*", b"application/font.*")]


def _content_type_matches(rex, message):
    return any(name.lower() == b"content-type" and rex.search(value)
               for name, value in message.headers.fields)


class FAsset(_Action):
    code = "a"
    help = "Match asset in response: CSS, JavaScript, images, fonts."
    ASSET_TYPES = _ASSET_TYPES

    @_only(http.HTTPFlow)
    def __call__(self, f):
        return bool(f.response) and any(_content_type_matches(r, f.response)
                                        for r in self.ASSET_TYPES)

    def __str__(self):
        return "is asset"


class _Rex(_Action):
    flags = 0
    binary = False
    description = ""

    def __init__(self, expr):
        self.expr = expr
        try:
            self.re = re.compile(expr.encode() if self.binary else expr,
                                 self.flags | _ignore_case())
        except Exception:
            raise ValueError("Cannot compile expression.") from None

    @property
    def regex_str(self):
        flags = "".join(c for c, bit in (("i", re.IGNORECASE), ("m", re.MULTILINE),
                                         ("s", re.DOTALL)) if self.re.flags & bit)
        return f"/{self.expr}/{flags}"

    def __str__(self):
        return f"{self.description} {self.regex_str}"


def _bodies(f, request_side, response_side):
    """The contents a body filter searches, by side."""
    if isinstance(f, http.HTTPFlow):
        for message, side in ((f.request, request_side), (f.response, response_side)):
            if side and message is not None:
                content = message.get_content(strict=False)
                if content is not None:
                    yield content
        if f.websocket:
            yield from (m.content for m in f.websocket.messages if m.content is not None
                        and (request_side if m.from_client else response_side))
    elif isinstance(f, (tcp.TCPFlow, udp.UDPFlow)):
        yield from (m.content for m in f.messages if m.content is not None
                    and (request_side if m.from_client else response_side))
    elif isinstance(f, dns.DNSFlow):
        for message, side in ((f.request, request_side), (f.response, response_side)):
            if side and message is not None:
                yield str(message).encode()


def _body_filter(name, code, help, description, request_side, response_side):
    @_only(http.HTTPFlow, tcp.TCPFlow, udp.UDPFlow, dns.DNSFlow)
    def call(self, f):
        return any(self.re.search(b) for b in _bodies(f, request_side, response_side))

    return type(name, (_Rex,), {"code": code, "help": help, "description": description,
                                "flags": re.DOTALL, "binary": True, "__call__": call})


FBod = _body_filter("FBod", "b", "Body", "body matches", True, True)
FBodRequest = _body_filter("FBodRequest", "bq", "Request body", "body request matches",
                           True, False)
FBodResponse = _body_filter("FBodResponse", "bs", "Response body", "body response matches",
                            False, True)


def _http_rex(name, code, help, description, test, flags=0, binary=True):
    """A regex operator on HTTP flows; `test(flow, compiled)` decides."""
    call = _only(http.HTTPFlow)(lambda self, f: bool(test(f, self.re)))
    return type(name, (_Rex,), {"code": code, "help": help, "description": description,
                                "flags": flags, "binary": binary, "__call__": call})


def _headers_match(message, rex):
    return message is not None and bool(rex.search(bytes(message.headers)))


FContentType = _http_rex(
    "FContentType", "t", "Content-type header", "content type matches",
    lambda f, r: _content_type_matches(r, f.request)
    or (f.response is not None and _content_type_matches(r, f.response)))
FContentTypeRequest = _http_rex(
    "FContentTypeRequest", "tq", "Request Content-Type header", "req. content type matches",
    lambda f, r: _content_type_matches(r, f.request))
FContentTypeResponse = _http_rex(
    "FContentTypeResponse", "ts", "Response Content-Type header",
    "resp. content type matches",
    lambda f, r: f.response is not None and _content_type_matches(r, f.response))
FHead = _http_rex("FHead", "h", "Header", "header matches",
                  lambda f, r: _headers_match(f.request, r) or _headers_match(f.response, r),
                  re.MULTILINE)
FHeadRequest = _http_rex("FHeadRequest", "hq", "Request header", "req. header matches",
                         lambda f, r: _headers_match(f.request, r), re.MULTILINE)
FHeadResponse = _http_rex("FHeadResponse", "hs", "Response header", "resp. header matches",
                          lambda f, r: _headers_match(f.response, r), re.MULTILINE)
FMethod = _http_rex("FMethod", "m", "Method", "method matches",
                    lambda f, r: r.search(f.request.data_method))
FDomain = _http_rex("FDomain", "d", "Domain", "domain matches",
                    lambda f, r: r.search(f.request.host) or r.search(f.request.pretty_host),
                    binary=False)


class FUrl(_Rex):
    code = "u"
    help = "URL"
    description = "url matches"

    @_only(http.HTTPFlow, dns.DNSFlow)
    def __call__(self, f):
        if not f.request:
            return False
        if isinstance(f, http.HTTPFlow):
            return bool(self.re.search(f.request.pretty_url))
        return bool(f.request.questions and self.re.search(f.request.questions[0].name))


def _address(addr):
    return f"{addr[0]}:{addr[1]}" if addr else None


def _str_rex(name, code, help, description, text_of, flags=0):
    """A regex operator on any flow; `text_of(flow)` is the text searched (None: no match)."""

    def call(self, f):
        text = text_of(f)
        return text is not None and bool(self.re.search(text))

    return type(name, (_Rex,), {"code": code, "help": help, "description": description,
                                "flags": flags, "__call__": call})


FSrc = _str_rex("FSrc", "src", "Match source address", "source address matches",
                lambda f: _address(f.client_conn and f.client_conn.peername))
FDst = _str_rex("FDst", "dst", "Match destination address", "destination address matches",
                lambda f: _address(f.server_conn and f.server_conn.address))
FMeta = _str_rex("FMeta", "meta", "Flow metadata", "flow metadata matches",
                 lambda f: "\n".join(f"{k}: {v}" for k, v in f.metadata.items()), re.MULTILINE)
FMarker = _str_rex("FMarker", "marker", "Match marked flows with specified marker",
                   "marker matches", lambda f: f.marked)
FComment = _str_rex("FComment", "comment", "Flow comment", "comment matches",
                    lambda f: f.comment, re.MULTILINE)


class FCode(_Action):
    code = "c"
    help = "HTTP response code"

    def __init__(self, num):
        self.num = int(num)

    @_only(http.HTTPFlow)
    def __call__(self, f):
        return bool(f.response) and f.response.status_code == self.num

    def __str__(self):
        return f"response code is {self.num}"


def _parenthesize(token):
    return f"({token})" if isinstance(token, (FAnd, FOr)) else str(token)


class FAnd(_Token):
    def __init__(self, lst):
        self.lst = lst

    def dump(self, indent=0, fp=sys.stdout):
        super().dump(indent, fp)
        for item in self.lst:
            item.dump(indent + 1, fp)

    def __call__(self, f):
        return all(item(f) for item in self.lst)

    def __str__(self):
        return " and ".join(_parenthesize(x) for x in self.lst)


class FOr(FAnd):
    def __call__(self, f):
        return any(item(f) for item in self.lst)

    def __str__(self):
        return " or ".join(_parenthesize(x) for x in self.lst)


class FNot(_Token):
    def __init__(self, itm):
        # mitmproxy's parser hands over the operand as a one-item list.
        self.itm = itm[0]

    def dump(self, indent=0, fp=sys.stdout):
        super().dump(indent, fp)
        self.itm.dump(indent + 1, fp)

    def __call__(self, f):
        return not self.itm(f)

    def __str__(self):
        return f"not {_parenthesize(self.itm)}"


filter_unary = [FAsset, FErr, FHTTP, FMarked, FReplay, FReplayClient, FReplayServer, FReq,
                FResp, FTCP, FUDP, FDNS, FWebSocket, FAll]
filter_rex = [FBod, FBodRequest, FBodResponse, FContentType, FContentTypeRequest,
              FContentTypeResponse, FDomain, FDst, FHead, FHeadRequest, FHeadResponse, FMethod,
              FSrc, FUrl, FMeta, FMarker, FComment]
filter_int = [FCode]

_UNARY = {cls.code: cls for cls in filter_unary}
_REX = {cls.code: cls for cls in filter_rex}
_INT = {cls.code: cls for cls in filter_int}

_TOKEN = re.compile(
    r"""\s*(?:(?P<op>[!&|()])|~(?P<code>[a-z]+)(?=(?P<next>.?))"""
    r"""|(?P<quote>["'])(?P<quoted>(?:\\.|(?!(?P=quote))[^\\\n])*)(?P=quote)"""
    r"""|(?P<word>[^\s()~'"]+))""",
    re.DOTALL,
)
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text):
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text, flags=re.DOTALL)


class _Parser:
    """Recursive descent over tokens: [("op", c) | ("code", name, next_char) | ("arg", text)]."""

    def __init__(self, text):
        self.text = text
        self.tokens = self._tokenize(text)
        self.i = 0

    def fail(self):
        raise ValueError(f"Invalid filter expression: {self.text!r}")

    def _tokenize(self, text):
        pos, out, end = 0, [], len(text.rstrip())
        while pos < end:
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                self.fail()
            pos = m.end()
            if m.group("op"):
                out.append(("op", m.group("op")))
            elif m.group("code"):
                out.append(("code", m.group("code"), m.group("next")))
            elif m.group("quote"):
                out.append(("arg", _unescape(m.group("quoted"))))
            else:
                out.append(("arg", m.group("word")))
        return out

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self):
        token = self.peek()
        if token is None:
            self.fail()
        self.i += 1
        return token

    def parse(self):
        items = [self.or_()]
        while self.peek() is not None:
            items.append(self.or_())
        return items[0] if len(items) == 1 else FAnd(items)

    def _binary(self, op, operand, make):
        items = [operand()]
        while self.peek() == ("op", op):
            self.take()
            items.append(operand())
        return items[0] if len(items) == 1 else make(items)

    def or_(self):
        return self._binary("|", self.and_, FOr)

    def and_(self):
        return self._binary("&", self.not_, FAnd)

    def not_(self):
        if self.peek() == ("op", "!"):
            self.take()
            return FNot([self.not_()])
        return self.atom()

    def atom(self):
        token = self.take()
        if token == ("op", "("):
            inner = self.or_()
            if self.take() != ("op", ")"):
                self.fail()
            return inner
        if token[0] == "arg":
            return FUrl(token[1])
        if token[0] != "code":
            self.fail()
        _, code, after = token
        # pyparsing's WordEnd(): an operator code ends at whitespace or the end of the text;
        # flowtap also lets an argument-less one end before ')', '&' or '|'.
        at_word_end = after == "" or not after.isprintable() or after.isspace() or ord(after) > 126
        if code in _UNARY and (at_word_end or after in ")&|"):
            return _UNARY[code]()
        if not at_word_end:
            self.fail()
        if code in _REX or code in _INT:
            argument = self.take()
            if argument[0] != "arg":
                self.fail()
            if code in _INT:
                if not argument[1].isdigit():
                    self.fail()
                return _INT[code](argument[1])
            return _REX[code](argument[1])
        self.fail()


def parse(s):
    """The filter `s` means; ValueError("Invalid filter expression: ...") if it means none."""
    if not s:
        raise ValueError("Empty filter expression")
    try:
        flt = _Parser(s).parse()
    except ValueError as e:
        raise ValueError(f"Invalid filter expression: {s!r}") from e
    flt.pattern = s
    return flt


def match(flt, flow):
    """True if `flow` matches `flt` (a parsed filter, an expression, or None: everything)."""
    if isinstance(flt, str):
        flt = parse(flt)
    return flt(flow) if flt else True


match_all = parse("~all")

help = sorted(
    [(f"~{a.code}", a.help) for a in filter_unary]
    + [(f"~{b.code} regex", b.help) for b in filter_rex]
    + [(f"~{c.code} int", c.help) for c in filter_int]
) + [("!", "unary not"), ("&", "and"), ("|", "or"), ("(...)", "grouping")]

TFilter = _Token
