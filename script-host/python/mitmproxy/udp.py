"""`mitmproxy.udp`: UDP flows, shaped like TCP flows (but not TCP flows)."""

from . import tcp


class UDPMessage(tcp._Message):
    """One datagram. `content` may be changed in `udp_message`."""


class UDPFlow(tcp._MessagesFlow):
    """A UDP relay: the datagrams of one client address, `messages` in order of arrival."""

    type = "udp"
    message_class = UDPMessage
