"""`mitmproxy.http`: HTTP flows, requests, responses and headers, as mitmproxy 12 has them.

Raw fields are stored as mitmproxy stores them (bytes for method, scheme, authority, path,
http_version and reason; str for host) and exposed as str. `get_state()` gives mitmproxy's dict.
"""

import json as _json
import os
import re
import time
import urllib.parse
from email.utils import formatdate

from . import _encoding, flow as _flow, websocket as _websocket
from ._multidict import MultiDict, MultiDictView, _MultiDictBase
from ._status import RESPONSES
from .connection import Client, Server
from .net.http import cookies
from .net.http.headers import assemble_content_type, infer_content_encoding, parse_content_type  # noqa: F401


def _always_bytes(value, encoding="utf-8"):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode(encoding, "surrogateescape")
    if isinstance(value, (int, float)):
        return str(value).encode()
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")


def _native(value, encoding="utf-8"):
    if isinstance(value, bytes):
        return value.decode(encoding, "surrogateescape")
    return value


class Headers(_MultiDictBase):
    """A case-insensitive, order-preserving multidict of bytes, exposed as str.

    `h[name]` folds repeated fields with ", "; `get_all` does not fold. `fields` holds the raw
    `(name, value)` byte pairs.
    """

    def __init__(self, fields=(), **headers):
        if fields is None:
            fields = ()
        fields = tuple(tuple(f) for f in fields)
        for field in fields:
            if len(field) != 2 or not all(isinstance(x, bytes) for x in field):
                raise TypeError("Header fields must be bytes.")
        self._fields = fields
        # Keyword headers replace fields of the same name (`Headers(fields, host=...)`).
        for name, value in headers.items():
            self[name.replace("_", "-")] = value

    def _get_fields(self):
        return self._fields

    def _set_fields(self, fields):
        self._fields = tuple(fields)

    @staticmethod
    def _kconv(key):
        return _native(key).lower()

    @staticmethod
    def _reduce_values(values):
        return ", ".join(values)

    def get_all(self, name):
        k = self._kconv(name)
        return [_native(v) for n, v in self._fields if self._kconv(n) == k]

    def set_all(self, name, values):
        super().set_all(_always_bytes(name), [_always_bytes(v) for v in values])

    def insert(self, index, key, value):
        super().insert(index, _always_bytes(key), _always_bytes(value))

    def __setitem__(self, name, value):
        # Scripts of the 0.x era assign lists: headers["x"] = ["foo"].
        if isinstance(value, (list, tuple)):
            self.set_all(name, value)
        else:
            self.set_all(name, [value])

    def __iter__(self):
        for name in super().__iter__():
            yield _native(name)

    def items(self, multi=False):
        if multi:
            return [(_native(k), _native(v)) for k, v in self._fields]
        return [(k, self[k]) for k in self]

    def __bytes__(self):
        if not self._fields:
            return b""
        return b"\r\n".join(b": ".join(f) for f in self._fields) + b"\r\n"

    def __eq__(self, other):
        if isinstance(other, Headers):
            return self._fields == other._fields
        return False

    __hash__ = _MultiDictBase.__hash__

    def copy(self):
        return Headers(self._fields)

    def get_state(self):
        return tuple(map(tuple, self._fields))

    def set_state(self, state):
        self._fields = tuple(map(tuple, state))

    @classmethod
    def from_state(cls, state):
        headers = cls.__new__(cls)
        headers._fields = tuple(map(tuple, state))
        return headers

    def __repr__(self):
        return f"Headers[{', '.join(repr(f) for f in self._fields)}]"


def _ascii(value):
    return value.encode("ascii", "strict") if isinstance(value, str) else _always_bytes(value)


def _checked_content(content):
    if content is not None and not isinstance(content, bytes):
        raise ValueError(f"Content must be bytes, not {type(content).__name__}")
    return content


def _checked_headers(headers):
    if isinstance(headers, (str, bytes)):
        raise ValueError(f"Headers must be Headers or field pairs, not {type(headers).__name__}")
    return _make_headers(headers)


def _make_headers(headers):
    if isinstance(headers, Headers):
        return headers
    if isinstance(headers, dict):
        return Headers([(_always_bytes(k), _always_bytes(v)) for k, v in headers.items()])
    return Headers([(_always_bytes(k), _always_bytes(v)) for k, v in headers])




# Where each field of mitmproxy's `RequestData`/`ResponseData` lives on a message here.
_DATA_FIELDS = {
    "http_version": "data_http_version", "headers": "_headers", "content": "_raw_content",
    "trailers": "_trailers", "timestamp_start": "timestamp_start",
    "timestamp_end": "timestamp_end", "host": "_host", "port": "_port", "method": "data_method",
    "scheme": "data_scheme", "authority": "data_authority", "path": "data_path",
    "status_code": "status_code", "reason": "data_reason",
}


class MessageData:
    """`message.data`: the message's raw fields (bytes where mitmproxy keeps bytes), read and
    written in place; `get_state()` is the message's state."""

    __slots__ = ("_message",)

    def __init__(self, message):
        object.__setattr__(self, "_message", message)

    def __getattr__(self, name):
        try:
            return getattr(self._message, _DATA_FIELDS[name])
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        if name not in _DATA_FIELDS:
            raise AttributeError(name)
        setattr(self._message, _DATA_FIELDS[name], value)

    def __eq__(self, other):
        return isinstance(other, MessageData) and self.get_state() == other.get_state()

    def get_state(self):
        return self._message.get_state()

    def set_state(self, state):
        self._message.set_state(state)

    def copy(self):
        return self._message.copy().data

    def __repr__(self):
        return f"{type(self._message).__name__}Data({self.get_state()!r})"


class Message:
    """What requests and responses share: version, headers, body, trailers, timestamps."""

    def __init__(self):
        self.stream = False

    @property
    def data(self):
        """The raw fields (`MessageData`), as mitmproxy's `message.data`."""
        return MessageData(self)

    # -- raw fields ----------------------------------------------------------------------------

    @property
    def http_version(self):
        return self.data_http_version.decode("utf-8", "surrogateescape")

    @http_version.setter
    def http_version(self, value):
        self.data_http_version = _always_bytes(value)

    @property
    def is_http10(self):
        return self.data_http_version == b"HTTP/1.0"

    @property
    def is_http11(self):
        return self.data_http_version == b"HTTP/1.1"

    @property
    def is_http2(self):
        return self.data_http_version == b"HTTP/2.0"

    @property
    def is_http3(self):
        return self.data_http_version == b"HTTP/3"

    @property
    def headers(self):
        return self._headers

    @headers.setter
    def headers(self, value):
        self._headers = _make_headers(value)

    @property
    def trailers(self):
        return self._trailers

    @trailers.setter
    def trailers(self, value):
        self._trailers = None if value is None else _make_headers(value)

    # -- body ----------------------------------------------------------------------------------

    @property
    def raw_content(self):
        return self._raw_content

    @raw_content.setter
    def raw_content(self, value):
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"raw_content must be bytes, not {type(value).__name__}")
        self._raw_content = value

    def get_content(self, strict=True):
        if self._raw_content is None:
            return None
        ce = self._headers.get("content-encoding")
        if not ce:
            return self._raw_content
        try:
            return _encoding.decode(self._raw_content, ce)
        except ValueError:
            if strict:
                raise
            return self._raw_content

    def set_content(self, value):
        if value is None:
            self._raw_content = None
            return
        if not isinstance(value, bytes):
            raise TypeError(
                f"Message content must be bytes, not {type(value).__name__}. "
                "Please use .text if you want to assign a str."
            )
        ce = self._headers.get("content-encoding")
        try:
            self._raw_content = _encoding.encode(value, ce) if ce else value
        except ValueError:
            # mitmproxy drops an encoding it cannot apply and sends the body as is.
            del self._headers["content-encoding"]
            self._raw_content = value
        if "transfer-encoding" in self._headers:
            return
        self._headers["content-length"] = str(len(self._raw_content))

    content = property(get_content, set_content)
    # 0.x/1.x scripts used `.body`.
    body = property(get_content, set_content)

    def _guess_encoding(self, content=b""):
        return infer_content_encoding(self._headers.get("content-type", ""), content)

    def get_text(self, strict=True):
        content = self.get_content(strict)
        if content is None:
            return None
        enc = self._guess_encoding(content)
        try:
            return content.decode(enc, "strict")
        except UnicodeDecodeError:
            if strict:
                raise
        except LookupError as e:
            if strict:
                raise ValueError(f"unknown text encoding {enc!r}") from e
        return content.decode("utf-8", "surrogateescape")

    def set_text(self, text):
        if text is None:
            self.set_content(None)
            return
        enc = self._guess_encoding()
        try:
            self.set_content(text.encode(enc))
        except (UnicodeEncodeError, LookupError):
            # Not encodable in the declared charset: UTF-8, and say so in the header.
            parsed = parse_content_type(self._headers.get("content-type", "")) \
                or ("text", "plain", {})
            parsed[2]["charset"] = "utf-8"
            self._headers["content-type"] = assemble_content_type(*parsed)
            self.set_content(text.encode("utf-8", "surrogateescape"))

    text = property(get_text, set_text)

    def json(self, **kwargs):
        content = self.get_content(strict=False)
        if content is None:
            raise TypeError("Message content is not available.")
        return _json.loads(content, **kwargs)

    def decode(self, strict=True):
        """Decompresses the body in place and drops Content-Encoding."""
        decoded = self.get_content(strict)
        self._headers.pop("content-encoding", None)
        self.content = decoded

    def encode(self, encoding):
        """Compresses the body with `encoding` and sets Content-Encoding."""
        self.decode()
        if encoding not in ("gzip", "deflate", "br", "zstd", "identity"):
            raise ValueError(f"Invalid content encoding {encoding!r}")
        self._headers["content-encoding"] = encoding
        self.content = self._raw_content

    # -- state ---------------------------------------------------------------------------------

    def _message_state(self):
        return {
            "http_version": self.data_http_version,
            "headers": self._headers.get_state(),
            "content": self._raw_content,
            "trailers": self._trailers.get_state() if self._trailers is not None else None,
            "timestamp_start": self.timestamp_start,
            "timestamp_end": self.timestamp_end,
        }

    def _set_message_state(self, state):
        self.data_http_version = state["http_version"]
        self._headers = Headers.from_state(state["headers"])
        self._raw_content = state["content"]
        trailers = state["trailers"]
        self._trailers = Headers.from_state(trailers) if trailers is not None else None
        self.timestamp_start = state["timestamp_start"]
        self.timestamp_end = state["timestamp_end"]

    @classmethod
    def from_state(cls, state):
        msg = cls.__new__(cls)
        Message.__init__(msg)
        msg.set_state(state)
        return msg

    def copy(self):
        return type(self).from_state(self.get_state())

    def __eq__(self, other):
        return type(self) is type(other) and self.get_state() == other.get_state()

    __hash__ = object.__hash__


def _default_port(scheme):
    return {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)


def _hostport(scheme, host, port):
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port == _default_port(scheme):
        return host
    return f"{host}:{port}"


def _parse_authority(authority):
    host, port = authority, None
    m = re.fullmatch(r"\[?(.*?)\]?(?::(\d+))?", authority)
    if m and (authority.startswith("[") or authority.count(":") <= 1):
        host, port = m.group(1), int(m.group(2)) if m.group(2) else None
    return host, port


class Request(Message):
    """An HTTP request. `host`, `port` and `scheme` say where it goes after the hook."""

    def __init__(self, host, port, method, scheme, authority, path, http_version, headers,
                 content, trailers, timestamp_start, timestamp_end):
        super().__init__()
        self.host = host if isinstance(host, str) else host.decode("idna")
        if not isinstance(port, int):
            raise ValueError(f"Invalid port: {port!r}")
        self.port = port
        # As mitmproxy's RequestData: text fields must be ASCII (UnicodeEncodeError), the
        # body bytes or None, headers and trailers Headers or field pairs (ValueError).
        self.data_method = _ascii(method)
        self.data_scheme = _ascii(scheme)
        self.data_authority = _always_bytes(authority)
        self.data_path = _ascii(path)
        self.data_http_version = _ascii(http_version)
        self._headers = _checked_headers(headers)
        self._raw_content = _checked_content(content)
        self._trailers = None if trailers is None else _checked_headers(trailers)
        self.timestamp_start = timestamp_start
        self.timestamp_end = timestamp_end

    @classmethod
    def make(cls, method, url, content=b"", headers=()):
        """An HTTP/1.1 request for `url`, timestamps set to now."""
        now = time.time()
        req = cls("", 0, method.encode() if isinstance(method, str) else method, b"", b"", b"",
                  b"HTTP/1.1", _make_headers(headers), b"", None, now, now)
        req.url = url
        if isinstance(content, str):
            req.text = content
        elif isinstance(content, bytes):
            req.content = content
        else:
            raise TypeError(f"Expected content to be str or bytes, but is {type(content).__name__}")
        return req

    def get_state(self):
        state = self._message_state()
        state.update(
            host=self.host, port=self.port, method=self.data_method, scheme=self.data_scheme,
            authority=self.data_authority, path=self.data_path,
        )
        return state

    def set_state(self, state):
        self._set_message_state(state)
        self._host = state["host"]
        self._port = state["port"]
        self.data_method = state["method"]
        self.data_scheme = state["scheme"]
        self.data_authority = state["authority"]
        self.data_path = state["path"]

    # -- first line ----------------------------------------------------------------------------

    @property
    def method(self):
        return self.data_method.decode("utf-8", "surrogateescape").upper()

    @method.setter
    def method(self, value):
        self.data_method = _always_bytes(value)

    @property
    def scheme(self):
        return self.data_scheme.decode("utf-8", "surrogateescape")

    @scheme.setter
    def scheme(self, value):
        self.data_scheme = _always_bytes(value)

    @property
    def authority(self):
        return self.data_authority.decode("idna") if self.data_authority else ""

    @authority.setter
    def authority(self, value):
        self.data_authority = _always_bytes(value)

    @property
    def path(self):
        return self.data_path.decode("utf-8", "surrogateescape")

    @path.setter
    def path(self, value):
        self.data_path = _always_bytes(value)

    @property
    def host(self):
        return self._host

    @host.setter
    def host(self, value):
        self._host = value if isinstance(value, str) else value.decode("idna")
        self._update_host_and_authority()

    @property
    def port(self):
        return self._port

    @port.setter
    def port(self, value):
        if not isinstance(value, int):
            raise ValueError(f"Port must be an integer, not {value!r}.")
        self._port = value
        self._update_host_and_authority()

    def _update_host_and_authority(self):
        if not hasattr(self, "_port") or not hasattr(self, "_headers"):
            return
        hostport = _hostport(self.scheme, self._host, self._port)
        if "Host" in self._headers:
            self._headers["Host"] = hostport
        if self.data_authority:
            self.data_authority = hostport.encode("idna")

    @property
    def first_line_format(self):
        if self.method == "CONNECT":
            return "authority"
        return "absolute" if self.data_authority else "relative"

    @property
    def host_header(self):
        if self.is_http2 or self.is_http3:
            return self.authority or self._headers.get("Host")
        return self._headers.get("Host")

    @host_header.setter
    def host_header(self, value):
        if value is None:
            if self.is_http2 or self.is_http3:
                self.data_authority = b""
            self._headers.pop("Host", None)
            return
        if self.is_http2 or self.is_http3:
            self.authority = value
        if "Host" in self._headers or not (self.is_http2 or self.is_http3):
            self._headers["Host"] = value

    @property
    def url(self):
        if self.first_line_format == "authority":
            return f"{self._host}:{self._port}"
        return f"{self.scheme}://{_hostport(self.scheme, self._host, self._port)}{self.path}"

    @url.setter
    def url(self, value):
        parts = urllib.parse.urlsplit(value)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"Invalid URL: {value!r}")
        self.scheme = parts.scheme
        port = parts.port or _default_port(parts.scheme) or 80
        host = parts.hostname
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self._host, self._port = host, port
        self.path = path
        self._update_host_and_authority()

    @property
    def pretty_host(self):
        authority = self.host_header
        if authority:
            return _parse_authority(authority)[0]
        return self._host

    @property
    def pretty_url(self):
        if self.first_line_format == "authority":
            return self.authority
        host_header = self.host_header
        if not host_header:
            return self.url
        host, port = _parse_authority(host_header)
        port = port or _default_port(self.scheme) or 443
        return f"{self.scheme}://{_hostport(self.scheme, host, port)}{self.path}"

    # -- query, cookies, forms -----------------------------------------------------------------

    def _get_query(self):
        _, _, query = self.path.partition("?")
        return tuple(urllib.parse.parse_qsl(query, keep_blank_values=True))

    def _set_query(self, fields):
        base = self.path.partition("?")[0]
        query = urllib.parse.urlencode(list(fields), doseq=False)
        self.path = f"{base}?{query}" if query else base

    @property
    def query(self):
        return MultiDictView(self._get_query, self._set_query)

    @query.setter
    def query(self, value):
        self._set_query(value.items(multi=True) if isinstance(value, _MultiDictBase) else value)

    @property
    def path_components(self):
        path = self.path.partition("?")[0]
        return tuple(urllib.parse.unquote(p) for p in path.split("/") if p)

    @path_components.setter
    def path_components(self, components):
        query = self.path.partition("?")[2]
        path = "/" + "/".join(urllib.parse.quote(c, safe="") for c in components)
        self.path = f"{path}?{query}" if query else path

    def _get_cookies(self):
        return tuple(tuple(pair) for pair in cookies.parse_cookie_headers(
            self._headers.get_all("Cookie")))

    def _set_cookies(self, fields):
        self._headers["cookie"] = cookies.format_cookie_header(fields)

    @property
    def cookies(self):
        return MultiDictView(self._get_cookies, self._set_cookies)

    @cookies.setter
    def cookies(self, value):
        self._set_cookies(value.items(multi=True) if isinstance(value, _MultiDictBase) else value)

    def _get_urlencoded_form(self):
        if "application/x-www-form-urlencoded" not in self._headers.get("content-type", "").lower():
            return ()
        text = self.get_text(strict=False) or ""
        return tuple(urllib.parse.parse_qsl(text, keep_blank_values=True))

    def _set_urlencoded_form(self, fields):
        self._headers["content-type"] = "application/x-www-form-urlencoded"
        self.content = urllib.parse.urlencode(list(fields)).encode()

    @property
    def urlencoded_form(self):
        return MultiDictView(self._get_urlencoded_form, self._set_urlencoded_form)

    @urlencoded_form.setter
    def urlencoded_form(self, value):
        self._set_urlencoded_form(value.items(multi=True) if isinstance(value, _MultiDictBase) else value)

    def _get_multipart_form(self):
        ct = self._headers.get("content-type", "")
        if "multipart/form-data" not in ct.lower():
            return ()
        m = re.search(r"boundary=\"?([^\";]+)\"?", ct)
        content = self.get_content(strict=False)
        if not m or not content:
            return ()
        return tuple(_parse_multipart(content, m.group(1).encode()))

    def _set_multipart_form(self, fields):
        boundary = os.urandom(16).hex()
        self._headers["content-type"] = f"multipart/form-data; boundary={boundary}"
        self.content = _encode_multipart(fields, boundary.encode())

    @property
    def multipart_form(self):
        return MultiDictView(self._get_multipart_form, self._set_multipart_form)

    @multipart_form.setter
    def multipart_form(self, value):
        self._set_multipart_form(value.items(multi=True) if isinstance(value, _MultiDictBase) else value)

    def anticache(self):
        for name in ("if-modified-since", "if-none-match"):
            self._headers.pop(name, None)

    def anticomp(self):
        self._headers["accept-encoding"] = "identity"

    def constrain_encoding(self):
        accept = self._headers.get("accept-encoding")
        if accept:
            usable = set(_encoding.available())
            kept = [e for e in re.split(r"\s*,\s*", accept) if e.split(";")[0].strip() in usable]
            self._headers["accept-encoding"] = ", ".join(kept) or "identity"

    def __repr__(self):
        return f"Request({self.method} {self._host}:{self._port}{self.path})"


def _parse_multipart(content, boundary):
    for part in content.split(b"--" + boundary):
        part = part.strip(b"\r\n")
        if not part or part == b"--":
            continue
        head, _, value = part.partition(b"\r\n\r\n")
        m = re.search(rb'name="([^"]*)"', head)
        if m:
            yield m.group(1), value


def _encode_multipart(fields, boundary):
    out = []
    for name, value in fields:
        name, value = _always_bytes(name), _always_bytes(value)
        out.append(b"--" + boundary)
        out.append(b'Content-Disposition: form-data; name="' + name + b'"')
        out.append(b"")
        out.append(value)
    out.append(b"--" + boundary + b"--")
    out.append(b"")
    return b"\r\n".join(out)


class Response(Message):
    """An HTTP response."""

    def __init__(self, http_version, status_code, reason, headers, content, trailers,
                 timestamp_start, timestamp_end):
        super().__init__()
        self.data_http_version = _ascii(http_version)
        self.status_code = status_code
        self.data_reason = _ascii(reason)
        self._headers = _checked_headers(headers)
        self._raw_content = _checked_content(content)
        self._trailers = None if trailers is None else _checked_headers(trailers)
        self.timestamp_start = timestamp_start
        self.timestamp_end = timestamp_end

    @classmethod
    def make(cls, status_code=200, content=b"", headers=()):
        """An HTTP/1.1 response; reason from the status table; content-length set."""
        now = time.time()
        resp = cls(b"HTTP/1.1", status_code, RESPONSES.get(status_code, "").encode(),
                   _make_headers(headers), None, None, now, now)
        if isinstance(content, str):
            resp.text = content
        elif isinstance(content, bytes):
            resp.content = content
        else:
            raise TypeError(f"Expected content to be str or bytes, but is {type(content).__name__}")
        return resp

    @property
    def reason(self):
        return self.data_reason.decode("iso-8859-1")

    @reason.setter
    def reason(self, value):
        self.data_reason = _always_bytes(value, "iso-8859-1")

    def get_state(self):
        state = self._message_state()
        state.update(status_code=self.status_code, reason=self.data_reason)
        return state

    def set_state(self, state):
        self._set_message_state(state)
        self.status_code = state["status_code"]
        self.data_reason = state["reason"]

    def _get_cookies(self):
        return tuple((name, (value, attrs)) for name, value, attrs in
                     cookies.parse_set_cookie_headers(self._headers.get_all("set-cookie")))

    def _set_cookies(self, fields):
        self._headers.set_all("set-cookie", [
            cookies.format_set_cookie_header([(name, value, attrs)])
            for name, (value, attrs) in fields
        ])

    @property
    def cookies(self):
        return MultiDictView(self._get_cookies, self._set_cookies)

    @cookies.setter
    def cookies(self, value):
        self._set_cookies(value.items(multi=True) if isinstance(value, _MultiDictBase) else value)

    def refresh(self, now=None):
        """Moves date headers forward so a replayed response looks fresh."""
        now = now or time.time()
        for name in ("date", "expires", "last-modified"):
            if name in self._headers:
                self._headers[name] = formatdate(now, usegmt=True)

    def __repr__(self):
        if self._raw_content:
            from .utils.human import pretty_size

            details = (f"{self._headers.get('content-type', 'unknown content type')}, "
                       f"{pretty_size(len(self._raw_content))}")
        else:
            details = "no content"
        return f"Response({self.status_code}, {details})"


class HTTPFlow(_flow.Flow):
    """An HTTP request/response pair, and the WebSocket connection it may turn into."""

    type = "http"
    request = _flow._Part(lambda state: Request.from_state(state))
    response = _flow._Part(lambda state: Response.from_state(state))

    def __init__(self, client_conn, server_conn, live=False, mode=None):
        super().__init__(client_conn, server_conn, live)
        self.request = None
        self.response = None
        self.websocket = None

    def _init_empty(self):
        # For from_state: set_state sets every other attribute.
        self.live = False
        self._flowtap_control = None
        self.websocket = None

    def get_state(self):
        state = self._common_state()
        state["request"] = HTTPFlow.request.dump(self)
        state["response"] = HTTPFlow.response.dump(self)
        state["websocket"] = self.websocket.get_state() if self.websocket else None
        return state

    def _set_type_state(self, state):
        HTTPFlow.request.load(self, state.pop("request"))
        HTTPFlow.response.load(self, state.pop("response"))
        self.websocket = _flow._set_or_make(
            self.websocket, _websocket.WebSocketData, state.pop("websocket", None)
        )

    @property
    def timestamp_start(self):
        return self.request.timestamp_start

    @property
    def mode(self):
        return self.client_conn.proxy_mode

    def copy(self):
        return super().copy()

    def __repr__(self):
        # mitmproxy's form: one `name = value` line (CRLF) per part the flow has.
        parts = ("request", "response", "websocket", "error", "client_conn", "server_conn")
        lines = [f"\r\n  {name} = {getattr(self, name)}" for name in parts
                 if getattr(self, name, None)]
        return "<HTTPFlow" + "".join(lines) + ">"


# Make `Request.from_state` build requests without the constructor's checks.
def _request_from_state(cls, state):
    req = cls.__new__(cls)
    Message.__init__(req)
    req.set_state(state)
    return req


Request.from_state = classmethod(_request_from_state)
