"""`mitmproxy.test.tflow`: ready-made flows of every kind for tests.

`tflow(resp=True)` is an HTTP flow with a response, `ttcpflow()` a TCP flow with two messages,
and so on. Connections, timestamps and contents are mitmproxy's, so assertions written against
mitmproxy's helpers hold here too.
"""

import time
import uuid

from mitmproxy import connection, dns, flow, http, tcp, udp, websocket
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test.tutils import tdnsreq, tdnsresp, treq, tresp
from mitmproxy.websocket import Opcode

_TLS_FIELDS = {"tls": False, "certificate_list": [], "alpn_offers": [], "cipher_list": [],
               "tls_version": "TLSv1.2", "sni": "address", "error": None}


def tclient_conn():
    """A client at 127.0.0.1:22 that came in by the regular mode; open."""
    return connection.Client(
        id=str(uuid.uuid4()), peername=("127.0.0.1", 22), sockname=("", 0), mitmcert=None,
        timestamp_start=946681200, timestamp_tls_setup=946681201, timestamp_end=946681206,
        cipher="cipher", alpn=b"http/1.1", state=ConnectionState.OPEN,
        proxy_mode=ProxyMode.parse("regular"), **_TLS_FIELDS,
    )


def tserver_conn():
    """A server `address:22` (resolved to 192.168.0.1); closed."""
    return connection.Server(
        id=str(uuid.uuid4()), address=("address", 22), peername=("192.168.0.1", 22),
        sockname=("address", 22), timestamp_start=946681202, timestamp_tcp_setup=946681203,
        timestamp_tls_setup=946681204, timestamp_end=946681205, alpn=None, via=None,
        cipher=None, state=ConnectionState.CLOSED, **_TLS_FIELDS,
    )


def terr(content="error"):
    return flow.Error(content, 946681207)


def twebsocket(messages=True):
    """A WebSocket that the server closed normally after three messages."""
    ws = websocket.WebSocketData()
    if messages:
        ws.messages = [
            websocket.WebSocketMessage(Opcode.BINARY, True, b"hello binary", 946681203),
            websocket.WebSocketMessage(Opcode.TEXT, True, b"hello text", 946681204),
            websocket.WebSocketMessage(Opcode.TEXT, False, b"it's me", 946681205),
        ]
    ws.close_reason = "Close Reason"
    ws.close_code = 1000
    ws.closed_by_client = False
    ws.timestamp_end = 946681205
    return ws


def _conns(client_conn, server_conn):
    client = tclient_conn() if client_conn is True or client_conn is None else client_conn
    server = tserver_conn() if server_conn is True or server_conn is None else server_conn
    return client, server


def tflow(*, client_conn=None, server_conn=None, req=None, resp=False, err=False, ws=False,
          live=True):
    """An HTTP flow: `treq()`, plus `tresp()`, `terr()`, `twebsocket()` if asked (True) or
    the given objects."""
    f = http.HTTPFlow(*_conns(client_conn, server_conn))
    req = req if req is not None else treq()
    f.timestamp_created = req.timestamp_start
    f.request = req
    f.response = (tresp() if resp is True else resp) or None
    f.error = (terr() if err is True else err) or None
    f.websocket = (twebsocket() if ws is True else ws) or None
    f.live = live
    return f


def twebsocketflow(messages=True, err=None, close_code=None, close_reason=""):
    """An HTTP flow upgraded to a WebSocket (GET /ws, 101 Switching Protocols)."""
    f = http.HTTPFlow(tclient_conn(), tserver_conn())
    f.request = http.Request(
        "example.com", 80, b"GET", b"http", b"example.com", b"/ws", b"HTTP/1.1",
        headers=http.Headers(connection="upgrade", upgrade="websocket",
                             sec_websocket_version="13", sec_websocket_key="1234"),
        content=b"", trailers=None, timestamp_start=946681200, timestamp_end=946681201,
    )
    f.response = http.Response(
        b"HTTP/1.1", 101, reason=b"Switching Protocols",
        headers=http.Headers(connection="upgrade", upgrade="websocket",
                             sec_websocket_accept=b""),
        content=b"", trailers=None, timestamp_start=946681202, timestamp_end=946681203,
    )
    f.websocket = twebsocket()
    f.websocket.close_reason = close_reason
    if close_code is not None:
        f.websocket.close_code = close_code
    else:
        f.websocket.close_code = 1006 if err is True else 1000  # abnormal / normal closure
    f.live = True
    return f


def _message_flow(cls, message_cls, client_conn, server_conn, messages, err):
    f = cls(*_conns(client_conn, server_conn))
    f.timestamp_created = f.client_conn.timestamp_start
    if messages is True:
        messages = [message_cls(True, b"hello", 946681204.2),
                    message_cls(False, b"it's me", 946681204.5)]
    f.messages = messages
    f.error = terr() if err is True else err
    f.live = True
    return f


def ttcpflow(client_conn=True, server_conn=True, messages=True, err=None):
    """A TCP flow: `hello` from the client, `it's me` from the server."""
    return _message_flow(tcp.TCPFlow, tcp.TCPMessage, client_conn, server_conn, messages, err)


def tudpflow(client_conn=True, server_conn=True, messages=True, err=None):
    """A UDP flow: `hello` from the client, `it's me` from the server."""
    return _message_flow(udp.UDPFlow, udp.UDPMessage, client_conn, server_conn, messages, err)


def tdnsflow(*, client_conn=None, server_conn=None, req=None, resp=False, err=False, live=True):
    """A DNS flow over UDP in dns mode: `tdnsreq()`, plus `tdnsresp()`/`terr()` if asked."""
    if client_conn is None:
        client_conn = tclient_conn()
        client_conn.proxy_mode = ProxyMode.parse("dns")
        client_conn.transport_protocol = "udp"
    if server_conn is None:
        server_conn = tserver_conn()
        server_conn.transport_protocol = "udp"
    req = req if req is not None else tdnsreq()
    f = dns.DNSFlow(client_conn, server_conn)
    f.timestamp_created = req.timestamp or time.time()
    f.request = req
    f.response = (tdnsresp() if resp is True else resp) or None
    f.error = (terr() if err is True else err) or None
    f.live = live
    return f


class DummyFlow(flow.Flow):
    """A flow that is neither HTTP nor TCP."""


def tdummyflow(client_conn=True, server_conn=True, err=None):
    f = DummyFlow(*_conns(client_conn, server_conn))
    f.error = terr() if err is True else err
    f.live = True
    return f


def tflows():
    """One flow of each kind and state."""
    return [
        tflow(resp=True), tflow(err=True), tflow(ws=True),
        ttcpflow(), ttcpflow(err=True), tudpflow(), tudpflow(err=True),
        tdnsflow(resp=True), tdnsflow(req=tdnsreq(questions=[])), tdnsflow(err=True),
    ]
