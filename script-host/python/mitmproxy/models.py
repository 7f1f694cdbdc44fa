"""`mitmproxy.models`: the 0.x/1.x module names old scripts import."""

import contextlib

from .http import HTTPFlow, Headers, Request, Response  # noqa: F401
from .tcp import TCPFlow  # noqa: F401
from .flow import Error  # noqa: F401
from .connection import Client as ClientConnection, Server as ServerConnection  # noqa: F401


@contextlib.contextmanager
def decoded(message):
    """0.x `with decoded(flow.response):` - `content` is already decoded in this API."""
    yield message
