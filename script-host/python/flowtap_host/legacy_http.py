"""The HTTP messages old-API hooks see: mitmproxy 0.11-0.18 behaviour over today's objects.

A script written for the `(context, flow)` API receives views (`OldRequest`, `OldResponse`)
that read and write the modern request and response underneath, so what the script changes
reaches the proxy as usual. What differs from mitmproxy 12:

- headers (`OldHeaders`): `h["x"]` is a `HeaderValue`, a `str` whose `[i]` is the i-th value
  (0.11-0.13 gave a list: `h["x"][0]`); a missing header gives an empty value, not KeyError;
  assigning a list sets every value; iteration gives (name, value) pairs; `get_first`.
- bodies are `LegacyBytes`: `bytes` whose methods also take `str` (Python 2 code compares and
  replaces with `str` literals); assigning a `str` body encodes it as UTF-8, as a Python 2
  script's `str` literal was.
- the old helpers: `get_query`/`set_query`, `get_form_urlencoded`/`set_form_urlencoded`,
  `get_cookies`, `get_decoded_content`, `code`, `msg`, `httpversion`, `pretty_host(...)`,
  `update_host_header`, and `stream = modify` where `modify(chunks)` is a generator over all
  chunks (`ChunkPump`).
"""

import queue
import threading

from mitmproxy import http
from netlib.odict import ODict, ODictCaseless

ENCODING = "utf-8"


def to_bytes(value):
    """A Python 2 `str` as the bytes it was: UTF-8 (lone surrogates kept as they came)."""
    if isinstance(value, str):
        return value.encode(ENCODING, "surrogateescape")
    return value


def to_text(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode(ENCODING, "surrogateescape")
    return value


class LegacyBytes(bytes):
    """`bytes` whose methods accept `str` where Python 2 code passed one (`replace`, `find`,
    `in`, `==`, `startswith`, `split`, ...); results stay `LegacyBytes`."""

    def __contains__(self, item):
        return bytes.__contains__(self, to_bytes(item))

    def __eq__(self, other):
        return bytes.__eq__(self, to_bytes(other))

    def __ne__(self, other):
        return not self == other

    __hash__ = bytes.__hash__

    def __add__(self, other):
        return LegacyBytes(bytes.__add__(self, to_bytes(other)))

    def __radd__(self, other):
        return LegacyBytes(to_bytes(other) + bytes(self))

    def __getitem__(self, index):
        got = bytes.__getitem__(self, index)
        return LegacyBytes(got) if isinstance(index, slice) else got

    def __str__(self):
        return to_text(bytes(self))


def _wrap_method(name):
    base = getattr(bytes, name)

    def method(self, *args, **kwargs):
        args = [to_bytes(a) if isinstance(a, str) else
                tuple(to_bytes(x) for x in a) if isinstance(a, tuple) else a for a in args]
        result = base(self, *args, **kwargs)
        if type(result) is bytes:
            return LegacyBytes(result)
        if isinstance(result, list):
            return [LegacyBytes(x) if type(x) is bytes else x for x in result]
        if isinstance(result, tuple):
            return tuple(LegacyBytes(x) if type(x) is bytes else x for x in result)
        return result

    method.__name__ = name
    return method


for _name in ("replace", "find", "rfind", "index", "rindex", "count", "startswith",
              "endswith", "split", "rsplit", "partition", "rpartition", "strip", "lstrip",
              "rstrip", "join", "lower", "upper", "splitlines"):
    setattr(LegacyBytes, _name, _wrap_method(_name))


class HeaderValue(str):
    """A header's values folded with ", " (a `str`, as in 0.15-0.18), whose `[i]` is the i-th
    value, as the value list of 0.11-0.13 was; empty for a missing header."""

    def __new__(cls, values):
        value = super().__new__(cls, ", ".join(values))
        value.values = list(values)
        return value

    def __getitem__(self, index):
        if isinstance(index, int):
            return self.values[index]
        return str.__getitem__(self, index)


class OldHeaders:
    """A view of a modern `Headers` with the old semantics (see the module docstring)."""

    def __init__(self, headers):
        self._headers = headers

    @property
    def fields(self):
        return self._headers.fields

    def __getitem__(self, name):
        return HeaderValue(self._headers.get_all(name))

    def __setitem__(self, name, value):
        if isinstance(value, (list, tuple)):
            self._headers.set_all(name, [to_text(v) for v in value])
        else:
            self._headers[name] = to_text(value)

    def __delitem__(self, name):
        if name in self._headers:
            del self._headers[name]

    def __contains__(self, name):
        return name in self._headers

    def __iter__(self):
        return iter(self._headers.items(multi=True))

    def __len__(self):
        return len(self._headers.fields)

    def __bool__(self):
        return bool(self._headers.fields)

    def __eq__(self, other):
        other = getattr(other, "_headers", other)
        return self._headers == other

    __hash__ = None

    def get(self, name, default=None):
        return self[name] if name in self._headers else default

    def get_first(self, name, default=None):
        values = self._headers.get_all(name)
        return values[0] if values else default

    def get_all(self, name):
        return self._headers.get_all(name)

    def set_all(self, name, values):
        self._headers.set_all(name, [to_text(v) for v in values])

    def add(self, name, value, prepend=False):
        self._headers.insert(0 if prepend else len(self._headers.fields), name, to_text(value))

    def keys(self):
        return list(self._headers.keys())

    def values(self):
        return [v for _, v in self._headers.items(multi=True)]

    def items(self, multi=True):
        return self._headers.items(multi=True)

    def in_any(self, name, value, caseless=False):
        values = self._headers.get_all(name)
        if caseless:
            value, values = value.lower(), [v.lower() for v in values]
        return any(value in v for v in values)

    def copy(self):
        return OldHeaders(self._headers.copy())

    def __str__(self):
        return bytes(self._headers).decode("latin-1")

    def __bytes__(self):
        return bytes(self._headers)

    def __repr__(self):
        return f"OldHeaders({self._headers.items(multi=True)!r})"


def to_modern_headers(headers):
    """Headers of any era (ODict, `OldHeaders`, pairs, dict) as a modern `Headers`."""
    if isinstance(headers, http.Headers):
        return headers
    if isinstance(headers, OldHeaders):
        return headers._headers
    if isinstance(headers, ODict):
        pairs = headers.lst
    elif isinstance(headers, dict):
        pairs = list(headers.items())
    else:
        pairs = list(headers or ())
    return http.Headers([(to_bytes(k), to_bytes(v)) for k, v in pairs])


class _PrettyHost(str):
    """0.15's `pretty_host` property (the Host header as sent, port included, else the host),
    still callable as 0.11-0.13's `pretty_host(hostheader=False)`."""

    def __new__(cls, request):
        header = request.headers.get("host")
        value = super().__new__(cls, header or request.host)
        value._host, value._header = request.host, header
        return value

    def __call__(self, hostheader=False):
        return self._header if hostheader and self._header else self._host


class OldMessage:
    """What requests and responses of the old API have in common."""

    def __init__(self, message):
        object.__setattr__(self, "_message", message)

    @property
    def modern(self):
        return self._message

    def __getattr__(self, name):
        return getattr(self._message, name)

    def __setattr__(self, name, value):
        if isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
        else:
            setattr(self._message, name, value)

    @property
    def headers(self):
        return OldHeaders(self._message.headers)

    @headers.setter
    def headers(self, value):
        self._message.headers = to_modern_headers(value)

    @property
    def content(self):
        content = self._message.content
        return None if content is None else LegacyBytes(content)

    @content.setter
    def content(self, value):
        self._message.content = None if value is None else to_bytes(value)

    def get_decoded_content(self):
        return self.content

    @property
    def httpversion(self):
        version = self._message.http_version.split("/")[-1]
        try:
            major, minor = version.split(".")
            return (int(major), int(minor))
        except ValueError:
            return (int(version), 0) if version.isdigit() else (1, 1)

    @httpversion.setter
    def httpversion(self, value):
        self._message.http_version = "HTTP/%d.%d" % tuple(value)

    @property
    def stream(self):
        return self._message.stream

    @stream.setter
    def stream(self, value):
        if callable(value) and not isinstance(value, ChunkPump):
            value = ChunkPump(value)
        self._message.stream = value

    def __repr__(self):
        return repr(self._message)


def _pairs_to_odict(pairs):
    odict = ODict()
    for k, v in pairs:
        odict.add(k, v)
    return odict


class OldRequest(OldMessage):
    """A request as 0.11-0.18 scripts used it."""

    @property
    def pretty_host(self):
        return _PrettyHost(self._message)

    def update_host_header(self):
        self._message.headers["host"] = self._message.host_header or self._message.host

    def get_query(self):
        return _pairs_to_odict(self._message.query.items(multi=True))

    def set_query(self, odict):
        self._message.query = [(k, v) for k, v in odict]

    def get_form_urlencoded(self):
        return _pairs_to_odict(self._message.urlencoded_form.items(multi=True))

    def set_form_urlencoded(self, odict):
        self._message.urlencoded_form = [(k, v) for k, v in odict]

    def get_cookies(self):
        return {name: [value] for name, value in self._message.cookies.items(multi=True)}

    def get_path_components(self):
        return list(self._message.path_components)

    def set_path_components(self, components):
        self._message.path_components = components

    def get_form(self):
        return self.get_form_urlencoded()


class OldResponse(OldMessage):
    """A response as 0.11-0.18 scripts used it (`code`, `msg` beside today's names)."""

    @property
    def code(self):
        return self._message.status_code

    @code.setter
    def code(self, value):
        self._message.status_code = value

    @property
    def msg(self):
        return self._message.reason

    @msg.setter
    def msg(self, value):
        self._message.reason = to_text(value)

    def get_cookies(self):
        return {name: [value, ODictCaseless(list(attrs.items(multi=True)))]
                for name, (value, attrs) in self._message.cookies.items(multi=True)}

    def assemble(self):
        """0.11-0.13's `assemble()`: the response as bytes on the wire (status line, headers,
        body as it is)."""
        return assemble_response(self._message)


def assemble_response(response):
    """A response's HTTP/1 bytes: status line, headers in order, the content."""
    head = b"%s %d %s\r\n" % (to_bytes(response.http_version), response.status_code,
                              to_bytes(response.reason))
    head += b"".join(b"%s: %s\r\n" % (k, v) for k, v in response.headers.fields)
    return head + b"\r\n" + (response.raw_content or b"")


def make_response(httpversion, code, msg, headers, content, timestamp_start=None,
                  timestamp_end=None):
    """The old `HTTPResponse(httpversion, code, msg, headers, content)` constructor, as a
    modern response (its Content-Length set when the script gave none)."""
    if isinstance(httpversion, (list, tuple)):
        httpversion = "HTTP/%d.%d" % tuple(httpversion)
    response = http.Response.make(code, b"", to_modern_headers(headers).copy())
    response.http_version = to_text(httpversion)
    response.reason = to_text(msg)
    response.content = to_bytes(content or b"")
    if timestamp_start is not None:
        response.timestamp_start = timestamp_start
    if timestamp_end is not None:
        response.timestamp_end = timestamp_end
    return response


def unwrap(value):
    """The modern object under an old-API view (or the value itself)."""
    return getattr(value, "modern", value)


class Chunk(LegacyBytes):
    """One chunk of a streamed body: `bytes` (0.15-0.18) that also unpacks as 0.13's
    `(prefix, content, suffix)` tuple."""

    def __iter__(self):
        return iter((LegacyBytes(b""), LegacyBytes(bytes(self)), LegacyBytes(b"")))


_NEED, _DATA, _END = "need", "data", "end"


class ChunkPump:
    """Runs an old streaming modifier, `modify(chunks)` (a generator over every chunk of the
    body), as today's per-chunk callable: the generator runs in a thread of its own, fed one
    chunk per call; what it yields for that chunk (bytes, str, or 0.13's tuples) is the
    call's result. The empty chunk after the last ends the generator."""

    def __init__(self, fn):
        self._fn = fn
        self._in = queue.Queue()
        self._out = queue.Queue()
        self._thread = None

    def _chunks(self):
        while True:
            self._out.put((_NEED, None))
            chunk = self._in.get()
            if chunk is None:
                return
            yield Chunk(chunk)

    def _run(self):
        try:
            for out in self._fn(self._chunks()):
                if isinstance(out, tuple):
                    out = b"".join(to_bytes(x) for x in out)
                self._out.put((_DATA, to_bytes(out)))
        except Exception as e:  # the modifier's own error ends the body as it stands
            self._error = e
        self._out.put((_END, None))

    def _collect(self):
        parts = []
        while True:
            kind, data = self._out.get()
            if kind == _DATA:
                parts.append(data)
            else:
                return b"".join(parts), kind

    def __call__(self, chunk):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="old-stream", daemon=True)
            self._thread.start()
            self._state = self._collect()[1]
        if self._state == _END:
            return b""
        self._in.put(bytes(chunk) if chunk else None)
        data, self._state = self._collect()
        if self._state == _END:
            self._thread.join(timeout=1)
            error = getattr(self, "_error", None)
            if error is not None:
                raise error
        return data
