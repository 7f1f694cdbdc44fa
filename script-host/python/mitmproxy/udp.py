"""`mitmproxy.udp`: UDP flows, shaped like TCP flows."""

from . import tcp


class UDPMessage(tcp.TCPMessage):
    """One datagram."""


class UDPFlow(tcp.TCPFlow):
    """A UDP relay: `messages` in order of arrival."""

    type = "udp"
    message_class = UDPMessage
