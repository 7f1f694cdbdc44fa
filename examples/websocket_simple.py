"""Log every WebSocket message, turn a leading "Hello" into "HAPPY", drop messages with FOOBAR.

`websocket_message` runs once per complete message from either side; the message is the last
one in `flow.websocket.messages`. What the hook leaves in `.content` is what goes on.
"""

import logging
import re


def websocket_message(flow):
    message = flow.websocket.messages[-1]
    sender = "client" if message.from_client else "server"
    logging.info(f"{sender} sent a message: {message.content!r}")
    message.content = re.sub(rb"^Hello", b"HAPPY", message.content)
    if b"FOOBAR" in message.content:
        message.drop()
