"""Replace "foo" with "bar" in every chunk of a raw TCP flow, logging each.

TCP flows come from tunnels that carry neither TLS nor HTTP, or from hosts matched by
`--tcp-hosts`. The chunk being relayed is `flow.messages[-1]`; its `.content` after the hook is
what is forwarded. Run with e.g. `flowtap -s tcp_simple.py --tcp-hosts '.*'`.
"""

import logging


def tcp_message(flow):
    message = flow.messages[-1]
    message.content = message.content.replace(b"foo", b"bar")
    sender = "client" if message.from_client else "server"
    logging.info(f"tcp_message from the {sender}: {message.content!r}")
