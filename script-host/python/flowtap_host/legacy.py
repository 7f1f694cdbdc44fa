"""Objects that scripts written for mitmproxy 0.x-2.x receive instead of the modern ones."""

import logging

from mitmproxy import log as mlog


class ScriptContext:
    """The `context` argument of 0.10-0.17 hooks: logging and a few flow operations.

    Scripts also store their own state on it (`context.old = ...`).
    """

    def __init__(self, host, script):
        self._host = host
        self._script = script
        self._logger = logging.getLogger(f"__mitmproxy_script__.{script.name}")

    def log(self, message, level="info"):
        self._logger.log(mlog.LEVELS.get(level, logging.INFO), message)

    def kill_flow(self, flow):
        flow.kill()

    def duplicate_flow(self, flow):
        return flow.copy()

    def replay_request(self, flow):
        self._host.master.commands.call("replay.client", [flow])

    @property
    def master(self):
        return self._host.master


class RootLayer:
    """What `clientconnect(root_layer)` received: a layer giving access to the client."""

    def __init__(self, client, server=None):
        self.client_conn = client
        self.server_conn = server

    def __getattr__(self, name):
        return getattr(self.client_conn, name)


class TcpMessage:
    """The 0.16 `tcp_msg`: sender, receiver and the data, which the script may change."""

    def __init__(self, flow):
        last = flow.messages[-1]
        self._flow = flow
        self.client_conn = flow.client_conn
        self.server_conn = flow.server_conn
        self.from_client = last.from_client
        self.sender = flow.client_conn if last.from_client else flow.server_conn
        self.receiver = flow.server_conn if last.from_client else flow.client_conn
        self.message = last.content

    def apply(self):
        self._flow.messages[-1].content = self.message


def is_websocket_handshake(flow):
    req = getattr(flow, "request", None)
    return req is not None and "websocket" in req.headers.get("upgrade", "").lower()
