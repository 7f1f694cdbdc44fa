"""`libmproxy.models` (0.15-0.18): the HTTP objects and `decoded`."""

import contextlib

from flowtap_host.legacy import OldFlow as HTTPFlow  # noqa: F401
from flowtap_host.legacy_http import make_response, unwrap
from mitmproxy.connection import Client as ClientConnection  # noqa: F401
from mitmproxy.connection import Server as ServerConnection  # noqa: F401
from mitmproxy.flow import Error  # noqa: F401
from mitmproxy.http import Request as HTTPRequest  # noqa: F401
from netlib.http import Headers  # noqa: F401


def HTTPResponse(http_version, status_code, reason, headers, content, timestamp_start=None,
                 timestamp_end=None):
    """The old constructor: `HTTPResponse([1, 1], 200, "OK", headers, "body")`. Headers may
    be an `ODictCaseless`, a `Headers` or pairs; content a `str` (UTF-8) or bytes."""
    return make_response(http_version, status_code, reason, headers, content,
                         timestamp_start, timestamp_end)


@contextlib.contextmanager
def decoded(message):
    """`with decoded(flow.response):` - bodies are decoded already (and re-encoded on
    assignment), so the block runs as it is."""
    unwrap(message)
    yield message
