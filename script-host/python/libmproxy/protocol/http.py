"""`libmproxy.protocol.http` (0.11-0.13): `decoded`, `HTTPResponse`, `HTTPRequest`,
`send_connect_request`."""

from ..models import HTTPRequest, HTTPResponse, decoded  # noqa: F401
from flowtap_host.legacy import OldFlow as HTTPFlow  # noqa: F401


def send_connect_request(conn, host, port, update_state=True):
    """0.11-0.13 sent `CONNECT host:port` to the upstream proxy on `conn` (after
    `flow.live.change_server` in upstream mode) and returned its answer. flowtap sends that
    CONNECT itself for an https flow whose next proxy a script chose (see `flow.live`), so
    this returns the answer the script waited for, 200, and sends nothing."""
    return HTTPResponse([1, 1], 200, "Connection established", [], b"")
