"""`mitmproxy.proxy.layers`: the protocol layers' hook classes, by layer."""

from . import dns, http, modes, quic, tcp, tls, udp, websocket  # noqa: F401
