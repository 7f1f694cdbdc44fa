"""`libmproxy.exceptions` (0.15-0.18): the names scripts caught."""

from mitmproxy.exceptions import *  # noqa: F401,F403
from mitmproxy.exceptions import MitmproxyException as ProxyException  # noqa: F401


class TlsProtocolException(ProxyException):
    """A TLS handshake failed (flowtap raises it to no script: TLS runs in the proxy)."""
