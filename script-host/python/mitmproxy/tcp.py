"""`mitmproxy.tcp`: raw TCP flows."""

import time

from . import flow as _flow
from .connection import Client, Server


class _Message:
    """One message received from either side (a TCP chunk, a UDP datagram); `content` may be
    changed in the message hook. The base of `TCPMessage` and `udp.UDPMessage`, which are
    unrelated classes in mitmproxy."""

    def __init__(self, from_client, content, timestamp=None):
        self.from_client = from_client
        self.content = content
        self.timestamp = timestamp if timestamp is not None else time.time()

    def get_state(self):
        return (self.from_client, self.content, self.timestamp)

    def set_state(self, state):
        self.from_client, self.content, self.timestamp = state

    @classmethod
    def from_state(cls, state):
        return cls(*state)

    def copy(self):
        return type(self).from_state(self.get_state())

    def __repr__(self):
        direction = "->" if self.from_client else "<-"
        return f"{direction} {self.content!r}"


class TCPMessage(_Message):
    """One chunk received from either side. `content` may be changed in `tcp_message`."""


class _MessagesFlow(_flow.Flow):
    """A relay of messages in order of arrival: the base of `TCPFlow` and `udp.UDPFlow`,
    which are unrelated classes in mitmproxy (a script's `isinstance(f, tcp.TCPFlow)` is False
    for a UDP flow)."""

    type = ""
    message_class = _Message

    def __init__(self, client_conn, server_conn, live=False):
        super().__init__(client_conn, server_conn, live)
        self.messages = []

    def _init_empty(self):
        type(self).__init__(self, Client(), Server())

    def get_state(self):
        state = self._common_state()
        state["messages"] = [m.get_state() for m in self.messages]
        return state

    def _set_type_state(self, state):
        messages = state.pop("messages")
        # Keep the message objects scripts hold, update them in place.
        new = []
        for i, m in enumerate(messages):
            if i < len(self.messages):
                self.messages[i].set_state(m)
                new.append(self.messages[i])
            else:
                new.append(self.message_class.from_state(m))
        self.messages = new

    def __repr__(self):
        return f"<{type(self).__name__} ({len(self.messages)} messages)>"


class TCPFlow(_MessagesFlow):
    """A raw TCP relay: `messages` in order of arrival."""

    type = "tcp"
    message_class = TCPMessage
