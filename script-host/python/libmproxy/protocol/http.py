"""`libmproxy.protocol.http` (0.11-0.13): `decoded`, `HTTPResponse`, `HTTPRequest`,
`send_connect_request`."""

from ..models import HTTPRequest as _Request
from ..models import HTTPResponse, decoded  # noqa: F401
from flowtap_host.legacy import OldFlow as HTTPFlow  # noqa: F401


class HTTPRequest(_Request):
    """Today's request, with 0.11-0.13's class attribute `_headers_to_strip_off`: the headers
    the old proxy removed before sending a request on. Scripts edited the list (to let
    `Connection` and `Upgrade` through for WebSockets); flowtap strips only hop-by-hop headers
    and passes an upgrade through by itself, so the list is kept and read by nothing."""

    _headers_to_strip_off = ["Proxy-Connection", "Keep-Alive", "Connection",
                             "Transfer-Encoding", "Upgrade"]


def send_connect_request(conn, host, port, update_state=True):
    """0.11-0.13 sent `CONNECT host:port` to the upstream proxy on `conn` (after
    `flow.live.change_server` in upstream mode) and returned its answer. flowtap sends that
    CONNECT itself for an https flow whose next proxy a script chose (see `flow.live`), so
    this returns the answer the script waited for, 200, and sends nothing."""
    return HTTPResponse([1, 1], 200, "Connection established", [], b"")
