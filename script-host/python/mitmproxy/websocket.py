"""`mitmproxy.websocket`: the WebSocket connection an HTTP flow turned into."""

import enum
import time


class Opcode(enum.IntEnum):
    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


class WebSocketMessage:
    """One complete message. In `websocket_message`, change `content`/`text` or `drop()` it."""

    def __init__(self, type, from_client, content, timestamp=None, dropped=False, injected=False):
        self.type = Opcode(type)
        self.from_client = from_client
        self.content = content
        self.timestamp = timestamp if timestamp is not None else time.time()
        self.dropped = dropped
        self.injected = injected

    @property
    def is_text(self):
        return self.type == Opcode.TEXT

    @property
    def text(self):
        if self.type != Opcode.TEXT:
            raise AttributeError(f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute.")
        return self.content.decode()

    @text.setter
    def text(self, value):
        if self.type != Opcode.TEXT:
            raise AttributeError(f"{self.type.name.title()} WebSocket frames do not have a 'text' attribute.")
        self.content = value.encode()

    def drop(self):
        """The message is not forwarded."""
        self.dropped = True

    def kill(self):
        self.drop()

    def get_state(self):
        return (int(self.type), self.from_client, self.content, self.timestamp, self.dropped,
                self.injected)

    def set_state(self, state):
        typ, self.from_client, self.content, self.timestamp, self.dropped, self.injected = state
        self.type = Opcode(typ)

    @classmethod
    def from_state(cls, state):
        return cls(*state)

    def __repr__(self):
        if self.type == Opcode.TEXT:
            return repr(self.content.decode(errors="replace"))
        return repr(self.content)

    def _format_ws_message(self):
        direction = b"[OUTGOING]" if self.from_client else b"[INCOMING]"
        return direction + b" " + self.content


class WebSocketData:
    """`flow.websocket`: the messages so far and, once closed, how it closed."""

    def __init__(self, messages=None, closed_by_client=None, close_code=None, close_reason=None,
                 timestamp_end=None):
        self.messages = list(messages or [])
        self.closed_by_client = closed_by_client
        self.close_code = close_code
        self.close_reason = close_reason
        self.timestamp_end = timestamp_end

    def get_state(self):
        return {
            "messages": [m.get_state() for m in self.messages],
            "closed_by_client": self.closed_by_client,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "timestamp_end": self.timestamp_end,
        }

    def set_state(self, state):
        new = []
        for i, m in enumerate(state["messages"]):
            if i < len(self.messages):
                self.messages[i].set_state(m)
                new.append(self.messages[i])
            else:
                new.append(WebSocketMessage.from_state(m))
        self.messages = new
        self.closed_by_client = state["closed_by_client"]
        self.close_code = state["close_code"]
        self.close_reason = state["close_reason"]
        self.timestamp_end = state["timestamp_end"]

    @classmethod
    def from_state(cls, state):
        data = cls()
        data.set_state(state)
        return data

    def __repr__(self):
        return f"<WebSocketData ({len(self.messages)} messages)>"

    def _get_formatted_messages(self):
        return b"\n".join(m._format_ws_message() for m in self.messages)
