"""Objects that scripts written for mitmproxy 0.x-2.x receive instead of the modern ones.

Hooks of the old `(context, flow)` API get `OldFlow`, a view of today's flow with the 0.11-0.18
attributes and semantics (its request and response are `legacy_http` views); `context` is a
`ScriptContext`. Modern hooks (`def request(flow)`) get today's objects untouched.
"""

import collections
import io
import logging
import sys
import urllib.parse
import weakref

from mitmproxy import connection, flowfilter, http
from mitmproxy import log as mlog
from mitmproxy.proxy import mode_specs
from netlib.tcp import Address

from .legacy_http import (LegacyBytes, OldRequest, OldResponse, assemble_response, to_bytes,
                          unwrap)

# Flows whose upgraded connection a script handed to `TcpRelay` (0.11-0.13's `TCPHandler`).
_HANDED_OVER = weakref.WeakSet()


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
        # The next proxy `flow.live.change_server(..., persistent_change=True)` chose, by client
        # connection id: later flows of that connection go there too (see `LiveConnection`).
        self.upstream_by_client = collections.OrderedDict()

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

    def __init__(self, conn, flow=None):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_flow", flow)

    def send(self, data):
        """0.11-0.13 wrote bytes straight to the connection. flowtap writes to connections
        itself; adapted is the one use the examples made of it: a script sending the flow's
        own upgrade answer (`flow.response.assemble()`, a 101) to the client before handing
        the connection to `TCPHandler`. The proxy sends that answer itself."""
        flow = self._flow
        response = getattr(flow, "response", None)
        if (flow is not None and response is not None and response.status_code == 101
                and flow.client_conn is self._conn and to_bytes(data) == assemble_response(response)):
            return
        raise NotImplementedError(
            "flowtap: writing bytes to a connection (conn.send) is not adapted, except a 101 "
            "response sent before TCPHandler(flow.live.c).handle_messages()")

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
    `match(...)`, connections with the old names, `live`; everything else is today's flow."""

    def __init__(self, flow, context=None):
        object.__setattr__(self, "_flow", flow)
        object.__setattr__(self, "_context", context)

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
        return OldConn(self._flow.client_conn, self._flow) if self._flow.client_conn else None

    @property
    def live(self):
        """0.11-0.15's `flow.live`: the live connection while the flow is under way (a
        `LiveConnection`), else None."""
        return LiveConnection(self._flow, self._context) if self._flow.live else None

    @property
    def server_conn(self):
        return OldConn(self._flow.server_conn) if self._flow.server_conn else None

    def reply(self, value=None):
        """0.x `flow.reply(...)`: a response answers the request without the server; KILL
        kills the flow; anything else lets it go on."""
        value = unwrap(value)
        if isinstance(value, http.Response):
            self._flow.response = value
        elif value is KILL and self._flow not in _HANDED_OVER:
            # After `TCPHandler(...).handle_messages()` the old relay had ended and KILL closed
            # what was left; here the relay is still to come (see `TcpRelay`).
            self._flow.kill()

    def match(self, spec):
        """`flow.match(filter)`: a filter expression or one `filt.parse` made."""
        if spec is None:
            return True
        if isinstance(spec, str):
            spec = flowfilter.parse(spec)
        return bool(spec(self._flow))

    def copy(self):
        return OldFlow(self._flow.copy(), self._context)

    def __repr__(self):
        return repr(self._flow)


# 0.x `libmproxy.protocol.KILL`: `flow.reply(KILL)` kills the flow.
KILL = "KILL"


def old_arg(value, context=None):
    """What an old-API hook receives for today's `value` (an HTTP flow gets its view)."""
    if isinstance(value, http.HTTPFlow):
        return OldFlow(value, context)
    return value


# How many client connections' persistent upstream choices a script context remembers.
_PERSISTENT_LIMIT = 4096


def upstream_mode(flow):
    """The listener's `UpstreamMode` when the flow came through one, else None."""
    client = getattr(flow, "client_conn", None)
    mode = getattr(client, "proxy_mode", None)
    return mode if isinstance(mode, mode_specs.UpstreamMode) else None


def _set_via(flow, address):
    """`flow.server_conn.via = ("http", address)`; a server connection already open is
    replaced by a new one to the same address (an open one cannot change its way), as
    mitmproxy 12's own `change_upstream_proxy.py` does."""
    server = flow.server_conn
    if server is None or server.state == connection.ConnectionState.OPEN:
        flow.server_conn = connection.Server(address=server.address if server else None)
    flow.server_conn.via = ("http", tuple(address))


class LiveConnection:
    """0.11-0.15's `flow.live`: the old proxy's connection handler, as far as scripts used it
    to choose the upstream proxy of upstream mode.

    The old proxy held one server connection per client connection and let the script swap
    it; flowtap sets the flow's `server_conn.via` (mitmproxy 12's way to choose the next
    proxy per flow), and the proxy sends the request there: in absolute form for plain HTTP,
    through a CONNECT and TLS for HTTPS. Outside upstream mode the old proxy replaced the
    script's choice by the request's own server right after the `request` hook, so there it
    changes nothing here either.
    """

    def __init__(self, flow, context):
        self._flow = flow
        self._context = context
        self.c = _ConnectionHandler(flow)

    def _current(self):
        """The server the flow's connection goes to: a chosen next proxy, upstream mode's,
        else the server itself."""
        via = getattr(self._flow.server_conn, "via", None)
        if via:
            return tuple(via[1])
        mode = upstream_mode(self._flow)
        if mode is not None:
            return tuple(mode.address)
        address = getattr(self._flow.server_conn, "address", None)
        return tuple(address) if address else None

    def change_server(self, address, ssl=None, sni=None, force=False, persistent_change=False):
        """0.11-0.13: "change the server connection to `address`"; True when that is a new
        connection. In upstream mode the flow then goes through the proxy at `address`, and
        with `persistent_change` so do the later flows of the same client connection (the
        old proxy kept the swapped connection; without it, it restored the old one after the
        flow)."""
        address = tuple(Address(address))
        changed = force or address != self._current()
        if upstream_mode(self._flow) is not None:
            _set_via(self._flow, address)
            if persistent_change:
                self._remember(address)
        return changed

    def change_upstream_proxy_server(self, address):
        """0.15: the upstream proxy for this client connection's plain-HTTP requests. The
        0.15 proxy changed nothing for a request inside a CONNECT tunnel (its TLS layer put
        the tunnel's own server back before connecting), nor outside upstream mode."""
        address = tuple(Address(address))
        if upstream_mode(self._flow) is None or self._flow.request.scheme != "http":
            return None
        if address != self._current():
            _set_via(self._flow, address)
            self._remember(address)
        return None

    def restore_server(self):
        """Undoes a change that was not persistent: the flow goes the listener's way."""
        if getattr(self._flow.server_conn, "via", None):
            _set_via_none(self._flow)

    def _remember(self, address):
        client = getattr(self._flow.client_conn, "id", None)
        if self._context is None or client is None:
            return
        chosen = self._context.upstream_by_client
        chosen[client] = address
        chosen.move_to_end(client)
        while len(chosen) > _PERSISTENT_LIMIT:
            chosen.popitem(last=False)


def _set_via_none(flow):
    server = flow.server_conn
    if server.state == connection.ConnectionState.OPEN:
        flow.server_conn = connection.Server(address=server.address)
    else:
        server.via = None


def persistent_upstream(context, flow):
    """Before an old `request` hook: a flow of a client connection whose next proxy a script
    changed persistently goes there too, unless something chose already."""
    client = getattr(getattr(flow, "client_conn", None), "id", None)
    address = context.upstream_by_client.get(client) if client is not None else None
    if address is not None and not getattr(flow.server_conn, "via", None):
        _set_via(flow, address)


class _ConnectionHandler:
    """`flow.live.c`, the old `ConnectionHandler`: its connections, and TLS to the server as a
    request that flowtap fulfils itself."""

    def __init__(self, flow):
        self._flow = flow

    @property
    def client_conn(self):
        return OldConn(self._flow.client_conn)

    @property
    def server_conn(self):
        return OldConn(self._flow.server_conn)

    def establish_ssl(self, client=False, server=False, sni=None):
        """After `send_connect_request`: TLS to the server through the tunnel. flowtap makes
        the tunnel and its TLS itself for an https flow whose `via` is set: nothing to do."""

    def log(self, message, level="info"):
        logging.getLogger("flowtap.script").log(mlog.LEVELS.get(level, logging.INFO), message)


class TcpRelay:
    """0.11-0.13's `TCPHandler(flow.live.c).handle_messages()`: relay the connection's bytes
    both ways until a side closes, which scripts did in `response` for an upgraded connection
    (a 101 answer), then `flow.reply(KILL)`. flowtap relays an upgraded connection itself once
    the `response` hook returns (as WebSocket messages, or as bytes with `websocket=false`), so
    `handle_messages()` hands the flow over and returns at once, and the `KILL` that followed
    it no longer kills. For any other connection it raises: flowtap's proxy runs no relay a
    script starts."""

    chunk_size = 4096

    def __init__(self, c, log=True):
        self.c = c

    def handle_messages(self):
        flow = getattr(self.c, "_flow", None)
        response = getattr(flow, "response", None)
        if response is None or response.status_code != 101:
            raise NotImplementedError(
                "flowtap: TCPHandler(...).handle_messages() is adapted for an upgraded "
                "connection (a 101 response) only")
        _HANDED_OVER.add(flow)


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
