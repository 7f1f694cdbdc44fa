"""Objects that scripts written for mitmproxy 0.x-2.x receive instead of the modern ones.

Hooks of the old `(context, flow)` API get `OldFlow`, a view of today's flow with the 0.11-0.18
attributes and semantics (its request and response are `legacy_http` views); `context` is a
`ScriptContext`. Modern hooks (`def request(flow)`) get today's objects untouched.
"""

import io
import logging
import sys
import urllib.parse

from mitmproxy import flowfilter, http
from mitmproxy import log as mlog
from netlib.tcp import Address

from .legacy_http import LegacyBytes, OldRequest, OldResponse, to_bytes, unwrap


class ScriptContext:
    """The `context` argument of 0.10-0.17 hooks: logging and a few flow operations.

    Scripts also store their own state on it (`context.old = ...`).
    """

    def __init__(self, host, script):
        self._host = host
        self._script = script
        self._logger = logging.getLogger(f"__mitmproxy_script__.{script.name}")
        self.app_registry = AppRegistry()
        # Ids of flows this script replayed: their `request` hook is not called again, as
        # 0.13-0.18 sent a script's own replay once (see `skip_own_replay`).
        self.replayed = set()

    def log(self, message, level="info"):
        self._logger.log(mlog.LEVELS.get(level, logging.INFO), message)

    def add_contentview(self, view):
        """0.15's content views: registered, shown by the console only (see
        `libmproxy.contentviews`)."""
        from libmproxy import contentviews
        contentviews.add(view)

    def remove_contentview(self, view):
        from libmproxy import contentviews
        contentviews.remove(view)

    def kill_flow(self, flow):
        unwrap(flow).kill()

    def duplicate_flow(self, flow):
        return OldFlow(unwrap(flow).copy())

    def replay_request(self, flow):
        flow = unwrap(flow)
        self.replayed.add(flow.id)
        self._host.master.commands.call("replay.client", [flow])

    @property
    def master(self):
        return self._host.master


class RootLayer:
    """What `clientconnect(root_layer)` received: a layer giving access to the client."""

    def __init__(self, client, server=None):
        self.client_conn = client
        self.server_conn = server

    def __getattr__(self, name):
        return getattr(self.client_conn, name)


class TcpMessage:
    """The 0.16 `tcp_msg`: sender, receiver and the data, which the script may change."""

    def __init__(self, flow):
        last = flow.messages[-1]
        self._flow = flow
        self.client_conn = flow.client_conn
        self.server_conn = flow.server_conn
        self.from_client = last.from_client
        self.sender = flow.client_conn if last.from_client else flow.server_conn
        self.receiver = flow.server_conn if last.from_client else flow.client_conn
        self.message = last.content

    def apply(self):
        self._flow.messages[-1].content = self.message


def is_websocket_handshake(flow):
    req = getattr(flow, "request", None)
    return req is not None and "websocket" in req.headers.get("upgrade", "").lower()


class OldConn:
    """A client or server connection as 0.13-0.18 scripts used it."""

    def __init__(self, conn):
        object.__setattr__(self, "_conn", conn)

    @property
    def modern(self):
        return self._conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __setattr__(self, name, value):
        setattr(self._conn, name, value)

    def __eq__(self, other):
        return self._conn == unwrap(other)

    def __hash__(self):
        return hash(self._conn)

    @property
    def ssl_established(self):
        return self._conn.tls_established

    @property
    def timestamp_ssl_setup(self):
        return self._conn.timestamp_tls_setup

    @property
    def address(self):
        address = getattr(self._conn, "address", None) or self._conn.peername
        return Address(address) if address else None

    @property
    def connection(self):
        return _TlsConnection(self._conn)

    def __repr__(self):
        return repr(self._conn)


class _TlsConnection:
    """`conn.connection`, the pyOpenSSL connection of 0.x: only `get_servername()`."""

    def __init__(self, conn):
        self._conn = conn

    def get_servername(self):
        sni = self._conn.sni
        return to_bytes(sni) if sni else None


class OldFlow:
    """An HTTP flow as 0.11-0.18 scripts used it: old request/response views, `reply(...)`,
    `match(...)`, connections with the old names; everything else is today's flow."""

    def __init__(self, flow):
        object.__setattr__(self, "_flow", flow)

    @property
    def modern(self):
        return self._flow

    def __getattr__(self, name):
        return getattr(self._flow, name)

    def __setattr__(self, name, value):
        if name in ("request", "response", "client_conn", "server_conn"):
            value = unwrap(value)
        setattr(self._flow, name, value)

    def __eq__(self, other):
        return self._flow is unwrap(other)

    def __hash__(self):
        return id(self._flow)

    @property
    def request(self):
        request = getattr(self._flow, "request", None)
        return None if request is None else OldRequest(request)

    @property
    def response(self):
        response = getattr(self._flow, "response", None)
        return None if response is None else OldResponse(response)

    @property
    def client_conn(self):
        return OldConn(self._flow.client_conn) if self._flow.client_conn else None

    @property
    def server_conn(self):
        return OldConn(self._flow.server_conn) if self._flow.server_conn else None

    def reply(self, value=None):
        """0.x `flow.reply(...)`: a response answers the request without the server; KILL
        kills the flow; anything else lets it go on."""
        value = unwrap(value)
        if isinstance(value, http.Response):
            self._flow.response = value
        elif value is KILL:
            self._flow.kill()

    def match(self, spec):
        """`flow.match(filter)`: a filter expression or one `filt.parse` made."""
        if spec is None:
            return True
        if isinstance(spec, str):
            spec = flowfilter.parse(spec)
        return bool(spec(self._flow))

    def copy(self):
        return OldFlow(self._flow.copy())

    def __repr__(self):
        return repr(self._flow)


# 0.x `libmproxy.protocol.KILL`: `flow.reply(KILL)` kills the flow.
KILL = "KILL"


def old_arg(value):
    """What an old-API hook receives for today's `value` (an HTTP flow gets its view)."""
    if isinstance(value, http.HTTPFlow):
        return OldFlow(value)
    return value


def skip_own_replay(context, flow):
    """True for the script's own replay coming back through its `request` hook."""
    if getattr(flow, "is_replay", None) == "request" and flow.id in context.replayed:
        context.replayed.discard(flow.id)
        return True
    return False


class AppRegistry:
    """`context.app_registry`: WSGI apps served on virtual hosts (`add(app, host, port)`)."""

    def __init__(self):
        self.apps = {}

    def add(self, app, domain, port):
        self.apps[(domain, int(port))] = app

    def get(self, request):
        host = request.host_header or request.host
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return self.apps.get((host, request.port)) or self.apps.get((request.host, request.port))

    def serve(self, flow):
        """A `request` handler: answers a request for a registered host with its app."""
        request = getattr(flow, "request", None)
        if request is None or not self.apps:
            return
        app = self.get(request)
        if app is not None:
            flow.response = call_wsgi(app, request)


def call_wsgi(app, request):
    """Runs a WSGI app for `request` and returns its response."""
    path = request.path
    path_info, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path_info),
        "QUERY_STRING": query,
        "SERVER_NAME": request.host,
        "SERVER_PORT": str(request.port),
        "SERVER_PROTOCOL": request.http_version,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(request.content or b"")),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(request.content or b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        key = "HTTP_" + name.upper().replace("-", "_")
        if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            environ[key] = value
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, headers
        return lambda data: started.setdefault("written", []).append(data)

    result = app(environ, start_response)
    try:
        body = b"".join(started.get("written", [])) + b"".join(to_bytes(x) for x in result)
    finally:
        if hasattr(result, "close"):
            result.close()
    code, _, reason = started.get("status", "500 Internal Server Error").partition(" ")
    response = http.Response.make(int(code), b"", [(k, v) for k, v in started.get("headers", [])])
    response.reason = reason
    response.content = body
    return response


__all__ = ["LegacyBytes", "OldFlow", "OldConn", "ScriptContext", "AppRegistry", "KILL"]
